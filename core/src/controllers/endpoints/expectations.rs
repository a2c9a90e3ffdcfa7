//! What a reconciler wrote, remembered until its informer cache shows it (Kubernetes'
//! `EndpointSliceTracker`): deciding from a cache that has not yet seen the last write would
//! create a second slice for the same endpoints, or send an update bound to fail.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;

use crate::controller::ObjectKey;
use crate::registry::Clock;

/// How long writes are waited for in the cache before being forgotten: a write that someone
/// else undid at once (a slice deleted right after it was created) never shows.
pub(crate) const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the cache should show of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// The object at this resourceVersion or a later one.
    AtLeast(u64),
    /// No object.
    Gone,
}

struct Pending {
    /// When the last of these writes was made.
    since: Timestamp,
    /// Object name -> what the cache should show.
    objects: BTreeMap<String, Expected>,
}

/// Writes per Service not yet seen in the cache.
pub(crate) struct Expectations {
    clock: Clock,
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

impl Expectations {
    /// No expectations; `clock` times them out.
    pub(crate) fn new(clock: Clock) -> Self {
        Expectations { clock, pending: Mutex::new(HashMap::new()) }
    }

    fn record(&self, service: &ObjectKey, name: &str, what: Expected) {
        let now = (self.clock)();
        let mut pending = self.pending.lock();
        let p = pending
            .entry(service.clone())
            .or_insert_with(|| Pending { since: now, objects: BTreeMap::new() });
        p.since = now;
        p.objects.insert(name.to_string(), what);
    }

    /// Records that object `name` of `service` was written at `resource_version`. A version
    /// that is not a number cannot be compared and is not waited for.
    pub(crate) fn wrote(&self, service: &ObjectKey, name: &str, resource_version: Option<&str>) {
        match resource_version.and_then(|rv| rv.parse().ok()) {
            Some(rv) => self.record(service, name, Expected::AtLeast(rv)),
            None => self.forget_object(service, name),
        }
    }

    /// Records that object `name` of `service` was deleted.
    pub(crate) fn deleted(&self, service: &ObjectKey, name: &str) {
        self.record(service, name, Expected::Gone);
    }

    fn forget_object(&self, service: &ObjectKey, name: &str) {
        let mut pending = self.pending.lock();
        if let Some(p) = pending.get_mut(service) {
            p.objects.remove(name);
            if p.objects.is_empty() {
                pending.remove(service);
            }
        }
    }

    /// Whether the cache has yet to show a write made for `service`. `observed` gives the
    /// resourceVersion of an object in the cache, `None` when it is absent. Expectations met,
    /// or older than [`EXPECTATION_TIMEOUT`], are forgotten.
    pub(crate) fn unmet(&self, service: &ObjectKey, observed: impl Fn(&str) -> Option<String>) -> bool {
        let now = (self.clock)();
        let mut pending = self.pending.lock();
        let Some(p) = pending.get_mut(service) else { return false };
        let waited = now.as_second().saturating_sub(p.since.as_second());
        if waited >= EXPECTATION_TIMEOUT.as_secs() as i64 {
            pending.remove(service);
            return false;
        }
        p.objects.retain(|name, want| {
            let seen = observed(name);
            let met = match *want {
                Expected::Gone => seen.is_none(),
                Expected::AtLeast(rv) => seen.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= rv),
            };
            !met
        });
        if p.objects.is_empty() {
            pending.remove(service);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn clock_at(t: Arc<Mutex<Timestamp>>) -> Clock {
        Arc::new(move || *t.lock())
    }

    #[test]
    fn writes_are_awaited_until_the_cache_shows_them() {
        let now = Arc::new(Mutex::new(Timestamp::from_second(1_000).expect("time")));
        let e = Expectations::new(clock_at(now.clone()));
        let svc = ObjectKey::namespaced("ns", "web");
        assert!(!e.unmet(&svc, |_| None));
        e.wrote(&svc, "web-a", Some("10"));
        e.deleted(&svc, "web-b");
        let cache = |a: Option<&str>, b: Option<&str>| {
            let (a, b) = (a.map(str::to_string), b.map(str::to_string));
            move |name: &str| if name == "web-a" { a.clone() } else { b.clone() }
        };
        assert!(e.unmet(&svc, cache(None, Some("3"))), "neither write seen");
        assert!(e.unmet(&svc, cache(Some("9"), None)), "an older version of web-a");
        assert!(!e.unmet(&svc, cache(Some("11"), None)), "both seen");
        assert!(!e.unmet(&svc, cache(None, Some("3"))), "forgotten once met");
        e.wrote(&svc, "web-c", Some("12"));
        *now.lock() = Timestamp::from_second(1_000 + EXPECTATION_TIMEOUT.as_secs() as i64).expect("time");
        assert!(!e.unmet(&svc, |_| None), "given up after the timeout");
        e.wrote(&svc, "web-d", Some("opaque"));
        assert!(!e.unmet(&svc, |_| None), "versions that are not numbers are not awaited");
    }
}
