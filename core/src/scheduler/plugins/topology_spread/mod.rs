//! PodTopologySpread: matching pods spread evenly over topology domains (the nodes sharing a
//! value of the constraint's `topologyKey`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::pod_affinity_terms::pod_labels;
use crate::scheduler::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PreFilterPlugin, ScorePlugin,
    Snapshot, Status,
};

mod constraint;
mod counting;
mod domains;
mod memo;

use constraint::Constraint;
use counting::{Inclusion, count_matching, counts_in, domain_counts};
use domains::Domains;
use memo::snapshot_counts;

/// The node label naming the node itself: its domains are single nodes, counted while scoring.
const HOSTNAME: &str = "kubernetes.io/hostname";

/// The raw score of a node that is not scored: it lacks a topology key, or the pod has no
/// `ScheduleAnyway` constraint. It normalizes to 0, as kube-scheduler's ignored nodes do.
const IGNORED: i64 = i64::MIN;

const NAME: &str = "PodTopologySpread";

/// Spreads pods over topology domains by their `spec.topologySpreadConstraints`, with
/// kube-scheduler's semantics and reasons.
///
/// A constraint counts the pods in the incoming pod's namespace matching its `labelSelector`
/// (plus `key=value` for each `matchLabelKeys` key the incoming pod has), terminating pods
/// left out, in each domain of its `topologyKey`. Only nodes with every constraint's topology
/// key count, and only those that pass the constraint's inclusion policies:
/// `nodeAffinityPolicy: Honor` (the default) leaves out nodes the pod's node selector and
/// required node affinity reject, `nodeTaintsPolicy: Honor` (default `Ignore`) nodes with a
/// `NoSchedule` or `NoExecute` taint the pod does not tolerate.
///
/// Filter, for each `DoNotSchedule` constraint: a node without the topology key fails ("node(s)
/// didn't match pod topology spread constraints (missing required label)", unresolvable); else
/// the node fails ("node(s) didn't match pod topology spread constraints") when the pods in its
/// domain, plus one if the incoming pod matches the selector, minus the fewest in any domain,
/// exceed `maxSkew`. With fewer domains than `minDomains`, the fewest counts as 0.
///
/// Score, for the `ScheduleAnyway` constraints: a node scores, per constraint, the matching pods
/// in its domain times `ln(number of domains among the feasible nodes + 2)`, plus `maxSkew - 1`;
/// fewer is better, so scores are reversed while normalizing. Feasible nodes without every
/// topology key score 0. Pods on every node count, not only on feasible ones, so the counts are
/// taken in the pre-filter: register the plugin as a pre-filter wherever it scores, else
/// scoring counts the feasible nodes only.
///
/// Pods without constraints get none: kube-scheduler's system default constraints need the
/// services and replica sets selecting the pod, which the snapshot does not hold.
#[derive(Clone, Copy, Debug, Default)]
pub struct PodTopologySpread;

impl PodTopologySpread {
    /// The reason a node breaks a `DoNotSchedule` constraint's skew.
    pub const REASON: &'static str = "node(s) didn't match pod topology spread constraints";
    /// The reason a node lacks a `DoNotSchedule` constraint's topology key.
    pub const MISSING_LABEL_REASON: &'static str =
        "node(s) didn't match pod topology spread constraints (missing required label)";
}

/// Whether `node` has every constraint's topology key: only such nodes are counted, and
/// scored.
fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints.iter().all(|c| labels.contains_key(c.topology_key.as_str()))
}

/// Whether `c` spreads over single nodes: the score counts those domains itself.
fn is_hostname(c: &Constraint) -> bool {
    c.topology_key == HOSTNAME
}

/// What the filter reads, computed by the pre-filter. Preemption copies the cycle state for
/// each dry run: the parts the dry runs do not change are shared.
#[derive(Clone, Debug)]
struct FilterState {
    constraints: Arc<[Constraint]>,
    counts: Arc<Vec<Domains<Box<str>>>>,
    /// The fewest matching pods in a domain, or 0 with fewer domains than `minDomains`.
    min_match: Vec<i64>,
    /// 1 where the incoming pod matches the constraint's selector, else 0.
    self_match: Vec<i64>,
}

/// The `ScheduleAnyway` constraints and their counts over every node (hostname domains left
/// to the score), computed by the pre-filter (or the pre-score without one).
#[derive(Clone, Debug)]
struct SoftCounts {
    constraints: Arc<[Constraint]>,
    counts: Arc<Vec<Domains<Box<str>>>>,
}

/// Each soft constraint's weight, `ln(domains among the feasible nodes + 2)`.
#[derive(Clone, Debug)]
struct Weights(Vec<f64>);

impl PreFilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let (hard, soft) =
            match (Constraint::all(pod, "DoNotSchedule"), Constraint::all(pod, "ScheduleAnyway")) {
                (Ok(hard), Ok(soft)) => (hard, soft),
                (Err(message), _) | (_, Err(message)) => return Status::error(message),
            };
        let counts = snapshot_counts(pod, &hard, snapshot, |_| false);
        let min_match = hard.iter().zip(counts.iter()).map(|(c, domains)| min_match(c, domains)).collect();
        let labels = pod_labels(pod);
        let self_match = hard.iter().map(|c| i64::from(c.selector.matches(labels))).collect();
        state.insert(FilterState { constraints: hard.into(), counts, min_match, self_match });
        let soft_counts = snapshot_counts(pod, &soft, snapshot, is_hostname);
        state.insert(SoftCounts { constraints: soft.into(), counts: soft_counts });
        Status::Success
    }

    fn add_pod(&self, state: &mut CycleState, pod: &Pod, other: &PodInfo, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other.pod(), node, 1)
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &Pod, other: &PodInfo, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other.pod(), node, -1)
    }
}

