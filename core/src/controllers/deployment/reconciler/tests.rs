//! The reconciler against the in-memory store through the in-process client.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::DeploymentReconciler;
use crate::client::{Api, Cache, Client, DeleteOptions, ListOptions, LocalClient, WatcherEvent};
use crate::controller::events::{EventType, Recorder};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::controllers::deployment::{
    CONTROLLER_NAME, DESIRED_REPLICAS_ANNOTATION, Error, MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, compute_hash, deployment_indexes, pod_indexes, replica_set_indexes,
};
use crate::object::{KindRegistry, Resource};
use crate::patch::PatchType;
use crate::registry::{Clock, Registry};
use crate::store::MemStore;

/// How long any one test may take.
const TEST: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

struct Fixture {
    client: Arc<dyn Client>,
    deployments: Cache<Deployment>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    seconds: Arc<AtomicI64>,
    reconciler: DeploymentReconciler,
    /// The reconciler's recorder, to publish flush markers behind its Events.
    recorder: Recorder,
    flushes: AtomicI64,
    /// Stops the recorder's task when the test ends.
    _recording: DropGuard,
}

/// The reason of the marker Events [`Fixture::flush`] publishes.
const FLUSH: &str = "TestFlush";

async fn fixture() -> Fixture {
    let t0: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    let seconds = Arc::new(AtomicI64::new(t0.as_second()));
    let s = seconds.clone();
    let clock: Clock = Arc::new(move || {
        Timestamp::from_second(s.load(Ordering::SeqCst)).expect("the test clock is in range")
    });
    let registry =
        Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin()).with_clock(clock.clone());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("namespace");
    Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
    let deployments = Cache::with_indexes(deployment_indexes().into_iter().collect());
    let replica_sets = Cache::with_indexes(replica_set_indexes().into_iter().collect());
    let pods = Cache::with_indexes(pod_indexes().into_iter().collect());
    let (recorder, task) = Recorder::new(client.clone(), CONTROLLER_NAME, clock.clone());
    let stop = CancellationToken::new();
    tokio::spawn(task.run(stop.clone()));
    let reconciler = DeploymentReconciler::new(
        client.clone(),
        deployments.clone(),
        replica_sets.clone(),
        pods.clone(),
        clock,
        recorder.clone(),
    );
    Fixture {
        client,
        deployments,
        replica_sets,
        pods,
        seconds,
        reconciler,
        recorder,
        flushes: AtomicI64::new(0),
        _recording: stop.drop_guard(),
    }
}

async fn fill<K: Resource>(client: &Arc<dyn Client>, cache: &Cache<K>) {
    let items = Api::<K>::all(client.clone()).list(&ListOptions::default()).await.expect("list").items;
    cache.apply(&WatcherEvent::Init);
    for item in items {
        cache.apply(&WatcherEvent::InitApply(item));
    }
    cache.apply(&WatcherEvent::InitDone);
}

