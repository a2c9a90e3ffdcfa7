//! The ReplicaSet controller on the runtime, with a hollow kubelet standing in for nodes:
//! pods created, readied, replaced, adopted and scaled down, and status as kubectl reads it.

use std::future::Future;
use std::time::Duration;

use flotilla_core::client::{Api, DeleteOptions};
use flotilla_core::controller::events::Recorder;
use flotilla_core::controller::testing::{HollowKubelet, TestKit};
use flotilla_core::controllers::manager::replica_set_controller;
use flotilla_core::controllers::replicaset::CONTROLLER_NAME;
use flotilla_core::controllers::util::controller_of;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn replica_set(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .expect("a valid replica set")
}

async fn pods(api: &Api<Pod>) -> Vec<Pod> {
    let mut items = api.list(&Default::default()).await.expect("list pods").items;
    items.retain(|p| p.metadata.deletion_timestamp.is_none());
    items
}

/// Waits until the ReplicaSet reports `n` ready and available replicas for its generation.
async fn settled(kit: &TestKit, n: i32) -> ReplicaSet {
    let rss = kit.api::<ReplicaSet>(Some("default"));
    kit.eventually(&format!("{n} available replicas"), || async {
        let rs = rss.get("web").await.ok()?;
        let s = rs.status.clone()?;
        let ok = s.replicas == n
            && s.ready_replicas.unwrap_or(0) == n
            && s.available_replicas.unwrap_or(0) == n
            && s.observed_generation == rs.metadata.generation;
        ok.then_some(rs)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_replica_set_keeps_its_pods() {
    within("replica set", async {
        let kit = TestKit::new().await;
        let (recorder, events) = Recorder::new(kit.client(), CONTROLLER_NAME, kit.clock());
        kit.spawn_task(|stop| events.run(stop));
        kit.spawn(replica_set_controller(kit.informers(), kit.clock(), recorder));
        let hollow = HollowKubelet::new(kit.client(), kit.clock());
        kit.spawn_task(|stop| hollow.run(stop));
        let pod_api = kit.api::<Pod>(Some("default"));

        // An orphan the selector matches is adopted rather than duplicated.
        let orphan: Pod = serde_json::from_value(json!({
            "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("pod");
        pod_api.create(&orphan).await.expect("create orphan");
        let rs = kit.api::<ReplicaSet>(Some("default")).create(&replica_set(3)).await.expect("create rs");
        settled(&kit, 3).await;
        let owned = pods(&pod_api).await;
        assert_eq!(owned.len(), 3, "the orphan counts towards the three");
        let uid = rs.metadata.uid.clone().expect("uid");
        assert!(owned.iter().all(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid)));
        assert!(owned.iter().any(|p| p.metadata.name.as_deref() == Some("stray")), "adopted");

        // A deleted pod is replaced.
        let victim = owned[0].metadata.name.clone().expect("name");
        pod_api.delete(&victim, &DeleteOptions::default()).await.expect("delete pod");
        kit.eventually("replacement", || async {
            let now = pods(&pod_api).await;
            (now.len() == 3 && now.iter().all(|p| p.metadata.name.as_deref() != Some(&victim))).then_some(())
        })
        .await;
        settled(&kit, 3).await;

        // Scaling down deletes the surplus.
        let rss = kit.api::<ReplicaSet>(Some("default"));
        rss.scale("web", 1).await.expect("scale");
        settled(&kit, 1).await;
        kit.eventually("one pod left", || async { (pods(&pod_api).await.len() == 1).then_some(()) }).await;
        kit.shutdown().await;
    })
    .await;
}
