//! [`Expectations`]: the pods a ReplicaSet's reconciler created and deleted that its pod cache
//! may not show yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::controller::ObjectKey;

/// How long after its last recorded write a ReplicaSet's record is dropped even if the cache
/// never showed every write (Kubernetes' `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The time from `since` to `now`; zero if the clock went backwards.
pub(crate) fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// What the pod cache holds under a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodSeen<'a> {
    /// No pod of that name.
    Absent,
    /// A pod of that name.
    Present {
        /// Its uid.
        uid: Option<&'a str>,
        /// Whether it has a `deletionTimestamp`.
        deleting: bool,
    },
}

/// The writes of one ReplicaSet not yet seen in the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Record {
    /// Names of pods created.
    created: BTreeSet<String>,
    /// Names of pods deleted, with the uid deleted.
    deleted: BTreeMap<String, Option<String>>,
    /// When the last write was recorded.
    last_write: Option<Timestamp>,
    /// When pending writes were last confirmed with direct reads.
    last_confirmation: Option<Timestamp>,
}

impl Record {
    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.deleted.is_empty()
    }
}

/// The outcome of [`Expectations::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every recorded write is visible (or the record expired, or there is none): the
    /// reconciler may create and delete.
    Satisfied,
    /// Some writes are not visible yet.
    Pending(Pending),
}

impl Check {
    /// Whether the reconciler may create and delete.
    pub fn is_satisfied(&self) -> bool {
        matches!(self, Check::Satisfied)
    }
}

/// The writes a ReplicaSet still waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Created pods the cache does not show yet.
    pub created: Vec<String>,
    /// Deleted pods the cache still shows alive, with the uid deleted.
    pub deleted: Vec<(String, Option<String>)>,
    /// When the last write was recorded.
    pub since: Timestamp,
}

