//! The cache from watch events: assumed pods, confirmation, rollback and expiry.

use super::*;
use crate::scheduler::runtime::cluster_event::ClusterEvent::*;
use crate::scheduler::testing::{node, pod};

const TTL: Duration = Duration::from_secs(30);

fn n(name: &str, cpu: &str) -> Node {
    (*node(name).capacity(cpu, "8Gi", "110").build()).clone()
}

fn p(name: &str, cpu: &str, on: Option<&str>) -> Pod {
    let mut b = pod(name).container(&[("cpu", cpu)]);
    if let Some(node) = on {
        b = b.on(node);
    }
    let mut pod = b.build();
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod
}

/// Milli-cpu requested on each node, by name.
fn cpu(cache: &mut SchedulerCache) -> Vec<(String, i64)> {
    let snapshot = cache.snapshot().expect("snapshot");
    snapshot.nodes().iter().map(|n| (n.name().to_string(), n.requested().get("cpu"))).collect()
}

fn listed(nodes: &[Node], pods: &[Pod]) -> SchedulerCache {
    let mut c = SchedulerCache::new(TTL);
    c.apply_node(&WatcherEvent::Init);
    for node in nodes {
        c.apply_node(&WatcherEvent::InitApply(node.clone()));
    }
    assert!(!c.is_ready(), "pods not listed yet");
    c.apply_node(&WatcherEvent::InitDone);
    c.apply_pod(&WatcherEvent::Init);
    for pod in pods {
        c.apply_pod(&WatcherEvent::InitApply(pod.clone()));
    }
    c.apply_pod(&WatcherEvent::InitDone);
    assert!(!c.is_ready(), "storage not listed yet");
    super::volume_tests::list_no_storage(&mut c);
    assert!(c.is_ready());
    c
}

