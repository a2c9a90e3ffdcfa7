//! Table tests of PodTopologySpread, after kube-scheduler's `filtering_test.go` and
//! `scoring_test.go`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as ApiSelector, Time};

use super::*;
use crate::scheduler::plugins::default_profile;
use crate::scheduler::plugins::test_pods::{bound, filter_all, labeled, score_all, spread, with_spread};
use crate::scheduler::testing::{NodeBuilder, node};
use crate::scheduler::{Error, Framework};

/// a1, a2 in zone a; b1, b2 in zone b; plus `extra`.
fn nodes(extra: Vec<NodeBuilder>) -> Vec<Arc<Node>> {
    let n = |name: &str, zone: &str| {
        node(name).capacity("4", "8Gi", "110").label(HOSTNAME, name).label("zone", zone)
    };
    let mut out = vec![n("a1", "a"), n("a2", "a"), n("b1", "b"), n("b2", "b")];
    out.extend(extra);
    out.into_iter().map(|b| b.build()).collect()
}

fn foo(name: &str) -> Pod {
    labeled(name, "default", &[("foo", "")])
}

/// `count` pods labelled foo on `node`.
fn foos(node: &str, count: usize) -> Vec<Arc<Pod>> {
    (0..count).map(|i| bound(foo(&format!("{node}-{i}")), node)).collect()
}

