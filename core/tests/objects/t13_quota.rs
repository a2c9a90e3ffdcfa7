//! ResourceQuota over the in-memory store: creates are charged in the same transaction as
//! the object, refused with Kubernetes' messages when they do not fit, never over-admitted
//! by racing creates, and the controller's recount gives back what finished and deleted
//! objects held.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use flotilla_core::client::{Api, Client, DeleteOptions, Error, LocalClient, WriteOptions};
use flotilla_core::controller::testing::TestKit;
use flotilla_core::controllers::resourcequota::{QuotaConfig, resource_quota_controller};
use flotilla_core::object::{DynamicObject, KindRegistry, Resource};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::Registry;
use flotilla_core::store::{
    self, CompactResponse, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveResponse,
    MemStore, RangeRequest, RangeResponse, ResponseHeader, Revision, Store, TxnRequest, TxnResponse,
    WatchRequest, WatchStream,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota};
use serde_json::json;

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn quota(name: &str, hard: serde_json::Value, extra: serde_json::Value) -> ResourceQuota {
    let mut spec = json!({"hard": hard});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("quota")
}

/// A pod whose one container requests `cpu` and limits memory to `memory` (when given).
fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>) -> Pod {
    let mut resources = json!({});
    if let Some(c) = cpu {
        resources["requests"] = json!({"cpu": c});
    }
    if let Some(m) = memory {
        resources["limits"] = json!({"memory": m});
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]},
    }))
    .expect("pod")
}

async fn used(api: &Api<ResourceQuota>, name: &str) -> serde_json::Value {
    let q = api.get(name).await.expect("quota");
    serde_json::to_value(q.status.and_then(|s| s.used)).expect("json")
}

