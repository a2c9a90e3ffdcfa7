//! The cluster under test, all in this process: a registry on the memory store or on three
//! raft members over loopback, the real scheduler, the built-in controllers, hollow kubelets
//! for the simulated nodes, and those nodes' Lease heartbeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use flotilla_benches::backend::Backend;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::controller::ControllerMetrics;
use flotilla_core::controller::testing::HollowKubelet;
use flotilla_core::controllers::manager::ControllerManager;
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{Clock, Registry, WatchCacheConfig};
use flotilla_core::scheduler::runtime::{Scheduler, SchedulerConfig, SchedulerStats, default_profiles};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::measure::cpu_secs;

/// The namespace the Deployment lives in.
pub(crate) const NAMESPACE: &str = "bench";
/// Where node agents keep their heartbeat Leases (as in Kubernetes).
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Node writes in flight at once while the nodes are set up.
const SETUP_CONCURRENCY: usize = 32;
/// Heartbeats are spread over their interval in slices this long, as independent kubelets
/// would spread them, rather than sent in one burst.
const HEARTBEAT_TICK: Duration = Duration::from_millis(100);
/// Lease renewals in flight at once. Each slice is sent on time whatever the store's latency,
/// as independent kubelets would (waiting for a slice before the next once let a loaded store
/// stretch the round past the node grace period, and the node lifecycle controller then
/// evicted healthy nodes' pods); a renewal due while this many are pending counts as failed.
const HEARTBEAT_IN_FLIGHT: usize = 512;
/// How long each component may take to stop before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub(crate) use flotilla_benches::backend::StoreKind;

/// Counts the elections won after now into `elections`, until `stop`.
fn count_elections(
    backend: &Backend,
    elections: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let members = backend.members();
    let watch_member = |mut leading: watch::Receiver<bool>| {
        let (elections, stop) = (elections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    changed = leading.changed() => if changed.is_err() { return },
                }
                if *leading.borrow_and_update() {
                    elections.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    members.iter().map(|m| watch_member(m.leadership())).collect()
}

/// The name of simulated node `i`.
fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// Now, whole seconds (what `metav1.Time` carries).
fn now_seconds() -> String {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Creates node `i` and its Lease, then posts its status (allocatable 4 CPUs, 32 GiB,
/// 110 pods; `Ready`) through the status subresource, as a kubelet registering would.
async fn register_node(client: Arc<dyn Client>, i: usize) -> anyhow::Result<()> {
    let name = node_name(i);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
    }))?;
    let nodes = Api::<Node>::all(client.clone());
    nodes.create(&node).await.with_context(|| format!("creating node {name}"))?;
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    let now = now_seconds();
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "hollow kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": format!("10.100.{}.{}", i / 250, i % 250 + 1)},
            {"type": "Hostname", "address": name}],
    }});
    nodes
        .patch_status(&name, PatchType::Merge, &status)
        .await
        .with_context(|| format!("status of {name}"))?;
    let lease = Lease {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    Api::<Lease>::namespaced(client, LEASE_NAMESPACE)
        .create(&lease)
        .await
        .with_context(|| format!("lease of {name}"))?;
    Ok(())
}

