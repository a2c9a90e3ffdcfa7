//! openraft's type configuration and the aliases of its generic types live in
//! `flotilla-store-wire` (with the records they describe); this module re-exports them and
//! adds the raft handle, which names this crate's state machine.

pub(crate) use flotilla_store_wire::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, EntryResponder, IOFlushed, LogId, LogState, RPCError,
    RaftError, SnapshotMeta, SnapshotResponse, StoredMembership, StreamingError, TransferLeaderRequest,
    TransferLeaderResponse, Vote, VoteRequest, VoteResponse,
};
pub use flotilla_store_wire::{NodeId, Request, Response, TypeConfig};

/// A snapshot: its meta and the file holding its data.
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, crate::snapshot_file::SnapshotFile>;

/// A raft handle over our state machine.
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
