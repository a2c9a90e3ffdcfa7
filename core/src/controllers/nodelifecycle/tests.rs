//! The node lifecycle decision, rule by rule.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

/// Seconds after the test epoch.
fn at(s: i64) -> Timestamp {
    let epoch: Timestamp = "2026-01-01T00:00:00Z".parse().expect("epoch");
    epoch.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).expect("in range")
}

fn time(s: i64) -> Time {
    Time(at(s))
}

fn config() -> NodeLifecycleConfig {
    NodeLifecycleConfig::default()
}

/// A node created at 0 whose `Ready` condition (if any) has `status`, last heartbeat at
/// `heartbeat`, and the other monitored conditions `False`.
fn node(ready: Option<(&str, i64)>, taints: Value) -> Node {
    let mut conditions = Vec::new();
    if let Some((status, heartbeat)) = ready {
        conditions.push(json!({"type": "Ready", "status": status, "reason": "KubeletReady",
            "lastHeartbeatTime": time(heartbeat), "lastTransitionTime": time(0)}));
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            conditions.push(json!({"type": t, "status": "False",
                "lastHeartbeatTime": time(heartbeat), "lastTransitionTime": time(0)}));
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "uid": "node-uid", "creationTimestamp": time(0)},
        "spec": {"taints": taints},
        "status": {"conditions": conditions},
    }))
    .expect("node")
}

fn lease(renewed: i64) -> Lease {
    let renew = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(at(renewed));
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renew},
    }))
    .expect("lease")
}

/// A pod on n1, ready or not (`None`: no Ready condition), with `tolerations`.
fn pod(name: &str, ready: Option<&str>, tolerations: Value) -> Pod {
    let conditions: Vec<Value> = ready
        .into_iter()
        .map(|s| json!({"type": "Ready", "status": s, "lastTransitionTime": time(0)}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}], "tolerations": tolerations},
        "status": {"phase": "Running", "conditions": conditions},
    }))
    .expect("pod")
}

fn unreachable_taint(added: i64) -> Value {
    json!([{"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": time(added)}])
}