/// Renews every node's Lease once per `every`, a slice of them each [`HEARTBEAT_TICK`]
/// (at most [`HEARTBEAT_IN_FLIGHT`] pending), until `stop`; counts failed renewals in
/// `failures`.
async fn heartbeat(
    leases: Api<Lease>,
    names: Vec<String>,
    every: Duration,
    failures: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let slices = usize::try_from(every.as_millis() / HEARTBEAT_TICK.as_millis()).unwrap_or(1).max(1);
    let per_tick = names.len().div_ceil(slices).max(1);
    let mut tick = tokio::time::interval(HEARTBEAT_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let limit = Arc::new(Semaphore::new(HEARTBEAT_IN_FLIGHT));
    let mut renewals = JoinSet::new();
    let mut next = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(_) = renewals.join_next(), if !renewals.is_empty() => continue,
            _ = tick.tick() => {}
        }
        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        for k in 0..per_tick.min(names.len()) {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                failures.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (leases, name, patch) =
                (leases.clone(), names[(next + k) % names.len()].clone(), patch.clone());
            let failures = failures.clone();
            renewals.spawn(async move {
                if leases.patch(&name, PatchType::Merge, &patch).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
        next = (next + per_tick) % names.len().max(1);
    }
    // A renewal stuck behind a stopping store must not hold up shutdown.
    renewals.shutdown().await;
}

/// What [`Cluster::start`] needs.
pub(crate) struct ClusterConfig {
    /// The store.
    pub(crate) store: StoreKind,
    /// Simulated nodes.
    pub(crate) nodes: usize,
    /// Lease renewal interval of each node; `None` sends no heartbeats.
    pub(crate) heartbeat: Option<Duration>,
    /// Events the pod watch cache buffers per watcher, and changes it keeps for resuming.
    pub(crate) pod_cache: WatchCacheConfig,
    /// How long the nodes may take to register and reach the scheduler.
    pub(crate) setup_timeout: Duration,
    /// Seeds the scheduler's tie-breaking between equally scored nodes.
    pub(crate) seed: u64,
    /// Binds the scheduler may run at once (`None`: its default).
    pub(crate) max_in_flight_binds: Option<usize>,
    /// Hollow kubelets sharing the nodes (each watches every pod and keeps a bounded number
    /// of writes in flight, so one instance for all nodes serializes what real kubelets do
    /// in parallel).
    pub(crate) kubelets: usize,
}

/// How long registering the nodes took.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    /// Wall time from the first node write until the scheduler had every node.
    pub(crate) elapsed: Duration,
    /// CPU seconds this process used meanwhile.
    pub(crate) cpu_secs: f64,
}

/// A running cluster; [`shutdown`](Self::shutdown) stops it.
pub(crate) struct Cluster {
    /// The in-process client of the registry.
    pub(crate) client: Arc<dyn Client>,
    /// What the scheduler is doing.
    pub(crate) scheduler: watch::Receiver<SchedulerStats>,
    /// What the controllers did.
    pub(crate) controllers: ControllerMetrics,
    /// Failed Lease renewals so far.
    pub(crate) heartbeat_failures: Arc<AtomicU64>,
    /// Raft elections won since the cluster started (0 on the memory store).
    pub(crate) elections: Arc<AtomicU64>,
    /// How long registering the nodes took.
    pub(crate) setup: Option<Setup>,
    registry: Registry,
    backend: Backend,
    _dir: tempfile::TempDir,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    stop: CancellationToken,
}

impl Cluster {
    /// Starts the store, the registry (pods served from a watch cache), the scheduler, the
    /// controllers and the hollow kubelets, then registers the nodes and waits until the
    /// scheduler has them all.
    ///
    /// Scheduler and controllers are the only instances, so they always act (as the leader's
    /// would): were they tied to the first leader, a re-election under load would stall the
    /// run instead of measuring it. Elections are counted and reported instead.
    pub(crate) async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let (backend, store) = Backend::start(config.store, dir.path()).await?;
        let registry = Registry::new(store, KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let stop = CancellationToken::new();
        let elections = Arc::new(AtomicU64::new(0));
        let mut cluster = Cluster {
            client: client.clone(),
            scheduler: watch::channel(SchedulerStats::default()).1,
            controllers: ControllerMetrics::default(),
            heartbeat_failures: Arc::new(AtomicU64::new(0)),
            elections: elections.clone(),
            setup: None,
            registry,
            backend,
            _dir: dir,
            tasks: Vec::new(),
            stop: stop.clone(),
        };
        for task in count_elections(&cluster.backend, &elections, &stop) {
            cluster.tasks.push(("election counter", task));
        }
        match cluster.start_components(config).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start_components(&mut self, config: &ClusterConfig) -> anyhow::Result<()> {
        self.registry.enable_watch_cache(&Pod::TYPE, config.pod_cache).await?;
        for ns in [NAMESPACE, LEASE_NAMESPACE] {
            let ns = Namespace {
                metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() },
                ..Default::default()
            };
            Api::<Namespace>::all(self.client.clone()).create(&ns).await?;
        }

        let names: Vec<String> = (0..config.nodes).map(node_name).collect();
        let clock: Clock = Arc::new(Timestamp::now);
        let (leading, is_leader) = watch::channel(true);
        let mut scheduler_config = SchedulerConfig::new(is_leader.clone());
        scheduler_config.seed = config.seed;
        if let Some(binds) = config.max_in_flight_binds {
            scheduler_config.max_in_flight_binds = binds.max(1);
        }
        let scheduler = Scheduler::new(self.client.clone(), default_profiles(), scheduler_config)?;
        self.scheduler = scheduler.stats();
        let types = self.registry.kinds().types().collect();
        let manager = ControllerManager::new(self.client.clone(), types, clock.clone());
        self.controllers = manager.metrics();
        let kubelets = config.kubelets.clamp(1, names.len().max(1));
        let kubelets: Vec<HollowKubelet> = (0..kubelets)
            .map(|k| {
                let mine = names.iter().skip(k).step_by(kubelets).cloned();
                HollowKubelet::new(self.client.clone(), clock.clone()).for_nodes(mine)
            })
            .collect();
        let stop = self.stop.clone();
        self.tasks.push(("scheduler", tokio::spawn(scheduler.run(stop.clone()))));
        self.tasks.push((
            "controllers",
            tokio::spawn(async move {
                // The sender lives as long as the controllers: they lead until stopped.
                let _leading = leading;
                manager.run(is_leader, stop).await;
            }),
        ));
        for kubelet in kubelets {
            self.tasks.push(("hollow kubelet", tokio::spawn(kubelet.run(self.stop.clone()))));
        }

        let cpu = cpu_secs();
        let start = Instant::now();
        self.register_nodes(config).await?;
        self.setup = Some(Setup { elapsed: start.elapsed(), cpu_secs: cpu_secs() - cpu });
        if let Some(every) = config.heartbeat {
            let leases = Api::<Lease>::namespaced(self.client.clone(), LEASE_NAMESPACE);
            let failures = self.heartbeat_failures.clone();
            let task = heartbeat(leases, names, every, failures, self.stop.clone());
            self.tasks.push(("heartbeats", tokio::spawn(task)));
        }
        Ok(())
    }

    async fn register_nodes(&self, config: &ClusterConfig) -> anyhow::Result<()> {
        let deadline = Instant::now() + config.setup_timeout;
        let registering = futures::stream::iter(0..config.nodes)
            .map(|i| register_node(self.client.clone(), i))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<()>();
        tokio::time::timeout_at(deadline, registering).await.with_context(|| {
            format!("registering {} nodes took longer than {:?}", config.nodes, config.setup_timeout)
        })??;
        loop {
            let seen = self.scheduler.borrow().nodes;
            if seen >= config.nodes {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the scheduler saw {seen} of {} nodes within {:?}",
                config.nodes,
                config.setup_timeout
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the components (each given [`STOP_GRACE`]), the watch cache and the store.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        for (name, mut task) in self.tasks {
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("# warning: {name} failed: {e}"),
                Err(_) => {
                    eprintln!("# warning: {name} did not stop within {STOP_GRACE:?}; aborted");
                    task.abort();
                }
            }
        }
        self.registry.shutdown().await;
        self.backend.shutdown().await;
    }
}
