//! DefaultPreemption: when no node fits a pod, find pods of lower priority whose eviction
//! would make room, and nominate the node where evicting them costs least.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::scheduler::{
    CycleState, FitError, Framework, NodeFailure, NodeInfo, Nomination, PodInfo, PostFilterOutcome,
    PostFilterPlugin, Snapshot, Status,
};

const NAME: &str = "DefaultPreemption";

/// kube-scheduler's DefaultPreemption post-filter, without PodDisruptionBudgets (Flotilla has
/// none).
///
/// Eligibility: a pod with `spec.preemptionPolicy: Never` never preempts ("not eligible due to
/// preemptionPolicy=Never."). A pod with a `status.nominatedNodeName` whose node still has a
/// pod of lower priority being deleted (`deletionTimestamp` set) waits for it instead of
/// preempting again ("not eligible due to a terminating pod on the nominated node."), unless
/// the filters found that node unresolvable this cycle.
///
/// Candidates: only nodes the filters rejected as [`Status::Unschedulable`]; a node rejected as
/// unresolvable (wrong node selector, untolerated taint, ...) cannot be helped, nor can any
/// node when a pre-filter rejected the pod. The potential nodes are tried from a seeded
/// random offset until `max(10% of them, 100)` candidates are found (kube-scheduler's
/// `minCandidateNodesPercentage` and `minCandidateNodesAbsolute`).
///
/// Dry run per node, on copies of the cycle state and of the node: every pod of lower
/// `spec.priority` (0 if unset) is removed, each pre-filter plugin told through
/// [`PreFilterPlugin::remove_pod`](crate::scheduler::PreFilterPlugin::remove_pod). If the
/// filters still reject the pod, the node is no candidate. Otherwise the removed pods are put
/// back one at a time, the most important first (highest priority, then earliest
/// `status.startTime`, a pod not started counting as started last), and each one that leaves
/// the pod fitting stays; the others are the victims.
///
/// Pre-check (not in kube-scheduler, and without effect on the outcome): before a dry run,
/// the filters that come before the first one that reads what the hooks change
/// ([`FilterPlugin::reads_pod_updates`](crate::scheduler::FilterPlugin::reads_pod_updates);
/// with the default profile, everything up to NodeResourcesFit) run on the node without its
/// lower-priority pods. A node they reject cannot be a candidate, since the dry run would
/// reach the same verdict or fail on a hook first, so it is passed over without copying the
/// state and calling the hooks. Which nodes are tried and which become candidates is
/// unchanged; only when none does do the passed-over nodes get their full dry runs, for the
/// message and any error to be the dry runs' own.
///
/// Choice among candidates (kube-scheduler's `pickOneNodeForPreemption` without its PDB
/// criterion): the lowest highest victim priority; then the smallest sum of victim priorities
/// (each offset by 2^31, so negative priorities cannot make more victims look cheaper); then
/// the fewest victims; then the latest start among the highest-priority victims (the earliest
/// of those on a node counts); then the first node tried.
///
/// When no node is a candidate: [`PostFilterOutcome::NotHelped`] with kube-scheduler's message,
/// e.g. "0/3 nodes are available: 1 Insufficient cpu, 2 No preemption victims found for
/// incoming pod." (the dry-run nodes with the reason that rejected them, the others "Preemption
/// is not helpful for scheduling"). Nominated pods of other pending pods are the caller's: it
/// counts them into the snapshot when they have at least this pod's priority.
#[derive(Debug)]
pub struct DefaultPreemption {
    min_candidate_nodes_percentage: u32,
    min_candidate_nodes_absolute: usize,
    rng: AtomicU64,
}

impl Default for DefaultPreemption {
    /// kube-scheduler's defaults (10%, 100 nodes), offsets seeded with 0.
    fn default() -> Self {
        DefaultPreemption::with_seed(0)
    }
}

