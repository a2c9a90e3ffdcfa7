//! Lease deadlines.
//!
//! The state machine knows which leases exist and which keys they hold; *when* they expire is
//! decided by one member (the leader, for a replicated store) and carried out as a replicated
//! revoke. [`Lessor`] keeps those deadlines on the tokio clock so tests can pause time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::types::LeaseId;

/// Deadlines of live leases.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: HashMap<LeaseId, (i64, Instant)>,
}

impl Lessor {
    /// No leases.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks a lease of `ttl` seconds, due `ttl` from `now`.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) {
        self.leases.insert(id, (ttl, now + secs(ttl)));
    }

    /// Renews a lease to its full TTL; returns the TTL, or `None` if it is unknown or its
    /// deadline has passed. An expired lease is not renewed, even before its revoke is
    /// applied: the revoke may already be on its way through the log, and a renewal answered
    /// meanwhile would promise the client a lease that is about to vanish (as etcd's lessor,
    /// which answers "lease not found" for an expired lease it has yet to revoke).
    pub fn keep_alive(&mut self, id: LeaseId, now: Instant) -> Option<i64> {
        let (ttl, deadline) = self.leases.get_mut(&id)?;
        if *deadline <= now {
            return None;
        }
        *deadline = now + secs(*ttl);
        Some(*ttl)
    }

    /// Stops tracking a lease.
    pub fn revoke(&mut self, id: LeaseId) {
        self.leases.remove(&id);
    }

    /// Seconds left before the lease expires, rounded up (0 when due).
    pub fn remaining_secs(&self, id: LeaseId, now: Instant) -> Option<i64> {
        let (_, deadline) = self.leases.get(&id)?;
        let left = deadline.saturating_duration_since(now);
        Some(left.as_millis().div_ceil(1000) as i64)
    }

    /// Leases whose deadline has passed, in id order.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> =
            self.leases.iter().filter(|(_, (_, d))| *d <= now).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Replaces every deadline with a full TTL from `now`: what a new leader does, so leases
    /// are not expired for time during which nobody could renew them.
    pub fn promote(&mut self, leases: impl IntoIterator<Item = (LeaseId, i64)>, now: Instant) {
        self.leases = leases.into_iter().map(|(id, ttl)| (id, (ttl, now + secs(ttl)))).collect();
    }

    /// Brings the tracked set in line with `leases` (the state machine's): leases not yet
    /// tracked get a full TTL from `now`; tracked leases missing from `leases` are dropped.
    pub fn sync(&mut self, leases: impl IntoIterator<Item = (LeaseId, i64)>, now: Instant) {
        let mut next = HashMap::new();
        for (id, ttl) in leases {
            let entry = self.leases.get(&id).copied().unwrap_or((ttl, now + secs(ttl)));
            next.insert(id, entry);
        }
        self.leases = next;
    }

    /// Forgets every deadline (a member that stops leading).
    pub fn demote(&mut self) {
        self.leases.clear();
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_the_clock_and_keep_alive() {
        let mut l = Lessor::new();
        let t0 = Instant::now();
        l.grant(1, 5, t0);
        l.grant(2, 10, t0);
        assert!(l.expired(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(l.remaining_secs(1, t0 + Duration::from_millis(4100)), Some(1));
        assert_eq!(l.keep_alive(1, t0 + Duration::from_secs(4)), Some(5));
        assert!(l.expired(t0 + Duration::from_secs(8)).is_empty());
        assert_eq!(l.expired(t0 + Duration::from_secs(10)), vec![1, 2]);
        l.revoke(1);
        assert_eq!(l.keep_alive(1, t0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_not_renewed_while_its_revoke_is_pending() {
        let mut l = Lessor::new();
        let t0 = Instant::now();
        l.grant(1, 3, t0);
        assert_eq!(l.keep_alive(1, t0 + Duration::from_millis(2999)), Some(3));
        let due = t0 + Duration::from_millis(5999);
        assert_eq!(l.expired(due), vec![1], "the expiry loop proposes its revoke now");
        // A keep-alive arriving before that revoke is applied must not bring it back.
        assert_eq!(l.keep_alive(1, due), None);
        assert_eq!(l.keep_alive(1, due + Duration::from_millis(100)), None);
        assert_eq!(l.expired(due + Duration::from_millis(100)), vec![1]);
        assert_eq!(l.remaining_secs(1, due), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn promote_extends_every_lease() {
        let mut l = Lessor::new();
        let t0 = Instant::now();
        l.grant(1, 5, t0);
        let later = t0 + Duration::from_secs(60);
        l.promote([(1, 5)], later);
        assert!(l.expired(later + Duration::from_secs(4)).is_empty());
        assert_eq!(l.expired(later + Duration::from_secs(5)), vec![1]);
    }
}
