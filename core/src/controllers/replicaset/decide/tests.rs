//! The decision rules, one by one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-01-01T01:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn at(seconds_before_now: i64) -> String {
    Timestamp::from_second(now().as_second() - seconds_before_now).expect("time").to_string()
}

fn rs_from(v: Value) -> ReplicaSet {
    serde_json::from_value(v).expect("test replicaset")
}

/// ReplicaSet `web` (uid `rs-uid`) in `ns`, selecting `app=web`, with `replicas`.
fn rs(replicas: i32) -> ReplicaSet {
    rs_from(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 3},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "1"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
}

fn pod_from(v: Value) -> Arc<Pod> {
    Arc::new(serde_json::from_value(v).expect("test pod"))
}

fn owner(uid: &str, controller: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": controller})
}

/// An active pod `name` labelled `app=web`, controlled by the ReplicaSet.
fn owned(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "labels": {"app": "web", "tier": "fe"}, "ownerReferences": [owner("rs-uid", true)]},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"}
    })
}

fn set(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut cur = &mut v;
    for (i, key) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur[*key] = value;
            break;
        }
        if cur.get(*key).is_none() {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
    v
}

fn ready(v: Value, since: Option<i64>) -> Value {
    let mut c = json!({"type": "Ready", "status": "True"});
    if let Some(s) = since {
        c["lastTransitionTime"] = json!(at(s));
    }
    set(v, &["status", "conditions"], json!([c]))
}

fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    pods.iter().map(|p| p.metadata.name.as_deref().unwrap_or("")).collect()
}

fn plan(rs: &ReplicaSet, pods: &[Arc<Pod>], satisfied: bool) -> Plan {
    let related = HashMap::new();
    decide(&Input {
        replica_set: rs,
        pods,
        expectations_satisfied: satisfied,
        related_pods_per_node: &related,
        now: now(),
    })
    .expect("valid selector")
}

#[test]
fn claims_owned_adopts_orphans_and_releases_unselected() {
    let pods = vec![
        pod_from(owned("mine")),
        pod_from(set(owned("orphan"), &["metadata", "ownerReferences"], Value::Null)),
        pod_from(set(
            owned("orphan-non-controller"),
            &["metadata", "ownerReferences"],
            json!([owner("other", false)]),
        )),
        pod_from(set(owned("relabelled"), &["metadata", "labels"], json!({"app": "db"}))),
        pod_from(set(
            owned("someone-elses"),
            &["metadata", "ownerReferences"],
            json!([owner("other", true)]),
        )),
        pod_from(set(
            set(owned("orphan-unselected"), &["metadata", "ownerReferences"], Value::Null),
            &["metadata", "labels"],
            json!({"app": "db"}),
        )),
        pod_from(set(
            set(owned("orphan-other-ns"), &["metadata", "ownerReferences"], Value::Null),
            &["metadata", "namespace"],
            json!("other"),
        )),
        // Inactive pods are neither counted, adopted nor released.
        pod_from(set(owned("failed"), &["status", "phase"], json!("Failed"))),
        pod_from(set(
            set(owned("orphan-succeeded"), &["metadata", "ownerReferences"], Value::Null),
            &["status", "phase"],
            json!("Succeeded"),
        )),
        pod_from(set(
            set(owned("relabelled-deleting"), &["metadata", "labels"], json!({"app": "db"})),
            &["metadata", "deletionTimestamp"],
            json!(at(0)),
        )),
    ];
    let p = plan(&rs(4), &pods, true);
    assert_eq!(names(&p.owned), ["mine"]);
    assert_eq!(names(&p.adopt), ["orphan", "orphan-non-controller"]);
    assert_eq!(names(&p.release), ["relabelled"]);
    assert_eq!(names(&p.claimed()), ["mine", "orphan", "orphan-non-controller"]);
    // Adopted pods count: 3 claimed, 4 wanted.
    assert_eq!(p.scale, Scale::Create(1));
}

#[test]
fn a_replicaset_being_deleted_neither_claims_nor_scales() {
    let mut deleting = rs(5);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    let pods = vec![
        pod_from(owned("mine")),
        pod_from(set(owned("orphan"), &["metadata", "ownerReferences"], Value::Null)),
        pod_from(set(owned("relabelled"), &["metadata", "labels"], json!({"app": "db"}))),
    ];
    let p = plan(&deleting, &pods, true);
    assert_eq!(names(&p.owned), ["mine"]);
    assert!(p.adopt.is_empty() && p.release.is_empty());
    assert_eq!(p.scale, Scale::Deleting);
}

