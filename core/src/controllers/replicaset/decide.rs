//! The ReplicaSet controller's decisions, without I/O: which pods it claims (adopting orphans,
//! releasing pods it no longer selects), how many pods to create or which to delete, the
//! batches creations go in, the pods it creates, and the status it reports.
//!
//! Everything here is Kubernetes' `pkg/controller/replicaset` (`syncReplicaSet`,
//! `manageReplicas`, `calculateStatus`) and the pod ordering of `pkg/controller`
//! (`ActivePodsWithRanks`), as pure functions of the objects.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::controllers::util::{
    controller_of, controller_reference, is_deleting, is_pod_active, is_pod_available, is_pod_ready,
    pod_ready_since,
};
use crate::selector::LabelSelector;
use crate::validation::FieldPath;

/// The most pods one sync creates or deletes (Kubernetes' `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The size of the first batch of creations (Kubernetes' `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

/// The condition reported while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The annotation by which users rank pods for deletion: lower costs go first (Kubernetes'
/// `controller.kubernetes.io/pod-deletion-cost`).
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The ReplicaSet's selector cannot select pods.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector: {0}")]
pub struct InvalidSelector(pub String);

/// The selector of `rs`: an error if it does not convert or is empty (validation refuses
/// both; an empty one would claim every pod of the namespace).
pub fn selector(rs: &ReplicaSet) -> Result<LabelSelector, InvalidSelector> {
    let spec = rs.spec.as_ref().ok_or_else(|| InvalidSelector("the ReplicaSet has no spec".into()))?;
    let path = FieldPath::new("spec").child("selector");
    let selector =
        LabelSelector::from_k8s(&spec.selector, &path).map_err(|e| InvalidSelector(e.to_string()))?;
    if selector.is_empty() {
        return Err(InvalidSelector("an empty selector would select every pod".into()));
    }
    Ok(selector)
}

/// The replicas `rs` asks for (`spec.replicas`, default 1, never negative).
pub fn desired_replicas(rs: &ReplicaSet) -> usize {
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    usize::try_from(replicas).unwrap_or(0)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// What [`decide`] decides from.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The ReplicaSet, as the cache has it.
    pub replica_set: &'a ReplicaSet,
    /// The pods of its namespace, as the cache has them (any state, any owner).
    pub pods: &'a [Arc<Pod>],
    /// Whether every earlier create and delete is visible in `pods` (see
    /// [`Expectations`](super::Expectations)); if not, nothing is created or deleted.
    pub expectations_satisfied: bool,
    /// Active pods per node name among the pods of every ReplicaSet with the same controller
    /// ([`related_pods_per_node`]); empty to skip that rule of the deletion order.
    pub related_pods_per_node: &'a HashMap<String, usize>,
    /// Now.
    pub now: Timestamp,
}

/// What the ReplicaSet does about its pod count.
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    /// The ReplicaSet is being deleted: nothing is created or deleted (the garbage collector
    /// removes its pods).
    Deleting,
    /// Earlier creates or deletes are not visible in the cache yet: nothing is created or
    /// deleted until they are.
    AwaitingExpectations,
    /// The claimed pods are as many as the replicas asked for.
    InSync,
    /// Create this many pods (at most [`BURST_REPLICAS`]), in [`slow_start_batches`].
    Create(usize),
    /// Delete these pods (at most [`BURST_REPLICAS`]), the most expendable first.
    Delete(Vec<Arc<Pod>>),
}

/// The whole decision of one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Active pods controlled by the ReplicaSet whose labels it selects.
    pub owned: Vec<Arc<Pod>>,
    /// Active orphans it selects, to adopt (each becomes claimed once adopted).
    pub adopt: Vec<Arc<Pod>>,
    /// Active pods it controls but no longer selects, to release.
    pub release: Vec<Arc<Pod>>,
    /// What to do about the count, assuming every adoption succeeds.
    pub scale: Scale,
}

impl Plan {
    /// The pods the ReplicaSet counts once the adoptions are done: owned and adopted.
    pub fn claimed(&self) -> Vec<Arc<Pod>> {
        self.owned.iter().chain(&self.adopt).cloned().collect()
    }
}

