//! The reconciler against the in-memory store, with caches refreshed by hand so that tests
//! choose when they lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Namespace, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::*;
use crate::client::{
    Deleted, GetOptions, ListOptions, LocalClient, ObjectList, Subresource, WatchStream, WatcherEvent,
    WriteOptions, Written,
};
use crate::controllers::replicaset::{CONTROLLER_NAME, EXPECTATIONS_RECHECK, REPLICA_FAILURE};
use crate::object::{DynamicObject, KindRegistry, Resource, ResourceType};
use crate::registry::Registry;
use crate::store::MemStore;

const NS: &str = "ns";
const START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// A client that refuses pod creates once `creates_left` reaches zero (negative: never).
struct Flaky {
    inner: LocalClient,
    creates_left: AtomicI64,
}

#[async_trait]
impl Client for Flaky {
    async fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &GetOptions,
    ) -> crate::client::Result<DynamicObject> {
        self.inner.get(t, ns, name, o).await
    }
    async fn list(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        o: &ListOptions,
    ) -> crate::client::Result<ObjectList> {
        self.inner.list(t, ns, o).await
    }
    async fn create(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        obj: DynamicObject,
        o: &WriteOptions,
    ) -> crate::client::Result<Written> {
        if *t == Pod::TYPE {
            let left = self.creates_left.load(Ordering::SeqCst);
            if left == 0 {
                return Err(ClientError::Forbidden("pods \"web-\" is forbidden: exceeded quota".into()));
            }
            if left > 0 {
                self.creates_left.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.create(t, ns, obj, o).await
    }
    async fn replace(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: DynamicObject,
        sub: Subresource,
        o: &WriteOptions,
    ) -> crate::client::Result<Written> {
        self.inner.replace(t, ns, name, obj, sub, o).await
    }
    async fn patch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        patch: &[u8],
        sub: Subresource,
        o: &WriteOptions,
    ) -> crate::client::Result<Written> {
        self.inner.patch(t, ns, name, pt, patch, sub, o).await
    }
    async fn delete(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> crate::client::Result<Deleted> {
        self.inner.delete(t, ns, name, o).await
    }
    async fn watch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        o: &ListOptions,
    ) -> crate::client::Result<WatchStream> {
        self.inner.watch(t, ns, o).await
    }
    async fn bind(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> crate::client::Result<DynamicObject> {
        self.inner.bind(ns, name, node, uid).await
    }
    async fn delete_collection(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        list: &ListOptions,
        o: &DeleteOptions,
    ) -> crate::client::Result<ObjectList> {
        self.inner.delete_collection(t, ns, list, o).await
    }
}

struct Env {
    flaky: Arc<Flaky>,
    client: Arc<dyn Client>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    seconds: Arc<AtomicI64>,
    reconciler: ReplicaSetReconciler,
    /// The reconciler's recorder, to publish flush markers behind its Events.
    recorder: Recorder,
    flushes: AtomicI64,
    /// Stops the recorder's task when the test ends.
    _recording: DropGuard,
}

/// The reason of the marker Events [`Env::flush`] publishes.
const FLUSH: &str = "TestFlush";
/// How long the recorder may take to write what was published before a marker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

async fn env() -> Env {
    let seconds = Arc::new(AtomicI64::new(START));
    let s = seconds.clone();
    let clock: Clock =
        Arc::new(move || Timestamp::from_second(s.load(Ordering::SeqCst)).expect("valid time"));
    let registry =
        Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin()).with_clock(clock.clone());
    let flaky = Arc::new(Flaky { inner: LocalClient::new(registry), creates_left: AtomicI64::new(-1) });
    let client: Arc<dyn Client> = flaky.clone();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace");
    Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace created");
    // Caches without indexes: the reconciler adds the ones it needs.
    let replica_sets = Cache::default();
    let pods = Cache::default();
    let (recorder, task) = Recorder::new(client.clone(), CONTROLLER_NAME, clock.clone());
    let stop = CancellationToken::new();
    tokio::spawn(task.run(stop.clone()));
    let reconciler = ReplicaSetReconciler::new(
        client.clone(),
        replica_sets.clone(),
        pods.clone(),
        clock,
        recorder.clone(),
    );
    Env {
        flaky,
        client,
        replica_sets,
        pods,
        seconds,
        reconciler,
        recorder,
        flushes: AtomicI64::new(0),
        _recording: stop.drop_guard(),
    }
}

fn key() -> ObjectKey {
    ObjectKey::namespaced(NS, "web")
}

