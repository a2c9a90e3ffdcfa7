//! The scheduling framework: plugin traits, profiles and one scheduling cycle.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;

use super::extension::{
    BindPlugin, DefaultBinder, PermitPlugin, PostFilterPlugin, PreBindPlugin, ReservePlugin,
};
use super::snapshot::{NodeInfo, PodInfo, Snapshot};
use super::status::{FitError, NodeFailure, Status};
use super::{Error, Result};

/// The highest score a score plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// A value plugins keep in the [`CycleState`]: any `Clone` type, so a state can be copied
/// for a dry run (preemption tries each candidate node on a copy).
trait StateData: Any + Send + Sync {
    fn clone_arc(&self) -> Arc<dyn StateData>;
    fn as_any(&self) -> &(dyn Any + Send + Sync);
    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync);
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_arc(&self) -> Arc<dyn StateData> {
        Arc::new(self.clone())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Per-pod state that plugins compute once per scheduling cycle and read back, one value per
/// type (kube-scheduler's `CycleState`).
///
/// The values are few (one or two per plugin) and read for every node filtered and scored,
/// so they are kept in a small list searched by type id rather than a hash map.
///
/// A clone behaves as a deep copy, but copies lazily: the clones share each value until one
/// of them asks for it mutably ([`CycleState::get_mut`]), which copies that value only.
/// Preemption clones the state for every node it tries, and most of those dry runs change
/// one value or none.
#[derive(Default)]
pub struct CycleState {
    values: Vec<(TypeId, Arc<dyn StateData>)>,
}

impl Clone for CycleState {
    fn clone(&self) -> CycleState {
        CycleState { values: self.values.clone() }
    }
}

impl CycleState {
    /// An empty state.
    pub fn new() -> CycleState {
        CycleState::default()
    }

    /// Stores `value`, replacing any earlier value of its type.
    pub fn insert<T: Any + Clone + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.values.iter_mut().find(|(k, _)| *k == id) {
            Some((_, v)) => *v = Arc::new(value),
            None => self.values.push((id, Arc::new(value))),
        }
    }

    /// The stored value of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let (_, v) = self.values.iter().find(|(k, _)| *k == id)?;
        (**v).as_any().downcast_ref::<T>()
    }

    /// The stored value of type `T`, to change in place; a value shared with a clone of the
    /// state is copied first, so the clone does not see the change.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        let (_, v) = self.values.iter_mut().find(|(k, _)| *k == id)?;
        if Arc::get_mut(v).is_none() {
            // `(**v)`: the value's own clone, not the blanket impl's for the `Arc` itself.
            *v = (**v).clone_arc();
        }
        Arc::get_mut(v)?.as_any_mut().downcast_mut::<T>()
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

    /// Updates the state as if `other` were added to `node` (kube-scheduler's
    /// `PreFilterExtensions.AddPod`): preemption's dry runs call it when they put a pod
    /// back. Plugins whose state does not depend on other pods keep the default. `other`
    /// comes with what the scheduler computed from it once (its requests and affinity terms).
    fn add_pod(&self, _state: &mut CycleState, _pod: &Pod, _other: &PodInfo, _node: &NodeInfo) -> Status {
        Status::Success
    }

    /// Updates the state as if `other` were removed from `node` (`RemovePod`): preemption's
    /// dry runs call it for each would-be victim.
    fn remove_pod(&self, _state: &mut CycleState, _pod: &Pod, _other: &PodInfo, _node: &NodeInfo) -> Status {
        Status::Success
    }
}

