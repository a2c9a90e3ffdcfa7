//! PodTopologySpread: matching pods spread evenly over topology domains (the nodes sharing a
//! value of the constraint's `topologyKey`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};

use super::NodeAffinity;
use super::pod_affinity_terms::pod_labels;
use super::taints::tolerated;
use crate::scheduler::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, PreFilterPlugin, ScorePlugin, Snapshot,
    Status,
};
use crate::selector::{LabelSelector, Operator, Requirement};
use crate::validation::FieldPath;

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

/// One constraint, parsed (kube-scheduler's `topologySpreadConstraint`).
#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    /// The pod's constraints with `whenUnsatisfiable: when`; an invalid selector or policy is an
    /// error naming its field.
    fn all(pod: &Pod, when: &str) -> Result<Vec<Constraint>, String> {
        let list = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or(&[]);
        let base = FieldPath::new("spec").child("topologySpreadConstraints");
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate().filter(|(_, c)| c.when_unsatisfiable == when) {
            out.push(Constraint::parse(pod, c, &base.index(i))?);
        }
        Ok(out)
    }

    fn parse(pod: &Pod, c: &TopologySpreadConstraint, path: &FieldPath) -> Result<Constraint, String> {
        let mut selector = LabelSelector::from_k8s(c.label_selector.as_ref(), &path.child("labelSelector"))
            .map_err(|errs| errs.to_string())?;
        let labels = pod_labels(pod);
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                let r = Requirement::new(key.clone(), Operator::Equals, vec![value.clone()])
                    .map_err(|e| format!("{}: {e}", path.child("matchLabelKeys")))?;
                selector = selector.with(r);
            }
        }
        let policy = |p: &Option<String>, field: &str, default: bool| match p.as_deref() {
            None => Ok(default),
            Some("Honor") => Ok(true),
            Some("Ignore") => Ok(false),
            Some(other) => Err(format!("{}: unsupported value {other:?}", path.child(field))),
        };
        Ok(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: policy(&c.node_affinity_policy, "nodeAffinityPolicy", true)?,
            honor_taints: policy(&c.node_taints_policy, "nodeTaintsPolicy", false)?,
        })
    }
}

/// The pods on `node` in `namespace` matching `selector`, terminating pods left out. An empty
/// selector counts none (kube-scheduler's `countPodsMatchSelector`).
fn count_matching(node: &NodeInfo, selector: &LabelSelector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    let n = node
        .pods()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == namespace)
        .filter(|p| selector.matches(pod_labels(p)))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints.iter().all(|c| labels.contains_key(&c.topology_key))
}

/// Matching pods per domain, for each constraint, over `nodes` (kube-scheduler's
/// `TpValueToMatchNum`). Hostname domains are left out when `skip_hostname`.
fn domain_counts<'a>(
    pod: &Pod,
    constraints: &[Constraint],
    nodes: impl IntoIterator<Item = &'a NodeInfo>,
    skip_hostname: bool,
) -> Vec<HashMap<String, i64>> {
    let mut counts = vec![HashMap::new(); constraints.len()];
    if constraints.is_empty() {
        return counts;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut affinity_state = CycleState::new();
    if constraints.iter().any(|c| c.honor_node_affinity) {
        // NodeAffinity's pre-filter only parses the pod; it reads no node.
        NodeAffinity.pre_filter(&mut affinity_state, pod, &Snapshot::default());
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    for node in nodes {
        if !has_all_keys(node, constraints) {
            continue;
        }
        // Computed at most once per node, and only if a constraint honors it.
        let mut affinity_ok = None;
        let mut taints_ok = None;
        for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
            if skip_hostname && c.topology_key == HOSTNAME {
                continue;
            }
            if c.honor_node_affinity
                && !*affinity_ok
                    .get_or_insert_with(|| NodeAffinity.filter(&affinity_state, pod, node).is_success())
            {
                continue;
            }
            let untolerated = || {
                node.taints().iter().any(|t| {
                    matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t)
                })
            };
            if c.honor_taints && !*taints_ok.get_or_insert_with(|| !untolerated()) {
                continue;
            }
            let Some(value) = node.labels().get(&c.topology_key) else { continue };
            let n = count_matching(node, &c.selector, namespace);
            *counts.entry(value.clone()).or_insert(0) += n;
        }
    }
    counts
}

/// What the filter reads, computed by the pre-filter.
#[derive(Clone, Debug)]
struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    /// The fewest matching pods in a domain, or 0 with fewer domains than `minDomains`.
    min_match: Vec<i64>,
    /// 1 where the incoming pod matches the constraint's selector, else 0.
    self_match: Vec<i64>,
}

