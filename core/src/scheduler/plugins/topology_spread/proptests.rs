//! Random clusters: the per-cycle counting agrees with a plain model of kube-scheduler's
//! counting (every node, every constraint, every pod, policies checked through the plugins),
//! the preemption hooks agree with counting again without the pod, and the score weights
//! with counting the feasible nodes' domains.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as ApiSelector, LabelSelectorRequirement, Time,
};
use proptest::prelude::*;

use super::*;
use crate::scheduler::plugins::NodeAffinity;
use crate::scheduler::plugins::snapshot_steps::{Changing, gen_step};
use crate::scheduler::plugins::taints::tolerated;
use crate::scheduler::testing::{node, pod, term};

const KEYS: [&str; 3] = ["zone", HOSTNAME, "rack"];

#[derive(Clone, Debug)]
struct GenNode {
    /// The hostname label's value, `h0`..`h3` (repeats allowed), if any.
    host: Option<u8>,
    zone: Option<u8>,
    rack: bool,
    /// A taint `k` with effect `NoSchedule`, `NoExecute` or `PreferNoSchedule`.
    taint: Option<usize>,
    pods: Vec<GenPod>,
}

#[derive(Clone, Debug)]
struct GenPod {
    other_namespace: bool,
    app: Option<u8>,
    rev: Option<u8>,
    terminating: bool,
}

#[derive(Clone, Debug)]
struct GenConstraint {
    key: usize,
    hard: bool,
    /// None, `{}`, `app=x`, `app in (x,y)`, `app notin (x)`, `!app`.
    selector: u8,
    match_rev: bool,
    affinity_policy: Option<bool>,
    taints_policy: Option<bool>,
    min_domains: Option<i32>,
    max_skew: i32,
}

#[derive(Clone, Debug)]
struct GenIncoming {
    labels: GenPod,
    /// `nodeSelector: zone=<z>`.
    zone_selector: Option<u8>,
    /// Required node affinity `zone NotIn (<z>)`.
    not_in_zone: Option<u8>,
    tolerates: bool,
    constraints: Vec<GenConstraint>,
}

fn gen_pod() -> impl Strategy<Value = GenPod> {
    (
        proptest::bool::weighted(0.2),
        proptest::option::of(0u8..2),
        proptest::option::of(0u8..2),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(other_namespace, app, rev, terminating)| GenPod {
            other_namespace,
            app,
            rev,
            terminating,
        })
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        proptest::option::weighted(0.9, 0u8..4),
        proptest::option::weighted(0.85, 0u8..3),
        proptest::bool::weighted(0.3),
        proptest::option::weighted(0.2, 0usize..3),
        proptest::collection::vec(gen_pod(), 0..4),
    )
        .prop_map(|(host, zone, rack, taint, pods)| GenNode { host, zone, rack, taint, pods })
}

fn gen_constraint() -> impl Strategy<Value = GenConstraint> {
    (
        (0usize..3, any::<bool>(), 0u8..6, proptest::bool::weighted(0.3)),
        (proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>())),
        (proptest::option::weighted(0.3, 1i32..5), 1i32..3),
    )
        .prop_map(
            |(
                (key, hard, selector, match_rev),
                (affinity_policy, taints_policy),
                (min_domains, max_skew),
            )| {
                GenConstraint {
                    key,
                    hard,
                    selector,
                    match_rev,
                    affinity_policy,
                    taints_policy,
                    min_domains,
                    max_skew,
                }
            },
        )
}

fn gen_incoming() -> impl Strategy<Value = GenIncoming> {
    (
        gen_pod(),
        proptest::option::weighted(0.25, 0u8..3),
        proptest::option::weighted(0.25, 0u8..3),
        any::<bool>(),
        proptest::collection::vec(gen_constraint(), 0..4),
    )
        .prop_map(|(labels, zone_selector, not_in_zone, tolerates, constraints)| GenIncoming {
            labels,
            zone_selector,
            not_in_zone,
            tolerates,
            constraints,
        })
}

fn label_pod(mut p: Pod, g: &GenPod) -> Pod {
    if g.other_namespace {
        p.metadata.namespace = Some("other".into());
    }
    let labels = [
        ("app", g.app.map(|a| ["x", "y"][usize::from(a)])),
        ("rev", g.rev.map(|r| ["1", "2"][usize::from(r)])),
    ];
    p.metadata.labels =
        Some(labels.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))).collect());
    if g.terminating {
        p.metadata.deletion_timestamp = Some(Time(Default::default()));
    }
    p
}

fn api_selector(which: u8) -> Option<ApiSelector> {
    let expression = |operator: &str, values: &[&str]| ApiSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }]),
    };
    match which {
        0 => None,
        1 => Some(ApiSelector::default()),
        2 => Some(ApiSelector {
            match_labels: Some([("app".into(), "x".into())].into()),
            match_expressions: None,
        }),
        3 => Some(expression("In", &["x", "y"])),
        4 => Some(expression("NotIn", &["x"])),
        _ => Some(expression("DoesNotExist", &[])),
    }
}

