//! Random clusters and pods: every placement satisfies a simple model of the hard
//! constraints (resources, taints, node selection, and pod anti-affinity by zone in both
//! directions), and "unschedulable" means the model finds no feasible node either.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;

use super::plugins::default_profile;
use super::plugins::test_pods::{term as pod_term, with_anti_affinity};
use super::testing::{NodeBuilder, PodBuilder, node, pod, term};
use super::{Error, Framework, Snapshot};

const KEYS: [&str; 2] = ["a", "b"];
const VALUES: [&str; 2] = ["", "x"];
const EFFECTS: [&str; 3] = ["NoSchedule", "NoExecute", "PreferNoSchedule"];

#[derive(Clone, Debug)]
struct GenNode {
    cpu: i64,
    mem: i64,
    max_pods: i64,
    zone: Option<u8>,
    generation: Option<i64>,
    taints: Vec<(usize, usize, usize)>,
    unschedulable: bool,
    pods: Vec<GenExisting>,
}

/// An existing pod: cpu, memory, whether it is labelled `app=x`, and whether it has required
/// zone anti-affinity to pods labelled `app=new`.
type GenExisting = (i64, i64, bool, bool);

/// A toleration: key (None = any), `Exists` or `Equal` with a value, effect (None = any).
type GenToleration = (Option<usize>, Option<usize>, Option<usize>);

#[derive(Clone, Debug)]
struct GenPod {
    cpu: Option<i64>,
    mem: Option<i64>,
    init_cpu: Option<i64>,
    zone: Option<u8>,
    gen_gt: Option<i64>,
    tolerations: Vec<GenToleration>,
    tolerate_cordon: bool,
    node_name: Option<usize>,
    /// Required zone anti-affinity to pods labelled `app=x`.
    anti_x: bool,
    /// Labelled `app=new`, which existing pods may repel.
    labelled: bool,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        (0i64..4000, 0i64..4096, 0i64..4),
        (proptest::option::of(0u8..2), proptest::option::of(0i64..5)),
        proptest::collection::vec((0usize..2, 0usize..2, 0usize..3), 0..3),
        proptest::bool::weighted(0.15),
        proptest::collection::vec(
            (0i64..1500, 0i64..1500, proptest::bool::weighted(0.3), proptest::bool::weighted(0.2)),
            0..3,
        ),
    )
        .prop_map(|((cpu, mem, max_pods), (zone, generation), taints, unschedulable, pods)| GenNode {
            cpu,
            mem,
            max_pods,
            zone,
            generation,
            taints,
            unschedulable,
            pods,
        })
}

fn gen_pod(nodes: usize) -> impl Strategy<Value = GenPod> {
    (
        (
            proptest::option::of(0i64..2500),
            proptest::option::of(0i64..2500),
            proptest::option::of(0i64..3000),
        ),
        (proptest::option::of(0u8..2), proptest::option::of(0i64..5)),
        proptest::collection::vec(
            (
                proptest::option::of(0usize..2),
                proptest::option::of(0usize..2),
                proptest::option::of(0usize..3),
            ),
            0..3,
        ),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.1, 0..nodes),
        (proptest::bool::weighted(0.3), proptest::bool::weighted(0.5)),
    )
        .prop_map(
            |(
                (cpu, mem, init_cpu),
                (zone, gen_gt),
                tolerations,
                tolerate_cordon,
                node_name,
                (anti_x, labelled),
            )| {
                GenPod {
                    cpu,
                    mem,
                    init_cpu,
                    zone,
                    gen_gt,
                    tolerations,
                    tolerate_cordon,
                    node_name,
                    anti_x,
                    labelled,
                }
            },
        )
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn requests(cpu: Option<i64>, mem: Option<i64>) -> Vec<(&'static str, String)> {
    let mut r = Vec::new();
    if let Some(c) = cpu {
        r.push(("cpu", format!("{c}m")));
    }
    if let Some(m) = mem {
        r.push(("memory", format!("{m}Mi")));
    }
    r
}

fn as_refs<'a>(r: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    r.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn build_node(i: usize, g: &GenNode) -> NodeBuilder {
    let mut b =
        node(&name(i)).capacity(&format!("{}m", g.cpu), &format!("{}Mi", g.mem), &g.max_pods.to_string());
    if let Some(z) = g.zone {
        b = b.label("zone", &z.to_string());
    }
    if let Some(g) = g.generation {
        b = b.label("gen", &g.to_string());
    }
    for &(k, v, e) in &g.taints {
        b = b.taint(KEYS[k], VALUES[v], EFFECTS[e]);
    }
    if g.unschedulable {
        b = b.unschedulable();
    }
    b
}

fn build_pod(g: &GenPod) -> PodBuilder {
    let mut b = pod("new").container(&as_refs(&requests(g.cpu, g.mem)));
    if let Some(c) = g.init_cpu {
        b = b.init_container(&as_refs(&requests(Some(c), None)));
    }
    if let Some(z) = g.zone {
        b = b.node_selector("zone", &z.to_string());
    }
    if let Some(n) = g.gen_gt {
        b = b.required(vec![term(&[("gen", "Gt", &[&n.to_string()])])]);
    }
    for &(k, v, e) in &g.tolerations {
        let op = if v.is_some() { "Equal" } else { "Exists" };
        b = b.toleration(
            k.map_or("", |k| KEYS[k]),
            op,
            v.map_or("", |v| VALUES[v]),
            e.map_or("", |e| EFFECTS[e]),
        );
    }
    if g.tolerate_cordon {
        b = b.toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule");
    }
    if let Some(n) = g.node_name {
        b = b.on(&name(n));
    }
    b
}

