//! Ending a pod: kill with the grace period, remove containers and sandboxes, tear down
//! volumes, then finish the deletion in the API (or, for a pod already gone, end the worker).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::{Action, KillReason, PlanInput, PodPlan, VolumeState};
use crate::runtime::ContainerState;

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// The grace period of containers whose pod the agent never knew (kubelet's minimum).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// The grace period to stop `pod`'s containers with: its `deletionGracePeriodSeconds` when it
/// is being deleted, else its `terminationGracePeriodSeconds`, else 30 s; [`ORPHAN_GRACE`]
/// for an unknown pod.
pub fn grace_period(pod: Option<&Pod>, deleting: bool) -> Duration {
    let Some(pod) = pod else { return ORPHAN_GRACE };
    let from_deletion = deleting.then_some(pod.metadata.deletion_grace_period_seconds).flatten();
    let from_spec = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
    match from_deletion.or(from_spec) {
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
        None => DEFAULT_GRACE,
    }
}

/// The actions that end the pod, in order.
pub(super) fn terminate(input: &PlanInput<'_>, plan: &mut PodPlan) {
    let grace = grace_period(input.pod, true);
    for c in &input.runtime.containers {
        if !matches!(c.state, ContainerState::Exited { .. }) {
            plan.actions.push(Action::KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                grace,
                reason: KillReason::Terminating,
            });
        }
    }
    for c in &input.runtime.containers {
        plan.actions.push(Action::RemoveContainer { id: c.id.clone(), name: c.name.clone() });
    }
    for s in &input.runtime.sandboxes {
        plan.actions.push(Action::RemoveSandbox { id: s.id.clone() });
    }
    if *input.volumes != VolumeState::TornDown {
        plan.actions.push(Action::TearDownVolumes);
    }
    plan.actions.push(if input.gone || input.pod.is_none() { Action::Finish } else { Action::DeletePod });
}
