//! [`Compactor`]: discards old store history on a timer, as kube-apiserver's compactor and
//! etcd's `--auto-compaction-mode` do.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Store;
use super::error::Error as StoreError;
use super::types::{KeyRange, RangeRequest, Revision};

/// kube-apiserver's default `--etcd-compaction-interval`.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The key the compactor reads to learn the current revision (only the response header is
/// used; the key need not exist).
const PROBE_KEY: &[u8] = b"/";

/// What history a [`Compactor`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Keep at least one interval of history: each pass compacts to the revision the
    /// previous pass saw (kube-apiserver's compactor, etcd's `--auto-compaction-mode=periodic`).
    #[default]
    Periodic,
    /// Keep the last `n` revisions (etcd's `--auto-compaction-mode=revision`); `n` must be at
    /// least 1.
    Revisions(u64),
}

/// How a [`Compactor`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactorConfig {
    /// Time between passes; must not be zero (a caller that wants compaction off runs no
    /// compactor). Default [`DEFAULT_COMPACTION_INTERVAL`].
    pub interval: Duration,
    /// What each pass keeps. Default [`Retention::Periodic`].
    pub retention: Retention,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig { interval: DEFAULT_COMPACTION_INTERVAL, retention: Retention::default() }
    }
}

impl CompactorConfig {
    /// Checks the configuration; [`Compactor::new`] calls it, and a binary may call it while
    /// parsing its flags.
    pub fn validate(&self) -> Result<(), CompactorError> {
        if self.interval.is_zero() {
            return Err(CompactorError::InvalidConfig {
                field: "interval",
                reason: "must be positive (run no compactor to disable compaction)".to_string(),
            });
        }
        if let Retention::Revisions(n) = self.retention
            && (n == 0 || i64::try_from(n).is_err())
        {
            return Err(CompactorError::InvalidConfig {
                field: "retention",
                reason: format!("must keep between 1 and {} revisions, not {n}", i64::MAX),
            });
        }
        Ok(())
    }
}

/// Why a [`Compactor`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactorError {
    /// A [`CompactorConfig`] field is invalid.
    #[error("invalid compactor {field}: {reason}")]
    InvalidConfig {
        /// The field (`interval`, `retention`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// How one compaction pass ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactionPass {
    /// The store was compacted to this revision.
    Compacted(Revision),
    /// The store was already compacted at or past the target; the revision is its compaction
    /// point as the store reported it.
    AlreadyCompacted(Revision),
    /// There was nothing new to compact (the first periodic pass, an idle store, or fewer
    /// revisions than the retention).
    Skipped,
    /// Reading the revision or compacting failed (and was logged); the next pass tries again.
    Failed(StoreError),
}