/// Decides whether a pod can go on a node.
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// [`Status::Success`] if `pod` fits on `node`, else the reasons it does not.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;

    /// Whether the verdict may read cycle state that [`PreFilterPlugin::add_pod`] and
    /// [`PreFilterPlugin::remove_pod`] change (pod counts per topology domain, say).
    ///
    /// Preemption's dry run first checks the filters that come before the first one that
    /// does, on the node without its lower-priority pods and with the state as it is: a node
    /// they reject is rejected as the full dry run would reject it, without copying the state
    /// and calling the hooks. `true`, the default, is always correct; `false` is for a filter
    /// whose verdict depends only on the pod, the node and the pods on it, and on state no
    /// hook changes.
    fn reads_pod_updates(&self) -> bool {
        true
    }
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
    /// Post-filter plugins, run in order when no node fits, until one nominates a node.
    pub post_filters: Vec<Arc<dyn PostFilterPlugin>>,
    /// Reserve plugins, run in order once a node is chosen (unreserved in reverse).
    pub reserves: Vec<Arc<dyn ReservePlugin>>,
    /// Permit plugins; every one must allow the placement.
    pub permits: Vec<Arc<dyn PermitPlugin>>,
    /// Pre-bind plugins, run in order in the binding cycle.
    pub pre_binds: Vec<Arc<dyn PreBindPlugin>>,
    /// Bind plugins, tried in order until one does not skip; [`DefaultBinder`] by default.
    pub binders: Vec<Arc<dyn BindPlugin>>,
}

impl Profile {
    /// A profile with no plugins.
    pub fn new(scheduler_name: impl Into<String>) -> Profile {
        Profile {
            scheduler_name: scheduler_name.into(),
            pre_filters: Vec::new(),
            filters: Vec::new(),
            scores: Vec::new(),
            post_filters: Vec::new(),
            reserves: Vec::new(),
            permits: Vec::new(),
            pre_binds: Vec::new(),
            binders: vec![Arc::new(DefaultBinder)],
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
            .field("post_filters", &self.post_filters.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("reserves", &self.reserves.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("permits", &self.permits.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("pre_binds", &self.pre_binds.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("binders", &self.binders.iter().map(|p| p.name()).collect::<Vec<_>>())
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
        self.pre_filter_into(&mut state, snapshot, pod)?;
        Ok(state)
    }

    fn pre_filter_into(&self, state: &mut CycleState, snapshot: &Snapshot, pod: &Pod) -> Result<()> {
        for plugin in &self.profile.pre_filters {
            match plugin.pre_filter(state, pod, snapshot) {
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
        Ok(())
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
        self.schedule_cycle(snapshot, pod).1
    }

    /// [`schedule`](Self::schedule), also returning the cycle's state: the post-filters read
    /// it when no node fits, the reserve, permit and bind plugins when one does.
    ///
    /// A pod with a `status.nominatedNodeName` (set when it preempted pods there) tries that
    /// node first, as [`schedule_nominated`](Self::schedule_nominated) does.
    pub fn schedule_cycle(&self, snapshot: &Snapshot, pod: &Pod) -> (CycleState, Result<ScheduleResult>) {
        let nominated =
            pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty());
        self.schedule_nominated(snapshot, pod, nominated)
    }

    /// [`schedule_cycle`](Self::schedule_cycle) for a pod nominated to `nominated` (the
    /// runtime knows its nominations before the pod's status shows them): as kube-scheduler's
    /// `evaluateNominatedNode`, the filters run on that node first, and if it passes them it
    /// is chosen without filtering or scoring the other nodes (`feasible` and `evaluated` 1).
    /// The node a preemption emptied is usually the only one that fits, and finding that out
    /// by filtering every node costs as much as the cycle that preempted. Otherwise the cycle
    /// goes on as usual.
    pub fn schedule_nominated(
        &self,
        snapshot: &Snapshot,
        pod: &Pod,
        nominated: Option<&str>,
    ) -> (CycleState, Result<ScheduleResult>) {
        let mut state = CycleState::new();
        let result = self.schedule_into(&mut state, snapshot, pod, nominated);
        (state, result)
    }

    fn schedule_into(
        &self,
        state: &mut CycleState,
        snapshot: &Snapshot,
        pod: &Pod,
        nominated: Option<&str>,
    ) -> Result<ScheduleResult> {
        if snapshot.is_empty() {
            return Err(Error::NoNodes);
        }
        self.pre_filter_into(state, snapshot, pod)?;
        let state = &mut *state;
        // A rejection or an error here is found again, and reported, by the pass below.
        if let Some(node) = nominated.and_then(|n| snapshot.node(n))
            && self.filter(state, pod, node).is_none()
        {
            return Ok(ScheduleResult { node: node.name().to_string(), feasible: 1, evaluated: 1 });
        }
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
            match self.filter(state, pod, node) {
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
                let totals = self.score(state, pod, &feasible)?;
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
mod tests;
