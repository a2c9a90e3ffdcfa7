//! The scheduler's runtime: it watches pods that need a node, keeps the cluster's
//! [`Snapshot`](crate::scheduler::Snapshot) current, runs the [`Framework`] of each pod's
//! profile and binds the pod, as kube-scheduler does.
//!
//! The decisions are pure and tested on their own: [`queue`] (active, backoff and
//! unschedulable pods, moved by time and by [`ClusterEvent`]s), [`cache`] (the snapshot kept
//! from watch events, with assumed pods). [`Scheduler::run`] is the thin part that does I/O:
//!
//! - watches through the [`Client`]: all nodes, pods with a node (the cache), pods without
//!   one (`spec.nodeName=`) whose `schedulerName` is one of the profiles' (the queue), and
//!   the PersistentVolumeClaims, PersistentVolumes and StorageClasses VolumeBinding reads;
//! - one scheduling cycle at a time, alternating with watch events: pop the queue's head, run
//!   its profile's framework over the snapshot, assume the pod on the chosen node, and bind it
//!   in a task of its own, with at most [`SchedulerConfig::max_in_flight_binds`] at once; a
//!   failed bind forgets the assumption and sends the pod to backoff;
//! - a pod no node fits gets `PodScheduled=False` (reason `Unschedulable`, kube-scheduler's
//!   message, patched only when it changes) and a `FailedScheduling` Event, aggregated with
//!   its repeats; a bound pod gets a `Scheduled` Event;
//! - it acts only while [`SchedulerConfig::is_leader`] is true: a standby keeps its cache and
//!   queue warm and pops nothing.
//!
//! [`Scheduler::metrics`] are kube-scheduler's Prometheus metrics (attempts by result, their
//! latency, pending pods, end-to-end scheduling latency, preemption); see [`metrics`].
//!
//! Shutdown stops taking work at once, lets running binds and event writes finish for
//! [`SchedulerConfig::shutdown_grace`], then aborts them.

pub mod cache;
pub mod cluster_event;
mod events;
pub mod metrics;
mod nominator;
pub mod queue;
mod recorder;
mod runner;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use cache::{DEFAULT_ASSUMED_POD_TTL, Placement, SchedulerCache};
pub use cluster_event::ClusterEvent;
pub use metrics::{AttemptResult, SchedulerMetrics};
pub use queue::{QueueConfig, QueueCounts, QueuedPod, SchedulingQueue};

use super::plugins::{DEFAULT_SCHEDULER_NAME, default_profile};
use super::{Framework, Profile};
use crate::client::Client;
use crate::registry::Clock;

/// How many binds may run at once by default.
///
/// kube-scheduler runs every binding cycle in a goroutine of its own, with no cap; its
/// `parallelism` (16) bounds filtering and scoring, not binds. Each bind waits for a store
/// write, so a cap as small as that throttles a burst to 16 writes per write latency: in the
/// controller benchmark (a Deployment of 10,000 replicas on 1,000 hollow nodes, a
/// three-member raft store, 2 loaded cores) an earlier run with 16 binds had a pod startup
/// p99 of 25.6 s against Kubernetes' SLO of 5 s, and one with 64 binds (and 8 hollow
/// kubelets) 0.88 s. See `docs/controllers.md` for the runs of the current code. The cap
/// stays, to bound the memory and store load a flood of pending pods can cause.
pub const DEFAULT_MAX_IN_FLIGHT_BINDS: usize = 64;
/// How long a stopping scheduler lets running binds and event writes finish by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of the scheduler's runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scheduler needs at least one profile.
    #[error("no scheduling profiles")]
    NoProfiles,
    /// The cache already has a pod of this name (bound, or assumed by an earlier cycle).
    #[error("pod {pod} is already in the scheduler's cache")]
    AlreadyInCache {
        /// `namespace/name`.
        pod: String,
    },
    /// The chosen node is not in the cache.
    #[error("cannot assume pod {pod} on node {node}: the node is not in the scheduler's cache")]
    NodeNotInCache {
        /// `namespace/name`.
        pod: String,
        /// The node.
        node: String,
    },
    /// The pod's requests cannot be counted.
    #[error("pod {pod}: cannot count its requests")]
    PodRequests {
        /// `namespace/name`.
        pod: String,
        /// Why.
        #[source]
        source: Box<super::Error>,
    },
    /// The snapshot cannot be built from the cached nodes and pods.
    #[error("cannot build the scheduling snapshot")]
    Snapshot(#[source] Box<super::Error>),
}