/// What a dry run on one node found.
#[derive(Debug, PartialEq)]
enum DryRun {
    /// The pod fits once these pods (the most important first) are gone.
    Victims(Vec<Arc<Pod>>),
    /// No eviction helps on this node: the plugin and its verdict.
    Rejected(&'static str, Status),
    /// A plugin failed.
    Failed(String),
}

impl DefaultPreemption {
    /// Why a node without pods of lower priority cannot be helped.
    pub const NO_VICTIMS_REASON: &'static str = "No preemption victims found for incoming pod";
    /// Why a node that was not tried (unresolvable, or never a candidate) cannot be helped.
    pub const NOT_HELPFUL_REASON: &'static str = "Preemption is not helpful for scheduling";
    /// kube-scheduler's default `minCandidateNodesPercentage`.
    pub const MIN_CANDIDATE_NODES_PERCENTAGE: u32 = 10;
    /// kube-scheduler's default `minCandidateNodesAbsolute`.
    pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

    /// kube-scheduler's defaults, with the offsets of the search drawn from a generator
    /// seeded with `seed` (reproducible in tests).
    pub fn with_seed(seed: u64) -> Self {
        DefaultPreemption {
            min_candidate_nodes_percentage: Self::MIN_CANDIDATE_NODES_PERCENTAGE,
            min_candidate_nodes_absolute: Self::MIN_CANDIDATE_NODES_ABSOLUTE,
            rng: AtomicU64::new(seed),
        }
    }

    /// Sets kube-scheduler's `minCandidateNodesPercentage` (capped at 100) and
    /// `minCandidateNodesAbsolute`: the search stops once `max(percentage of the potential
    /// nodes, absolute)` candidates are found (always at least one).
    pub fn with_min_candidate_nodes(mut self, percentage: u32, absolute: usize) -> Self {
        self.min_candidate_nodes_percentage = percentage.min(100);
        self.min_candidate_nodes_absolute = absolute;
        self
    }

    /// How many candidates the search looks for among `potential` nodes (kube-scheduler's
    /// `calculateNumCandidates`): the percentage of them, at least the absolute number, at
    /// most all of them.
    pub fn candidates_to_find(&self, potential: usize) -> usize {
        let share = potential.saturating_mul(self.min_candidate_nodes_percentage as usize) / 100;
        share.max(self.min_candidate_nodes_absolute).max(1).min(potential)
    }

    /// The next offset in `0..len` (splitmix64 over a counter).
    fn offset(&self, len: usize) -> usize {
        let x =
            self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % len.max(1) as u64) as usize
    }

    /// Why `pod` may not preempt now, if it may not (kube-scheduler's
    /// `PodEligibleToPreemptOthers`).
    fn ineligible(pod: &Pod, snapshot: &Snapshot, fit: &FitError) -> Option<&'static str> {
        if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return Some("not eligible due to preemptionPolicy=Never.");
        }
        let nominated =
            pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty())?;
        // A nominated node the filters now find unresolvable is given up: preempt elsewhere.
        let unresolvable = fit.pre_filter.is_some()
            || fit.failures.iter().any(|f| {
                f.node == nominated && matches!(f.status, Status::UnschedulableAndUnresolvable { .. })
            });
        if unresolvable {
            return None;
        }
        let priority = pod_priority(pod);
        let node = snapshot.node(nominated)?;
        let terminating =
            node.pods().any(|p| pod_priority(p) < priority && p.metadata.deletion_timestamp.is_some());
        terminating.then_some("not eligible due to a terminating pod on the nominated node.")
    }

    /// The pre-check: whether the node cannot be a candidate, as the filters that read no
    /// hook updates find it without the pods of lower priority than `pod` (if it has none,
    /// the dry run is as cheap as this and says why itself).
    fn ruled_out(framework: &Framework, state: &CycleState, pod: &Pod, node: &NodeInfo) -> bool {
        let priority = pod_priority(pod);
        let lower = || node.pod_infos().iter().filter(|p| pod_priority(p.pod()) < priority);
        let mut leading =
            framework.profile().filters.iter().take_while(|f| !f.reads_pod_updates()).peekable();
        if leading.peek().is_none() || lower().next().is_none() {
            return false;
        }
        // The node exactly as the dry run has it when it first filters.
        let mut emptied = node.clone();
        for victim in lower() {
            emptied.remove_pod_info(victim.key());
        }
        leading.any(|plugin| !plugin.filter(state, pod, &emptied).is_success())
    }

    /// kube-scheduler's `SelectVictimsOnNode`, on copies of `state` and `node`.
    fn dry_run(framework: &Framework, state: &CycleState, pod: &Pod, node: &NodeInfo) -> DryRun {
        let priority = pod_priority(pod);
        let mut potential: Vec<Arc<PodInfo>> =
            node.pod_infos().iter().filter(|p| pod_priority(p.pod()) < priority).cloned().collect();
        if potential.is_empty() {
            return DryRun::Rejected(NAME, Status::unresolvable(Self::NO_VICTIMS_REASON));
        }
        let mut state = state.clone();
        let mut node = node.clone();
        for victim in &potential {
            if let Err(message) = remove(framework, &mut state, pod, victim, &mut node) {
                return DryRun::Failed(message);
            }
        }
        match framework.filter(&state, pod, &node) {
            None => {}
            Some((_, Status::Error { message })) => return DryRun::Failed(message),
            Some((plugin, status)) => return DryRun::Rejected(plugin, status),
        }
        potential.sort_by(|a, b| more_important_first(a.pod(), b.pod()));
        let mut victims = Vec::new();
        for p in potential {
            if let Err(message) = add(framework, &mut state, pod, &p, &mut node) {
                return DryRun::Failed(message);
            }
            // As kube-scheduler, any verdict but success (an error too) keeps it a victim.
            if framework.filter(&state, pod, &node).is_some() {
                if let Err(message) = remove(framework, &mut state, pod, &p, &mut node) {
                    return DryRun::Failed(message);
                }
                victims.push(p.pod().clone());
            }
        }
        if victims.is_empty() {
            return DryRun::Failed(format!("expected at least one victim pod on node {:?}", node.name()));
        }
        DryRun::Victims(victims)
    }
}

