//! Pods with labels, affinity terms and spread constraints, for the inter-pod plugins' tests.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Node, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;

use crate::scheduler::testing::pod;
use crate::scheduler::{CycleState, FilterPlugin, NodeScore, PreFilterPlugin, ScorePlugin, Snapshot, Status};

/// A pod in `namespace` with `labels`.
pub(crate) fn labeled(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
    let mut p = pod(name).build();
    p.metadata.namespace = Some(namespace.to_string());
    p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    p
}

/// `p` bound to `node`.
pub(crate) fn bound(mut p: Pod, node: &str) -> Arc<Pod> {
    p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    Arc::new(p)
}

/// A `matchLabels` selector.
pub(crate) fn selector(labels: &[(&str, &str)]) -> ApiSelector {
    ApiSelector {
        match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        match_expressions: None,
    }
}

/// A term over `topology_key` selecting `labels` in the owner's namespace.
pub(crate) fn term(topology_key: &str, labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector(labels)),
        topology_key: topology_key.to_string(),
        ..Default::default()
    }
}

fn affinity(p: &mut Pod) -> &mut Affinity {
    p.spec.get_or_insert_with(Default::default).affinity.get_or_insert_with(Default::default)
}

/// Adds required pod affinity terms.
pub(crate) fn with_affinity(mut p: Pod, terms: Vec<PodAffinityTerm>) -> Pod {
    affinity(&mut p)
        .pod_affinity
        .get_or_insert_with(PodAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(terms);
    p
}

/// Adds required pod anti-affinity terms.
pub(crate) fn with_anti_affinity(mut p: Pod, terms: Vec<PodAffinityTerm>) -> Pod {
    affinity(&mut p)
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(terms);
    p
}

fn weighted(terms: Vec<(i32, PodAffinityTerm)>) -> Option<Vec<WeightedPodAffinityTerm>> {
    Some(
        terms
            .into_iter()
            .map(|(weight, pod_affinity_term)| WeightedPodAffinityTerm { weight, pod_affinity_term })
            .collect(),
    )
}

/// Adds preferred pod affinity and anti-affinity terms with their weights.
pub(crate) fn with_preferred(
    mut p: Pod,
    affinity_terms: Vec<(i32, PodAffinityTerm)>,
    anti_terms: Vec<(i32, PodAffinityTerm)>,
) -> Pod {
    let a = affinity(&mut p);
    a.pod_affinity
        .get_or_insert_with(PodAffinity::default)
        .preferred_during_scheduling_ignored_during_execution = weighted(affinity_terms);
    a.pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default)
        .preferred_during_scheduling_ignored_during_execution = weighted(anti_terms);
    p
}

/// A spread constraint selecting `labels`.
pub(crate) fn spread(
    max_skew: i32,
    topology_key: &str,
    when: &str,
    labels: &[(&str, &str)],
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: topology_key.to_string(),
        when_unsatisfiable: when.to_string(),
        label_selector: Some(selector(labels)),
        ..Default::default()
    }
}

/// Adds spread constraints.
pub(crate) fn with_spread(mut p: Pod, constraints: Vec<TopologySpreadConstraint>) -> Pod {
    p.spec.get_or_insert_with(Default::default).topology_spread_constraints = Some(constraints);
    p
}

/// Runs `plugin`'s pre-filter then its filter on every node: each node's name and verdict.
pub(crate) fn filter_all<P: PreFilterPlugin + FilterPlugin>(
    plugin: &P,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    p: &Pod,
) -> Vec<(String, Status)> {
    let snapshot = Snapshot::new(nodes, pods).expect("valid snapshot");
    let mut state = CycleState::new();
    let pre = plugin.pre_filter(&mut state, p, &snapshot);
    assert_eq!(pre, Status::Success, "pre-filter");
    snapshot.nodes().iter().map(|n| (n.name().to_string(), plugin.filter(&state, p, n))).collect()
}

/// Runs `plugin`'s pre-filter, then pre-score, score and normalize over every node: each
/// node's name and normalized score.
pub(crate) fn score_all<P: PreFilterPlugin + ScorePlugin>(
    plugin: &P,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    p: &Pod,
) -> Vec<(String, i64)> {
    let snapshot = Snapshot::new(nodes, pods).expect("valid snapshot");
    let mut state = CycleState::new();
    assert_eq!(plugin.pre_filter(&mut state, p, &snapshot), Status::Success, "pre-filter");
    let infos: Vec<_> = snapshot.nodes().iter().collect();
    assert_eq!(plugin.pre_score(&mut state, p, &infos), Status::Success, "pre-score");
    let mut scores: Vec<NodeScore<'_>> =
        infos.iter().map(|n| NodeScore { node: n.name(), score: plugin.score(&state, p, n) }).collect();
    plugin.normalize(&mut scores);
    scores.into_iter().map(|s| (s.node.to_string(), s.score)).collect()
}
