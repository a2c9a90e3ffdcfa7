//! Pause and resume, rollback, history cleanup, the progress deadline, and the status
//! `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentStatus;
use serde_json::json;

use super::{World, deployment, owned_rs, summary};
use crate::controllers::deployment::conditions::{PROGRESSING, reasons};
use crate::controllers::deployment::{REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION};

fn rolled_out(replicas: i32) -> World {
    let mut world = World::new(deployment(json!({"replicas": replicas})));
    world.step();
    world.settle();
    world.step();
    world
}

fn image(world: &mut World, image: &str) {
    world.edit(json!({"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}));
}

fn complete(world: &mut World) {
    for _ in 0..30 {
        let plan = world.step();
        world.settle();
        if plan.steps.is_empty() {
            return;
        }
    }
    panic!("no convergence: {:?}", world.sizes());
}

fn revision_of(world: &World, name: &str) -> (Option<String>, Option<String>) {
    let a = world.get(name).and_then(|rs| rs.metadata.annotations.clone()).unwrap_or_default();
    (a.get(REVISION_ANNOTATION).cloned(), a.get(REVISION_HISTORY_ANNOTATION).cloned())
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out_or_time_out() {
    let mut world = rolled_out(3);
    world.edit(json!({"paused": true}));
    image(&mut world, "web:2");
    let plan = world.step();
    assert_eq!(plan.created().count(), 0, "no rollout while paused");
    let cond = world.condition(PROGRESSING).expect("progressing");
    assert_eq!((cond.status.as_str(), cond.reason.as_deref()), ("Unknown", Some(reasons::PAUSED)));
    assert_eq!(plan.requeue_after, None, "no deadline while paused");

    world.tick(3600);
    assert!(world.step().steps.is_empty(), "an hour paused is no timeout");

    world.edit(json!({"replicas": 5}));
    let plan = world.step();
    assert_eq!(plan.created().count(), 0);
    assert_eq!(world.counts(), vec![5], "scaling goes on");

    world.edit(json!({"paused": false}));
    let plan = world.step();
    assert_eq!(plan.created().count(), 1, "resumed: the rollout starts");
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_REPLICA_SET_CREATED));
    complete(&mut world);
    assert_eq!(world.counts(), vec![0, 5]);
}

#[test]
fn resuming_restarts_the_deadline() {
    let mut world = rolled_out(3);
    image(&mut world, "web:2");
    world.step();
    let (old, new) = (world.sizes()[0].0.clone(), world.sizes()[1].0.clone());
    let stuck = |world: &mut World| {
        world.settle_rs(&old, None);
        world.settle_rs(&new, Some(0));
    };
    stuck(&mut world);
    world.edit(json!({"paused": true}));
    world.step();
    world.tick(3600);
    stuck(&mut world);
    world.edit(json!({"paused": false}));
    let plan = world.step();
    // An hour paused mid-rollout does not count: the deadline starts again now.
    let cond = world.condition(PROGRESSING).expect("progressing");
    assert_eq!((cond.status.as_str(), cond.reason.as_deref()), ("Unknown", Some(reasons::RESUMED)));
    let updated = cond.last_update_time.expect("time").0;
    assert!(world.now.as_second() - updated.as_second() <= 1);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
}

#[test]
fn rollback_reuses_the_old_replica_set_with_the_next_revision() {
    let mut world = rolled_out(3);
    let first = world.sizes()[0].0.clone();
    image(&mut world, "web:2");
    complete(&mut world);
    assert_eq!(world.counts(), vec![0, 3]);
    let second = world.sizes()[1].0.clone();
    assert_eq!(revision_of(&world, &second).0.as_deref(), Some("2"));

    // `kubectl rollout undo` puts the first template back.
    image(&mut world, "web:1");
    let plan = world.step();
    assert_eq!(plan.created().count(), 0, "the old replica set is reused");
    let s = summary(&world, &plan);
    assert!(s.contains(&"revision 3".to_string()), "{s:?}");
    assert_eq!(revision_of(&world, &first), (Some("3".into()), Some("1".into())));
    assert_eq!(world.counts(), vec![1, 3], "scaled up within the surge of 1");
    world.settle();
    complete(&mut world);
    assert_eq!(world.counts(), vec![3, 0]);
    assert_eq!(
        world.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).map(String::as_str),
        Some("3")
    );
}

fn completed_status(replicas: i32) -> DeploymentStatus {
    DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(replicas),
        updated_replicas: Some(replicas),
        available_replicas: Some(replicas),
        ready_replicas: Some(replicas),
        ..Default::default()
    }
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_revision_first() {
    let mut world = World::new(deployment(json!({"replicas": 3, "revisionHistoryLimit": 2})));
    world.d.status = Some(completed_status(3));
    let mut rss = [
        // Creation order differs from revision order: revisions decide.
        owned_rs("r2", "web:old2", 0, 2, "2026-03-01T09:00:00Z"),
        owned_rs("r1", "web:old1", 0, 1, "2026-03-01T09:30:00Z"),
        owned_rs("r3", "web:old3", 0, 3, "2026-03-01T10:00:00Z"),
        owned_rs("r4", "web:old4", 0, 4, "2026-03-01T10:30:00Z"),
        owned_rs("r5", "web:1", 3, 5, "2026-03-01T11:00:00Z"),
    ];
    world.rss = rss.iter().cloned().map(Arc::new).collect();
    let plan = world.decide();
    let s = summary(&world, &plan);
    let deletes: Vec<&String> = s.iter().filter(|s| s.starts_with("delete")).collect();
    assert_eq!(deletes, vec!["delete r1", "delete r2"]);

    // An old ReplicaSet with pods left is kept (and not replaced by a younger one).
    rss[1].status.as_mut().expect("status").replicas = 1;
    world.rss = rss.iter().cloned().map(Arc::new).collect();
    let s = summary(&world, &world.decide());
    let deletes: Vec<&String> = s.iter().filter(|s| s.starts_with("delete")).collect();
    assert_eq!(deletes, vec!["delete r2"]);

    // Nothing is cleaned up while the rollout is incomplete.
    world.d.status = Some(DeploymentStatus { available_replicas: Some(2), ..completed_status(3) });
    let s = summary(&world, &world.decide());
    assert!(!s.iter().any(|s| s.starts_with("delete")), "{s:?}");
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let mut world = World::new(deployment(json!({"replicas": 2, "progressDeadlineSeconds": 300})));
    world.step();
    world.settle();
    world.step();
    image(&mut world, "web:2");
    world.step();
    let (old, new) = (world.sizes()[0].0.clone(), world.sizes()[1].0.clone());
    // The new pods never become available.
    let mut waited = 0;
    let timed_out = loop {
        world.settle_rs(&old, None);
        world.settle_rs(&new, Some(0));
        let plan = world.step();
        if world.progressing_reason().as_deref() == Some(reasons::TIMED_OUT) {
            break plan;
        }
        let requeue = plan.requeue_after.expect("a stuck rollout is looked at again");
        assert!(requeue <= Duration::from_secs(301), "{requeue:?}");
        world.tick(60);
        waited += 61;
        assert!(waited < 1000, "never timed out");
    };
    assert!(waited >= 300, "not before the deadline: {waited}");
    let cond = world.condition(PROGRESSING).expect("progressing");
    assert_eq!(cond.status, "False");
    assert_eq!(cond.message, Some(format!("ReplicaSet {new:?} has timed out progressing.")));
    assert_eq!(timed_out.requeue_after, None, "timed out: nothing more to wait for");

    // Progress after the deadline counts again.
    world.settle();
    world.step();
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::REPLICA_SET_UPDATED));
    complete(&mut world);
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_RS_AVAILABLE));
}

