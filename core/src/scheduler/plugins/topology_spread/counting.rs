//! Counting matching pods per topology domain over the snapshot, once per scheduling cycle.
//!
//! This runs over every node and every pod of the cluster for each pod scheduled, and its time
//! goes mostly to cache misses on nodes' labels and on pods. So it looks each node's topology
//! values up once, checks the inclusion policies only when they can reject a node, reads each
//! existing pod once for all constraints (and leaves a pod without labels out before reading
//! its namespace when no selector matches one), and keys its tally by the node labels' own
//! strings, copying only the domain names into the cycle state at the end.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Toleration};

use super::constraint::Constraint;
use super::domains::Domains;
use crate::scheduler::plugins::NodeAffinity;
use crate::scheduler::plugins::pod_affinity_terms::pod_labels;
use crate::scheduler::plugins::taints::tolerated;
use crate::scheduler::{CycleState, FilterPlugin, NodeInfo, PreFilterPlugin, Snapshot};

/// Whether `pod` counts for a constraint of an incoming pod in `namespace` (before its
/// selector): in that namespace and not terminating.
pub(super) fn counts_in(pod: &Pod, namespace: &str) -> bool {
    pod.metadata.deletion_timestamp.is_none() && pod.metadata.namespace.as_deref().unwrap_or("") == namespace
}

/// The pods on `node` in `namespace` that `c` counts, terminating pods left out.
pub(super) fn count_matching(node: &NodeInfo, c: &Constraint, namespace: &str) -> i64 {
    if !c.counts_pods {
        return 0;
    }
    let n = node.pods().filter(|p| counts_in(p, namespace) && c.selector.matches(pod_labels(p))).count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The constraints' inclusion policies for one incoming pod: which nodes' domains count.
pub(super) struct Inclusion<'p> {
    pod: &'p Pod,
    /// NodeAffinity's state for the pod; `None` when no constraint honors node affinity or
    /// the pod has neither a node selector nor required node affinity, so every node passes.
    affinity: Option<CycleState>,
    tolerations: &'p [Toleration],
}

impl<'p> Inclusion<'p> {
    /// The policies of `constraints` for `pod`.
    pub(super) fn new(pod: &'p Pod, constraints: &[Constraint]) -> Inclusion<'p> {
        let affinity = (constraints.iter().any(|c| c.honor_node_affinity) && selects_nodes(pod)).then(|| {
            let mut state = CycleState::new();
            // NodeAffinity's pre-filter only parses the pod; it reads no node.
            NodeAffinity.pre_filter(&mut state, pod, &Snapshot::default());
            state
        });
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        Inclusion { pod, affinity, tolerations }
    }

    /// Whether `node` passes the pod's node selector and required node affinity.
    fn affinity_ok(&self, node: &NodeInfo) -> bool {
        self.affinity.as_ref().is_none_or(|state| NodeAffinity.filter(state, self.pod, node).is_success())
    }

    /// Whether the pod tolerates every `NoSchedule` and `NoExecute` taint of `node`.
    fn taints_ok(&self, node: &NodeInfo) -> bool {
        !node.taints().iter().any(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(self.tolerations, t)
        })
    }

    /// Which of `constraints` count `node`'s domain, by the constraints' policies; a node
    /// without every topology key counts for none (checked by the caller). Each policy is
    /// evaluated at most once, and only if a constraint honors it.
    pub(super) fn counting<'c>(
        &self,
        node: &NodeInfo,
        constraints: &'c [Constraint],
    ) -> impl Iterator<Item = (usize, &'c Constraint)> {
        let (mut affinity_ok, mut taints_ok) = (None, None);
        constraints.iter().enumerate().filter(move |(_, c)| {
            (!c.honor_node_affinity || *affinity_ok.get_or_insert_with(|| self.affinity_ok(node)))
                && (!c.honor_taints || *taints_ok.get_or_insert_with(|| self.taints_ok(node)))
        })
    }
}

/// Whether `pod` has a node selector or required node affinity: without either, NodeAffinity
/// passes every node.
fn selects_nodes(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some_and(|a| a.required_during_scheduling_ignored_during_execution.is_some())
}

/// A constraint's count on a node it does not count: the node lacks a topology key or fails
/// the constraint's inclusion policies, or the constraint is left to the score.
pub(super) const NOT_COUNTED: i64 = i64::MIN;

/// Counts one incoming pod's constraints, node by node.
pub(super) struct Counter<'p, 'c> {
    pod: &'p Pod,
    constraints: &'c [Constraint],
    namespace: &'p str,
    inclusion: Inclusion<'p>,
    /// Whether each constraint is counted (not left to the score).
    counted: Vec<bool>,
    /// Whether a selector matches a pod without labels (`!app`, `app notin (x)`).
    unlabeled_match: bool,
}

