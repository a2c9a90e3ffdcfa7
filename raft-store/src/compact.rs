//! Building a snapshot and purging the log on demand ([`RaftStore::compact_log`]).

use std::time::Duration;

use flotilla_core::store::{Error, Result};
use openraft::type_config::async_runtime::WatchReceiver as _;

use crate::store::RaftStore;

impl RaftStore {
    /// Builds a snapshot of everything this member has applied and purges its whole log up
    /// to that snapshot, ignoring [`keep_logs_behind_snapshot`], then returns the snapshot's
    /// last log index (`None` when nothing was applied yet).
    ///
    /// A member that lags behind the purged index afterwards can only catch up by receiving
    /// the snapshot. The failure-testing harness forces this with `SIGUSR1` (see
    /// `docs/operations.md`); operators rarely need it, since a member snapshots by itself
    /// every [`snapshot_every`] entries. The purge itself may finish a little later: a
    /// leader keeps entries a replication in progress still sends.
    ///
    /// Waits at most `timeout` for the snapshot to be built.
    ///
    /// [`keep_logs_behind_snapshot`]: crate::RaftStoreConfig::keep_logs_behind_snapshot
    /// [`snapshot_every`]: crate::RaftStoreConfig::snapshot_every
    pub async fn compact_log(&self, timeout: Duration) -> Result<Option<u64>> {
        let raft = self.raft();
        let unavailable =
            |what: &str, e: &dyn std::fmt::Display| Error::Unavailable { reason: format!("{what}: {e}") };
        let Some(applied) = raft.metrics().borrow_watched().last_applied.map(|l| l.index()) else {
            return Ok(None);
        };
        raft.trigger().snapshot().await.map_err(|e| unavailable("triggering a snapshot", &e))?;
        let built = raft
            .wait(Some(timeout))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index() >= applied),
                "snapshot covering the applied index",
            )
            .await
            .map_err(|e| unavailable("building a snapshot", &e))?;
        let Some(index) = built.snapshot.map(|s| s.index()) else {
            return Err(Error::Unavailable { reason: "the snapshot vanished after it was built".into() });
        };
        raft.trigger().purge_log(index).await.map_err(|e| unavailable("purging the log", &e))?;
        tracing::info!(index, "built a snapshot on request and purged the log up to it");
        Ok(Some(index))
    }
}
