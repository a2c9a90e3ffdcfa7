//! `Recreate`: old ReplicaSets go to zero, and the new one appears only once no old pod runs.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::{World, deployment, summary};

fn pod(name: &str, rs_name: &str, rs_uid: &str, phase: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                    "uid": rs_uid, "controller": true}]},
            "status": {"phase": phase}
        }))
        .expect("pod"),
    )
}

fn recreate_world() -> (World, String, String) {
    let mut world = World::new(deployment(json!({"replicas": 2, "strategy": {"type": "Recreate"}})));
    let plan = world.step();
    assert_eq!(plan.created().next().and_then(|rs| rs.spec.as_ref()?.replicas), Some(2));
    world.settle();
    let (name, uid) = {
        let rs = &world.rss[0];
        (rs.metadata.name.clone().unwrap_or_default(), rs.metadata.uid.clone().unwrap_or_default())
    };
    world.pods = vec![pod("a", &name, &uid, "Running"), pod("b", &name, &uid, "Running")];
    world.step();
    (world, name, uid)
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_old_pods() {
    let (mut world, old, uid) = recreate_world();
    world.edit(json!({"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}));

    let plan = world.decide();
    assert_eq!(summary(&world, &plan)[0], format!("scale {old} 2->0"));
    world.apply(&plan);
    world.tick(1);
    assert_eq!(plan.created().count(), 0, "nothing new before the old pods are gone");

    // The ReplicaSet still reports replicas.
    assert_eq!(world.step().created().count(), 0);
    // It reports none, but its pods still run (terminating).
    world.settle();
    assert_eq!(world.step().created().count(), 0);
    // One finished, one still running.
    world.pods = vec![pod("a", &old, &uid, "Succeeded"), pod("b", &old, &uid, "Running")];
    assert_eq!(world.step().created().count(), 0);
    // Pods of ReplicaSets the Deployment does not own do not count.
    world.pods = vec![pod("a", &old, &uid, "Failed"), pod("x", "stranger", "other-uid", "Running")];
    let plan = world.step();
    let created = plan.created().next().expect("the new replica set, at full size");
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let messages: Vec<&str> = plan.events().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![format!("Scaled up replica set {} from 0 to 2", created.metadata.name.as_deref().unwrap_or(""))]
    );
    assert_eq!(world.counts(), vec![0, 2]);
}

#[test]
fn recreate_never_surges() {
    let (mut world, _, _) = recreate_world();
    world.edit(json!({"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}));
    world.pods.clear();
    for _ in 0..6 {
        world.step();
        let counts = world.counts();
        assert!(counts.iter().filter(|n| **n > 0).count() <= 1, "old and new never both sized: {counts:?}");
        world.settle();
    }
    assert_eq!(world.counts(), vec![0, 2]);
    let status = world.d.status.clone().expect("status");
    assert_eq!((status.updated_replicas, status.available_replicas), (Some(2), Some(2)));
    // Recreate has no unavailability budget: below 2 available, it is not Available.
    assert_eq!(world.available_reason().as_deref(), Some("MinimumReplicasAvailable"));
}
