//! The workloads: the shapes of kube-scheduler's scheduler_perf test cases (nodes, their
//! labels, the pods of the initial and the measured phase), written from the upstream
//! `performance-config.yaml` files and pod templates (`test/integration/scheduler_perf/`).
//!
//! Every node is `Ready` with 4 CPUs, 32 GiB and 110 pods allocatable (upstream's
//! `node-default.yaml`) and carries `kubernetes.io/hostname` (a kubelet sets it; upstream's
//! template has none, which would make the hostname anti-affinity vacuous). Zone labels follow
//! the upstream `labelNodePrepareStrategy` of each case. Initial pods go to namespace
//! [`INITIAL_NAMESPACE`], measured ones to [`MEASURED_NAMESPACE`] (upstream's `sched-0` and
//! `sched-1`, which the affinity terms list).

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Pod;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The namespace of the initial (unmeasured) pods.
pub(crate) const INITIAL_NAMESPACE: &str = "sched-0";
/// The namespace of the measured pods.
pub(crate) const MEASURED_NAMESPACE: &str = "sched-1";
/// The zone label.
pub(crate) const ZONE: &str = "topology.kubernetes.io/zone";
/// The hostname label.
pub(crate) const HOSTNAME: &str = "kubernetes.io/hostname";
/// The label the affinity and spreading pods match on.
pub(crate) const COLOR: &str = "color";
/// TopologySpreading's `maxSkew`.
pub(crate) const MAX_SKEW: usize = 5;
/// The zones NodeAffinity's pods accept.
pub(crate) const NODE_AFFINITY_ZONES: [&str; 2] = ["zone1", "zone2"];
/// TopologySpreading's zones.
const MOON_ZONES: [&str; 3] = ["moon-1", "moon-2", "moon-3"];
/// Low-priority pods per node in PreemptionBasic: 4 × 900m fill 3.6 of 4 CPUs.
const LOW_PODS_PER_NODE: usize = 4;

/// One scheduler_perf test case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Workload {
    /// `SchedulingBasic`: plain pods (100m, 500Mi).
    Basic,
    /// `SchedulingPodAntiAffinity`: required anti-affinity to each other per hostname.
    PodAntiAffinity,
    /// `SchedulingPodAffinity`: required affinity to each other per zone, one zone.
    PodAffinity,
    /// `SchedulingNodeAffinity`: required node affinity to zone1 or zone2.
    NodeAffinity,
    /// `TopologySpreading`: `DoNotSchedule` spread over three zones, `maxSkew` 5.
    TopologySpread,
    /// `PreemptionBasic`: nodes filled with low-priority pods, then high-priority pods that
    /// fit only by preempting.
    Preemption,
    /// SchedulingBasic's `5000Nodes_50000Pods`, for the process's peak memory.
    Memory,
}

/// Node and pod counts of a run of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Shape {
    /// Simulated nodes.
    pub(crate) nodes: usize,
    /// Pods created and bound before measuring.
    pub(crate) initial: usize,
    /// Pods measured.
    pub(crate) measured: usize,
}

/// The upstream case a workload reproduces, and its CI threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Upstream {
    /// `file: test case/workload`.
    pub(crate) case: &'static str,
    /// The minimum average pods/s `ci-benchmark-scheduler-perf` accepts, if it sets one.
    pub(crate) threshold: Option<f64>,
}

impl Workload {
    /// Every workload, in the order they run by default.
    pub(crate) const ALL: [Workload; 7] = [
        Workload::Basic,
        Workload::PodAntiAffinity,
        Workload::PodAffinity,
        Workload::NodeAffinity,
        Workload::TopologySpread,
        Workload::Preemption,
        Workload::Memory,
    ];

