//! The cluster under test, in this process: a registry (pods served from a watch cache) on the
//! memory store or on three raft members over loopback (fsync on), the in-process client, the
//! real scheduler with the default profile, and simulated nodes. A node is only a Node object,
//! created `Ready` with its allocatable resources posted through the status subresource: no
//! kubelet runs, nothing heartbeats, nothing starts the pods.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_benches::backend::Backend;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{Registry, WatchCacheConfig};
use flotilla_core::scheduler::runtime::{Scheduler, SchedulerConfig, SchedulerStats, default_profiles};
use flotilla_core::store::{KeyRange, RangeRequest, Store};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::workloads::{INITIAL_NAMESPACE, MEASURED_NAMESPACE, Workload};

/// Node writes in flight at once while the nodes are registered.
const SETUP_CONCURRENCY: usize = 64;
/// How long the scheduler may take to stop before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How often a wait checks its condition.
pub(crate) const POLL: Duration = Duration::from_millis(10);

pub(crate) use flotilla_benches::backend::StoreKind;

/// The name of simulated node `i`.
pub(crate) fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// What [`Cluster::start`] needs.
pub(crate) struct ClusterConfig {
    /// The store.
    pub(crate) store: StoreKind,
    /// Whose nodes (their zone labels).
    pub(crate) workload: Workload,
    /// Simulated nodes.
    pub(crate) nodes: usize,
    /// Pods the run creates in all (sizes the pod watch cache).
    pub(crate) pods: usize,
    /// Seeds the scheduler's tie-breaking and the nodes' random zones.
    pub(crate) seed: u64,
    /// How long registering the nodes may take.
    pub(crate) setup_timeout: Duration,
    /// Changes the pod watch cache keeps for resuming watches; 0 serves pods without one.
    pub(crate) watch_cache_capacity: usize,
    /// Compacts the store's history to its current revision this often (kube-apiserver does
    /// every 5 minutes; Flotilla's own server does not); `None`: never.
    pub(crate) compact_every: Option<Duration>,
}

/// A running cluster; [`shutdown`](Self::shutdown) stops it.
pub(crate) struct Cluster {
    /// The in-process client of the registry.
    pub(crate) client: Arc<dyn Client>,
    /// What the scheduler is doing.
    pub(crate) scheduler: watch::Receiver<SchedulerStats>,
    /// How long registering the nodes took, until the scheduler had them all.
    pub(crate) setup: Duration,
    registry: Registry,
    backend: Backend,
    _dir: tempfile::TempDir,
    scheduler_task: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Cluster {
    /// Starts the store, the registry and the scheduler, creates the namespaces and registers
    /// the nodes, and waits until the scheduler has them all.
    pub(crate) async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let (backend, store) = Backend::start(config.store, dir.path()).await?;
        let registry = Registry::new(store, KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let mut cluster = Cluster {
            client,
            scheduler: watch::channel(SchedulerStats::default()).1,
            setup: Duration::ZERO,
            registry,
            backend,
            _dir: dir,
            scheduler_task: None,
            compactor: None,
            stop: CancellationToken::new(),
        };
        match cluster.start_components(config).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start_components(&mut self, config: &ClusterConfig) -> anyhow::Result<()> {
        if config.watch_cache_capacity > 0 {
            // Every pod changes twice (created, bound): a buffer this deep lets a watcher that
            // falls behind during a burst catch up instead of being dropped and relisting.
            let defaults = WatchCacheConfig::default();
            let pod_cache = WatchCacheConfig {
                capacity: config.watch_cache_capacity,
                watcher_buffer: defaults.watcher_buffer.max(config.pods * 2),
            };
            self.registry.enable_watch_cache(&Pod::TYPE, pod_cache).await?;
        }
        if let Some(every) = config.compact_every {
            let task = compact(self.registry.store().clone(), every, self.stop.clone());
            self.compactor = Some(tokio::spawn(task));
        }
        for ns in [INITIAL_NAMESPACE, MEASURED_NAMESPACE] {
            let ns = Namespace {
                metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() },
                ..Default::default()
            };
            Api::<Namespace>::all(self.client.clone()).create(&ns).await?;
        }
        // The API server sets a pod's priority from its class (Priority admission), so the
        // high-priority pods of PreemptionBasic name this class instead of `priority: 10`.
        let high = PriorityClass {
            metadata: ObjectMeta {
                name: Some(crate::workloads::HIGH_PRIORITY_CLASS.into()),
                ..Default::default()
            },
            value: crate::workloads::HIGH_PRIORITY,
            ..Default::default()
        };
        Api::<PriorityClass>::all(self.client.clone()).create(&high).await?;
        let mut scheduler_config = SchedulerConfig::always_leader();
        scheduler_config.seed = config.seed;
        let scheduler = Scheduler::new(self.client.clone(), default_profiles(), scheduler_config)?;
        self.scheduler = scheduler.stats();
        self.scheduler_task = Some(tokio::spawn(scheduler.run(self.stop.clone())));

        let start = Instant::now();
        self.register_nodes(config).await?;
        self.setup = start.elapsed();
        Ok(())
    }

    async fn register_nodes(&self, config: &ClusterConfig) -> anyhow::Result<()> {
        let deadline = Instant::now() + config.setup_timeout;
        let mut rng = Workload::node_rng(config.seed);
        let nodes = Api::<Node>::all(self.client.clone());
        let registering = futures::stream::iter(0..config.nodes)
            .map(|i| {
                let name = node_name(i);
                let labels = config.workload.node_labels(&name, &mut rng);
                register_node(nodes.clone(), name, labels)
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<()>();
        tokio::time::timeout_at(deadline, registering).await.with_context(|| {
            format!("registering {} nodes took longer than {:?}", config.nodes, config.setup_timeout)
        })??;
        loop {
            let stats = *self.scheduler.borrow();
            if stats.ready && stats.nodes >= config.nodes {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the scheduler saw {} of {} nodes within {:?}",
                stats.nodes,
                config.nodes,
                config.setup_timeout
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the scheduler (given [`STOP_GRACE`]), the watch cache and the store.
    pub(crate) async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(mut task) = self.scheduler_task.take() {
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("# warning: the scheduler failed: {e}"),
                Err(_) => {
                    eprintln!("# warning: the scheduler did not stop within {STOP_GRACE:?}; aborted");
                    task.abort();
                }
            }
        }
        if let Some(task) = self.compactor.take() {
            let _ = task.await;
        }
        self.registry.shutdown().await;
        self.backend.shutdown().await;
    }
}

/// Compacts `store` to its current revision every `every` until `stop`.
async fn compact(store: Arc<dyn Store>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let probe = RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::key("/")) };
        let result = match store.range(probe).await {
            Ok(r) => store.compact(r.header.revision).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("# warning: compacting the store failed: {e}");
        }
    }
}

/// Creates a node with `labels`, then posts its status (4 CPUs, 32 GiB, 110 pods allocatable;
/// `Ready`) through the status subresource, as a registering kubelet would.
async fn register_node(
    nodes: Api<Node>,
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
    nodes.create(&node).await.with_context(|| format!("creating node {name}"))?;
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    let now = Timestamp::now();
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now).to_string();
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "simulated node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes
        .patch_status(&name, PatchType::Merge, &status)
        .await
        .with_context(|| format!("status of {name}"))?;
    Ok(())
}
