//! Table tests of the queue with explicit instants.

use std::collections::BTreeMap;

use super::*;
use crate::scheduler::runtime::cluster_event::ClusterEvent::*;

const S: Duration = Duration::from_secs(1);

fn pod(name: &str, priority: i32) -> Arc<Pod> {
    pod_uid(name, priority, &format!("uid-{name}"))
}

fn pod_uid(name: &str, priority: i32, uid: &str) -> Arc<Pod> {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("ns".into());
    p.metadata.uid = Some(uid.into());
    p.spec = Some(k8s_openapi::api::core::v1::PodSpec { priority: Some(priority), ..Default::default() });
    Arc::new(p)
}

fn key(name: &str) -> String {
    format!("ns/{name}")
}

fn fit() -> BTreeSet<&'static str> {
    BTreeSet::from(["NodeResourcesFit"])
}

fn drain(q: &mut SchedulingQueue) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(p) = q.pop() {
        out.push(p.pod.metadata.name.clone().unwrap_or_default());
        q.done(&p, Instant::now());
    }
    out
}

#[test]
fn active_queue_orders_by_priority_then_age() {
    let t0 = Instant::now();
    // (name, priority, added at t0 + seconds), expected pop order.
    type Adds = &'static [(&'static str, i32, u32)];
    let cases: &[(Adds, &[&str])] = &[
        (&[("a", 0, 0), ("b", 0, 1), ("c", 0, 2)], &["a", "b", "c"]),
        (&[("low", 0, 0), ("high", 100, 5), ("mid", 10, 1)], &["high", "mid", "low"]),
        (&[("neg", -5, 0), ("none", 0, 9)], &["none", "neg"]),
        (&[("b", 1, 3), ("a", 1, 3), ("c", 1, 3)], &["b", "a", "c"]),
        (&[("late", 7, 9), ("early", 7, 2), ("top", 8, 20)], &["top", "early", "late"]),
    ];
    for (adds, want) in cases {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        for (name, prio, at) in adds.iter() {
            q.add(pod(name, *prio), t0 + S * *at);
        }
        assert_eq!(drain(&mut q), *want, "{adds:?}");
    }
}

#[test]
fn backoff_doubles_from_one_second_to_ten() {
    let c = QueueConfig::default();
    let got: Vec<u64> = (1..=7).map(|a| c.backoff(a).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 10, 10, 10]);
    assert_eq!(c.backoff(u32::MAX), 10 * S, "no overflow");
    let small = QueueConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(25),
        ..c
    };
    assert_eq!(small.backoff(2), Duration::from_millis(20));
    assert_eq!(small.backoff(3), Duration::from_millis(25));
}

#[test]
fn a_failed_pod_waits_out_its_backoff() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    // (failed at, attempt's backoff)
    let mut at = t0;
    for (attempt, backoff) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10)] {
        let p = q.pop().expect("active");
        assert_eq!(p.attempts, attempt);
        q.requeue_backoff(p, at);
        let expiry = at + backoff * S;
        assert_eq!(q.place(&key("p")), Some(Place::Backoff(expiry)), "attempt {attempt}");
        assert_eq!(q.next_deadline(), Some(expiry));
        q.tick(expiry - Duration::from_millis(1));
        assert!(!q.has_active(), "attempt {attempt}: still backing off");
        q.tick(expiry);
        assert_eq!(q.place(&key("p")), Some(Place::Active), "attempt {attempt}: expired");
        assert_eq!(q.next_deadline(), None);
        at = expiry + 3 * S;
    }
}

#[test]
fn backoff_expiries_release_pods_in_order() {
    // Late enough that t0 - 5 s exists.
    let t0 = Instant::now() + 60 * S;
    let mut q = SchedulingQueue::new(QueueConfig::default());
    for name in ["a", "b", "c"] {
        q.add(pod(name, 0), t0);
    }
    // a fails at t0+2 (1 s backoff), b at t0 (1 s), c twice (2 s from t0+1): a and c come
    // back together, c first as it failed earlier.
    let [a, b, c] = [q.pop(), q.pop(), q.pop()].map(|p| p.expect("three pods"));
    q.requeue_backoff(a, t0 + 2 * S);
    q.requeue_backoff(b, t0);
    let c_again = {
        q.requeue_backoff(c, t0 - 5 * S);
        q.tick(t0);
        assert_eq!(q.counts().active, 1, "c's first backoff expired");
        q.pop().expect("c")
    };
    q.requeue_backoff(c_again, t0 + S);
    let at = |secs: u32, q: &mut SchedulingQueue| {
        q.tick(t0 + S * secs);
        drain(q)
    };
    assert_eq!(at(1, &mut q), ["b"]);
    assert_eq!(at(2, &mut q), Vec::<String>::new());
    assert_eq!(at(3, &mut q), ["c", "a"]);
}