impl CompactionPass {
    /// The pass's `result` label in [`CompactorMetrics`].
    pub fn result(&self) -> &'static str {
        match self {
            CompactionPass::Compacted(_) => "compacted",
            CompactionPass::AlreadyCompacted(_) => "already_compacted",
            CompactionPass::Skipped => "skipped",
            CompactionPass::Failed(_) => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// What a [`Compactor`] reports, in Prometheus' data model. Cheap to clone; clones share the
/// values.
#[derive(Clone, Debug, Default)]
pub struct CompactorMetrics {
    passes: Family<ResultLabel, Counter>,
    revision: Gauge,
}

impl CompactorMetrics {
    /// Registers the metrics under `flotilla_store_compactor_*`: `passes_total{result}` (see
    /// [`CompactionPass::result`]) and `revision` (the compaction point last seen, 0 before any).
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("flotilla_store_compactor");
        sub.register("passes", "Compaction passes by result", self.passes.clone());
        sub.register(
            "revision",
            "The store's compaction point as the compactor last saw it",
            self.revision.clone(),
        );
    }

    /// Passes so far that ended with `result` (see [`CompactionPass::result`]).
    pub fn passes(&self, result: &str) -> u64 {
        self.passes.get_or_create(&ResultLabel { result: result.to_string() }).get()
    }

    /// Passes so far, whatever their result.
    pub fn total_passes(&self) -> u64 {
        ["compacted", "already_compacted", "skipped", "failed"].iter().map(|r| self.passes(r)).sum()
    }

    /// Compactions this compactor made.
    pub fn compactions(&self) -> u64 {
        self.passes("compacted")
    }

    /// The store's compaction point as the compactor last saw it (the revision it compacted
    /// to, or the one the store reported when already compacted past the target); 0 before
    /// any. Reads below it fail with
    /// [`Error::Compacted`](super::Error::Compacted).
    pub fn last_revision(&self) -> Revision {
        self.revision.get()
    }

    fn record(&self, pass: &CompactionPass) {
        self.passes.get_or_create(&ResultLabel { result: pass.result().to_string() }).inc();
        if let CompactionPass::Compacted(rev) | CompactionPass::AlreadyCompacted(rev) = pass {
            self.revision.set(*rev);
        }
    }
}

/// Compacts a store on a timer, as kube-apiserver's compactor and etcd's
/// `--auto-compaction-mode` do.
///
/// Nothing else compacts a [`Store`]: without a compactor every version of every key stays
/// forever. Every [`interval`](CompactorConfig::interval) (5 minutes by default, as
/// kube-apiserver's `--etcd-compaction-interval`) the compactor reads the store's current
/// revision and compacts according to its [`Retention`]:
///
/// - [`Retention::Periodic`] (the default) compacts to the revision it read at the *previous*
///   pass, as kube-apiserver does. History written during the last interval therefore always
///   stays readable: a watcher that fell behind, or a client resuming a list or watch from a
///   resourceVersion it saw up to one interval ago, does not get `Compacted`. The first pass
///   (one interval after start) only reads the revision; the first compaction comes one
///   interval later.
/// - [`Retention::Revisions`] keeps the last `n` revisions (etcd's
///   `--auto-compaction-mode=revision`): each pass compacts to `current - n + 1`, so revisions
///   `current - n + 1 ..= current` stay readable.
///
/// The current revision comes from the header of a serializable, count-only read of one key:
/// no quorum round trip on a replicated store, and a member whose state lags only makes the
/// compactor keep more history, never less.
///
/// A pass that finds the store already compacted at or past its target (another compactor,
/// or a client of the etcd endpoint, got there first: [`Error::Compacted`](super::Error::Compacted))
/// counts as done. A pass that fails otherwise is logged and the next pass tries again with a
/// fresh target. A pass with nothing new to compact (an idle store) sends nothing.
///
/// **Several compactors on one store are harmless.** Every member of a replicated store may
/// run one (`flotilla server` does): compaction is idempotent, and each compactor only
/// compacts to a revision that its own rule allows (one it read an interval earlier, or `n`
/// below one it just read), so the store always keeps at least one interval or `n`
/// revisions, however many run and however their timers are phased. The cost is at most one
/// redundant compaction request per member and interval.
///
/// [`metrics`](Self::metrics) counts the passes by outcome and records the compaction point;
/// the caller reads them, or registers them with its `prometheus_client` registry.
pub struct Compactor {
    store: Arc<dyn Store>,
    config: CompactorConfig,
    /// The revision the previous pass read (periodic retention).
    previous: Option<Revision>,
    /// The highest compaction point known; targets at or below it are skipped.
    compacted: Revision,
    metrics: CompactorMetrics,
}

impl Compactor {
    /// A compactor of `store`; fails naming the field when `config` is invalid.
    pub fn new(store: Arc<dyn Store>, config: CompactorConfig) -> Result<Compactor, CompactorError> {
        config.validate()?;
        Ok(Compactor { store, config, previous: None, compacted: 0, metrics: CompactorMetrics::default() })
    }

    /// The compactor's metrics (shared with it: they change as it runs).
    pub fn metrics(&self) -> CompactorMetrics {
        self.metrics.clone()
    }

    /// Runs a pass every [`interval`](CompactorConfig::interval), the first one interval
    /// after the call, until `shutdown`. A pass in progress at shutdown is abandoned (the
    /// store finishes or drops the compaction on its own).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let interval = self.config.interval;
        info!(?interval, retention = ?self.config.retention, "compacting the store periodically");
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // `interval`'s first tick is immediate; the first pass comes one interval later.
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.run_once() => {}
            }
        }
        debug!("store compactor stopped");
    }

    /// One pass, as [`run`](Self::run) makes at each tick: reads the current revision and
    /// compacts to the target [`Retention`] gives. Failures are logged here.
    pub async fn run_once(&mut self) -> CompactionPass {
        let pass = self.pass().await;
        match &pass {
            CompactionPass::Compacted(revision) => info!(revision, "compacted the store"),
            CompactionPass::AlreadyCompacted(revision) => debug!(revision, "store already compacted"),
            CompactionPass::Skipped => debug!("nothing new to compact"),
            CompactionPass::Failed(error) => {
                warn!(%error, "compacting the store failed; retrying next interval")
            }
        }
        self.metrics.record(&pass);
        pass
    }

    async fn pass(&mut self) -> CompactionPass {
        let probe = RangeRequest {
            count_only: true,
            serializable: true,
            ..RangeRequest::new(KeyRange::key(PROBE_KEY))
        };
        let current = match self.store.range(probe).await {
            Ok(resp) => resp.header.revision,
            Err(e) => return CompactionPass::Failed(e),
        };
        let target = match self.config.retention {
            Retention::Periodic => self.previous.replace(current),
            // `validate` checked that `n` fits.
            Retention::Revisions(n) => Some(current.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX)) + 1),
        };
        let Some(target) = target.filter(|t| *t > self.compacted) else {
            return CompactionPass::Skipped;
        };
        match self.store.compact(target).await {
            Ok(_) => {
                self.compacted = target;
                CompactionPass::Compacted(target)
            }
            Err(StoreError::Compacted { compact_revision, .. }) => {
                self.compacted = self.compacted.max(compact_revision);
                CompactionPass::AlreadyCompacted(compact_revision)
            }
            Err(e) => CompactionPass::Failed(e),
        }
    }
}
