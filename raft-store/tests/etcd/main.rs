//! The etcd v3 gRPC API of the raft store, driven by the `etcd-client` crate against three
//! members on loopback: KV, transactions, compaction, watches (also across a leader change),
//! leases (also their expiry), member list and status, snapshots; then Debian's `etcdctl` against the
//! same three members (skipped without it unless `FLOTILLA_REQUIRE_ETCDCTL=1`).

mod harness;
mod t10_kv;
mod t20_watch;
mod t30_lease;
mod t40_cluster;
mod t50_etcdctl;
mod t60_snapshot;
