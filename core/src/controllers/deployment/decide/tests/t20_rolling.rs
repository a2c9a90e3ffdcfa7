//! `RollingUpdate`: step by step within `maxSurge` and `maxUnavailable`, and proportional
//! scaling when the Deployment is resized mid-rollout.

use serde_json::{Value, json};

use super::{World, deployment, summary};
use crate::controllers::deployment::conditions::reasons;
use crate::controllers::deployment::{DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION};

fn rolling(replicas: i32, surge: Value, unavailable: Value) -> World {
    World::new(deployment(json!({
        "replicas": replicas,
        "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
    })))
}

/// Rolls out the first template and lets it become available.
fn rolled_out(mut world: World) -> World {
    world.step();
    world.settle();
    world.step();
    world
}

fn new_image(world: &mut World, image: &str) {
    world.edit(json!({"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}));
}

/// Runs the rollout to completion (two decisions in a row without writes), letting every
/// ReplicaSet become available between steps, checking the budgets at every step; returns
/// the sizes after each step.
fn run_to_completion(world: &mut World, replicas: i32, surge: i32, unavailable: i32) -> Vec<Vec<i32>> {
    let mut history = Vec::new();
    let mut idle = 0;
    for _ in 0..50 {
        let plan = world.step();
        let total: i32 = world.counts().iter().sum();
        assert!(total <= replicas + surge, "surge exceeded: {:?}", world.sizes());
        assert!(
            world.surviving_available() >= replicas - unavailable,
            "too many unavailable: {:?}",
            world.sizes()
        );
        history.push(world.counts());
        idle = if plan.steps.is_empty() { idle + 1 } else { 0 };
        if idle == 2 {
            return history;
        }
        world.settle();
    }
    panic!("no convergence: {history:?}");
}

#[test]
fn rolls_step_by_step_with_integer_budgets() {
    let mut world = rolled_out(rolling(4, json!(1), json!(1)));
    new_image(&mut world, "web:2");

    let plan = world.step();
    let s = summary(&world, &plan);
    assert!(s[0].starts_with("create web-") && s[0].ends_with(" 1"), "surge of 1: {s:?}");
    // The new pod is not available yet; one old may go (4 - 1 = 3 must stay available).
    assert_eq!(world.counts(), vec![3, 1]);
    assert!(s.contains(&"revision 2".to_string()));
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_REPLICA_SET_CREATED));

    let mut steps = vec![world.counts()];
    for _ in 0..6 {
        world.settle();
        world.step();
        steps.push(world.counts());
    }
    assert_eq!(
        steps,
        vec![vec![3, 1], vec![3, 2], vec![1, 2], vec![1, 4], vec![0, 4], vec![0, 4], vec![0, 4]]
    );
    let status = world.d.status.clone().expect("status");
    assert_eq!(
        (status.replicas, status.updated_replicas, status.available_replicas),
        (Some(4), Some(4), Some(4))
    );
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_RS_AVAILABLE));
    assert_eq!(status.observed_generation, world.d.metadata.generation);
}

#[test]
fn rolls_within_percentage_budgets() {
    // 25% of 10: surge rounds up to 3, unavailable down to 2.
    let mut world = rolled_out(rolling(10, json!("25%"), json!("25%")));
    new_image(&mut world, "web:2");
    let history = run_to_completion(&mut world, 10, 3, 2);
    assert_eq!(history[0], vec![8, 3]);
    assert_eq!(history.last(), Some(&vec![0, 10]));
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_RS_AVAILABLE));
}

#[test]
fn rolls_without_surge_by_going_unavailable_first() {
    // 0% surge, 10% of 5 rounds to 0 unavailable: one pod may go unavailable anyway.
    let mut world = rolled_out(rolling(5, json!("0%"), json!("10%")));
    new_image(&mut world, "web:2");
    let history = run_to_completion(&mut world, 5, 0, 1);
    assert_eq!(history[0], vec![4, 0], "old shrinks first: no room to surge");
    assert_eq!(history.last(), Some(&vec![0, 5]));
}

#[test]
fn rolls_without_unavailability_by_surging_first() {
    let mut world = rolled_out(rolling(3, json!(1), json!(0)));
    new_image(&mut world, "web:2");
    let history = run_to_completion(&mut world, 3, 1, 0);
    assert_eq!(history[0], vec![3, 1]);
    assert_eq!(history.last(), Some(&vec![0, 3]));
}

#[test]
fn unavailable_new_pods_hold_the_old_ones() {
    let mut world = rolled_out(rolling(4, json!(1), json!(1)));
    new_image(&mut world, "web:2");
    world.step();
    assert_eq!(world.counts(), vec![3, 1]);
    // The new pod never becomes available; the old ones are.
    let old = world.sizes()[0].0.clone();
    world.settle_rs(&old, None);
    let new = world.sizes()[1].0.clone();
    world.settle_rs(&new, Some(0));
    for _ in 0..3 {
        world.step();
        assert_eq!(world.counts(), vec![3, 2], "new may surge, old may not shrink further");
        world.settle_rs(&old, None);
        world.settle_rs(&new, Some(0));
    }
}

#[test]
fn resizing_mid_rollout_scales_every_replica_set_proportionally() {
    let mut world = rolled_out(rolling(10, json!("25%"), json!("25%")));
    new_image(&mut world, "web:2");
    world.step();
    world.settle();
    assert_eq!(world.counts(), vec![8, 3]);

    world.edit(json!({"replicas": 20}));
    let plan = world.step();
    // 11 pods of a maximum of 13 become a maximum of 25 (surge 25% of 20 = 5): the old
    // ReplicaSet gets round(8 * 25 / 13) = 15, the new round(3 * 25 / 13) = 6, and the
    // rounding leftover (14 - 7 - 3 = 4) goes to the largest.
    assert_eq!(world.counts(), vec![19, 6]);
    assert_eq!(world.counts().iter().sum::<i32>(), 25);
    for rs in plan.updated() {
        let a = rs.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str), Some("20"));
        assert_eq!(a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str), Some("25"));
    }
    let messages: Vec<&str> = plan.events().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("Scaled up replica set web-") && messages[0].ends_with("from 8 to 19"));

    // Scaling down also goes proportionally, and the rollout then carries on.
    world.settle();
    world.edit(json!({"replicas": 5}));
    world.step();
    let sizes = world.counts();
    assert_eq!(sizes.iter().sum::<i32>(), 5 + 2, "5 plus a surge of 2 (25% of 5, rounded up)");
    assert!(sizes[0] > sizes[1], "the larger stays larger: {sizes:?}");
    let history = run_to_completion(&mut world, 5, 2, 1);
    assert_eq!(history.last(), Some(&vec![0, 5]));
}

#[test]
fn a_new_rollout_over_an_unfinished_one_retires_both_old_replica_sets() {
    let mut world = rolled_out(rolling(4, json!(1), json!(1)));
    new_image(&mut world, "web:2");
    world.step();
    world.settle();
    new_image(&mut world, "web:3");
    let history = run_to_completion(&mut world, 4, 1, 1);
    assert_eq!(history.last(), Some(&vec![0, 0, 4]));
    assert_eq!(
        world
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("3")
    );
}