#[test]
fn unschedulable_pods_move_on_events_that_could_help_them() {
    let t0 = Instant::now();
    // (plugins that rejected the pod, event, seconds after the failure, where the pod goes)
    let (fit, affinity, none) = (fit(), BTreeSet::from(["NodeAffinity"]), BTreeSet::new());
    let cases: Vec<(&BTreeSet<&'static str>, ClusterEvent, u32, Place)> = vec![
        (&fit, NodeLabelsChanged, 0, Place::Unschedulable),
        (&fit, AssignedPodAdded, 0, Place::Unschedulable),
        (&fit, NodeAdded, 0, Place::Backoff(t0 + S)),
        (&fit, AssignedPodDeleted, 0, Place::Backoff(t0 + S)),
        (&fit, NodeAllocatableChanged, 1, Place::Active),
        (&fit, NodeAdded, 5, Place::Active),
        (&affinity, AssignedPodDeleted, 5, Place::Unschedulable),
        (&affinity, NodeLabelsChanged, 5, Place::Active),
        (&none, AssignedPodChanged, 0, Place::Backoff(t0 + S)),
    ];
    for (plugins, event, after, want) in cases {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("p", 0), t0);
        let p = q.pop().expect("active");
        q.requeue_unschedulable(p, plugins.clone(), t0);
        assert_eq!(q.place(&key("p")), Some(Place::Unschedulable));
        let moved = q.on_event(event, t0 + S * after);
        assert_eq!(q.place(&key("p")), Some(want), "{plugins:?} {event:?} after {after}s");
        assert_eq!(moved, usize::from(want != Place::Unschedulable));
    }
}

#[test]
fn unschedulable_pods_are_flushed_after_five_minutes() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let p = q.pop().expect("active");
    q.requeue_unschedulable(p, fit(), t0);
    assert_eq!(q.next_deadline(), Some(t0 + 300 * S));
    q.tick(t0 + 299 * S);
    assert_eq!(q.place(&key("p")), Some(Place::Unschedulable));
    q.tick(t0 + 300 * S);
    assert_eq!(q.place(&key("p")), Some(Place::Active));
    let p = q.pop().expect("retried");
    assert_eq!((p.attempts, p.timestamp), (2, t0), "history kept");
}

#[test]
fn events_during_the_attempt_send_an_unschedulable_pod_to_backoff() {
    let t0 = Instant::now();
    // (event while in flight, where the pod goes after no node fitted)
    let cases = [
        (None, Place::Unschedulable),
        (Some(NodeTaintsChanged), Place::Unschedulable),
        (Some(NodeAdded), Place::Backoff(t0 + S)),
        (Some(AssignedPodDeleted), Place::Backoff(t0 + S)),
    ];
    for (event, want) in cases {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("p", 0), t0);
        let p = q.pop().expect("active");
        if let Some(e) = event {
            assert_eq!(q.on_event(e, t0), 0);
        }
        q.requeue_unschedulable(p, fit(), t0);
        assert_eq!(q.place(&key("p")), Some(want), "{event:?}");
    }
}

#[test]
fn adding_again_deduplicates_and_replaces() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let mut labelled = (*pod("p", 0)).clone();
    labelled.metadata.labels = Some(BTreeMap::from([("v".into(), "2".into())]));
    q.add(Arc::new(labelled.clone()), t0 + S);
    assert_eq!(q.counts(), QueueCounts { active: 1, ..Default::default() });
    let got = q.get(&key("p")).expect("queued");
    assert_eq!(got.pod.metadata.labels, labelled.metadata.labels, "the update replaced the pod");
    assert_eq!(got.timestamp, t0, "and kept its place");

    // A raised priority reorders the active queue.
    q.add(pod("other", 5), t0 + 2 * S);
    q.add(pod("p", 9), t0 + 3 * S);
    assert_eq!(drain(&mut q), ["p", "other"]);
}

#[test]
fn updates_move_an_unschedulable_pod_only_if_they_could_change_the_verdict() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let p = q.pop().expect("active");
    q.requeue_unschedulable(p, fit(), t0);

    let mut status_only = (*pod("p", 0)).clone();
    status_only.metadata.resource_version = Some("42".into());
    status_only.status = Some(Default::default());
    q.add(Arc::new(status_only.clone()), t0 + S);
    assert_eq!(q.place(&key("p")), Some(Place::Unschedulable), "a status change (our own condition)");
    assert!(q.get(&key("p")).is_some_and(|p| p.pod.metadata.resource_version.as_deref() == Some("42")));

    let mut tolerated = status_only;
    tolerated.spec.get_or_insert_with(Default::default).tolerations = Some(vec![Default::default()]);
    q.add(Arc::new(tolerated), t0 + 5 * S);
    assert_eq!(q.place(&key("p")), Some(Place::Active), "a spec change; backoff over");
}

