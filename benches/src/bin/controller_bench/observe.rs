//! Pod startup as a client sees it: a watcher of the bench namespace, started before the
//! Deployment, stamps each pod with the `tokio::time::Instant` at which it was first seen,
//! first seen bound to a node, and first seen `Ready`. Object timestamps have one-second
//! precision; these have the resolution of the event loop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flotilla_core::client::{Api, Client, ListOptions, WatcherEvent, watcher};
use futures::StreamExt;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::measure::{histogram, record};

/// When one pod was first seen in each state.
struct Seen {
    created: Instant,
    bound: Option<Instant>,
    ready: Option<Instant>,
    /// Whether the latest version seen is `Ready` (a pod can lose readiness after gaining it).
    ready_now: bool,
}

/// What the watcher has seen so far.
#[derive(Default)]
struct State {
    /// Every pod ever seen, by uid.
    pods: HashMap<String, Seen>,
    /// The uids of the pods that exist now.
    live: HashSet<String>,
    /// During a relist: the uids listed so far (the others are gone at `InitDone`).
    relisting: Option<HashSet<String>>,
    /// Whether the first list is complete.
    synced: bool,
    /// Times the watcher had to retry (a dropped or failed watch).
    retries: u64,
}

impl State {
    fn apply(&mut self, pod: &Pod, now: Instant) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let seen = self.pods.entry(uid.clone()).or_insert(Seen {
            created: now,
            bound: None,
            ready: None,
            ready_now: false,
        });
        if seen.bound.is_none() && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
            seen.bound = Some(now);
        }
        seen.ready_now = is_ready(pod);
        if seen.ready.is_none() && seen.ready_now {
            seen.ready = Some(now);
        }
        if let Some(listed) = self.relisting.as_mut() {
            listed.insert(uid.clone());
        }
        self.live.insert(uid);
    }

    fn handle(&mut self, event: WatcherEvent<Pod>, now: Instant) {
        match event {
            WatcherEvent::Init => self.relisting = Some(HashSet::new()),
            WatcherEvent::InitApply(pod) | WatcherEvent::Apply(pod) => self.apply(&pod, now),
            WatcherEvent::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    self.live.retain(|uid| listed.contains(uid));
                }
                self.synced = true;
            }
            WatcherEvent::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_ref() {
                    self.live.remove(uid);
                }
            }
            WatcherEvent::Retrying(_) => self.retries += 1,
        }
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pods that exist now, as the watcher saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Pods that exist (terminating ones included).
    pub(crate) live: usize,
    /// Of those, pods bound to a node.
    pub(crate) bound: usize,
    /// Of those, pods seen `Ready` at least once.
    pub(crate) ready: usize,
    /// Of those, pods `Ready` in the latest version seen.
    pub(crate) ready_now: usize,
    /// Times the watcher had to retry.
    pub(crate) retries: u64,
}

/// Startup of the pods first seen in a window of time.
pub(crate) struct Startup {
    /// Pods first seen in the window.
    pub(crate) created: usize,
    /// Of those, pods seen `Ready` (so far).
    pub(crate) ready: usize,
    /// First seen to seen `Ready`, in microseconds.
    pub(crate) to_ready: Histogram<u64>,
    /// First seen to seen bound to a node, in microseconds.
    pub(crate) to_bound: Histogram<u64>,
}

/// Follows the pods of one namespace until [`stop`](Self::stop)ped.
pub(crate) struct PodObserver {
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PodObserver {
    /// Starts watching the pods of `namespace`.
    pub(crate) fn start(client: Arc<dyn Client>, namespace: &str) -> PodObserver {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let events = watcher(Api::<Pod>::namespaced(client, namespace), ListOptions::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            tokio::pin!(events);
            loop {
                let event = tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    ev = events.next() => match ev { Some(ev) => ev, None => break },
                };
                // Stamped on arrival: this is the moment a client learns of the change.
                let now = Instant::now();
                lock(&shared).handle(event, now);
            }
        });
        PodObserver { state, stop, task }
    }

    /// Waits until the watcher's first list is complete, so that later pods are seen
    /// through watch events as they happen.
    pub(crate) async fn synced(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !lock(&self.state).synced {
            anyhow::ensure!(Instant::now() < deadline, "the pod watcher did not list within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The pods that exist now.
    pub(crate) fn counts(&self) -> Counts {
        let state = lock(&self.state);
        let mut counts = Counts { live: state.live.len(), retries: state.retries, ..Counts::default() };
        for seen in state.live.iter().filter_map(|uid| state.pods.get(uid)) {
            counts.bound += usize::from(seen.bound.is_some());
            counts.ready += usize::from(seen.ready.is_some());
            counts.ready_now += usize::from(seen.ready_now);
        }
        counts
    }

    /// Startup of the pods first seen at or after `since`.
    pub(crate) fn startup(&self, since: Instant) -> Startup {
        let state = lock(&self.state);
        let mut startup = Startup { created: 0, ready: 0, to_ready: histogram(), to_bound: histogram() };
        for seen in state.pods.values().filter(|s| s.created >= since) {
            startup.created += 1;
            if let Some(bound) = seen.bound {
                record(&mut startup.to_bound, bound - seen.created);
            }
            if let Some(ready) = seen.ready {
                startup.ready += 1;
                record(&mut startup.to_ready, ready - seen.created);
            }
        }
        startup
    }

    /// Stops the watcher and waits for it.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            eprintln!("# warning: the pod watcher failed: {e}");
        }
    }
}

