//! Checks of a finished run, over lists of the pods and nodes read after it: every measured
//! pod bound (where the workload requires it), no node holding more than its allocatable, and
//! a cheap check of the workload's own constraint. Also the reasons pods stayed unbound.

use std::collections::{BTreeMap, HashMap};

use flotilla_core::quantity::Quantity;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};

use crate::workloads::{
    COLOR, HOSTNAME, INITIAL_NAMESPACE, MAX_SKEW, MEASURED_NAMESPACE, NODE_AFFINITY_ZONES, Shape, Workload,
    ZONE,
};

/// The resources checked against each node's allocatable.
const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// One check of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Check {
    /// What was checked.
    pub(crate) name: String,
    /// Whether it held.
    pub(crate) passed: bool,
    /// The figures behind the verdict.
    pub(crate) detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: String) -> Check {
        Check { name: name.to_string(), passed, detail }
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn in_namespace<'a>(pods: &'a [Pod], ns: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
    pods.iter().filter(move |p| p.metadata.namespace.as_deref() == Some(ns))
}

fn label<'a>(labels: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).map(String::as_str)
}

fn has_color(pod: &Pod, color: &str) -> bool {
    label(pod.metadata.labels.as_ref(), COLOR) == Some(color)
}

/// The milli-value of `q`; 0 for what does not parse (the registry validated every quantity).
fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> i64 {
    Quantity::parse(&q.0).map(|q| q.milli_value()).unwrap_or(0)
}

/// The pod's requests of `resource`: the sum over its containers (the harness's pods have no
/// init containers and no overhead).
fn requested(pod: &Pod, resource: &str) -> i64 {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource)))
        .map(milli)
        .sum()
}

/// Runs every check of `workload` on the pods and nodes listed after a run of `shape`.
pub(crate) fn checks(workload: Workload, shape: Shape, pods: &[Pod], nodes: &[Node]) -> Vec<Check> {
    let mut checks = Vec::new();
    let initial: Vec<&Pod> = in_namespace(pods, INITIAL_NAMESPACE).collect();
    let initial_bound = initial.iter().filter(|p| node_of(p).is_some()).count();
    checks.push(Check::new(
        "initial pods that remain are bound",
        initial_bound == initial.len(),
        format!("{initial_bound} of {} remaining ({} created)", initial.len(), shape.initial),
    ));
    if workload.requires_all_bound() {
        let bound = in_namespace(pods, MEASURED_NAMESPACE).filter(|p| node_of(p).is_some()).count();
        checks.push(Check::new(
            "every measured pod bound",
            bound == shape.measured,
            format!("{bound} of {}", shape.measured),
        ));
    }
    checks.push(allocatable(pods, nodes));
    let by_name: HashMap<&str, &Node> =
        nodes.iter().filter_map(|n| n.metadata.name.as_deref().map(|name| (name, n))).collect();
    let zone_of = |pod: &Pod| {
        node_of(pod).and_then(|n| by_name.get(n)).and_then(|n| label(n.metadata.labels.as_ref(), ZONE))
    };
    match workload {
        Workload::PodAntiAffinity => checks.push(anti_affinity(pods, &by_name)),
        Workload::PodAffinity => checks.push(affinity(pods, zone_of)),
        Workload::NodeAffinity => {
            let outside = pods
                .iter()
                .filter(|&p| node_of(p).is_some())
                .filter(|&p| !zone_of(p).is_some_and(|z| NODE_AFFINITY_ZONES.contains(&z)))
                .count();
            checks.push(Check::new(
                "node affinity: every bound pod in zone1 or zone2",
                outside == 0,
                format!("{outside} outside"),
            ));
        }
        Workload::TopologySpread => checks.push(spread(pods, nodes, zone_of)),
        Workload::Basic | Workload::Preemption | Workload::Memory => {}
    }
    checks
}

/// No node holds pods requesting more cpu or memory than it has allocatable, or more pods.
fn allocatable(pods: &[Pod], nodes: &[Node]) -> Check {
    let mut used: HashMap<&str, [i64; 3]> = HashMap::new();
    for pod in pods {
        if let Some(node) = node_of(pod) {
            let u = used.entry(node).or_default();
            for (k, r) in RESOURCES.iter().enumerate() {
                u[k] += requested(pod, r);
            }
            u[2] += 1000;
        }
    }
    let mut over = Vec::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let have = |r: &str| alloc.and_then(|a| a.get(r)).map(milli).unwrap_or(0);
        let u = used.get(name).copied().unwrap_or_default();
        for (k, r) in RESOURCES.iter().chain(&["pods"]).enumerate() {
            if u[k] > have(r) {
                over.push(format!("{name} {r} {}m > {}m", u[k], have(r)));
            }
        }
    }
    let unknown =
        used.keys().filter(|n| !nodes.iter().any(|node| node.metadata.name.as_deref() == Some(n))).count();
    let passed = over.is_empty() && unknown == 0;
    let mut detail = format!("{} nodes used, {} over", used.len(), over.len());
    if unknown > 0 {
        detail.push_str(&format!(", {unknown} unknown nodes"));
    }
    if let Some(first) = over.first() {
        detail.push_str(&format!(" (first: {first})"));
    }
    Check::new("no node over its allocatable cpu, memory or pods", passed, detail)
}

