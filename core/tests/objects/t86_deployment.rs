//! Deployments end to end on the built-in controllers with a hollow kubelet: a rollout to
//! three available replicas, a rolling update to a new template, a rollback to the first
//! template (what `kubectl rollout undo` writes), status as `kubectl rollout status` reads
//! it, and the garbage collector removing everything once the Deployment goes.

use std::future::Future;
use std::time::Duration;

use flotilla_core::controller::testing::{HollowKubelet, TestKit};
use flotilla_core::controllers::manager::ControllerManager;
use flotilla_core::patch::PatchType;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

/// What `kubectl rollout status` waits for: the latest generation observed, every replica
/// updated and available, no old replica left.
async fn rolled_out(kit: &TestKit, image: &str) -> Deployment {
    let deployments = kit.api::<Deployment>(Some("default"));
    kit.eventually(&format!("rolled out to {image}"), || async {
        let d = deployments.get("web").await.ok()?;
        let s = d.status.clone()?;
        let want = d.spec.as_ref()?.replicas?;
        let image_now = d.spec.as_ref()?.template.spec.as_ref()?.containers[0].image.clone()?;
        let done = image_now == image
            && s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want);
        done.then_some(d)
    })
    .await
}

fn revision(rs: &ReplicaSet) -> String {
    let a = rs.metadata.annotations.as_ref();
    a.and_then(|a| a.get("deployment.kubernetes.io/revision")).cloned().unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_deployment_rolls_out_updates_and_rolls_back() {
    within("deployment", async {
        let kit = TestKit::new().await;
        let types: Vec<_> = kit.registry().kinds().types().collect();
        let manager = ControllerManager::new(kit.client(), types, kit.clock());
        let is_leader = kit.is_leader();
        kit.spawn_task(|stop| manager.run(is_leader, stop));
        let hollow = HollowKubelet::new(kit.client(), kit.clock());
        kit.spawn_task(|stop| hollow.run(stop));

        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "web:1"}]},
                },
            },
        }))
        .expect("deployment");
        let deployments = kit.api::<Deployment>(Some("default"));
        deployments.create(&d).await.expect("create");
        let d1 = rolled_out(&kit, "web:1").await;
        let available = d1.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        assert!(available.iter().any(|c| c.type_ == "Available" && c.status == "True"), "{available:?}");
        assert!(
            available.iter().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")),
            "{available:?}"
        );

        let set_image = |image: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        deployments.patch("web", PatchType::StrategicMerge, &set_image("web:2")).await.expect("update");
        rolled_out(&kit, "web:2").await;
        let rss = kit.api::<ReplicaSet>(Some("default"));
        let sets = rss.list(&Default::default()).await.expect("list").items;
        assert_eq!(sets.len(), 2, "one ReplicaSet per template");
        let by_image = |image: &str| {
            sets.iter()
                .find(|rs| {
                    rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()).map(|s| s.containers[0].image.clone())
                        == Some(Some(image.to_string()))
                })
                .cloned()
                .expect("a ReplicaSet for the image")
        };
        assert_eq!(by_image("web:1").spec.and_then(|s| s.replicas), Some(0), "old one scaled down");
        assert_eq!(revision(&by_image("web:2")), "2");

        // `kubectl rollout undo` writes the previous template back; the old ReplicaSet is
        // reused with the next revision.
        deployments.patch("web", PatchType::StrategicMerge, &set_image("web:1")).await.expect("undo");
        rolled_out(&kit, "web:1").await;
        let sets = rss.list(&Default::default()).await.expect("list").items;
        assert_eq!(sets.len(), 2, "the old ReplicaSet was reused, not a third created");
        let first = sets.iter().find(|rs| revision(rs) == "3").expect("revision 3");
        assert_eq!(first.spec.as_ref().and_then(|s| s.replicas), Some(3));

        // Deleting the Deployment takes its ReplicaSets and pods with it (garbage collector).
        deployments.delete("web", &Default::default()).await.expect("delete");
        let pods = kit.api::<Pod>(Some("default"));
        kit.eventually("replica sets and pods collected", || async {
            let no_rs = rss.list(&Default::default()).await.ok()?.items.is_empty();
            let no_pods = pods.list(&Default::default()).await.ok()?.items.is_empty();
            (no_rs && no_pods).then_some(())
        })
        .await;
        kit.shutdown().await;
    })
    .await;
}