/// The `ScheduleAnyway` constraints and their counts over every node (hostname domains left
/// to the score), computed by the pre-filter (or the pre-score without one).
#[derive(Clone, Debug)]
struct SoftCounts {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
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
        let counts = domain_counts(pod, &hard, snapshot.nodes(), false);
        let min_match = hard.iter().zip(&counts).map(|(c, domains)| min_match(c, domains)).collect();
        let labels = pod_labels(pod);
        let self_match = hard.iter().map(|c| i64::from(c.selector.matches(labels))).collect();
        state.insert(FilterState { constraints: hard, counts, min_match, self_match });
        let soft_counts = domain_counts(pod, &soft, snapshot.nodes(), true);
        state.insert(SoftCounts { constraints: soft, counts: soft_counts });
        Status::Success
    }

    fn add_pod(&self, state: &mut CycleState, pod: &Pod, other: &Arc<Pod>, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other, node, 1)
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &Pod, other: &Arc<Pod>, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other, node, -1)
    }
}

/// The fewest matching pods in a domain, or 0 with fewer domains than `minDomains`.
fn min_match(c: &Constraint, domains: &HashMap<String, i64>) -> i64 {
    let fewest = domains.values().copied().min().unwrap_or(0);
    if i64::try_from(domains.len()).unwrap_or(i64::MAX) < c.min_domains { 0 } else { fewest }
}

/// Counts `other` on `node` into the `DoNotSchedule` counts `delta` times (1 when preemption
/// puts it back, -1 when it takes it off), as kube-scheduler's `PreFilterExtensions` do, and
/// recomputes the fewest per domain. `other` counts where the pre-filter would have counted
/// it: in the incoming pod's namespace, not terminating, matching the constraint's selector,
/// on a node with every topology key that passes the constraint's inclusion policies. The
/// `ScheduleAnyway` counts are left alone: preemption only filters.
fn update_with_pod(state: &mut CycleState, pod: &Pod, other: &Pod, node: &NodeInfo, delta: i64) -> Status {
    let Some(s) = state.get_mut::<FilterState>() else {
        return Status::error("no pre-filter state: PodTopologySpread must also run as a pre-filter");
    };
    let namespace = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
    if s.constraints.is_empty()
        || namespace(other) != namespace(pod)
        || other.metadata.deletion_timestamp.is_some()
        || !has_all_keys(node, &s.constraints)
    {
        return Status::Success;
    }
    let labels = pod_labels(other);
    let (mut affinity_ok, mut taints_ok) = (None, None);
    for (i, c) in s.constraints.iter().enumerate() {
        if c.selector.is_empty() || !c.selector.matches(labels) {
            continue;
        }
        if c.honor_node_affinity
            && !*affinity_ok.get_or_insert_with(|| {
                let mut affinity_state = CycleState::new();
                NodeAffinity.pre_filter(&mut affinity_state, pod, &Snapshot::default());
                NodeAffinity.filter(&affinity_state, pod, node).is_success()
            })
        {
            continue;
        }
        if c.honor_taints && !*taints_ok.get_or_insert_with(|| !untolerated_taint(pod, node)) {
            continue;
        }
        let Some(value) = node.labels().get(&c.topology_key) else { continue };
        *s.counts[i].entry(value.clone()).or_insert(0) += delta;
        s.min_match[i] = min_match(c, &s.counts[i]);
    }
    Status::Success
}

/// Whether `node` has a `NoSchedule` or `NoExecute` taint `pod` does not tolerate.
fn untolerated_taint(pod: &Pod, node: &NodeInfo) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    node.taints()
        .iter()
        .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t))
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
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(Self::MISSING_LABEL_REASON);
            };
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
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
            let counts = domain_counts(pod, &constraints, nodes.iter().copied(), true);
            state.insert(SoftCounts { constraints, counts });
        }
        let Some(soft) = state.get::<SoftCounts>() else { return Status::error("soft counts just stored") };
        let scored: Vec<&NodeInfo> =
            nodes.iter().copied().filter(|n| has_all_keys(n, &soft.constraints)).collect();
        let weights = soft
            .constraints
            .iter()
            .map(|c| {
                let size = if c.topology_key == HOSTNAME {
                    scored.len()
                } else {
                    scored
                        .iter()
                        .filter_map(|n| n.labels().get(&c.topology_key))
                        .collect::<BTreeSet<_>>()
                        .len()
                };
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
        for ((c, counts), weight) in soft.constraints.iter().zip(&soft.counts).zip(weights) {
            let matching = if c.topology_key == HOSTNAME {
                count_matching(node, &c.selector, namespace)
            } else {
                labels.get(&c.topology_key).and_then(|v| counts.get(v)).copied().unwrap_or(0)
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
mod tests;