#[test]
fn status_counts_what_the_replica_sets_report() {
    let mut world = World::new(deployment(json!({
        "replicas": 4,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
    })));
    world.step();
    world.settle();
    world.step();
    let s = world.d.status.clone().expect("status");
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(4), Some(4), Some(4), Some(4), None)
    );
    assert_eq!(s.observed_generation, world.d.metadata.generation);

    image(&mut world, "web:2");
    world.step();
    let (old, new) = (world.sizes()[0].0.clone(), world.sizes()[1].0.clone());
    world.settle_rs(&old, None);
    world.settle_rs(&new, Some(0));
    let plan = world.step();
    let s = plan.status().cloned().expect("status");
    // Counted from the sizes observed before this step scaled the new ReplicaSet to 2.
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(4), Some(1), Some(3), Some(3), Some(1))
    );
    assert_eq!(world.available_reason().as_deref(), Some(reasons::MINIMUM_REPLICAS_AVAILABLE), "3 >= 4 - 1");
    let cond = world.condition(PROGRESSING).expect("progressing");
    assert_eq!(cond.reason.as_deref(), Some(reasons::REPLICA_SET_UPDATED));
    assert_eq!(cond.message, Some(format!("ReplicaSet {new:?} is progressing.")));
    assert_eq!(s.observed_generation, world.d.metadata.generation);
}
