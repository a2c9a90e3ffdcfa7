//! [`decide_node`]: everything the controller does about one node, as a plan.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::NodeLifecycleConfig;
use super::eviction::eviction_time;
use super::health::{
    NO_EXECUTE, apply_taints, heartbeat_expiry, is_no_execute, no_execute_taint, ready_condition,
    unknown_conditions, wanted_taints,
};

/// The shortest requeue the plan asks for, so a deadline a hair away cannot spin the queue.
const MIN_REQUEUE: Duration = Duration::from_millis(10);

/// A pod a plan acts on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (deletion is conditional on it).
    pub uid: Option<String>,
}

impl PodRef {
    /// The reference to `pod`.
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What to do about one node now, and when to look again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePlan {
    /// The node's conditions, to write through the status subresource, when they change (the
    /// grace period ran out).
    pub conditions: Option<Vec<NodeCondition>>,
    /// Whether [`conditions`](Self::conditions) turn `Ready` from `True` to `Unknown` (worth
    /// a `NodeNotReady` Event).
    pub became_unknown: bool,
    /// Taints to add (not-ready or unreachable, stamped with `timeAdded`).
    pub add_taints: Vec<Taint>,
    /// Taints to remove (matched by key and effect).
    pub remove_taints: Vec<Taint>,
    /// Pods on the node whose `Ready` condition becomes `False` (Kubernetes' `MarkPodsNotReady`).
    pub mark_not_ready: Vec<PodRef>,
    /// Pods to delete now for the node's `NoExecute` taints.
    pub evict: Vec<PodRef>,
    /// When the decision changes with no object changing: the heartbeat's expiry, or the
    /// earliest toleration running out.
    pub next_deadline: Option<Timestamp>,
}

impl NodePlan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_none()
            && self.add_taints.is_empty()
            && self.remove_taints.is_empty()
            && self.mark_not_ready.is_empty()
            && self.evict.is_empty()
    }

    /// Whether the plan changes the node's taints.
    pub fn changes_taints(&self) -> bool {
        !self.add_taints.is_empty() || !self.remove_taints.is_empty()
    }

    /// The node's taints once the plan's changes are made to `taints`.
    pub fn taints_after(&self, taints: &[Taint]) -> Vec<Taint> {
        apply_taints(taints, &self.add_taints, &self.remove_taints)
    }

    /// How long after `now` to look again, if ever.
    pub fn requeue_after(&self, now: Timestamp) -> Option<Duration> {
        let deadline = self.next_deadline?;
        let wait = Duration::try_from(now.duration_until(deadline)).unwrap_or(Duration::ZERO);
        Some(wait.max(MIN_REQUEUE))
    }
}

/// `t` at the precision Kubernetes stores (seconds), so what is written reads back the same.
fn whole_seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The status of a `Ready` condition among `conditions`.
fn ready_status(conditions: &[NodeCondition]) -> Option<&str> {
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// Whether the pod's `Ready` condition exists and is not `False` (what `MarkPodsNotReady`
/// changes; a pod without one has never been ready).
fn pod_marked_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    conditions.iter().any(|c| c.type_ == "Ready" && c.status != "False")
}

/// The plan for `node` at `now`, given its Lease in `kube-node-lease` (if any) and the pods
/// bound to it.
///
/// - Health: silent for [`node_monitor_grace_period`](NodeLifecycleConfig) (since its last
///   heartbeat, see [`last_heartbeat`](super::last_heartbeat), or since its creation if it
///   never sent one), the node's `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure`
///   conditions become `Unknown`.
/// - Taints: `Ready` `False` wants `node.kubernetes.io/not-ready:NoExecute`, `Unknown`
///   `node.kubernetes.io/unreachable:NoExecute`, `True` neither; a `NoExecute` taint without
///   `timeAdded` gets one (replaced by itself stamped `now`).
/// - Pods, while `Ready` is not `True`: marked not ready. Under `NoExecute` taints: evicted
///   per [`eviction_time`](super::eviction_time). Pods already being deleted are left alone.
pub fn decide_node(
    node: &Node,
    lease: Option<&Lease>,
    pods: &[&Pod],
    now: Timestamp,
    config: &NodeLifecycleConfig,
) -> NodePlan {
    let stamp = whole_seconds(now);
    let mut plan = NodePlan::default();
    let expiry = heartbeat_expiry(node, lease, config.node_monitor_grace_period);
    let silent = expiry.is_some_and(|e| now >= e);
    if silent {
        plan.conditions = unknown_conditions(node, &stamp);
        let was_ready = ready_condition(node).is_some_and(|c| c.status == "True");
        plan.became_unknown = was_ready && plan.conditions.is_some();
    } else {
        plan.next_deadline = expiry;
    }
    let ready = match &plan.conditions {
        Some(conditions) => ready_status(conditions),
        None => ready_condition(node).map(|c| c.status.as_str()),
    };

    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let (want, forbid) = wanted_taints(ready);
    for key in forbid {
        plan.remove_taints.extend(taints.iter().filter(|t| is_no_execute(t, key)).cloned());
    }
    if let Some(key) = want
        && !taints.iter().any(|t| is_no_execute(t, key))
    {
        plan.add_taints.push(no_execute_taint(key, &stamp));
    }
    for t in taints.iter().filter(|t| t.effect == NO_EXECUTE && t.time_added.is_none()) {
        if !plan.remove_taints.contains(t) {
            plan.remove_taints.push(t.clone());
            plan.add_taints.push(Taint { time_added: Some(stamp.clone()), ..t.clone() });
        }
    }
    let taints = plan.taints_after(taints);

    let not_ready = ready.is_some_and(|r| r != "True");
    let mut pods: Vec<&Pod> =
        pods.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    for pod in pods {
        match eviction_time(pod, &taints, now, config) {
            Some(at) if at <= now => {
                plan.evict.push(PodRef::of(pod));
                continue;
            }
            Some(at) => plan.next_deadline = Some(plan.next_deadline.map_or(at, |d| d.min(at))),
            None => {}
        }
        if not_ready && pod_marked_ready(pod) {
            plan.mark_not_ready.push(PodRef::of(pod));
        }
    }
    plan
}
