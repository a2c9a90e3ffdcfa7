//! openraft's type configuration and aliases: the one place this crate names openraft's
//! generic types, so an openraft upgrade touches this file first.

use std::fmt;
use std::io::Cursor;

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

/// What a snapshot's bytes are held in.
pub type SnapshotData = Cursor<Vec<u8>>;

openraft::declare_raft_types!(
    /// Flotilla's raft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// A raft handle over our state machine.
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub(crate) type LogState = openraft::storage::LogState<TypeConfig>;
pub(crate) type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
pub(crate) type EntryResponder = openraft::storage::EntryResponder<TypeConfig>;
pub(crate) type RPCError = openraft::errors::RPCError<TypeConfig>;
pub(crate) type StreamingError = openraft::errors::StreamingError<TypeConfig>;
pub(crate) type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
pub(crate) type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub(crate) type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub(crate) type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub(crate) type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub(crate) type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
