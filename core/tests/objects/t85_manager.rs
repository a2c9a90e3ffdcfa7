//! The built-in controllers together, as `flotilla up` runs them: a ReplicaSet's pods become
//! a Service's endpoints, a claim gets a provisioned volume, and deleting the namespace
//! removes everything in it (and the volume with its claim).

use std::future::Future;
use std::time::Duration;

use flotilla_core::client::DeleteOptions;
use flotilla_core::controller::testing::{HollowKubelet, TestKit};
use flotilla_core::controllers::manager::ControllerManager;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn object<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object")
}

#[tokio::test(start_paused = true)]
async fn replica_set_pods_become_endpoints_and_namespace_deletion_empties_it() {
    within("manager", async {
        let kit = TestKit::new().await;
        let types: Vec<_> = kit.registry().kinds().types().collect();
        let manager = ControllerManager::new(kit.client(), types, kit.clock());
        let is_leader = kit.is_leader();
        kit.spawn_task(|stop| manager.run(is_leader, stop));
        let hollow = HollowKubelet::new(kit.client(), kit.clock());
        kit.spawn_task(|stop| hollow.run(stop));

        let ns: Namespace = object(json!({"metadata": {"name": "shop"}}));
        kit.api::<Namespace>(None).create(&ns).await.expect("namespace");
        let rs: ReplicaSet = object(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]},
            }},
        }));
        kit.api::<ReplicaSet>(Some("shop")).create(&rs).await.expect("replica set");
        let svc: Service = object(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        }));
        kit.api::<Service>(Some("shop")).create(&svc).await.expect("service");

        let eps = kit.api::<Endpoints>(Some("shop"));
        let ep = kit
            .eventually("three ready endpoints", || async {
                let ep = eps.get("web").await.ok()?;
                let subsets = ep.subsets.clone()?;
                let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
                (ready == 3).then_some(ep)
            })
            .await;
        let port = &ep.subsets.expect("subsets")[0].ports.clone().expect("ports")[0];
        assert_eq!(port.port, 8080, "the named target port resolved");
        let slices = kit.api::<EndpointSlice>(Some("shop"));
        kit.eventually("an endpoint slice with three endpoints", || async {
            let l = slices.list(&Default::default()).await.ok()?;
            (l.items.len() == 1 && l.items[0].endpoints.len() == 3).then_some(())
        })
        .await;

        // A claim of the default local-path class gets a provisioned volume, bound.
        let class: StorageClass = object(json!({
            "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "flotilla.dev/local-path",
        }));
        kit.api::<StorageClass>(None).create(&class).await.expect("storage class");
        let pvc: PersistentVolumeClaim = object(json!({
            "metadata": {"name": "data", "namespace": "shop"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }));
        let claims = kit.api::<PersistentVolumeClaim>(Some("shop"));
        claims.create(&pvc).await.expect("claim");
        let volume = kit
            .eventually("the claim bound to a provisioned volume", || async {
                let c = claims.get("data").await.ok()?;
                (c.status?.phase.as_deref() == Some("Bound")).then_some(c.spec?.volume_name?)
            })
            .await;
        let volumes = kit.api::<PersistentVolume>(None);
        assert!(volumes.get_opt(&volume).await.expect("get").is_some(), "volume {volume} exists");

        kit.api::<Namespace>(None).delete("shop", &DeleteOptions::default()).await.expect("delete namespace");
        let namespaces = kit.api::<Namespace>(None);
        kit.eventually("namespace gone", || async { namespaces.get_opt("shop").await.ok()?.is_none().then_some(()) })
            .await;
        let pods = kit.api::<Pod>(Some("shop")).list(&Default::default()).await.expect("list");
        assert!(pods.items.is_empty(), "{:?}", pods.items);
        kit.eventually("the provisioned volume deleted with its claim", || async {
            volumes.get_opt(&volume).await.ok()?.is_none().then_some(())
        })
        .await;
        kit.shutdown().await;
    })
    .await;
}
