//! Flotilla's replicated store: [`RaftStore`] implements `flotilla_core`'s
//! [`Store`](flotilla_core::store::Store) on openraft and RocksDB.
//!
//! Start with [`RaftStore::open`] and [`RaftStoreConfig`]. Each member keeps its raft log,
//! vote and state machine in one RocksDB database (see `docs/raft-store.md` in the
//! repository for the layout, durability rules and failure behaviour); members talk over a
//! small tonic service; with [`RaftStoreConfig::etcd_listen`] set, a member also serves the
//! etcd v3 gRPC API ([`serve_etcd`], `docs/etcd-api.md`). Reads are linearizable by default (read index, no log write); writes
//! and reads sent to a follower are forwarded to the leader.
//!
//! A new member joins a running cluster with [`register_member`] (it gets an id and is added
//! as a learner), then opens its store with that id and calls [`promote_member`] (it becomes
//! a voter once caught up); requests are signed with the cluster's [`JoinKey`]. A consistent
//! backup, streamed in chunks by [`RaftStore::backup_stream`], restores into a new cluster's
//! data directory with [`restore_backup_file`].

mod backup;
mod codec;
mod compact;
mod config;
mod db;
mod describe;
mod error;
mod etcd;
mod forward;
mod handover;
mod join;
mod log_store;
mod membership;
mod network;
mod server;
mod sim;
mod snapshot;
mod snapshot_file;
mod state_machine;
mod store;
mod typ;

/// Generated protobuf types of the member transport.
#[allow(missing_docs, unreachable_pub, clippy::all)]
mod pb {
    tonic::include_proto!("flotilla.raft.v1");
}

pub use backup::{
    BACKUP_CHECKSUM_BYTES, BackupError, BackupStream, RestoreSummary, restore_backup, restore_backup_file,
    verify_backup, verify_backup_file,
};
pub use codec::{CodecError, FORMAT_VERSION};
pub use config::RaftStoreConfig;
pub use db::DbError;
pub use error::OpenError;
pub use etcd::serve_etcd;
pub use join::{JoinError, JoinKey, Registered, promote_member, register_member};
pub use network::NetworkFilter;
pub use sim::{SimFaults, SimNet, SimNetCounts};
pub use snapshot_file::SnapshotFile;
pub use state_machine::{ApplyPause, StateMachine};
pub use store::RaftStore;
pub use typ::{NodeId, Raft, Request, Response, TypeConfig};
