//! The storage contract: a revisioned key-value store with etcd's semantics.
//!
//! Everything in Flotilla that persists state goes through [`Store`]: a flat, ordered keyspace
//! where every write transaction bumps one store-wide [`Revision`], old revisions stay
//! readable until [`Store::compact`], changes can be [watched](Store::watch) from any retained
//! revision with no gap and no duplicate, and keys can be attached to expiring leases.
//!
//! Implementations: [`MemStore`] here (tests, embedding), and `flotilla-raft-store`'s
//! replicated store. The building blocks they share are public so other implementations can
//! reuse them: [`MvccState`] (the pure state machine), [`KvEngine`] (state plus watchers) and
//! [`Lessor`] (lease deadlines). Every implementation should pass the conformance suite
//! (`conformance`, behind the `test-util` feature).

mod compactor;
mod engine;
mod error;
mod lessor;
mod memory;
mod mvcc;
mod types;
mod validate;
mod watch;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

use async_trait::async_trait;

pub use compactor::{
    CompactionPass, Compactor, CompactorConfig, CompactorError, CompactorMetrics,
    DEFAULT_COMPACTION_INTERVAL, Retention,
};
pub use engine::{DEFAULT_PROGRESS_INTERVAL, KvEngine, ProgressHandle, WatchStream};
pub use error::{Error, Problem, Result};
pub use lessor::Lessor;
pub use memory::{LEASE_CHECK_INTERVAL, MemStore, new_lease_id};
pub use mvcc::{
    ApplyOutcome, Command, CommandResult, INITIAL_REVISION, Mutation, MvccSnapshot, MvccState, VersionData,
    VersionRecord,
};
pub use types::*;
pub use validate::{validate_command, validate_key_range, validate_range};

/// A revisioned key-value store with etcd v3 semantics.
///
/// All methods are safe to call concurrently. Writes are atomic and totally ordered by
/// revision; reads are linearizable unless the request asks for a serializable read.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads keys at the current or a past revision.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Applies a transaction: compares, then one branch, atomically at one revision.
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse>;

    /// Discards history below `revision`; reads and watches before it then fail with
    /// [`Error::Compacted`]. The latest version of every live key is kept.
    async fn compact(&self, revision: Revision) -> Result<CompactResponse>;

    /// Streams every change in `req.range` from `req.start_revision` on, in revision order.
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream>;

    /// Grants a lease of `ttl` seconds; `id` 0 lets the store choose the id.
    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<LeaseGrantResponse>;

    /// Renews a lease to its full TTL.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse>;

    /// Revokes a lease, deleting every key attached to it.
    async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader>;

    /// Reports a lease's remaining TTL and, when `keys` is set, its keys.
    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> Result<LeaseTimeToLiveResponse>;

    /// Lists the ids of live leases, in ascending order.
    async fn lease_leases(&self) -> Result<Vec<LeaseId>>;

    /// Writes one key; a transaction with no compares and one put.
    async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        let resp = self.txn(TxnRequest { success: vec![RequestOp::Put(req)], ..Default::default() }).await?;
        match resp.responses.into_iter().next() {
            Some(ResponseOp::Put(put)) => Ok(put),
            other => Err(Error::Storage(format!("put answered with {other:?}"))),
        }
    }

    /// Deletes one key or a range; a transaction with no compares and one delete.
    async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let resp =
            self.txn(TxnRequest { success: vec![RequestOp::DeleteRange(req)], ..Default::default() }).await?;
        match resp.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(del)) => Ok(del),
            other => Err(Error::Storage(format!("delete answered with {other:?}"))),
        }
    }

    /// Reads one key at the current revision; `None` when it does not exist.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let resp = self.range(RangeRequest::new(KeyRange::key(key))).await?;
        Ok(resp.kvs.into_iter().next())
    }
}
