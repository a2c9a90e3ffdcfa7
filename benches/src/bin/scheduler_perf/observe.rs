//! Binding as a client sees it: a watch of every pod that stamps each pod with the
//! `tokio::time::Instant` at which it was first seen with `spec.nodeName` set, and counts bound
//! and deleted pods per namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flotilla_core::client::{Api, Client, ListOptions, WatcherEvent, watcher};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::POLL;

/// What the watch has seen so far.
#[derive(Default)]
struct State {
    /// When each pod (`namespace/name`) was first seen bound.
    bound: HashMap<String, Instant>,
    /// Pods seen bound, per namespace.
    bound_in: HashMap<String, usize>,
    /// Pods seen deleted, per namespace.
    deleted_in: HashMap<String, usize>,
    /// Whether the first list is complete.
    synced: bool,
    /// Times the watch had to retry (a dropped or failed watch).
    retries: u64,
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

impl State {
    fn apply(&mut self, pod: &Pod, now: Instant) {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        if !bound {
            return;
        }
        let key = format!("{}/{}", namespace(pod), pod.metadata.name.as_deref().unwrap_or(""));
        if let std::collections::hash_map::Entry::Vacant(e) = self.bound.entry(key) {
            e.insert(now);
            *self.bound_in.entry(namespace(pod).to_string()).or_default() += 1;
        }
    }

    fn handle(&mut self, event: WatcherEvent<Pod>, now: Instant) {
        match event {
            WatcherEvent::Init | WatcherEvent::Retrying(_) if self.synced => self.retries += 1,
            WatcherEvent::Init | WatcherEvent::Retrying(_) => {}
            WatcherEvent::InitApply(pod) | WatcherEvent::Apply(pod) => self.apply(&pod, now),
            WatcherEvent::InitDone => self.synced = true,
            WatcherEvent::Delete(pod) => {
                *self.deleted_in.entry(namespace(&pod).to_string()).or_default() += 1;
            }
        }
    }
}

/// Follows every pod until [`stop`](Self::stop)ped.
pub(crate) struct PodObserver {
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PodObserver {
    /// Starts watching the pods of every namespace.
    pub(crate) fn start(client: Arc<dyn Client>) -> PodObserver {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let events = watcher(Api::<Pod>::all(client), ListOptions::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            tokio::pin!(events);
            loop {
                let event = tokio::select! {
                    biased;
                    _ = stopped.cancelled() => break,
                    ev = events.next() => match ev { Some(ev) => ev, None => break },
                };
                // Stamped on arrival: the moment a client learns of the binding.
                let now = Instant::now();
                lock(&shared).handle(event, now);
            }
        });
        PodObserver { state, stop, task }
    }

    /// Waits until the first list is complete, so that later pods are seen as they change.
    pub(crate) async fn synced(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !lock(&self.state).synced {
            anyhow::ensure!(Instant::now() < deadline, "the pod watch did not list within {timeout:?}");
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Pods of `namespace` seen bound so far.
    pub(crate) fn bound_in(&self, namespace: &str) -> usize {
        lock(&self.state).bound_in.get(namespace).copied().unwrap_or(0)
    }

    /// Pods of `namespace` seen deleted so far.
    pub(crate) fn deleted_in(&self, namespace: &str) -> usize {
        lock(&self.state).deleted_in.get(namespace).copied().unwrap_or(0)
    }

    /// Times the watch had to retry after its first list.
    pub(crate) fn retries(&self) -> u64 {
        lock(&self.state).retries
    }

    /// When each of `keys` (`namespace/name`) was first seen bound, `None` for those never.
    pub(crate) fn bound_at(&self, keys: impl Iterator<Item = String>) -> Vec<Option<Instant>> {
        let state = lock(&self.state);
        keys.map(|k| state.bound.get(&k).copied()).collect()
    }

    /// Stops the watch and waits for it.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            eprintln!("# warning: the pod watch failed: {e}");
        }
    }
}

/// The state, even if a panicking holder poisoned the lock (the stamps stay meaningful).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, name: &str, node: Option<&str>) -> Pod {
        let mut pod = json!({"metadata": {"name": name, "namespace": ns}, "spec": {"containers": []}});
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        serde_json::from_value(pod).expect("a valid pod")
    }

    #[test]
    fn a_pod_is_stamped_when_first_seen_bound_and_counted_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut state = State::default();
        state.handle(WatcherEvent::Init, t0);
        state.handle(WatcherEvent::InitApply(pod("a", "old", Some("n1"))), t0);
        state.handle(WatcherEvent::InitDone, t0);
        state.handle(WatcherEvent::Apply(pod("b", "p", None)), t0 + ms(5));
        state.handle(WatcherEvent::Apply(pod("b", "p", Some("n1"))), t0 + ms(20));
        // A later version (an Event-driven status change, say) does not move the stamp.
        state.handle(WatcherEvent::Apply(pod("b", "p", Some("n1"))), t0 + ms(90));
        state.handle(WatcherEvent::Apply(pod("b", "q", Some(""))), t0 + ms(90));
        state.handle(WatcherEvent::Delete(pod("a", "old", Some("n1"))), t0 + ms(100));
        assert_eq!(state.bound["b/p"], t0 + ms(20));
        assert!(!state.bound.contains_key("b/q"), "an empty nodeName is not bound");
        assert_eq!((state.bound_in["a"], state.bound_in["b"]), (1, 1));
        assert_eq!(state.deleted_in["a"], 1);
        assert!(state.synced);
        // Retries count only after the first list.
        assert_eq!(state.retries, 0);
        state.handle(WatcherEvent::Retrying("dropped".into()), t0);
        state.handle(WatcherEvent::Init, t0);
        assert_eq!(state.retries, 2);
    }
}