    /// The upstream test case's name (`Memory` is this harness's own).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Basic => "SchedulingBasic",
            Workload::PodAntiAffinity => "SchedulingPodAntiAffinity",
            Workload::PodAffinity => "SchedulingPodAffinity",
            Workload::NodeAffinity => "SchedulingNodeAffinity",
            Workload::TopologySpread => "TopologySpreading",
            Workload::Preemption => "PreemptionBasic",
            Workload::Memory => "Memory",
        }
    }

    /// The short name (`--workloads` takes either).
    fn short(self) -> &'static str {
        match self {
            Workload::Basic => "Basic",
            Workload::PodAntiAffinity => "PodAntiAffinity",
            Workload::PodAffinity => "PodAffinity",
            Workload::NodeAffinity => "NodeAffinity",
            Workload::TopologySpread => "PodTopologySpread",
            Workload::Preemption => "Preemption",
            Workload::Memory => "Memory",
        }
    }

    /// The upstream case and threshold (from the `performance`-labelled workloads of the
    /// per-area `performance-config.yaml` files).
    pub(crate) fn upstream(self) -> Upstream {
        let (case, threshold) = match self {
            Workload::Basic => ("misc: SchedulingBasic/5000Nodes_10000Pods", Some(680.0)),
            Workload::PodAntiAffinity => {
                ("affinity: SchedulingPodAntiAffinity/5000Nodes_2000Pods", Some(60.0))
            }
            Workload::PodAffinity => ("affinity: SchedulingPodAffinity/5000Nodes_5000Pods", Some(35.0)),
            Workload::NodeAffinity => ("affinity: SchedulingNodeAffinity/5000Nodes_10000Pods", Some(220.0)),
            // Upstream measures 5,000 pods here; this harness measures 10,000.
            Workload::TopologySpread => {
                ("topology_spreading: TopologySpreading/5000Nodes_5000Pods", Some(460.0))
            }
            // Upstream comments its 5000Nodes case out ("always seems to fail"): no threshold.
            Workload::Preemption => ("misc: PreemptionBasic/5000Nodes (commented out upstream)", None),
            Workload::Memory => ("misc: SchedulingBasic/5000Nodes_50000Pods", Some(810.0)),
        };
        Upstream { case, threshold }
    }

    /// The full-size shape.
    pub(crate) fn full_shape(self) -> Shape {
        let (nodes, initial, measured) = match self {
            Workload::Basic => (5_000, 1_000, 10_000),
            Workload::PodAntiAffinity => (5_000, 1_000, 2_000),
            Workload::PodAffinity => (5_000, 5_000, 5_000),
            Workload::NodeAffinity => (5_000, 5_000, 10_000),
            Workload::TopologySpread => (5_000, 5_000, 10_000),
            Workload::Preemption => (5_000, 20_000, 5_000),
            Workload::Memory => (5_000, 5_000, 50_000),
        };
        Shape { nodes, initial, measured }
    }

    /// The shape with node and pod counts multiplied by `scale` (rounded; at least one node
    /// and one measured pod). PreemptionBasic keeps its four low-priority pods per node.
    pub(crate) fn shape(self, scale: f64) -> Shape {
        let full = self.full_shape();
        let scaled = |n: usize| (n as f64 * scale).round().max(0.0) as usize;
        let nodes = scaled(full.nodes).max(1);
        let measured = scaled(full.measured).max(1);
        let initial = match self {
            Workload::Preemption => nodes * LOW_PODS_PER_NODE,
            _ => scaled(full.initial),
        };
        Shape { nodes, initial, measured }
    }

    /// Whether every measured pod must be bound for the run to pass. PreemptionBasic's
    /// measured pods fit only after preemption, so their bound count is reported, not required.
    pub(crate) fn requires_all_bound(self) -> bool {
        self != Workload::Preemption
    }

    /// The labels of node `i` (`name` is its name): the hostname, and the zone this workload
    /// gives it (`rng` picks TopologySpreading's, as upstream picks one at random).
    pub(crate) fn node_labels(self, name: &str, rng: &mut StdRng) -> serde_json::Map<String, Value> {
        let mut labels = serde_json::Map::new();
        labels.insert(HOSTNAME.into(), name.into());
        let zone = match self {
            Workload::PodAffinity | Workload::NodeAffinity => Some("zone1"),
            Workload::TopologySpread => Some(MOON_ZONES[rng.random_range(0..MOON_ZONES.len())]),
            _ => None,
        };
        if let Some(zone) = zone {
            labels.insert(ZONE.into(), zone.into());
        }
        labels
    }

    /// The generator of node labels for a run seeded with `seed`.
    pub(crate) fn node_rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// The template of the initial pods.
    pub(crate) fn initial_template(self) -> Template {
        let pod = match self {
            Workload::Basic | Workload::Memory | Workload::TopologySpread => plain_pod("100m"),
            Workload::PodAntiAffinity => anti_affinity_pod(),
            Workload::PodAffinity => affinity_pod(),
            Workload::NodeAffinity => node_affinity_pod(),
            Workload::Preemption => low_priority_pod(),
        };
        Template::new(pod, INITIAL_NAMESPACE, "init")
    }

    /// The template of the measured pods.
    pub(crate) fn measured_template(self) -> Template {
        let pod = match self {
            Workload::Basic | Workload::Memory => plain_pod("100m"),
            Workload::PodAntiAffinity => anti_affinity_pod(),
            Workload::PodAffinity => affinity_pod(),
            Workload::NodeAffinity => node_affinity_pod(),
            Workload::TopologySpread => spreading_pod(),
            Workload::Preemption => high_priority_pod(),
        };
        Template::new(pod, MEASURED_NAMESPACE, "pod")
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    /// The upstream or the short name, in any case.
    fn from_str(s: &str) -> Result<Workload, String> {
        let s = s.trim();
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s) || w.short().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.short()).collect();
                format!("unknown workload {s:?}; one of {} (or the upstream names)", names.join(", "))
            })
    }
}

