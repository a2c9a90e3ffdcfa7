//! The Deployment's status: replica counts from its ReplicaSets, the `Available`,
//! `Progressing` and `ReplicaFailure` conditions, and the tests of completeness, progress and
//! timeout that drive them (Kubernetes' `deployment_util.go` and `sync.go`).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::replicas::{Sizing, available_replicas, ready_replicas, spec_replicas, status_replicas, total};

/// The reasons the controller gives in the Deployment's conditions, as Kubernetes spells them.
pub mod reasons {
    /// `Progressing`: a ReplicaSet of the rollout changed size or became more available.
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    /// `Progressing=False`: the new ReplicaSet could not be created.
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    /// `Progressing`: the new ReplicaSet was created.
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    /// `Progressing`: an existing ReplicaSet was found to be the new one.
    pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
    /// `Progressing`: the rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// `Progressing=False`: no progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// `Progressing=Unknown`: paused, so progress is not measured.
    pub const PAUSED: &str = "DeploymentPaused";
    /// `Progressing=Unknown`: resumed; the deadline counts from now.
    pub const RESUMED: &str = "DeploymentResumed";
    /// `Available`: at least `replicas - maxUnavailable` pods are available.
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// `Available=False`: fewer than `replicas - maxUnavailable` pods are available.
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// The `Available` condition type.
pub(super) const AVAILABLE: &str = "Available";
/// The `Progressing` condition type.
pub(super) const PROGRESSING: &str = "Progressing";
/// The `ReplicaFailure` condition type (copied from ReplicaSets).
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A condition that changed at `now`.
pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The condition of type `type_`.
pub(super) fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets `cond` (Kubernetes' `SetDeploymentCondition`): nothing changes if a condition of its
/// type already has its status and reason; a condition keeps its transition time while its
/// status stays. The set condition moves to the end of the list.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get_condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// Removes the condition of type `type_`.
pub(super) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = &mut status.conditions {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// `progressDeadlineSeconds`, unless it is disabled (`i32::MAX`, Kubernetes' "no deadline").
/// Unset means the API default, 600.
pub(super) fn progress_deadline(d: &Deployment) -> Option<i32> {
    let seconds = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
    (seconds != i32::MAX).then_some(seconds)
}

/// A count as the API writes it: zero is omitted.
fn count(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The replica counts of a status, zero when absent.
pub(super) struct Counts {
    pub(super) replicas: i32,
    pub(super) updated: i32,
    pub(super) ready: i32,
    pub(super) available: i32,
}

impl Counts {
    pub(super) fn of(s: &DeploymentStatus) -> Counts {
        Counts {
            replicas: s.replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
        }
    }
}

/// The status the ReplicaSets imply (Kubernetes' `calculateStatus`): counts, the observed
/// generation, the collision count and conditions of `current`, and the `Available`
/// condition.
pub(super) fn calculate_status(
    d: &Deployment,
    sizing: &Sizing,
    current: &DeploymentStatus,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: &Time,
) -> DeploymentStatus {
    let available = total(all.iter().map(|rs| available_replicas(rs)));
    let total_spec = total(all.iter().map(|rs| spec_replicas(rs)));
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|g| *g != 0),
        replicas: count(total(all.iter().map(|rs| status_replicas(rs)))),
        updated_replicas: count(new.map_or(0, status_replicas)),
        ready_replicas: count(total(all.iter().map(|rs| ready_replicas(rs)))),
        available_replicas: count(available),
        // More available than desired (scaling down) is not negative unavailability.
        unavailable_replicas: count(total_spec.saturating_sub(available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone().filter(|c| !c.is_empty()),
        terminating_replicas: None,
    };
    let cond = if available >= sizing.replicas.saturating_sub(sizing.max_unavailable()) {
        let msg = "Deployment has minimum availability.".to_string();
        new_condition(AVAILABLE, "True", reasons::MINIMUM_REPLICAS_AVAILABLE, msg, now)
    } else {
        let msg = "Deployment does not have minimum availability.".to_string();
        new_condition(AVAILABLE, "False", reasons::MINIMUM_REPLICAS_UNAVAILABLE, msg, now)
    };
    set_condition(&mut status, cond);
    status
}

/// Every desired replica is updated and available, no old one runs, and this generation was
/// observed (Kubernetes' `DeploymentComplete`).
pub(super) fn deployment_complete(d: &Deployment, sizing: &Sizing, status: &DeploymentStatus) -> bool {
    let c = Counts::of(status);
    c.updated == sizing.replicas
        && c.replicas == sizing.replicas
        && c.available == sizing.replicas
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// New pods were added or became ready or available, or old ones went away, since `old`
/// (Kubernetes' `DeploymentProgressing`).
pub(super) fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let (o, n) = (Counts::of(old), Counts::of(new));
    n.updated > o.updated
        || n.replicas.saturating_sub(n.updated) < o.replicas.saturating_sub(o.updated)
        || n.ready > o.ready
        || n.available > o.available
}

/// The `Progressing` condition says the deadline passed, or its last update is more than
/// `deadline` seconds before `now` (Kubernetes' `DeploymentTimedOut`). A completed rollout
/// never times out.
pub(super) fn deployment_timed_out(deadline: Option<i32>, status: &DeploymentStatus, now: &Time) -> bool {
    let Some(deadline) = deadline else { return false };
    let Some(cond) = get_condition(status, PROGRESSING) else { return false };
    match cond.reason.as_deref() {
        Some(reasons::NEW_RS_AVAILABLE) => return false,
        Some(reasons::TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = &cond.last_update_time else { return false };
    from.0.as_second().saturating_add(i64::from(deadline)) < now.0.as_second()
}

/// The `ReplicaFailure` conditions of the new ReplicaSet, or else of any ReplicaSet, as
/// Deployment conditions (Kubernetes' `getReplicaFailures`).
pub(super) fn replica_failure(all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE).cloned()
    };
    let c = new.and_then(failure).or_else(|| all.iter().find_map(|rs| failure(rs)))?;
    Some(DeploymentCondition {
        type_: c.type_,
        status: c.status,
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time,
        reason: c.reason,
        message: c.message,
    })
}

/// Puts the replica failure of the ReplicaSets into `status`, or removes a stale one.
pub(super) fn sync_replica_failure(
    status: &mut DeploymentStatus,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) {
    match replica_failure(all, new) {
        Some(c) => set_condition(status, c),
        None => remove_condition(status, REPLICA_FAILURE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: &str) -> Time {
        Time(s.parse::<Timestamp>().expect("time"))
    }

    #[test]
    fn setting_a_condition_keeps_times_as_kubernetes_does() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T00:01:00Z");
        let mut s = DeploymentStatus::default();
        set_condition(&mut s, new_condition(PROGRESSING, "True", "A", "a".into(), &t0));
        // Same status and reason: nothing changes, not even the message.
        set_condition(&mut s, new_condition(PROGRESSING, "True", "A", "b".into(), &t1));
        let c = get_condition(&s, PROGRESSING).expect("cond");
        assert_eq!((c.message.as_deref(), c.last_update_time.as_ref()), (Some("a"), Some(&t0)));
        // Same status, other reason: the transition time stays.
        set_condition(&mut s, new_condition(PROGRESSING, "True", "B", "b".into(), &t1));
        let c = get_condition(&s, PROGRESSING).expect("cond");
        assert_eq!((c.last_update_time.as_ref(), c.last_transition_time.as_ref()), (Some(&t1), Some(&t0)));
        // Other status: both move.
        set_condition(&mut s, new_condition(PROGRESSING, "False", "C", "c".into(), &t1));
        let c = get_condition(&s, PROGRESSING).expect("cond");
        assert_eq!(c.last_transition_time.as_ref(), Some(&t1));
        remove_condition(&mut s, PROGRESSING);
        assert_eq!(s.conditions, None);
    }

    #[test]
    fn timeout_counts_from_the_last_update() {
        let t0 = at("2026-01-01T00:00:00Z");
        let mut s = DeploymentStatus::default();
        assert!(!deployment_timed_out(Some(600), &s, &t0), "no condition, no base");
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", reasons::REPLICA_SET_UPDATED, "x".into(), &t0),
        );
        assert!(!deployment_timed_out(Some(600), &s, &at("2026-01-01T00:10:00Z")), "exactly at the deadline");
        assert!(deployment_timed_out(Some(600), &s, &at("2026-01-01T00:10:01Z")));
        assert!(!deployment_timed_out(None, &s, &at("2026-01-02T00:00:00Z")), "no deadline");
    }

    #[test]
    fn progress_is_any_improvement() {
        let old = DeploymentStatus { replicas: Some(4), updated_replicas: Some(1), ..Default::default() };
        let same = old.clone();
        assert!(!deployment_progressing(&old, &same));
        let fewer_old =
            DeploymentStatus { replicas: Some(3), updated_replicas: Some(1), ..Default::default() };
        assert!(deployment_progressing(&old, &fewer_old));
        let more_ready = DeploymentStatus { ready_replicas: Some(1), ..old.clone() };
        assert!(deployment_progressing(&old, &more_ready));
    }
}