fn replica_set(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"note": "from-template"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
            }
        }
    }))
    .expect("replicaset")
}

fn pod_json(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
    })
}

impl Env {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(self.seconds.load(Ordering::SeqCst)).expect("valid time")
    }

    fn advance(&self, d: Duration) {
        self.seconds.fetch_add(i64::try_from(d.as_secs()).expect("small"), Ordering::SeqCst);
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Refreshes both caches from the store (a full relist, as a watcher's).
    async fn sync_caches(&self) {
        let rss = self.rs_api().list(&ListOptions::default()).await.expect("list replicasets").items;
        self.replica_sets.apply(&WatcherEvent::Init);
        for rs in rss {
            self.replica_sets.apply(&WatcherEvent::InitApply(rs));
        }
        self.replica_sets.apply(&WatcherEvent::InitDone);
        let pods = self.pod_api().list(&ListOptions::default()).await.expect("list pods").items;
        self.pods.apply(&WatcherEvent::Init);
        for p in pods {
            self.pods.apply(&WatcherEvent::InitApply(p));
        }
        self.pods.apply(&WatcherEvent::InitDone);
    }

    async fn reconcile(&self) -> Result<Action, Error> {
        self.reconciler.reconcile(&key()).await
    }

    async fn create_rs(&self, rs: ReplicaSet) -> ReplicaSet {
        self.rs_api().create(&rs).await.expect("replicaset created")
    }

    async fn rs(&self) -> ReplicaSet {
        self.rs_api().get("web").await.expect("replicaset")
    }

    async fn all_pods(&self) -> Vec<Pod> {
        let mut pods = self.pod_api().list(&ListOptions::default()).await.expect("list pods").items;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    /// Pods that are not being deleted.
    async fn live_pods(&self) -> Vec<Pod> {
        self.all_pods().await.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }

    async fn create_pod(&self, v: Value) -> Pod {
        let pod: Pod = serde_json::from_value(v).expect("pod");
        self.pod_api().create(&pod).await.expect("pod created")
    }

    async fn set_pod_status(&self, name: &str, status: Value) {
        self.pod_api()
            .patch_status(name, PatchType::Merge, &json!({ "status": status }))
            .await
            .expect("pod status");
    }

    /// Waits until the recorder has written every Event published so far: it writes in order,
    /// so once a marker published now is in the store, so is everything before it.
    async fn flush(&self) {
        let marker = format!("flush {}", self.flushes.fetch_add(1, Ordering::SeqCst));
        let regarding = ObjectReference {
            kind: Some("Marker".into()),
            namespace: Some(NS.into()),
            name: Some("marker".into()),
            ..Default::default()
        };
        self.recorder.publish(regarding, EventType::Normal, FLUSH, marker.clone());
        let events = Api::<Event>::namespaced(self.client.clone(), NS);
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        loop {
            let all = events.list(&ListOptions::default()).await.expect("events").items;
            if all.iter().any(|e| e.message.as_deref() == Some(marker.as_str())) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the recorder wrote nothing in {FLUSH_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The Events with `reason` once the recorder has written what was published.
    async fn events(&self, reason: &str) -> Vec<Event> {
        self.flush().await;
        let events = Api::<Event>::namespaced(self.client.clone(), NS);
        let all = events.list(&ListOptions::default()).await.expect("events").items;
        all.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
    }
}

fn owned_by(rs: &ReplicaSet, pod: &Pod) -> bool {
    crate::controllers::util::is_controlled_by(&pod.metadata, rs.metadata.uid.as_deref().unwrap_or("?"))
}

fn ready_now(env: &Env) -> Value {
    json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": env.now().to_string()}
    ]})
}

#[tokio::test]
async fn scale_up_from_zero_creates_owned_pods_from_the_template() {
    let env = env().await;
    env.create_rs(replica_set(0)).await;
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert!(env.all_pods().await.is_empty());
    let rs = env.rs().await;
    assert_eq!(rs.status.as_ref().and_then(|s| s.observed_generation), Some(1));

    env.rs_api().scale("web", 5).await.expect("scale");
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    let rs = env.rs().await;
    let pods = env.all_pods().await;
    assert_eq!(pods.len(), 5);
    for pod in &pods {
        assert!(owned_by(&rs, pod), "{:?}", pod.metadata.owner_references);
        let m = &pod.metadata;
        assert!(m.name.as_deref().is_some_and(|n| n.starts_with("web-")), "{:?}", m.name);
        assert_eq!(m.generate_name.as_deref(), Some("web-"));
        assert_eq!(m.labels.as_ref().and_then(|l| l.get("tier")).map(String::as_str), Some("fe"));
        assert_eq!(
            m.annotations.as_ref().and_then(|a| a.get("note")).map(String::as_str),
            Some("from-template")
        );
        let image = pod.spec.as_ref().and_then(|s| s.containers[0].image.as_deref());
        assert_eq!(image, Some("nginx:1"));
    }
    assert_eq!(env.events("SuccessfulCreate").await.len(), 5);
    let created = env.events("SuccessfulCreate").await;
    let involved = &created[0].involved_object;
    assert_eq!((involved.kind.as_deref(), involved.name.as_deref()), (Some("ReplicaSet"), Some("web")));
    assert_eq!(created[0].source.as_ref().and_then(|s| s.component.as_deref()), Some(CONTROLLER_NAME));
    // The status counts what the cache showed: no pod yet, at the new generation.
    let status = rs.status.clone().expect("status");
    assert_eq!((status.replicas, status.observed_generation), (0, Some(2)));

    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert_eq!(env.all_pods().await.len(), 5);
    let status = env.rs().await.status.expect("status");
    assert_eq!((status.replicas, status.fully_labeled_replicas, status.ready_replicas), (5, Some(5), None));
}

#[tokio::test]
async fn a_stale_cache_does_not_double_create() {
    let env = env().await;
    env.create_rs(replica_set(3)).await;
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    assert_eq!(env.all_pods().await.len(), 3);
    // The pod cache has not caught up: nothing more is created, and the sync looks again soon.
    for _ in 0..3 {
        assert_eq!(env.reconcile().await.expect("sync"), Action::RequeueAfter(EXPECTATIONS_RECHECK));
        assert_eq!(env.all_pods().await.len(), 3);
    }
    // Even once the awaited pods are read directly: they exist, the cache must show them.
    env.advance(EXPECTATIONS_RECHECK);
    env.reconcile().await.expect("sync");
    assert_eq!(env.all_pods().await.len(), 3);
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert_eq!(env.all_pods().await.len(), 3);
    assert_eq!(env.rs().await.status.expect("status").replicas, 3);
}

#[tokio::test]
async fn a_created_pod_deleted_before_the_cache_saw_it_is_not_awaited_forever() {
    let env = env().await;
    env.create_rs(replica_set(3)).await;
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    let victim = env.all_pods().await[0].metadata.name.clone().expect("name");
    env.pod_api().delete(&victim, &DeleteOptions::default()).await.expect("delete");
    // The cache shows two of the three pods; the third will never appear.
    env.sync_caches().await;
    env.advance(Duration::from_secs(1));
    assert_eq!(env.reconcile().await.expect("sync"), Action::RequeueAfter(EXPECTATIONS_RECHECK));
    assert_eq!(env.all_pods().await.len(), 2);
    // After the recheck interval the pod is read directly, found gone, and replaced.
    env.advance(EXPECTATIONS_RECHECK);
    env.reconcile().await.expect("sync");
    assert_eq!(env.all_pods().await.len(), 3);
}

#[tokio::test]
async fn scale_down_deletes_the_preferred_pods() {
    let env = env().await;
    let rs = env.create_rs(replica_set(4)).await;
    let owner =
        serde_json::to_value(vec![crate::controllers::util::controller_reference(&rs)]).expect("refs");
    let with_owner = |mut v: Value, node: Option<&str>| {
        v["metadata"]["ownerReferences"] = owner.clone();
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        v
    };
    env.create_pod(with_owner(pod_json("a-old-ready"), Some("n1"))).await;
    env.set_pod_status("a-old-ready", ready_now(&env)).await;
    env.advance(Duration::from_secs(60));
    env.create_pod(with_owner(pod_json("b-new-ready"), Some("n1"))).await;
    env.set_pod_status("b-new-ready", ready_now(&env)).await;
    env.create_pod(with_owner(pod_json("c-pending"), Some("n2"))).await;
    env.set_pod_status("c-pending", json!({"phase": "Pending"})).await;
    env.create_pod(with_owner(pod_json("d-unassigned"), None)).await;
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert_eq!(env.live_pods().await.len(), 4, "in sync");

    env.rs_api().scale("web", 1).await.expect("scale");
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    let names = |pods: Vec<Pod>| pods.into_iter().filter_map(|p| p.metadata.name).collect::<Vec<_>>();
    // Unassigned first, then Pending, then the ready pod that has been ready for less time.
    assert_eq!(names(env.live_pods().await), ["a-old-ready"]);
    // The unassigned pod went at once; the others run out their grace period.
    assert_eq!(names(env.all_pods().await), ["a-old-ready", "b-new-ready", "c-pending"]);
    assert_eq!(env.events("SuccessfulDelete").await.len(), 3);

    // Stale cache: nothing else is deleted.
    env.reconcile().await.expect("sync");
    assert_eq!(names(env.live_pods().await), ["a-old-ready"]);
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert_eq!(names(env.live_pods().await), ["a-old-ready"]);
    let status = env.rs().await.status.expect("status");
    assert_eq!((status.replicas, status.ready_replicas), (1, Some(1)));
}

#[tokio::test]
async fn orphans_are_adopted_and_unselected_pods_released() {
    let env = env().await;
    let rs = env.create_rs(replica_set(2)).await;
    env.create_pod(pod_json("orphan")).await;
    let mut other = pod_json("other-app");
    other["metadata"]["labels"] = json!({"app": "db"});
    env.create_pod(other).await;
    let mut relabelled = pod_json("relabelled");
    relabelled["metadata"]["ownerReferences"] =
        serde_json::to_value(vec![crate::controllers::util::controller_reference(&rs)]).expect("refs");
    relabelled["metadata"]["labels"] = json!({"app": "web-debug"});
    env.create_pod(relabelled).await;
    env.sync_caches().await;
    env.reconcile().await.expect("sync");

    let pods = env.all_pods().await;
    let get = |n: &str| pods.iter().find(|p| p.metadata.name.as_deref() == Some(n)).expect("pod");
    assert!(owned_by(&rs, get("orphan")), "adopted");
    let refs = get("orphan").metadata.owner_references.clone().expect("refs");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].block_owner_deletion, Some(true));
    assert!(get("other-app").metadata.owner_references.is_none(), "not selected, not adopted");
    assert!(get("relabelled").metadata.owner_references.is_none(), "released");
    // The adopted pod counts: one more pod is created for two replicas.
    let owned: Vec<&Pod> = pods.iter().filter(|p| owned_by(&rs, p)).collect();
    assert_eq!(owned.len(), 2);
    assert_eq!(pods.len(), 4);
}