/// A pod's `spec.priority`, 0 if unset.
fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Orders start times earliest first, a pod not started last (kube-scheduler takes "now").
fn start_key(pod: &Pod) -> (bool, Option<&Time>) {
    let start = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
    (start.is_none(), start)
}

/// kube-scheduler's `MoreImportantPod` as an order: higher priority first, then earlier start.
fn more_important_first(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    (Reverse(pod_priority(a)), start_key(a)).cmp(&(Reverse(pod_priority(b)), start_key(b)))
}

/// Takes `victim` off the dry run's `node` and tells the pre-filter plugins.
fn remove(
    framework: &Framework,
    state: &mut CycleState,
    pod: &Pod,
    victim: &Arc<PodInfo>,
    node: &mut NodeInfo,
) -> Result<(), String> {
    node.remove_pod_info(victim.key());
    for plugin in &framework.profile().pre_filters {
        let status = plugin.remove_pod(state, pod, victim, node);
        if !status.is_success() {
            let reasons = status.reasons().join(", ");
            return Err(format!("running RemovePod on PreFilter plugin {:?}: {reasons}", plugin.name()));
        }
    }
    Ok(())
}

/// Puts `victim` back on the dry run's `node` and tells the pre-filter plugins.
fn add(
    framework: &Framework,
    state: &mut CycleState,
    pod: &Pod,
    victim: &Arc<PodInfo>,
    node: &mut NodeInfo,
) -> Result<(), String> {
    node.add_pod_info(victim.clone());
    for plugin in &framework.profile().pre_filters {
        let status = plugin.add_pod(state, pod, victim, node);
        if !status.is_success() {
            let reasons = status.reasons().join(", ");
            return Err(format!("running AddPod on PreFilter plugin {:?}: {reasons}", plugin.name()));
        }
    }
    Ok(())
}

/// How a candidate ranks; smaller is better, compared in order: the highest victim
/// priority, the sum of the victims' priorities (each offset by 2^31), the number of victims,
/// and the reversed start of the earliest-started highest-priority victim.
type Rank<'a> = (i32, i64, usize, Reverse<(bool, Option<&'a Time>)>);

