//! The benchmark's pods and what a watch of them shows, timestamped as events arrive.
//!
//! Each pod runs one busybox container sleeping for 68 years, with no resource requests and
//! a 1 s termination grace period (`sleep` as PID 1 ignores SIGTERM, so the teardown waits
//! for the grace period, not 30 s). A pod is *bound* at the first event showing
//! `spec.nodeName` (the scheduler's binding, or the creation when `--bind node-name` sets it),
//! and *running* at the first event showing phase `Running` with every container ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use flotilla_core::client::{Api, Client, ListOptions, WatcherEvent, watcher};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The namespace the pods live in.
pub(crate) const NAMESPACE: &str = "default";
/// The label (`key=value`) every benchmark pod carries.
const LABEL: (&str, &str) = ("app", "agent-bench");
/// Pod creations in flight at once.
pub(crate) const CREATE_CONCURRENCY: usize = 16;

/// The name of pod `i`.
pub(crate) fn pod_name(i: usize) -> String {
    format!("agent-bench-{i:04}")
}

/// Pod `name`, running `image`; bound to `node` at creation when given.
pub(crate) fn pod(name: &str, image: &str, node: Option<&str>) -> anyhow::Result<Pod> {
    let mut spec = serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "sleep",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sleep", "2147483647"],
        }],
    });
    if let Some(node) = node {
        spec["nodeName"] = serde_json::Value::from(node);
    }
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": { LABEL.0: LABEL.1 } },
        "spec": spec,
    });
    serde_json::from_value(pod).context("the benchmark's pod template is a valid Pod")
}

/// Whether `pod` is `Running` with every container ready.
pub(crate) fn running_and_ready(pod: &Pod) -> bool {
    let want = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let Some(status) = &pod.status else {
        return false;
    };
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    status.phase.as_deref() == Some("Running")
        && want > 0
        && statuses.len() == want
        && statuses.iter().all(|c| c.ready)
}

/// What was seen of one pod.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodSeen {
    /// The first event showing a node.
    pub(crate) bound: Option<Instant>,
    /// The node it showed.
    pub(crate) node: Option<String>,
    /// The first event showing it running and ready.
    pub(crate) running: Option<Instant>,
    /// Its containers' restarts, as last seen.
    pub(crate) restarts: u32,
    /// The deletion event.
    pub(crate) deleted: Option<Instant>,
}

/// Everything seen so far.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// By pod name.
    pub(crate) pods: HashMap<String, PodSeen>,
    /// Watch events received (initial list included).
    pub(crate) events: u64,
    /// Times the watch failed and was resumed.
    pub(crate) retries: u64,
    /// The first complete list has been received.
    pub(crate) synced: bool,
}

impl Seen {
    /// Applies `pod` as seen at `now`.
    pub(crate) fn apply(&mut self, pod: &Pod, now: Instant) {
        let Some(name) = pod.metadata.name.clone() else {
            return;
        };
        let seen = self.pods.entry(name).or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        if seen.bound.is_none() && node.is_some() {
            seen.bound = Some(now);
            seen.node = node;
        }
        if seen.running.is_none() && running_and_ready(pod) {
            seen.running = Some(now);
        }
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        seen.restarts = statuses.iter().map(|c| u32::try_from(c.restart_count).unwrap_or(0)).sum();
    }

    /// Pods bound, running and deleted.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&PodSeen) -> bool| self.pods.values().filter(|s| f(s)).count();
        (count(|s| s.bound.is_some()), count(|s| s.running.is_some()), count(|s| s.deleted.is_some()))
    }

    /// Bind-to-running durations of the pods that got there.
    pub(crate) fn bind_to_running(&self) -> Vec<Duration> {
        self.pods.values().filter_map(|s| s.running?.checked_duration_since(s.bound?)).collect()
    }

    /// The latest `running` instant (all pods running by then, when all are).
    pub(crate) fn last_running(&self) -> Option<Instant> {
        self.pods.values().filter_map(|s| s.running).max()
    }

    /// The earliest `bound` instant.
    pub(crate) fn first_bound(&self) -> Option<Instant> {
        self.pods.values().filter_map(|s| s.bound).min()
    }

    /// The latest deletion.
    pub(crate) fn last_deleted(&self) -> Option<Instant> {
        self.pods.values().filter_map(|s| s.deleted).max()
    }

    /// Container restarts over every pod.
    pub(crate) fn restarts(&self) -> u32 {
        self.pods.values().map(|s| s.restarts).sum()
    }

    /// Pods bound to a node other than `node`.
    pub(crate) fn elsewhere(&self, node: &str) -> usize {
        self.pods.values().filter(|s| s.node.as_deref().is_some_and(|n| n != node)).count()
    }
}

