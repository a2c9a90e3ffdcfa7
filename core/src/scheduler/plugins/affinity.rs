//! NodeAffinity: `spec.nodeSelector` and node affinity's required and preferred terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::node_selector::Term;
use crate::scheduler::{
    CycleState, FilterPlugin, NodeInfo, NodeScore, PreFilterPlugin, ScorePlugin, Snapshot, Status,
    default_normalize,
};

/// What a pod requires of a node's labels and name.
#[derive(Clone, Debug)]
struct Required {
    node_selector: BTreeMap<String, String>,
    /// The valid required terms, one of which must match; `None` if the pod has none.
    terms: Option<Vec<Term>>,
}

impl Required {
    fn of(pod: &Pod) -> Required {
        let spec = pod.spec.as_ref();
        let node_selector = spec.and_then(|s| s.node_selector.clone()).unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|sel| sel.node_selector_terms.iter().filter_map(Term::parse).collect());
        Required { node_selector, terms }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.terms.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(labels, node.name())))
    }
}

/// The pod's weighted preferred terms.
#[derive(Clone, Debug)]
struct Preferred(Vec<(i64, Term)>);

impl Preferred {
    /// The terms with a non-zero weight; an invalid one is an error, as in Kubernetes.
    fn of(pod: &Pod) -> Result<Preferred, String> {
        let terms = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or(&[]);
        let mut out = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            let p = &t.preference;
            let empty = p.match_expressions.as_deref().unwrap_or(&[]).is_empty()
                && p.match_fields.as_deref().unwrap_or(&[]).is_empty();
            if t.weight == 0 || empty {
                continue;
            }
            let term = Term::parse(p).ok_or_else(|| {
                format!("spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}] is invalid")
            })?;
            out.push((i64::from(t.weight), term));
        }
        Ok(Preferred(out))
    }
}

/// Keeps a pod on nodes matching its `spec.nodeSelector` and its required node affinity
/// (one of the terms; every requirement of a term), and prefers nodes matching heavier
/// preferred terms. Invalid required terms match no node, as in Kubernetes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeAffinity;

impl NodeAffinity {
    /// The reason a node is rejected.
    pub const REASON: &'static str = "node(s) didn't match Pod's node affinity/selector";
}