/// Pods of one phase: a base pod stamped with names `{prefix}-{i:06}` in one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    base: Pod,
    /// The namespace.
    pub(crate) namespace: &'static str,
    prefix: &'static str,
}

impl Template {
    fn new(base: Value, namespace: &'static str, prefix: &'static str) -> Template {
        // The bases below are fixed, valid pods; a failure here is a bug in this file.
        let base = serde_json::from_value(base).unwrap_or_else(|e| panic!("invalid pod template: {e}"));
        Template { base, namespace, prefix }
    }

    /// The name of pod `i`.
    pub(crate) fn name(&self, i: usize) -> String {
        format!("{}-{i:06}", self.prefix)
    }

    /// Pod `i`.
    pub(crate) fn pod(&self, i: usize) -> Pod {
        let mut pod = self.base.clone();
        pod.metadata.name = Some(self.name(i));
        pod.metadata.namespace = Some(self.namespace.to_string());
        pod
    }
}

/// The pause container of upstream's templates, requesting (and limited to) `cpu` and 500Mi.
fn container(cpu: &str) -> Value {
    let resources = json!({"cpu": cpu, "memory": "500Mi"});
    json!([{
        "name": "pause",
        "image": "registry.k8s.io/pause:3.10",
        "ports": [{"containerPort": 80}],
        "resources": {"requests": resources, "limits": resources},
    }])
}

/// `pod-default.yaml`.
fn plain_pod(cpu: &str) -> Value {
    json!({"metadata": {}, "spec": {"containers": container(cpu)}})
}

/// `pod-with-pod-anti-affinity.yaml`: `color: green`, never two per hostname.
fn anti_affinity_pod() -> Value {
    json!({
        "metadata": {"labels": {COLOR: "green"}},
        "spec": {
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {COLOR: "green"}},
                "topologyKey": HOSTNAME,
                "namespaces": [MEASURED_NAMESPACE, INITIAL_NAMESPACE],
            }]}},
            "containers": container("100m"),
        },
    })
}

/// `pod-with-pod-affinity.yaml`: `color: blue`, in a zone with another such pod.
fn affinity_pod() -> Value {
    json!({
        "metadata": {"labels": {COLOR: "blue"}},
        "spec": {
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {COLOR: "blue"}},
                "topologyKey": ZONE,
                "namespaces": [MEASURED_NAMESPACE, INITIAL_NAMESPACE],
            }]}},
            "containers": container("100m"),
        },
    })
}

/// `pod-with-node-affinity.yaml`: a node in zone1 or zone2.
fn node_affinity_pod() -> Value {
    json!({
        "metadata": {},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": ZONE, "operator": "In", "values": NODE_AFFINITY_ZONES},
                ]}],
            }}},
            "containers": container("100m"),
        },
    })
}

/// `pod-with-topology-spreading.yaml`: `color: blue`, spread over zones with `maxSkew` 5.
fn spreading_pod() -> Value {
    json!({
        "metadata": {"labels": {COLOR: "blue"}},
        "spec": {
            "topologySpreadConstraints": [{
                "maxSkew": MAX_SKEW,
                "topologyKey": ZONE,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {COLOR: "blue"}},
            }],
            "containers": container("100m"),
        },
    })
}

/// `pod-low-priority.yaml`: 900m, no grace period (a victim goes at once).
fn low_priority_pod() -> Value {
    json!({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 0, "containers": container("900m")}})
}

/// The PriorityClass of PreemptionBasic's high-priority pods (created with the cluster).
pub(crate) const HIGH_PRIORITY_CLASS: &str = "scheduler-perf-high";
/// Its value: upstream's `priority: 10`.
pub(crate) const HIGH_PRIORITY: i32 = 10;