fn incoming(g: &GenIncoming) -> Pod {
    let mut b = pod("incoming");
    if let Some(z) = g.zone_selector {
        b = b.node_selector("zone", &z.to_string());
    }
    if let Some(z) = g.not_in_zone {
        b = b.required(vec![term(&[("zone", "NotIn", &[&z.to_string()])])]);
    }
    if g.tolerates {
        b = b.toleration("k", "Exists", "", "");
    }
    let policy = |p: Option<bool>| p.map(|honor| if honor { "Honor" } else { "Ignore" }.to_string());
    let constraints = g
        .constraints
        .iter()
        .map(|c| TopologySpreadConstraint {
            max_skew: c.max_skew,
            topology_key: KEYS[c.key].into(),
            when_unsatisfiable: if c.hard { "DoNotSchedule" } else { "ScheduleAnyway" }.into(),
            label_selector: api_selector(c.selector),
            match_label_keys: c.match_rev.then(|| vec!["rev".into()]),
            node_affinity_policy: policy(c.affinity_policy),
            node_taints_policy: policy(c.taints_policy),
            min_domains: c.min_domains,
        })
        .collect();
    let mut p = label_pod(b.build(), &g.labels);
    p.spec.get_or_insert_with(Default::default).topology_spread_constraints = Some(constraints);
    p
}

fn snapshot(nodes: &[GenNode]) -> (Snapshot, Vec<(String, Arc<Pod>)>) {
    let mut objects = Vec::new();
    let mut pods = Vec::new();
    for (i, g) in nodes.iter().enumerate() {
        let name = format!("n{i}");
        let mut b = node(&name);
        if let Some(h) = g.host {
            b = b.label(HOSTNAME, &format!("h{h}"));
        }
        if let Some(z) = g.zone {
            b = b.label("zone", &z.to_string());
        }
        if g.rack {
            b = b.label("rack", "r");
        }
        if let Some(e) = g.taint {
            b = b.taint("k", "", ["NoSchedule", "NoExecute", "PreferNoSchedule"][e]);
        }
        objects.push(b.build());
        for (j, p) in g.pods.iter().enumerate() {
            pods.push((name.clone(), Arc::new(label_pod(pod(&format!("p{i}-{j}")).on(&name).build(), p))));
        }
    }
    let snapshot = Snapshot::new(objects, pods.iter().map(|(_, p)| p.clone())).expect("valid cluster");
    (snapshot, pods)
}

/// kube-scheduler's counting, written plainly: for every node with every topology key, each
/// constraint whose policies pass the node (NodeAffinity's filter, the taints) adds the pods
/// matching it to the node's domain.
fn model_counts(
    pod: &Pod,
    constraints: &[Constraint],
    nodes: &[NodeInfo],
    skip_hostname: bool,
) -> Vec<HashMap<String, i64>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut affinity = CycleState::new();
    NodeAffinity.pre_filter(&mut affinity, pod, &Snapshot::default());
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let mut counts = vec![HashMap::new(); constraints.len()];
    for node in nodes {
        if !constraints.iter().all(|c| node.labels().contains_key(&c.topology_key)) {
            continue;
        }
        for (c, counts) in constraints.iter().zip(&mut counts) {
            let taints_ok = !node.taints().iter().any(|t| {
                matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t)
            });
            if (skip_hostname && c.topology_key == HOSTNAME)
                || (c.honor_node_affinity && !NodeAffinity.filter(&affinity, pod, node).is_success())
                || (c.honor_taints && !taints_ok)
            {
                continue;
            }
            let matching = node
                .pods()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == namespace)
                .filter(|p| !c.selector.is_empty() && c.selector.matches(pod_labels(p)))
                .count();
            *counts.entry(node.labels()[&c.topology_key].clone()).or_insert(0) += matching as i64;
        }
    }
    counts
}

fn same_counts(got: &[Domains<Box<str>>], want: &[HashMap<String, i64>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        prop_assert_eq!(got.len(), want.len(), "domains: {:?} vs {:?}", got, want);
        for (domain, &n) in want {
            prop_assert_eq!(got.get(domain), Some(n), "domain {}: {:?} vs {:?}", domain, got, want);
        }
    }
    Ok(())
}

fn verdicts(state: &CycleState, p: &Pod, snapshot: &Snapshot) -> Vec<Status> {
    snapshot.nodes().iter().map(|n| PodTopologySpread.filter(state, p, n)).collect()
}

