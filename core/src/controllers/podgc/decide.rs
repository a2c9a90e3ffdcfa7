//! [`decide`]: which pods the collector deletes, and [`Quarantine`], how long a node has been
//! missing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;

use super::{ORPHAN_CONDITION_MESSAGE, ORPHAN_CONDITION_REASON, PodGcConfig, TAINT_OUT_OF_SERVICE};

/// Why a pod is collected (the `reason` label of Kubernetes' `pod_gc` metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcReason {
    /// Finished (`Succeeded` or `Failed`), beyond the threshold of finished pods to keep.
    Terminated,
    /// Being deleted on a node that is not ready and carries the
    /// `node.kubernetes.io/out-of-service` taint: its node agent will not finish the deletion.
    TerminatingOutOfService {
        /// The node.
        node: String,
    },
    /// Bound to a node that does not exist (missing from the cache for the whole quarantine;
    /// the runner confirms with a GET before deleting).
    Orphaned {
        /// The missing node.
        node: String,
    },
    /// Being deleted, and never bound to a node: no node agent will finish the deletion.
    UnscheduledTerminating,
}

/// One pod to delete, with grace period 0 and its uid as precondition.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: Option<String>,
    /// Why.
    pub reason: GcReason,
    /// Whether its phase is set `Failed` first (it is not finished, and no node agent will
    /// ever say so).
    pub mark_failed: bool,
    /// A condition set with the `Failed` phase (`DisruptionTarget` for orphans).
    pub condition: Option<PodCondition>,
}

impl Deletion {
    fn of(pod: &Pod, reason: GcReason, condition: Option<PodCondition>) -> Deletion {
        Deletion {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
            reason,
            mark_failed: !is_terminated(pod),
            condition,
        }
    }

    /// The node a deletion needs confirmed gone first (orphans only).
    pub fn missing_node(&self) -> Option<&str> {
        match &self.reason {
            GcReason::Orphaned { node } => Some(node),
            _ => None,
        }
    }
}

impl std::fmt::Display for Deletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where nodes that pods are bound to, but that the node cache lacks, wait before their pods
/// count as orphans: a cache can lag behind a node just created (Kubernetes waits 40 s, then
/// asks the API server).
#[derive(Clone, Debug, Default)]
pub struct Quarantine {
    period: Duration,
    missing_since: BTreeMap<String, Timestamp>,
}

impl Quarantine {
    /// An empty quarantine of `period`.
    pub fn new(period: Duration) -> Quarantine {
        Quarantine { period, missing_since: BTreeMap::new() }
    }

    /// Records, at `now`, the nodes pods are bound to that `nodes` lacks; forgets nodes that
    /// exist again or that no pod is bound to any more.
    pub fn observe(&mut self, pods: &[&Pod], nodes: &[&Node], now: Timestamp) {
        let existing: BTreeSet<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        let missing: BTreeSet<&str> =
            pods.iter().filter_map(|p| node_name(p)).filter(|n| !existing.contains(n)).collect();
        self.missing_since.retain(|n, _| missing.contains(n.as_str()));
        for n in missing {
            self.missing_since.entry(n.to_string()).or_insert(now);
        }
    }

    /// Since when `node` has been seen missing, if it is.
    pub fn missing_since(&self, node: &str) -> Option<Timestamp> {
        self.missing_since.get(node).copied()
    }

    /// Whether `node` has been missing for the whole quarantine period at `now`.
    pub fn is_over(&self, node: &str, now: Timestamp) -> bool {
        self.missing_since(node)
            .is_some_and(|since| since.checked_add(self.period).is_ok_and(|end| now >= end))
    }

    /// Forgets `node` (it was found to exist after all); it starts over if seen missing again.
    pub fn release(&mut self, node: &str) {
        self.missing_since.remove(node);
    }

    /// Forgets every node (leadership was lost: the next leader starts over).
    pub fn clear(&mut self) {
        self.missing_since.clear();
    }
}

/// The node the pod is bound to.
fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Whether the pod has finished (`Succeeded` or `Failed`).
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Whether the kubelet evicted the pod (`Failed` with reason `Evicted`): such pods go first.
fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == Some("Failed") && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Kubernetes' `byEvictionAndCreationTimestamp`: evicted pods first, then oldest first, then
/// by name.
fn gc_order(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let name = |p: &Pod| (p.metadata.name.clone(), p.metadata.namespace.clone());
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| name(a).cmp(&name(b)))
}

fn is_node_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn is_out_of_service(node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    !is_node_ready(node) && taints.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE)
}

/// The `DisruptionTarget` condition of a pod collected because its node is gone.
fn orphan_condition(now: Timestamp) -> PodCondition {
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(ORPHAN_CONDITION_REASON.into()),
        message: Some(ORPHAN_CONDITION_MESSAGE.into()),
        last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
        ..Default::default()
    }
}

/// The pods to delete at `now` (Kubernetes' `PodGCController.gc`), each once, in this order:
///
/// 1. finished pods beyond [`terminated_pod_threshold`](PodGcConfig) (`0` disables), evicted
///    ones first and then oldest first by `creationTimestamp`;
/// 2. pods being deleted on out-of-service nodes (not ready, `node.kubernetes.io/out-of-service`
///    taint);
/// 3. pods bound to a node missing from `nodes` whose [`Quarantine`] is over;
/// 4. pods being deleted that were never bound to a node.
pub fn decide(
    pods: &[&Pod],
    nodes: &[&Node],
    now: Timestamp,
    quarantine: &Quarantine,
    config: &PodGcConfig,
) -> Vec<Deletion> {
    let mut pods: Vec<&Pod> = pods.to_vec();
    pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let nodes: BTreeMap<&str, &Node> =
        nodes.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, *n))).collect();
    let mut out: Vec<Deletion> = Vec::new();
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    let mut take = |out: &mut Vec<Deletion>, d: Deletion| {
        if taken.insert((d.namespace.clone(), d.name.clone())) {
            out.push(d);
        }
    };

    if config.terminated_pod_threshold > 0 {
        let mut terminated: Vec<&Pod> = pods.iter().copied().filter(|p| is_terminated(p)).collect();
        let excess = terminated.len().saturating_sub(config.terminated_pod_threshold);
        if excess > 0 {
            terminated.sort_by(gc_order);
            for p in &terminated[..excess] {
                take(&mut out, Deletion::of(p, GcReason::Terminated, None));
            }
        }
    }
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
        if let Some(node) = node_name(p)
            && nodes.get(node).is_some_and(|n| is_out_of_service(n))
        {
            take(&mut out, Deletion::of(p, GcReason::TerminatingOutOfService { node: node.into() }, None));
        }
    }
    for p in &pods {
        if let Some(node) = node_name(p)
            && !nodes.contains_key(node)
            && quarantine.is_over(node, now)
        {
            let reason = GcReason::Orphaned { node: node.into() };
            take(&mut out, Deletion::of(p, reason, Some(orphan_condition(now))));
        }
    }
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none()) {
        take(&mut out, Deletion::of(p, GcReason::UnscheduledTerminating, None));
    }
    out
}
