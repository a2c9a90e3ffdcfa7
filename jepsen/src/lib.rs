//! Jepsen-style failure testing for Flotilla.
//!
//! A run starts a cluster of real `flotilla server` processes, each in its own network
//! namespace ([`net`], [`cluster`]), and lets several workloads run side by side while a
//! seeded [`nemesis`] schedule partitions, degrades and heals links, kills, restarts and
//! pauses members, removes and adds them, forces snapshots, skews wall clocks and cuts the
//! power of members whose data directories are on a [`lossyfs`] (a FUSE file system that
//! loses what was not synced):
//! register operations through the etcd API ([`workload`], checked for linearizability by
//! [`checker`]) and watchers of their keys ([`watch`]); list-append transactions ([`append`],
//! checked for strict serializability, Elle-style); leases ([`lease`], expiring neither early
//! nor never); and Kubernetes objects through the API servers ([`objects`], no lost
//! resourceVersion-guarded update, exact watch replay). Every operation is recorded with its
//! invocation and completion ([`history`], [`jsonl`]); [`run`] ties it together and writes a
//! report per run.
//!
//! [`sim`] is the deterministic counterpart: whole clusters of real members in one process,
//! on a simulated network under a virtual clock, many seeds a minute, checked for
//! linearizability and Raft invariants.

pub mod append;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod jsonl;
pub mod lease;
pub mod lossyfs;
pub mod nemesis;
pub mod net;
pub mod objects;
pub mod run;
pub mod sim;
#[cfg(test)]
mod testing;
pub mod watch;
pub mod workload;
