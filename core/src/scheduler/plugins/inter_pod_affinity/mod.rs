//! InterPodAffinity: pods required or preferred near (affinity) or away from (anti-affinity)
//! other pods, per topology domain (the nodes sharing a value of the term's `topologyKey`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::pod_affinity_terms::{PodTerms, TopologyCounts};
use crate::scheduler::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PreFilterPlugin, ScorePlugin,
    Snapshot, Status,
};

/// Keeps a pod off nodes that break required pod affinity or anti-affinity, its own or (by
/// symmetry) an existing pod's anti-affinity, and prefers nodes by preferred terms, with
/// kube-scheduler's semantics and reasons.
///
/// Filter (kube-scheduler's `Filter`), per node:
/// - every required affinity term needs the node to have the term's topology key, and some pod
///   matching *all* the terms in the node's domain for each term ("node(s) didn't match pod
///   affinity rules", unresolvable). A pod that matches all its own terms may go on any node
///   with the keys while no pod in the cluster matches them: the first pod of a group with
///   affinity to itself is not stuck pending.
/// - no pod matching a required anti-affinity term may be in the node's domain for that term
///   ("node(s) didn't match pod anti-affinity rules").
/// - no existing pod whose required anti-affinity term matches the incoming pod may be in the
///   node's domain for that term ("node(s) didn't satisfy existing pods anti-affinity rules").
///
/// The pre-filter counts matching pods per topology domain over every node of the snapshot,
/// so the filter costs a few hash lookups per node. It also gathers the scores, which depend
/// on pods on every node (not only the feasible ones); register the plugin as a pre-filter
/// wherever it scores, else scoring sees only the feasible nodes.
///
/// Score: for each domain, the weights of the incoming pod's preferred affinity terms matching
/// pods in it, minus those of its preferred anti-affinity terms; plus, symmetrically, the
/// weights of existing pods' preferred terms that match the incoming pod, and
/// [`hard_pod_affinity_weight`](InterPodAffinity::hard_pod_affinity_weight) for each existing
/// pod's required affinity term that matches it. A node scores the sum over its domains,
/// normalized min-max to `0..=100`.
///
/// A term selects pods in its pod's namespace when it has neither `namespaces` nor
/// `namespaceSelector`, else in the listed `namespaces`. Namespace labels are not in the
/// snapshot, so `namespaceSelector: {}` selects every namespace while any other
/// `namespaceSelector` adds none (kube-scheduler would add the namespaces whose labels match).
/// `matchLabelKeys` and `mismatchLabelKeys` are merged into the label selector from the term's
/// pod's labels, as the API server merges them at creation (merging twice changes nothing).
#[derive(Clone, Copy, Debug)]
pub struct InterPodAffinity {
    hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    /// `hardPodAffinityWeight` 1, kube-scheduler's default.
    fn default() -> Self {
        InterPodAffinity { hard_pod_affinity_weight: 1 }
    }
}

impl InterPodAffinity {
    /// The reason a node breaks the pod's required affinity.
    pub const AFFINITY_REASON: &'static str = "node(s) didn't match pod affinity rules";
    /// The reason a node breaks the pod's required anti-affinity.
    pub const ANTI_AFFINITY_REASON: &'static str = "node(s) didn't match pod anti-affinity rules";
    /// The reason a node breaks an existing pod's required anti-affinity.
    pub const EXISTING_ANTI_AFFINITY_REASON: &'static str =
        "node(s) didn't satisfy existing pods anti-affinity rules";

    /// The plugin with kube-scheduler's `hardPodAffinityWeight` argument (0 to 100; 0 stops
    /// existing pods' required affinity from scoring).
    pub fn with_hard_pod_affinity_weight(weight: i64) -> Self {
        InterPodAffinity { hard_pod_affinity_weight: weight }
    }

    /// The weight an existing pod's required affinity term adds when it matches the incoming pod.
    pub fn hard_pod_affinity_weight(&self) -> i64 {
        self.hard_pod_affinity_weight
    }