fn names(refs: &[PodRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

fn keys(taints: &[Taint]) -> Vec<&str> {
    taints.iter().map(|t| t.key.as_str()).collect()
}

#[test]
fn a_node_heartbeating_within_the_grace_period_is_left_alone() {
    let n = node(Some(("True", 0)), json!([]));
    let plan = decide_node(&n, Some(&lease(30)), &[], at(60), &config());
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.next_deadline, Some(at(70)), "look again when the lease's grace runs out");
    assert_eq!(plan.requeue_after(at(60)), Some(Duration::from_secs(10)));
}

#[test]
fn the_later_of_lease_and_condition_heartbeat_counts() {
    // The lease is stale but the condition was posted recently: healthy.
    let n = node(Some(("True", 50)), json!([]));
    let plan = decide_node(&n, Some(&lease(0)), &[], at(60), &config());
    assert!(plan.is_empty());
    assert_eq!(plan.next_deadline, Some(at(90)));
    // Both stale: unknown.
    let n = node(Some(("True", 10)), json!([]));
    let plan = decide_node(&n, Some(&lease(15)), &[], at(60), &config());
    assert!(plan.conditions.is_some());
    assert_eq!(last_heartbeat(&n, Some(&lease(15))), Some(at(15)));
    assert_eq!(last_heartbeat(&n, None), Some(at(10)));
}

#[test]
fn a_silent_node_becomes_unknown_and_unreachable() {
    let n = node(Some(("True", 0)), json!([]));
    // Just before the grace period ends: nothing yet.
    assert!(decide_node(&n, Some(&lease(0)), &[], at(39), &config()).is_empty());
    let plan = decide_node(&n, Some(&lease(0)), &[], at(40), &config());
    let conditions = plan.conditions.clone().expect("conditions change");
    for type_ in MONITORED_CONDITIONS {
        let c = conditions.iter().find(|c| c.type_ == type_).expect("condition");
        assert_eq!(c.status, "Unknown", "{type_}");
        assert_eq!(c.reason.as_deref(), Some(NODE_STATUS_UNKNOWN));
        assert_eq!(c.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(c.last_transition_time, Some(time(40)));
        assert_eq!(c.last_heartbeat_time, Some(time(0)), "the last heartbeat is kept");
    }
    assert!(plan.became_unknown);
    assert_eq!(plan.add_taints, vec![no_execute_taint(TAINT_UNREACHABLE, &time(40))]);
    assert!(plan.remove_taints.is_empty());
    assert_eq!(plan.next_deadline, None, "no pods: nothing to wait for but a heartbeat");

    // Once written, the same state asks for nothing more.
    let mut after = n.clone();
    after.status.as_mut().expect("status").conditions = Some(conditions);
    after.spec.as_mut().expect("spec").taints = Some(plan.add_taints.clone());
    let again = decide_node(&after, Some(&lease(0)), &[], at(50), &config());
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn the_grace_period_is_configurable() {
    let n = node(Some(("True", 0)), json!([]));
    let short = NodeLifecycleConfig { node_monitor_grace_period: Duration::from_secs(10), ..config() };
    assert!(decide_node(&n, None, &[], at(9), &short).is_empty());
    assert!(decide_node(&n, None, &[], at(10), &short).conditions.is_some());
}

#[test]
fn a_node_that_never_posted_status_gets_never_updated_conditions() {
    let n = node(None, json!([]));
    let plan = decide_node(&n, None, &[], at(20), &config());
    assert!(plan.is_empty());
    assert_eq!(plan.next_deadline, Some(at(40)), "counted from creation");
    let plan = decide_node(&n, None, &[], at(41), &config());
    let conditions = plan.conditions.expect("conditions");
    assert_eq!(conditions.len(), 4);
    assert!(conditions.iter().all(|c| c.status == "Unknown"
        && c.reason.as_deref() == Some(NODE_STATUS_NEVER_UPDATED)
        && c.last_heartbeat_time == Some(time(0))));
    assert!(!plan.became_unknown, "it was never ready");
    assert_eq!(keys(&plan.add_taints), [TAINT_UNREACHABLE]);
}

#[test]
fn a_node_reporting_not_ready_gets_the_not_ready_taint() {
    // Fresh heartbeat, Ready=False, and a stale unreachable taint from an earlier silence.
    let n = node(Some(("False", 55)), unreachable_taint(10));
    let plan = decide_node(&n, Some(&lease(55)), &[], at(60), &config());
    assert_eq!(plan.conditions, None, "the node's own report stands");
    assert_eq!(plan.add_taints, vec![no_execute_taint(TAINT_NOT_READY, &time(60))]);
    assert_eq!(keys(&plan.remove_taints), [TAINT_UNREACHABLE]);
    let after = plan.taints_after(n.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]));
    assert_eq!(keys(&after), [TAINT_NOT_READY]);
}

#[test]
fn recovery_removes_the_taints() {
    let taints = json!([
        {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": time(10)},
        {"key": TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": time(5)},
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
    ]);
    let n = node(Some(("True", 100)), taints);
    let plan = decide_node(&n, Some(&lease(100)), &[], at(100), &config());
    assert_eq!(keys(&plan.remove_taints), [TAINT_NOT_READY, TAINT_UNREACHABLE]);
    assert!(plan.add_taints.is_empty());
    let after = plan.taints_after(n.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]));
    assert_eq!(keys(&after), ["dedicated"], "other taints stay");
}

#[test]
fn a_renewed_lease_alone_does_not_make_an_unknown_node_ready() {
    // The controller set Ready=Unknown; the lease is fresh again but the node has not posted
    // Ready=True yet: the taint stays until it does (the controller never sets Ready=True).
    let mut n = node(Some(("True", 0)), unreachable_taint(40));
    let unknown = unknown_conditions(&n, &time(40)).expect("unknown");
    n.status.as_mut().expect("status").conditions = Some(unknown);
    let plan = decide_node(&n, Some(&lease(100)), &[], at(100), &config());
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.next_deadline, Some(at(140)));
}

