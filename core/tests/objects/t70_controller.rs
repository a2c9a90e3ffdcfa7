//! The controller runtime over the in-memory store with a paused clock: triggers (primary,
//! owned, mapped), one reconcile per key at a time, retries with backoff, requeue-after,
//! leadership (standing by, aborting in-flight work), graceful shutdown, metrics, the Event
//! recorder, the finalizer helper and the hollow kubelet.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::client::{Cache, DeleteOptions};
use flotilla_core::controller::events::{EventType, Recorder, reference};
use flotilla_core::controller::finalizers::{FinalizerEvent, finalizer, has_finalizer};
use flotilla_core::controller::testing::{HollowKubelet, TestKit};
use flotilla_core::controller::{
    Action, Change, Controller, ControllerConfig, ControllerMetrics, ObjectKey, Reconciler,
};
use flotilla_core::controllers::util::{controller_reference, is_pod_ready};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a whole test may take (tokio time; the clock is paused).
const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("a valid pod")
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap { metadata: meta(name), ..Default::default() }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TestError(String);

/// What a scripted reconciler does for a key.
#[derive(Clone, Copy, Debug, Default)]
enum Script {
    #[default]
    Succeed,
    /// Fail this many times, then succeed.
    FailTimes(usize),
    /// Ask to be requeued after the duration.
    Requeue(Duration),
    /// Block until released (or aborted).
    Block,
    /// Take a while (tokio time).
    Slow(Duration),
}

/// A reconciler that records what it was asked and follows a script per key.
#[derive(Clone, Default)]
struct Scripted {
    calls: Arc<Mutex<Vec<(ObjectKey, Instant)>>>,
    scripts: Arc<Mutex<BTreeMap<String, Script>>>,
    failures: Arc<Mutex<BTreeMap<String, usize>>>,
    release: Arc<Notify>,
    /// Set when a blocked reconcile's future is dropped before it finished.
    aborted: Arc<AtomicBool>,
    running: Arc<Mutex<BTreeMap<ObjectKey, usize>>>,
    max_same_key: Arc<AtomicUsize>,
}

struct DropFlag(Arc<AtomicBool>, bool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl Scripted {
    fn script(&self, name: &str, s: Script) {
        self.scripts.lock().insert(name.into(), s);
    }

    fn calls_for(&self, name: &str) -> Vec<Instant> {
        self.calls.lock().iter().filter(|(k, _)| k.name == name).map(|(_, t)| *t).collect()
    }
}

#[async_trait]
impl Reconciler for Scripted {
    type Error = TestError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, TestError> {
        self.calls.lock().push((key.clone(), Instant::now()));
        {
            let mut running = self.running.lock();
            let n = running.entry(key.clone()).or_default();
            *n += 1;
            self.max_same_key.fetch_max(*n, Ordering::SeqCst);
        }
        let script = self.scripts.lock().get(&key.name).copied().unwrap_or_default();
        let result = match script {
            Script::Succeed => Ok(Action::Done),
            Script::FailTimes(n) => {
                let mut f = self.failures.lock();
                let seen = f.entry(key.name.clone()).or_default();
                *seen += 1;
                if *seen <= n { Err(TestError(format!("failure {seen}"))) } else { Ok(Action::Done) }
            }
            Script::Requeue(d) => Ok(Action::RequeueAfter(d)),
            Script::Block => {
                let mut flag = DropFlag(self.aborted.clone(), false);
                self.release.notified().await;
                flag.1 = true;
                Ok(Action::Done)
            }
            Script::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(Action::Done)
            }
        };
        *self.running.lock().entry(key.clone()).or_default() -= 1;
        result
    }
}

