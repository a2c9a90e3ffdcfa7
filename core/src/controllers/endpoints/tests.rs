//! The endpoints reconcilers against a registry on the in-memory store: caches filled by
//! listing, `reconcile` called directly, the store checked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::reconciler::CACHE_RECHECK;
use super::*;
use crate::client::{Api, Cache, Client, ListOptions, LocalClient, WatcherEvent};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::object::{KindRegistry, Resource};
use crate::patch::PatchType;
use crate::registry::{Clock, DeleteOptions, Registry};
use crate::store::MemStore;

/// How long one test step may take.
const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn clock() -> Clock {
    Arc::new(k8s_openapi::jiff::Timestamp::now)
}

struct Env {
    client: Arc<dyn Client>,
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
    slices: Cache<EndpointSlice>,
}

/// A registry with namespace `ns`, and empty caches with the indexes the reconcilers need.
async fn env() -> Env {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns"}})).expect("namespace");
    within("create namespace", Api::<Namespace>::all(client.clone()).create(&ns)).await.expect("namespace");
    Env {
        client,
        services: Cache::with_indexes(service_indexes()),
        // The reconcilers add the indexes they need to caches that lack them.
        pods: Cache::default(),
        endpoints: Cache::default(),
        slices: Cache::default(),
    }
}

/// Fills `cache` with a fresh list, as a watcher's initial list would.
async fn fill<K: Resource>(client: &Arc<dyn Client>, cache: &Cache<K>) {
    let list =
        within("list", Api::<K>::all(client.clone()).list(&ListOptions::default())).await.expect("list");
    cache.apply(&WatcherEvent::Init);
    for item in list.items {
        cache.apply(&WatcherEvent::InitApply(item));
    }
    cache.apply(&WatcherEvent::InitDone);
}

fn key() -> ObjectKey {
    ObjectKey::namespaced("ns", "web")
}

impl Env {
    async fn sync(&self) {
        fill(&self.client, &self.services).await;
        fill(&self.client, &self.pods).await;
        fill(&self.client, &self.endpoints).await;
        fill(&self.client, &self.slices).await;
    }

    fn endpoints_reconciler(&self) -> EndpointsReconciler {
        EndpointsReconciler::new(
            self.client.clone(),
            self.services.clone(),
            self.pods.clone(),
            self.endpoints.clone(),
            clock(),
        )
    }

    fn slice_reconciler(&self) -> EndpointSliceReconciler {
        EndpointSliceReconciler::new(
            self.client.clone(),
            self.services.clone(),
            self.pods.clone(),
            self.slices.clone(),
            clock(),
        )
    }

    async fn add_service(&self, spec: Value) {
        let svc: Service = serde_json::from_value(
            json!({"metadata": {"name": "web", "labels": {"team": "a"}}, "spec": spec}),
        )
        .expect("service");
        within("create service", Api::namespaced(self.client.clone(), "ns").create(&svc))
            .await
            .expect("service");
    }

    async fn add_pod(&self, name: &str, ip: &str, ready: bool) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                     "ports": [{"name": "http", "containerPort": 8080}]}]},
        }))
        .expect("pod");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "ns");
        within("create pod", pods.create(&pod)).await.expect("pod");
        self.set_ready(name, ip, ready).await;
    }

    async fn set_ready(&self, name: &str, ip: &str, ready: bool) {
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "ns");
        within("pod status", pods.patch_status(name, PatchType::Merge, &status)).await.expect("status");
    }

    async fn stored_endpoints(&self) -> Option<Endpoints> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), "ns");
        within("get endpoints", api.get_opt("web")).await.expect("get")
    }

    async fn stored_slices(&self) -> Vec<EndpointSlice> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "ns");
        within("list slices", api.list(&ListOptions::default())).await.expect("list").items
    }

    async fn delete_service(&self) {
        let api: Api<Service> = Api::namespaced(self.client.clone(), "ns");
        within("delete service", api.delete("web", &DeleteOptions::default())).await.expect("deleted");
    }
}

