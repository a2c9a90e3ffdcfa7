//! Flotilla's replicated store: [`RaftStore`] implements `flotilla_core`'s
//! [`Store`](flotilla_core::store::Store) on openraft and RocksDB.
//!
//! Start with [`RaftStore::open`] and [`RaftStoreConfig`]. Each member keeps its raft log,
//! vote and state machine in one RocksDB database (see `docs/raft-store.md` in the
//! repository for the layout, durability rules and failure behaviour); members talk over a
//! small tonic service; with [`RaftStoreConfig::etcd_listen`] set, a member also serves the
//! etcd v3 gRPC API ([`serve_etcd`], `docs/etcd-api.md`). Reads are linearizable by default (read index, no log write); writes
//! and reads sent to a follower are forwarded to the leader.

mod codec;
mod config;
mod db;
mod error;
mod etcd;
mod forward;
mod log_store;
mod network;
mod server;
mod snapshot;
mod state_machine;
mod store;
mod typ;

/// Generated protobuf types of the member transport.
#[allow(missing_docs, unreachable_pub, clippy::all)]
mod pb {
    tonic::include_proto!("flotilla.raft.v1");
}

pub use codec::{CodecError, FORMAT_VERSION};
pub use config::RaftStoreConfig;
pub use db::DbError;
pub use error::OpenError;
pub use etcd::serve_etcd;
pub use network::NetworkFilter;
pub use state_machine::StateMachine;
pub use store::RaftStore;
pub use typ::{NodeId, Raft, Request, Response, SnapshotData, TypeConfig};
