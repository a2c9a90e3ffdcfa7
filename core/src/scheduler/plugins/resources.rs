//! NodeResourcesFit and NodeResourcesBalancedAllocation.

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::resource_names::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS};
use crate::scheduler::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, PodRequests, PreFilterPlugin, ScorePlugin, Snapshot,
    Status,
};

/// The pod's requests, computed once per cycle.
#[derive(Clone, Debug)]
struct FitState(PodRequests);

/// The pod's requests from the cycle state, or computed now if no pre-filter or pre-score
/// stored them.
fn requests<'a>(
    state: &'a CycleState,
    pod: &Pod,
    owned: &'a mut Option<PodRequests>,
) -> Result<&'a PodRequests, Status> {
    if let Some(FitState(r)) = state.get::<FitState>() {
        return Ok(r);
    }
    let computed = PodRequests::of(pod).map_err(|e| Status::error(e.to_string()))?;
    Ok(owned.insert(computed))
}

fn store_requests(state: &mut CycleState, pod: &Pod) -> Status {
    if state.get::<FitState>().is_some() {
        return Status::Success;
    }
    match PodRequests::of(pod) {
        Ok(r) => {
            state.insert(FitState(r));
            Status::Success
        }
        Err(e) => Status::error(e.to_string()),
    }
}

/// Resources other than cpu, memory, ephemeral storage and pods that the scheduler accounts
/// for (Kubernetes' scalar resources): extended (`example.com/gpu`), prefixed native
/// (`kubernetes.io/...`), hugepages and attachable volumes. Others are ignored.
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// How [`NodeResourcesFit`] scores nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer nodes with the most free capacity: per resource
    /// `(allocatable - requested) * 100 / allocatable`.
    #[default]
    LeastAllocated,
    /// Prefer the fullest nodes (bin packing): per resource `requested * 100 / allocatable`.
    MostAllocated,
}

/// Filters out nodes without room for the pod's requests, and scores nodes by their
/// allocation after placing the pod. Requests count the pod itself as one `pods`.
#[derive(Clone, Debug)]
pub struct NodeResourcesFit {
    /// The scoring strategy.
    pub strategy: ScoringStrategy,
    /// The resources scored and their weights (default cpu 1, memory 1).
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            strategy: ScoringStrategy::LeastAllocated,
            resources: vec![(CPU.to_string(), 1), (MEMORY.to_string(), 1)],
        }
    }
}

impl NodeResourcesFit {
    /// The default resources with `strategy`.
    pub fn with_strategy(strategy: ScoringStrategy) -> Self {
        NodeResourcesFit { strategy, ..Default::default() }
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        store_requests(state, pod)
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let mut owned = None;
        let pod_requests = match requests(state, pod, &mut owned) {
            Ok(r) => &r.requests,
            Err(status) => return status,
        };
        let (alloc, used) = (node.allocatable(), node.requested());
        let free = |name: &str| alloc.get(name).saturating_sub(used.get(name));
        let mut reasons = Vec::new();
        if free(PODS) < 1000 {
            reasons.push("Too many pods".to_string());
        }
        for name in [CPU, MEMORY, EPHEMERAL_STORAGE] {
            let want = pod_requests.get(name);
            if want > 0 && want > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        for (name, want) in pod_requests.iter() {
            if is_scalar(name) && want > 0 && want > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() { Status::Success } else { Status::Unschedulable { reasons } }
    }

    /// Reads the node's requests and the pod's (which no hook changes).
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

/// Allocatable and requested-after-placing-the-pod of each scored resource; a resource the
/// node does not have, or a scalar resource the pod does not request, is left out.
/// Computed lazily: scoring calls it for every scored node.
fn allocation<'a>(
    node: &'a NodeInfo,
    pod: &'a PodRequests,
    resources: &'a [(String, i64)],
    non_zero: bool,
) -> impl Iterator<Item = (i64, i64, i64)> + Clone + 'a {
    resources.iter().filter_map(move |(name, weight)| {
        let alloc = node.allocatable().get(name);
        let pod_request = pod.requests.get(name);
        if is_scalar(name) && pod_request == 0 {
            return None;
        }
        let requested = if non_zero && (name == CPU || name == MEMORY) {
            node.non_zero_requested().get(name).saturating_add(pod.non_zero.get(name))
        } else {
            node.requested().get(name).saturating_add(pod_request)
        };
        (alloc != 0).then_some((alloc, requested, *weight))
    })
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[&NodeInfo]) -> Status {
        store_requests(state, pod)
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(FitState(pod_requests)) = state.get::<FitState>() else { return 0 };
        let (mut total, mut weights) = (0i128, 0i128);
        for (alloc, requested, weight) in allocation(node, pod_requests, &self.resources, true) {
            let (alloc, requested) = (i128::from(alloc), i128::from(requested));
            let score = match self.strategy {
                ScoringStrategy::LeastAllocated if requested > alloc => 0,
                ScoringStrategy::LeastAllocated => (alloc - requested) * 100 / alloc,
                ScoringStrategy::MostAllocated => requested.min(alloc) * 100 / alloc,
            };
            total += score * i128::from(weight);
            weights += i128::from(weight);
        }
        if weights == 0 { 0 } else { i64::try_from(total / weights).unwrap_or(0) }
    }
}