/// The result type of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a [`Scheduler`] runs.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// Whether this instance may act. It schedules only while the value is true and stops
    /// popping pods as soon as it turns false (binds already running finish; the API server
    /// refuses a second bind of a pod, so a new leader cannot bind it twice). The binary wires
    /// it to the store's leadership or a Lease.
    pub is_leader: watch::Receiver<bool>,
    /// The queue's backoff and flush timings.
    pub queue: QueueConfig,
    /// How many binds may run at once.
    pub max_in_flight_binds: usize,
    /// How long a pod whose bind succeeded stays assumed without the watch showing it bound.
    pub assumed_pod_ttl: Duration,
    /// kube-scheduler's `percentageOfNodesToScore`; `None`: its adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Seeds the frameworks' tie-breaking.
    pub seed: u64,
    /// How long a stopping scheduler lets running work finish before aborting it.
    pub shutdown_grace: Duration,
    /// The wall clock for Event and condition timestamps.
    pub clock: Clock,
}

impl fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerConfig")
            .field("is_leader", &*self.is_leader.borrow())
            .field("queue", &self.queue)
            .field("max_in_flight_binds", &self.max_in_flight_binds)
            .field("assumed_pod_ttl", &self.assumed_pod_ttl)
            .field("percentage_of_nodes_to_score", &self.percentage_of_nodes_to_score)
            .field("seed", &self.seed)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl SchedulerConfig {
    /// The defaults, acting while `is_leader` is true.
    pub fn new(is_leader: watch::Receiver<bool>) -> SchedulerConfig {
        SchedulerConfig {
            is_leader,
            queue: QueueConfig::default(),
            max_in_flight_binds: DEFAULT_MAX_IN_FLIGHT_BINDS,
            assumed_pod_ttl: DEFAULT_ASSUMED_POD_TTL,
            percentage_of_nodes_to_score: None,
            seed: 0,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            clock: Arc::new(k8s_openapi::jiff::Timestamp::now),
        }
    }

    /// The defaults for the only instance: always the leader.
    pub fn always_leader() -> SchedulerConfig {
        let (_, is_leader) = watch::channel(true);
        SchedulerConfig::new(is_leader)
    }
}

/// What the scheduler is doing, published after every step of its loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Whether it may act.
    pub leader: bool,
    /// Whether its cache has the first lists of nodes and pods.
    pub ready: bool,
    /// The nodes in its cache.
    pub nodes: usize,
    /// The pods on nodes in its cache, assumed ones included.
    pub pods: usize,
    /// The pods it placed that the watch has not shown bound yet.
    pub assumed: usize,
    /// Where the pods waiting for a node are.
    pub queue: QueueCounts,
    /// Binds running.
    pub binding: usize,
    /// Scheduling cycles run.
    pub attempts: u64,
    /// Pods bound.
    pub bound: u64,
    /// Cycles that found no node for the pod.
    pub unschedulable: u64,
    /// Binds that failed.
    pub bind_failures: u64,
    /// Pods waiting for the victims of their preemption to go.
    pub nominated: usize,
    /// Preemptions started (nominations made, victims evicted).
    pub preemptions: u64,
}

/// The default profiles: kube-scheduler's default profile under `default-scheduler`.
pub fn default_profiles() -> BTreeMap<String, Profile> {
    BTreeMap::from([(DEFAULT_SCHEDULER_NAME.to_string(), default_profile())])
}

/// A scheduler: see the [module docs](self).
pub struct Scheduler {
    client: Arc<dyn Client>,
    frameworks: BTreeMap<String, Framework>,
    config: SchedulerConfig,
    stats: watch::Sender<SchedulerStats>,
    metrics: SchedulerMetrics,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("profiles", &self.frameworks.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler of the pods whose `spec.schedulerName` is a key of `profiles`, each placed
    /// with that key's profile (whose own `scheduler_name` is set to the key).
    pub fn new(
        client: Arc<dyn Client>,
        profiles: BTreeMap<String, Profile>,
        config: SchedulerConfig,
    ) -> Result<Scheduler> {
        if profiles.is_empty() {
            return Err(Error::NoProfiles);
        }
        let frameworks = profiles
            .into_iter()
            .map(|(name, mut profile)| {
                profile.scheduler_name = name.clone();
                let mut framework = Framework::with_seed(profile, config.seed);
                if let Some(p) = config.percentage_of_nodes_to_score {
                    framework = framework.with_percentage_of_nodes_to_score(p);
                }
                (name, framework)
            })
            .collect();
        let (stats, _) = watch::channel(SchedulerStats::default());
        Ok(Scheduler { client, frameworks, config, stats, metrics: SchedulerMetrics::default() })
    }

    /// Follows what the scheduler is doing.
    pub fn stats(&self) -> watch::Receiver<SchedulerStats> {
        self.stats.subscribe()
    }

    /// The scheduler's Prometheus metrics (shared with it: they change as it runs); the
    /// binary registers them with its registry.
    pub fn metrics(&self) -> SchedulerMetrics {
        self.metrics.clone()
    }

    /// Schedules pods until `shutdown` fires, then lets running binds finish for
    /// [`SchedulerConfig::shutdown_grace`] and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        runner::run(self, shutdown).await
    }
}
