//! The wire and record formats of Flotilla's replicated store, without its storage engine:
//! what `flotilla-raft-store` writes to disk and sends between members, and how it reads
//! etcd v3 requests. Kept apart from that crate so they can be tested and fuzzed without
//! building RocksDB (see `fuzz/README.md` in the repository).
//!
//! - [`codec`]: every persisted or member-to-member value is bincode behind a one-byte
//!   [`FORMAT_VERSION`]; a checked-in fixture keeps the format from changing silently.
//! - [`TypeConfig`], [`Request`] and [`Response`]: openraft's type configuration (what a log
//!   entry carries) and the aliases of openraft's generic types over it.
//! - [`pb`] and [`convert`]: the etcd v3 API's generated types and service traits, and the
//!   one place etcd requests become core's store requests and store errors become etcd's
//!   gRPC statuses (see `docs/etcd-api.md`).

pub mod codec;
pub mod convert;
mod typ;

/// Generated protobuf types and service traits of the etcd v3 API (package `etcdserverpb`,
/// with `mvccpb` nested), built by `build.rs` from `proto/etcd/`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub use etcdserverpb::*;
}

pub use codec::{CodecError, FORMAT_VERSION};
pub use typ::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, EntryResponder, IOFlushed, LogId, LogState, NodeId,
    RPCError, RaftError, Request, Response, SnapshotMeta, SnapshotResponse, StoredMembership, StreamingError,
    TransferLeaderRequest, TransferLeaderResponse, TypeConfig, Vote, VoteRequest, VoteResponse,
};