/// A watch of the benchmark's pods in a task of its own.
pub(crate) struct Observer {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Observer {
    /// Starts watching the benchmark's pods.
    pub(crate) fn start(client: Arc<dyn Client>) -> Observer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let opts =
            ListOptions { label_selector: Some(format!("{}={}", LABEL.0, LABEL.1)), ..Default::default() };
        let mut events = Box::pin(watcher(Api::<Pod>::namespaced(client, NAMESPACE), opts));
        let (shared, token) = (seen.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    event = events.next() => event,
                };
                let Some(event) = event else { return };
                // The arrival time, taken before the lock.
                let now = Instant::now();
                let mut seen = lock(&shared);
                seen.events += 1;
                match event {
                    WatcherEvent::Init => {}
                    WatcherEvent::InitDone => seen.synced = true,
                    WatcherEvent::InitApply(pod) | WatcherEvent::Apply(pod) => seen.apply(&pod, now),
                    WatcherEvent::Delete(pod) => {
                        if let Some(name) = pod.metadata.name {
                            seen.pods.entry(name).or_default().deleted.get_or_insert(now);
                        }
                    }
                    WatcherEvent::Retrying(error) => {
                        seen.retries += 1;
                        eprintln!("# pod watch retrying: {error}");
                    }
                }
            }
        });
        tasks.close();
        Observer { seen, stop, tasks }
    }

    /// What has been seen so far (hold it briefly: the watch task waits for it).
    pub(crate) fn seen(&self) -> MutexGuard<'_, Seen> {
        lock(&self.seen)
    }

    /// Polls until `done` holds of what was seen, printing `progress` of it every 5 s;
    /// fails when `limit` passes, saying `what` it waited for.
    pub(crate) async fn wait(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Seen) -> bool,
        progress: impl Fn(&Seen) -> String,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut next_progress = Instant::now() + Duration::from_secs(5);
        loop {
            let (finished, line) = {
                let seen = self.seen();
                (done(&seen), progress(&seen))
            };
            if finished {
                return Ok(());
            }
            let now = Instant::now();
            anyhow::ensure!(now < deadline, "{what}: not done within {limit:?} ({line})");
            if now >= next_progress {
                eprintln!("# waiting for {what}: {line}");
                next_progress = now + Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the watch and waits for its task.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

/// Locks `seen`; a poisoned lock (the watch task panicked) still holds what was seen.
fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(mut pod: Pod, status: serde_json::Value) -> Pod {
        pod.status = Some(serde_json::from_value(status).expect("a valid PodStatus"));
        pod
    }

    #[test]
    fn the_template_is_a_sleeping_busybox_with_or_without_a_node() {
        let free = pod(&pod_name(7), "flotilla/busybox:1", None).expect("valid");
        assert_eq!(free.metadata.name.as_deref(), Some("agent-bench-0007"));
        let spec = free.spec.as_ref().expect("a spec");
        assert_eq!(spec.node_name, None);
        assert_eq!(spec.containers[0].image.as_deref(), Some("flotilla/busybox:1"));
        assert_eq!(spec.termination_grace_period_seconds, Some(1));
        let bound = pod("p", "i", Some("n1")).expect("valid");
        assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
    }

    #[test]
    fn bind_and_running_are_stamped_once_at_their_first_sighting() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut seen = Seen::default();
        let pending = pod("p", "i", None).expect("valid");
        seen.apply(&pending, at(0));
        assert_eq!(seen.counts(), (0, 0, 0));
        let bound = pod("p", "i", Some("n1")).expect("valid");
        seen.apply(&bound, at(10));
        seen.apply(&bound, at(20));
        let started = with_status(
            bound.clone(),
            serde_json::json!({"phase": "Running", "containerStatuses": [
                {"name": "sleep", "ready": false, "restartCount": 0, "image": "i", "imageID": ""}]}),
        );
        seen.apply(&started, at(30));
        assert_eq!(seen.counts(), (1, 0, 0), "running but not ready is not running");
        let ready = with_status(
            bound,
            serde_json::json!({"phase": "Running", "containerStatuses": [
                {"name": "sleep", "ready": true, "restartCount": 2, "image": "i", "imageID": ""}]}),
        );
        seen.apply(&ready, at(250));
        seen.apply(&ready, at(900));
        assert_eq!(seen.counts(), (1, 1, 0));
        assert_eq!(seen.bind_to_running(), vec![Duration::from_millis(240)]);
        assert_eq!(seen.first_bound(), Some(at(10)));
        assert_eq!(seen.last_running(), Some(at(250)));
        assert_eq!(seen.restarts(), 2);
        assert_eq!(seen.elsewhere("n1"), 0);
        assert_eq!(seen.elsewhere("n2"), 1);
    }

    #[test]
    fn readiness_needs_every_container() {
        let two = serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "image": "i", "imageID": ""}]},
        });
        let pod: Pod = serde_json::from_value(two).expect("valid");
        assert!(!running_and_ready(&pod), "one of two containers reported");
        assert!(!running_and_ready(&Pod::default()));
    }
}