/// The fewest matching pods in a domain, or 0 with fewer domains than `minDomains`.
fn min_match(c: &Constraint, domains: &Domains<Box<str>>) -> i64 {
    let fewest = domains.fewest().unwrap_or(0);
    if i64::try_from(domains.len()).unwrap_or(i64::MAX) < c.min_domains { 0 } else { fewest }
}

/// Counts `other` on `node` into the `DoNotSchedule` counts `delta` times (1 when preemption
/// puts it back, -1 when it takes it off), as kube-scheduler's `PreFilterExtensions` do, and
/// recomputes the fewest per domain. `other` counts where the pre-filter would have counted
/// it: in the incoming pod's namespace, not terminating, matching the constraint's selector,
/// on a node with every topology key that passes the constraint's inclusion policies. The
/// `ScheduleAnyway` counts are left alone: preemption only filters. A pod that counts
/// nowhere leaves the state as it is (not even copied: see [`CycleState::get_mut`]).
fn update_with_pod(state: &mut CycleState, pod: &Pod, other: &Pod, node: &NodeInfo, delta: i64) -> Status {
    let Some(s) = state.get::<FilterState>() else {
        return Status::error("no pre-filter state: PodTopologySpread must also run as a pre-filter");
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    if s.constraints.is_empty() || !counts_in(other, namespace) || !has_all_keys(node, &s.constraints) {
        return Status::Success;
    }
    let (labels, other_labels) = (node.labels(), pod_labels(other));
    let constraints = Arc::clone(&s.constraints);
    let inclusion = Inclusion::new(pod, &constraints);
    let counted: Vec<(usize, &str)> = inclusion
        .counting(node, &constraints)
        .filter(|(_, c)| c.counts_pods && c.selector.matches(other_labels))
        .filter_map(|(i, c)| labels.get(c.topology_key.as_str()).map(|v| (i, v.as_str())))
        .collect();
    if counted.is_empty() {
        return Status::Success;
    }
    let Some(s) = state.get_mut::<FilterState>() else {
        return Status::error("no pre-filter state: PodTopologySpread must also run as a pre-filter");
    };
    for (i, value) in counted {
        Arc::make_mut(&mut s.counts)[i].add(Box::from(value), delta);
        s.min_match[i] = min_match(&constraints[i], &s.counts[i]);
    }
    Status::Success
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.get::<FilterState>() else {
            return Status::error("no pre-filter state: PodTopologySpread must also run as a pre-filter");
        };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(c.topology_key.as_str()) else {
                return Status::unresolvable(Self::MISSING_LABEL_REASON);
            };
            let matching = s.counts[i].get(value).unwrap_or(0);
            if matching + s.self_match[i] - s.min_match[i] > c.max_skew {
                return Status::unschedulable(Self::REASON);
            }
        }
        Status::Success
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Weighs each soft constraint by its number of domains among the feasible `nodes`.
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[&NodeInfo]) -> Status {
        if state.get::<SoftCounts>().is_none() {
            let constraints = match Constraint::all(pod, "ScheduleAnyway") {
                Ok(c) => c,
                Err(message) => return Status::error(message),
            };
            let counts = domain_counts(pod, &constraints, nodes.iter().copied(), is_hostname);
            state.insert(SoftCounts { constraints: constraints.into(), counts: Arc::new(counts) });
        }
        let Some(soft) = state.get::<SoftCounts>() else { return Status::error("soft counts just stored") };
        // The scored nodes (those with every topology key), and the distinct domains among them.
        let mut scored = 0usize;
        let mut domains: Vec<Domains<&str>> = soft.constraints.iter().map(|_| Domains::default()).collect();
        if !soft.constraints.is_empty() {
            for node in nodes.iter().filter(|n| has_all_keys(n, &soft.constraints)) {
                scored += 1;
                let labels = node.labels();
                for (c, seen) in soft.constraints.iter().zip(&mut domains).filter(|(c, _)| !is_hostname(c)) {
                    if let Some(value) = labels.get(c.topology_key.as_str()) {
                        seen.add(value.as_str(), 0);
                    }
                }
            }
        }
        let weights = soft
            .constraints
            .iter()
            .zip(&domains)
            .map(|(c, seen)| {
                let size = if is_hostname(c) { scored } else { seen.len() };
                (size as f64 + 2.0).ln()
            })
            .collect();
        state.insert(Weights(weights));
        Status::Success
    }

    /// The weighted matching pods in the node's domains, plus `maxSkew - 1` per constraint.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let (Some(soft), Some(Weights(weights))) = (state.get::<SoftCounts>(), state.get::<Weights>()) else {
            return IGNORED;
        };
        if soft.constraints.is_empty() || !has_all_keys(node, &soft.constraints) {
            return IGNORED;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = node.labels();
        let mut score = 0.0;
        for ((c, counts), weight) in soft.constraints.iter().zip(soft.counts.iter()).zip(weights) {
            let matching = if is_hostname(c) {
                count_matching(node, c, namespace)
            } else {
                labels.get(c.topology_key.as_str()).and_then(|v| counts.get(v)).unwrap_or(0)
            };
            score += matching as f64 * weight + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Reverses and scales: `100 * (max + min - score) / max` over the scored nodes (all 100
    /// if every count is 0); unscored nodes get 0.
    fn normalize(&self, scores: &mut [NodeScore<'_>]) {
        let scored = || scores.iter().map(|s| s.score).filter(|&s| s != IGNORED);
        let min = scored().min().unwrap_or(0);
        let max = scored().max().unwrap_or(0).max(0);
        for s in scores.iter_mut() {
            s.score = if s.score == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - s.score) / max
            };
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
