//! The node lifecycle controller: notices nodes that stopped heartbeating, taints them, and
//! evicts their pods (Kubernetes' `pkg/controller/nodelifecycle` with the taint-based eviction
//! of `pkg/controller/tainteviction`).
//!
//! A node agent heartbeats by renewing its Lease `kube-node-lease/<node>` (`spec.renewTime`)
//! and by posting its `Ready` condition (`lastHeartbeatTime`); the later of the two counts.
//! For each node, the pure [`decide_node`] makes a [`NodePlan`]:
//!
//! - **Health.** Silent for longer than [`NodeLifecycleConfig::node_monitor_grace_period`]
//!   (40 s by default), the node's `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure`
//!   conditions become `Unknown` with reason [`NODE_STATUS_UNKNOWN`] and message
//!   [`STOPPED_POSTING_MESSAGE`] (written through the status subresource). The controller
//!   never sets `Ready` back to `True`: the node agent does when it posts its status again.
//! - **Taints.** `Ready` `Unknown` gets [`TAINT_UNREACHABLE`]`:NoExecute`, `Ready` `False`
//!   (as the node reports it) gets [`TAINT_NOT_READY`]`:NoExecute`, each with `timeAdded`;
//!   `Ready` `True` removes both.
//! - **Pods.** While `Ready` is not `True`, the `Ready` condition of the node's pods becomes
//!   `False`, so endpoints drop them (Kubernetes' `MarkPodsNotReady`). Pods that do not
//!   tolerate a `NoExecute` taint of their node are deleted at once; those tolerating it with
//!   `tolerationSeconds` are deleted that long after the taint's `timeAdded`; see
//!   [`eviction`] for the rules, including the **300-second default tolerations** of the
//!   not-ready and unreachable taints that Kubernetes' `DefaultTolerationSeconds` admission
//!   plugin adds and this decision applies in its place. Eviction sets the pod's
//!   `DisruptionTarget` condition, deletes it with its uid as precondition (and its own grace
//!   period), and records a [`EVICTION_EVENT_REASON`] Event.
//! - **Time.** The plan's [`next_deadline`](NodePlan::next_deadline) (the heartbeat's expiry,
//!   or the first toleration to run out) becomes the reconcile's `RequeueAfter`, so nodes are
//!   watched as time passes without a periodic resync of every node.
//!
//! [`NodeLifecycleReconciler`] is keyed by Node and triggered by Node changes, Lease changes
//! in `kube-node-lease` ([`lease_triggers`]) and Pod changes ([`pod_triggers`]);
//! [`node_lifecycle_controller`] wires it.
//!
//! Not done: Kubernetes' per-zone eviction rate limits and its "full disruption" mode (which
//! stops evicting when every node of a zone is unhealthy); the `NoSchedule` taints for node
//! conditions (`not-ready`, `unreachable`, `memory-pressure`, ...); the "Cancelling deletion"
//! Event of a pod whose node recovers before its toleration ran out (no deletion is scheduled
//! ahead of time here, so there is nothing to cancel).

pub mod eviction;
mod health;
mod plan;
mod reconciler;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};

pub use eviction::{effective_tolerations, eviction_time};
pub use health::{
    MONITORED_CONDITIONS, NO_EXECUTE, apply_taints, heartbeat_expiry, is_no_execute, last_heartbeat,
    no_execute_taint, ready_condition, unknown_conditions, wanted_taints,
};
pub use plan::{NodePlan, PodRef, decide_node};
pub use reconciler::NodeLifecycleReconciler;

use crate::controller::events::Recorder;
use crate::controller::{Change, Controller, Informers, ObjectKey};
use crate::registry::Clock;

