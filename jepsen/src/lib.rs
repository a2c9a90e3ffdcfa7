//! Jepsen-style failure testing for Flotilla.
//!
//! A run starts a cluster of real `flotilla server` processes, each in its own network
//! namespace ([`net`], [`cluster`]), lets clients issue register operations through the etcd
//! API while a seeded [`nemesis`] schedule partitions links, kills, restarts and pauses
//! members, records every operation as invoke / ok / fail / info ([`history`]) and checks the
//! history for linearizability ([`checker`]). [`run`] ties them together and writes a report
//! per run.

pub mod append;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod jsonl;
pub mod lease;
pub mod nemesis;
pub mod net;
pub mod objects;
pub mod run;
#[cfg(test)]
mod testing;
pub mod watch;
pub mod workload;
