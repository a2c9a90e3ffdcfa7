//! The namespace reconciler against a registry (with a user kind) on the in-memory store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceCondition, Pod, Service};
use serde_json::json;

use super::*;
use crate::client::{Deleted, GetOptions, LocalClient, ObjectList, WatchStream, WatcherEvent, Written};
use crate::patch::PatchType;
use crate::registry::conformance::{Game, registry_over};
use crate::registry::{Registry, Result as ClientResult};
use crate::store::MemStore;

/// How long one test step may take.
const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn registry() -> Registry {
    registry_over(Arc::new(MemStore::new()))
}

/// Creates namespace `ns` with a service, a config map, a game and two pods, one of them
/// holding `pod_finalizer` if given.
async fn populate(client: &Arc<dyn Client>, pod_finalizer: Option<&str>) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns"}})).expect("namespace");
    within("namespace", Api::<Namespace>::all(client.clone()).create(&ns)).await.expect("namespace");
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}))
            .expect("svc");
    within("service", Api::namespaced(client.clone(), "ns").create(&svc)).await.expect("service");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}})).expect("cm");
    within("config map", Api::namespaced(client.clone(), "ns").create(&cm)).await.expect("config map");
    let game: Game =
        serde_json::from_value(json!({"metadata": {"name": "chess"}, "spec": {"players": 2}})).expect("game");
    within("game", Api::namespaced(client.clone(), "ns").create(&game)).await.expect("game");
    for (name, finalizer) in [("a", None), ("b", pod_finalizer)] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "finalizers": finalizer.into_iter().collect::<Vec<_>>()},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("pod");
        within("pod", Api::namespaced(client.clone(), "ns").create(&pod)).await.expect("pod");
    }
}

async fn delete_namespace(client: &Arc<dyn Client>) {
    let api: Api<Namespace> = Api::all(client.clone());
    within("delete namespace", api.delete("ns", &DeleteOptions::default())).await.expect("terminating");
}

/// A namespace cache filled with a fresh list.
async fn namespaces(client: &Arc<dyn Client>) -> Cache<Namespace> {
    let cache = Cache::default();
    refill(client, &cache).await;
    cache
}

async fn refill(client: &Arc<dyn Client>, cache: &Cache<Namespace>) {
    let list = within("list", Api::<Namespace>::all(client.clone()).list(&ListOptions::default()))
        .await
        .expect("list");
    cache.apply(&WatcherEvent::Init);
    for ns in list.items {
        cache.apply(&WatcherEvent::InitApply(ns));
    }
    cache.apply(&WatcherEvent::InitDone);
}

fn reconciler(
    client: &Arc<dyn Client>,
    registry: &Registry,
    cache: &Cache<Namespace>,
) -> NamespaceReconciler {
    let clock: Clock = Arc::new(k8s_openapi::jiff::Timestamp::now);
    NamespaceReconciler::new(client.clone(), cache.clone(), namespaced_types(registry.kinds()), clock)
}

async fn reconcile(r: &NamespaceReconciler) -> Result<Action> {
    within("reconcile", r.reconcile(&ObjectKey::cluster("ns"))).await
}

async fn get_namespace(client: &Arc<dyn Client>) -> Option<Namespace> {
    within("get namespace", Api::<Namespace>::all(client.clone()).get_opt("ns")).await.expect("get")
}

async fn count<K: Resource>(client: &Arc<dyn Client>) -> usize {
    let api: Api<K> = Api::namespaced(client.clone(), "ns");
    within("list", api.list(&ListOptions::default())).await.expect("list").items.len()
}

fn condition<'a>(ns: &'a Namespace, type_: &str) -> &'a NamespaceCondition {
    let conditions = ns.status.as_ref().and_then(|s| s.conditions.as_ref()).expect("conditions");
    conditions.iter().find(|c| c.type_ == type_).expect("condition")
}

#[tokio::test]
async fn a_deleted_namespace_is_emptied_of_every_kind_and_finalized() {
    let registry = registry();
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    populate(&client, None).await;
    let cache = namespaces(&client).await;
    let r = reconciler(&client, &registry, &cache);
    assert_eq!(reconcile(&r).await.expect("live namespace"), Action::Done);
    assert_eq!(count::<Pod>(&client).await, 2, "a live namespace is left alone");

    delete_namespace(&client).await;
    refill(&client, &cache).await;
    assert_eq!(reconcile(&r).await.expect("emptied"), Action::Done);
    assert_eq!(get_namespace(&client).await, None, "finalized and gone");
    assert_eq!(
        (count::<Pod>(&client).await, count::<Service>(&client).await, count::<ConfigMap>(&client).await),
        (0, 0, 0)
    );
    assert_eq!(count::<Game>(&client).await, 0, "user kinds are emptied too");
}