    /// One pass over the pods of `nodes`: the filter's counts and the scores per domain.
    fn collect<'a>(
        &self,
        pod: &Pod,
        terms: Arc<PodTerms>,
        nodes: impl IntoIterator<Item = &'a NodeInfo>,
    ) -> (FilterState, ScoreState) {
        let mut affinity = TopologyCounts::default();
        let mut anti_affinity = TopologyCounts::default();
        let mut existing_anti_affinity = TopologyCounts::default();
        let mut scores = TopologyCounts::default();
        let incoming = !terms.is_empty();
        for node in nodes {
            let labels = node.labels();
            // The incoming pod's terms against every pod; only pods that have terms of their
            // own can add to the symmetric counts.
            if incoming {
                for existing in node.pods() {
                    if terms.all_affinity_terms_match(existing) {
                        for t in &terms.required_affinity {
                            affinity.add(labels, &t.topology_key, 1);
                        }
                    }
                    for t in terms.required_anti_affinity.iter().filter(|t| t.matches(existing)) {
                        anti_affinity.add(labels, &t.topology_key, 1);
                    }
                    for w in terms.preferred_affinity.iter().filter(|w| w.term.matches(existing)) {
                        scores.add(labels, &w.term.topology_key, w.weight);
                    }
                    for w in terms.preferred_anti_affinity.iter().filter(|w| w.term.matches(existing)) {
                        scores.add(labels, &w.term.topology_key, -w.weight);
                    }
                }
            }
            for theirs in node.pods_with_affinity().iter().filter_map(|p| p.affinity_terms()) {
                for t in theirs.required_anti_affinity.iter().filter(|t| t.matches(pod)) {
                    existing_anti_affinity.add(labels, &t.topology_key, 1);
                }
                if self.hard_pod_affinity_weight > 0 {
                    for t in theirs.required_affinity.iter().filter(|t| t.matches(pod)) {
                        scores.add(labels, &t.topology_key, self.hard_pod_affinity_weight);
                    }
                }
                for w in theirs.preferred_affinity.iter().filter(|w| w.term.matches(pod)) {
                    scores.add(labels, &w.term.topology_key, w.weight);
                }
                for w in theirs.preferred_anti_affinity.iter().filter(|w| w.term.matches(pod)) {
                    scores.add(labels, &w.term.topology_key, -w.weight);
                }
            }
        }
        let self_affinity = terms.all_affinity_terms_match(pod);
        let no_affinity_match = affinity.all_zero();
        let filter = FilterState {
            terms,
            affinity,
            anti_affinity,
            existing_anti_affinity,
            no_affinity_match,
            self_affinity,
        };
        (filter, ScoreState(scores))
    }
}

/// What the filter reads, computed by the pre-filter.
#[derive(Clone, Debug)]
struct FilterState {
    terms: Arc<PodTerms>,
    /// Pods matching all the required affinity terms, per domain of each term's key.
    affinity: TopologyCounts,
    /// Pods matching each required anti-affinity term, per domain of its key.
    anti_affinity: TopologyCounts,
    /// Existing pods whose required anti-affinity terms match the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// No pod anywhere matches all the required affinity terms.
    no_affinity_match: bool,
    /// The incoming pod matches all its own required affinity terms.
    self_affinity: bool,
}

/// Score per domain, computed by the pre-filter (or the pre-score without one).
#[derive(Clone, Debug)]
struct ScoreState(TopologyCounts);

const NAME: &str = "InterPodAffinity";

impl PreFilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let terms = match PodTerms::of(pod) {
            Ok(terms) => Arc::new(terms),
            Err(message) => return Status::error(message),
        };
        // With no terms on either side there is nothing to count (kube-scheduler skips too).
        let (filter, score) = if terms.is_empty() && !snapshot.has_pods_with_affinity() {
            self.collect(pod, terms, [])
        } else {
            self.collect(pod, terms, snapshot.nodes())
        };
        state.insert(filter);
        state.insert(score);
        Status::Success
    }

    fn add_pod(&self, state: &mut CycleState, pod: &Pod, other: &PodInfo, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other, node, 1)
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &Pod, other: &PodInfo, node: &NodeInfo) -> Status {
        update_with_pod(state, pod, other, node, -1)
    }
}

