use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::time::Instant;

use super::*;
use crate::store::{
    CompactResponse, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveResponse, MemStore,
    PutRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse, WatchRequest, WatchStream,
};

const INTERVAL: Duration = Duration::from_secs(10);
/// How long (tokio time) a test waits for a pass before it gives up.
const EVENTUALLY: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

fn config(retention: Retention) -> CompactorConfig {
    CompactorConfig { interval: INTERVAL, retention }
}

/// Writes `k = value` and returns the write's revision.
async fn write(store: &dyn Store, value: &str) -> Revision {
    store.put(PutRequest::new("k", value)).await.expect("put into a memory store").header.revision
}

/// Reads `k` at `revision`.
async fn read_at(store: &dyn Store, revision: Revision) -> Result<String, StoreError> {
    let resp = store.range(RangeRequest::new(KeyRange::key("k")).at(revision)).await?;
    Ok(resp.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()).unwrap_or_default())
}

/// Polls `check` in tokio time until it holds; panics naming `what` after [`EVENTUALLY`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not reached within {EVENTUALLY:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Starts `compactor`, returning its metrics, its shutdown token and its task.
fn start(compactor: Compactor) -> (CompactorMetrics, CancellationToken, tokio::task::JoinHandle<()>) {
    let (metrics, shutdown) = (compactor.metrics(), CancellationToken::new());
    let task = tokio::spawn(compactor.run(shutdown.clone()));
    (metrics, shutdown, task)
}

async fn stop(shutdown: CancellationToken, task: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the compactor did not stop on shutdown")
        .expect("the compactor task panicked");
}

#[tokio::test(start_paused = true)]
async fn periodic_retention_compacts_to_the_revision_of_the_previous_tick() {
    let store = Arc::new(MemStore::new());
    let oldest = write(store.as_ref(), "v1").await;
    write(store.as_ref(), "v2").await;
    let first_tick = write(store.as_ref(), "v3").await;
    let (metrics, shutdown, task) =
        start(Compactor::new(store.clone(), config(Retention::Periodic)).expect("valid config"));

    eventually("the first tick", || metrics.total_passes() == 1).await;
    assert_eq!(metrics.passes("skipped"), 1, "the first tick only reads the revision");
    assert_eq!(read_at(store.as_ref(), oldest).await, Ok("v1".to_string()), "nothing compacted yet");

    let after_first_tick = write(store.as_ref(), "v4").await;
    write(store.as_ref(), "v5").await;
    eventually("the second tick's compaction", || metrics.compactions() == 1).await;
    assert_eq!(metrics.last_revision(), first_tick);
    assert_eq!(
        read_at(store.as_ref(), first_tick - 1).await,
        Err(StoreError::Compacted { requested: first_tick - 1, compact_revision: first_tick })
    );
    assert_eq!(read_at(store.as_ref(), first_tick).await, Ok("v3".to_string()));
    assert_eq!(read_at(store.as_ref(), after_first_tick).await, Ok("v4".to_string()));
    stop(shutdown, task).await;
}

#[tokio::test(start_paused = true)]
async fn revision_retention_keeps_exactly_the_last_n_revisions() {
    let store = Arc::new(MemStore::new());
    let mut current = 0;
    for i in 0..10 {
        current = write(store.as_ref(), &format!("v{i}")).await;
    }
    let (metrics, shutdown, task) =
        start(Compactor::new(store.clone(), config(Retention::Revisions(3))).expect("valid config"));

    eventually("the first compaction", || metrics.compactions() == 1).await;
    let kept = current - 2;
    assert_eq!(metrics.last_revision(), kept);
    assert_eq!(read_at(store.as_ref(), kept).await, Ok("v7".to_string()));
    assert_eq!(
        read_at(store.as_ref(), kept - 1).await,
        Err(StoreError::Compacted { requested: kept - 1, compact_revision: kept })
    );

    eventually("a second tick", || metrics.total_passes() == 2).await;
    assert_eq!(metrics.passes("skipped"), 1, "with no new writes there is nothing to compact");
    assert_eq!(metrics.compactions(), 1);
    stop(shutdown, task).await;
}

#[tokio::test]
async fn revision_retention_skips_a_store_with_fewer_revisions() {
    let store = Arc::new(MemStore::new());
    let first = write(store.as_ref(), "v1").await;
    let mut compactor =
        Compactor::new(store.clone(), config(Retention::Revisions(100))).expect("valid config");
    assert_eq!(compactor.run_once().await, CompactionPass::Skipped);
    assert_eq!(read_at(store.as_ref(), first).await, Ok("v1".to_string()));
}

