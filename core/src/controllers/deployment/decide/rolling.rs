//! The `RollingUpdate` strategy: grow the new ReplicaSet within `maxSurge`, shrink the old
//! ones within `maxUnavailable`, unhealthy replicas first (Kubernetes' `rolling.go`).

use super::State;
use crate::controllers::deployment::conditions::deployment_complete;
use crate::controllers::deployment::replicas::{available_replicas, by_creation, spec_replicas, total};

impl State<'_> {
    /// Kubernetes' `rolloutRolling`: one step per sync — scale up if possible, else scale
    /// down if possible, else (once complete) clean up history — then the rollout status.
    pub(super) fn rollout_rolling(&mut self) {
        self.sync_revision(true);
        let Some(new) = self.new else {
            // The name is taken (collision count bumped) or ours is settling: status only.
            self.sync_rollout_status();
            return;
        };
        if self.reconcile_new(new) {
            self.sync_rollout_status();
            return;
        }
        let old = self.old();
        let active_old = self.active(&old);
        if self.reconcile_old(active_old, new) {
            self.sync_rollout_status();
            return;
        }
        let observed = self.d.status.clone().unwrap_or_default();
        if deployment_complete(self.d, &self.sizing, &observed) {
            self.cleanup(&old);
        }
        self.sync_rollout_status();
    }

    /// Kubernetes' `reconcileNewReplicaSet`: down to `replicas` if above, else up within the
    /// surge budget; whether the size changed.
    fn reconcile_new(&mut self, new: usize) -> bool {
        let replicas = self.sizing.replicas;
        let size = spec_replicas(self.rs(new));
        if size == replicas {
            return false;
        }
        if size > replicas {
            return self.scale(new, replicas);
        }
        let all = self.all();
        let to = self.sizing.new_rs_replicas(self.total_spec(&all), size);
        self.scale(new, to)
    }

    /// Kubernetes' `reconcileOldReplicaSets`: how far the old ReplicaSets may shrink is what
    /// exceeds the minimum available, not counting the new ReplicaSet's unavailable pods
    /// (they must not let old ones go); unhealthy replicas go first. Whether any shrank.
    fn reconcile_old(&mut self, active_old: Vec<usize>, new: usize) -> bool {
        if self.total_spec(&active_old) == 0 {
            return false;
        }
        let all = self.all();
        let all_pods = self.total_spec(&all);
        let min_available = self.sizing.replicas.saturating_sub(self.sizing.max_unavailable());
        let new_rs = self.rs(new);
        let new_unavailable = spec_replicas(new_rs).saturating_sub(available_replicas(new_rs));
        let max_scaled_down = all_pods.saturating_sub(min_available).saturating_sub(new_unavailable);
        if max_scaled_down <= 0 {
            return false;
        }
        let Some((old, cleaned)) = self.cleanup_unhealthy(active_old, max_scaled_down) else {
            return false;
        };
        let scaled = self.scale_down_old(&old, new);
        cleaned.saturating_add(scaled) > 0
    }

    /// Kubernetes' `cleanupUnhealthyReplicas`: shrinks old ReplicaSets (oldest first) by
    /// their unavailable replicas, at most `max` in all — removing those never lowers
    /// availability. The old ReplicaSets in that order and how many went; `None` when a
    /// ReplicaSet reports more available replicas than it wants (Kubernetes gives up the
    /// step then).
    fn cleanup_unhealthy(&mut self, mut old: Vec<usize>, max: i32) -> Option<(Vec<usize>, i32)> {
        old.sort_by(|a, b| by_creation(self.rs(*a), self.rs(*b)));
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max {
                break;
            }
            let size = spec_replicas(self.rs(i));
            let available = available_replicas(self.rs(i));
            if size == 0 || size == available {
                continue;
            }
            let n = max.saturating_sub(cleaned).min(size.saturating_sub(available));
            if n < 0 {
                tracing::debug!(deployment = %self.key(), replica_set = ?self.rs(i).metadata.name,
                    size, available, "more available replicas than desired; not cleaning up");
                return None;
            }
            self.scale(i, size - n);
            cleaned += n;
        }
        Some((old, cleaned))
    }

    /// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate`: shrinks old ReplicaSets (oldest
    /// first) by as many as are available beyond `replicas - maxUnavailable`, counting the
    /// active old and the new ReplicaSets. How many went.
    fn scale_down_old(&mut self, old: &[usize], new: usize) -> i32 {
        let min_available = self.sizing.replicas.saturating_sub(self.sizing.max_unavailable());
        let available = total(old.iter().chain([&new]).map(|i| available_replicas(self.rs(*i))));
        if available <= min_available {
            return 0;
        }
        let budget = available.saturating_sub(min_available);
        let mut scaled = 0;
        for &i in old {
            if scaled >= budget {
                break;
            }
            let size = spec_replicas(self.rs(i));
            if size == 0 {
                continue;
            }
            let n = size.min(budget.saturating_sub(scaled));
            self.scale(i, size - n);
            scaled += n;
        }
        scaled
    }
}