/// Decides one sync of a ReplicaSet (Kubernetes' `syncReplicaSet` up to its writes).
///
/// Only active pods (neither finished nor being deleted) are considered. A pod controlled by
/// the ReplicaSet is owned while the selector matches it and released when it does not; an
/// orphan (no controller reference) the selector matches is adopted; pods of other
/// controllers are ignored. A ReplicaSet being deleted neither adopts nor releases, and
/// creates and deletes nothing. Otherwise, when expectations are satisfied, the claimed pods
/// are brought to `spec.replicas`, at most [`BURST_REPLICAS`] at a time.
pub fn decide(input: &Input<'_>) -> Result<Plan, InvalidSelector> {
    let rs = input.replica_set;
    let selector = selector(rs)?;
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let namespace = rs.metadata.namespace.as_deref().unwrap_or("");
    let rs_deleting = is_deleting(&rs.metadata);
    let (mut owned, mut adopt, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for pod in input.pods {
        if !is_pod_active(pod) || pod.metadata.namespace.as_deref().unwrap_or("") != namespace {
            continue;
        }
        let matches = selector.matches(&labels(&pod.metadata));
        match controller_of(&pod.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) if matches => owned.push(pod.clone()),
            Some(_) if !rs_deleting => release.push(pod.clone()),
            Some(_) => {}
            None if matches && !rs_deleting => adopt.push(pod.clone()),
            None => {}
        }
    }
    let mut plan = Plan { owned, adopt, release, scale: Scale::InSync };
    plan.scale = scale(input, &plan.claimed());
    Ok(plan)
}

/// What to do about the count of `claimed` pods (Kubernetes' `manageReplicas`).
fn scale(input: &Input<'_>, claimed: &[Arc<Pod>]) -> Scale {
    let rs = input.replica_set;
    if is_deleting(&rs.metadata) {
        return Scale::Deleting;
    }
    if !input.expectations_satisfied {
        return Scale::AwaitingExpectations;
    }
    let want = desired_replicas(rs);
    match claimed.len().cmp(&want) {
        Ordering::Equal => Scale::InSync,
        Ordering::Less => Scale::Create((want - claimed.len()).min(BURST_REPLICAS)),
        Ordering::Greater => {
            let surplus = (claimed.len() - want).min(BURST_REPLICAS);
            Scale::Delete(pods_to_delete(claimed, surplus, input.related_pods_per_node))
        }
    }
}

/// The sizes of the batches in which `count` pods are created: 1, 2, 4, ... (doubling from
/// [`SLOW_START_INITIAL_BATCH_SIZE`]), the last one cut to what remains. The creator stops
/// after the first batch with a failure, so a ReplicaSet whose pods are refused makes one
/// failing call, not hundreds (Kubernetes' `slowStartBatch`).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = SLOW_START_INITIAL_BATCH_SIZE.min(remaining);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = size.saturating_mul(2).min(remaining);
    }
    batches
}

/// The pod the ReplicaSet creates (Kubernetes' `GetPodFromTemplate`): the template's labels,
/// annotations, finalizers and spec, named `<replicaset>-<random>`, in the ReplicaSet's
/// namespace, controlled by it.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or(""))),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            finalizers: tmeta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![controller_reference(rs)]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// Active pods per node name among the pods of every ReplicaSet controlled by the same
/// object as `rs` (its siblings under one Deployment, itself included), each pod counted once
/// (Kubernetes' `getIndirectlyRelatedPods`). Empty when `rs` has no controller.
///
/// `replica_sets` and `pods` are those of the namespace.
pub fn related_pods_per_node(
    rs: &ReplicaSet,
    replica_sets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
) -> HashMap<String, usize> {
    let mut per_node = HashMap::new();
    let Some(controller) = controller_of(&rs.metadata) else {
        return per_node;
    };
    let selectors: Vec<LabelSelector> = replica_sets
        .iter()
        .filter(|other| controller_of(&other.metadata).is_some_and(|c| c.uid == controller.uid))
        .filter_map(|other| selector(other).ok())
        .collect();
    let mut seen = HashSet::new();
    for pod in pods {
        let labels = labels(&pod.metadata);
        if !selectors.iter().any(|s| s.matches(&labels)) || !is_pod_active(pod) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_else(|| name(pod).to_string());
        if seen.insert(uid) {
            *per_node.entry(node_name(pod).to_string()).or_insert(0) += 1;
        }
    }
    per_node
}