fn rank(victims: &[Arc<Pod>]) -> Rank<'_> {
    // Victims are sorted most important first: the first has the highest priority and,
    // among those, the earliest start.
    let highest = victims.first().map_or(i32::MIN, |p| pod_priority(p));
    let sum = victims.iter().map(|p| i64::from(pod_priority(p)) + (1i64 << 31)).sum();
    let earliest = victims.first().map_or((true, None), |p| start_key(p));
    (highest, sum, victims.len(), Reverse(earliest))
}

/// The nomination kube-scheduler's `pickOneNodeForPreemption` picks (without its PDB
/// criterion): the best [`rank`], the first tried among equals.
fn pick_one(candidates: Vec<Nomination>) -> Option<Nomination> {
    let best = (0..candidates.len())
        .min_by(|&a, &b| rank(&candidates[a].victims).cmp(&rank(&candidates[b].victims)))?;
    candidates.into_iter().nth(best)
}

impl PostFilterPlugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }

    fn post_filter(
        &self,
        framework: &Framework,
        state: &CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        fit: &FitError,
    ) -> PostFilterOutcome {
        if let Some(reason) = Self::ineligible(pod, snapshot, fit) {
            return PostFilterOutcome::NotHelped { message: reason.to_string() };
        }
        // Nodes the filters rejected for reasons evicting pods may remove, in snapshot order.
        let potential: Vec<&NodeInfo> = if fit.pre_filter.is_some() {
            Vec::new()
        } else {
            let resolvable: HashMap<&str, bool> = fit
                .failures
                .iter()
                .map(|f| (f.node.as_str(), matches!(f.status, Status::Unschedulable { .. })))
                .collect();
            snapshot.nodes().iter().filter(|n| resolvable.get(n.name()).copied().unwrap_or(false)).collect()
        };
        // The nodes tried, in order, with their dry runs (`None`: ruled out by the pre-check).
        let mut tried: Vec<(&NodeInfo, Option<DryRun>)> = Vec::new();
        let mut found = 0;
        if !potential.is_empty() {
            let want = self.candidates_to_find(potential.len());
            let offset = self.offset(potential.len());
            for i in 0..potential.len() {
                if found >= want {
                    break;
                }
                let node = potential[(offset + i) % potential.len()];
                let outcome = (!Self::ruled_out(framework, state, pod, node))
                    .then(|| Self::dry_run(framework, state, pod, node));
                found += usize::from(matches!(outcome, Some(DryRun::Victims(_))));
                tried.push((node, outcome));
            }
            if found == 0 {
                // Nothing helps: the message and errors are those of every node's dry run.
                for (node, outcome) in tried.iter_mut().filter(|(_, o)| o.is_none()) {
                    *outcome = Some(Self::dry_run(framework, state, pod, node));
                }
            }
        }
        let mut candidates = Vec::new();
        let mut failures = Vec::new();
        let mut errors = Vec::new();
        for (node, outcome) in tried {
            match outcome {
                Some(DryRun::Victims(victims)) => {
                    candidates.push(Nomination { node: node.name().to_string(), victims });
                }
                // The rejections and errors matter only when no node is a candidate.
                Some(DryRun::Rejected(plugin, status)) if found == 0 => {
                    failures.push(NodeFailure { node: node.name().to_string(), plugin, status });
                }
                Some(DryRun::Failed(message)) if found == 0 => {
                    errors.push(format!("node {}: {message}", node.name()));
                }
                _ => {}
            }
        }
        if let Some(nomination) = pick_one(candidates) {
            return PostFilterOutcome::Nominate(nomination);
        }
        if !errors.is_empty() {
            return PostFilterOutcome::Error(errors.join("; "));
        }
        // Every node not tried cannot be helped.
        let tried: std::collections::HashSet<&str> = failures.iter().map(|f| f.node.as_str()).collect();
        let untried: Vec<NodeFailure> = snapshot
            .nodes()
            .iter()
            .filter(|n| !tried.contains(n.name()))
            .map(|n| NodeFailure {
                node: n.name().to_string(),
                plugin: NAME,
                status: Status::unresolvable(Self::NOT_HELPFUL_REASON),
            })
            .collect();
        failures.extend(untried);
        let summary = FitError { num_all_nodes: snapshot.len(), pre_filter: None, failures };
        PostFilterOutcome::NotHelped { message: summary.to_string() }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