impl Fixture {
    fn deployments_api(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn replica_sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The caches catch up with the store, as informers would.
    async fn refresh(&self) {
        fill(&self.client, &self.deployments).await;
        fill(&self.client, &self.replica_sets).await;
        fill(&self.client, &self.pods).await;
    }

    async fn reconcile(&self) -> Result<Action, Error> {
        self.refresh().await;
        self.seconds.fetch_add(1, Ordering::SeqCst);
        self.reconciler.reconcile(&ObjectKey::namespaced("default", "web")).await
    }

    async fn create_deployment(&self, spec: Value) -> Deployment {
        let mut base = json!({
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "web:1"}]}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            }
        });
        if let (Some(b), Value::Object(s)) = (base["spec"].as_object_mut(), spec) {
            b.extend(s);
        }
        let d: Deployment = serde_json::from_value(base).expect("deployment");
        self.deployments_api().create(&d).await.expect("create deployment")
    }

    async fn deployment(&self) -> Deployment {
        self.deployments_api().get("web").await.expect("deployment")
    }

    /// The ReplicaSets oldest first.
    async fn replica_sets(&self) -> Vec<ReplicaSet> {
        let mut items = self.replica_sets_api().list(&ListOptions::default()).await.expect("list").items;
        items.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_ref().map(|t| t.0), &a.metadata.name)
                .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), &b.metadata.name))
        });
        items
    }

    async fn sizes(&self) -> Vec<i32> {
        self.replica_sets()
            .await
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .collect()
    }

    /// What the ReplicaSet controller would report once every pod of every ReplicaSet runs.
    async fn all_available(&self) {
        for rs in self.replica_sets().await {
            let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let status = json!({"status": {"replicas": n, "availableReplicas": n, "readyReplicas": n,
                "fullyLabeledReplicas": n, "observedGeneration": rs.metadata.generation}});
            let name = rs.metadata.name.clone().unwrap_or_default();
            self.replica_sets_api().patch_status(&name, PatchType::Merge, &status).await.expect("rs status");
        }
    }

    /// Waits until the recorder has written every Event published so far: it writes in order,
    /// so once a marker published now is in the store, so is everything before it. The
    /// (polling) wait is bounded by the test's outer timeout.
    async fn flush(&self) -> Vec<CoreEvent> {
        let marker = format!("flush {}", self.flushes.fetch_add(1, Ordering::SeqCst));
        let regarding = ObjectReference {
            kind: Some("Marker".into()),
            namespace: Some("default".into()),
            name: Some("marker".into()),
            ..Default::default()
        };
        self.recorder.publish(regarding, EventType::Normal, FLUSH, marker.clone());
        let events = Api::<CoreEvent>::namespaced(self.client.clone(), "default");
        loop {
            let all = events.list(&ListOptions::default()).await.expect("events").items;
            if all.iter().any(|e| e.message.as_deref() == Some(marker.as_str())) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The messages of the Events published so far, each as often as it was published.
    async fn events(&self) -> Vec<String> {
        let all = self.flush().await;
        // In the order written: by the store revision that wrote them.
        let mut events: Vec<(u64, String, i32)> = all
            .into_iter()
            .filter(|e| e.reason.as_deref() != Some(FLUSH))
            .map(|e| {
                let rv = e.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
                (rv, e.message.unwrap_or_default(), e.count.unwrap_or(1))
            })
            .collect();
        events.sort();
        events
            .into_iter()
            .flat_map(|(_, m, count)| std::iter::repeat_n(m, usize::try_from(count).unwrap_or(1)))
            .collect()
    }

    async fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        self.deployments_api().patch("web", PatchType::Merge, &patch).await.expect("new template");
    }
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[tokio::test]
async fn a_new_deployment_gets_its_replica_set() {
    within("new deployment", async {
        let f = fixture().await;
        let created = f.create_deployment(json!({})).await;
        let action = f.reconcile().await.expect("reconcile");
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(601)), "watching the progress deadline");

        let rss = f.replica_sets().await;
        assert_eq!(rss.len(), 1);
        let rs = &rss[0];
        let hash = compute_hash(&created.spec.as_ref().expect("spec").template, None);
        assert_eq!(rs.metadata.name, Some(format!("web-{hash}")));
        let owner = &rs.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));
        assert_eq!(
            (Some(owner.uid.as_str()), owner.controller),
            (created.metadata.uid.as_deref(), Some(true))
        );
        assert_eq!(rs.metadata.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)), Some(&hash));
        let spec = rs.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(
            spec.selector.match_labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)),
            Some(&hash)
        );
        assert_eq!(annotation(rs, REVISION_ANNOTATION), Some("1"));
        assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("4"));
        assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), Some("5"));
        assert_eq!(annotation(rs, "team"), Some("a"));

        let d = f.deployment().await;
        assert_eq!(
            d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).map(String::as_str),
            Some("1")
        );
        let status = d.status.clone().expect("status");
        assert_eq!(
            status.observed_generation, d.metadata.generation,
            "the revision annotation is observed too"
        );
        let conditions = status.conditions.expect("conditions");
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetCreated"))
        );
        assert_eq!(f.events().await, vec![format!("Scaled up replica set web-{hash} from 0 to 4")]);

        // The stored template (defaulted by the API) still matches: nothing more to create.
        let (d_rv, rs_rv) = (d.metadata.resource_version.clone(), rs.metadata.resource_version.clone());
        f.reconcile().await.expect("again");
        assert_eq!(f.deployment().await.metadata.resource_version, d_rv, "no write when nothing changed");
        assert_eq!(f.replica_sets().await[0].metadata.resource_version, rs_rv);

        f.all_available().await;
        assert_eq!(f.reconcile().await.expect("complete"), Action::Done);
        let status = f.deployment().await.status.expect("status");
        assert_eq!(
            (status.replicas, status.updated_replicas, status.available_replicas),
            (Some(4), Some(4), Some(4))
        );
    })
    .await;
}