#[tokio::test]
async fn a_conflict_on_adoption_is_an_error_to_retry() {
    let env = env().await;
    let rs = env.create_rs(replica_set(1)).await;
    env.create_pod(pod_json("orphan")).await;
    env.sync_caches().await;
    // The pod changes after the cache saw it.
    env.pod_api()
        .patch("orphan", PatchType::Merge, &json!({"metadata": {"annotations": {"touched": "yes"}}}))
        .await
        .expect("patch");
    let err = env.reconcile().await.expect_err("the adoption conflicts");
    assert!(
        matches!(&err, Error::Adopt { pod, source: ClientError::Conflict { .. } } if pod == "orphan"),
        "{err}"
    );
    let pods = env.all_pods().await;
    assert_eq!(pods.len(), 1, "nothing created after a failed claim");
    assert!(pods[0].metadata.owner_references.is_none());
    // The retry, with the cache caught up, adopts it.
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    let pods = env.all_pods().await;
    assert_eq!(pods.len(), 1);
    assert!(owned_by(&rs, &pods[0]));
}

#[tokio::test]
async fn a_replicaset_being_deleted_does_not_adopt_or_create() {
    let env = env().await;
    let mut rs = replica_set(3);
    rs.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    env.create_rs(rs).await;
    env.create_pod(pod_json("orphan")).await;
    env.rs_api().delete("web", &DeleteOptions::default()).await.expect("delete");
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    let pods = env.all_pods().await;
    assert_eq!(pods.len(), 1);
    assert!(pods[0].metadata.owner_references.is_none());
    assert_eq!(env.rs().await.status.map(|s| s.replicas), Some(0), "status is still written");
}

