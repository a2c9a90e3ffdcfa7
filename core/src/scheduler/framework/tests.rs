use std::collections::BTreeMap;

use super::*;
use crate::scheduler::plugins::default_profile;
use crate::scheduler::testing::{node, pod};

/// Scores nodes from a fixed table (absent nodes score 0).
struct Fixed(&'static str, BTreeMap<&'static str, i64>);

impl ScorePlugin for Fixed {
    fn name(&self) -> &'static str {
        self.0
    }
    fn score(&self, _state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        self.1.get(node.name()).copied().unwrap_or(0)
    }
}

fn fixed(name: &'static str, scores: &[(&'static str, i64)]) -> Arc<dyn ScorePlugin> {
    Arc::new(Fixed(name, scores.iter().copied().collect()))
}

fn nodes(names: &[&str]) -> Snapshot {
    Snapshot::new(names.iter().map(|n| node(n).capacity("4", "8Gi", "110").build()), vec![]).expect("valid")
}

#[test]
fn fit_error_message_for_a_mixed_cluster() {
    let mut list = Vec::new();
    for i in 0..3 {
        list.push(node(&format!("small{i}")).capacity("1", "8Gi", "110").build());
    }
    for i in 0..2 {
        list.push(
            node(&format!("tainted{i}"))
                .capacity("8", "8Gi", "110")
                .taint("key", "value", "NoSchedule")
                .build(),
        );
    }
    let snapshot = Snapshot::new(list, vec![]).expect("valid");
    let p = pod("p").container(&[("cpu", "2")]).build();
    let err = Framework::new(default_profile()).schedule(&snapshot, &p).expect_err("nothing fits");
    assert_eq!(
        err.to_string(),
        "0/5 nodes are available: 2 node(s) had untolerated taint {key: value}, 3 Insufficient cpu."
    );
    let Error::Unschedulable(fit) = err else { panic!("not a fit error") };
    assert_eq!(fit.failures.len(), 5);
    assert_eq!(
        fit.unschedulable_plugins().into_iter().collect::<Vec<_>>(),
        ["NodeResourcesFit", "TaintToleration"]
    );
}

#[test]
fn the_first_rejecting_filter_is_reported() {
    // A cordoned, tainted node too small for the pod reports only NodeUnschedulable.
    let n = node("n").capacity("1", "1Gi", "110").unschedulable().taint("k", "v", "NoSchedule").build();
    let snapshot = Snapshot::new(vec![n], vec![]).expect("valid");
    let p = pod("p").container(&[("cpu", "2")]).build();
    let err = Framework::new(default_profile()).schedule(&snapshot, &p).expect_err("cordoned");
    assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) were unschedulable.");
}

#[test]
fn least_allocated_node_wins_by_default() {
    let list = vec![
        node("busy").capacity("4", "8Gi", "110").build(),
        node("idle").capacity("4", "8Gi", "110").build(),
        node("half").capacity("4", "8Gi", "110").build(),
    ];
    let pods = vec![
        pod("a").container(&[("cpu", "3"), ("memory", "6Gi")]).on("busy").arc(),
        pod("b").container(&[("cpu", "2"), ("memory", "4Gi")]).on("half").arc(),
    ];
    let snapshot = Snapshot::new(list, pods).expect("valid");
    let p = pod("p").container(&[("cpu", "500m"), ("memory", "1Gi")]).build();
    let result = Framework::new(default_profile()).schedule(&snapshot, &p).expect("fits");
    assert_eq!(result, ScheduleResult { node: "idle".into(), feasible: 3, evaluated: 3 });
}

