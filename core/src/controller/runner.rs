//! [`Controller`]: a reconciler, its triggers, its work queue and its workers.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::informer::{Change, Informer};
use super::metrics::ControllerMetrics;
use super::queue::{QueueConfig, WorkQueue};
use super::{Action, ObjectKey, Reconciler};
use crate::object::Resource;

/// How a [`Controller`] runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Reconciles running at once (each for a different key).
    pub concurrency: usize,
    /// Retry pacing.
    pub queue: QueueConfig,
    /// How long in-flight reconciles may finish after shutdown before they are aborted.
    pub shutdown_grace: Duration,
    /// Reconcile every primary object this often even if nothing changes (`None`: never).
    pub resync: Option<Duration>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            concurrency: 4,
            queue: QueueConfig::default(),
            shutdown_grace: Duration::from_secs(5),
            resync: None,
        }
    }
}

/// What a trigger task needs: where to put keys and how to resynchronise after lagging.
#[derive(Clone)]
struct TriggerCtx {
    queue: WorkQueue<ObjectKey>,
    resync_all: Arc<dyn Fn() + Send + Sync>,
    shutdown: CancellationToken,
}

type Trigger = Box<dyn FnOnce(TriggerCtx) -> BoxFuture<'static, ()> + Send>;

/// A controller for primary kind `K` with reconciler `R`.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use flotilla_core::controller::*;
/// # use k8s_openapi::api::apps::v1::ReplicaSet;
/// # use k8s_openapi::api::core::v1::Pod;
/// # async fn f(informers: Informers, reconciler: impl Reconciler,
/// #     is_leader: tokio::sync::watch::Receiver<bool>,
/// #     shutdown: tokio_util::sync::CancellationToken) {
/// Controller::new("replicaset", informers.informer::<ReplicaSet>(), reconciler)
///     .owns(informers.informer::<Pod>())
///     .run(is_leader, shutdown)
///     .await;
/// # }
/// ```
pub struct Controller<K: Resource, R: Reconciler> {
    name: String,
    primary: Informer<K>,
    reconciler: Arc<R>,
    triggers: Vec<Trigger>,
    synced: Vec<BoxFuture<'static, ()>>,
    config: ControllerConfig,
    metrics: ControllerMetrics,
    primary_filter: Option<PrimaryFilter<K>>,
}

/// Which changes of the primary kind trigger a reconcile.
type PrimaryFilter<K> = Arc<dyn Fn(&Change<K>) -> bool + Send + Sync>;