#[tokio::test]
async fn adoption_rechecks_the_live_replicaset() {
    let env = env().await;
    let mut rs = replica_set(1);
    rs.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    env.create_rs(rs).await;
    env.create_pod(pod_json("orphan")).await;
    env.sync_caches().await;
    // Deleted after the cache saw it: the cached copy would adopt.
    env.rs_api().delete("web", &DeleteOptions::default()).await.expect("delete");
    let err = env.reconcile().await.expect_err("must not adopt");
    assert!(matches!(err, Error::CannotAdopt { .. }), "{err}");
    assert!(env.all_pods().await[0].metadata.owner_references.is_none());
}

#[tokio::test]
async fn status_follows_generation_readiness_and_availability() {
    let env = env().await;
    let mut rs = replica_set(1);
    rs.spec.as_mut().expect("spec").min_ready_seconds = Some(10);
    env.create_rs(rs).await;
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    let rs = env.rs().await;
    assert_eq!(rs.status.as_ref().and_then(|s| s.observed_generation), rs.metadata.generation);

    // A template change is a new generation, observed by the next sync.
    env.rs_api()
        .patch(
            "web",
            PatchType::Merge,
            &json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}),
        )
        .await
        .expect("patch");
    let name = env.all_pods().await[0].metadata.name.clone().expect("name");
    env.set_pod_status(&name, ready_now(&env)).await;
    env.sync_caches().await;
    let action = env.reconcile().await.expect("sync");
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(10)), "ready, available in 10 s");
    let rs = env.rs().await;
    let status = rs.status.clone().expect("status");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(rs.metadata.generation, Some(2));
    assert_eq!((status.replicas, status.ready_replicas, status.available_replicas), (1, Some(1), None));
    let written = rs.metadata.resource_version.clone();

    // Nothing changed: no write.
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    assert_eq!(env.rs().await.metadata.resource_version, written);

    env.advance(Duration::from_secs(10));
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    let status = env.rs().await.status.expect("status");
    assert_eq!(status.available_replicas, Some(1));
}

