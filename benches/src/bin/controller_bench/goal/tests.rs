use serde_json::json;

use super::*;

fn deployment(generation: i64, observed: i64, replicas: i32, updated: i32, available: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "d", "namespace": "bench", "uid": "d-uid", "generation": generation},
        "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": available, "availableReplicas": available},
    }))
    .expect("a valid deployment")
}

fn replica_set(name: &str, owner: &str, desired: i32, current: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "bench", "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "Deployment", "name": "d", "uid": owner, "controller": true}]},
        "spec": {"replicas": desired, "selector": {}},
        "status": {"replicas": current},
    }))
    .expect("a valid replica set")
}

fn pods(live: usize, bound: usize, ready: usize) -> Counts {
    Counts { live, bound, ready, ready_now: ready, retries: 0 }
}

fn pod(hash: &str, node: Option<&str>, ready: bool, terminating: bool) -> Pod {
    let condition = if ready { "True" } else { "False" };
    let mut pod = json!({
        "metadata": {"name": "p", "labels": {"pod-template-hash": hash}},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": condition}]},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    if terminating {
        pod["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    }
    serde_json::from_value(pod).expect("a valid pod")
}

#[test]
fn available_needs_the_written_generation_observed() {
    let rs = [replica_set("d-1", "d-uid", 3, 3)];
    let stale = View::new(&deployment(2, 1, 3, 3, 3), &rs, pods(3, 3, 3));
    assert!(!Goal::Available(3).status_reached(&stale));
    let current = View::new(&deployment(2, 2, 3, 3, 3), &rs, pods(3, 3, 3));
    assert!(Goal::Available(3).status_reached(&current));
    assert!(Goal::Available(3).reached(&current));
    let short = View::new(&deployment(2, 2, 3, 3, 2), &rs, pods(3, 3, 3));
    assert!(!Goal::Available(3).status_reached(&short));
}

#[test]
fn available_waits_until_the_watcher_saw_every_pod_ready() {
    let rs = [replica_set("d-1", "d-uid", 3, 3)];
    let view = View::new(&deployment(1, 1, 3, 3, 3), &rs, pods(3, 3, 2));
    assert!(Goal::Available(3).status_reached(&view));
    assert!(!Goal::Available(3).pods_settled(&view));
    assert!(!Goal::Available(3).reached(&view));
}

#[test]
fn pods_that_lost_readiness_do_not_count() {
    let rs = [replica_set("d-1", "d-uid", 3, 3)];
    let lost = Counts { live: 3, bound: 3, ready: 3, ready_now: 2, retries: 0 };
    assert!(!Goal::Available(3).pods_settled(&View::new(&deployment(1, 1, 3, 3, 3), &rs, lost)));
}

#[test]
fn a_rollout_ends_when_old_replica_sets_and_pods_are_gone() {
    let status = deployment(2, 2, 3, 3, 3);
    let old_wanting = [replica_set("d-1", "d-uid", 1, 0), replica_set("d-2", "d-uid", 3, 3)];
    assert!(!Goal::RolledOut(3).status_reached(&View::new(&status, &old_wanting, pods(3, 3, 3))));
    let old_empty = [replica_set("d-1", "d-uid", 0, 0), replica_set("d-2", "d-uid", 3, 3)];
    // Old pods still terminating: the status is done, the pods are not.
    let terminating = View::new(&status, &old_empty, pods(5, 5, 5));
    assert!(Goal::RolledOut(3).status_reached(&terminating));
    assert!(!Goal::RolledOut(3).reached(&terminating));
    assert!(Goal::RolledOut(3).reached(&View::new(&status, &old_empty, pods(3, 3, 3))));
}

#[test]
fn replica_sets_of_other_owners_are_ignored() {
    let rs = [replica_set("d-1", "d-uid", 3, 3), replica_set("other", "other-uid", 5, 5)];
    let view = View::new(&deployment(1, 1, 3, 3, 3), &rs, pods(3, 3, 3));
    assert_eq!(view.replica_sets.len(), 1);
    assert!(Goal::RolledOut(3).status_reached(&view));
}

#[test]
fn scale_to_zero_waits_for_every_pod_to_disappear() {
    let rs = [replica_set("d-1", "d-uid", 0, 0)];
    let status = deployment(3, 3, 0, 0, 0);
    let terminating = View::new(&status, &rs, pods(2, 2, 2));
    assert!(Goal::ScaledToZero.status_reached(&terminating));
    assert!(!Goal::ScaledToZero.reached(&terminating));
    assert!(Goal::ScaledToZero.reached(&View::new(&status, &rs, pods(0, 0, 0))));
    let still_wanting = [replica_set("d-1", "d-uid", 1, 0)];
    assert!(!Goal::ScaledToZero.reached(&View::new(&status, &still_wanting, pods(0, 0, 0))));
}

#[test]
fn a_tally_counts_pods_nodes_and_templates() {
    let listed = [
        pod("a", Some("n1"), true, false),
        pod("a", Some("n1"), true, false),
        pod("b", Some("n2"), false, false),
        pod("b", None, false, true),
    ];
    let tally = Tally::of(&listed);
    assert_eq!((tally.total, tally.bound, tally.ready, tally.terminating, tally.nodes), (4, 3, 2, 1, 2));
    assert_eq!(tally.templates, BTreeSet::from(["a".to_string(), "b".to_string()]));
}

#[test]
fn a_check_names_what_is_wrong() {
    let none = BTreeSet::new();
    let good = Tally::of(&[pod("a", Some("n1"), true, false), pod("a", Some("n2"), true, false)]);
    assert_eq!(good.check(Goal::Available(2), &none), Ok(()));
    let missing = good.check(Goal::Available(3), &none).expect_err("one pod short");
    assert!(missing.contains("2 pods, expected 3"), "{missing}");

    let old = BTreeSet::from(["a".to_string()]);
    let stale = good.check(Goal::RolledOut(2), &old).expect_err("old template");
    assert!(stale.contains("old template"), "{stale}");
    let new = Tally::of(&[pod("b", Some("n1"), true, false), pod("b", Some("n2"), true, false)]);
    assert_eq!(new.check(Goal::RolledOut(2), &old), Ok(()));

    let leftover = Tally::of(&[pod("b", Some("n1"), true, true)]);
    let left = leftover.check(Goal::ScaledToZero, &none).expect_err("a pod remains");
    assert!(left.contains("1 pods, expected 0") && left.contains("1 still terminating"), "{left}");
    assert_eq!(Tally::of(&[]).check(Goal::ScaledToZero, &none), Ok(()));
}