#[tokio::test(start_paused = true)]
async fn primary_owned_and_mapped_changes_trigger_reconciles() {
    within("triggers", async {
        let kit = TestKit::new().await;
        let r = Scripted::default();
        let informers = kit.informers();
        // A Secret named `for-<cm>` maps to ConfigMap `<cm>`.
        let c = Controller::new("test", informers.informer::<ConfigMap>(), r.clone())
            .owns(informers.informer::<Pod>())
            .watches(informers.informer::<Secret>(), |c: &Change<Secret>| {
                let s = c.latest().or(c.old()).expect("a change has an object");
                let name = s.metadata.name.clone().unwrap_or_default();
                name.strip_prefix("for-").map(|n| ObjectKey::namespaced("default", n)).into_iter().collect()
            });
        kit.spawn(c);
        let cms = kit.api::<ConfigMap>(Some("default"));
        let owner = cms.create(&config_map("a")).await.expect("create a");
        cms.create(&config_map("b")).await.expect("create b");
        kit.eventually("a and b reconciled", || async {
            (!r.calls_for("a").is_empty() && !r.calls_for("b").is_empty()).then_some(())
        })
        .await;

        // An owned pod's change reconciles its controller, a mapped secret its target.
        let before = r.calls_for("a").len();
        let mut pod = pod("p");
        pod.metadata.owner_references = Some(vec![controller_reference(&owner)]);
        kit.api::<Pod>(Some("default")).create(&pod).await.expect("create pod");
        kit.eventually("owned pod triggers a", || async { (r.calls_for("a").len() > before).then_some(()) })
            .await;
        let before_b = r.calls_for("b").len();
        let secret = Secret { metadata: meta("for-b"), ..Default::default() };
        kit.api::<Secret>(Some("default")).create(&secret).await.expect("create secret");
        kit.eventually("mapped secret triggers b", || async {
            (r.calls_for("b").len() > before_b).then_some(())
        })
        .await;

        // Deleting the primary reconciles its key once more (the object is gone then).
        let before = r.calls_for("a").len();
        cms.delete("a", &DeleteOptions::default()).await.expect("delete a");
        kit.eventually("deletion triggers a", || async { (r.calls_for("a").len() > before).then_some(()) })
            .await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_per_key_and_requeue_after_is_honoured() {
    within("retries", async {
        let kit = TestKit::new().await;
        let r = Scripted::default();
        r.script("flaky", Script::FailTimes(3));
        r.script("periodic", Script::Requeue(Duration::from_secs(30)));
        let metrics = ControllerMetrics::default();
        let c = Controller::new("test", kit.informers().informer::<ConfigMap>(), r.clone())
            .with_metrics(metrics.clone());
        kit.spawn(c);
        let cms = kit.api::<ConfigMap>(Some("default"));
        cms.create(&config_map("flaky")).await.expect("create");
        cms.create(&config_map("periodic")).await.expect("create");
        let calls = kit
            .eventually("flaky succeeds", || async {
                (r.calls_for("flaky").len() >= 4).then_some(r.calls_for("flaky"))
            })
            .await;
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [5, 10, 20].map(Duration::from_millis).to_vec(), "5 ms doubling between retries");
        let periodic = kit
            .eventually("periodic reconciled three times", || async {
                (r.calls_for("periodic").len() >= 3).then_some(r.calls_for("periodic"))
            })
            .await;
        assert!(periodic.windows(2).all(|w| w[1] - w[0] == Duration::from_secs(30)), "{periodic:?}");
        assert_eq!(metrics.reconciles("test", "error"), 3);
        assert!(metrics.reconciles("test", "success") >= 3);
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_key_is_never_reconciled_twice_at_once() {
    within("one per key", async {
        let kit = TestKit::new().await;
        let r = Scripted::default();
        r.script("busy", Script::Slow(Duration::from_secs(1)));
        let config = ControllerConfig { concurrency: 8, ..Default::default() };
        kit.spawn(
            Controller::new("test", kit.informers().informer::<ConfigMap>(), r.clone()).with_config(config),
        );
        let cms = kit.api::<ConfigMap>(Some("default"));
        let mut cm = cms.create(&config_map("busy")).await.expect("create");
        for i in 0..20 {
            cm.data = Some(BTreeMap::from([("i".to_string(), i.to_string())]));
            cm = cms.replace("busy", &cm).await.expect("update");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        kit.eventually("changes reconciled", || async { (r.calls_for("busy").len() >= 2).then_some(()) })
            .await;
        assert_eq!(r.max_same_key.load(Ordering::SeqCst), 1);
        // Twenty changes during slow reconciles collapse into far fewer reconciles.
        assert!(r.calls_for("busy").len() < 20, "{}", r.calls_for("busy").len());
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn losing_leadership_aborts_work_and_regaining_it_resyncs() {
    within("leadership", async {
        let kit = TestKit::new().await;
        let r = Scripted::default();
        r.script("stuck", Script::Block);
        let metrics = ControllerMetrics::default();
        kit.spawn(
            Controller::new("test", kit.informers().informer::<ConfigMap>(), r.clone())
                .with_metrics(metrics.clone()),
        );
        let cms = kit.api::<ConfigMap>(Some("default"));
        cms.create(&config_map("stuck")).await.expect("create");
        kit.eventually("stuck reconcile started", || async {
            (!r.calls_for("stuck").is_empty()).then_some(())
        })
        .await;
        kit.set_leader(false);
        kit.eventually("in-flight reconcile aborted", || async {
            r.aborted.load(Ordering::SeqCst).then_some(())
        })
        .await;

        // Standing by: changes are not acted on.
        cms.create(&config_map("later")).await.expect("create");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(r.calls_for("later").is_empty(), "no reconcile while not leading");

        r.script("stuck", Script::Succeed);
        kit.set_leader(true);
        kit.eventually("everything reconciled after regaining leadership", || async {
            (!r.calls_for("later").is_empty() && r.calls_for("stuck").len() >= 2).then_some(())
        })
        .await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_reconciles_finish() {
    within("graceful shutdown", async {
        let kit = TestKit::new().await;
        let r = Scripted::default();
        r.script("slow", Script::Block);
        kit.spawn(Controller::new("test", kit.informers().informer::<ConfigMap>(), r.clone()));
        kit.api::<ConfigMap>(Some("default")).create(&config_map("slow")).await.expect("create");
        kit.eventually("reconcile started", || async { (!r.calls_for("slow").is_empty()).then_some(()) })
            .await;
        let release = r.release.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            release.notify_waiters();
        });
        kit.shutdown().await;
        assert!(!r.aborted.load(Ordering::SeqCst), "finished within the grace period, not aborted");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn informers_are_shared_and_indexed() {
    within("informers", async {
        let kit = TestKit::new().await;
        let a = kit.informers().informer::<Pod>();
        a.add_index(Cache::<Pod>::by_label("app"));
        let b = kit.informers().cache::<Pod>();
        kit.informers().start(kit.shutdown_token());
        let mut pod = pod("p");
        pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
        kit.api::<Pod>(Some("default")).create(&pod).await.expect("create");
        a.synced().await;
        kit.eventually("indexed in the shared cache", || async {
            (b.indexed("label:app", "web").len() == 1).then_some(())
        })
        .await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_recorder_aggregates_repeated_events() {
    within("events", async {
        let kit = TestKit::new().await;
        let (recorder, task) = Recorder::new(kit.client(), "test-controller", kit.clock());
        kit.spawn_task(|stop| task.run(stop));
        let cm = kit.api::<ConfigMap>(Some("default")).create(&config_map("x")).await.expect("create");
        for _ in 0..3 {
            recorder.publish(reference(&cm), EventType::Warning, "Broken", "it broke");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        recorder.publish(reference(&cm), EventType::Normal, "Fixed", "it works");
        let events = kit.api::<Event>(Some("default"));
        let got = kit
            .eventually("two events", || async {
                let l = events.list(&Default::default()).await.ok()?;
                (l.items.len() == 2 && l.items.iter().any(|e| e.count == Some(3))).then_some(l.items)
            })
            .await;
        let broken = got.iter().find(|e| e.reason.as_deref() == Some("Broken")).expect("broken event");
        assert_eq!(broken.type_.as_deref(), Some("Warning"));
        assert_eq!(broken.involved_object.name.as_deref(), Some("x"));
        assert_eq!(broken.involved_object.kind.as_deref(), Some("ConfigMap"));
        assert!(broken.last_timestamp > broken.first_timestamp, "lastTimestamp moved");
        assert_eq!(broken.source.as_ref().and_then(|s| s.component.as_deref()), Some("test-controller"));
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_finalizer_helper_runs_cleanup_before_the_object_goes() {
    within("finalizer", async {
        let kit = TestKit::new().await;
        let cms = kit.api::<ConfigMap>(Some("default"));
        cms.create(&config_map("f")).await.expect("create");
        let cleaned = Arc::new(AtomicUsize::new(0));
        let step = |cleaned: Arc<AtomicUsize>| {
            let cms = cms.clone();
            async move {
                let obj = Arc::new(cms.get("f").await.expect("get"));
                finalizer(&cms, "example.com/cleanup", obj, |ev| async move {
                    if let FinalizerEvent::Cleanup(_) = ev {
                        cleaned.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok::<_, TestError>(Action::Done)
                })
                .await
                .expect("finalizer step")
            }
        };
        step(cleaned.clone()).await;
        assert!(has_finalizer(&cms.get("f").await.expect("get"), "example.com/cleanup"));
        step(cleaned.clone()).await;
        assert_eq!(cleaned.load(Ordering::SeqCst), 0, "apply, not cleanup, while alive");
        cms.delete("f", &DeleteOptions::default()).await.expect("delete");
        assert!(cms.get_opt("f").await.expect("get").is_some(), "the finalizer holds it");
        step(cleaned.clone()).await;
        assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        assert!(cms.get_opt("f").await.expect("get").is_none(), "gone once cleaned up");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_hollow_kubelet_runs_and_finishes_pods() {
    within("hollow kubelet", async {
        let kit = TestKit::new().await;
        let hollow = HollowKubelet::new(kit.client(), kit.clock());
        kit.spawn_task(|stop| hollow.run(stop));
        let pods = kit.api::<Pod>(Some("default"));
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("pod");
        pods.create(&pod).await.expect("create");
        pod = kit
            .eventually("pod ready", || async {
                let p = pods.get("p").await.ok()?;
                is_pod_ready(&p).then_some(p)
            })
            .await;
        assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
        assert!(pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some());
        // A bound pod is deleted gracefully; the hollow kubelet completes it.
        pods.delete("p", &DeleteOptions::default()).await.expect("delete");
        kit.eventually("pod gone", || async { pods.get_opt("p").await.ok()?.is_none().then_some(()) }).await;
        kit.shutdown().await;
    })
    .await;
}