#[test]
fn a_nominated_node_that_fits_is_taken_without_filtering_the_others() {
    let list = vec![
        node("busy").capacity("4", "8Gi", "110").build(),
        node("idle").capacity("4", "8Gi", "110").build(),
    ];
    let pods = vec![pod("a").container(&[("cpu", "3")]).on("busy").arc()];
    let snapshot = Snapshot::new(list, pods).expect("valid");
    let f = Framework::new(default_profile());
    let mut p = pod("p").container(&[("cpu", "500m")]).build();
    // Scoring would pick the idle node; the nomination wins.
    let (_, result) = f.schedule_nominated(&snapshot, &p, Some("busy"));
    assert_eq!(result.expect("fits"), ScheduleResult { node: "busy".into(), feasible: 1, evaluated: 1 });
    // The pod's status says the same when the runtime has no nomination of its own.
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        nominated_node_name: Some("busy".into()),
        ..Default::default()
    });
    assert_eq!(f.schedule(&snapshot, &p).expect("fits").node, "busy");
    // A nominated node that no longer fits, or is gone, leaves the choice to the usual pass.
    let big = pod("big").container(&[("cpu", "2")]).build();
    let (_, result) = f.schedule_nominated(&snapshot, &big, Some("busy"));
    assert_eq!(result.expect("fits"), ScheduleResult { node: "idle".into(), feasible: 1, evaluated: 2 });
    let (_, result) = f.schedule_nominated(&snapshot, &big, Some("gone"));
    assert_eq!(result.expect("fits").node, "idle");
}

#[test]
fn a_cloned_cycle_state_is_its_own_once_written() {
    let mut state = CycleState::new();
    state.insert(vec![1, 2]);
    state.insert(7u8);
    let mut copy = state.clone();
    copy.get_mut::<Vec<i32>>().expect("stored").push(3);
    assert_eq!(state.get::<Vec<i32>>(), Some(&vec![1, 2]), "the original is untouched");
    assert_eq!(copy.get::<Vec<i32>>(), Some(&vec![1, 2, 3]));
    *state.get_mut::<u8>().expect("stored") = 8;
    assert_eq!((state.get::<u8>(), copy.get::<u8>()), (Some(&8), Some(&7)));
}

#[test]
fn preferred_affinity_outweighs_free_capacity() {
    let list = vec![
        node("empty").capacity("4", "8Gi", "110").build(),
        node("ssd").capacity("4", "8Gi", "110").label("disk", "ssd").build(),
    ];
    let pods = vec![pod("a").container(&[("cpu", "2"), ("memory", "4Gi")]).on("ssd").arc()];
    let snapshot = Snapshot::new(list, pods).expect("valid");
    let p = pod("p")
        .container(&[("cpu", "1"), ("memory", "1Gi")])
        .preferred(1, crate::scheduler::testing::term(&[("disk", "In", &["ssd"])]))
        .build();
    let result = Framework::new(default_profile()).schedule(&snapshot, &p).expect("fits");
    assert_eq!(result.node, "ssd");
}

#[test]
fn weights_decide_between_plugins() {
    let snapshot = nodes(&["a", "b"]);
    let p = pod("p").build();
    let profile = |wa, wb| {
        Profile::new("test")
            .with_score(fixed("likes-a", &[("a", 60), ("b", 0)]), wa)
            .with_score(fixed("likes-b", &[("a", 0), ("b", 40)]), wb)
    };
    assert_eq!(Framework::new(profile(1, 1)).schedule(&snapshot, &p).expect("fits").node, "a");
    assert_eq!(Framework::new(profile(1, 2)).schedule(&snapshot, &p).expect("fits").node, "b");
    let state = &mut CycleState::new();
    let infos: Vec<&NodeInfo> = snapshot.nodes().iter().collect();
    assert_eq!(Framework::new(profile(1, 2)).score(state, &p, &infos).expect("scores"), [60, 80]);
}

#[test]
fn ties_are_broken_by_the_seeded_generator() {
    let snapshot = nodes(&["a", "b", "c", "d"]);
    let p = pod("p").build();
    let picks = |seed| {
        let fw = Framework::with_seed(Profile::new("test").with_score(fixed("flat", &[]), 1), seed);
        (0..40).map(|_| fw.schedule(&snapshot, &p).expect("fits").node).collect::<Vec<_>>()
    };
    let first = picks(7);
    assert_eq!(first, picks(7), "same seed, same choices");
    assert_ne!(first, picks(8), "another seed, other choices");
    for n in ["a", "b", "c", "d"] {
        assert!(first.iter().any(|p| p == n), "{n} never chosen among equals: {first:?}");
    }
}

