//! The default plugins, with kube-scheduler's semantics and reasons.
//!
//! | plugin | extension points | rejects with |
//! |---|---|---|
//! | [`NodeUnschedulable`] | filter | "node(s) were unschedulable" |
//! | [`NodeName`] | filter | "node(s) didn't match the requested node name" |
//! | [`TaintToleration`] | filter, score | "node(s) had untolerated taint {key: value}" |
//! | [`NodeAffinity`] | pre-filter, filter, score | "node(s) didn't match Pod's node affinity/selector" |
//! | [`NodeResourcesFit`] | pre-filter, filter, score | "Insufficient cpu", "Too many pods", ... |
//! | [`NodeResourcesBalancedAllocation`] | score | |
//! | [`PodTopologySpread`] | pre-filter, filter, score | "node(s) didn't match pod topology spread constraints" |
//! | [`InterPodAffinity`] | pre-filter, filter, score | "node(s) didn't match pod affinity rules", ... |
//! | [`VolumeBinding`] | pre-filter, filter, reserve, pre-bind | "node(s) had volume node affinity conflict", ... |
//! | [`DefaultPreemption`] | post-filter | "No preemption victims found for incoming pod", ... |

mod affinity;
mod basic;
mod inter_pod_affinity;
mod node_selector;
pub(crate) mod pod_affinity_terms;
mod preemption;
mod resources;
#[cfg(test)]
pub(crate) mod snapshot_steps;
mod taints;
#[cfg(test)]
pub(crate) mod test_pods;
mod topology_spread;
mod volume_binding;

use std::sync::Arc;

pub use affinity::NodeAffinity;
pub use basic::{NodeName, NodeUnschedulable};
pub use inter_pod_affinity::InterPodAffinity;
pub use preemption::DefaultPreemption;
pub use resources::{NodeResourcesBalancedAllocation, NodeResourcesFit, ScoringStrategy};
pub use taints::{TaintToleration, tolerates};
pub use topology_spread::PodTopologySpread;
pub use volume_binding::{DEFAULT_BIND_POLL_INTERVAL, DEFAULT_BIND_TIMEOUT, VolumeBinding};

use super::Profile;

/// The `schedulerName` of pods that name no scheduler.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// kube-scheduler's default profile, for the plugins implemented so far: filters in its
/// order, and its score weights (TaintToleration 3, NodeAffinity 2, NodeResourcesFit 1,
/// PodTopologySpread 2, InterPodAffinity 2, NodeResourcesBalancedAllocation 1).
pub fn default_profile() -> Profile {
    let fit = Arc::new(NodeResourcesFit::default());
    let affinity = Arc::new(NodeAffinity);
    let taints = Arc::new(TaintToleration);
    let spread = Arc::new(PodTopologySpread);
    let inter_pod = Arc::new(InterPodAffinity::default());
    let volumes = Arc::new(VolumeBinding::default());
    Profile::new(DEFAULT_SCHEDULER_NAME)
        .with_pre_filter(fit.clone())
        .with_pre_filter(affinity.clone())
        .with_pre_filter(volumes.clone())
        .with_pre_filter(spread.clone())
        .with_pre_filter(inter_pod.clone())
        .with_filter(Arc::new(NodeUnschedulable))
        .with_filter(Arc::new(NodeName))
        .with_filter(taints.clone())
        .with_filter(affinity.clone())
        .with_filter(fit.clone())
        .with_filter(volumes.clone())
        .with_filter(spread.clone())
        .with_filter(inter_pod.clone())
        .with_score(taints, 3)
        .with_score(affinity, 2)
        .with_score(fit, 1)
        .with_score(spread, 2)
        .with_score(inter_pod, 2)
        .with_score(Arc::new(NodeResourcesBalancedAllocation::default()), 1)
        .with_post_filter(Arc::new(DefaultPreemption::default()))
        .with_reserve(volumes.clone())
        .with_pre_bind(volumes)
}
