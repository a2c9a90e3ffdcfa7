//! InterPodAffinity: pods required or preferred near (affinity) or away from (anti-affinity)
//! other pods, per topology domain (the nodes sharing a value of the term's `topologyKey`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::pod_affinity_terms::{PodTerms, TopologyCounts, pod_labels};
use crate::scheduler::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, NodeTotals, PodInfo, PreFilterPlugin,
    ScorePlugin, Snapshot, Status,
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

    /// Calls `add(sum, topology key, n)` for what `node` adds to the sums: the incoming pod's
    /// terms against every pod on it and, symmetrically, the terms of its pods that have some
    /// against the incoming pod.
    fn visit(&self, pod: &Pod, terms: &PodTerms, node: &NodeInfo, mut add: impl FnMut(Sum, &str, i64)) {
        // Only pods that have terms of their own can add to the symmetric counts.
        if !terms.is_empty() {
            for existing in node.pods() {
                if terms.all_affinity_terms_match(existing) {
                    for t in &terms.required_affinity {
                        add(Sum::Affinity, &t.topology_key, 1);
                    }
                }
                for t in terms.required_anti_affinity.iter().filter(|t| t.matches(existing)) {
                    add(Sum::AntiAffinity, &t.topology_key, 1);
                }
                for w in terms.preferred_affinity.iter().filter(|w| w.term.matches(existing)) {
                    add(Sum::Score, &w.term.topology_key, w.weight);
                }
                for w in terms.preferred_anti_affinity.iter().filter(|w| w.term.matches(existing)) {
                    add(Sum::Score, &w.term.topology_key, -w.weight);
                }
            }
        }
        for theirs in node.pods_with_affinity().iter().filter_map(|p| p.affinity_terms()) {
            for t in theirs.required_anti_affinity.iter().filter(|t| t.matches(pod)) {
                add(Sum::ExistingAntiAffinity, &t.topology_key, 1);
            }
            if self.hard_pod_affinity_weight > 0 {
                for t in theirs.required_affinity.iter().filter(|t| t.matches(pod)) {
                    add(Sum::Score, &t.topology_key, self.hard_pod_affinity_weight);
                }
            }
            for w in theirs.preferred_affinity.iter().filter(|w| w.term.matches(pod)) {
                add(Sum::Score, &w.term.topology_key, w.weight);
            }
            for w in theirs.preferred_anti_affinity.iter().filter(|w| w.term.matches(pod)) {
                add(Sum::Score, &w.term.topology_key, -w.weight);
            }
        }
    }

    /// The sums over `nodes`, counted afresh.
    fn sums<'a>(&self, pod: &Pod, terms: &PodTerms, nodes: impl IntoIterator<Item = &'a NodeInfo>) -> Sums {
        let mut sums = Sums::default();
        for node in nodes {
            let labels = node.labels();
            self.visit(pod, terms, node, |sum, key, n| sums.get_mut(sum).add(labels, key, n));
        }
        sums
    }

    /// The sums over every node of `snapshot`, kept in the snapshot for the next pod with the
    /// same terms, namespace and labels (only nodes whose pods changed are counted again).
    fn snapshot_sums(&self, pod: &Pod, terms: &PodTerms, snapshot: &Snapshot) -> Arc<Sums> {
        let key = format!(
            "{terms:?}\0{:?}\0{:?}\0{}",
            pod.metadata.namespace,
            pod_labels(pod),
            self.hard_pod_affinity_weight
        );
        snapshot.with_memo(|AffinityMemo(memo)| {
            memo.totals(
                &key,
                snapshot,
                |node| {
                    let mut part: Vec<(Sum, Box<str>, i64)> = Vec::new();
                    self.visit(pod, terms, node, |sum, key, n| {
                        match part.iter_mut().find(|(s, k, _)| *s == sum && &**k == key) {
                            Some((_, _, total)) => *total += n,
                            None => part.push((sum, Box::from(key), n)),
                        }
                    });
                    part.into_boxed_slice()
                },
                |sums, node, part, sign| {
                    for (sum, key, n) in part.iter() {
                        sums.get_mut(*sum).add(node.labels(), key, sign * n);
                    }
                },
                Sums::default,
            )
        })
    }

    /// The filter's and the score's state from the sums.
    fn states(pod: &Pod, terms: Arc<PodTerms>, sums: Arc<Sums>) -> (FilterState, ScoreState) {
        let self_affinity = terms.all_affinity_terms_match(pod);
        let no_affinity_match = sums.affinity.all_zero();
        let score = ScoreState(Arc::clone(&sums));
        (FilterState { terms, sums, no_affinity_match, self_affinity }, score)
    }
}