#[tokio::test]
async fn failed_creates_stop_the_slow_start_and_set_replica_failure() {
    let env = env().await;
    env.create_rs(replica_set(10)).await;
    env.sync_caches().await;
    // Two creates succeed, then every create fails: batch 1 (1 pod), batch 2 (1 of 2), stop.
    env.flaky.creates_left.store(2, Ordering::SeqCst);
    let err = env.reconcile().await.expect_err("creates fail");
    assert!(matches!(err, Error::Create(ClientError::Forbidden(_))), "{err}");
    assert_eq!(env.all_pods().await.len(), 2);
    assert_eq!(env.events("FailedCreate").await.len(), 1, "one failed call, not eight");
    let status = env.rs().await.status.expect("status");
    let c = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == REPLICA_FAILURE))
        .expect("condition");
    assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
    assert!(c.message.as_deref().is_some_and(|m| m.contains("exceeded quota")), "{:?}", c.message);

    // Creates work again: the rest is created and the condition removed.
    env.flaky.creates_left.store(-1, Ordering::SeqCst);
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    assert_eq!(env.all_pods().await.len(), 10);
    let status = env.rs().await.status.expect("status");
    assert!(status.conditions.is_none(), "{:?}", status.conditions);
}

#[tokio::test]
async fn a_deleted_replicaset_only_forgets_its_expectations() {
    let env = env().await;
    env.create_rs(replica_set(2)).await;
    env.sync_caches().await;
    env.reconcile().await.expect("sync");
    assert_eq!(env.reconciler.expectations.lock().len(), 1);
    env.rs_api().delete("web", &DeleteOptions::default()).await.expect("delete");
    env.sync_caches().await;
    assert_eq!(env.reconcile().await.expect("sync"), Action::Done);
    assert!(env.reconciler.expectations.lock().is_empty());
    assert_eq!(env.all_pods().await.len(), 2, "pods are the garbage collector's");
}

#[tokio::test]
async fn a_failure_repeated_by_retries_is_one_event_with_a_count() {
    let env = env().await;
    env.create_rs(replica_set(1)).await;
    env.sync_caches().await;
    env.flaky.creates_left.store(0, Ordering::SeqCst);
    for attempt in 1..=3 {
        env.reconcile().await.expect_err("creates fail");
        env.advance(Duration::from_secs(1));
        let failed = env.events("FailedCreate").await;
        assert_eq!(failed.len(), 1, "attempt {attempt}: one Event, not one per retry");
        assert_eq!(failed[0].count, Some(attempt), "attempt {attempt}: the count grows");
    }
    let failed = env.events("FailedCreate").await;
    assert!(failed[0].last_timestamp > failed[0].first_timestamp, "lastTimestamp moved");
    assert!(
        failed[0].message.as_deref().is_some_and(|m| m.contains("exceeded quota")),
        "{:?}",
        failed[0].message
    );
}