/// Forwards an informer's changes as keys until shutdown; after lagging, resyncs everything.
async fn forward<C: Resource>(
    mut rx: broadcast::Receiver<Change<C>>,
    ctx: TriggerCtx,
    map: impl Fn(&Change<C>) -> Vec<ObjectKey> + Send,
) {
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            change = rx.recv() => match change {
                Ok(change) => {
                    for key in map(&change) {
                        ctx.queue.add(key);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "controller trigger lagged; resyncing");
                    (ctx.resync_all)();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The keys of `K` objects that control `child` according to its owner references.
fn controller_keys<K: Resource>(
    child: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<ObjectKey> {
    let t = K::TYPE;
    let api_version =
        if t.group.is_empty() { t.version.to_string() } else { format!("{}/{}", t.group, t.version) };
    let group_of = |av: &str| av.rsplit_once('/').map(|(g, _)| g.to_string()).unwrap_or_default();
    let refs = child.owner_references.iter().flatten();
    refs.filter(|r| {
        r.controller == Some(true) && r.kind == t.kind && group_of(&r.api_version) == group_of(&api_version)
    })
    .map(|r| ObjectKey {
        namespace: if t.namespaced { child.namespace.clone() } else { None },
        name: r.name.clone(),
    })
    .collect()
}

impl<K: Resource, R: Reconciler> Controller<K, R> {
    /// A controller reconciling `K` objects, triggered by their changes.
    pub fn new(name: &str, primary: Informer<K>, reconciler: R) -> Self {
        let synced = {
            let p = primary.clone();
            Box::pin(async move { p.synced().await }) as BoxFuture<'static, ()>
        };
        Controller {
            name: name.to_string(),
            primary,
            reconciler: Arc::new(reconciler),
            triggers: Vec::new(),
            synced: vec![synced],
            config: ControllerConfig::default(),
            metrics: ControllerMetrics::default(),
            primary_filter: None,
        }
    }

    /// Reconciles a primary object only for the changes `filter` accepts (by default, every
    /// change), for example to ignore status writes the controller does not act on.
    pub fn filter_primary(mut self, filter: impl Fn(&Change<K>) -> bool + Send + Sync + 'static) -> Self {
        self.primary_filter = Some(Arc::new(filter));
        self
    }

    /// Runs with `config`.
    pub fn with_config(mut self, config: ControllerConfig) -> Self {
        self.config = config;
        self
    }

    /// Records into `metrics` (which the binary registers with its Prometheus registry).
    pub fn with_metrics(mut self, metrics: ControllerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also reconciles the controller of every `C` object that changes (through its
    /// controller owner reference of kind `K`).
    pub fn owns<C: Resource>(self, child: Informer<C>) -> Self {
        self.watches(child, |change: &Change<C>| {
            let mut keys: Vec<ObjectKey> = Vec::new();
            for obj in [change.old(), change.latest()].into_iter().flatten() {
                for k in controller_keys::<K>(obj.meta()) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            keys
        })
    }

    /// Also reconciles the keys `map` returns for every change of a `C` object.
    pub fn watches<C: Resource>(
        mut self,
        other: Informer<C>,
        map: impl Fn(&Change<C>) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        // Subscribe now, not when run, so changes between composing and running are not lost.
        let rx = other.subscribe();
        self.triggers.push(Box::new(move |ctx| Box::pin(forward(rx, ctx, map))));
        self.synced.push(Box::pin(async move { other.synced().await }));
        self
    }

    fn enqueue_all(primary: &Informer<K>, queue: &WorkQueue<ObjectKey>) {
        for obj in primary.cache().list() {
            queue.add(ObjectKey::of(obj.as_ref()));
        }
    }

    /// Runs until `shutdown`: reconciles while `is_leader` is true, aborting in-flight
    /// reconciles as soon as it turns false, and finishing them (within the configured grace)
    /// on shutdown. The informers must be started ([`Informers::start`](super::Informers::start)).
    pub async fn run(self, mut is_leader: watch::Receiver<bool>, shutdown: CancellationToken) {
        let Controller { name, primary, reconciler, triggers, synced, config, metrics, primary_filter } =
            self;
        let queue = WorkQueue::<ObjectKey>::new(config.queue.clone());
        let tracker = TaskTracker::new();
        let resync_all: Arc<dyn Fn() + Send + Sync> = {
            let (p, q) = (primary.clone(), queue.clone());
            Arc::new(move || Self::enqueue_all(&p, &q))
        };
        let ctx =
            TriggerCtx { queue: queue.clone(), resync_all: resync_all.clone(), shutdown: shutdown.clone() };
        {
            let primary_rx = primary.subscribe();
            let ctx = ctx.clone();
            tracker.spawn(forward(primary_rx, ctx, move |c: &Change<K>| {
                if primary_filter.as_ref().is_some_and(|f| !f(c)) {
                    return Vec::new();
                }
                c.latest().or(c.old()).map(ObjectKey::of).into_iter().collect()
            }));
        }
        for t in triggers {
            tracker.spawn(t(ctx.clone()));
        }
        if let Some(every) = config.resync {
            let (resync, token) = (resync_all.clone(), shutdown.clone());
            tracker.spawn(async move {
                let mut tick = tokio::time::interval_at(Instant::now() + every, every);
                loop {
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => return,
                        _ = tick.tick() => resync(),
                    }
                }
            });
        }
        tracing::debug!(controller = %name, "waiting for caches");
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {}
            _ = futures::future::join_all(synced) => {}
        }
        let workers =
            Workers { name: name.clone(), queue: queue.clone(), reconciler, metrics: metrics.clone() };
        let mut leader_may_change = true;
        'terms: while !shutdown.is_cancelled() {
            // Stand by until we lead.
            loop {
                let leading = *is_leader.borrow_and_update();
                if leading {
                    break;
                }
                metrics.set_leader(&name, false);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'terms,
                    r = is_leader.changed(), if leader_may_change => if r.is_err() { leader_may_change = false },
                    // The value can never change again: wait for shutdown only.
                    _ = std::future::pending::<()>(), if !leader_may_change => {}
                }
            }
            metrics.set_leader(&name, true);
            tracing::info!(controller = %name, "leading; reconciling");
            // Whatever changed while we stood by, or was aborted when we last lost leadership.
            resync_all();
            let stop_taking = CancellationToken::new();
            let mut running = JoinSet::new();
            for _ in 0..config.concurrency.max(1) {
                running.spawn(workers.clone().run(stop_taking.clone()));
            }
            let lost = async {
                if !leader_may_change {
                    return std::future::pending().await;
                }
                let changed = is_leader.wait_for(|l| !*l).await.is_ok();
                if !changed {
                    // The sender is gone while we lead: we lead until shutdown.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    stop_taking.cancel();
                    let drained = tokio::time::timeout(config.shutdown_grace, async {
                        while running.join_next().await.is_some() {}
                    });
                    if drained.await.is_err() {
                        tracing::warn!(controller = %name, "reconciles did not finish within the grace period; aborting");
                        running.shutdown().await;
                    }
                    break 'terms;
                }
                _ = lost => {
                    tracing::info!(controller = %name, "lost leadership; aborting reconciles");
                    running.shutdown().await;
                }
            }
        }
        metrics.set_leader(&name, false);
        queue.shut_down();
        tracker.close();
        tracker.wait().await;
        tracing::debug!(controller = %name, "stopped");
    }
}

/// What each worker task shares.
struct Workers<R> {
    name: String,
    queue: WorkQueue<ObjectKey>,
    reconciler: Arc<R>,
    metrics: ControllerMetrics,
}

impl<R> Clone for Workers<R> {
    fn clone(&self) -> Self {
        Workers {
            name: self.name.clone(),
            queue: self.queue.clone(),
            reconciler: self.reconciler.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<R: Reconciler> Workers<R> {
    async fn run(self, stop_taking: CancellationToken) {
        loop {
            let item = tokio::select! {
                biased;
                _ = stop_taking.cancelled() => return,
                item = self.queue.get() => match item {
                    Some(item) => item,
                    None => return,
                },
            };
            self.metrics.set_depth(&self.name, self.queue.len() + self.queue.delayed());
            let key = item.key().clone();
            let started = Instant::now();
            let result = self.reconciler.reconcile(&key).await;
            let took = started.elapsed();
            match result {
                Ok(action) => {
                    self.metrics.observe(&self.name, "success", took);
                    self.queue.forget(&key);
                    if let Action::RequeueAfter(d) = action {
                        self.queue.add_after(key.clone(), d);
                    }
                }
                Err(e) => {
                    self.metrics.observe(&self.name, "error", took);
                    let delay = self.queue.add_rate_limited(key.clone());
                    tracing::warn!(controller = %self.name, object = %key, error = %e, retry_in = ?delay, "reconcile failed");
                }
            }
            drop(item);
        }
    }
}
