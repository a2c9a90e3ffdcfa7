//! The `Recreate` strategy: every old ReplicaSet to zero, wait until no old pod runs, then
//! create and size the new ReplicaSet (Kubernetes' `recreate.go`).

use super::State;
use crate::controllers::deployment::conditions::deployment_complete;
use crate::controllers::deployment::replicas::{spec_replicas, status_replicas, total};

impl State<'_> {
    /// Kubernetes' `rolloutRecreate`.
    pub(super) fn rollout_recreate(&mut self) {
        // The new ReplicaSet is not created yet, so nothing scales up before old pods are gone.
        self.sync_revision(false);
        let old = self.old();
        let mut scaled_down = false;
        for i in self.active(&old) {
            scaled_down |= self.scale_if_resized(i, 0);
        }
        if scaled_down || self.old_pods_running(&old) {
            self.sync_rollout_status();
            return;
        }
        if self.new.is_none() {
            self.sync_revision(true);
        }
        if let Some(new) = self.new
            && spec_replicas(self.rs(new)) != self.sizing.replicas
        {
            self.scale_if_resized(new, self.sizing.replicas);
        }
        let observed = self.d.status.clone().unwrap_or_default();
        if deployment_complete(self.d, &self.sizing, &observed) {
            self.cleanup(&old);
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `oldPodsRunning`: an old ReplicaSet still reports replicas, or a pod of an
    /// owned ReplicaSet other than the new one has not finished (a pod being deleted still
    /// runs until it is gone; an `Unknown` phase may be running).
    fn old_pods_running(&self, old: &[usize]) -> bool {
        if total(old.iter().map(|i| status_replicas(self.rs(*i)))) > 0 {
            return true;
        }
        let new_uid = self.new.and_then(|i| self.rs(i).metadata.uid.as_deref());
        self.pods.iter().filter(|(uid, _)| Some(uid.as_str()) != new_uid).any(|(_, pods)| {
            pods.iter().any(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Failed") | Some("Succeeded"))
            })
        })
    }
}