impl PreFilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        state.insert(Required::of(pod));
        Status::Success
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let matches = match state.get::<Required>() {
            Some(required) => required.matches(node),
            // Without the pre-filter, parse here (as Kubernetes falls back).
            None => Required::of(pod).matches(node),
        };
        if matches { Status::Success } else { Status::unresolvable(Self::REASON) }
    }

    /// Reads only the node's labels and the pod's own terms.
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[&NodeInfo]) -> Status {
        match Preferred::of(pod) {
            Ok(p) => {
                state.insert(p);
                Status::Success
            }
            Err(message) => Status::error(message),
        }
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(Preferred(terms)) = state.get::<Preferred>() else { return 0 };
        terms.iter().filter(|(_, t)| t.matches(node.labels(), node.name())).map(|(w, _)| w).sum()
    }

    fn normalize(&self, scores: &mut [NodeScore<'_>]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{NodeBuilder, PodBuilder, field_term, node, pod, term};

    fn fits(p: PodBuilder, n: NodeBuilder) -> bool {
        let p = p.build();
        let n = NodeInfo::new(n.build()).expect("valid");
        let mut state = CycleState::new();
        assert!(NodeAffinity.pre_filter(&mut state, &p, &Snapshot::default()).is_success());
        let with_state = NodeAffinity.filter(&state, &p, &n);
        let without = NodeAffinity.filter(&CycleState::new(), &p, &n);
        assert_eq!(with_state, without);
        match with_state {
            Status::Success => true,
            s => {
                assert_eq!(s, Status::unresolvable("node(s) didn't match Pod's node affinity/selector"));
                false
            }
        }
    }

    #[test]
    fn filter_cases() {
        let zone = |z: &str| node("n1").label("zone", z).label("gen", "5");
        let cases: Vec<(&str, PodBuilder, NodeBuilder, bool)> = vec![
            ("nothing required", pod("p"), zone("a"), true),
            ("nodeSelector matches", pod("p").node_selector("zone", "a"), zone("a"), true),
            ("nodeSelector differs", pod("p").node_selector("zone", "a"), zone("b"), false),
            ("nodeSelector on a missing label", pod("p").node_selector("disk", "ssd"), zone("a"), false),
            ("In", pod("p").required(vec![term(&[("zone", "In", &["a", "b"])])]), zone("b"), true),
            ("In, other value", pod("p").required(vec![term(&[("zone", "In", &["a"])])]), zone("c"), false),
            (
                "In, missing label",
                pod("p").required(vec![term(&[("disk", "In", &["ssd"])])]),
                zone("a"),
                false,
            ),
            ("NotIn", pod("p").required(vec![term(&[("zone", "NotIn", &["a"])])]), zone("b"), true),
            (
                "NotIn, listed value",
                pod("p").required(vec![term(&[("zone", "NotIn", &["a"])])]),
                zone("a"),
                false,
            ),
            (
                "NotIn, missing label",
                pod("p").required(vec![term(&[("disk", "NotIn", &["ssd"])])]),
                zone("a"),
                true,
            ),
            ("Exists", pod("p").required(vec![term(&[("zone", "Exists", &[])])]), zone("a"), true),
            ("Exists, missing", pod("p").required(vec![term(&[("disk", "Exists", &[])])]), zone("a"), false),
            (
                "DoesNotExist",
                pod("p").required(vec![term(&[("disk", "DoesNotExist", &[])])]),
                zone("a"),
                true,
            ),
            (
                "DoesNotExist, present",
                pod("p").required(vec![term(&[("zone", "DoesNotExist", &[])])]),
                zone("a"),
                false,
            ),
            ("Gt", pod("p").required(vec![term(&[("gen", "Gt", &["4"])])]), zone("a"), true),
            ("Gt, equal", pod("p").required(vec![term(&[("gen", "Gt", &["5"])])]), zone("a"), false),
            ("Lt", pod("p").required(vec![term(&[("gen", "Lt", &["6"])])]), zone("a"), true),
            ("Lt, equal", pod("p").required(vec![term(&[("gen", "Lt", &["5"])])]), zone("a"), false),
            (
                "Gt on a non-integer label",
                pod("p").required(vec![term(&[("zone", "Gt", &["1"])])]),
                zone("a"),
                false,
            ),
            ("Gt, missing label", pod("p").required(vec![term(&[("disk", "Gt", &["1"])])]), zone("a"), false),
            (
                "Gt with a non-integer value is invalid",
                pod("p").required(vec![term(&[("gen", "Gt", &["x"])])]),
                zone("a"),
                false,
            ),
            (
                "Gt with two values is invalid",
                pod("p").required(vec![term(&[("gen", "Gt", &["1", "2"])])]),
                zone("a"),
                false,
            ),
            (
                "In without values is invalid",
                pod("p").required(vec![term(&[("zone", "In", &[])])]),
                zone("a"),
                false,
            ),
            (
                "Exists with values is invalid",
                pod("p").required(vec![term(&[("zone", "Exists", &["a"])])]),
                zone("a"),
                false,
            ),
            ("unknown operator", pod("p").required(vec![term(&[("zone", "Is", &["a"])])]), zone("a"), false),
            (
                "requirements of a term are ANDed",
                pod("p").required(vec![term(&[("zone", "In", &["a"]), ("gen", "Gt", &["7"])])]),
                zone("a"),
                false,
            ),
            (
                "terms are ORed",
                pod("p").required(vec![term(&[("zone", "In", &["x"])]), term(&[("gen", "Gt", &["1"])])]),
                zone("a"),
                true,
            ),
            (
                "an invalid term is dropped, the others still count",
                pod("p").required(vec![term(&[("zone", "Gt", &["x"])]), term(&[("zone", "In", &["a"])])]),
                zone("a"),
                true,
            ),
            ("no terms match nothing", pod("p").required(vec![]), zone("a"), false),
            ("an empty term matches nothing", pod("p").required(vec![term(&[])]), zone("a"), false),
            (
                "matchFields In",
                pod("p").required(vec![field_term(&[("metadata.name", "In", &["n1"])])]),
                zone("a"),
                true,
            ),
            (
                "matchFields In, other",
                pod("p").required(vec![field_term(&[("metadata.name", "In", &["n2"])])]),
                zone("a"),
                false,
            ),
            (
                "matchFields NotIn",
                pod("p").required(vec![field_term(&[("metadata.name", "NotIn", &["n1"])])]),
                zone("a"),
                false,
            ),
            (
                "matchFields with two values is invalid",
                pod("p").required(vec![field_term(&[("metadata.name", "In", &["n1", "n2"])])]),
                zone("a"),
                false,
            ),
            (
                "matchFields on another field",
                pod("p").required(vec![field_term(&[("spec.x", "In", &["n1"])])]),
                zone("a"),
                false,
            ),
            (
                "nodeSelector and affinity must both match",
                pod("p").node_selector("zone", "b").required(vec![term(&[("zone", "Exists", &[])])]),
                zone("a"),
                false,
            ),
        ];
        for (name, p, n, want) in cases {
            assert_eq!(fits(p, n), want, "{name}");
        }
    }

    #[test]
    fn score_sums_matching_weights_and_normalizes() {
        let nodes: Vec<NodeInfo> = [
            node("a").label("zone", "a").label("disk", "ssd"),
            node("b").label("zone", "a"),
            node("c").label("zone", "c"),
        ]
        .into_iter()
        .map(|n| NodeInfo::new(n.build()).expect("valid"))
        .collect();
        let p = pod("p")
            .preferred(8, term(&[("zone", "In", &["a"])]))
            .preferred(2, term(&[("disk", "Exists", &[])]))
            .preferred(0, term(&[("zone", "In", &["c"])]))
            .build();
        let mut state = CycleState::new();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(ScorePlugin::pre_score(&NodeAffinity, &mut state, &p, &refs).is_success());
        let mut scores: Vec<NodeScore<'_>> = nodes
            .iter()
            .map(|n| NodeScore { node: n.name(), score: NodeAffinity.score(&state, &p, n) })
            .collect();
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [10, 8, 0]);
        ScorePlugin::normalize(&NodeAffinity, &mut scores);
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 80, 0]);

        let invalid = pod("p").preferred(1, term(&[("zone", "Gt", &["x"])])).build();
        assert!(matches!(
            ScorePlugin::pre_score(&NodeAffinity, &mut state, &invalid, &refs),
            Status::Error { .. }
        ));
    }
}