#[test]
fn errors() {
    let p = pod("p").build();
    let fw = Framework::new(default_profile());
    assert_eq!(
        fw.schedule(&Snapshot::default(), &p).expect_err("empty").to_string(),
        "no nodes available to schedule pods"
    );

    let bad = pod("p").container(&[("cpu", "x")]).build();
    let err = fw.schedule(&nodes(&["a"]), &bad).expect_err("bad quantity");
    assert!(matches!(err, Error::Plugin { plugin: "NodeResourcesFit", node: None, .. }), "{err}");

    let out_of_range = Framework::new(Profile::new("t").with_score(fixed("big", &[("a", 101)]), 1));
    let err = out_of_range.schedule(&nodes(&["a", "b"]), &p).expect_err("101");
    assert_eq!(err.to_string(), "plugin big scored node a 101, outside 0..=100");
}

struct Refuse;

impl PreFilterPlugin for Refuse {
    fn name(&self) -> &'static str {
        "Refuse"
    }
    fn pre_filter(&self, _state: &mut CycleState, _pod: &Pod, _snapshot: &Snapshot) -> Status {
        Status::Unschedulable { reasons: vec!["no".into(), "never".into()] }
    }
}

#[test]
fn pre_filter_rejection_is_reported_once() {
    let fw = Framework::new(Profile::new("t").with_pre_filter(Arc::new(Refuse)));
    let err = fw.schedule(&nodes(&["a", "b"]), &pod("p").build()).expect_err("refused");
    assert_eq!(err.to_string(), "0/2 nodes are available: no, never.");
}

#[test]
fn default_normalize_scales_and_reverses() {
    let mut scores = [
        NodeScore { node: "a", score: 0 },
        NodeScore { node: "b", score: 2 },
        NodeScore { node: "c", score: 4 },
    ];
    default_normalize(&mut scores, false);
    assert_eq!(scores.map(|s| s.score), [0, 50, 100]);
    default_normalize(&mut scores, true);
    assert_eq!(scores.map(|s| s.score), [100, 50, 0]);
    let mut zeros = [NodeScore { node: "a", score: 0 }];
    default_normalize(&mut zeros, true);
    assert_eq!(zeros[0].score, 100);
}

mod sampling_tests {
    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn nodes_to_find_follow_kube_scheduler() {
        let f = Framework::new(default_profile());
        assert_eq!(f.feasible_nodes_to_find(50), 50, "small clusters: every node");
        assert_eq!(f.feasible_nodes_to_find(1_000), 420, "adaptive: 50% - 1000/125 = 42%");
        assert_eq!(f.feasible_nodes_to_find(5_000), 500, "adaptive: 50% - 40% = 10%");
        assert_eq!(f.feasible_nodes_to_find(100_000), 5_000, "never below 5%");
        assert_eq!(f.feasible_nodes_to_find(150), 100, "never fewer than 100");
        let all = Framework::new(default_profile()).with_percentage_of_nodes_to_score(100);
        assert_eq!(all.feasible_nodes_to_find(5_000), 5_000);
    }

    #[test]
    fn a_cycle_stops_at_enough_feasible_nodes_and_the_next_starts_after_it() {
        let nodes: Vec<_> =
            (0..300).map(|i| node(&format!("n{i:03}")).capacity("4", "8Gi", "110").build()).collect();
        let snapshot = Snapshot::new(nodes, Vec::new()).expect("snapshot");
        let f = Framework::new(default_profile()).with_percentage_of_nodes_to_score(10);
        let p = pod("p").container(&[("cpu", "100m"), ("memory", "100Mi")]).build();
        let first = f.schedule(&snapshot, &p).expect("placed");
        assert_eq!((first.evaluated, first.feasible), (100, 100));
        let second = f.schedule(&snapshot, &p).expect("placed");
        assert_eq!(second.evaluated, 100);
        let index = |n: &str| n[1..].parse::<usize>().expect("numbered");
        assert!(
            index(&first.node) < 100 && (100..200).contains(&index(&second.node)),
            "{first:?} {second:?}"
        );
    }
}