/// `pod-high-priority.yaml`: 3 CPUs at priority 10 (through [`HIGH_PRIORITY_CLASS`]).
fn high_priority_pod() -> Value {
    json!({"metadata": {}, "spec": {"priorityClassName": HIGH_PRIORITY_CLASS, "containers": container("3000m")}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_either_form_and_any_case() {
        let cases = [
            ("Basic", Workload::Basic),
            ("schedulingbasic", Workload::Basic),
            ("PodAntiAffinity", Workload::PodAntiAffinity),
            ("SchedulingPodAffinity", Workload::PodAffinity),
            ("nodeaffinity", Workload::NodeAffinity),
            ("PodTopologySpread", Workload::TopologySpread),
            ("TopologySpreading", Workload::TopologySpread),
            ("PreemptionBasic", Workload::Preemption),
            (" memory ", Workload::Memory),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Workload>(), Ok(want), "{input}");
        }
        assert!("Spreading".parse::<Workload>().is_err());
    }

    #[test]
    fn full_shapes_are_the_briefed_sizes_and_scaling_keeps_them_feasible() {
        let full: Vec<(usize, usize, usize)> =
            Workload::ALL.iter().map(|w| w.full_shape()).map(|s| (s.nodes, s.initial, s.measured)).collect();
        assert_eq!(
            full,
            [
                (5_000, 1_000, 10_000),
                (5_000, 1_000, 2_000),
                (5_000, 5_000, 5_000),
                (5_000, 5_000, 10_000),
                (5_000, 5_000, 10_000),
                (5_000, 20_000, 5_000),
                (5_000, 5_000, 50_000),
            ]
        );
        for w in Workload::ALL {
            assert_eq!(w.shape(1.0), w.full_shape(), "{w}");
            let tiny = w.shape(0.01);
            assert_eq!(tiny.nodes, 50, "{w}");
            assert!(tiny.measured >= 1);
        }
        // Anti-affinity needs a node per pod; preemption fills each node with four pods.
        let anti = Workload::PodAntiAffinity.shape(0.01);
        assert!(anti.initial + anti.measured <= anti.nodes);
        assert_eq!(Workload::Preemption.shape(0.01).initial, 200);
        let smallest = Workload::Basic.shape(0.0);
        assert_eq!((smallest.nodes, smallest.initial, smallest.measured), (1, 0, 1));
    }

    #[test]
    fn templates_carry_the_upstream_constraints() {
        let anti = Workload::PodAntiAffinity.measured_template().pod(7);
        assert_eq!(anti.metadata.name.as_deref(), Some("pod-000007"));
        assert_eq!(anti.metadata.namespace.as_deref(), Some(MEASURED_NAMESPACE));
        let terms = anti
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
            .expect("required anti-affinity");
        assert_eq!(terms[0].topology_key, HOSTNAME);

        let spread = Workload::TopologySpread.measured_template().pod(0);
        let constraint =
            &spread.spec.as_ref().and_then(|s| s.topology_spread_constraints.clone()).expect("spread")[0];
        assert_eq!((constraint.max_skew, constraint.when_unsatisfiable.as_str()), (5, "DoNotSchedule"));
        let init = Workload::TopologySpread.initial_template().pod(0);
        assert_eq!(init.metadata.labels, None, "TopologySpreading's initial pods are plain");

        let high = Workload::Preemption.measured_template().pod(0);
        // Priority admission sets `priority: 10` from the class; a pod may not set it itself.
        let spec = high.spec.as_ref().expect("a spec");
        assert_eq!((spec.priority_class_name.as_deref(), spec.priority), (Some(HIGH_PRIORITY_CLASS), None));
        assert_eq!(HIGH_PRIORITY, 10);
        let low = Workload::Preemption.initial_template().pod(0);
        assert_eq!(low.spec.as_ref().and_then(|s| s.termination_grace_period_seconds), Some(0));
        assert_eq!(low.metadata.namespace.as_deref(), Some(INITIAL_NAMESPACE));
    }

    #[test]
    fn node_zones_follow_each_case() {
        let mut rng = Workload::node_rng(1);
        let zone = |w: Workload, rng: &mut StdRng| {
            w.node_labels("n", rng).get(ZONE).and_then(Value::as_str).map(str::to_owned)
        };
        assert_eq!(zone(Workload::Basic, &mut rng), None);
        assert_eq!(zone(Workload::PodAffinity, &mut rng).as_deref(), Some("zone1"));
        assert_eq!(zone(Workload::NodeAffinity, &mut rng).as_deref(), Some("zone1"));
        let moons: std::collections::BTreeSet<String> =
            (0..300).filter_map(|_| zone(Workload::TopologySpread, &mut rng)).collect();
        assert_eq!(moons.len(), 3, "{moons:?}");
        assert_eq!(Workload::Basic.node_labels("node-1", &mut rng)[HOSTNAME], "node-1");
    }
}