/// One of the pre-filter's sums per topology domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sum {
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
    Score,
}

/// The pre-filter's sums per topology domain, over every node.
#[derive(Clone, Debug, Default)]
struct Sums {
    /// Pods matching all the required affinity terms, per domain of each term's key.
    affinity: TopologyCounts,
    /// Pods matching each required anti-affinity term, per domain of its key.
    anti_affinity: TopologyCounts,
    /// Existing pods whose required anti-affinity terms match the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// The score per domain.
    scores: TopologyCounts,
}

impl Sums {
    fn get_mut(&mut self, sum: Sum) -> &mut TopologyCounts {
        match sum {
            Sum::Affinity => &mut self.affinity,
            Sum::AntiAffinity => &mut self.anti_affinity,
            Sum::ExistingAntiAffinity => &mut self.existing_anti_affinity,
            Sum::Score => &mut self.scores,
        }
    }
}

/// What one node adds to the sums: per sum and topology key, the amount.
type NodePart = Box<[(Sum, Box<str>, i64)]>;

/// The sums a snapshot keeps: per node, what it adds to each sum per topology key.
#[derive(Default)]
struct AffinityMemo(NodeTotals<NodePart, Sums>);

/// What the filter reads, computed by the pre-filter.
#[derive(Clone, Debug)]
struct FilterState {
    terms: Arc<PodTerms>,
    /// The sums (the score's too: shared with the snapshot's memo and the score's state; a
    /// preemption dry run copies them when it changes them).
    sums: Arc<Sums>,
    /// No pod anywhere matches all the required affinity terms.
    no_affinity_match: bool,
    /// The incoming pod matches all its own required affinity terms.
    self_affinity: bool,
}

/// Score per domain ([`Sums::scores`]), computed by the pre-filter (or the pre-score without
/// one).
#[derive(Clone, Debug)]
struct ScoreState(Arc<Sums>);

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
        let sums = if terms.is_empty() && !snapshot.has_pods_with_affinity() {
            Arc::new(Sums::default())
        } else {
            self.snapshot_sums(pod, &terms, snapshot)
        };
        let (filter, score) = Self::states(pod, terms, sums);
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
    let sums = Arc::make_mut(&mut s.sums);
    for key in existing {
        sums.existing_anti_affinity.add(labels, key, delta);
    }
    if affinity {
        for t in &terms.required_affinity {
            sums.affinity.add(labels, &t.topology_key, delta);
        }
    }
    for key in anti {
        sums.anti_affinity.add(labels, key, delta);
    }
    s.no_affinity_match = sums.affinity.all_zero();
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
            if s.sums.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        let first_of_its_group = s.no_affinity_match && s.self_affinity;
        if !pods_exist && !first_of_its_group {
            return Status::unresolvable(Self::AFFINITY_REASON);
        }
        let anti = s.terms.required_anti_affinity.iter().any(|t| {
            labels.get(&t.topology_key).is_some_and(|v| s.sums.anti_affinity.get(&t.topology_key, v) > 0)
        });
        if anti {
            return Status::unschedulable(Self::ANTI_AFFINITY_REASON);
        }
        if s.sums.existing_anti_affinity.any_positive_for(labels) {
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
                state.insert(ScoreState(Arc::new(self.sums(pod, &terms, nodes.iter().copied()))));
                Status::Success
            }
            Err(message) => Status::error(message),
        }
    }

    /// The sum of the scores of the node's domains.
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        state.get::<ScoreState>().map_or(0, |s| s.0.scores.sum_for(node.labels()))
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
mod proptests;
#[cfg(test)]
mod tests;