/// Prefers nodes whose resources would be used in equal proportions after placing the pod:
/// `(1 - std) * 100` over the requested fractions of cpu and memory. Pods that request
/// nothing are not scored (every node gets 0), as in Kubernetes.
#[derive(Clone, Debug)]
pub struct NodeResourcesBalancedAllocation {
    /// The resources compared (default cpu and memory; weights are ignored).
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesBalancedAllocation {
    fn default() -> Self {
        NodeResourcesBalancedAllocation { resources: vec![(CPU.to_string(), 1), (MEMORY.to_string(), 1)] }
    }
}

/// Whether the pod requests none of `resources` (then balanced allocation does not score).
#[derive(Clone, Copy, Debug)]
struct BestEffort(bool);

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[&NodeInfo]) -> Status {
        let status = store_requests(state, pod);
        if let Some(FitState(r)) = state.get::<FitState>() {
            let best_effort = self.resources.iter().all(|(name, _)| r.requests.get(name) == 0);
            state.insert(BestEffort(best_effort));
        }
        status
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let (Some(FitState(pod_requests)), Some(BestEffort(false))) =
            (state.get::<FitState>(), state.get::<BestEffort>())
        else {
            return 0;
        };
        let fractions = allocation(node, pod_requests, &self.resources, false)
            .map(|(alloc, requested, _)| (requested as f64 / alloc as f64).min(1.0));
        let mut two = fractions.clone();
        let std = match (two.next(), two.next(), two.next()) {
            (Some(a), Some(b), None) => ((a - b) / 2.0).abs(),
            (Some(_), Some(_), Some(_)) => {
                let n = fractions.clone().count() as f64;
                let mean = fractions.clone().sum::<f64>() / n;
                (fractions.map(|f| (f - mean) * (f - mean)).sum::<f64>() / n).sqrt()
            }
            _ => 0.0,
        };
        // Truncation toward zero, as Go's int64() conversion does.
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{NodeBuilder, PodBuilder, node, pod};

    /// A node with 10 cpu, 20 (bytes of) memory and 32 pods, with one pod of 5 cpu and 19
    /// memory already on it (Kubernetes' fit test fixture).
    fn busy(extra: fn(NodeBuilder) -> NodeBuilder) -> NodeInfo {
        let n = extra(node("n").capacity("10", "20", "32").alloc("ephemeral-storage", "20"));
        let mut info = NodeInfo::new(n.build()).expect("valid");
        info.add_pod(pod("existing").container(&[("cpu", "5"), ("memory", "19")]).arc()).expect("valid");
        info
    }

    fn filter(p: PodBuilder, n: &NodeInfo) -> Status {
        let p = p.build();
        let mut state = CycleState::new();
        assert!(NodeResourcesFit::default().pre_filter(&mut state, &p, &Snapshot::default()).is_success());
        NodeResourcesFit::default().filter(&state, &p, n)
    }

    #[test]
    fn filter_cases() {
        let fail = |r: &[&str]| Status::Unschedulable { reasons: r.iter().map(|s| s.to_string()).collect() };
        let plain = busy(|n| n);
        let cases: Vec<(&str, PodBuilder, Status)> = vec![
            ("no requests fit", pod("p").container(&[]), Status::Success),
            ("fits", pod("p").container(&[("cpu", "1"), ("memory", "1")]), Status::Success),
            ("exactly full", pod("p").container(&[("cpu", "5"), ("memory", "1")]), Status::Success),
            (
                "too much cpu",
                pod("p").container(&[("cpu", "8"), ("memory", "1")]),
                fail(&["Insufficient cpu"]),
            ),
            (
                "too much memory",
                pod("p").container(&[("cpu", "1"), ("memory", "2")]),
                fail(&["Insufficient memory"]),
            ),
            (
                "both",
                pod("p").container(&[("cpu", "6"), ("memory", "2")]),
                fail(&["Insufficient cpu", "Insufficient memory"]),
            ),
            (
                "init container too large",
                pod("p")
                    .container(&[("cpu", "1"), ("memory", "1")])
                    .init_container(&[("cpu", "6"), ("memory", "1")]),
                fail(&["Insufficient cpu"]),
            ),
            (
                "one of several init containers too large",
                pod("p")
                    .container(&[("cpu", "1"), ("memory", "1")])
                    .init_container(&[("cpu", "1"), ("memory", "1")])
                    .init_container(&[("cpu", "1"), ("memory", "2")]),
                fail(&["Insufficient memory"]),
            ),
            (
                "init containers fit when they run one at a time",
                pod("p")
                    .container(&[("cpu", "1")])
                    .init_container(&[("cpu", "5")])
                    .init_container(&[("cpu", "5")]),
                Status::Success,
            ),
            (
                "sidecar adds to later init containers",
                pod("p").sidecar(&[("cpu", "1")]).init_container(&[("cpu", "5")]),
                fail(&["Insufficient cpu"]),
            ),
            (
                "overhead counts",
                pod("p").container(&[("cpu", "5")]).overhead(&[("cpu", "1")]),
                fail(&["Insufficient cpu"]),
            ),
            (
                "ephemeral storage",
                pod("p").container(&[("ephemeral-storage", "21")]),
                fail(&["Insufficient ephemeral-storage"]),
            ),
            (
                "extended resource missing",
                pod("p").container(&[("example.com/gpu", "1")]),
                fail(&["Insufficient example.com/gpu"]),
            ),
            ("unknown unprefixed resource ignored", pod("p").container(&[("foo", "1")]), Status::Success),
        ];
        for (name, p, want) in cases {
            assert_eq!(filter(p, &plain), want, "{name}");
        }

        let gpus = busy(|n| n.alloc("example.com/gpu", "2"));
        assert_eq!(filter(pod("p").container(&[("example.com/gpu", "2")]), &gpus), Status::Success);
        assert_eq!(
            filter(pod("p").container(&[("example.com/gpu", "3")]), &gpus),
            fail(&["Insufficient example.com/gpu"])
        );

        let full = busy(|n| n.alloc("pods", "1"));
        assert_eq!(filter(pod("p").container(&[]), &full), fail(&["Too many pods"]));
        assert_eq!(
            filter(pod("p").container(&[("cpu", "6")]), &full),
            fail(&["Too many pods", "Insufficient cpu"])
        );
    }

    fn score(plugin: &dyn ScorePlugin, p: &Pod, n: &NodeInfo) -> i64 {
        let mut state = CycleState::new();
        assert!(plugin.pre_score(&mut state, p, &[n]).is_success());
        plugin.score(&state, p, n)
    }

    #[test]
    fn least_and_most_allocated_follow_kubernetes_formula() {
        // Kubernetes' LeastAllocated example: node 4000m / 10000 memory, pod 3000m / 5000.
        let mut n = NodeInfo::new(node("n").capacity("4", "10000", "10").build()).expect("valid");
        let p = pod("p").container(&[("cpu", "3"), ("memory", "5000")]).build();
        // cpu (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50: (25+50)/2 = 37.
        assert_eq!(score(&NodeResourcesFit::default(), &p, &n), 37);
        // cpu 75, memory 50: 62.
        assert_eq!(score(&NodeResourcesFit::with_strategy(ScoringStrategy::MostAllocated), &p, &n), 62);
        // Weights: cpu 3, memory 1 -> (25*3 + 50) / 4 = 31.
        let weighted =
            NodeResourcesFit { resources: vec![(CPU.into(), 3), (MEMORY.into(), 1)], ..Default::default() };
        assert_eq!(score(&weighted, &p, &n), 31);
        // Over capacity scores 0 for that resource (least) or caps at 100 (most).
        n.add_pod(pod("big").container(&[("cpu", "4"), ("memory", "0")]).arc()).expect("valid");
        assert_eq!(score(&NodeResourcesFit::default(), &p, &n), 25);
        assert_eq!(score(&NodeResourcesFit::with_strategy(ScoringStrategy::MostAllocated), &p, &n), 75);
    }

    #[test]
    fn scoring_counts_defaults_for_best_effort_pods() {
        let n = NodeInfo::new(node("n").capacity("1", "1000Mi", "10").build()).expect("valid");
        let p = pod("p").container(&[]).build();
        // cpu: 100m of 1000m -> 90; memory: 200Mi of 1000Mi -> 80.
        assert_eq!(score(&NodeResourcesFit::default(), &p, &n), 85);
        assert_eq!(
            score(&NodeResourcesBalancedAllocation::default(), &p, &n),
            0,
            "best effort is not scored"
        );
    }

    #[test]
    fn balanced_allocation_prefers_equal_fractions() {
        let n = NodeInfo::new(node("n").capacity("4", "10000", "10").build()).expect("valid");
        // cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5: std 0.125 -> 87.
        let p = pod("p").container(&[("cpu", "3"), ("memory", "5000")]).build();
        assert_eq!(score(&NodeResourcesBalancedAllocation::default(), &p, &n), 87);
        let even = pod("p").container(&[("cpu", "2"), ("memory", "5000")]).build();
        assert_eq!(score(&NodeResourcesBalancedAllocation::default(), &even, &n), 100);
        // A scalar resource the pod does not request is left out; one it requests counts.
        let three = NodeResourcesBalancedAllocation {
            resources: vec![(CPU.into(), 1), (MEMORY.into(), 1), ("example.com/gpu".into(), 1)],
        };
        assert_eq!(score(&three, &even, &n), 100);
    }
}