/// Counts `other` on `node` into the filter's state `delta` times (1 when preemption puts it
/// back, -1 when it takes it off), as kube-scheduler's `PreFilterExtensions` do: its required
/// anti-affinity terms matching the incoming `pod`, and the incoming pod's required affinity
/// (if `other` matches all the terms) and anti-affinity terms matching it. The scores are left
/// alone: preemption only filters. A pod that counts nowhere leaves the state as it is (not
/// even copied from the dry run's original: see [`CycleState::get_mut`]).
fn update_with_pod(
    state: &mut CycleState,
    pod: &Pod,
    other: &PodInfo,
    node: &NodeInfo,
    delta: i64,
) -> Status {
    let Some(s) = state.get::<FilterState>() else {
        return Status::error("no pre-filter state: InterPodAffinity must also run as a pre-filter");
    };
    let theirs = other.affinity_terms().map_or(&[][..], |t| &t.required_anti_affinity[..]);
    let (other_pod, terms) = (other.pod(), Arc::clone(&s.terms));
    let existing: Vec<&str> =
        theirs.iter().filter(|t| t.matches(pod)).map(|t| t.topology_key.as_str()).collect();
    let affinity = terms.all_affinity_terms_match(other_pod);
    let anti: Vec<&str> = terms
        .required_anti_affinity
        .iter()
        .filter(|t| t.matches(other_pod))
        .map(|t| t.topology_key.as_str())
        .collect();
    if existing.is_empty() && !affinity && anti.is_empty() {
        return Status::Success;
    }
    let Some(s) = state.get_mut::<FilterState>() else {
        return Status::error("no pre-filter state: InterPodAffinity must also run as a pre-filter");
    };
    let labels = node.labels();
    for key in existing {
        s.existing_anti_affinity.add(labels, key, delta);
    }
    if affinity {
        for t in &terms.required_affinity {
            s.affinity.add(labels, &t.topology_key, delta);
        }
    }
    for key in anti {
        s.anti_affinity.add(labels, key, delta);
    }
    s.no_affinity_match = s.affinity.all_zero();
    Status::Success
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.get::<FilterState>() else {
            return Status::error("no pre-filter state: InterPodAffinity must also run as a pre-filter");
        };
        let labels = node.labels();
        let mut pods_exist = true;
        for t in &s.terms.required_affinity {
            let Some(value) = labels.get(&t.topology_key) else {
                return Status::unresolvable(Self::AFFINITY_REASON);
            };
            if s.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        let first_of_its_group = s.no_affinity_match && s.self_affinity;
        if !pods_exist && !first_of_its_group {
            return Status::unresolvable(Self::AFFINITY_REASON);
        }
        let anti = s.terms.required_anti_affinity.iter().any(|t| {
            labels.get(&t.topology_key).is_some_and(|v| s.anti_affinity.get(&t.topology_key, v) > 0)
        });
        if anti {
            return Status::unschedulable(Self::ANTI_AFFINITY_REASON);
        }
        if s.existing_anti_affinity.any_positive_for(labels) {
            return Status::unschedulable(Self::EXISTING_ANTI_AFFINITY_REASON);
        }
        Status::Success
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Keeps the pre-filter's scores; without them, gathers scores from the feasible nodes only.
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[&NodeInfo]) -> Status {
        if state.get::<ScoreState>().is_some() {
            return Status::Success;
        }
        match PodTerms::of(pod) {
            Ok(terms) => {
                let (_, score) = self.collect(pod, Arc::new(terms), nodes.iter().copied());
                state.insert(score);
                Status::Success
            }
            Err(message) => Status::error(message),
        }
    }

    /// The sum of the scores of the node's domains.
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        state.get::<ScoreState>().map_or(0, |s| s.0.sum_for(node.labels()))
    }

    /// Min-max scaling to `0..=100`, truncated, as kube-scheduler computes it (in floating
    /// point); equal scores all become 0.
    fn normalize(&self, scores: &mut [NodeScore<'_>]) {
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max.saturating_sub(min);
        for s in scores.iter_mut() {
            let scaled =
                if diff > 0 { MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64) } else { 0.0 };
            s.score = scaled as i64;
        }
    }
}

#[cfg(test)]
mod tests;