/// No two `color: green` pods on one hostname.
fn anti_affinity(pods: &[Pod], nodes: &HashMap<&str, &Node>) -> Check {
    let mut per_host: HashMap<&str, usize> = HashMap::new();
    for pod in pods.iter().filter(|p| has_color(p, "green")) {
        let host =
            node_of(pod).and_then(|n| nodes.get(n)).and_then(|n| label(n.metadata.labels.as_ref(), HOSTNAME));
        if let Some(host) = host {
            *per_host.entry(host).or_default() += 1;
        }
    }
    let crowded = per_host.values().filter(|&&n| n > 1).count();
    let most = per_host.values().copied().max().unwrap_or(0);
    Check::new(
        "anti-affinity: at most one green pod per hostname",
        crowded == 0,
        format!("{} hostnames used, {crowded} with more than one (most {most})", per_host.len()),
    )
}

/// Every zone with a `color: blue` pod has another (unless there is only one such pod).
fn affinity<'z>(pods: &[Pod], zone_of: impl Fn(&Pod) -> Option<&'z str>) -> Check {
    let blue: Vec<&Pod> = pods.iter().filter(|p| has_color(p, "blue") && node_of(p).is_some()).collect();
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    let mut zoneless = 0;
    for &pod in &blue {
        match zone_of(pod) {
            Some(zone) => *per_zone.entry(zone).or_default() += 1,
            None => zoneless += 1,
        }
    }
    let lonely = per_zone.values().filter(|&&n| n < 2).count();
    let passed = zoneless == 0 && (blue.len() <= 1 || lonely == 0);
    Check::new(
        "affinity: every bound blue pod shares its zone with another",
        passed,
        format!("{} bound, per zone {per_zone:?}, {zoneless} on zoneless nodes", blue.len()),
    )
}

/// The `color: blue` pods' skew across the nodes' zones is within `maxSkew`.
fn spread<'z>(pods: &[Pod], nodes: &'z [Node], zone_of: impl Fn(&Pod) -> Option<&'z str>) -> Check {
    let mut per_zone: BTreeMap<&str, usize> =
        nodes.iter().filter_map(|n| label(n.metadata.labels.as_ref(), ZONE)).map(|z| (z, 0)).collect();
    for pod in pods.iter().filter(|p| has_color(p, "blue")) {
        if let Some(zone) = zone_of(pod) {
            *per_zone.entry(zone).or_default() += 1;
        }
    }
    let max = per_zone.values().copied().max().unwrap_or(0);
    let min = per_zone.values().copied().min().unwrap_or(0);
    Check::new(
        "topology spread: blue pods' skew across zones within maxSkew 5",
        max - min <= MAX_SKEW,
        format!("skew {} per zone {per_zone:?}", max - min),
    )
}