#[test]
fn pods_of_a_node_that_is_not_ready_are_marked_not_ready() {
    let n = node(Some(("True", 0)), json!([]));
    let ready = pod("ready", Some("True"), json!([]));
    let unready = pod("unready", Some("False"), json!([]));
    let no_condition = pod("new", None, json!([]));
    let mut deleting = pod("deleting", Some("True"), json!([]));
    deleting.metadata.deletion_timestamp = Some(time(30));
    let pods = [&ready, &unready, &no_condition, &deleting];
    let healthy = decide_node(&n, Some(&lease(20)), &pods, at(30), &config());
    assert!(healthy.mark_not_ready.is_empty());
    let plan = decide_node(&n, Some(&lease(0)), &pods, at(45), &config());
    assert_eq!(names(&plan.mark_not_ready), ["ready"]);
    assert!(plan.evict.is_empty(), "default tolerations keep them for 300 s");
    assert_eq!(plan.mark_not_ready[0].uid.as_deref(), Some("ready-uid"));
}

#[test]
fn untolerated_no_execute_taints_evict_at_once() {
    let taints = json!([{"key": "dedicated", "value": "db", "effect": "NoExecute", "timeAdded": time(10)}]);
    let n = node(Some(("True", 20)), taints);
    let plain = pod("plain", Some("True"), json!([]));
    let tolerant = pod(
        "tolerant",
        Some("True"),
        json!([{"key": "dedicated", "operator": "Equal",
        "value": "db", "effect": "NoExecute"}]),
    );
    let wrong_value = pod(
        "wrong-value",
        Some("True"),
        json!([{"key": "dedicated", "value": "web",
        "effect": "NoExecute"}]),
    );
    let plan = decide_node(&n, Some(&lease(20)), &[&plain, &tolerant, &wrong_value], at(20), &config());
    assert_eq!(names(&plan.evict), ["plain", "wrong-value"]);
    assert!(plan.mark_not_ready.is_empty(), "the node is ready");
    assert_eq!(plan.next_deadline, Some(at(60)), "only the heartbeat; the tolerant pod stays forever");
}

#[test]
fn toleration_seconds_count_from_the_taint_time_added() {
    let n = node(Some(("Unknown", 0)), unreachable_taint(40));
    let brief = pod(
        "brief",
        Some("False"),
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists",
        "effect": "NoExecute", "tolerationSeconds": 30}]),
    );
    let forever = pod(
        "forever",
        Some("False"),
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists",
        "effect": "NoExecute"}]),
    );
    let zero = pod(
        "zero",
        Some("False"),
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists",
        "effect": "NoExecute", "tolerationSeconds": 0}]),
    );
    let pods = [&brief, &forever, &zero];
    let plan = decide_node(&n, Some(&lease(0)), &pods, at(69), &config());
    assert_eq!(names(&plan.evict), ["zero"], "zero seconds or less: at once");
    assert_eq!(plan.next_deadline, Some(at(70)), "40 + 30");
    assert_eq!(plan.requeue_after(at(69)), Some(Duration::from_secs(1)));
    let plan = decide_node(&n, Some(&lease(0)), &pods, at(70), &config());
    assert_eq!(names(&plan.evict), ["brief", "zero"]);
    assert_eq!(plan.next_deadline, None, "the rest tolerate forever");
}

#[test]
fn pods_without_their_own_toleration_get_the_default_300_seconds() {
    let n = node(Some(("Unknown", 0)), unreachable_taint(40));
    let plain = pod("plain", Some("False"), json!([]));
    // Tolerates everything (empty key, Exists): no default is added, so it stays forever.
    let everything = pod("everything", Some("False"), json!([{"operator": "Exists"}]));
    // Tolerates only not-ready: the unreachable default still applies.
    let other = pod(
        "other",
        Some("False"),
        json!([{"key": TAINT_NOT_READY, "operator": "Exists",
        "effect": "NoExecute", "tolerationSeconds": 5}]),
    );
    let pods = [&plain, &everything, &other];
    let plan = decide_node(&n, Some(&lease(0)), &pods, at(339), &config());
    assert!(plan.evict.is_empty());
    assert_eq!(plan.next_deadline, Some(at(340)));
    let plan = decide_node(&n, Some(&lease(0)), &pods, at(340), &config());
    assert_eq!(names(&plan.evict), ["other", "plain"]);
    let tolerations = effective_tolerations(&plain, &config());
    assert_eq!(tolerations.len(), 2);
    assert!(
        tolerations
            .iter()
            .all(|t| t.toleration_seconds == Some(300) && t.operator.as_deref() == Some("Exists"))
    );
    // The default is configurable.
    let quick = NodeLifecycleConfig { default_unreachable_toleration_seconds: 10, ..config() };
    assert_eq!(eviction_time(&plain, &unreachable_taint_list(40), at(41), &quick), Some(at(50)));
}

