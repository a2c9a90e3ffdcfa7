//! The scheduling framework: plugin traits, profiles and one scheduling cycle.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;

use super::snapshot::{NodeInfo, Snapshot};
use super::status::{FitError, NodeFailure, Status};
use super::{Error, Result};

/// The highest score a score plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Per-pod state that plugins compute once per scheduling cycle and read back, one value per
/// type (kube-scheduler's `CycleState`).
#[derive(Default)]
pub struct CycleState {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    /// An empty state.
    pub fn new() -> CycleState {
        CycleState::default()
    }

    /// Stores `value`, replacing any earlier value of its type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The stored value of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>())
    }
}

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleState").field("values", &self.values.len()).finish()
    }
}

/// Runs once per pod before filtering: computes what filters need into the [`CycleState`], or
/// finds the pod unschedulable on every node at once.
pub trait PreFilterPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it (`NodeResourcesFit`).
    fn name(&self) -> &'static str;

    /// Prepares the cycle for `pod`.
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status;
}

/// Decides whether a pod can go on a node.
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// [`Status::Success`] if `pod` fits on `node`, else the reasons it does not.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

/// A node and its score from one plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeScore<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its score.
    pub score: i64,
}

/// Ranks the feasible nodes for a pod.
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// Prepares scoring for `pod` over the feasible `nodes` (kube-scheduler's pre-score). Any
    /// status but success is an error.
    fn pre_score(&self, _state: &mut CycleState, _pod: &Pod, _nodes: &[&NodeInfo]) -> Status {
        Status::Success
    }

    /// The node's raw score.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64;

    /// Brings the raw scores into `0..=MAX_NODE_SCORE`; by default they already are.
    fn normalize(&self, _scores: &mut [NodeScore<'_>]) {}
}

/// Scales scores so the highest becomes [`MAX_NODE_SCORE`], then, if `reverse`, flips them so
/// the lowest raw score is best (kube-scheduler's `DefaultNormalizeScore`). All zeros stay
/// zeros, or all become the maximum when reversed.
pub fn default_normalize(scores: &mut [NodeScore<'_>], reverse: bool) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    for s in scores.iter_mut() {
        let scaled = if max == 0 { 0 } else { MAX_NODE_SCORE * s.score / max };
        s.score = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

/// A score plugin and the weight of its scores in the total.
#[derive(Clone)]
pub struct WeightedScore {
    /// The plugin.
    pub plugin: Arc<dyn ScorePlugin>,
    /// Its weight.
    pub weight: i64,
}

/// A named set of plugins: pods choose one by `spec.schedulerName`.
#[derive(Clone)]
pub struct Profile {
    /// The `schedulerName` pods use to choose this profile.
    pub scheduler_name: String,
    /// Pre-filter plugins, run in order.
    pub pre_filters: Vec<Arc<dyn PreFilterPlugin>>,
    /// Filter plugins, run in order; the first to reject a node is the one reported.
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    /// Score plugins with their weights.
    pub scores: Vec<WeightedScore>,
}

impl Profile {
    /// A profile with no plugins.
    pub fn new(scheduler_name: impl Into<String>) -> Profile {
        Profile {
            scheduler_name: scheduler_name.into(),
            pre_filters: Vec::new(),
            filters: Vec::new(),
            scores: Vec::new(),
        }
    }

    /// Adds a pre-filter plugin.
    pub fn with_pre_filter(mut self, plugin: Arc<dyn PreFilterPlugin>) -> Profile {
        self.pre_filters.push(plugin);
        self
    }

    /// Adds a filter plugin.
    pub fn with_filter(mut self, plugin: Arc<dyn FilterPlugin>) -> Profile {
        self.filters.push(plugin);
        self
    }

    /// Adds a score plugin with its weight.
    pub fn with_score(mut self, plugin: Arc<dyn ScorePlugin>, weight: i64) -> Profile {
        self.scores.push(WeightedScore { plugin, weight });
        self
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scores: Vec<(&str, i64)> = self.scores.iter().map(|s| (s.plugin.name(), s.weight)).collect();
        f.debug_struct("Profile")
            .field("scheduler_name", &self.scheduler_name)
            .field("pre_filters", &self.pre_filters.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("filters", &self.filters.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("scores", &scores)
            .finish()
    }
}

/// Where a pod should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// How many nodes passed every filter.
    pub feasible: usize,
    /// How many nodes were filtered.
    pub evaluated: usize,
}

/// Runs a [`Profile`]'s plugins to place pods.
///
/// Among nodes with the same best total score, one is chosen by a generator seeded at
/// construction, so a sequence of decisions is reproducible.
pub struct Framework {
    profile: Profile,
    rng: AtomicU64,
    /// The share of nodes to find feasible before scoring; `None`: kube-scheduler's adaptive
    /// default.
    percentage_of_nodes_to_score: Option<u32>,
    /// Where the next cycle starts filtering, so every node gets its turn.
    next_start: AtomicUsize,
}

/// Below this many nodes, every node is filtered and every feasible one scored.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The smallest adaptive percentage of nodes to score.
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

impl fmt::Debug for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framework").field("profile", &self.profile).finish_non_exhaustive()
    }
}

impl Framework {
    /// A framework for `profile`, breaking ties with seed 0.
    pub fn new(profile: Profile) -> Framework {
        Framework::with_seed(profile, 0)
    }

    /// A framework for `profile`, breaking ties with a generator seeded with `seed`.
    pub fn with_seed(profile: Profile, seed: u64) -> Framework {
        Framework {
            profile,
            rng: AtomicU64::new(seed),
            percentage_of_nodes_to_score: None,
            next_start: AtomicUsize::new(0),
        }
    }

    /// Stops filtering once `percentage` of the nodes (at least 100) are found feasible, as
    /// kube-scheduler's `percentageOfNodesToScore` does; 100 filters every node.
    pub fn with_percentage_of_nodes_to_score(mut self, percentage: u32) -> Framework {
        self.percentage_of_nodes_to_score = Some(percentage.min(100));
        self
    }

    /// How many feasible nodes a cycle looks for among `all`: every node below 100; else
    /// the configured percentage, or kube-scheduler's adaptive one (50% minus 1% per 125
    /// nodes, at least 5%), and never fewer than 100.
    pub fn feasible_nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let percentage = match self.percentage_of_nodes_to_score {
            Some(p) => p as usize,
            None => 50usize.saturating_sub(all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE),
        };
        if percentage >= 100 {
            return all;
        }
        (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Runs the pre-filters for `pod`: the state filters and scores read.
    pub fn pre_filter(&self, snapshot: &Snapshot, pod: &Pod) -> Result<CycleState> {
        let mut state = CycleState::new();
        for plugin in &self.profile.pre_filters {
            match plugin.pre_filter(&mut state, pod, snapshot) {
                Status::Success => {}
                Status::Error { message } => {
                    return Err(Error::Plugin { plugin: plugin.name(), node: None, message });
                }
                status => {
                    return Err(FitError {
                        num_all_nodes: snapshot.len(),
                        pre_filter: Some((plugin.name(), status.reasons().join(", "))),
                        failures: Vec::new(),
                    }
                    .into());
                }
            }
        }
        Ok(state)
    }

    /// Runs the filters on one node, stopping at the first that rejects it: `None` if the
    /// node is feasible, else the rejecting plugin and its verdict.
    pub fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Option<(&'static str, Status)> {
        self.profile.filters.iter().find_map(|plugin| match plugin.filter(state, pod, node) {
            Status::Success => None,
            status => Some((plugin.name(), status)),
        })
    }

    /// Chooses a node for `pod`: pre-filter, filter nodes (from where the last cycle stopped,
    /// until [`feasible_nodes_to_find`](Self::feasible_nodes_to_find) are feasible or every
    /// node was tried), score the feasible ones, and take the best total (ties broken by the
    /// seeded generator).
    pub fn schedule(&self, snapshot: &Snapshot, pod: &Pod) -> Result<ScheduleResult> {
        if snapshot.is_empty() {
            return Err(Error::NoNodes);
        }
        let mut state = self.pre_filter(snapshot, pod)?;
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let mut failures = Vec::new();
        let nodes = snapshot.nodes();
        let all = nodes.len();
        let want = self.feasible_nodes_to_find(all);
        let start = self.next_start.load(Ordering::Relaxed) % all;
        let mut evaluated = 0;
        for node in nodes[start..].iter().chain(&nodes[..start]) {
            if feasible.len() >= want {
                break;
            }
            evaluated += 1;
            match self.filter(&state, pod, node) {
                None => feasible.push(node),
                Some((plugin, Status::Error { message })) => {
                    return Err(Error::Plugin { plugin, node: Some(node.name().to_string()), message });
                }
                Some((plugin, status)) => {
                    failures.push(NodeFailure { node: node.name().to_string(), plugin, status })
                }
            }
        }
        self.next_start.store((start + evaluated) % all, Ordering::Relaxed);
        let chosen = match feasible.len() {
            0 => return Err(FitError { num_all_nodes: snapshot.len(), pre_filter: None, failures }.into()),
            // One candidate needs no ranking, as kube-scheduler skips scoring then.
            1 => feasible[0],
            _ => {
                let totals = self.score(&mut state, pod, &feasible)?;
                let best = totals.iter().copied().max().unwrap_or(0);
                let tied: Vec<usize> = (0..totals.len()).filter(|&i| totals[i] == best).collect();
                let pick =
                    if tied.len() == 1 { 0 } else { (self.next_random() % tied.len() as u64) as usize };
                feasible[tied[pick]]
            }
        };
        Ok(ScheduleResult { node: chosen.name().to_string(), feasible: feasible.len(), evaluated })
    }

    /// The weighted total score of each feasible node, in order.
    pub fn score(&self, state: &mut CycleState, pod: &Pod, nodes: &[&NodeInfo]) -> Result<Vec<i64>> {
        let mut totals = vec![0i64; nodes.len()];
        for WeightedScore { plugin, weight } in &self.profile.scores {
            match plugin.pre_score(state, pod, nodes) {
                Status::Success => {}
                status => {
                    return Err(Error::Plugin {
                        plugin: plugin.name(),
                        node: None,
                        message: status.reasons().join(", "),
                    });
                }
            }
            let mut scores: Vec<NodeScore<'_>> = nodes
                .iter()
                .map(|n| NodeScore { node: n.name(), score: plugin.score(state, pod, n) })
                .collect();
            plugin.normalize(&mut scores);
            for (total, s) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(Error::ScoreOutOfRange {
                        plugin: plugin.name(),
                        node: s.node.to_string(),
                        score: s.score,
                    });
                }
                *total = total.saturating_add(s.score.saturating_mul(*weight));
            }
        }
        Ok(totals)
    }

    /// splitmix64: a small, well-mixed generator whose whole state is one counter.
    fn next_random(&self) -> u64 {
        let mut z =
            self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::testing::{node, pod};

    /// Scores nodes from a fixed table (absent nodes score 0).
    struct Fixed(&'static str, BTreeMap<&'static str, i64>);

    impl ScorePlugin for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn score(&self, _state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
            self.1.get(node.name()).copied().unwrap_or(0)
        }
    }

    fn fixed(name: &'static str, scores: &[(&'static str, i64)]) -> Arc<dyn ScorePlugin> {
        Arc::new(Fixed(name, scores.iter().copied().collect()))
    }

    fn nodes(names: &[&str]) -> Snapshot {
        Snapshot::new(names.iter().map(|n| node(n).capacity("4", "8Gi", "110").build()), vec![])
            .expect("valid")
    }

    #[test]
    fn fit_error_message_for_a_mixed_cluster() {
        let mut list = Vec::new();
        for i in 0..3 {
            list.push(node(&format!("small{i}")).capacity("1", "8Gi", "110").build());
        }
        for i in 0..2 {
            list.push(
                node(&format!("tainted{i}"))
                    .capacity("8", "8Gi", "110")
                    .taint("key", "value", "NoSchedule")
                    .build(),
            );
        }
        let snapshot = Snapshot::new(list, vec![]).expect("valid");
        let p = pod("p").container(&[("cpu", "2")]).build();
        let err = Framework::new(default_profile()).schedule(&snapshot, &p).expect_err("nothing fits");
        assert_eq!(
            err.to_string(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {key: value}, 3 Insufficient cpu."
        );
        let Error::Unschedulable(fit) = err else { panic!("not a fit error") };
        assert_eq!(fit.failures.len(), 5);
        assert_eq!(
            fit.unschedulable_plugins().into_iter().collect::<Vec<_>>(),
            ["NodeResourcesFit", "TaintToleration"]
        );
    }

    #[test]
    fn the_first_rejecting_filter_is_reported() {
        // A cordoned, tainted node too small for the pod reports only NodeUnschedulable.
        let n = node("n").capacity("1", "1Gi", "110").unschedulable().taint("k", "v", "NoSchedule").build();
        let snapshot = Snapshot::new(vec![n], vec![]).expect("valid");
        let p = pod("p").container(&[("cpu", "2")]).build();
        let err = Framework::new(default_profile()).schedule(&snapshot, &p).expect_err("cordoned");
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) were unschedulable.");
    }

    #[test]
    fn least_allocated_node_wins_by_default() {
        let list = vec![
            node("busy").capacity("4", "8Gi", "110").build(),
            node("idle").capacity("4", "8Gi", "110").build(),
            node("half").capacity("4", "8Gi", "110").build(),
        ];
        let pods = vec![
            pod("a").container(&[("cpu", "3"), ("memory", "6Gi")]).on("busy").arc(),
            pod("b").container(&[("cpu", "2"), ("memory", "4Gi")]).on("half").arc(),
        ];
        let snapshot = Snapshot::new(list, pods).expect("valid");
        let p = pod("p").container(&[("cpu", "500m"), ("memory", "1Gi")]).build();
        let result = Framework::new(default_profile()).schedule(&snapshot, &p).expect("fits");
        assert_eq!(result, ScheduleResult { node: "idle".into(), feasible: 3, evaluated: 3 });
    }

    #[test]
    fn preferred_affinity_outweighs_free_capacity() {
        let list = vec![
            node("empty").capacity("4", "8Gi", "110").build(),
            node("ssd").capacity("4", "8Gi", "110").label("disk", "ssd").build(),
        ];
        let pods = vec![pod("a").container(&[("cpu", "2"), ("memory", "4Gi")]).on("ssd").arc()];
        let snapshot = Snapshot::new(list, pods).expect("valid");
        let p = pod("p")
            .container(&[("cpu", "1"), ("memory", "1Gi")])
            .preferred(1, crate::scheduler::testing::term(&[("disk", "In", &["ssd"])]))
            .build();
        let result = Framework::new(default_profile()).schedule(&snapshot, &p).expect("fits");
        assert_eq!(result.node, "ssd");
    }

    #[test]
    fn weights_decide_between_plugins() {
        let snapshot = nodes(&["a", "b"]);
        let p = pod("p").build();
        let profile = |wa, wb| {
            Profile::new("test")
                .with_score(fixed("likes-a", &[("a", 60), ("b", 0)]), wa)
                .with_score(fixed("likes-b", &[("a", 0), ("b", 40)]), wb)
        };
        assert_eq!(Framework::new(profile(1, 1)).schedule(&snapshot, &p).expect("fits").node, "a");
        assert_eq!(Framework::new(profile(1, 2)).schedule(&snapshot, &p).expect("fits").node, "b");
        let state = &mut CycleState::new();
        let infos: Vec<&NodeInfo> = snapshot.nodes().iter().collect();
        assert_eq!(Framework::new(profile(1, 2)).score(state, &p, &infos).expect("scores"), [60, 80]);
    }

    #[test]
    fn ties_are_broken_by_the_seeded_generator() {
        let snapshot = nodes(&["a", "b", "c", "d"]);
        let p = pod("p").build();
        let picks = |seed| {
            let fw = Framework::with_seed(Profile::new("test").with_score(fixed("flat", &[]), 1), seed);
            (0..40).map(|_| fw.schedule(&snapshot, &p).expect("fits").node).collect::<Vec<_>>()
        };
        let first = picks(7);
        assert_eq!(first, picks(7), "same seed, same choices");
        assert_ne!(first, picks(8), "another seed, other choices");
        for n in ["a", "b", "c", "d"] {
            assert!(first.iter().any(|p| p == n), "{n} never chosen among equals: {first:?}");
        }
    }

    #[test]
    fn errors() {
        let p = pod("p").build();
        let fw = Framework::new(default_profile());
        assert_eq!(
            fw.schedule(&Snapshot::default(), &p).expect_err("empty").to_string(),
            "no nodes available to schedule pods"
        );

        let bad = pod("p").container(&[("cpu", "x")]).build();
        let err = fw.schedule(&nodes(&["a"]), &bad).expect_err("bad quantity");
        assert!(matches!(err, Error::Plugin { plugin: "NodeResourcesFit", node: None, .. }), "{err}");

        let out_of_range = Framework::new(Profile::new("t").with_score(fixed("big", &[("a", 101)]), 1));
        let err = out_of_range.schedule(&nodes(&["a", "b"]), &p).expect_err("101");
        assert_eq!(err.to_string(), "plugin big scored node a 101, outside 0..=100");
    }

    struct Refuse;

    impl PreFilterPlugin for Refuse {
        fn name(&self) -> &'static str {
            "Refuse"
        }
        fn pre_filter(&self, _state: &mut CycleState, _pod: &Pod, _snapshot: &Snapshot) -> Status {
            Status::Unschedulable { reasons: vec!["no".into(), "never".into()] }
        }
    }

    #[test]
    fn pre_filter_rejection_is_reported_once() {
        let fw = Framework::new(Profile::new("t").with_pre_filter(Arc::new(Refuse)));
        let err = fw.schedule(&nodes(&["a", "b"]), &pod("p").build()).expect_err("refused");
        assert_eq!(err.to_string(), "0/2 nodes are available: no, never.");
    }

    #[test]
    fn default_normalize_scales_and_reverses() {
        let mut scores = [
            NodeScore { node: "a", score: 0 },
            NodeScore { node: "b", score: 2 },
            NodeScore { node: "c", score: 4 },
        ];
        default_normalize(&mut scores, false);
        assert_eq!(scores.map(|s| s.score), [0, 50, 100]);
        default_normalize(&mut scores, true);
        assert_eq!(scores.map(|s| s.score), [100, 50, 0]);
        let mut zeros = [NodeScore { node: "a", score: 0 }];
        default_normalize(&mut zeros, true);
        assert_eq!(zeros[0].score, 100);
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn nodes_to_find_follow_kube_scheduler() {
        let f = Framework::new(default_profile());
        assert_eq!(f.feasible_nodes_to_find(50), 50, "small clusters: every node");
        assert_eq!(f.feasible_nodes_to_find(1_000), 420, "adaptive: 50% - 1000/125 = 42%");
        assert_eq!(f.feasible_nodes_to_find(5_000), 500, "adaptive: 50% - 40% = 10%");
        assert_eq!(f.feasible_nodes_to_find(100_000), 5_000, "never below 5%");
        assert_eq!(f.feasible_nodes_to_find(150), 100, "never fewer than 100");
        let all = Framework::new(default_profile()).with_percentage_of_nodes_to_score(100);
        assert_eq!(all.feasible_nodes_to_find(5_000), 5_000);
    }

    #[test]
    fn a_cycle_stops_at_enough_feasible_nodes_and_the_next_starts_after_it() {
        let nodes: Vec<_> =
            (0..300).map(|i| node(&format!("n{i:03}")).capacity("4", "8Gi", "110").build()).collect();
        let snapshot = Snapshot::new(nodes, Vec::new()).expect("snapshot");
        let f = Framework::new(default_profile()).with_percentage_of_nodes_to_score(10);
        let p = pod("p").container(&[("cpu", "100m"), ("memory", "100Mi")]).build();
        let first = f.schedule(&snapshot, &p).expect("placed");
        assert_eq!((first.evaluated, first.feasible), (100, 100));
        let second = f.schedule(&snapshot, &p).expect("placed");
        assert_eq!(second.evaluated, 100);
        let index = |n: &str| n[1..].parse::<usize>().expect("numbered");
        assert!(
            index(&first.node) < 100 && (100..200).contains(&index(&second.node)),
            "{first:?} {second:?}"
        );
    }
}