fn forbidden(err: Error) -> String {
    match err {
        Error::Forbidden(msg) => msg,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn creates_are_charged_and_refused_with_kubernetes_messages() {
    within("admission", async {
        let kit = TestKit::new().await;
        let (quotas, pods) = (kit.api::<ResourceQuota>(Some("default")), kit.api::<Pod>(Some("default")));
        quotas
            .create(&quota("compute", json!({"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}), json!({})))
            .await
            .expect("quota");
        let err = pods.create(&pod("bare", None, None)).await.expect_err("no requests");
        assert_eq!(
            forbidden(err),
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c"
        );
        pods.create(&pod("a", Some("600m"), Some("256Mi"))).await.expect("fits");
        assert_eq!(used(&quotas, "compute").await, json!({"limits.memory": "256Mi", "pods": "1", "requests.cpu": "600m"}));
        let q = quotas.get("compute").await.expect("quota");
        assert_eq!(serde_json::to_value(q.status.and_then(|s| s.hard)).expect("json")["pods"], "2");

        let err = pods.create(&pod("b", Some("500m"), Some("256Mi"))).await.expect_err("over cpu");
        assert_eq!(
            forbidden(err),
            "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: \
             requests.cpu=600m, limited: requests.cpu=1"
        );
        // A dry run is checked but charges nothing.
        let dry = WriteOptions { dry_run: true, ..Default::default() };
        let obj = DynamicObject::from_typed(&pod("dry", Some("400m"), Some("1Mi"))).expect("pod");
        kit.client().create(&Pod::TYPE, Some("default"), obj, &dry).await.expect("dry run fits");
        pods.create(&pod("b", Some("400m"), Some("256Mi"))).await.expect("fits exactly");
        assert_eq!(used(&quotas, "compute").await, json!({"limits.memory": "512Mi", "pods": "2", "requests.cpu": "1"}));
        let err = pods.create(&pod("c", Some("0"), Some("1Mi"))).await.expect_err("over pods");
        assert!(forbidden(err).ends_with("requested: pods=1, used: pods=2, limited: pods=2"));
        // Another namespace has no quota.
        kit.api::<Namespace>(None)
            .create(&serde_json::from_value(json!({"metadata": {"name": "free"}})).expect("ns"))
            .await
            .expect("namespace");
        kit.api::<Pod>(Some("free")).create(&pod("c", None, None)).await.expect("no quota there");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn object_counts_scopes_and_usage_from_before_the_quota() {
    within("counts", async {
        let kit = TestKit::new().await;
        let (quotas, pods) = (kit.api::<ResourceQuota>(Some("default")), kit.api::<Pod>(Some("default")));
        let maps = kit.api::<ConfigMap>(Some("default"));
        let cm = |n: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": n}})).expect("cm") };
        maps.create(&cm("before")).await.expect("configmap");
        pods.create(&pod("best-effort-1", None, None)).await.expect("pod");
        quotas.create(&quota("objects", json!({"count/configmaps": "2"}), json!({}))).await.expect("quota");
        quotas.create(&quota("be", json!({"pods": "2"}), json!({"scopes": ["BestEffort"]}))).await.expect("quota");
        // The existing configmap and pod are counted on first use.
        maps.create(&cm("second")).await.expect("fits");
        let err = maps.create(&cm("third")).await.expect_err("over");
        assert_eq!(
            forbidden(err),
            "configmaps \"third\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: \
             count/configmaps=2, limited: count/configmaps=2"
        );
        pods.create(&pod("best-effort-2", None, None)).await.expect("fits");
        let err = pods.create(&pod("best-effort-3", None, None)).await.expect_err("over");
        assert!(forbidden(err).contains("exceeded quota: be"));
        // Pods that are not BestEffort are outside the scope.
        pods.create(&pod("burstable", Some("100m"), None)).await.expect("out of scope");
        assert_eq!(used(&quotas, "be").await, json!({"pods": "2"}));
        kit.shutdown().await;
    })
    .await;
}

/// A memory store that yields before every transaction, so concurrent creates all read the
/// quota before any of them writes it: each race is actually run, not won by whoever polls
/// first.
struct YieldingStore(MemStore);

#[async_trait::async_trait]
impl Store for YieldingStore {
    async fn range(&self, req: RangeRequest) -> store::Result<RangeResponse> {
        self.0.range(req).await
    }
    async fn txn(&self, req: TxnRequest) -> store::Result<TxnResponse> {
        tokio::task::yield_now().await;
        self.0.txn(req).await
    }
    async fn compact(&self, revision: Revision) -> store::Result<CompactResponse> {
        self.0.compact(revision).await
    }
    async fn watch(&self, req: WatchRequest) -> store::Result<WatchStream> {
        self.0.watch(req).await
    }
    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> store::Result<LeaseGrantResponse> {
        self.0.lease_grant(id, ttl).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> store::Result<LeaseKeepAliveResponse> {
        self.0.lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: LeaseId) -> store::Result<ResponseHeader> {
        self.0.lease_revoke(id).await
    }
    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> store::Result<LeaseTimeToLiveResponse> {
        self.0.lease_time_to_live(id, keys).await
    }
    async fn lease_leases(&self) -> store::Result<Vec<LeaseId>> {
        self.0.lease_leases().await
    }
}

#[tokio::test]
async fn racing_creates_never_exceed_the_quota() {
    within("race", async {
        let registry = Registry::new(Arc::new(YieldingStore(MemStore::new())), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
        let ns = serde_json::from_value(json!({"metadata": {"name": "default"}})).expect("ns");
        Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
        let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
        quotas.create(&quota("five", json!({"pods": "5"}), json!({}))).await.expect("quota");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            tasks.spawn(async move { pods.create(&pod(&format!("p{i}"), None, None)).await });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Ok(_) => ok += 1,
                Err(Error::Forbidden(_)) => refused += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((ok, refused), (5, 19));
        assert_eq!(used(&quotas, "five").await, json!({"pods": "5"}));
        let pods: Api<Pod> = Api::namespaced(client, "default");
        assert_eq!(pods.list(&Default::default()).await.expect("list").items.len(), 5);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn invalid_quotas_are_refused_naming_the_field() {
    within("validation", async {
        let kit = TestKit::new().await;
        let quotas = kit.api::<ResourceQuota>(Some("default"));
        let bad = quota(
            "bad",
            json!({"bananas": "1", "pods": "-1", "services": "x1"}),
            json!({"scopes": ["BestEffort"]}),
        );
        let text = quotas.create(&bad).await.expect_err("invalid").to_string();
        for want in [
            "spec.hard[bananas]",
            "spec.hard[pods]: Invalid value",
            "must be greater than or equal to 0",
            "spec.hard[services]",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
        let scoped = quota("scoped", json!({"configmaps": "1"}), json!({"scopes": ["Terminating"]}));
        let text = quotas.create(&scoped).await.expect_err("invalid").to_string();
        assert!(text.contains("unsupported scope applied to resource"), "{text}");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_controller_gives_back_what_finished_and_deleted_pods_held() {
    within("controller", async {
        let kit = TestKit::new().await;
        let (quotas, pods) = (kit.api::<ResourceQuota>(Some("default")), kit.api::<Pod>(Some("default")));
        let types: Vec<_> = KindRegistry::builtin().types().collect();
        let config = QuotaConfig { sync_period: Duration::from_secs(300) };
        kit.spawn(resource_quota_controller(kit.informers(), kit.clock(), types, config));
        quotas.create(&quota("q", json!({"pods": "2", "cpu": "1"}), json!({}))).await.expect("quota");
        // The controller fills in the status of a new quota.
        kit.eventually("status counted", || async {
            (used(&quotas, "q").await == json!({"cpu": "0", "pods": "0"})).then_some(())
        })
        .await;
        pods.create(&pod("a", Some("500m"), None)).await.expect("a");
        let mut b = pod("b", Some("500m"), None);
        b.spec.as_mut().expect("spec").node_name = Some("n1".into());
        pods.create(&b).await.expect("b");
        assert!(pods.create(&pod("c", Some("1m"), None)).await.is_err(), "quota full");

        pods.patch_status("a", PatchType::Merge, &json!({"status": {"phase": "Succeeded"}}))
            .await
            .expect("done");
        kit.eventually("finished pod released", || async {
            (used(&quotas, "q").await == json!({"cpu": "500m", "pods": "1"})).then_some(())
        })
        .await;
        // Deleting with a grace period releases when the grace period ends.
        let grace = DeleteOptions { grace_period_seconds: Some(30), ..Default::default() };
        pods.delete("b", &grace).await.expect("delete b");
        assert_eq!(pods.get("b").await.map(|p| p.metadata.deletion_timestamp.is_some()).ok(), Some(true));
        kit.eventually("terminating pod released after its grace period", || async {
            (used(&quotas, "q").await == json!({"cpu": "0", "pods": "0"})).then_some(())
        })
        .await;
        pods.create(&pod("c", Some("1"), None)).await.expect("room again");
        kit.shutdown().await;
    })
    .await;
}