/// The incoming pod with its labels and pod anti-affinity.
fn finish_pod(g: &GenPod) -> Pod {
    let mut p = build_pod(g).build();
    if g.labelled {
        p.metadata.labels = Some([("app".to_string(), "new".to_string())].into());
    }
    if g.anti_x {
        p = with_anti_affinity(p, vec![pod_term("zone", &[("app", "x")])]);
    }
    p
}

/// An existing pod on node `i`.
fn existing_pod(i: usize, j: usize, &(c, m, x, repels): &GenExisting) -> Arc<Pod> {
    let mut p =
        pod(&format!("old-{i}-{j}")).container(&as_refs(&requests(Some(c), Some(m)))).on(&name(i)).build();
    if x {
        p.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    }
    if repels {
        p = with_anti_affinity(p, vec![pod_term("zone", &[("app", "new")])]);
    }
    Arc::new(p)
}

/// The hard constraints, written from the generated description rather than the objects.
fn model_feasible(i: usize, nodes: &[GenNode], p: &GenPod) -> bool {
    let n = &nodes[i];
    // Pod anti-affinity by zone: a node without a zone is in no domain.
    let same_zone = || nodes.iter().filter(|m| n.zone.is_some() && m.zone == n.zone).flat_map(|m| &m.pods);
    let anti_ok = !p.anti_x || !same_zone().any(|e| e.2);
    let existing_anti_ok = !p.labelled || !same_zone().any(|e| e.3);
    let tolerates = |key: usize, value: usize, effect: usize| {
        p.tolerations.iter().any(|&(k, v, e)| {
            k.is_none_or(|k| k == key) && e.is_none_or(|e| e == effect) && v.is_none_or(|v| v == value)
        })
    };
    let cordon_ok = !n.unschedulable
        || p.tolerate_cordon
        || p.tolerations.iter().any(|&(k, v, e)| {
            // A key-less toleration, Exists or Equal to the empty value, with no effect or
            // NoSchedule, tolerates the cordon's taint.
            k.is_none() && v.is_none_or(|v| v == 0) && e.is_none_or(|e| e == 0)
        });
    let taints_ok = n.taints.iter().all(|&(k, v, e)| e == 2 || tolerates(k, v, e));
    let name_ok = p.node_name.is_none_or(|want| want == i);
    let zone_ok = p.zone.is_none_or(|z| n.zone == Some(z));
    let gen_ok = p.gen_gt.is_none_or(|gt| n.generation.is_some_and(|g| g > gt));
    let cpu = p.cpu.unwrap_or(0).max(p.init_cpu.unwrap_or(0));
    let mem = p.mem.unwrap_or(0);
    let used_cpu: i64 = n.pods.iter().map(|e| e.0).sum();
    let used_mem: i64 = n.pods.iter().map(|e| e.1).sum();
    let cpu_ok = cpu == 0 || used_cpu + cpu <= n.cpu;
    let mem_ok = mem == 0 || used_mem + mem <= n.mem;
    let pods_ok = (n.pods.len() as i64) < n.max_pods;
    cordon_ok
        && taints_ok
        && name_ok
        && zone_ok
        && gen_ok
        && cpu_ok
        && mem_ok
        && pods_ok
        && anti_ok
        && existing_anti_ok
}

fn cluster() -> impl Strategy<Value = (Vec<GenNode>, GenPod, u64)> {
    proptest::collection::vec(gen_node(), 1..7).prop_flat_map(|nodes| {
        let n = nodes.len();
        (Just(nodes), gen_pod(n), any::<u64>())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn placements_satisfy_the_model_and_failures_are_real((nodes, p, seed) in cluster()) {
        let objects: Vec<_> = nodes.iter().enumerate().map(|(i, n)| build_node(i, n).build()).collect();
        let pods: Vec<_> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.pods.iter().enumerate().map(move |(j, e)| existing_pod(i, j, e)))
            .collect();
        let snapshot = Snapshot::new(objects, pods).expect("valid cluster");
        let new_pod = finish_pod(&p);
        let fw = Framework::with_seed(default_profile(), seed);
        let feasible: Vec<usize> = (0..nodes.len()).filter(|&i| model_feasible(i, &nodes, &p)).collect();
        // Brute force with the plugins themselves: every filter on every node.
        let state = fw.pre_filter(&snapshot, &new_pod).expect("pre-filter passes");
        let passing: Vec<usize> =
            (0..nodes.len()).filter(|&i| fw.filter(&state, &new_pod, &snapshot.nodes()[i]).is_none()).collect();
        prop_assert_eq!(&passing, &feasible, "plugins disagree with the model");
        match fw.schedule(&snapshot, &new_pod) {
            Ok(result) => {
                let i: usize = result.node[1..].parse().expect("node name");
                prop_assert!(feasible.contains(&i), "chose infeasible {}", result.node);
                prop_assert_eq!(result.feasible, feasible.len());
                prop_assert_eq!(result.evaluated, nodes.len());
            }
            Err(Error::Unschedulable(fit)) => {
                prop_assert!(feasible.is_empty(), "unschedulable, yet the model finds {:?}", feasible);
                prop_assert_eq!(fit.failures.len(), nodes.len());
                let prefix = format!("0/{} nodes are available: ", nodes.len());
                prop_assert!(fit.to_string().starts_with(&prefix));
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
