//! Table tests of InterPodAffinity, after kube-scheduler's `filtering_test.go` and
//! `scoring_test.go`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;

use super::*;
use crate::scheduler::plugins::default_profile;
use crate::scheduler::plugins::test_pods::{
    bound, filter_all, labeled, score_all, term, with_affinity, with_anti_affinity, with_preferred,
};
use crate::scheduler::testing::node;
use crate::scheduler::{Error, Framework};

/// A case name, existing pods, the incoming pod, the nodes that pass and the distinct
/// rejections.
type FilterCase = (&'static str, Vec<Arc<Pod>>, Pod, &'static [&'static str], Vec<Status>);

/// A case name, the plugin, existing pods, the incoming pod and the normalized scores of
/// a1, a2, b1 and bare.
type ScoreCase = (&'static str, InterPodAffinity, Vec<Arc<Pod>>, Pod, [i64; 4]);

const HOST: &str = "kubernetes.io/hostname";

/// a1, a2 in zone a; b1 in zone b; bare has no zone. Each node has its hostname label.
fn nodes() -> Vec<Arc<Node>> {
    let n = |name: &str, zone: Option<&str>| {
        let b = node(name).capacity("4", "8Gi", "110").label(HOST, name);
        match zone {
            Some(z) => b.label("zone", z).build(),
            None => b.build(),
        }
    };
    vec![n("a1", Some("a")), n("a2", Some("a")), n("b1", Some("b")), n("bare", None)]
}

fn web(name: &str) -> Pod {
    labeled(name, "default", &[("app", "web")])
}

/// The names of the nodes that pass, and the distinct rejections.
fn verdicts(pods: Vec<Arc<Pod>>, p: &Pod) -> (Vec<String>, Vec<Status>) {
    let mut pass = Vec::new();
    let mut reasons = Vec::new();
    for (n, status) in filter_all(&InterPodAffinity::default(), nodes(), pods, p) {
        if status.is_success() {
            pass.push(n);
        } else if !reasons.contains(&status) {
            reasons.push(status);
        }
    }
    (pass, reasons)
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filter_cases() {
    let affinity = Status::unresolvable(InterPodAffinity::AFFINITY_REASON);
    let anti = Status::unschedulable(InterPodAffinity::ANTI_AFFINITY_REASON);
    let existing = Status::unschedulable(InterPodAffinity::EXISTING_ANTI_AFFINITY_REASON);
    let with_ns =
        |mut t: k8s_openapi::api::core::v1::PodAffinityTerm, ns: &[&str], sel: Option<ApiSelector>| {
            t.namespaces = Some(ns.iter().map(|s| s.to_string()).collect());
            t.namespace_selector = sel;
            t
        };
    let db = labeled("db", "default", &[("app", "db")]);
    let wants_db = |name: &str| with_affinity(web(name), vec![term("zone", &[("app", "db")])]);
    let other_ns_db = labeled("db", "other", &[("app", "db")]);
    let cases: Vec<FilterCase> = vec![
        ("no terms, no pods", vec![], web("p"), &["a1", "a2", "b1", "bare"], vec![]),
        (
            "affinity to a zone with a match",
            vec![bound(db.clone(), "a1")],
            wants_db("p"),
            &["a1", "a2"],
            vec![affinity.clone()],
        ),
        (
            "affinity by hostname",
            vec![bound(db.clone(), "b1")],
            with_affinity(web("p"), vec![term(HOST, &[("app", "db")])]),
            &["b1"],
            vec![affinity.clone()],
        ),
        (
            "a match in another namespace does not count",
            vec![bound(other_ns_db.clone(), "a1")],
            wants_db("p"),
            &[],
            vec![affinity.clone()],
        ),
        (
            "namespaces lists the other namespace",
            vec![bound(other_ns_db.clone(), "a1")],
            with_affinity(web("p"), vec![with_ns(term("zone", &[("app", "db")]), &["other"], None)]),
            &["a1", "a2"],
            vec![affinity.clone()],
        ),
        (
            "namespaceSelector {} selects every namespace",
            vec![bound(other_ns_db.clone(), "b1")],
            with_affinity(
                web("p"),
                vec![with_ns(term("zone", &[("app", "db")]), &[], Some(ApiSelector::default()))],
            ),
            &["b1"],
            vec![affinity.clone()],
        ),
        (
            "other namespaceSelectors select no namespace without namespace labels",
            vec![bound(other_ns_db.clone(), "b1")],
            with_affinity(
                web("p"),
                vec![with_ns(
                    term("zone", &[("app", "db")]),
                    &[],
                    Some(crate::scheduler::plugins::test_pods::selector(&[("team", "x")])),
                )],
            ),
            &[],
            vec![affinity.clone()],
        ),
        ("no match and the pod does not match itself", vec![], wants_db("p"), &[], vec![affinity.clone()]),
        (
            "self-affinity on an empty cluster: any node with the key",
            vec![],
            with_affinity(web("p"), vec![term("zone", &[("app", "web")])]),
            &["a1", "a2", "b1"],
            vec![affinity.clone()],
        ),
        (
            "self-affinity once a match exists: only its domain",
            vec![bound(web("w"), "b1")],
            with_affinity(web("p"), vec![term("zone", &[("app", "web")])]),
            &["b1"],
            vec![affinity.clone()],
        ),
        (
            "self-affinity: a match on a node without the key counts for nothing",
            vec![bound(web("w"), "bare")],
            with_affinity(web("p"), vec![term("zone", &[("app", "web")])]),
            &["a1", "a2", "b1"],
            vec![affinity.clone()],
        ),
        (
            "one pod must match every term",
            vec![bound(db.clone(), "a1"), bound(labeled("c", "default", &[("app", "cache")]), "a2")],
            with_affinity(web("p"), vec![term("zone", &[("app", "db")]), term("zone", &[("app", "cache")])]),
            &[],
            vec![affinity.clone()],
        ),
        (
            "terms with different keys each need their domain",
            vec![bound(labeled("both", "default", &[("app", "db"), ("tier", "x")]), "a2")],
            with_affinity(web("p"), vec![term("zone", &[("app", "db")]), term(HOST, &[("tier", "x")])]),
            &["a2"],
            vec![affinity.clone()],
        ),
        (
            "anti-affinity keeps the pod out of the zone",
            vec![bound(db.clone(), "a2")],
            with_anti_affinity(web("p"), vec![term("zone", &[("app", "db")])]),
            &["b1", "bare"],
            vec![anti.clone()],
        ),
        (
            "anti-affinity to itself spreads one per zone",
            vec![bound(web("w"), "b1")],
            with_anti_affinity(web("p"), vec![term("zone", &[("app", "web")])]),
            &["a1", "a2", "bare"],
            vec![anti.clone()],
        ),
        (
            "symmetry: an existing pod's anti-affinity rejects the incoming pod",
            vec![bound(with_anti_affinity(db.clone(), vec![term("zone", &[("app", "web")])]), "a1")],
            web("p"),
            &["b1", "bare"],
            vec![existing.clone()],
        ),
        (
            "symmetry: the existing pod's term looks in its own namespace",
            vec![bound(with_anti_affinity(other_ns_db.clone(), vec![term("zone", &[("app", "web")])]), "a1")],
            web("p"),
            &["a1", "a2", "b1", "bare"],
            vec![],
        ),
        (
            "symmetry with namespaceSelector {}",
            vec![bound(
                with_anti_affinity(
                    other_ns_db.clone(),
                    vec![with_ns(term(HOST, &[("app", "web")]), &[], Some(ApiSelector::default()))],
                ),
                "a1",
            )],
            web("p"),
            &["a2", "b1", "bare"],
            vec![existing.clone()],
        ),
        (
            "affinity is checked before anti-affinity",
            vec![bound(db.clone(), "a1")],
            with_anti_affinity(wants_db("p"), vec![term(HOST, &[("app", "db")])]),
            &["a2"],
            vec![anti.clone(), affinity.clone()],
        ),
    ];
    for (name, pods, p, pass, reasons) in cases {
        let (got_pass, got_reasons) = verdicts(pods, &p);
        assert_eq!(got_pass, names(pass), "{name}: passing nodes");
        let mut want = reasons;
        let mut got = got_reasons;
        want.sort_by_key(|s| format!("{s:?}"));
        got.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(got, want, "{name}: reasons");
    }
}

#[test]
fn filter_without_pre_filter_is_an_error() {
    let n = crate::scheduler::NodeInfo::new(nodes().remove(0)).expect("valid");
    let status = InterPodAffinity::default().filter(&CycleState::new(), &web("p"), &n);
    assert!(matches!(status, Status::Error { .. }), "{status:?}");
}

fn scores(plugin: InterPodAffinity, pods: Vec<Arc<Pod>>, p: &Pod) -> Vec<i64> {
    score_all(&plugin, nodes(), pods, p).into_iter().map(|(_, s)| s).collect()
}

#[test]
fn score_cases() {
    let db = || labeled("db", "default", &[("app", "db")]);
    let ipa = InterPodAffinity::default;
    // Nodes: a1, a2 (zone a), b1 (zone b), bare.
    let cases: Vec<ScoreCase> = vec![
        ("no terms", ipa(), vec![bound(db(), "a1")], web("p"), [0, 0, 0, 0]),
        (
            "preferred affinity: the zone with the match",
            ipa(),
            vec![bound(db(), "a1")],
            with_preferred(web("p"), vec![(5, term("zone", &[("app", "db")]))], vec![]),
            [100, 100, 0, 0],
        ),
        (
            "preferred anti-affinity: away from the match",
            ipa(),
            vec![bound(db(), "b1")],
            with_preferred(web("p"), vec![], vec![(5, term("zone", &[("app", "db")]))]),
            [100, 100, 0, 100],
        ),
        (
            "weights add per domain and scale min-max",
            ipa(),
            vec![bound(db(), "a1"), bound(labeled("c", "default", &[("app", "cache")]), "b1")],
            with_preferred(
                web("p"),
                vec![(8, term("zone", &[("app", "db")])), (2, term(HOST, &[("app", "db")]))],
                vec![(3, term("zone", &[("app", "cache")]))],
            ),
            // raw: a1 = 10, a2 = 8, b1 = -3, bare = 0
            [100, 84, 0, 23],
        ),
        (
            "symmetric: an existing pod's preferred affinity to the incoming pod",
            ipa(),
            vec![bound(with_preferred(db(), vec![(10, term("zone", &[("app", "web")]))], vec![]), "b1")],
            web("p"),
            [0, 0, 100, 0],
        ),
        (
            "symmetric: an existing pod's preferred anti-affinity",
            ipa(),
            vec![bound(with_preferred(db(), vec![], vec![(10, term(HOST, &[("app", "web")]))]), "a2")],
            web("p"),
            [100, 0, 100, 100],
        ),
        (
            "an existing pod's required affinity counts hardPodAffinityWeight",
            ipa(),
            vec![bound(with_affinity(db(), vec![term("zone", &[("app", "web")])]), "a1")],
            web("p"),
            [100, 100, 0, 0],
        ),
        (
            "hardPodAffinityWeight 0 ignores it",
            InterPodAffinity::with_hard_pod_affinity_weight(0),
            vec![bound(with_affinity(db(), vec![term("zone", &[("app", "web")])]), "a1")],
            web("p"),
            [0, 0, 0, 0],
        ),
    ];
    for (name, plugin, pods, p, want) in cases {
        assert_eq!(scores(plugin, pods, &p), want, "{name}");
    }
}

#[test]
fn pods_on_infeasible_nodes_still_score() {
    // The match is on a1; only a2 and b1 are feasible, yet a2 shares a1's zone.
    let snapshot = crate::scheduler::Snapshot::new(
        nodes(),
        vec![bound(labeled("db", "default", &[("app", "db")]), "a1")],
    )
    .expect("valid");
    let p = with_preferred(web("p"), vec![(1, term("zone", &[("app", "db")]))], vec![]);
    let plugin = InterPodAffinity::default();
    let mut state = CycleState::new();
    assert!(plugin.pre_filter(&mut state, &p, &snapshot).is_success());
    let feasible: Vec<&NodeInfo> = ["a2", "b1"].iter().map(|n| snapshot.node(n).expect("node")).collect();
    assert!(plugin.pre_score(&mut state, &p, &feasible).is_success());
    let raw: Vec<i64> = feasible.iter().map(|n| plugin.score(&state, &p, n)).collect();
    assert_eq!(raw, [1, 0]);
}

#[test]
fn anti_affinity_replicas_spread_until_no_node_is_left() {
    let fw = Framework::new(default_profile());
    let replica = |i: usize| with_anti_affinity(web(&format!("w{i}")), vec![term("zone", &[("app", "web")])]);
    let zoned: Vec<Arc<Node>> =
        nodes().into_iter().filter(|n| n.metadata.name.as_deref() != Some("bare")).collect();
    let mut snapshot = crate::scheduler::Snapshot::new(zoned.clone(), vec![]).expect("valid");
    let mut zones = Vec::new();
    for i in 0..2 {
        let p = replica(i);
        let chosen = fw.schedule(&snapshot, &p).expect("fits").node;
        zones.push(snapshot.node(&chosen).and_then(|n| n.labels().get("zone").cloned()));
        snapshot.add_pod(&chosen, Arc::new(p)).expect("assume");
    }
    zones.sort();
    assert_eq!(zones, [Some("a".to_string()), Some("b".to_string())]);
    let err = fw.schedule(&snapshot, &replica(2)).expect_err("every zone taken");
    assert_eq!(err.to_string(), "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
    let Error::Unschedulable(fit) = &err else { panic!("{err}") };
    assert_eq!(fit.unschedulable_plugins().into_iter().collect::<Vec<_>>(), ["InterPodAffinity"]);

    // A node without the topology key is in no domain: the term does not constrain it.
    let pods = vec![bound(replica(0), "a1"), bound(replica(1), "b1"), bound(replica(2), "bare")];
    let snapshot = crate::scheduler::Snapshot::new(nodes(), pods).expect("valid");
    assert_eq!(fw.schedule(&snapshot, &replica(3)).expect("fits").node, "bare");
}

/// A case name, existing pods, the incoming pod, the pod taken off its node and put back,
/// the node checked, and its verdicts before, with the pod off and with it back.
type HookCase = (&'static str, Vec<Arc<Pod>>, Pod, &'static str, &'static str, [Status; 3]);

#[test]
fn remove_and_add_pod_update_the_filter_state() {
    let ok = Status::Success;
    let affinity = Status::unresolvable(InterPodAffinity::AFFINITY_REASON);
    let anti = Status::unschedulable(InterPodAffinity::ANTI_AFFINITY_REASON);
    let existing = Status::unschedulable(InterPodAffinity::EXISTING_ANTI_AFFINITY_REASON);
    let db = labeled("db", "default", &[("app", "db")]);
    let avoids_db = with_anti_affinity(web("p"), vec![term("zone", &[("app", "db")])]);
    let wants_db = with_affinity(web("p"), vec![term("zone", &[("app", "db")])]);
    let repels_web = with_anti_affinity(labeled("r", "default", &[]), vec![term("zone", &[("app", "web")])]);
    let cases: Vec<HookCase> = vec![
        (
            "the pod the anti-affinity repels leaves its zone",
            vec![bound(db.clone(), "a1")],
            avoids_db.clone(),
            "db",
            "a2",
            [anti.clone(), ok.clone(), anti.clone()],
        ),
        (
            "an existing pod whose anti-affinity repels the incoming one leaves",
            vec![bound(repels_web, "b1")],
            web("p"),
            "r",
            "b1",
            [existing.clone(), ok.clone(), existing.clone()],
        ),
        (
            "the only pod the affinity needs leaves",
            vec![bound(db.clone(), "a1")],
            wants_db,
            "db",
            "a2",
            [ok.clone(), affinity.clone(), ok.clone()],
        ),
        (
            "with the last match gone, a self-affine pod is the first of its group",
            vec![bound(web("w"), "a1")],
            with_affinity(web("p"), vec![term("zone", &[("app", "web")])]),
            "w",
            "b1",
            [affinity.clone(), ok.clone(), affinity.clone()],
        ),
        (
            "a pod the terms do not select changes nothing",
            vec![bound(db.clone(), "a1"), bound(web("w"), "a1")],
            avoids_db.clone(),
            "w",
            "a2",
            [anti.clone(), anti.clone(), anti.clone()],
        ),
        (
            "a pod on a node without the key is in no domain",
            vec![bound(db.clone(), "a1"), bound(labeled("db2", "default", &[("app", "db")]), "bare")],
            avoids_db,
            "db2",
            "a2",
            [anti.clone(), anti.clone(), anti],
        ),
    ];
    let plugin = InterPodAffinity::default();
    for (name, pods, p, other, checked, want) in cases {
        let snapshot = Snapshot::new(nodes(), pods.clone()).expect("valid snapshot");
        let mut state = CycleState::new();
        assert_eq!(plugin.pre_filter(&mut state, &p, &snapshot), Status::Success, "{name}");
        let victim = pods.iter().find(|x| x.metadata.name.as_deref() == Some(other)).expect("listed");
        let at = victim.spec.as_ref().and_then(|s| s.node_name.as_deref()).expect("bound");
        let (at, node) = (snapshot.node(at).expect("node"), snapshot.node(checked).expect("node"));
        let before = plugin.filter(&state, &p, node);
        let victim = &PodInfo::new(victim.clone()).expect("valid pod");
        assert_eq!(plugin.remove_pod(&mut state, &p, victim, at), Status::Success, "{name}");
        let removed = plugin.filter(&state, &p, node);
        assert_eq!(plugin.add_pod(&mut state, &p, victim, at), Status::Success, "{name}");
        let back = plugin.filter(&state, &p, node);
        assert_eq!([before, removed, back], want, "{name}");
    }
}