#[test]
fn scales_up_and_down_within_the_burst() {
    assert_eq!(plan(&rs(0), &[], true).scale, Scale::InSync);
    assert_eq!(plan(&rs(5), &[], true).scale, Scale::Create(5));
    assert_eq!(plan(&rs(2000), &[], true).scale, Scale::Create(BURST_REPLICAS));
    let pods: Vec<Arc<Pod>> = (0..3).map(|i| pod_from(owned(&format!("p{i}")))).collect();
    assert_eq!(plan(&rs(3), &pods, true).scale, Scale::InSync);
    let Scale::Delete(victims) = plan(&rs(1), &pods, true).scale else { panic!("must delete") };
    assert_eq!(victims.len(), 2);
    let Scale::Delete(victims) = plan(&rs(0), &pods, true).scale else { panic!("must delete") };
    assert_eq!(victims.len(), 3);
    let many: Vec<Arc<Pod>> = (0..600).map(|i| pod_from(owned(&format!("p{i}")))).collect();
    let Scale::Delete(victims) = plan(&rs(0), &many, true).scale else { panic!("must delete") };
    assert_eq!(victims.len(), BURST_REPLICAS);
}

#[test]
fn replicas_default_to_one() {
    let mut r = rs(3);
    r.spec.as_mut().expect("spec").replicas = None;
    assert_eq!(desired_replicas(&r), 1);
    assert_eq!(plan(&r, &[], true).scale, Scale::Create(1));
}

#[test]
fn unsatisfied_expectations_hold_creates_and_deletes_but_not_claims() {
    let pods = vec![pod_from(set(owned("orphan"), &["metadata", "ownerReferences"], Value::Null))];
    let p = plan(&rs(5), &pods, false);
    assert_eq!(p.scale, Scale::AwaitingExpectations);
    assert_eq!(names(&p.adopt), ["orphan"]);
    assert_eq!(plan(&rs(0), &pods, false).scale, Scale::AwaitingExpectations);
}

#[test]
fn invalid_and_empty_selectors_are_refused() {
    let mut empty = rs(1);
    empty.spec.as_mut().expect("spec").selector = Default::default();
    let related = HashMap::new();
    let input = |r: &ReplicaSet| {
        decide(&Input {
            replica_set: r,
            pods: &[],
            expectations_satisfied: true,
            related_pods_per_node: &related,
            now: now(),
        })
    };
    assert!(input(&empty).is_err());
    let bad = rs_from(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {
        "selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}}));
    assert!(input(&bad).is_err());
}

#[test]
fn slow_start_doubles_batches_up_to_the_count() {
    assert_eq!(slow_start_batches(0), Vec::<usize>::new());
    assert_eq!(slow_start_batches(1), [1]);
    assert_eq!(slow_start_batches(2), [1, 1]);
    assert_eq!(slow_start_batches(5), [1, 2, 2]);
    assert_eq!(slow_start_batches(7), [1, 2, 4]);
    assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
    let burst = slow_start_batches(BURST_REPLICAS);
    assert_eq!(burst, [1, 2, 4, 8, 16, 32, 64, 128, 245]);
    assert_eq!(burst.iter().sum::<usize>(), BURST_REPLICAS);
}

#[test]
fn pods_are_made_from_the_template() {
    let pod = pod_from_template(&rs(1));
    let m = &pod.metadata;
    assert_eq!(m.generate_name.as_deref(), Some("web-"));
    assert_eq!(m.name, None);
    assert_eq!(m.namespace.as_deref(), Some("ns"));
    assert_eq!(m.labels.as_ref().and_then(|l| l.get("tier")).map(String::as_str), Some("fe"));
    assert_eq!(m.annotations.as_ref().and_then(|l| l.get("a")).map(String::as_str), Some("1"));
    let refs = m.owner_references.as_ref().expect("owner");
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].name.as_str(), refs[0].uid.as_str(), refs[0].controller),
        ("ReplicaSet", "web", "rs-uid", Some(true))
    );
    assert_eq!(refs[0].block_owner_deletion, Some(true));
    assert_eq!(pod.spec.as_ref().map(|s| s.containers[0].name.as_str()), Some("c"));
}