fn s(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn lists_build_the_snapshot() {
    let mut c = listed(&[n("a", "4"), n("b", "4")], &[p("x", "1", Some("a")), p("y", "500m", Some("b"))]);
    assert_eq!(cpu(&mut c), s(&[("a", 1000), ("b", 500)]));
    assert_eq!((c.node_count(), c.pod_count(), c.assumed_count()), (2, 2, 0));
}

#[test]
fn an_assumed_pod_counts_at_once_and_once_confirmed() {
    let mut c = listed(&[n("a", "4"), n("b", "4")], &[]);
    let x = p("x", "1", None);
    c.assume(&x, "a").expect("assumed");
    assert_eq!(cpu(&mut c), s(&[("a", 1000), ("b", 0)]));
    assert_eq!(c.placement("default/x").map(|p| (p.node, p.assumed)), Some(("a".into(), true)));
    assert!(matches!(c.assume(&x, "b"), Err(Error::AlreadyInCache { .. })), "never twice");
    assert!(matches!(c.assume(&p("z", "1", None), "gone"), Err(Error::NodeNotInCache { .. })));

    let events = c.apply_pod(&WatcherEvent::Apply(p("x", "1", Some("a"))));
    assert_eq!(events, [AssignedPodAdded]);
    assert_eq!(cpu(&mut c), s(&[("a", 1000), ("b", 0)]), "confirmed, not counted twice");
    assert_eq!(c.assumed_count(), 0);
    assert!(c.forget(&x, "a").is_empty(), "a confirmed pod is never forgotten");
    assert_eq!(cpu(&mut c), s(&[("a", 1000), ("b", 0)]));
}

#[test]
fn a_failed_bind_rolls_the_assumption_back() {
    let mut c = listed(&[n("a", "4")], &[]);
    let x = p("x", "2", None);
    c.assume(&x, "a").expect("assumed");
    assert!(c.forget(&x, "b").is_empty(), "not assumed there");
    assert_eq!(c.forget(&x, "a"), [AssignedPodDeleted]);
    assert_eq!(cpu(&mut c), s(&[("a", 0)]));
    assert_eq!(c.placement("default/x"), None);
    c.assume(&x, "a").expect("can be assumed again");
}

#[test]
fn a_pod_bound_elsewhere_than_assumed_moves_there() {
    // Someone else bound the pod to b while this scheduler assumed it on a.
    let mut c = listed(&[n("a", "4"), n("b", "4")], &[]);
    let x = p("x", "3", None);
    c.assume(&x, "a").expect("assumed");
    let events = c.apply_pod(&WatcherEvent::Apply(p("x", "3", Some("b"))));
    assert_eq!(events, [AssignedPodDeleted, AssignedPodAdded]);
    assert_eq!(cpu(&mut c), s(&[("a", 0), ("b", 3000)]));
    // Our bind then fails with a conflict: forgetting it must not touch b.
    assert!(c.forget(&x, "a").is_empty());
    assert_eq!(cpu(&mut c), s(&[("a", 0), ("b", 3000)]));

    // The same when the conflict is reported before the watch shows the pod.
    let y = p("y", "1", None);
    c.assume(&y, "a").expect("assumed");
    assert_eq!(c.forget(&y, "a"), [AssignedPodDeleted]);
    assert_eq!(c.apply_pod(&WatcherEvent::Apply(p("y", "1", Some("b")))), [AssignedPodAdded]);
    assert_eq!(cpu(&mut c), s(&[("a", 0), ("b", 4000)]));
}

#[test]
fn an_unconfirmed_binding_expires() {
    let t0 = Instant::now();
    let mut c = listed(&[n("a", "4")], &[]);
    let (x, y) = (p("x", "1", None), p("y", "1", None));
    c.assume(&x, "a").expect("assumed");
    c.assume(&y, "a").expect("assumed");
    assert_eq!(c.next_expiry(), None, "no expiry while the bind runs");
    c.finish_binding(&x, t0);
    c.finish_binding(&y, t0);
    assert_eq!(c.next_expiry(), Some(t0 + TTL));
    c.apply_pod(&WatcherEvent::Apply(p("y", "1", Some("a"))));
    assert!(c.cleanup_expired(t0 + TTL - Duration::from_millis(1)).is_empty());
    assert_eq!(c.cleanup_expired(t0 + TTL), [AssignedPodDeleted]);
    assert_eq!(cpu(&mut c), s(&[("a", 1000)]), "y was confirmed and stays");
    assert_eq!(c.next_expiry(), None);
}

#[test]
fn deleted_and_finished_pods_free_their_node() {
    let mut c = listed(&[n("a", "4")], &[p("x", "1", Some("a")), p("y", "2", Some("a"))]);
    assert_eq!(c.apply_pod(&WatcherEvent::Delete(p("x", "1", Some("a")))), [AssignedPodDeleted]);
    let mut done = p("y", "2", Some("a"));
    done.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
    assert_eq!(c.apply_pod(&WatcherEvent::Apply(done)), [AssignedPodDeleted]);
    assert_eq!(cpu(&mut c), s(&[("a", 0)]));
    // A late delete of an older pod of the same name leaves the newer one.
    c.apply_pod(&WatcherEvent::Apply(p("x", "1", Some("a"))));
    let mut old = p("x", "1", Some("a"));
    old.metadata.uid = Some("older".into());
    assert!(c.apply_pod(&WatcherEvent::Delete(old)).is_empty());
    assert_eq!(cpu(&mut c), s(&[("a", 1000)]));
}

#[test]
fn pod_updates_report_only_what_plugins_read() {
    let mut c = listed(&[n("a", "4")], &[p("x", "1", Some("a"))]);
    let mut running = p("x", "1", Some("a"));
    running.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    assert!(c.apply_pod(&WatcherEvent::Apply(running.clone())).is_empty());
    running.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    assert_eq!(c.apply_pod(&WatcherEvent::Apply(running)), [AssignedPodChanged]);
}

#[test]
fn node_changes_mark_the_snapshot_stale_only_when_plugins_care() {
    let mut c = listed(&[n("a", "4")], &[p("x", "1", Some("a"))]);
    assert_eq!(cpu(&mut c), s(&[("a", 1000)]));
    let mut heartbeat = n("a", "4");
    heartbeat.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    assert!(c.apply_node(&WatcherEvent::Apply(heartbeat)).is_empty());
    assert!(!c.dirty);
    let cases: Vec<(Node, Vec<ClusterEvent>)> = vec![
        (
            (*node("a").capacity("4", "8Gi", "110").label("zone", "z1").build()).clone(),
            vec![NodeLabelsChanged],
        ),
        (
            (*node("a").capacity("4", "8Gi", "110").label("zone", "z1").unschedulable().build()).clone(),
            vec![NodeTaintsChanged],
        ),
        (
            (*node("a").capacity("8", "8Gi", "110").label("zone", "z1").unschedulable().build()).clone(),
            vec![NodeAllocatableChanged],
        ),
    ];
    for (node, want) in cases {
        assert_eq!(c.apply_node(&WatcherEvent::Apply(node)), want);
        assert!(c.dirty);
        assert_eq!(cpu(&mut c), s(&[("a", 1000)]), "rebuilt with the pods");
    }
    let snapshot = c.snapshot().expect("snapshot");
    assert_eq!(snapshot.node("a").map(|n| n.allocatable().get("cpu")), Some(8000));
}

#[test]
fn nodes_come_and_go_with_their_pods() {
    // A pod seen before its node counts once the node appears.
    let mut c = listed(&[], &[p("x", "1", Some("late"))]);
    assert_eq!(cpu(&mut c), s(&[]));
    assert_eq!(c.apply_node(&WatcherEvent::Apply(n("late", "4"))), [NodeAdded]);
    assert_eq!(cpu(&mut c), s(&[("late", 1000)]));
    assert_eq!(c.apply_node(&WatcherEvent::Delete(n("late", "4"))), [NodeDeleted]);
    assert_eq!(cpu(&mut c), s(&[]));
    let mut bad = n("bad", "4");
    if let Some(a) = bad.status.as_mut().and_then(|s| s.allocatable.as_mut()) {
        a.insert("cpu".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()));
    }
    assert!(c.apply_node(&WatcherEvent::Apply(bad)).is_empty(), "an unreadable node is left out");
    assert_eq!(c.node_count(), 0);
}

#[test]
fn a_relist_drops_what_vanished_but_keeps_assumed_pods() {
    let mut c = listed(&[n("a", "4"), n("b", "4")], &[p("x", "1", Some("a")), p("y", "1", Some("b"))]);
    c.assume(&p("z", "1", None), "a").expect("assumed");
    c.apply_node(&WatcherEvent::Init);
    c.apply_node(&WatcherEvent::InitApply(n("a", "4")));
    assert_eq!(c.apply_node(&WatcherEvent::InitDone), [NodeDeleted]);
    c.apply_pod(&WatcherEvent::Init);
    c.apply_pod(&WatcherEvent::InitApply(p("x", "1", Some("a"))));
    assert_eq!(c.apply_pod(&WatcherEvent::InitDone), [AssignedPodDeleted]);
    assert_eq!(cpu(&mut c), s(&[("a", 2000)]), "x and the assumed z");
    assert_eq!(c.placement("default/z").map(|p| p.assumed), Some(true));
}
