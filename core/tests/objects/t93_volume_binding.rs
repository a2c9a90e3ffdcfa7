//! The scheduler's VolumeBinding with the PersistentVolume controllers, over the in-memory
//! store under a paused clock: a pod whose `WaitForFirstConsumer` claim has one static volume
//! goes to the node that volume lives on, and one whose claim must be provisioned gets a
//! local-path volume pinned to the node it was placed on.

use std::future::Future;
use std::time::Duration;

use flotilla_core::client::Api;
use flotilla_core::controller::events::Recorder;
use flotilla_core::controller::testing::TestKit;
use flotilla_core::controllers::volume::{
    ANN_SELECTED_NODE, EVENT_COMPONENT, LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER, NO_PROVISIONER,
    claim_controller, on_node, volume_controller,
};
use flotilla_core::patch::PatchType;
use flotilla_core::scheduler::runtime::{Scheduler, SchedulerConfig, default_profiles};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

/// The volume controllers and the scheduler over a kit with nodes `a`, `b` and `c`.
async fn cluster() -> TestKit {
    let kit = TestKit::new().await;
    let (recorder, task) = Recorder::new(kit.client(), EVENT_COMPONENT, kit.clock());
    kit.spawn_task(|stop| task.run(stop));
    kit.spawn(claim_controller(kit.informers(), kit.clock(), recorder.clone()));
    kit.spawn(volume_controller(kit.informers(), kit.clock(), recorder));
    let mut config = SchedulerConfig::always_leader();
    config.clock = kit.clock();
    let scheduler = Scheduler::new(kit.client(), default_profiles(), config).expect("scheduler");
    kit.spawn_task(|stop| scheduler.run(stop));
    let nodes = kit.api::<Node>(None);
    for name in ["a", "b", "c"] {
        let node = json!({"metadata": {"name": name, "labels": {LABEL_HOSTNAME: name}}});
        nodes.create(&serde_json::from_value(node).expect("node")).await.expect("create node");
        let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110"});
        let status = json!({"status": {"capacity": resources, "allocatable": resources}});
        nodes.patch_status(name, PatchType::Merge, &status).await.expect("node status");
    }
    kit
}

async fn create<K: flotilla_core::object::Resource>(kit: &TestKit, namespace: Option<&str>, obj: Value) -> K {
    let obj: K = serde_json::from_value(obj).expect("object");
    kit.api::<K>(namespace).create(&obj).await.expect("create")
}

async fn claim_and_pod(kit: &TestKit, claim: &str, class: &str, pod: &str) -> PersistentVolumeClaim {
    let spec = json!({"storageClassName": class, "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}});
    let c = create(
        kit,
        Some("default"),
        json!({"metadata": {"name": claim, "namespace": "default"}, "spec": spec}),
    )
    .await;
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]});
    let _: Pod = create(
        kit,
        Some("default"),
        json!({"metadata": {"name": pod, "namespace": "default"}, "spec": pod_spec}),
    )
    .await;
    c
}

/// Waits until pod `name` is bound; returns its node.
async fn bound_pod(kit: &TestKit, name: &str) -> String {
    let pods: Api<Pod> = kit.api(Some("default"));
    kit.eventually(&format!("pod {name} bound"), || async {
        pods.get(name).await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await
}

/// Waits until claim `name` is bound; returns it.
async fn bound_claim(kit: &TestKit, name: &str) -> PersistentVolumeClaim {
    let claims: Api<PersistentVolumeClaim> = kit.api(Some("default"));
    kit.eventually(&format!("claim {name} bound"), || async {
        claims
            .get(name)
            .await
            .ok()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    })
    .await
}

fn volume_of(c: &PersistentVolumeClaim) -> String {
    c.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_first_consumer_pod_goes_where_its_static_volume_is() {
    within("static volume", async {
        let kit = cluster().await;
        let _: StorageClass = create(
            &kit,
            None,
            json!({"metadata": {"name": "local"}, "provisioner": NO_PROVISIONER,
                "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .await;
        let affinity = serde_json::to_value(on_node("b")).expect("affinity");
        let _: PersistentVolume = create(
            &kit,
            None,
            json!({"metadata": {"name": "disk-b"}, "spec": {"storageClassName": "local",
                "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/mnt/disk"},
                "nodeAffinity": affinity}}),
        )
        .await;
        let claim = claim_and_pod(&kit, "data", "local", "db").await;

        assert_eq!(bound_pod(&kit, "db").await, "b");
        let bound = bound_claim(&kit, "data").await;
        assert_eq!(volume_of(&bound), "disk-b");
        let pv = kit.api::<PersistentVolume>(None).get("disk-b").await.expect("volume");
        let r = pv.spec.and_then(|s| s.claim_ref).expect("claimRef");
        assert_eq!((r.name.as_deref(), r.uid), (Some("data"), claim.metadata.uid));

        // A second pod with a claim of the class finds no volume left: it stays pending.
        claim_and_pod(&kit, "more", "local", "db2").await;
        let pods: Api<Pod> = kit.api(Some("default"));
        // Its first verdict may predate the scheduler's sight of the claim; wait for this one.
        let wanted = "didn't find available persistent volumes to bind";
        kit.eventually("pod db2 unschedulable for want of a volume", || async {
            let conditions = pods.get("db2").await.ok()?.status?.conditions?;
            let c = conditions.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            c.message.filter(|m| m.contains(wanted))
        })
        .await;
        let p = pods.get("db2").await.expect("pod");
        assert!(p.spec.and_then(|s| s.node_name).is_none());
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_provisioned_local_path_volume_is_pinned_to_the_pod_s_node() {
    within("provisioning", async {
        let kit = cluster().await;
        let _: StorageClass = create(
            &kit,
            None,
            json!({"metadata": {"name": "local-path"}, "provisioner": LOCAL_PATH_PROVISIONER,
                "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .await;
        claim_and_pod(&kit, "scratch", "local-path", "worker").await;

        let node = bound_pod(&kit, "worker").await;
        let bound = bound_claim(&kit, "scratch").await;
        let annotations = bound.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANN_SELECTED_NODE), Some(&node));
        let pv = kit.api::<PersistentVolume>(None).get(&volume_of(&bound)).await.expect("volume");
        assert_eq!(pv.spec.and_then(|s| s.node_affinity), Some(on_node(&node)));
        kit.shutdown().await;
    })
    .await;
}
