//! The rollout's status: progress, completion and the progress deadline, the paused and
//! resumed conditions, and when to look again (Kubernetes' `progress.go` and
//! `checkPausedConditions`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStatus;

use super::State;
use crate::controllers::deployment::conditions::{
    Counts, PROGRESSING, calculate_status, deployment_complete, deployment_progressing, deployment_timed_out,
    get_condition, new_condition, progress_deadline, reasons, remove_condition, set_condition,
    sync_replica_failure,
};

impl State<'_> {
    /// Kubernetes' `checkPausedConditions`: `Progressing=Unknown` with `DeploymentPaused` when
    /// paused and `DeploymentResumed` when resumed, so time spent paused never counts
    /// against the deadline; a timed-out condition is kept.
    pub(super) fn check_paused_conditions(&mut self, paused: bool) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let reason = get_condition(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(reasons::TIMED_OUT) {
            return;
        }
        let paused_condition = reason.as_deref() == Some(reasons::PAUSED);
        let cond = if paused && !paused_condition {
            new_condition(PROGRESSING, "Unknown", reasons::PAUSED, "Deployment is paused".into(), &self.now)
        } else if !paused && paused_condition {
            new_condition(PROGRESSING, "Unknown", reasons::RESUMED, "Deployment is resumed".into(), &self.now)
        } else {
            return;
        };
        set_condition(&mut self.status, cond);
    }

    /// Kubernetes' `syncRolloutStatus`: the counts, then `Progressing` — complete
    /// (`NewReplicaSetAvailable`), progressing (`ReplicaSetUpdated`, its update time moving
    /// with every sign of progress) or past the deadline (`ProgressDeadlineExceeded`) — and
    /// the ReplicaSets' `ReplicaFailure`; and when to look again for the deadline.
    pub(super) fn sync_rollout_status(&mut self) {
        let (all, new) = self.status_view();
        let new_name = new.and_then(|rs| rs.metadata.name.clone());
        let d = self.d;
        let mut status = calculate_status(d, &self.sizing, &self.status, &all, new, &self.now);
        let deadline = progress_deadline(d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = get_condition(&self.status, PROGRESSING).cloned();
        let counts = Counts::of(&status);
        let already_complete = counts.replicas == counts.updated
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(reasons::NEW_RS_AVAILABLE));
        let subject = match &new_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {:?}", d.metadata.name.as_deref().unwrap_or("")),
        };
        if deadline.is_some() && !already_complete {
            if deployment_complete(d, &self.sizing, &status) {
                let msg = format!("{subject} has successfully progressed.");
                let cond = new_condition(PROGRESSING, "True", reasons::NEW_RS_AVAILABLE, msg, &self.now);
                set_condition(&mut status, cond);
            } else if deployment_progressing(&self.status, &status) {
                let msg = format!("{subject} is progressing.");
                let mut cond =
                    new_condition(PROGRESSING, "True", reasons::REPLICA_SET_UPDATED, msg, &self.now);
                // Unlike other conditions, the same reason again still moves the update time:
                // that is how progress is measured.
                if let Some(current) = &current {
                    if current.status == "True" {
                        cond.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, cond);
            } else if deployment_timed_out(deadline, &status, &self.now) {
                let msg = format!("{subject} has timed out progressing.");
                let cond = new_condition(PROGRESSING, "False", reasons::TIMED_OUT, msg, &self.now);
                set_condition(&mut status, cond);
            }
        }
        sync_replica_failure(&mut status, &all, new);
        self.requeue = self.requeue_for_deadline(&status, deadline);
        self.final_status = Some(status);
    }

    /// Kubernetes' `requeueStuckDeployment`: while a rollout has neither completed nor timed
    /// out, look again just after the deadline would pass without any event.
    fn requeue_for_deadline(&self, status: &DeploymentStatus, deadline: Option<i32>) -> Option<Duration> {
        let deadline = deadline?;
        let cond = get_condition(status, PROGRESSING)?;
        if deployment_complete(self.d, &self.sizing, status)
            || cond.reason.as_deref() == Some(reasons::TIMED_OUT)
        {
            return None;
        }
        let from = cond.last_update_time.as_ref()?.0.as_second();
        let left = from.saturating_add(i64::from(deadline)).saturating_sub(self.now.0.as_second());
        // A second more, so the deadline has surely passed when we look (Kubernetes does the
        // same against clock skew); under a second left means look again now, rate-limited.
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0).saturating_add(1)))
    }
}
