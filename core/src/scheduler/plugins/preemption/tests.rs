//! Table tests of DefaultPreemption, after kube-scheduler's `default_preemption_test.go`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::scheduler::plugins::test_pods::{labeled, spread, term, with_anti_affinity, with_spread};
use crate::scheduler::plugins::{InterPodAffinity, default_profile};
use crate::scheduler::testing::{NodeBuilder, node, pod};
use crate::scheduler::{Error, PreFilterPlugin, Profile};

const NEG: i32 = -100;
const LOW: i32 = 0;
const MID: i32 = 100;
const HIGH: i32 = 1000;
const VERY_HIGH: i32 = 10000;

/// A pod in `default` with a cpu request and a priority, bound to `node` if not empty.
fn p(name: &str, node: &str, cpu: &str, priority: i32) -> Pod {
    let mut b = pod(name).container(&[("cpu", cpu)]);
    if !node.is_empty() {
        b = b.on(node);
    }
    let mut p = b.build();
    p.spec.get_or_insert_with(Default::default).priority = Some(priority);
    p
}

fn status(p: &mut Pod) -> &mut PodStatus {
    p.status.get_or_insert_with(Default::default)
}

/// `p` started `nanos` nanoseconds after the epoch (kube's `epochTime<n>`).
fn started(mut p: Pod, nanos: i64) -> Pod {
    let at = Timestamp::from_nanosecond(i128::from(nanos)).expect("valid timestamp");
    status(&mut p).start_time = Some(Time(at));
    p
}