/// Why the measured pods that are not bound are not, most common first: their
/// `PodScheduled=False` message, or that they have none (never tried, or still queued).
pub(crate) fn unbound_reasons(pods: &[Pod]) -> Vec<(String, usize)> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for pod in in_namespace(pods, MEASURED_NAMESPACE).filter(|p| node_of(p).is_none()) {
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let reason = conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| format!("{}: {}", c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or("")))
            .unwrap_or_else(|| "no PodScheduled=False condition (not tried yet, or queued)".to_string());
        *reasons.entry(reason).or_default() += 1;
    }
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    reasons
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: Option<&str>, cpu: &str) -> Node {
        let mut labels = json!({HOSTNAME: name});
        if let Some(zone) = zone {
            labels[ZONE] = json!(zone);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "2"}},
        }))
        .expect("a valid node")
    }

    fn pod(ns: &str, name: &str, node: Option<&str>, color: Option<&str>, cpu: &str) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "500Mi"}}}]},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        if let Some(color) = color {
            pod["metadata"]["labels"] = json!({COLOR: color});
        }
        serde_json::from_value(pod).expect("a valid pod")
    }

    fn shape(initial: usize, measured: usize) -> Shape {
        Shape { nodes: 2, initial, measured }
    }

    fn verdicts(checks: &[Check]) -> Vec<(&str, bool)> {
        checks.iter().map(|c| (c.name.as_str(), c.passed)).collect()
    }

    #[test]
    fn basic_needs_every_measured_pod_bound_and_nodes_within_allocatable() {
        let nodes = [node("n1", None, "1"), node("n2", None, "1")];
        let ok = [
            pod(INITIAL_NAMESPACE, "i", Some("n1"), None, "500m"),
            pod(MEASURED_NAMESPACE, "a", Some("n1"), None, "500m"),
            pod(MEASURED_NAMESPACE, "b", Some("n2"), None, "500m"),
        ];
        let checks = checks(Workload::Basic, shape(1, 2), &ok, &nodes);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        assert_eq!(checks.len(), 3);

        let unbound = [ok[0].clone(), ok[1].clone(), pod(MEASURED_NAMESPACE, "b", None, None, "500m")];
        let checks = checks_of(Workload::Basic, &unbound, &nodes);
        assert_eq!(verdicts(&checks)[1], ("every measured pod bound", false));

        // 3 pods on n1: over its 2 pods and its 1 CPU.
        let crowded = [ok[0].clone(), ok[1].clone(), pod(MEASURED_NAMESPACE, "b", Some("n1"), None, "500m")];
        let checks = checks_of(Workload::Basic, &crowded, &nodes);
        let fit = &checks[2];
        assert!(!fit.passed && fit.detail.contains("n1 cpu 1500m > 1000m"), "{fit:?}");
        assert!(fit.detail.contains("2 over"), "{fit:?}");
    }

    fn checks_of(workload: Workload, pods: &[Pod], nodes: &[Node]) -> Vec<Check> {
        checks(workload, shape(1, 2), pods, nodes)
    }

    #[test]
    fn preemption_does_not_require_its_high_priority_pods_bound() {
        let nodes = [node("n1", None, "4")];
        let pods = [
            pod(INITIAL_NAMESPACE, "low", Some("n1"), None, "900m"),
            pod(MEASURED_NAMESPACE, "high", None, None, "3"),
        ];
        let checks = checks(Workload::Preemption, shape(1, 1), &pods, &nodes);
        assert_eq!(
            verdicts(&checks),
            [
                ("initial pods that remain are bound", true),
                ("no node over its allocatable cpu, memory or pods", true)
            ]
        );
    }

    #[test]
    fn each_constraint_check_catches_its_violation() {
        let zoned = [node("n1", Some("zone1"), "4"), node("n2", Some("zone3"), "4")];
        let cases = [
            (
                Workload::PodAntiAffinity,
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n1"), Some("green"), "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n2"), Some("green"), "1"),
                ],
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n1"), Some("green"), "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n1"), Some("green"), "1"),
                ],
            ),
            (
                Workload::PodAffinity,
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n2"), Some("blue"), "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n2"), Some("blue"), "1"),
                ],
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n1"), Some("blue"), "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n2"), Some("blue"), "1"),
                ],
            ),
            (
                Workload::NodeAffinity,
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n1"), None, "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n1"), None, "1"),
                ],
                vec![
                    pod(INITIAL_NAMESPACE, "a", Some("n1"), None, "1"),
                    pod(MEASURED_NAMESPACE, "b", Some("n2"), None, "1"),
                ],
            ),
        ];
        for (workload, good, bad) in cases {
            let last =
                |pods: &[Pod]| checks(workload, shape(1, 1), pods, &zoned).pop().expect("a constraint check");
            assert!(last(&good).passed, "{workload}: {:?}", last(&good));
            assert!(!last(&bad).passed, "{workload}: {:?}", last(&bad));
        }
    }

    #[test]
    fn spread_counts_empty_zones_and_allows_max_skew() {
        let nodes = [
            node("a", Some("moon-1"), "100"),
            node("b", Some("moon-2"), "100"),
            node("c", Some("moon-3"), "100"),
        ];
        let blue_on = |node: &str, n: usize| -> Vec<Pod> {
            (0..n)
                .map(|i| pod(MEASURED_NAMESPACE, &format!("{node}{i}"), Some(node), Some("blue"), "1m"))
                .collect()
        };
        let skew_5: Vec<Pod> = [blue_on("a", 5), blue_on("b", 3)].concat();
        let check = spread(&skew_5, &nodes, |p| {
            node_of(p).map(|n| match n {
                "a" => "moon-1",
                "b" => "moon-2",
                _ => "moon-3",
            })
        });
        assert!(check.passed, "{check:?}");
        let skew_6: Vec<Pod> = blue_on("a", 6);
        let check = spread(&skew_6, &nodes, |p| node_of(p).map(|_| "moon-1"));
        assert!(!check.passed && check.detail.starts_with("skew 6"), "{check:?}");
    }

    #[test]
    fn unbound_pods_are_grouped_by_their_condition() {
        let mut waiting = pod(MEASURED_NAMESPACE, "w", None, None, "1");
        waiting.status =
            serde_json::from_value(json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient cpu."}]}))
            .expect("a valid status");
        let pods = [
            waiting.clone(),
            waiting,
            pod(MEASURED_NAMESPACE, "q", None, None, "1"),
            pod(MEASURED_NAMESPACE, "b", Some("n1"), None, "1"),
            pod(INITIAL_NAMESPACE, "other", None, None, "1"),
        ];
        assert_eq!(
            unbound_reasons(&pods),
            [
                ("Unschedulable: 0/2 nodes are available: 2 Insufficient cpu.".to_string(), 2),
                ("no PodScheduled=False condition (not tried yet, or queued)".to_string(), 1),
            ]
        );
    }
}
