//! The pod garbage collector's decision, rule by rule.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

fn at(s: i64) -> Timestamp {
    let epoch: Timestamp = "2026-01-01T00:00:00Z".parse().expect("epoch");
    epoch.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).expect("in range")
}

fn time(s: i64) -> Time {
    Time(at(s))
}

/// A pod created at `created`, bound to `node`, in `phase`.
fn pod(name: &str, created: i64, node: Option<&str>, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
            "creationTimestamp": time(created)},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase},
    }))
    .expect("pod")
}

fn node(name: &str, ready: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }))
    .expect("node")
}

fn config(threshold: usize) -> PodGcConfig {
    PodGcConfig { terminated_pod_threshold: threshold, ..PodGcConfig::default() }
}

fn names(ds: &[Deletion]) -> Vec<&str> {
    ds.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn finished_pods_beyond_the_threshold_go_oldest_first() {
    let n1 = node("n1", "True", json!([]));
    let mut evicted = pod("evicted", 50, Some("n1"), "Failed");
    evicted.status.as_mut().expect("status").reason = Some("Evicted".into());
    let pods = [
        pod("c", 30, Some("n1"), "Succeeded"),
        pod("a", 10, Some("n1"), "Failed"),
        pod("running", 0, Some("n1"), "Running"),
        pod("b", 20, Some("n1"), "Succeeded"),
        pod("d", 40, Some("n1"), "Failed"),
        pod("b2", 20, Some("n1"), "Succeeded"),
        evicted,
    ];
    let pods: Vec<&Pod> = pods.iter().collect();
    let q = Quarantine::new(DEFAULT_QUARANTINE);
    // Six finished, keep three: the evicted one first, then the oldest (ties by name).
    let ds = decide(&pods, &[&n1], at(100), &q, &config(3));
    assert_eq!(names(&ds), ["evicted", "a", "b"]);
    assert!(ds.iter().all(|d| d.reason == GcReason::Terminated && !d.mark_failed && d.condition.is_none()));
    assert_eq!(ds[1].uid.as_deref(), Some("a-uid"));
    // At or under the threshold, or with the threshold off: none.
    assert!(decide(&pods, &[&n1], at(100), &q, &config(6)).is_empty());
    assert!(decide(&pods, &[&n1], at(100), &q, &config(0)).is_empty());
    assert_eq!(names(&decide(&pods, &[&n1], at(100), &q, &config(5))), ["evicted"]);
}

#[test]
fn orphans_wait_out_the_quarantine() {
    let n1 = node("n1", "True", json!([]));
    let here = pod("here", 0, Some("n1"), "Running");
    let orphan = pod("orphan", 0, Some("gone"), "Running");
    let finished_orphan = pod("finished", 0, Some("gone"), "Succeeded");
    let pods = [&here, &orphan, &finished_orphan];
    let cfg = config(DEFAULT_TERMINATED_POD_THRESHOLD);
    let mut q = Quarantine::new(Duration::from_secs(40));
    q.observe(&pods, &[&n1], at(100));
    assert_eq!(q.missing_since("gone"), Some(at(100)));
    assert_eq!(q.missing_since("n1"), None);
    // Seen again later: the first sighting counts.
    q.observe(&pods, &[&n1], at(120));
    assert!(decide(&pods, &[&n1], at(139), &q, &cfg).is_empty(), "still in quarantine");
    let ds = decide(&pods, &[&n1], at(140), &q, &cfg);
    assert_eq!(names(&ds), ["finished", "orphan"]);
    assert!(ds.iter().all(|d| d.reason == GcReason::Orphaned { node: "gone".into() }));
    assert_eq!(ds[0].missing_node(), Some("gone"));
    let running = &ds[1];
    assert!(running.mark_failed, "a running orphan is set Failed first");
    let c = running.condition.as_ref().expect("condition");
    assert_eq!((c.type_.as_str(), c.status.as_str()), ("DisruptionTarget", "True"));
    assert_eq!(c.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(c.message.as_deref(), Some("PodGC: node no longer exists"));
    assert!(!ds[0].mark_failed, "a finished one keeps its phase");
}

#[test]
fn a_node_that_shows_up_leaves_the_quarantine() {
    let orphan = pod("orphan", 0, Some("late"), "Running");
    let pods = [&orphan];
    let cfg = config(DEFAULT_TERMINATED_POD_THRESHOLD);
    let mut q = Quarantine::new(Duration::from_secs(40));
    q.observe(&pods, &[], at(0));
    let late = node("late", "True", json!([]));
    q.observe(&pods, &[&late], at(10));
    assert_eq!(q.missing_since("late"), None);
    assert!(decide(&pods, &[&late], at(100), &q, &cfg).is_empty());
    // Missing again: the quarantine starts over.
    q.observe(&pods, &[], at(100));
    assert!(decide(&pods, &[], at(139), &q, &cfg).is_empty());
    assert_eq!(names(&decide(&pods, &[], at(140), &q, &cfg)), ["orphan"]);
    // Released by the runner (its GET found the node): starts over as well.
    q.release("late");
    assert!(decide(&pods, &[], at(140), &q, &cfg).is_empty());
    // No pod on it any more: forgotten.
    q.observe(&pods, &[], at(150));
    q.observe(&[], &[], at(160));
    assert_eq!(q.missing_since("late"), None);
}

#[test]
fn unscheduled_terminating_pods_are_deleted() {
    let n1 = node("n1", "True", json!([]));
    let mut unscheduled = pod("unscheduled", 0, None, "Pending");
    unscheduled.metadata.deletion_timestamp = Some(time(5));
    let mut scheduled = pod("scheduled", 0, Some("n1"), "Running");
    scheduled.metadata.deletion_timestamp = Some(time(5));
    let pending = pod("pending", 0, None, "Pending");
    let q = Quarantine::new(DEFAULT_QUARANTINE);
    let ds = decide(&[&unscheduled, &scheduled, &pending], &[&n1], at(10), &q, &config(10));
    assert_eq!(names(&ds), ["unscheduled"]);
    assert_eq!(ds[0].reason, GcReason::UnscheduledTerminating);
    assert!(ds[0].mark_failed);
    assert!(ds[0].condition.is_none());
}

#[test]
fn terminating_pods_on_out_of_service_nodes_are_deleted() {
    let oos = json!([{"key": TAINT_OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]);
    let down = node("down", "Unknown", oos.clone());
    let up = node("up", "True", oos);
    let mut on_down = pod("on-down", 0, Some("down"), "Running");
    on_down.metadata.deletion_timestamp = Some(time(5));
    let mut on_up = pod("on-up", 0, Some("up"), "Running");
    on_up.metadata.deletion_timestamp = Some(time(5));
    let running_on_down = pod("running", 0, Some("down"), "Running");
    let q = Quarantine::new(DEFAULT_QUARANTINE);
    let ds = decide(&[&on_down, &on_up, &running_on_down], &[&down, &up], at(10), &q, &config(10));
    assert_eq!(names(&ds), ["on-down"]);
    assert_eq!(ds[0].reason, GcReason::TerminatingOutOfService { node: "down".into() });
}

#[test]
fn a_pod_matching_several_rules_is_deleted_once() {
    // Both finished, both on a missing node, one over the threshold of one.
    let old = pod("old", 0, Some("gone"), "Failed");
    let new = pod("new", 1, Some("gone"), "Failed");
    let mut q = Quarantine::new(Duration::ZERO);
    q.observe(&[&old, &new], &[], at(0));
    let ds = decide(&[&old, &new], &[], at(0), &q, &config(1));
    assert_eq!(names(&ds), ["old", "new"]);
    assert_eq!(ds[0].reason, GcReason::Terminated, "the first rule wins");
    assert_eq!(ds[1].reason, GcReason::Orphaned { node: "gone".into() });
    // Not quarantined: only the one over the threshold.
    let ds = decide(&[&old, &new], &[], at(0), &Quarantine::new(Duration::ZERO), &config(1));
    assert_eq!(names(&ds), ["old"]);
}