fn on(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

/// A node with `cpu`, 8Gi of memory and room for `pods` pods.
fn n(name: &str, cpu: &str, pods: &str) -> NodeBuilder {
    node(name).capacity(cpu, "8Gi", pods).label("kubernetes.io/hostname", name)
}

fn build(nodes: Vec<NodeBuilder>) -> Vec<Arc<Node>> {
    nodes.into_iter().map(NodeBuilder::build).collect()
}

/// Schedules `incoming` with `profile`, expects no node to fit, and runs DefaultPreemption.
fn preempt_with(
    profile: Profile,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    incoming: &Pod,
) -> PostFilterOutcome {
    let snapshot = Snapshot::new(nodes, pods).expect("valid snapshot");
    let framework = Framework::new(profile);
    let (state, result) = framework.schedule_cycle(&snapshot, incoming);
    let fit = match result {
        Err(Error::Unschedulable(fit)) => fit,
        other => panic!("expected no node to fit, got {other:?}"),
    };
    DefaultPreemption::default().post_filter(&framework, &state, incoming, &snapshot, &fit)
}

fn preempt(nodes: Vec<Arc<Node>>, pods: Vec<Arc<Pod>>, incoming: &Pod) -> PostFilterOutcome {
    preempt_with(default_profile(), nodes, pods, incoming)
}

/// What a case expects: a node and its victims, most important first, or kube-scheduler's
/// message.
#[derive(Debug)]
enum Want {
    Nominate(&'static str, &'static [&'static str]),
    NotHelped(&'static str),
}

fn check(name: &str, got: PostFilterOutcome, want: &Want) {
    match (got, want) {
        (PostFilterOutcome::Nominate(n), Want::Nominate(node, victims)) => {
            let got: Vec<&str> = n.victims.iter().map(|v| v.metadata.name.as_deref().unwrap_or("")).collect();
            assert_eq!((n.node.as_str(), got.as_slice()), (*node, *victims), "{name}");
        }
        (PostFilterOutcome::NotHelped { message }, Want::NotHelped(want)) => {
            assert_eq!(message, *want, "{name}")
        }
        (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
    }
}

/// A case name, nodes, existing pods, the incoming pod, and what preemption proposes.
type Case = (&'static str, Vec<NodeBuilder>, Vec<Pod>, Pod, Want);

#[test]
fn post_filter_cases() {
    let one_pod = |name: &str| n(name, "4", "1");
    let small = |name: &str| n(name, "200m", "110");
    let mut never = p("p", "", "0", HIGH);
    never.spec.get_or_insert_with(Default::default).preemption_policy = Some("Never".into());
    let cases: Vec<Case> = vec![
        (
            "pod with higher priority can be made schedulable",
            vec![one_pod("node1")],
            vec![p("p1", "node1", "0", LOW)],
            p("p", "", "0", HIGH),
            Want::Nominate("node1", &["p1"]),
        ),
        (
            "pod with tied priority is still unschedulable",
            vec![one_pod("node1")],
            vec![p("p1", "node1", "0", LOW)],
            p("p", "", "0", LOW),
            Want::NotHelped("0/1 nodes are available: 1 No preemption victims found for incoming pod."),
        ),
        (
            "an unresolvable node (node selector mismatch) cannot be helped",
            vec![one_pod("node1")],
            vec![p("p1", "node1", "0", LOW)],
            {
                let mut x = p("p", "", "0", HIGH);
                x.spec.get_or_insert_with(Default::default).node_selector =
                    Some([("disk".to_string(), "ssd".to_string())].into());
                x
            },
            Want::NotHelped("0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
        ),
        (
            "pod can be made schedulable on one node: lower priority only",
            vec![one_pod("node1"), one_pod("node2")],
            vec![p("p1", "node1", "0", HIGH), p("p2", "node2", "0", LOW)],
            p("p", "", "0", MID),
            Want::Nominate("node2", &["p2"]),
        ),
        (
            "preemptionPolicy Never does not preempt",
            vec![one_pod("node1")],
            vec![p("p1", "node1", "0", LOW)],
            never,
            Want::NotHelped("not eligible due to preemptionPolicy=Never."),
        ),
        (
            "not enough cpu even after removing every lower-priority pod",
            vec![small("node1"), small("node2")],
            vec![p("p1", "node1", "100m", LOW), p("p2", "node2", "100m", LOW)],
            p("p", "", "300m", HIGH),
            Want::NotHelped("0/2 nodes are available: 2 Insufficient cpu."),
        ),
        (
            "mixed reasons: no lower-priority pod, not enough cpu",
            vec![one_pod("node1"), small("node2"), one_pod("node3")],
            vec![p("p1", "node1", "0", HIGH), p("p2", "node2", "100m", LOW), p("p3", "node3", "0", HIGH)],
            p("p", "", "300m", HIGH),
            Want::NotHelped(
                "0/3 nodes are available: 1 Insufficient cpu, 2 No preemption victims found for incoming pod.",
            ),
        ),
        (
            "mixed reasons: two unresolvable nodes, two without enough cpu",
            vec![
                small("node1").label("disk", "ssd"),
                small("node2").label("disk", "ssd"),
                small("node3"),
                small("node4"),
            ],
            vec![p("p1", "node1", "100m", LOW), p("p2", "node2", "100m", LOW)],
            {
                let mut x = p("p", "", "300m", HIGH);
                x.spec.get_or_insert_with(Default::default).node_selector =
                    Some([("disk".to_string(), "ssd".to_string())].into());
                x
            },
            Want::NotHelped(
                "0/4 nodes are available: 2 Insufficient cpu, 2 Preemption is not helpful for scheduling.",
            ),
        ),
        (
            "reprieve: the most important pods go back first, and a lower one that still fits stays",
            vec![n("node1", "1", "110")],
            vec![p("a", "node1", "300m", 10), p("b", "node1", "400m", 5), p("c", "node1", "200m", 1)],
            p("p", "", "500m", HIGH),
            Want::Nominate("node1", &["b"]),
        ),
        (
            "reprieve among equal priorities: earliest started first, not started last",
            vec![n("node1", "1", "110")],
            vec![
                started(p("x", "node1", "300m", 5), 2),
                started(p("y", "node1", "300m", 5), 1),
                p("z", "node1", "300m", 5),
            ],
            p("p", "", "500m", HIGH),
            Want::Nominate("node1", &["x", "z"]),
        ),
    ];
    for (name, nodes, pods, incoming, want) in cases {
        check(name, preempt(build(nodes), on(pods), &incoming), &want);
    }
}

/// A case name, pods on node1..node<n> (each node has 500m cpu and the incoming pod asks for
/// all of it, so every pod is a victim), the incoming pod's priority and the node to pick.
type PickCase = (&'static str, Vec<Pod>, i32, &'static str);

#[test]
fn picks_the_node_kube_scheduler_picks() {
    let at = |name: &str, node: &str, cpu: &str, priority: i32, nanos: i64| {
        started(p(name, node, cpu, priority), nanos)
    };
    let cases: Vec<PickCase> = vec![
        (
            "node with min highest priority pod is picked",
            vec![
                at("p1.1", "node1", "200m", MID, 0),
                at("p1.2", "node1", "300m", MID, 0),
                at("p2.1", "node2", "200m", MID, 0),
                at("p2.2", "node2", "200m", LOW, 0),
                at("p3.1", "node3", "200m", LOW, 0),
                at("p3.2", "node3", "200m", LOW, 0),
            ],
            HIGH,
            "node3",
        ),
        (
            "when highest priorities are the same, minimum sum of priorities is picked",
            vec![
                at("p1.1", "node1", "200m", MID, 0),
                at("p1.2", "node1", "300m", MID, 0),
                at("p2.1", "node2", "300m", MID, 0),
                at("p2.2", "node2", "200m", LOW, 0),
                at("p3.1", "node3", "200m", MID, 0),
                at("p3.2", "node3", "200m", MID, 0),
            ],
            HIGH,
            "node2",
        ),
        (
            "when highest priority and sum are the same, minimum number of pods is picked",
            vec![
                at("p1.1", "node1", "100m", MID, 0),
                at("p1.2", "node1", "100m", NEG, 0),
                at("p1.3", "node1", "100m", MID, 0),
                at("p1.4", "node1", "100m", NEG, 0),
                at("p2.1", "node2", "300m", MID, 0),
                at("p2.2", "node2", "200m", NEG, 0),
                at("p3.1", "node3", "200m", MID, 0),
                at("p3.2", "node3", "100m", NEG, 0),
                at("p3.3", "node3", "100m", LOW, 0),
            ],
            HIGH,
            "node2",
        ),
        (
            "sum of adjusted priorities is considered (negative priorities do not make more victims cheaper)",
            vec![
                at("p1.1", "node1", "100m", MID, 0),
                at("p1.2", "node1", "100m", NEG, 0),
                at("p1.3", "node1", "100m", NEG, 0),
                at("p2.1", "node2", "300m", MID, 0),
                at("p2.2", "node2", "200m", NEG, 0),
                at("p3.1", "node3", "200m", MID, 0),
                at("p3.2", "node3", "100m", NEG, 0),
                at("p3.3", "node3", "100m", LOW, 0),
            ],
            HIGH,
            "node2",
        ),
        (
            "non-overlapping lowest high priority, sum priorities, and number of pods",
            vec![
                at("p1.1", "node1", "100m", MID, 0),
                at("p1.2", "node1", "100m", LOW, 0),
                at("p1.3", "node1", "100m", LOW, 0),
                at("p2.1", "node2", "300m", HIGH, 0),
                at("p3.1", "node3", "200m", MID, 0),
                at("p3.2", "node3", "100m", LOW, 0),
                at("p3.3", "node3", "100m", LOW, 0),
                at("p3.4", "node3", "200m", LOW, 0),
                at("p4.1", "node4", "200m", MID, 0),
                at("p4.2", "node4", "100m", MID, 0),
                at("p4.3", "node4", "100m", MID, 0),
                at("p4.4", "node4", "100m", NEG, 0),
            ],
            VERY_HIGH,
            "node1",
        ),
        (
            "same priority, same number of victims, different start time for each node's pods",
            vec![
                at("p1.1", "node1", "200m", MID, 2),
                at("p1.2", "node1", "200m", MID, 2),
                at("p2.1", "node2", "200m", MID, 3),
                at("p2.2", "node2", "200m", MID, 3),
                at("p3.1", "node3", "200m", MID, 1),
                at("p3.2", "node3", "200m", MID, 1),
            ],
            HIGH,
            "node2",
        ),
        (
            "same priority, same number of victims, different start time for all pods",
            vec![
                at("p1.1", "node1", "200m", MID, 4),
                at("p1.2", "node1", "200m", MID, 2),
                at("p2.1", "node2", "200m", MID, 5),
                at("p2.2", "node2", "200m", MID, 1),
                at("p3.1", "node3", "200m", MID, 3),
                at("p3.2", "node3", "200m", MID, 6),
            ],
            HIGH,
            "node3",
        ),
        (
            "different priority, same number of victims, different start time for all pods",
            vec![
                at("p1.1", "node1", "200m", LOW, 4),
                at("p1.2", "node1", "200m", MID, 2),
                at("p2.1", "node2", "200m", MID, 6),
                at("p2.2", "node2", "200m", LOW, 1),
                at("p3.1", "node3", "200m", LOW, 3),
                at("p3.2", "node3", "200m", MID, 5),
            ],
            HIGH,
            "node2",
        ),
    ];
    for (name, pods, priority, want) in cases {
        let count = pods.iter().filter_map(|x| x.spec.as_ref()?.node_name.clone()).max().unwrap_or_default();
        let last: usize = count.trim_start_matches("node").parse().expect("numbered nodes");
        let nodes = (1..=last).map(|i| n(&format!("node{i}"), "500m", "110")).collect();
        match preempt(build(nodes), on(pods), &p("p", "", "500m", priority)) {
            PostFilterOutcome::Nominate(got) => assert_eq!(got.node, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_pod_waits_for_a_terminating_victim_on_its_nominated_node() {
    let nodes = || build(vec![n("node1", "4", "1"), n("node2", "4", "1")]);
    let mut terminating = p("p1", "node1", "0", LOW);
    terminating.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let pods = || on(vec![terminating.clone(), p("p2", "node2", "0", LOW)]);
    let mut nominated = p("p", "", "0", HIGH);
    status(&mut nominated).nominated_node_name = Some("node1".into());
    check(
        "terminating lower-priority pod on the nominated node",
        preempt(nodes(), pods(), &nominated),
        &Want::NotHelped("not eligible due to a terminating pod on the nominated node."),
    );
    // The nominated node is now unresolvable (the pod asks for node2 by selector): preempt again.
    let mut elsewhere = nominated.clone();
    elsewhere.spec.get_or_insert_with(Default::default).node_selector =
        Some([("kubernetes.io/hostname".to_string(), "node2".to_string())].into());
    check(
        "nominated node unresolvable",
        preempt(nodes(), pods(), &elsewhere),
        &Want::Nominate("node2", &["p2"]),
    );
    // Without a nomination the terminating pod is just a victim.
    check(
        "no nomination",
        preempt(build(vec![n("node1", "4", "1")]), on(vec![terminating.clone()]), &p("p", "", "0", HIGH)),
        &Want::Nominate("node1", &["p1"]),
    );
}

#[test]
fn a_victim_whose_removal_resolves_anti_affinity_makes_the_node_a_candidate() {
    let db = |name: &str, node: &str, priority: i32| {
        let mut x = labeled(name, "default", &[("app", "db")]);
        x.spec.get_or_insert_with(Default::default).priority = Some(priority);
        x.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        x
    };
    let nodes = || build(vec![n("node1", "4", "110"), n("node2", "4", "110")]);
    let mut incoming = with_anti_affinity(
        labeled("p", "default", &[("app", "web")]),
        vec![term("kubernetes.io/hostname", &[("app", "db")])],
    );
    incoming.spec.get_or_insert_with(Default::default).priority = Some(MID);
    let pods = on(vec![db("db1", "node1", HIGH), db("db2", "node2", LOW)]);
    check("the pod's anti-affinity", preempt(nodes(), pods, &incoming), &Want::Nominate("node2", &["db2"]));
    // Symmetry: an existing low-priority pod repels the incoming one.
    let repels = |name: &str, node: &str, priority: i32| {
        let mut x = with_anti_affinity(
            db(name, node, priority),
            vec![term("kubernetes.io/hostname", &[("app", "web")])],
        );
        x.metadata.labels = None;
        x
    };
    let pods = on(vec![repels("r1", "node1", LOW), repels("r2", "node2", HIGH)]);
    let mut plain = labeled("p", "default", &[("app", "web")]);
    plain.spec.get_or_insert_with(Default::default).priority = Some(MID);
    check(
        "an existing pod's anti-affinity",
        preempt(nodes(), pods, &plain),
        &Want::Nominate("node1", &["r1"]),
    );
    // Without InterPodAffinity's remove_pod the dry run would still see the conflict.
    let blind = Profile::new("blind")
        .with_pre_filter(Arc::new(Forgetful(InterPodAffinity::default())))
        .with_filter(Arc::new(InterPodAffinity::default()));
    let pods = on(vec![db("db1", "node1", HIGH), db("db2", "node2", LOW)]);
    check(
        "hooks are what resolves it",
        preempt_with(blind, nodes(), pods, &incoming),
        &Want::NotHelped(
            "0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 node(s) didn't match pod anti-affinity rules.",
        ),
    );
}

/// A pre-filter plugin that ignores preemption's add and remove hooks.
struct Forgetful<P>(P);

impl<P: PreFilterPlugin> PreFilterPlugin for Forgetful<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        self.0.pre_filter(state, pod, snapshot)
    }
}

#[test]
fn a_spread_count_drops_with_each_victim() {
    // Zone a holds two matching low-priority pods, zone b is full of high-priority ones.
    let zone = |name: &str, z: &str| n(name, "1", "110").label("zone", z);
    let foo = |name: &str, node: &str, cpu: &str, priority: i32| {
        let mut x = p(name, node, cpu, priority);
        x.metadata.labels = Some([("foo".to_string(), String::new())].into());
        x
    };
    let pods = on(vec![foo("f1", "a1", "0", LOW), foo("f2", "a1", "0", 1), p("big", "b1", "1", HIGH)]);
    let incoming =
        with_spread(foo("p", "", "100m", MID), vec![spread(2, "zone", "DoNotSchedule", &[("foo", "")])]);
    // 2 + 1 - 0 > maxSkew 2 on a1; once both go, one comes back (the higher priority).
    check(
        "one of two matching pods is enough",
        preempt(build(vec![zone("a1", "a"), zone("b1", "b")]), pods, &incoming),
        &Want::Nominate("a1", &["f1"]),
    );
}

/// A pre-filter plugin whose remove hook fails on nodes labelled `error=true`.
struct Failing;

impl PreFilterPlugin for Failing {
    fn name(&self) -> &'static str {
        "test-plugin"
    }

    fn pre_filter(&self, _: &mut CycleState, _: &Pod, _: &Snapshot) -> Status {
        Status::Success
    }

    fn remove_pod(&self, _: &mut CycleState, pod: &Pod, _: &PodInfo, node: &NodeInfo) -> Status {
        if node.labels().get("error").is_some_and(|v| v == "true") {
            return Status::error(format!(
                "failed to remove pod: {}",
                pod.metadata.name.as_deref().unwrap_or("")
            ));
        }
        Status::Success
    }
}

#[test]
fn a_failing_hook_is_an_error_unless_another_node_is_a_candidate() {
    let profile = || default_profile().with_pre_filter(Arc::new(Failing));
    let only = preempt_with(
        profile(),
        build(vec![n("node1", "300m", "110").label("error", "true")]),
        on(vec![p("p1", "node1", "100m", LOW)]),
        &p("p", "", "300m", HIGH),
    );
    assert_eq!(
        only,
        PostFilterOutcome::Error(
            "node node1: running RemovePod on PreFilter plugin \"test-plugin\": failed to remove pod: p"
                .into()
        )
    );
    let other = preempt_with(
        profile(),
        build(vec![n("node1", "300m", "110").label("error", "true"), n("node2", "300m", "110")]),
        on(vec![p("p1", "node1", "100m", LOW), p("p2", "node2", "200m", LOW)]),
        &p("p", "", "300m", HIGH),
    );
    check("the other node", other, &Want::Nominate("node2", &["p2"]));
}

#[test]
fn candidates_to_find_follow_kube_scheduler() {
    let d = DefaultPreemption::default();
    // (potential nodes, candidates to find)
    for (potential, want) in [(0, 0), (1, 1), (50, 50), (100, 100), (500, 100), (1_000, 100), (5_000, 500)] {
        assert_eq!(d.candidates_to_find(potential), want, "{potential}");
    }
    let custom = DefaultPreemption::default().with_min_candidate_nodes(50, 0);
    assert_eq!(custom.candidates_to_find(10), 5);
    assert_eq!(DefaultPreemption::default().with_min_candidate_nodes(0, 0).candidates_to_find(10), 1);
}

#[test]
fn the_search_starts_at_a_rotating_offset() {
    // Three equal nodes, one candidate wanted: the first node tried is nominated.
    let nodes = build((1..=3).map(|i| n(&format!("node{i}"), "4", "1")).collect());
    let pods = on((1..=3).map(|i| p(&format!("p{i}"), &format!("node{i}"), "0", LOW)).collect());
    let snapshot = Snapshot::new(nodes, pods).expect("valid snapshot");
    let framework = Framework::new(default_profile());
    let incoming = p("p", "", "0", HIGH);
    let (state, result) = framework.schedule_cycle(&snapshot, &incoming);
    let Err(Error::Unschedulable(fit)) = result else { panic!("expected no fit") };
    let plugin = DefaultPreemption::with_seed(7).with_min_candidate_nodes(0, 1);
    let mut picked = std::collections::BTreeSet::new();
    for _ in 0..12 {
        match plugin.post_filter(&framework, &state, &incoming, &snapshot, &fit) {
            PostFilterOutcome::Nominate(nomination) => picked.insert(nomination.node),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(picked.len(), 3, "{picked:?}");
}

#[test]
fn the_pre_check_passes_over_nodes_without_room_and_keeps_the_message() {
    // node1 stays short even without its low pod (600m of a higher priority stays); node2
    // has room once its pod goes.
    let nodes = || build(vec![n("node1", "1", "110"), n("node2", "1", "110")]);
    let pods = on(vec![
        p("h1", "node1", "600m", HIGH),
        p("l1", "node1", "300m", LOW),
        p("l2", "node2", "800m", LOW),
    ]);
    let incoming = p("p", "", "500m", MID);
    let snapshot = Snapshot::new(nodes(), pods.clone()).expect("valid snapshot");
    let framework = Framework::new(default_profile());
    let state = framework.pre_filter(&snapshot, &incoming).expect("pre-filter passes");
    let ruled_out = |name: &str| {
        let node = snapshot.node(name).expect("node");
        DefaultPreemption::ruled_out(&framework, &state, &incoming, node)
    };
    assert_eq!((ruled_out("node1"), ruled_out("node2")), (true, false));
    check(
        "node2 is the candidate",
        preempt(nodes(), pods.clone(), &incoming),
        &Want::Nominate("node2", &["l2"]),
    );
    // With node1 alone nothing helps; its reason is the dry run's, not "not helpful".
    let alone = preempt(build(vec![n("node1", "1", "110")]), pods[..2].to_vec(), &incoming);
    check("node1 alone", alone, &Want::NotHelped("0/1 nodes are available: 1 Insufficient cpu."));
}