#[tokio::test]
async fn a_new_template_rolls_out_within_the_budgets() {
    within("rollout", async {
        let f = fixture().await;
        f.create_deployment(json!({})).await;
        f.reconcile().await.expect("first rollout");
        f.all_available().await;
        f.reconcile().await.expect("complete");

        f.set_image("web:2").await;
        f.reconcile().await.expect("second rollout");
        assert_eq!(f.sizes().await, vec![3, 1], "surge 1, then one old goes (3 stay available)");
        let rss = f.replica_sets().await;
        assert_eq!(annotation(&rss[1], REVISION_ANNOTATION), Some("2"));
        let events = f.events().await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[1].starts_with("Scaled up replica set") && events[1].ends_with("from 0 to 1"));
        assert!(events[2].starts_with("Scaled down replica set") && events[2].ends_with("from 4 to 3"));

        for _ in 0..8 {
            f.all_available().await;
            f.reconcile().await.expect("step");
            let sizes = f.sizes().await;
            assert!(sizes.iter().sum::<i32>() <= 5, "{sizes:?}");
        }
        assert_eq!(f.sizes().await, vec![0, 4]);
        let d = f.deployment().await;
        let status = d.status.expect("status");
        assert_eq!((status.updated_replicas, status.available_replicas), (Some(4), Some(4)));
        assert_eq!(status.observed_generation, d.metadata.generation);
        let progressing =
            status.conditions.expect("conditions").into_iter().find(|c| c.type_ == "Progressing");
        assert_eq!(progressing.and_then(|c| c.reason).as_deref(), Some("NewReplicaSetAvailable"));
    })
    .await;
}

#[tokio::test]
async fn a_conflict_when_scaling_is_an_error_and_the_retry_succeeds() {
    within("conflict", async {
        let f = fixture().await;
        f.create_deployment(json!({})).await;
        f.reconcile().await.expect("first rollout");
        f.all_available().await;
        f.reconcile().await.expect("complete");
        f.set_image("web:2").await;
        f.refresh().await;
        // Someone writes the old ReplicaSet after the caches saw it.
        let old = f.replica_sets().await[0].metadata.name.clone().expect("name");
        let touch = json!({"metadata": {"annotations": {"touched": "yes"}}});
        f.replica_sets_api().patch(&old, PatchType::Merge, &touch).await.expect("touch");
        let err =
            f.reconciler.reconcile(&ObjectKey::namespaced("default", "web")).await.expect_err("stale cache");
        match &err {
            Error::ReplicaSetWrite { verb: "update", name, source, .. } => {
                assert_eq!(name, &old);
                assert_eq!(source.code(), 409);
            }
            other => panic!("unexpected error: {other}"),
        }
        assert!(err.to_string().contains(&old), "{err}");
        // The retry, with caches caught up, goes through.
        f.reconcile().await.expect("retry");
        assert_eq!(f.sizes().await, vec![3, 1]);
    })
    .await;
}

#[tokio::test]
async fn a_deployment_deleted_mid_rollout_reconciles_to_nothing() {
    within("deleted", async {
        let f = fixture().await;
        f.create_deployment(json!({})).await;
        f.reconcile().await.expect("first rollout");
        f.all_available().await;
        f.reconcile().await.expect("complete");
        f.set_image("web:2").await;
        f.reconcile().await.expect("second rollout");
        let before: Vec<Option<String>> =
            f.replica_sets().await.into_iter().map(|rs| rs.metadata.resource_version).collect();
        let events = f.events().await.len();

        f.deployments_api().delete("web", &DeleteOptions::default()).await.expect("delete");
        assert_eq!(f.reconcile().await.expect("reconcile"), Action::Done);
        let after: Vec<Option<String>> =
            f.replica_sets().await.into_iter().map(|rs| rs.metadata.resource_version).collect();
        assert_eq!(before, after, "the garbage collector's job, not ours");
        assert_eq!(f.events().await.len(), events);
    })
    .await;
}