impl<'p, 'c> Counter<'p, 'c> {
    /// The counter for `pod`'s `constraints`; those for which `skip` holds count nowhere.
    pub(super) fn new(
        pod: &'p Pod,
        constraints: &'c [Constraint],
        skip: impl Fn(&Constraint) -> bool,
    ) -> Self {
        Counter {
            pod,
            constraints,
            namespace: pod.metadata.namespace.as_deref().unwrap_or(""),
            inclusion: Inclusion::new(pod, constraints),
            counted: constraints.iter().map(|c| !skip(c)).collect(),
            unlabeled_match: constraints
                .iter()
                .any(|c| c.counts_pods && c.selector.matches(&BTreeMap::new())),
        }
    }

    /// Whether any constraint is counted.
    pub(super) fn counts_any(&self) -> bool {
        self.counted.contains(&true)
    }

    /// Everything the counts depend on besides the snapshot: the namespace, each constraint's
    /// topology key, selector and policies, and the parts of the pod the policies read. Two
    /// pods with the same key get the same counts.
    pub(super) fn key(&self) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(256);
        let _ = write!(key, "{}", self.namespace);
        for (c, counted) in self.constraints.iter().zip(&self.counted) {
            let _ = write!(
                key,
                "\0{counted}|{}|{}|{}|{}|{:?}",
                c.topology_key, c.counts_pods, c.honor_node_affinity, c.honor_taints, c.selector
            );
        }
        let spec = self.pod.spec.as_ref();
        if self.constraints.iter().any(|c| c.honor_node_affinity) {
            let affinity = spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
            let _ = write!(key, "\0{:?}|{:?}", spec.and_then(|s| s.node_selector.as_ref()), affinity);
        }
        if self.constraints.iter().any(|c| c.honor_taints) {
            let _ = write!(key, "\0{:?}", self.inclusion.tolerations);
        }
        key
    }

    /// Writes each constraint's matching pods on `node` into `out` ([`NOT_COUNTED`] for the
    /// constraints not counting it) and, when the node has every topology key, the node's
    /// value of each key into `values`. Only nodes with every constraint's topology key count,
    /// each for the constraints whose inclusion policies it passes.
    pub(super) fn node<'n>(&self, node: &'n NodeInfo, values: &mut Vec<&'n str>, out: &mut [i64]) {
        out.fill(NOT_COUNTED);
        let labels = node.labels();
        values.clear();
        values.extend(
            self.constraints.iter().map_while(|c| labels.get(c.topology_key.as_str()).map(String::as_str)),
        );
        if values.len() < self.constraints.len() {
            return;
        }
        let mut pods = false;
        for (i, c) in self.inclusion.counting(node, self.constraints).filter(|&(i, _)| self.counted[i]) {
            out[i] = 0;
            pods |= c.counts_pods;
        }
        if !pods {
            return;
        }
        for p in node.pods() {
            let labels = pod_labels(p);
            // Reading the pod's namespace costs a cache miss per pod: a pod without labels
            // that no selector would match is left out before.
            if (labels.is_empty() && !self.unlabeled_match) || !counts_in(p, self.namespace) {
                continue;
            }
            for (c, n) in self.constraints.iter().zip(out.iter_mut()) {
                if *n != NOT_COUNTED && c.counts_pods && c.selector.matches(labels) {
                    *n += 1;
                }
            }
        }
    }
}

/// Matching pods per domain, for each constraint, over `nodes` (kube-scheduler's
/// `TpValueToMatchNum`): only nodes with every constraint's topology key count, each for the
/// constraints whose inclusion policies it passes. Constraints for which `skip` holds get no
/// domains (the score counts hostname domains itself).
pub(super) fn domain_counts<'a>(
    pod: &Pod,
    constraints: &[Constraint],
    nodes: impl IntoIterator<Item = &'a NodeInfo>,
    skip: impl Fn(&Constraint) -> bool,
) -> Vec<Domains<Box<str>>> {
    let counter = Counter::new(pod, constraints, skip);
    let mut tallies: Vec<Domains<&'a str>> = constraints.iter().map(|_| Domains::default()).collect();
    if counter.counts_any() {
        let mut values = Vec::with_capacity(constraints.len());
        let mut here = vec![NOT_COUNTED; constraints.len()];
        for node in nodes {
            counter.node(node, &mut values, &mut here);
            for ((tally, &n), &value) in tallies.iter_mut().zip(&here).zip(&values) {
                if n != NOT_COUNTED {
                    tally.add(value, n);
                }
            }
        }
    }
    tallies.into_iter().map(Domains::into_owned).collect()
}