/// A case name, extra nodes, existing pods, the incoming pod, the nodes that pass and the
/// distinct rejections.
type FilterCase = (&'static str, Vec<NodeBuilder>, Vec<Arc<Pod>>, Pod, &'static [&'static str], Vec<Status>);

/// A case name, extra nodes, existing pods, the incoming pod and the normalized scores.
type ScoreCase = (&'static str, Vec<NodeBuilder>, Vec<Arc<Pod>>, Pod, Vec<i64>);

fn zone_skew(max_skew: i32) -> TopologySpreadConstraint {
    spread(max_skew, "zone", "DoNotSchedule", &[("foo", "")])
}

fn passing(nodes: Vec<Arc<Node>>, pods: Vec<Arc<Pod>>, p: &Pod) -> (Vec<String>, Vec<Status>) {
    let mut pass = Vec::new();
    let mut reasons = Vec::new();
    for (n, status) in filter_all(&PodTopologySpread, nodes, pods, p) {
        if status.is_success() {
            pass.push(n);
        } else if !reasons.contains(&status) {
            reasons.push(status);
        }
    }
    (pass, reasons)
}

#[test]
fn filter_cases() {
    let skew = Status::unschedulable(PodTopologySpread::REASON);
    let missing = Status::unresolvable(PodTopologySpread::MISSING_LABEL_REASON);
    let with = |f: fn(&mut TopologySpreadConstraint), c: TopologySpreadConstraint| {
        let mut c = c;
        f(&mut c);
        c
    };
    let mut terminating = foo("gone");
    terminating.metadata.deletion_timestamp = Some(Time(Default::default()));
    let cat = |n: usize| foos("a1", n);
    let tainted = || node("c1").label(HOSTNAME, "c1").label("zone", "c").taint("k", "v", "NoSchedule");
    let cases: Vec<FilterCase> = vec![
        (
            "no existing pods",
            vec![],
            vec![],
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "the incoming pod need not match: it adds nothing to the skew",
            vec![],
            cat(1),
            with_spread(labeled("p", "default", &[]), vec![zone_skew(1)]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "3/0 across zones, maxSkew 1: only zone b",
            vec![],
            cat(3),
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["b1", "b2"],
            vec![skew.clone()],
        ),
        (
            "1/0, maxSkew 1: zone a is at the limit",
            vec![],
            cat(1),
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["b1", "b2"],
            vec![skew.clone()],
        ),
        (
            "3/0, maxSkew 3",
            vec![],
            cat(2),
            with_spread(foo("p"), vec![zone_skew(3)]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "pods in another namespace do not count",
            vec![],
            vec![bound(labeled("x", "other", &[("foo", "")]), "a1")],
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "terminating pods do not count",
            vec![],
            vec![bound(terminating.clone(), "a1")],
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "a node without the key is rejected and is no domain",
            vec![node("bare").label(HOSTNAME, "bare")],
            foos("bare", 5),
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["a1", "a2", "b1", "b2"],
            vec![missing.clone()],
        ),
        (
            "every constraint's key is needed",
            vec![node("nohost").label("zone", "b")],
            vec![],
            with_spread(foo("p"), vec![zone_skew(1), spread(1, HOSTNAME, "DoNotSchedule", &[("foo", "")])]),
            &["a1", "a2", "b1", "b2"],
            vec![missing.clone()],
        ),
        (
            "zone and hostname constraints together",
            vec![],
            [foos("a1", 1), foos("b1", 1)].concat(),
            with_spread(foo("p"), vec![zone_skew(1), spread(1, HOSTNAME, "DoNotSchedule", &[("foo", "")])]),
            &["a2", "b2"],
            vec![skew.clone()],
        ),
        (
            "minDomains above the domain count makes the minimum 0",
            vec![],
            [foos("a1", 1), foos("b1", 1)].concat(),
            with_spread(foo("p"), vec![with(|c| c.min_domains = Some(3), zone_skew(1))]),
            &[],
            vec![skew.clone()],
        ),
        (
            "minDomains met",
            vec![],
            [foos("a1", 1), foos("b1", 1)].concat(),
            with_spread(foo("p"), vec![with(|c| c.min_domains = Some(2), zone_skew(1))]),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "nodeAffinityPolicy Honor: a domain the pod cannot use does not count",
            vec![node("c1").label(HOSTNAME, "c1").label("zone", "c")],
            cat(1),
            {
                let mut p = with_spread(foo("p"), vec![zone_skew(1)]);
                p.spec.as_mut().expect("spec").node_selector =
                    Some([("zone".to_string(), "a".to_string())].into_iter().collect());
                p
            },
            // Zone a alone is a domain: its minimum is its own count. (The NodeAffinity
            // filter rejects zones b and c.)
            &["a1", "a2", "b1", "b2", "c1"],
            vec![],
        ),
        (
            "nodeAffinityPolicy Ignore: the empty zone c is the minimum",
            vec![node("c1").label(HOSTNAME, "c1").label("zone", "c")],
            cat(1),
            {
                let mut p = with_spread(
                    foo("p"),
                    vec![with(|c| c.node_affinity_policy = Some("Ignore".into()), zone_skew(1))],
                );
                p.spec.as_mut().expect("spec").node_selector =
                    Some([("zone".to_string(), "a".to_string())].into_iter().collect());
                p
            },
            &["b1", "b2", "c1"],
            vec![skew.clone()],
        ),
        (
            "nodeTaintsPolicy Ignore (default): a tainted node's domain counts",
            vec![tainted()],
            [foos("a1", 1), foos("b1", 1)].concat(),
            with_spread(foo("p"), vec![zone_skew(1)]),
            &["c1"],
            vec![skew.clone()],
        ),
        (
            "nodeTaintsPolicy Honor: an untolerated taint removes the domain",
            vec![tainted()],
            [foos("a1", 1), foos("b1", 1)].concat(),
            with_spread(foo("p"), vec![with(|c| c.node_taints_policy = Some("Honor".into()), zone_skew(1))]),
            &["a1", "a2", "b1", "b2", "c1"],
            vec![],
        ),
        (
            "matchLabelKeys: only pods of the same revision count",
            vec![],
            vec![bound(labeled("old", "default", &[("foo", ""), ("rev", "1")]), "a1")],
            with_spread(
                labeled("p", "default", &[("foo", ""), ("rev", "2")]),
                vec![with(|c| c.match_label_keys = Some(vec!["rev".into()]), zone_skew(1))],
            ),
            &["a1", "a2", "b1", "b2"],
            vec![],
        ),
        (
            "an empty selector counts no pod but matches the incoming one",
            vec![],
            cat(3),
            with_spread(
                foo("p"),
                vec![with(|c| c.label_selector = Some(ApiSelector::default()), zone_skew(0))],
            ),
            &[],
            vec![skew.clone()],
        ),
        (
            "ScheduleAnyway constraints do not filter",
            vec![node("bare")],
            cat(3),
            with_spread(foo("p"), vec![spread(1, "zone", "ScheduleAnyway", &[("foo", "")])]),
            &["a1", "a2", "b1", "b2", "bare"],
            vec![],
        ),
    ];
    for (name, extra, pods, p, pass, reasons) in cases {
        let (got_pass, got_reasons) = passing(nodes(extra), pods, &p);
        assert_eq!(got_pass, pass.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{name}: passing nodes");
        assert_eq!(got_reasons, reasons, "{name}: reasons");
    }
}

#[test]
fn score_cases() {
    let soft = |key: &str, max_skew: i32| spread(max_skew, key, "ScheduleAnyway", &[("foo", "")]);
    // Nodes a1, a2 (zone a), b1, b2 (zone b), then the extras.
    let cases: Vec<ScoreCase> = vec![
        ("no constraints: not scored", vec![], foos("a1", 2), foo("p"), vec![0, 0, 0, 0]),
        (
            "no matching pods: all equal",
            vec![],
            vec![],
            with_spread(foo("p"), vec![soft("zone", 1)]),
            vec![100; 4],
        ),
        (
            // weight ln(2 + 2); raw a = round(2 * 1.386) = 3, b = 0
            "fewer pods in the zone is better",
            vec![],
            foos("a1", 2),
            with_spread(foo("p"), vec![soft("zone", 1)]),
            vec![0, 0, 100, 100],
        ),
        (
            // raw a = round(3 * 1.386) = 4, b = round(1 * 1.386) = 1: 100 * (4 + 1 - s) / 4
            "min and max both count",
            vec![],
            [foos("a2", 3), foos("b2", 1)].concat(),
            with_spread(foo("p"), vec![soft("zone", 1)]),
            vec![25, 25, 100, 100],
        ),
        (
            // weight ln(4 + 2) = 1.79; raw 2 * 1.79 = 4 on a1, 0 elsewhere
            "hostname domains are the nodes",
            vec![],
            foos("a1", 2),
            with_spread(foo("p"), vec![soft(HOSTNAME, 1)]),
            vec![0, 100, 100, 100],
        ),
        (
            "a node without the key scores 0",
            vec![node("bare").label(HOSTNAME, "bare")],
            foos("a1", 2),
            with_spread(foo("p"), vec![soft("zone", 1)]),
            vec![0, 0, 100, 100, 0],
        ),
        (
            // raw a = 3 + 2 = 5, b = 0 + 2 = 2: 100 * (5 + 2 - s) / 5
            "maxSkew softens the difference",
            vec![],
            foos("a1", 2),
            with_spread(foo("p"), vec![soft("zone", 3)]),
            vec![40, 40, 100, 100],
        ),
    ];
    for (name, extra, pods, p, want) in cases {
        let got: Vec<i64> =
            score_all(&PodTopologySpread, nodes(extra), pods, &p).into_iter().map(|(_, s)| s).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn pods_on_infeasible_nodes_count_for_their_zone() {
    let snapshot = Snapshot::new(nodes(vec![]), foos("a1", 2)).expect("valid");
    let p = with_spread(foo("p"), vec![spread(1, "zone", "ScheduleAnyway", &[("foo", "")])]);
    let mut state = CycleState::new();
    assert!(PodTopologySpread.pre_filter(&mut state, &p, &snapshot).is_success());
    let feasible: Vec<&NodeInfo> = ["a2", "b1"].iter().map(|n| snapshot.node(n).expect("node")).collect();
    assert!(PodTopologySpread.pre_score(&mut state, &p, &feasible).is_success());
    let raw: Vec<i64> = feasible.iter().map(|n| PodTopologySpread.score(&state, &p, n)).collect();
    assert_eq!(raw, [3, 0]);
}

#[test]
fn invalid_constraints_are_errors() {
    let mut c = zone_skew(1);
    c.node_taints_policy = Some("Sometimes".into());
    let p = with_spread(foo("p"), vec![c]);
    let status = PodTopologySpread.pre_filter(&mut CycleState::new(), &p, &Snapshot::default());
    assert_eq!(
        status,
        Status::error("spec.topologySpreadConstraints[0].nodeTaintsPolicy: unsupported value \"Sometimes\"")
    );
}

#[test]
fn replicas_spread_evenly_over_zones() {
    let mut snapshot = Snapshot::new(nodes(vec![]), vec![]).expect("valid");
    let fw = Framework::new(default_profile());
    let replica = |i: usize| with_spread(foo(&format!("r{i}")), vec![zone_skew(1)]);
    for i in 0..6 {
        let p = replica(i);
        let chosen = fw.schedule(&snapshot, &p).expect("fits").node;
        snapshot.add_pod(&chosen, Arc::new(p)).expect("assume");
        let per_zone = |z: &str| -> usize {
            snapshot
                .nodes()
                .iter()
                .filter(|n| n.labels().get("zone").map(String::as_str) == Some(z))
                .map(|n| n.pod_count())
                .sum()
        };
        assert!(per_zone("a").abs_diff(per_zone("b")) <= 1, "after {} pods", i + 1);
    }
    let bare = Snapshot::new(vec![node("bare").capacity("4", "8Gi", "110").build()], vec![]).expect("valid");
    let err = fw.schedule(&bare, &replica(9)).expect_err("no zone label");
    assert!(matches!(err, Error::Unschedulable(_)));
    assert_eq!(
        err.to_string(),
        "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label)."
    );
}

/// A case name, extra nodes, existing pods, the incoming pod, the pod taken off its node and
/// put back, the node checked, and its verdicts before, with the pod off and with it back.
type HookCase = (&'static str, Vec<NodeBuilder>, Vec<Arc<Pod>>, Pod, &'static str, &'static str, [Status; 3]);

#[test]
fn remove_and_add_pod_update_counts_and_the_fewest() {
    let ok = Status::Success;
    let skew = Status::unschedulable(PodTopologySpread::REASON);
    let incoming = || with_spread(foo("p"), vec![zone_skew(1)]);
    let mut terminating = foo("gone");
    terminating.metadata.deletion_timestamp = Some(Time(Default::default()));
    let mut elsewhere = labeled("other-ns", "other", &[("foo", "")]);
    elsewhere.spec.get_or_insert_with(Default::default).node_name = Some("a1".into());
    let mut not_in_c = crate::scheduler::testing::pod("p")
        .required(vec![crate::scheduler::testing::term(&[("zone", "NotIn", &["c"])])])
        .build();
    not_in_c.metadata.labels = foo("p").metadata.labels;
    let not_in_c = with_spread(not_in_c, vec![zone_skew(1)]);
    let c1 = || vec![node("c1").capacity("4", "8Gi", "110").label(HOSTNAME, "c1").label("zone", "c")];
    let cases: Vec<HookCase> = vec![
        (
            "the count of the victim's zone drops",
            vec![],
            [foos("a1", 2), foos("b1", 1)].concat(),
            incoming(),
            "a1-0",
            "a2",
            [skew.clone(), ok.clone(), skew.clone()],
        ),
        (
            "the fewest drops with the victim's zone",
            vec![],
            [foos("a1", 1), foos("b1", 1)].concat(),
            incoming(),
            "b1-0",
            "a2",
            [ok.clone(), skew.clone(), ok.clone()],
        ),
        (
            "a terminating pod was never counted",
            vec![],
            [foos("a1", 2), foos("b1", 1), vec![bound(terminating, "a1")]].concat(),
            incoming(),
            "gone",
            "a2",
            [skew.clone(), skew.clone(), skew.clone()],
        ),
        (
            "a pod of another namespace was never counted",
            vec![],
            [foos("a1", 2), foos("b1", 1), vec![Arc::new(elsewhere)]].concat(),
            incoming(),
            "other-ns",
            "a2",
            [skew.clone(), skew.clone(), skew.clone()],
        ),
        (
            "a node the pod's node affinity leaves out was never counted",
            c1(),
            [foos("a1", 1), foos("b1", 1), foos("c1", 1)].concat(),
            not_in_c,
            "c1-0",
            "a2",
            [ok.clone(), ok.clone(), ok],
        ),
    ];
    for (name, extra, pods, p, other, checked, want) in cases {
        let snapshot = Snapshot::new(nodes(extra), pods.clone()).expect("valid snapshot");
        let mut state = CycleState::new();
        assert_eq!(PodTopologySpread.pre_filter(&mut state, &p, &snapshot), Status::Success, "{name}");
        let victim = pods.iter().find(|x| x.metadata.name.as_deref() == Some(other)).expect("listed");
        let at = victim.spec.as_ref().and_then(|s| s.node_name.as_deref()).expect("bound");
        let (at, node) = (snapshot.node(at).expect("node"), snapshot.node(checked).expect("node"));
        let before = PodTopologySpread.filter(&state, &p, node);
        let victim = &PodInfo::new(victim.clone()).expect("valid pod");
        assert_eq!(PodTopologySpread.remove_pod(&mut state, &p, victim, at), Status::Success, "{name}");
        let removed = PodTopologySpread.filter(&state, &p, node);
        assert_eq!(PodTopologySpread.add_pod(&mut state, &p, victim, at), Status::Success, "{name}");
        let back = PodTopologySpread.filter(&state, &p, node);
        assert_eq!([before, removed, back], want, "{name}");
    }
}