#[tokio::test]
async fn orphans_are_adopted_and_mismatches_released_through_the_api() {
    within("claims", async {
        let f = fixture().await;
        let d = f.create_deployment(json!({})).await;
        let uid = d.metadata.uid.clone().expect("uid");
        let rs = |name: &str, app: &str, owner: Option<&str>| -> ReplicaSet {
            let owners = owner.map(|uid| {
                json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}])
            });
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": app},
                    "ownerReferences": owners},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": {"app": app}},
                        "spec": {"containers": [{"name": "c", "image": "old"}]}}}
            }))
            .expect("rs")
        };
        f.replica_sets_api().create(&rs("orphan", "web", None)).await.expect("orphan");
        f.replica_sets_api().create(&rs("stray", "other", Some(&uid))).await.expect("stray");
        f.reconcile().await.expect("reconcile");

        let orphan = f.replica_sets_api().get("orphan").await.expect("orphan");
        let owner = orphan.metadata.owner_references.expect("adopted");
        assert_eq!((owner[0].uid.as_str(), owner[0].controller), (uid.as_str(), Some(true)));
        let stray = f.replica_sets_api().get("stray").await.expect("stray");
        assert_eq!(stray.metadata.owner_references, None, "released");
        // The adopted ReplicaSet is an old one without a revision: the new one is revision 1.
        let new = f
            .replica_sets()
            .await
            .into_iter()
            .find(|rs| rs.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")));
        assert_eq!(new.as_ref().and_then(|rs| annotation(rs, REVISION_ANNOTATION)), Some("1"));
    })
    .await;
}

#[tokio::test]
async fn a_cache_behind_the_api_stops_the_plan_quietly() {
    within("stale cache", async {
        let f = fixture().await;
        f.create_deployment(json!({})).await;
        f.reconcile().await.expect("first");
        // The Deployment's new status is seen, the ReplicaSet it created is not yet.
        fill(&f.client, &f.deployments).await;
        f.replica_sets.apply(&WatcherEvent::Init);
        f.replica_sets.apply(&WatcherEvent::InitDone);
        let action =
            f.reconciler.reconcile(&ObjectKey::namespaced("default", "web")).await.expect("no error");
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(1)));
        assert_eq!(f.replica_sets().await.len(), 1);
        assert_eq!(f.events().await.len(), 1, "no second scaling event");
    })
    .await;
}

#[tokio::test]
async fn recreate_waits_for_the_old_pods_it_sees_in_the_pod_cache() {
    within("recreate", async {
        let f = fixture().await;
        f.create_deployment(json!({"replicas": 1, "strategy": {"type": "Recreate"}})).await;
        f.reconcile().await.expect("first");
        f.all_available().await;
        let old = f.replica_sets().await.remove(0);
        let owner = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": old.metadata.name,
            "uid": old.metadata.uid, "controller": true}]);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-pod", "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": owner},
            "spec": {"containers": [{"name": "c", "image": "web:1"}]}
        }))
        .expect("pod");
        let pods = Api::<Pod>::namespaced(f.client.clone(), "default");
        pods.create(&pod).await.expect("pod");
        f.reconcile().await.expect("complete");

        f.set_image("web:2").await;
        f.reconcile().await.expect("scale down");
        assert_eq!(f.sizes().await, vec![0]);
        f.all_available().await;
        f.reconcile().await.expect("waiting");
        assert_eq!(f.sizes().await, vec![0], "the old pod still runs");

        let gone = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        pods.delete("web-pod", &gone).await.expect("delete pod");
        f.reconcile().await.expect("recreate");
        assert_eq!(f.sizes().await, vec![0, 1]);
    })
    .await;
}