/// Per ReplicaSet, the pods its reconciler created and deleted that the pod cache may not
/// show yet.
///
/// The reconciler reads pods from an informer cache that lags behind its own writes. Were it
/// to act on a cache that does not yet show the pods it just created, it would create them
/// again. So it records, per ReplicaSet, the name of every pod it created and deleted, and
/// creates or deletes nothing more until the cache shows every one of those writes:
///
/// - a created name is *observed* once the cache holds a pod of that name;
/// - a deleted name is observed once the cache no longer holds it, holds it with a
///   `deletionTimestamp`, or holds another pod (another uid) of that name.
///
/// [`check`](Self::check) forgets observed names: a created pod seen once and deleted
/// afterwards is not awaited again. A created pod deleted before the cache ever showed it
/// never appears there; [`confirm`](Self::confirm) records that the reconciler found it gone
/// with a direct read, and the whole record expires [`EXPECTATIONS_TIMEOUT`] after its last
/// write anyway (Kubernetes' `ExpectationsTimeout`), so a lost observation delays the
/// ReplicaSet but never wedges it.
///
/// The struct is pure (no clock, no cache): callers pass the time and a lookup of the cache.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    records: HashMap<ObjectKey, Record>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the ReplicaSet `key` created pod `name` at `now`.
    pub fn expect_created(&mut self, key: &ObjectKey, name: &str, now: Timestamp) {
        let r = self.records.entry(key.clone()).or_default();
        r.created.insert(name.to_string());
        r.last_write = Some(now);
    }

    /// Records that the ReplicaSet `key` deleted pod `name` (of uid `uid`) at `now`.
    pub fn expect_deleted(&mut self, key: &ObjectKey, name: &str, uid: Option<&str>, now: Timestamp) {
        let r = self.records.entry(key.clone()).or_default();
        r.deleted.insert(name.to_string(), uid.map(str::to_string));
        r.last_write = Some(now);
    }

    /// Whether the ReplicaSet `key` may create and delete at `now`, given what the pod cache
    /// holds under each name (`seen`). Observed names are forgotten; an expired record is
    /// dropped.
    pub fn check<'a>(
        &mut self,
        key: &ObjectKey,
        now: Timestamp,
        seen: impl Fn(&str) -> PodSeen<'a>,
    ) -> Check {
        let Some(r) = self.records.get_mut(key) else {
            return Check::Satisfied;
        };
        r.created.retain(|name| seen(name) == PodSeen::Absent);
        r.deleted.retain(|name, uid| match seen(name) {
            PodSeen::Absent => false,
            PodSeen::Present { deleting: true, .. } => false,
            PodSeen::Present { uid: seen_uid, deleting: false } => {
                uid.is_none() || seen_uid.is_none() || seen_uid == uid.as_deref()
            }
        });
        let since = r.last_write.unwrap_or(now);
        let expired = elapsed(since, now) >= EXPECTATIONS_TIMEOUT;
        if r.is_empty() || expired {
            if expired && !r.is_empty() {
                tracing::info!(
                    replicaset = %key,
                    created = r.created.len(),
                    deleted = r.deleted.len(),
                    "expectations expired before the pod cache showed every write"
                );
            }
            self.records.remove(key);
            return Check::Satisfied;
        }
        Check::Pending(Pending {
            created: r.created.iter().cloned().collect(),
            deleted: r.deleted.iter().map(|(name, uid)| (name.clone(), uid.clone())).collect(),
            since,
        })
    }

    /// Records that a direct read found pod `name`, created or deleted by the ReplicaSet `key`,
    /// gone or being deleted (or, for a deleted one, replaced by another pod of that name): it
    /// is no longer awaited.
    pub fn confirm(&mut self, key: &ObjectKey, name: &str) {
        if let Some(r) = self.records.get_mut(key) {
            r.created.remove(name);
            r.deleted.remove(name);
            if r.is_empty() {
                self.records.remove(key);
            }
        }
    }

    /// Whether the reconciler of `key` should confirm its pending writes with direct reads at
    /// `now`: `after` has passed since the last write and since the last confirmation. A `true`
    /// answer counts as a confirmation (so confirmations are at most one per `after`).
    pub fn take_confirmation(&mut self, key: &ObjectKey, now: Timestamp, after: Duration) -> bool {
        let Some(r) = self.records.get_mut(key) else {
            return false;
        };
        let last = r.last_write.max(r.last_confirmation).unwrap_or(now);
        if elapsed(last, now) < after {
            return false;
        }
        r.last_confirmation = Some(now);
        true
    }

    /// Forgets the ReplicaSet `key` (it was deleted).
    pub fn forget(&mut self, key: &ObjectKey) {
        self.records.remove(key);
    }

    /// How many ReplicaSets have a record.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no ReplicaSet has a record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + second).expect("valid")
    }

    fn key() -> ObjectKey {
        ObjectKey::namespaced("ns", "web")
    }

    /// A cache holding `present` (name, uid, deleting).
    fn cache<'a>(present: &'a [(&'a str, &'a str, bool)]) -> impl Fn(&str) -> PodSeen<'a> {
        move |name: &str| {
            present.iter().find(|(n, _, _)| *n == name).map_or(PodSeen::Absent, |(_, uid, deleting)| {
                PodSeen::Present { uid: Some(uid), deleting: *deleting }
            })
        }
    }

    #[test]
    fn nothing_recorded_is_satisfied() {
        let mut e = Expectations::new();
        assert_eq!(e.check(&key(), t(0), cache(&[])), Check::Satisfied);
        assert!(e.is_empty());
    }

    #[test]
    fn created_pods_are_awaited_until_the_cache_shows_them() {
        let mut e = Expectations::new();
        e.expect_created(&key(), "web-a", t(0));
        e.expect_created(&key(), "web-b", t(0));
        let Check::Pending(p) = e.check(&key(), t(1), cache(&[])) else { panic!("must wait") };
        assert_eq!(p.created, vec!["web-a".to_string(), "web-b".to_string()]);
        assert_eq!(p.since, t(0));
        // One shows up: only the other is awaited.
        let Check::Pending(p) = e.check(&key(), t(1), cache(&[("web-a", "u1", false)])) else {
            panic!("must still wait")
        };
        assert_eq!(p.created, vec!["web-b".to_string()]);
        // web-a was observed: its later deletion does not bring the wait back.
        assert!(e.check(&key(), t(2), cache(&[("web-b", "u2", false)])).is_satisfied());
        assert!(e.is_empty());
    }

    #[test]
    fn deleted_pods_are_awaited_until_gone_or_deleting() {
        let mut e = Expectations::new();
        e.expect_deleted(&key(), "web-a", Some("u1"), t(0));
        e.expect_deleted(&key(), "web-b", Some("u2"), t(0));
        e.expect_deleted(&key(), "web-c", Some("u3"), t(0));
        let stale = [("web-a", "u1", false), ("web-b", "u2", false), ("web-c", "u3", false)];
        let Check::Pending(p) = e.check(&key(), t(1), cache(&stale)) else { panic!("must wait") };
        assert_eq!(p.deleted.len(), 3);
        // a: gone; b: being deleted (grace period); c: another pod under the same name.
        let fresh = [("web-b", "u2", true), ("web-c", "u9", false)];
        assert!(e.check(&key(), t(2), cache(&fresh)).is_satisfied());
    }

    #[test]
    fn records_expire_five_minutes_after_the_last_write() {
        let mut e = Expectations::new();
        e.expect_created(&key(), "web-a", t(0));
        e.expect_created(&key(), "web-b", t(100));
        assert!(!e.check(&key(), t(100 + 299), cache(&[])).is_satisfied());
        assert!(e.check(&key(), t(100 + 300), cache(&[])).is_satisfied());
        assert!(e.is_empty(), "an expired record is dropped");
        // A clock that goes backwards does not expire anything.
        e.expect_created(&key(), "web-c", t(1000));
        assert!(!e.check(&key(), t(0), cache(&[])).is_satisfied());
    }

    #[test]
    fn confirmations_and_forget() {
        let mut e = Expectations::new();
        e.expect_created(&key(), "web-a", t(0));
        e.expect_deleted(&key(), "web-b", Some("u2"), t(0));
        e.confirm(&key(), "web-b");
        let Check::Pending(p) = e.check(&key(), t(1), cache(&[("web-b", "u2", false)])) else {
            panic!("web-a is still awaited")
        };
        assert_eq!((p.created.len(), p.deleted.len()), (1, 0));
        e.confirm(&key(), "web-a");
        assert!(e.is_empty());

        // Direct reads at most once per interval, not before the interval after the last write.
        e.expect_created(&key(), "web-a", t(0));
        assert!(!e.take_confirmation(&key(), t(9), Duration::from_secs(10)));
        assert!(e.take_confirmation(&key(), t(10), Duration::from_secs(10)));
        assert!(!e.take_confirmation(&key(), t(15), Duration::from_secs(10)));
        assert!(e.take_confirmation(&key(), t(20), Duration::from_secs(10)));
        e.expect_created(&key(), "web-b", t(25));
        assert!(!e.take_confirmation(&key(), t(30), Duration::from_secs(10)));
        e.forget(&key());
        assert!(!e.take_confirmation(&key(), t(100), Duration::from_secs(10)), "nothing to confirm");

        let other = ObjectKey::namespaced("ns", "api");
        e.expect_created(&key(), "web-a", t(0));
        e.expect_created(&other, "api-a", t(0));
        e.forget(&key());
        assert_eq!(e.len(), 1);
        assert!(e.check(&key(), t(1), cache(&[])).is_satisfied());
        assert!(!e.check(&other, t(1), cache(&[])).is_satisfied());
    }
}