/// The controller's name (its Events' source and its metrics' label).
pub const CONTROLLER_NAME: &str = "node-lifecycle-controller";
/// Where node agents keep their heartbeat Leases, one per node, named like the node.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node whose `Ready` condition is `False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose `Ready` condition is `Unknown`.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The reason of a condition the controller set `Unknown`.
pub const NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// The message of a condition the controller set `Unknown`.
pub const STOPPED_POSTING_MESSAGE: &str = "Kubelet stopped posting node status.";
/// The reason of a condition the node never posted.
pub const NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// The message of a condition the node never posted.
pub const NEVER_POSTED_MESSAGE: &str = "Kubelet never posted node status.";
/// The reason of the Event recorded for each evicted pod.
pub const EVICTION_EVENT_REASON: &str = "TaintManagerEviction";
/// The reason of an evicted pod's `DisruptionTarget` condition.
pub const DISRUPTION_REASON: &str = "DeletionByTaintManager";
/// The message of an evicted pod's `DisruptionTarget` condition.
pub const DISRUPTION_MESSAGE: &str = "Taint manager: deleting due to NoExecute taint";
/// Kubernetes' `--node-monitor-grace-period` default.
pub const DEFAULT_NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// The `DefaultTolerationSeconds` admission plugin's default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// How the node lifecycle controller judges nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// How long a node may be silent before its conditions become `Unknown`
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How long a pod without a toleration of the not-ready taint stays on a not-ready node
    /// (`--default-not-ready-toleration-seconds`).
    pub default_not_ready_toleration_seconds: i64,
    /// How long a pod without a toleration of the unreachable taint stays on an unreachable
    /// node (`--default-unreachable-toleration-seconds`).
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_grace_period: DEFAULT_NODE_MONITOR_GRACE_PERIOD,
            default_not_ready_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            default_unreachable_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// A failed write of the node lifecycle controller; the reconcile is retried with backoff (a
/// 409 Conflict means the cache was behind, and the retry reads the newer object).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the node's conditions failed.
    #[error("updating the status of node {node}")]
    UpdateNodeStatus {
        /// The node.
        node: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Writing the node's taints failed.
    #[error("updating the taints of node {node}")]
    UpdateTaints {
        /// The node.
        node: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Setting a pod's `Ready` condition `False` failed.
    #[error("marking pod {pod} not ready")]
    MarkPodNotReady {
        /// The pod, `namespace/name`.
        pod: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Evicting a pod (its `DisruptionTarget` condition or its deletion) failed.
    #[error("evicting pod {pod}")]
    EvictPod {
        /// The pod, `namespace/name`.
        pod: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
}

/// The result type of the node lifecycle controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Deduplicated keys from mapping both sides of a change.
fn both_sides<K>(change: &Change<K>, map: impl Fn(&K) -> Option<ObjectKey>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    for k in [change.old(), change.latest()].into_iter().flatten().filter_map(map) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The node a Lease change concerns: a Lease in [`LEASE_NAMESPACE`] is named like its node.
pub fn lease_triggers(change: &Change<Lease>) -> Vec<ObjectKey> {
    both_sides(change, |l| {
        let m = &l.metadata;
        let name = m.name.as_deref().filter(|_| m.namespace.as_deref() == Some(LEASE_NAMESPACE))?;
        Some(ObjectKey::cluster(name))
    })
}

/// The node a Pod change concerns: the one it is (or was) bound to.
pub fn pod_triggers(change: &Change<Pod>) -> Vec<ObjectKey> {
    both_sides(change, |p| {
        let node = p.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())?;
        Some(ObjectKey::cluster(node))
    })
}

/// The node lifecycle controller: Nodes, triggered by their Leases and pods. `clock` is what
/// heartbeats are compared with; `recorder` publishes its Events (run its task alongside).
pub fn node_lifecycle_controller(
    informers: &Informers,
    clock: Clock,
    config: NodeLifecycleConfig,
    recorder: Recorder,
) -> Controller<Node, NodeLifecycleReconciler> {
    let nodes = informers.informer::<Node>();
    let leases = informers.informer::<Lease>();
    let pods = informers.informer::<Pod>();
    let reconciler = NodeLifecycleReconciler::new(
        informers.client(),
        nodes.cache(),
        leases.cache(),
        pods.cache(),
        clock,
        config,
        recorder,
    );
    Controller::new(CONTROLLER_NAME, nodes, reconciler)
        .watches(leases, lease_triggers)
        .watches(pods, pod_triggers)
}