/// Sorts `pods` into deletion order and returns their names.
fn order(pods: Vec<Value>) -> Vec<String> {
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(pod_from).collect();
    let n = pods.len();
    pods_to_delete(&pods, n - 1, &HashMap::new())
        .iter()
        .map(|p| p.metadata.name.clone().expect("name"))
        .collect()
}

fn on_node(v: Value, node: &str) -> Value {
    set(v, &["spec", "nodeName"], json!(node))
}

#[test]
fn unassigned_pods_go_first() {
    let assigned = ready(on_node(owned("assigned"), "n1"), Some(100));
    let unassigned = set(ready(owned("unassigned"), Some(100)), &["status", "phase"], json!("Running"));
    assert_eq!(order(vec![assigned, unassigned, on_node(owned("other"), "n2")]), ["unassigned", "other"]);
}

#[test]
fn pending_then_unknown_then_running() {
    let phase = |name: &str, phase: Option<&str>| {
        let p = on_node(owned(name), "n1");
        set(p, &["status", "phase"], phase.map_or(Value::Null, |s| json!(s)))
    };
    let got = order(vec![
        phase("running", Some("Running")),
        phase("unknown", Some("Unknown")),
        phase("pending", Some("Pending")),
        phase("no-phase", None),
        phase("running-2", Some("Running")),
    ]);
    // No phase ranks with Pending (Kubernetes' map lookup of an unknown phase gives 0);
    // the stable sort keeps their input order.
    assert_eq!(got, ["pending", "no-phase", "unknown", "running"]);
}

#[test]
fn not_ready_before_ready() {
    let got = order(vec![ready(on_node(owned("ready"), "n1"), Some(10)), on_node(owned("not-ready"), "n1")]);
    assert_eq!(got, ["not-ready"]);
}

#[test]
fn lower_deletion_cost_first() {
    let cost = |name: &str, c: &str| {
        set(
            ready(on_node(owned(name), "n1"), Some(10)),
            &["metadata", "annotations"],
            json!({POD_DELETION_COST_ANNOTATION: c}),
        )
    };
    let got =
        order(vec![cost("high", "100"), cost("low", "-5"), ready(on_node(owned("none"), "n1"), Some(10))]);
    assert_eq!(got, ["low", "none"]);
}

#[test]
fn more_related_pods_on_the_node_first() {
    let pods: Vec<Arc<Pod>> = vec![
        pod_from(ready(on_node(owned("alone"), "n1"), Some(10))),
        pod_from(ready(on_node(owned("crowded"), "n2"), Some(10))),
    ];
    let related = HashMap::from([("n1".to_string(), 1), ("n2".to_string(), 3)]);
    assert_eq!(names(&pods_to_delete(&pods, 1, &related)), ["crowded"]);
    // Without ranks, the ready times (equal) and creation times decide: input order.
    assert_eq!(names(&pods_to_delete(&pods, 1, &HashMap::new())), ["alone"]);
}

#[test]
fn ready_for_less_time_first() {
    let got = order(vec![
        ready(on_node(owned("ready-long"), "n1"), Some(3600)),
        ready(on_node(owned("ready-recently"), "n1"), Some(5)),
        ready(on_node(owned("ready-no-time"), "n1"), None),
    ]);
    assert_eq!(got, ["ready-no-time", "ready-recently"]);
}