fn selector_service() -> Value {
    json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
}

fn ips(l: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<&str> {
    l.iter().flatten().map(|a| a.ip.as_str()).collect()
}

async fn reconcile(r: &impl Reconciler<Error = Error>) -> Result<Action> {
    within("reconcile", r.reconcile(&key())).await
}

#[tokio::test]
async fn endpoints_follow_the_pods_and_go_with_the_service() {
    let env = env().await;
    env.add_service(selector_service()).await;
    env.add_pod("a", "10.0.0.1", true).await;
    env.add_pod("b", "10.0.0.2", false).await;
    env.sync().await;
    let r = env.endpoints_reconciler();
    assert_eq!(reconcile(&r).await.expect("reconciled"), Action::Done);
    let ep = env.stored_endpoints().await.expect("created");
    let subset = &ep.subsets.as_ref().expect("subsets")[0];
    assert_eq!(
        (ips(&subset.addresses), ips(&subset.not_ready_addresses)),
        (vec!["10.0.0.1"], vec!["10.0.0.2"])
    );
    assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 8080);
    assert!(is_managed_endpoints(&ep));

    // Nothing changed: no write.
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    let again = env.stored_endpoints().await.expect("still there");
    assert_eq!(again.metadata.resource_version, ep.metadata.resource_version);

    // b becomes ready.
    env.set_ready("b", "10.0.0.2", true).await;
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    let ep = env.stored_endpoints().await.expect("updated");
    let subset = &ep.subsets.as_ref().expect("subsets")[0];
    assert_eq!(ips(&subset.addresses), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(subset.not_ready_addresses, None);

    env.delete_service().await;
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    assert_eq!(env.stored_endpoints().await, None);
}

#[tokio::test]
async fn user_endpoints_of_selectorless_services_are_never_touched() {
    let env = env().await;
    env.add_service(json!({"ports": [{"port": 80}]})).await;
    let user: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "192.168.0.9"}], "ports": [{"port": 80}]}]}))
    .expect("endpoints");
    let api: Api<Endpoints> = Api::namespaced(env.client.clone(), "ns");
    within("create endpoints", api.create(&user)).await.expect("created");
    env.add_pod("a", "10.0.0.1", true).await;
    env.sync().await;
    let r = env.endpoints_reconciler();
    reconcile(&r).await.expect("reconciled");
    let stored = env.stored_endpoints().await.expect("kept");
    assert_eq!(ips(&stored.subsets.as_ref().expect("subsets")[0].addresses), ["192.168.0.9"]);
    env.delete_service().await;
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    assert!(env.stored_endpoints().await.is_some(), "not the controller's to delete");
}

#[tokio::test]
async fn a_stale_cache_is_waited_for_and_a_conflict_is_an_error_to_retry() {
    let env = env().await;
    env.add_service(selector_service()).await;
    env.add_pod("a", "10.0.0.1", false).await;
    env.sync().await;
    let r = env.endpoints_reconciler();
    reconcile(&r).await.expect("created");
    // The Endpoints cache has not seen the create yet: wait rather than create again.
    assert_eq!(reconcile(&r).await.expect("waits"), Action::RequeueAfter(CACHE_RECHECK));
    env.sync().await;

    // Someone else writes the Endpoints after the cache was filled; the pod becomes ready.
    let api: Api<Endpoints> = Api::namespaced(env.client.clone(), "ns");
    let note = json!({"metadata": {"annotations": {"note": "x"}}});
    within("annotate", api.patch("web", PatchType::Merge, &note)).await.expect("patched");
    env.set_ready("a", "10.0.0.1", true).await;
    fill(&env.client, &env.pods).await;
    let err = reconcile(&r).await.expect_err("stale resourceVersion");
    match &err {
        Error::UpdateEndpoints { namespace, name, source } => {
            assert_eq!((namespace.as_str(), name.as_str(), source.code()), ("ns", "web", 409));
        }
        other => panic!("unexpected error {other:?}"),
    }
    env.sync().await;
    reconcile(&r).await.expect("retried");
    let ep = env.stored_endpoints().await.expect("updated");
    assert_eq!(ips(&ep.subsets.as_ref().expect("subsets")[0].addresses), ["10.0.0.1"]);
    let note = ep.metadata.annotations.as_ref().and_then(|a| a.get("note"));
    assert_eq!(note.map(String::as_str), Some("x"), "the other writer's annotation is kept");
}