fn unreachable_taint_list(added: i64) -> Vec<Taint> {
    serde_json::from_value(unreachable_taint(added)).expect("taints")
}

#[test]
fn the_earliest_of_several_taints_and_tolerations_wins() {
    let taints = json!([
        {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": time(40)},
        {"key": "maintenance", "effect": "NoExecute", "timeAdded": time(50)},
    ]);
    let n = node(Some(("Unknown", 0)), taints);
    let p = pod(
        "p",
        Some("False"),
        json!([
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 100},
            {"key": "maintenance", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        ]),
    );
    let plan = decide_node(&n, Some(&lease(0)), &[&p], at(60), &config());
    assert_eq!(plan.next_deadline, Some(at(110)), "maintenance: 50 + 60 before unreachable: 40 + 100");
}

#[test]
fn the_next_deadline_is_the_earlier_of_heartbeat_and_toleration() {
    let taints = json!([{"key": "maintenance", "effect": "NoExecute", "timeAdded": time(0)}]);
    let n = node(Some(("True", 0)), taints);
    let p = pod(
        "p",
        Some("True"),
        json!([{"key": "maintenance", "operator": "Exists",
        "tolerationSeconds": 90}]),
    );
    // Heartbeat at 80 expires at 120; the toleration at 90.
    let plan = decide_node(&n, Some(&lease(80)), &[&p], at(85), &config());
    assert!(plan.is_empty());
    assert_eq!(plan.next_deadline, Some(at(90)));
    // Heartbeat at 30 expires at 70, before the toleration.
    let plan = decide_node(&n, Some(&lease(30)), &[&p], at(40), &config());
    assert_eq!(plan.next_deadline, Some(at(70)));
}

#[test]
fn a_no_execute_taint_without_time_added_is_stamped() {
    let n = node(Some(("True", 0)), json!([{"key": "maintenance", "effect": "NoExecute"}]));
    let p = pod(
        "p",
        Some("True"),
        json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": 30}]),
    );
    let plan = decide_node(&n, Some(&lease(0)), &[&p], at(10), &config());
    assert_eq!(keys(&plan.remove_taints), ["maintenance"]);
    assert_eq!(plan.add_taints.len(), 1);
    assert_eq!(plan.add_taints[0].time_added, Some(time(10)));
    assert_eq!(plan.next_deadline, Some(at(40)), "counted from the stamp: 10 + 30");
}

#[test]
fn pods_being_deleted_are_not_evicted_again() {
    let n = node(Some(("Unknown", 0)), unreachable_taint(40));
    let mut p = pod(
        "p",
        Some("False"),
        json!([{"key": TAINT_UNREACHABLE, "operator": "Exists",
        "effect": "NoExecute", "tolerationSeconds": 0}]),
    );
    p.metadata.deletion_timestamp = Some(time(41));
    let plan = decide_node(&n, Some(&lease(0)), &[&p], at(50), &config());
    assert!(plan.evict.is_empty() && plan.mark_not_ready.is_empty(), "{plan:?}");
}

#[test]
fn triggers_map_leases_and_pods_to_their_node() {
    use std::sync::Arc;
    let l = Arc::new(lease(0));
    assert_eq!(lease_triggers(&crate::controller::Change::Deleted(l)), vec![ObjectKey::cluster("n1")]);
    let mut elsewhere = lease(0);
    elsewhere.metadata.namespace = Some("default".into());
    assert!(
        lease_triggers(&crate::controller::Change::Applied { old: None, new: Arc::new(elsewhere) })
            .is_empty()
    );
    let p = Arc::new(pod("p", None, json!([])));
    assert_eq!(
        pod_triggers(&crate::controller::Change::Applied { old: None, new: p }),
        vec![ObjectKey::cluster("n1")]
    );
    let mut unbound = pod("q", None, json!([]));
    unbound.spec.as_mut().expect("spec").node_name = None;
    assert!(pod_triggers(&crate::controller::Change::Deleted(Arc::new(unbound))).is_empty());
}
