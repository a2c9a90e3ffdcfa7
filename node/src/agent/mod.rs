//! The node agent (Flotilla's kubelet): registers its Node, heartbeats, and runs the pods bound
//! to it through a [`ContainerRuntime`].
//!
//! [`NodeAgent::run`] starts three things and owns them until shutdown:
//! - **Heartbeat** (`heartbeat`): registers the Node (capacity and allocatable from the
//!   machine: CPUs, `MemTotal`, the root directory's file system, `max_pods`; labels
//!   `kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch` and the configured
//!   ones; the configured taints), posts its status (conditions from [`machine::node_conditions`],
//!   addresses, `nodeInfo`) when it changes and at least every report interval, and renews the
//!   Lease `kube-node-lease/<node>` every renew interval (10 s; `leaseDurationSeconds` 40),
//!   which is what the node lifecycle controller watches.
//! - **Pod manager** (`manager`): watches the pods with `spec.nodeName=<node>` and keeps one
//!   worker per pod uid, signalled (through a bounded, coalescing channel) when the pod, its
//!   containers (a relist of the runtime every second, like kubelet's PLEG) or its probes
//!   change. On start, containers of pods that still exist are adopted (not restarted; restart
//!   counts continue from the runtime's labels) and those of unknown pods removed.
//! - **Pod workers** (`worker`): each sync lists the pod's sandbox and containers, asks the
//!   pure [`plan::plan_pod`] what to do (kubelet's `computePodActions`: init containers in
//!   order, restart policies, crash-loop and image-pull backoff, probes, graceful deletion),
//!   performs it with Events, and writes the status from the pure [`status::pod_status`] only
//!   when it differs from the pod's current status.
//!
//! [`NodeAgent::metrics`] counts and times every runtime call, relist and pod sync (see
//! [`crate::metrics`]).
//!
//! Runtime, volume and API errors never stop the agent: they become container waiting
//! reasons (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, `CreateContainerError`,
//! `RunContainerError`, `CreateContainerConfigError`, `CrashLoopBackOff`), Events, and retries
//! with backoff. Stopping the agent leaves containers running for the next agent to adopt.
//!
//! Not done: admission against capacity (`OutOfpods`, `OutOfcpu`), evictions under pressure,
//! static pods, sidecar init containers (`restartPolicy: Always` on an init container runs
//! like a plain one), ephemeral containers, `activeDeadlineSeconds`, lifecycle hooks
//! (`postStart`, `preStop`), env from ConfigMaps and Secrets (literal values and `fieldRef`
//! only), per-probe `terminationGracePeriodSeconds`, `imagePullPolicy` (images are never
//! pulled: a missing one is `ErrImagePull`), recreating init containers after the sandbox is
//! replaced (the runtime does not say which sandbox an exited container ran in), and stopping
//! the sandbox of a pod that reached a terminal phase (it is kept until the pod is deleted).

pub mod backoff;
pub mod config;
mod heartbeat;
pub mod hooks;
pub mod machine;
mod manager;
pub mod node_status;
pub mod plan;
pub mod status;
mod worker;

use std::sync::Arc;

use flotilla_core::client::{Client, Error as ClientError};
use flotilla_core::controller::events::Recorder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::AgentConfig;
pub use hooks::{NoVolumes, Probes, Volumes};
pub use manager::{DONE_CHANNEL_CAPACITY, WORKER_SIGNAL_CAPACITY};

use crate::metrics::AgentMetrics;
use crate::probe::Prober;
use crate::runtime::ContainerRuntime;
use crate::runtime::instrumented::Instrumented;

/// The component name on the agent's Events (kubectl shows it as the source).
pub const EVENT_COMPONENT: &str = "kubelet";
/// Probe result changes that may wait for the pod manager.
pub const PROBE_UPDATE_CAPACITY: usize = 256;

/// A failure of the agent's own API calls (logged and retried; never fatal).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, creating or updating the Node failed.
    #[error("cannot register or update node {node}")]
    Node {
        /// The node.
        node: String,
        /// What the API answered.
        #[source]
        source: ClientError,
    },
    /// Creating or renewing the node's Lease failed.
    #[error("cannot renew the lease of node {node}")]
    Lease {
        /// The node.
        node: String,
        /// What the API answered.
        #[source]
        source: ClientError,
    },
}

/// The result type of the agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A node agent. See the [module docs](self).
pub struct NodeAgent {
    client: Arc<dyn Client>,
    runtime: Arc<dyn ContainerRuntime>,
    config: AgentConfig,
    volumes: Arc<dyn Volumes>,
    metrics: AgentMetrics,
}

impl NodeAgent {
    /// An agent for the node `config` names, talking to the cluster through `client` and
    /// running containers through `runtime`, with pod volumes under `config.root_dir` (a
    /// [`VolumeManager`](crate::volume::VolumeManager)).
    pub fn new(client: Arc<dyn Client>, runtime: Arc<dyn ContainerRuntime>, config: AgentConfig) -> Self {
        let volumes = Arc::new(crate::volume::VolumeManager::new(config.root_dir.clone(), client.clone()));
        NodeAgent { client, runtime, config, volumes, metrics: AgentMetrics::new() }
    }

    /// The same agent with `volumes` setting up pod volumes.
    pub fn with_volumes(mut self, volumes: Arc<dyn Volumes>) -> Self {
        self.volumes = volumes;
        self
    }

    /// The agent's metrics (see [`crate::metrics`]), to register where `/metrics` is served.
    pub fn metrics(&self) -> AgentMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown`; then stops probing and waits for its tasks. Containers keep
    /// running.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let config = Arc::new(self.config);
        // Every runtime call the agent makes is counted and timed.
        let runtime: Arc<dyn ContainerRuntime> =
            Arc::new(Instrumented::new(self.runtime, self.metrics.clone()));
        // Everything stops with `shutdown`, or when the pod manager ends for any reason.
        let shutdown = shutdown.child_token();
        let tasks = TaskTracker::new();
        let (recorder, recorder_task) =
            Recorder::new(self.client.clone(), EVENT_COMPONENT, config.clock.clone());
        tasks.spawn(recorder_task.run(shutdown.clone()));
        let heartbeat = heartbeat::Heartbeat::new(self.client.clone(), runtime.clone(), config.clone());
        tasks.spawn(heartbeat.run(shutdown.clone()));
        let (probe_tx, probe_rx) = mpsc::channel(PROBE_UPDATE_CAPACITY);
        let prober = Arc::new(Prober::new(runtime.clone(), probe_tx));
        let shared = Arc::new(worker::Shared {
            client: self.client.clone(),
            runtime: runtime.clone(),
            recorder,
            probes: prober.clone(),
            volumes: self.volumes.clone(),
            host_ips: config.host_ips(),
            config: config.clone(),
            metrics: self.metrics.clone(),
        });
        tracing::info!(node = %config.node_name, runtime = runtime.name(), "node agent starting");
        manager::PodManager::new(shared).run(probe_rx, shutdown.clone()).await;
        shutdown.cancel();
        prober.shutdown().await;
        tasks.close();
        tasks.wait().await;
        tracing::info!(node = %config.node_name, "node agent stopped");
        Ok(())
    }
}