#[test]
fn deleted_pods_leave_every_queue() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    for name in ["a", "b", "c", "d"] {
        q.add(pod(name, 0), t0);
    }
    let [a, b, c] = [q.pop(), q.pop(), q.pop()].map(|p| p.expect("pods"));
    q.requeue_backoff(a, t0);
    q.requeue_unschedulable(b, fit(), t0);
    // c stays in flight; d is active.
    for name in ["a", "b", "c", "d"] {
        q.delete(&key(name));
    }
    assert_eq!(q.counts(), QueueCounts::default());
    assert_eq!(q.next_deadline(), None);
    q.requeue_backoff(c, t0);
    assert_eq!(q.counts(), QueueCounts::default(), "the outcome of a deleted pod is dropped");
}

#[test]
fn a_pod_updated_in_flight_comes_back_updated() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let p = q.pop().expect("active");
    let mut labelled = (*pod("p", 0)).clone();
    labelled.metadata.labels = Some(BTreeMap::from([("v".into(), "2".into())]));
    q.add(Arc::new(labelled.clone()), t0);
    assert_eq!(q.counts(), QueueCounts { in_flight: 1, ..Default::default() }, "no duplicate");
    q.requeue_unschedulable(p, fit(), t0 + S);
    let back = q.get(&key("p")).expect("back");
    assert_eq!(back.pod.metadata.labels, labelled.metadata.labels);
    assert_eq!((back.timestamp, back.attempts), (t0 + S, 1));
}

#[test]
fn a_pod_created_again_under_the_same_name_is_a_new_pod() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod_uid("p", 0, "one"), t0);
    let old = q.pop().expect("active");
    q.add(pod_uid("p", 0, "two"), t0 + S);
    q.done(&old, t0 + S);
    let new = q.get(&key("p")).expect("the new pod is queued");
    assert_eq!((new.pod.metadata.uid.as_deref(), new.attempts), (Some("two"), 0));

    // Replaced while queued, too.
    let p = q.pop().expect("two");
    q.requeue_unschedulable(p, fit(), t0 + S);
    q.add(pod_uid("p", 0, "three"), t0 + 2 * S);
    assert_eq!(q.place(&key("p")), Some(Place::Active));
    assert_eq!(q.get(&key("p")).map(|p| p.attempts), Some(0));
}

#[test]
fn a_stale_outcome_does_not_touch_a_newer_attempt() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod_uid("p", 0, "one"), t0);
    let old = q.pop().expect("one");
    q.delete(&key("p"));
    q.add(pod_uid("p", 0, "two"), t0);
    let _new = q.pop().expect("two");
    q.done(&old, t0);
    q.requeue_backoff(old, t0);
    assert_eq!(q.place(&key("p")), Some(Place::InFlight), "the newer attempt is still in flight");
    assert_eq!(q.counts(), QueueCounts { in_flight: 1, ..Default::default() });
}

#[test]
fn a_gated_preemptor_waits_for_its_ungating_whatever_the_events() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let p = q.pop().expect("active");
    // Gated in flight: an event that would send it to backoff does not.
    q.gate(&key("p"));
    assert_eq!(q.on_event(AssignedPodDeleted, t0), 0);
    q.requeue_unschedulable(p, fit(), t0);
    assert_eq!(q.place(&key("p")), Some(Place::Unschedulable));
    // Neither events nor updates move it while gated.
    assert_eq!(q.on_event(AssignedPodDeleted, t0 + 2 * S), 0);
    let mut updated = (*pod("p", 0)).clone();
    updated.metadata.labels = Some(BTreeMap::from([("v".into(), "2".into())]));
    q.add(Arc::new(updated), t0 + 2 * S);
    assert_eq!(q.place(&key("p")), Some(Place::Unschedulable));
    // Ungated, the next helpful event moves it as usual.
    q.ungate(&key("p"));
    assert_eq!(q.on_event(AssignedPodDeleted, t0 + 2 * S), 1);
    assert_eq!(q.place(&key("p")), Some(Place::Active));
}

#[test]
fn a_gate_ends_with_its_pod_and_activation_skips_the_backoff() {
    let t0 = Instant::now();
    let mut q = SchedulingQueue::new(QueueConfig::default());
    q.add(pod("p", 0), t0);
    let p = q.pop().expect("active");
    q.gate(&key("p"));
    q.requeue_unschedulable(p, fit(), t0);
    q.activate(&key("p"));
    assert_eq!((q.place(&key("p")), q.is_gated(&key("p"))), (Some(Place::Active), false));
    // Placed or deleted, a gated pod's gate goes with it.
    let p = q.pop().expect("active");
    q.gate(&key("p"));
    q.done(&p, t0);
    assert!(!q.is_gated(&key("p")));
    q.add(pod("p", 0), t0);
    q.gate(&key("p"));
    q.delete(&key("p"));
    assert!(!q.is_gated(&key("p")));
}