#[tokio::test]
async fn a_finalizer_keeps_the_namespace_terminating_until_it_is_removed() {
    let registry = registry();
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    populate(&client, Some("example.com/hold")).await;
    delete_namespace(&client).await;
    let cache = namespaces(&client).await;
    let r = reconciler(&client, &registry, &cache);
    assert_eq!(reconcile(&r).await.expect("waits"), Action::RequeueAfter(CONTENT_RECHECK));
    let ns = get_namespace(&client).await.expect("still there");
    assert_eq!(ns.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Terminating"));
    let held = condition(&ns, FINALIZERS_REMAINING);
    assert_eq!(held.status, "True");
    assert_eq!(
        held.message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        )
    );
    let remaining = condition(&ns, CONTENT_REMAINING);
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: pods. has 1 resource instances")
    );
    assert_eq!(count::<Pod>(&client).await, 1);
    assert_eq!(count::<Game>(&client).await, 0);

    // Unchanged on the next pass (no status write, same resourceVersion).
    refill(&client, &cache).await;
    assert_eq!(reconcile(&r).await.expect("waits"), Action::RequeueAfter(CONTENT_RECHECK));
    let same = get_namespace(&client).await.expect("still there");
    assert_eq!(same.metadata.resource_version, ns.metadata.resource_version);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");
    let release = json!({"metadata": {"finalizers": null}});
    within("release", pods.patch("b", PatchType::Merge, &release)).await.expect("released");
    refill(&client, &cache).await;
    assert_eq!(reconcile(&r).await.expect("finalized"), Action::Done);
    assert_eq!(get_namespace(&client).await, None);
}

/// The in-process client, failing every delete collection of config maps.
struct FailingConfigMaps(LocalClient);

#[async_trait]
impl Client for FailingConfigMaps {
    async fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &GetOptions,
    ) -> ClientResult<DynamicObject> {
        self.0.get(t, ns, name, o).await
    }
    async fn list(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> ClientResult<ObjectList> {
        self.0.list(t, ns, o).await
    }
    async fn create(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        obj: DynamicObject,
        o: &WriteOptions,
    ) -> ClientResult<Written> {
        self.0.create(t, ns, obj, o).await
    }
    async fn replace(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: DynamicObject,
        sub: Subresource,
        o: &WriteOptions,
    ) -> ClientResult<Written> {
        self.0.replace(t, ns, name, obj, sub, o).await
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
    ) -> ClientResult<Written> {
        self.0.patch(t, ns, name, pt, patch, sub, o).await
    }
    async fn delete(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> ClientResult<Deleted> {
        self.0.delete(t, ns, name, o).await
    }
    async fn watch(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> ClientResult<WatchStream> {
        self.0.watch(t, ns, o).await
    }
    async fn bind(&self, ns: &str, name: &str, node: &str, uid: Option<&str>) -> ClientResult<DynamicObject> {
        self.0.bind(ns, name, node, uid).await
    }
    async fn delete_collection(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        l: &ListOptions,
        o: &DeleteOptions,
    ) -> ClientResult<ObjectList> {
        if *t == ConfigMap::TYPE {
            return Err(registry::Error::Unavailable("the store is unavailable".into()));
        }
        self.0.delete_collection(t, ns, l, o).await
    }
}

#[tokio::test]
async fn a_kind_that_cannot_be_deleted_is_reported_and_retried() {
    let registry = registry();
    let client: Arc<dyn Client> = Arc::new(FailingConfigMaps(LocalClient::new(registry.clone())));
    populate(&client, None).await;
    delete_namespace(&client).await;
    let cache = namespaces(&client).await;
    let r = reconciler(&client, &registry, &cache);
    let err = reconcile(&r).await.expect_err("config maps cannot be deleted");
    match &err {
        Error::DeleteContent { namespace, failures } => {
            assert_eq!(namespace, "ns");
            assert_eq!(failures, &["configmaps.: the store is unavailable".to_string()]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let ns = get_namespace(&client).await.expect("kept");
    let failed = condition(&ns, CONTENT_FAILURE);
    assert_eq!((failed.status.as_str(), failed.reason.as_deref()), ("True", Some("ContentDeletionFailed")));
    assert_eq!(count::<Pod>(&client).await, 0, "the other kinds are emptied all the same");
}

#[tokio::test]
async fn kinds_the_server_does_not_serve_are_skipped_and_a_stale_namespace_conflicts() {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns"}})).expect("namespace");
    within("namespace", Api::<Namespace>::all(client.clone()).create(&ns)).await.expect("namespace");
    delete_namespace(&client).await;
    let cache = namespaces(&client).await;
    // Game is not served by this registry: it is skipped, not a failure.
    let mut types = namespaced_types(registry.kinds());
    types.push(Game::TYPE);
    let clock: Clock = Arc::new(k8s_openapi::jiff::Timestamp::now);
    let r = NamespaceReconciler::new(client.clone(), cache.clone(), types, clock);
    // Someone else writes the namespace after the cache was filled: the status write conflicts.
    let api: Api<Namespace> = Api::all(client.clone());
    within("label", api.patch("ns", PatchType::Merge, &json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .expect("labelled");
    match reconcile(&r).await.expect_err("stale namespace") {
        Error::UpdateStatus { namespace, source } => {
            assert_eq!((namespace.as_str(), source.code()), ("ns", 409))
        }
        other => panic!("unexpected error {other:?}"),
    }
    refill(&client, &cache).await;
    assert_eq!(reconcile(&r).await.expect("finalized"), Action::Done);
    assert_eq!(get_namespace(&client).await, None);
}