#[test]
fn more_restarts_first() {
    let restarts = |name: &str, n: i32| {
        let p = ready(on_node(owned(name), "n1"), Some(10));
        set(
            p,
            &["status", "containerStatuses"],
            json!([
                {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": n},
                {"name": "d", "image": "i", "imageID": "", "ready": true, "restartCount": 0}
            ]),
        )
    };
    let got = order(vec![restarts("few", 1), restarts("many", 7), restarts("none", 0)]);
    assert_eq!(got, ["many", "few"]);
    // Equal container restarts: sidecar restarts decide.
    let sidecar = |name: &str, n: i32| {
        let p = set(
            restarts(name, 1),
            &["spec", "initContainers"],
            json!([{"name": "s", "restartPolicy": "Always"}]),
        );
        set(
            p,
            &["status", "initContainerStatuses"],
            json!([
                {"name": "s", "image": "i", "imageID": "", "ready": true, "restartCount": n}
            ]),
        )
    };
    assert_eq!(order(vec![sidecar("calm", 0), sidecar("flappy", 4)]), ["flappy"]);
}

#[test]
fn newer_before_older() {
    let created = |name: &str, ago: Option<i64>| {
        let p = ready(on_node(owned(name), "n1"), Some(10));
        set(p, &["metadata", "creationTimestamp"], ago.map_or(Value::Null, |a| json!(at(a))))
    };
    let got = order(vec![created("old", Some(1000)), created("new", Some(10)), created("unknown", None)]);
    assert_eq!(got, ["unknown", "new"]);
}

#[test]
fn earlier_rules_win_over_later_ones() {
    // A ready, long-running, restart-free old pod on a node versus everything that is worse
    // by exactly one rule: the rule order decides.
    let best = set(
        ready(on_node(owned("best"), "n1"), Some(3600)),
        &["metadata", "creationTimestamp"],
        json!(at(7200)),
    );
    let pods = vec![
        set(best.clone(), &["metadata", "name"], json!("newer")),
        set(best.clone(), &["spec", "nodeName"], Value::Null),
        set(
            set(best.clone(), &["status", "phase"], json!("Pending")),
            &["metadata", "name"],
            json!("pending"),
        ),
        set(
            set(best.clone(), &["status", "conditions"], json!([])),
            &["metadata", "name"],
            json!("not-ready"),
        ),
        best.clone(),
    ];
    let mut pods = pods;
    pods[0] = set(pods[0].clone(), &["metadata", "creationTimestamp"], json!(at(100)));
    pods[1] = set(pods[1].clone(), &["metadata", "name"], json!("unassigned"));
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(pod_from).collect();
    let all = pods_to_delete(&pods, 5, &HashMap::new());
    assert_eq!(all.len(), 5, "asking for every pod returns every pod");
    let sorted = pods_to_delete(&pods, 4, &HashMap::new());
    assert_eq!(names(&sorted), ["unassigned", "pending", "not-ready", "newer"]);
}

#[test]
fn related_pods_are_counted_per_node_across_sibling_replicasets() {
    let with_controller = |v: Value| {
        set(
            v,
            &["metadata", "ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "dep-uid", "controller": true}]),
        )
    };
    let me = rs_from(with_controller(serde_json::to_value(rs(1)).expect("json")));
    let sibling = rs_from(with_controller(json!({
        "metadata": {"name": "web-old", "namespace": "ns", "uid": "old-uid"},
        "spec": {"selector": {"matchLabels": {"app": "web-old"}}}
    })));
    let stranger = rs_from(json!({
        "metadata": {"name": "db", "namespace": "ns", "uid": "db-uid"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}}
    }));
    let rss: Vec<Arc<ReplicaSet>> = vec![Arc::new(me.clone()), Arc::new(sibling), Arc::new(stranger)];
    let pods: Vec<Arc<Pod>> = vec![
        pod_from(on_node(owned("a"), "n1")),
        pod_from(on_node(set(owned("b"), &["metadata", "labels"], json!({"app": "web-old"})), "n1")),
        pod_from(on_node(set(owned("c"), &["metadata", "labels"], json!({"app": "db"})), "n1")),
        pod_from(on_node(owned("d"), "n2")),
        pod_from(on_node(set(owned("e"), &["status", "phase"], json!("Failed")), "n2")),
        pod_from(owned("f")),
    ];
    let counts = related_pods_per_node(&me, &rss, &pods);
    assert_eq!(counts, HashMap::from([("n1".into(), 2), ("n2".into(), 1), ("".into(), 1)]));
    // Without a controller there are no related pods.
    assert!(related_pods_per_node(&rs(1), &rss, &pods).is_empty());
}

#[test]
fn status_counts_claimed_pods() {
    let mut r = rs(4);
    r.spec.as_mut().expect("spec").min_ready_seconds = Some(30);
    let pods: Vec<Arc<Pod>> = vec![
        pod_from(ready(owned("available"), Some(60))),
        pod_from(ready(owned("ready-not-available"), Some(10))),
        pod_from(set(owned("partly-labelled"), &["metadata", "labels"], json!({"app": "web"}))),
        pod_from(owned("not-ready")),
    ];
    let s = compute_status(&r, &pods, Some(Ok(())), now());
    assert_eq!(s.replicas, 4);
    assert_eq!(s.fully_labeled_replicas, Some(3));
    assert_eq!(s.ready_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.conditions, None);
    // Zero counts are absent.
    let empty = compute_status(&r, &[], Some(Ok(())), now());
    assert_eq!((empty.replicas, empty.ready_replicas, empty.available_replicas), (0, None, None));
    // Without minReadySeconds every ready pod is available.
    let s = compute_status(&rs(4), &pods, Some(Ok(())), now());
    assert_eq!(s.available_replicas, Some(2));
}

#[test]
fn replica_failure_is_set_once_kept_while_unmanaged_and_removed_on_success() {
    let failure =
        ReplicaFailure { reason: "FailedCreate", message: "pods \"web-x\" is forbidden: quota".into() };
    let mut r = rs(2);
    let s = compute_status(&r, &[], Some(Err(&failure)), now());
    let c = &s.conditions.as_ref().expect("condition")[0];
    assert_eq!((c.type_.as_str(), c.status.as_str()), (REPLICA_FAILURE, "True"));
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (Some("FailedCreate"), Some(failure.message.as_str()))
    );
    assert_eq!(c.last_transition_time, Some(Time(now())));

    r.status = Some(s.clone());
    // A second failure keeps the first condition (Kubernetes sets it only when absent).
    let other = ReplicaFailure { reason: "FailedCreate", message: "another".into() };
    let later = now() + Duration::from_secs(60);
    assert_eq!(compute_status(&r, &[], Some(Err(&other)), later).conditions, s.conditions);
    // A sync that does not manage replicas leaves it.
    assert_eq!(compute_status(&r, &[], None, later).conditions, s.conditions);
    // A sync that manages them without error removes it.
    assert_eq!(compute_status(&r, &[], Some(Ok(())), later).conditions, None);
    // Other conditions stay.
    let mut with_other = r.clone();
    let mut conditions = s.conditions.clone().expect("conditions");
    conditions.push(ReplicaSetCondition {
        type_: "Custom".into(),
        status: "True".into(),
        ..Default::default()
    });
    with_other.status.as_mut().expect("status").conditions = Some(conditions);
    let kept = compute_status(&with_other, &[], Some(Ok(())), later).conditions.expect("custom stays");
    assert_eq!(kept.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["Custom"]);
}