#[tokio::test]
async fn nothing_is_decided_before_the_caches_are_filled() {
    let env = env().await;
    env.add_service(selector_service()).await;
    let r = env.endpoints_reconciler();
    assert_eq!(reconcile(&r).await.expect("waits"), Action::RequeueAfter(CACHE_RECHECK));
    let s = env.slice_reconciler();
    assert_eq!(reconcile(&s).await.expect("waits"), Action::RequeueAfter(CACHE_RECHECK));
    assert_eq!(env.stored_endpoints().await, None);
}

#[tokio::test]
async fn nothing_is_created_in_a_terminating_namespace() {
    let env = env().await;
    env.add_service(selector_service()).await;
    env.add_pod("a", "10.0.0.1", true).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    within("delete namespace", namespaces.delete("ns", &DeleteOptions::default()))
        .await
        .expect("terminating");
    env.sync().await;
    assert_eq!(reconcile(&env.endpoints_reconciler()).await.expect("dropped"), Action::Done);
    assert_eq!(reconcile(&env.slice_reconciler()).await.expect("dropped"), Action::Done);
    assert_eq!(env.stored_endpoints().await, None);
    assert!(env.stored_slices().await.is_empty());
}

#[tokio::test]
async fn slices_follow_the_pods_in_place_and_go_with_the_service() {
    let env = env().await;
    env.add_service(selector_service()).await;
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        env.add_pod(name, &format!("10.0.0.{}", i + 1), i != 4).await;
    }
    env.sync().await;
    let r = env.slice_reconciler().with_max_endpoints_per_slice(2);
    reconcile(&r).await.expect("reconciled");
    let slices = env.stored_slices().await;
    let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2, 2]);
    assert!(slices.iter().all(|s| s.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-"))));
    assert!(slices.iter().all(is_managed_slice));

    // Unchanged: no write at all.
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    assert_eq!(env.stored_slices().await, slices);

    // e becomes ready: its slice alone is rewritten, under the same name.
    env.set_ready("e", "10.0.0.5", true).await;
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    let after = env.stored_slices().await;
    let changed: Vec<_> = after.iter().filter(|s| !slices.contains(s)).collect();
    assert_eq!(changed.len(), 1);
    let e = changed[0].endpoints.iter().find(|e| e.addresses == ["10.0.0.5"]).expect("e");
    assert_eq!(e.conditions.as_ref().and_then(|c| c.ready), Some(true));
    let names = |l: &[EndpointSlice]| l.iter().map(|s| s.metadata.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&slices));

    env.delete_service().await;
    env.sync().await;
    reconcile(&r).await.expect("reconciled");
    assert!(env.stored_slices().await.is_empty());
}

#[tokio::test]
async fn a_new_slice_not_yet_in_the_cache_is_not_created_twice() {
    let env = env().await;
    env.add_service(selector_service()).await;
    env.add_pod("a", "10.0.0.1", true).await;
    env.sync().await;
    let r = env.slice_reconciler();
    reconcile(&r).await.expect("created");
    assert_eq!(reconcile(&r).await.expect("waits"), Action::RequeueAfter(CACHE_RECHECK));
    assert_eq!(env.stored_slices().await.len(), 1);
    env.sync().await;
    assert_eq!(reconcile(&r).await.expect("nothing to do"), Action::Done);
    assert_eq!(env.stored_slices().await.len(), 1);
}
