//! openraft's type configuration and aliases: the one place the store names openraft's
//! generic types, so an openraft upgrade touches this file first. (`flotilla-raft-store`
//! adds `Raft`, which names its state machine.)

use std::fmt;

use flotilla_core::store::{Command, CommandResult, Error as StoreError};
use serde::{Deserialize, Serialize};

/// A member's id in the cluster.
pub type NodeId = u64;

/// A request replicated through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The state-machine command.
    pub cmd: Command,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cmd {
            Command::Txn(t) => write!(
                f,
                "txn({} compares, {} success, {} failure)",
                t.compare.len(),
                t.success.len(),
                t.failure.len()
            ),
            Command::Compact(r) => write!(f, "compact({r})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease_grant({id}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease_revoke({id})"),
        }
    }
}

/// The state machine's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The command's result (errors are deterministic: every member computes the same one);
    /// `None` for entries that carry no command (blank and membership entries).
    pub result: Option<Result<CommandResult, StoreError>>,
}

openraft::declare_raft_types!(
    /// Flotilla's raft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// A log position: the term and leader that proposed an entry, and its index.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A member's vote (persisted before it is answered).
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A raft log entry: blank, a [`Request`], or a membership change.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A membership and the log id it was committed at.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: the last log id and membership it includes.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// The log's first (last purged) and last log ids.
pub type LogState = openraft::storage::LogState<TypeConfig>;
/// The callback a log store completes once appended entries are durable.
pub type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
/// The callback that answers the client of an applied entry.
pub type EntryResponder = openraft::storage::EntryResponder<TypeConfig>;
/// Why a call to another member failed.
pub type RPCError = openraft::errors::RPCError<TypeConfig>;
/// Why sending a snapshot to another member failed.
pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
/// An error of the raft node itself, or of the API call `E`.
pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
/// The AppendEntries RPC.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// The answer to [`AppendEntriesRequest`].
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
/// The RequestVote RPC.
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
/// The answer to [`VoteRequest`].
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
/// A leader's request that the other voters let one of them take over.
pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
/// The answer to [`TransferLeaderRequest`].
pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
/// The answer to a full snapshot sent to a member.
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