/// The `count` pods of `pods` to delete first (Kubernetes' `getPodsToDelete`).
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    count: usize,
    related_pods_per_node: &HashMap<String, usize>,
) -> Vec<Arc<Pod>> {
    let mut ranked: Vec<(usize, &Arc<Pod>)> =
        pods.iter().map(|p| (related_pods_per_node.get(node_name(p)).copied().unwrap_or(0), p)).collect();
    if count < ranked.len() {
        ranked.sort_by(|(ra, a), (rb, b)| deletion_order(a, *ra, b, *rb));
    }
    ranked.into_iter().take(count).map(|(_, p)| p.clone()).collect()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Kubernetes' `podPhaseToOrdinal`: Pending (and any phase it does not list) 0, Unknown 1,
/// Running 2.
fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

/// The pod's `controller.kubernetes.io/pod-deletion-cost`, 0 when absent or not an int32.
fn deletion_cost(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(POD_DELETION_COST_ANNOTATION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The highest restart count of the pod's containers, then of its sidecars (init containers
/// with `restartPolicy: Always`).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status.container_statuses.iter().flatten().map(|c| c.restart_count).max().unwrap_or(0);
    let sidecars: HashSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Kubernetes' `afterOrZero` as an ordering: an absent time first, then later before earlier.
fn later_or_absent_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The order in which surplus pods are deleted, `Less` meaning `a` goes first (Kubernetes'
/// `ActivePodsWithRanks.Less`, with `LogarithmicScaleDown` off): `rank` is the number of
/// related active pods on the pod's node ([`related_pods_per_node`]).
///
/// 1. unassigned (no `nodeName`) before assigned;
/// 2. Pending (or no phase) before Unknown before Running;
/// 3. not ready before ready;
/// 4. lower `pod-deletion-cost` before higher;
/// 5. more related pods on the same node before fewer (spreading what remains);
/// 6. both ready: ready for less time before longer (no transition time first);
/// 7. higher container restart count before lower (then sidecar restarts);
/// 8. newer `creationTimestamp` before older (none first).
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let (node_a, node_b) = (node_name(a), node_name(b));
    if node_a.is_empty() != node_b.is_empty() {
        return if node_a.is_empty() { Ordering::Less } else { Ordering::Greater };
    }
    let (ready_a, ready_b) = (is_pod_ready(a), is_pod_ready(b));
    let ready_times = || {
        if ready_a && ready_b {
            let since = |p: &Pod| pod_ready_since(p).flatten();
            later_or_absent_first(since(a), since(b))
        } else {
            Ordering::Equal
        }
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    phase_ordinal(a)
        .cmp(&phase_ordinal(b))
        .then(ready_a.cmp(&ready_b))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        .then(rank_b.cmp(&rank_a))
        .then_with(ready_times)
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| later_or_absent_first(created(a), created(b)))
}

/// Why creating or deleting pods failed, for the `ReplicaFailure` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The error.
    pub message: String,
}

/// The status the ReplicaSet reports (Kubernetes' `calculateStatus`), from its claimed pods.
///
/// `managed` is the outcome of creating and deleting: `None` when the sync did not get that
/// far (awaiting expectations, or being deleted), which leaves the `ReplicaFailure` condition
/// as it is; `Some(Err)` sets it (if it is not already set); `Some(Ok)` removes it.
/// `observedGeneration` is the ReplicaSet's generation. Counts of zero are absent, as
/// Kubernetes' encoding leaves them.
pub fn compute_status(
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    managed: Option<Result<(), &ReplicaFailure>>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let (mut fully_labeled, mut ready, mut available) = (0i32, 0i32, 0i32);
    for pod in claimed {
        let labels = pod.metadata.labels.as_ref();
        if template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let nonzero = |n: i32| (n != 0).then_some(n);
    status.replicas = i32::try_from(claimed.len()).unwrap_or(i32::MAX);
    status.fully_labeled_replicas = nonzero(fully_labeled);
    status.ready_replicas = nonzero(ready);
    status.available_replicas = nonzero(available);
    status.observed_generation = rs.metadata.generation.filter(|g| *g != 0);
    let mut conditions = status.conditions.take().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match managed {
        Some(Err(failure)) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(failure.reason.into()),
            message: Some(failure.message.clone()),
            last_transition_time: Some(Time(Timestamp::from_second(now.as_second()).unwrap_or(now))),
        }),
        Some(Ok(())) => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

/// Whether `new` differs from the status `rs` has in what the controller writes (Kubernetes'
/// `updateReplicaSetStatus` test): the counts, the conditions, and `observedGeneration`
/// against the ReplicaSet's generation.
pub fn status_changed(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let c = |v: &Option<Vec<ReplicaSetCondition>>| v.clone().unwrap_or_default();
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || old.observed_generation.unwrap_or(0) != rs.metadata.generation.unwrap_or(0)
        || c(&old.conditions) != c(&new.conditions)
}

/// When to look again so that a ready pod is counted available once it has been ready for
/// `minReadySeconds` (nothing else changes then to trigger a sync): the time until the first
/// such pod becomes available, at least a second; `None` when no claimed pod is ready but not
/// yet available.
pub fn availability_requeue(rs: &ReplicaSet, claimed: &[Arc<Pod>], now: Timestamp) -> Option<Duration> {
    let min_ready = min_ready_seconds(rs);
    if min_ready <= 0 {
        return None;
    }
    claimed
        .iter()
        .filter(|p| is_pod_ready(p) && !is_pod_available(p, min_ready, now))
        .map(|p| {
            let since = pod_ready_since(p).flatten().map_or(now.as_second(), |t| t.as_second());
            let due = since.saturating_add(i64::from(min_ready)).saturating_sub(now.as_second());
            Duration::from_secs(u64::try_from(due).unwrap_or(0).max(1))
        })
        .min()
}

#[cfg(test)]
mod tests;