/// The state, even if a panicking holder poisoned the lock (the counts stay meaningful).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(uid: &str, node: Option<&str>, ready: bool) -> Pod {
        let mut pod = json!({"metadata": {"name": uid, "uid": uid}, "spec": {"containers": []}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        if ready {
            pod["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        }
        serde_json::from_value(pod).expect("a valid pod")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_state_is_stamped_when_first_seen() {
        let t0 = Instant::now();
        let mut state = State::default();
        state.handle(WatcherEvent::Apply(pod("a", None, false)), t0);
        state.handle(WatcherEvent::Apply(pod("a", Some("n1"), false)), t0 + ms(10));
        state.handle(WatcherEvent::Apply(pod("a", Some("n1"), true)), t0 + ms(30));
        // Later sightings do not move the stamps.
        state.handle(WatcherEvent::Apply(pod("a", Some("n1"), true)), t0 + ms(90));
        let seen = &state.pods["a"];
        assert_eq!((seen.created, seen.bound, seen.ready), (t0, Some(t0 + ms(10)), Some(t0 + ms(30))));
        assert!(seen.ready_now);
        // Losing readiness keeps the first stamp and shows in the current state.
        state.handle(WatcherEvent::Apply(pod("a", Some("n1"), false)), t0 + ms(120));
        let seen = &state.pods["a"];
        assert_eq!((seen.ready, seen.ready_now), (Some(t0 + ms(30)), false));
    }

    #[test]
    fn a_relist_forgets_pods_deleted_meanwhile() {
        let t0 = Instant::now();
        let mut state = State::default();
        for uid in ["a", "b", "c"] {
            state.handle(WatcherEvent::Apply(pod(uid, Some("n1"), true)), t0);
        }
        state.handle(WatcherEvent::Delete(pod("c", Some("n1"), true)), t0);
        assert_eq!(state.live.len(), 2);
        state.handle(WatcherEvent::Retrying("dropped".into()), t0);
        state.handle(WatcherEvent::Init, t0);
        state.handle(WatcherEvent::InitApply(pod("a", Some("n1"), true)), t0);
        state.handle(WatcherEvent::InitDone, t0);
        assert_eq!(state.live, HashSet::from(["a".to_string()]));
        assert!(state.synced);
        assert_eq!(state.retries, 1);
    }

    #[tokio::test]
    async fn startup_covers_pods_first_seen_since_a_moment() {
        let observer_state = Arc::new(Mutex::new(State::default()));
        let t0 = Instant::now();
        {
            let mut state = lock(&observer_state);
            state.handle(WatcherEvent::Apply(pod("old", Some("n1"), true)), t0);
            state.handle(WatcherEvent::Apply(pod("new", None, false)), t0 + ms(100));
            state.handle(WatcherEvent::Apply(pod("new", Some("n1"), false)), t0 + ms(150));
            state.handle(WatcherEvent::Apply(pod("new", Some("n1"), true)), t0 + ms(400));
            state.handle(WatcherEvent::Apply(pod("pending", None, false)), t0 + ms(200));
        }
        let observer = PodObserver {
            state: observer_state,
            stop: CancellationToken::new(),
            task: tokio::spawn(async {}),
        };
        let startup = observer.startup(t0 + ms(50));
        assert_eq!((startup.created, startup.ready), (2, 1));
        assert_eq!(startup.to_ready.len(), 1);
        let to_ready = Duration::from_micros(startup.to_ready.max());
        assert!(to_ready >= ms(300) && to_ready < ms(301), "{to_ready:?}");
        let to_bound = Duration::from_micros(startup.to_bound.max());
        assert!(to_bound >= ms(50) && to_bound < ms(51), "{to_bound:?}");
        assert_eq!(observer.counts(), Counts { live: 3, bound: 2, ready: 2, ready_now: 2, retries: 0 });
        tokio::time::timeout(Duration::from_secs(5), observer.stop()).await.expect("the idle task ends");
    }
}