fn cluster() -> impl Strategy<Value = (Vec<GenNode>, GenIncoming, usize, Vec<bool>)> {
    (
        proptest::collection::vec(gen_node(), 1..8),
        gen_incoming(),
        any::<usize>(),
        proptest::collection::vec(any::<bool>(), 8),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn counting_agrees_with_the_model((nodes, g, victim, feasible) in cluster()) {
        let (snapshot, pods) = snapshot(&nodes);
        let p = incoming(&g);
        let hard = Constraint::all(&p, "DoNotSchedule").expect("valid");
        let soft = Constraint::all(&p, "ScheduleAnyway").expect("valid");
        same_counts(&domain_counts(&p, &hard, snapshot.nodes(), |_| false), &model_counts(&p, &hard, snapshot.nodes(), false))?;
        same_counts(&domain_counts(&p, &soft, snapshot.nodes(), is_hostname), &model_counts(&p, &soft, snapshot.nodes(), true))?;

        // The hooks: taking a pod off leaves the verdicts of counting without it; putting it
        // back, those of counting with it.
        let mut state = CycleState::new();
        prop_assert_eq!(PodTopologySpread.pre_filter(&mut state, &p, &snapshot), Status::Success);
        let before = verdicts(&state, &p, &snapshot);
        if !pods.is_empty() {
            let (at, other) = &pods[victim % pods.len()];
            let mut without = snapshot.clone();
            without.remove_pod(at, other).expect("placed");
            let mut fresh = CycleState::new();
            prop_assert_eq!(PodTopologySpread.pre_filter(&mut fresh, &p, &without), Status::Success);
            let node = snapshot.node(at).expect("node");
            let mut dry_run = state.clone();
            let info = &PodInfo::new(other.clone()).expect("valid pod");
            prop_assert_eq!(PodTopologySpread.remove_pod(&mut dry_run, &p, info, node), Status::Success);
            prop_assert_eq!(verdicts(&dry_run, &p, &snapshot), verdicts(&fresh, &p, &without), "without {}", other.metadata.name.as_deref().unwrap_or(""));
            prop_assert_eq!(PodTopologySpread.add_pod(&mut dry_run, &p, info, node), Status::Success);
            prop_assert_eq!(verdicts(&dry_run, &p, &snapshot), before.clone(), "put back");
            prop_assert_eq!(verdicts(&state, &p, &snapshot), before, "the dry run's copy is its own");
        }

        // The weights: ln(domains among the feasible nodes with every soft key + 2).
        let chosen: Vec<&NodeInfo> = snapshot.nodes().iter().zip(&feasible).filter(|(_, f)| **f).map(|(n, _)| n).collect();
        prop_assert_eq!(PodTopologySpread.pre_score(&mut state, &p, &chosen), Status::Success);
        let scored: Vec<&&NodeInfo> = chosen.iter().filter(|n| soft.iter().all(|c| n.labels().contains_key(&c.topology_key))).collect();
        let want: Vec<f64> = soft
            .iter()
            .map(|c| {
                let values: BTreeSet<&String> = scored.iter().filter_map(|n| n.labels().get(&c.topology_key)).collect();
                let size = if c.topology_key == HOSTNAME { scored.len() } else { values.len() };
                (size as f64 + 2.0).ln()
            })
            .collect();
        let Some(Weights(got)) = state.get::<Weights>() else { return Err(TestCaseError::fail("no weights")) };
        prop_assert_eq!(got, &want);
    }
}

/// The counts kept in the snapshot, for the hard and the soft constraints of `p`, against the
/// model over the snapshot as it is.
fn kept_counts_agree(p: &Pod, snapshot: &Snapshot) -> Result<(), TestCaseError> {
    let hard = Constraint::all(p, "DoNotSchedule").expect("valid");
    let soft = Constraint::all(p, "ScheduleAnyway").expect("valid");
    same_counts(
        &snapshot_counts(p, &hard, snapshot, |_| false),
        &model_counts(p, &hard, snapshot.nodes(), false),
    )?;
    same_counts(
        &snapshot_counts(p, &soft, snapshot, is_hostname),
        &model_counts(p, &soft, snapshot.nodes(), true),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn counts_kept_in_the_snapshot_follow_its_changes(
        (nodes, g, _, _) in cluster(),
        second in gen_incoming(),
        steps in proptest::collection::vec(gen_step(gen_pod()), 0..12),
    ) {
        let (snapshot, pods) = snapshot(&nodes);
        let incoming = [incoming(&g), incoming(&second)];
        for p in &incoming {
            kept_counts_agree(p, &snapshot)?;
        }
        let mut changing = Changing::new(snapshot, pods);
        let make = |name: &str, g: &GenPod| label_pod(pod(name).build(), g);
        for (n, step) in steps.into_iter().enumerate() {
            changing.apply(n, step, make, &PodTopologySpread, &incoming[0])?;
            let snapshot = &changing.snapshot;
            // Each step asks for one incoming pod's counts, then the other's, as cycles of
            // two kinds of pod would.
            for p in &incoming {
                kept_counts_agree(p, snapshot)?;
            }
        }
    }
}