#[test]
fn status_is_written_only_when_it_changes() {
    let mut r = rs(1);
    let pods = vec![pod_from(ready(owned("a"), Some(100)))];
    let s = compute_status(&r, &pods, Some(Ok(())), now());
    assert!(status_changed(&r, &s), "no status yet");
    r.status = Some(s.clone());
    assert!(!status_changed(&r, &compute_status(&r, &pods, Some(Ok(())), now())));
    // A new generation must be observed.
    r.metadata.generation = Some(4);
    assert!(status_changed(&r, &compute_status(&r, &pods, Some(Ok(())), now())));
    r.metadata.generation = Some(3);
    // A count changes.
    assert!(status_changed(&r, &compute_status(&r, &[], Some(Ok(())), now())));
    // Zero and absent are the same.
    let mut zero = r.clone();
    zero.status.as_mut().expect("status").fully_labeled_replicas = Some(1);
    zero.status.as_mut().expect("status").available_replicas = Some(1);
    assert!(!status_changed(&zero, &s));
}

#[test]
fn availability_is_rechecked_when_the_first_ready_pod_becomes_available() {
    let mut r = rs(3);
    let pods = vec![
        pod_from(ready(owned("available"), Some(100))),
        pod_from(ready(owned("soon"), Some(25))),
        pod_from(ready(owned("later"), Some(5))),
        pod_from(owned("not-ready")),
    ];
    assert_eq!(availability_requeue(&r, &pods, now()), None, "no minReadySeconds");
    r.spec.as_mut().expect("spec").min_ready_seconds = Some(30);
    assert_eq!(availability_requeue(&r, &pods, now()), Some(Duration::from_secs(5)));
    assert_eq!(availability_requeue(&r, &pods[..1], now()), None, "all ready pods available");
    assert_eq!(availability_requeue(&r, &pods[3..], now()), None, "no ready pod");
}