#[tokio::test]
async fn several_compactors_on_one_store_are_harmless() {
    let store = Arc::new(MemStore::new());
    let mut one = Compactor::new(store.clone(), config(Retention::Periodic)).expect("valid config");
    let mut two = Compactor::new(store.clone(), config(Retention::Periodic)).expect("valid config");
    let seen = write(store.as_ref(), "v1").await;
    assert_eq!(one.run_once().await, CompactionPass::Skipped);
    assert_eq!(two.run_once().await, CompactionPass::Skipped);
    write(store.as_ref(), "v2").await;

    assert_eq!(one.run_once().await, CompactionPass::Compacted(seen));
    assert_eq!(two.run_once().await, CompactionPass::AlreadyCompacted(seen), "counted as done, not failed");
    assert_eq!(two.metrics().last_revision(), seen);
    assert_eq!(one.metrics().passes("failed") + two.metrics().passes("failed"), 0);
    assert_eq!(read_at(store.as_ref(), seen).await, Ok("v1".to_string()), "one interval still kept");

    // A compaction point learned from the store is not asked for again.
    let ahead = write(store.as_ref(), "v3").await;
    store.compact(ahead).await.expect("compact by hand");
    assert_eq!(two.run_once().await, CompactionPass::AlreadyCompacted(ahead));
    assert_eq!(two.run_once().await, CompactionPass::Skipped);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_task() {
    let store = Arc::new(MemStore::new());
    let (metrics, shutdown, task) =
        start(Compactor::new(store, config(Retention::Periodic)).expect("valid config"));
    eventually("the first tick", || metrics.total_passes() == 1).await;
    stop(shutdown, task).await;
}

#[tokio::test]
async fn an_invalid_config_is_refused_naming_the_field() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let zero = CompactorConfig { interval: Duration::ZERO, ..CompactorConfig::default() };
    let err = Compactor::new(store.clone(), zero).err().expect("a zero interval is refused");
    assert!(matches!(err, CompactorError::InvalidConfig { field: "interval", .. }), "{err:?}");
    assert!(err.to_string().contains("interval"), "{err}");

    let none = config(Retention::Revisions(0));
    let err = Compactor::new(store, none).err().expect("keeping no revision is refused");
    assert!(matches!(err, CompactorError::InvalidConfig { field: "retention", .. }), "{err:?}");
    assert_eq!(CompactorConfig::default().validate(), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_pass_is_logged_and_retried_next_tick() {
    let store = Arc::new(FlakyStore { inner: MemStore::new(), fail_compact: AtomicBool::new(true) });
    write(store.as_ref(), "v1").await;
    let (metrics, shutdown, task) =
        start(Compactor::new(store.clone(), config(Retention::Periodic)).expect("valid config"));
    eventually("the first tick", || metrics.total_passes() == 1).await;
    let second_tick = write(store.as_ref(), "v2").await;
    eventually("the failed compaction", || metrics.passes("failed") == 1).await;

    store.fail_compact.store(false, Ordering::SeqCst);
    write(store.as_ref(), "v3").await;
    eventually("the compaction of the next tick", || metrics.compactions() == 1).await;
    assert_eq!(metrics.last_revision(), second_tick, "compacted to the revision the failed tick read");
    assert!(matches!(read_at(store.as_ref(), second_tick - 1).await, Err(StoreError::Compacted { .. })));
    stop(shutdown, task).await;
}

#[tokio::test]
async fn metrics_render_in_prometheus_text_format() {
    let store = Arc::new(MemStore::new());
    let mut compactor = Compactor::new(store.clone(), config(Retention::Revisions(1))).expect("valid config");
    let rev = write(store.as_ref(), "v1").await;
    assert_eq!(compactor.run_once().await, CompactionPass::Compacted(rev));
    let mut registry = Registry::default();
    compactor.metrics().register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
    assert!(out.contains(r#"flotilla_store_compactor_passes_total{result="compacted"} 1"#), "{out}");
    assert!(out.contains(&format!("flotilla_store_compactor_revision {rev}")), "{out}");
}

/// A memory store whose compactions fail with `Unavailable` while `fail_compact` is set.
struct FlakyStore {
    inner: MemStore,
    fail_compact: AtomicBool,
}

#[async_trait]
impl Store for FlakyStore {
    async fn range(&self, req: RangeRequest) -> crate::store::Result<RangeResponse> {
        self.inner.range(req).await
    }

    async fn txn(&self, req: TxnRequest) -> crate::store::Result<TxnResponse> {
        self.inner.txn(req).await
    }

    async fn compact(&self, revision: Revision) -> crate::store::Result<CompactResponse> {
        if self.fail_compact.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable { reason: "test: compactions fail".to_string() });
        }
        self.inner.compact(revision).await
    }

    async fn watch(&self, req: WatchRequest) -> crate::store::Result<WatchStream> {
        self.inner.watch(req).await
    }

    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> crate::store::Result<LeaseGrantResponse> {
        self.inner.lease_grant(id, ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> crate::store::Result<LeaseKeepAliveResponse> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> crate::store::Result<ResponseHeader> {
        self.inner.lease_revoke(id).await
    }

    async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> crate::store::Result<LeaseTimeToLiveResponse> {
        self.inner.lease_time_to_live(id, keys).await
    }

    async fn lease_leases(&self) -> crate::store::Result<Vec<LeaseId>> {
        self.inner.lease_leases().await
    }
}
