//! TaintToleration: taints repel pods that do not tolerate them.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::scheduler::{
    CycleState, FilterPlugin, NodeInfo, NodeScore, ScorePlugin, Status, default_normalize,
};

/// Whether `toleration` tolerates `taint` (Kubernetes' `Toleration.ToleratesTaint`): an empty
/// effect matches every effect, an empty key every key, and operator `Exists` every value
/// while `Equal` (or none) needs the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    fn nonempty(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|s| !s.is_empty())
    }
    if nonempty(&toleration.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if nonempty(&toleration.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match toleration.operator.as_deref() {
        None | Some("" | "Equal") => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some("Exists") => true,
        Some(_) => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub(crate) fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

/// Filters out nodes with a `NoSchedule` or `NoExecute` taint the pod does not tolerate, and
/// prefers nodes with fewer untolerated `PreferNoSchedule` taints.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let tolerations = tolerations(pod);
        let untolerated = node
            .taints()
            .iter()
            .find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t));
        match untolerated {
            None => Status::Success,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }

    /// Reads only the node's taints and the pod.
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// The number of `PreferNoSchedule` taints not tolerated by the pod's tolerations with
    /// that effect or none.
    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let prefer: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("" | "PreferNoSchedule")))
            .collect();
        let count = node
            .taints()
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule" && !prefer.iter().any(|t| tolerates(t, taint)))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn normalize(&self, scores: &mut [NodeScore<'_>]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    fn filter(p: crate::scheduler::testing::PodBuilder, n: crate::scheduler::testing::NodeBuilder) -> Status {
        TaintToleration.filter(&CycleState::new(), &p.build(), &NodeInfo::new(n.build()).expect("valid"))
    }

    #[test]
    fn filter_cases() {
        let reject =
            |k: &str, v: &str| Status::unresolvable(format!("node(s) had untolerated taint {{{k}: {v}}}"));
        let cases = [
            ("no taints", pod("p"), node("n"), Status::Success),
            (
                "untolerated NoSchedule",
                pod("p"),
                node("n").taint("dedicated", "user1", "NoSchedule"),
                reject("dedicated", "user1"),
            ),
            ("untolerated NoExecute", pod("p"), node("n").taint("k", "", "NoExecute"), reject("k", "")),
            (
                "PreferNoSchedule does not filter",
                pod("p"),
                node("n").taint("k", "v", "PreferNoSchedule"),
                Status::Success,
            ),
            (
                "Equal with the same value",
                pod("p").toleration("dedicated", "Equal", "user1", "NoSchedule"),
                node("n").taint("dedicated", "user1", "NoSchedule"),
                Status::Success,
            ),
            (
                "no operator means Equal",
                pod("p").toleration("dedicated", "", "user1", "NoSchedule"),
                node("n").taint("dedicated", "user1", "NoSchedule"),
                Status::Success,
            ),
            (
                "Equal with another value",
                pod("p").toleration("dedicated", "Equal", "user2", "NoSchedule"),
                node("n").taint("dedicated", "user1", "NoSchedule"),
                reject("dedicated", "user1"),
            ),
            (
                "Exists ignores the value",
                pod("p").toleration("dedicated", "Exists", "", "NoSchedule"),
                node("n").taint("dedicated", "user1", "NoSchedule"),
                Status::Success,
            ),
            (
                "Exists with an empty key tolerates everything",
                pod("p").toleration("", "Exists", "", ""),
                node("n").taint("a", "1", "NoSchedule").taint("b", "2", "NoExecute"),
                Status::Success,
            ),
            (
                "empty effect matches every effect",
                pod("p").toleration("k", "Exists", "", ""),
                node("n").taint("k", "v", "NoExecute"),
                Status::Success,
            ),
            (
                "effect must match",
                pod("p").toleration("k", "Exists", "", "NoSchedule"),
                node("n").taint("k", "v", "NoExecute"),
                reject("k", "v"),
            ),
            (
                "the first untolerated taint is reported",
                pod("p").toleration("a", "Exists", "", ""),
                node("n").taint("a", "1", "NoSchedule").taint("b", "2", "NoSchedule").taint(
                    "c",
                    "3",
                    "NoSchedule",
                ),
                reject("b", "2"),
            ),
            (
                "unknown operator",
                pod("p").toleration("k", "Gt", "1", ""),
                node("n").taint("k", "2", "NoSchedule"),
                reject("k", "2"),
            ),
        ];
        for (name, p, n, want) in cases {
            assert_eq!(filter(p, n), want, "{name}");
        }
    }

    #[test]
    fn a_toleration_with_toleration_seconds_still_tolerates_for_scheduling() {
        // tolerationSeconds bounds how long a pod may stay once a NoExecute taint appears
        // (the taint manager's business); it does not make the scheduler reject the node.
        let mut p = pod("p").toleration("node.kubernetes.io/unreachable", "Exists", "", "NoExecute").build();
        if let Some(t) = p.spec.as_mut().and_then(|s| s.tolerations.as_mut()).and_then(|t| t.first_mut()) {
            t.toleration_seconds = Some(300);
        }
        let n = NodeInfo::new(node("n").taint("node.kubernetes.io/unreachable", "", "NoExecute").build())
            .expect("valid");
        assert_eq!(TaintToleration.filter(&CycleState::new(), &p, &n), Status::Success);
        let seconds =
            p.spec.as_ref().and_then(|s| s.tolerations.as_ref()).and_then(|t| t[0].toleration_seconds);
        assert_eq!(seconds, Some(300), "the case really has tolerationSeconds");
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_no_schedule_taints() {
        let nodes: Vec<NodeInfo> = [
            node("clean"),
            node("one").taint("a", "", "PreferNoSchedule"),
            node("two").taint("a", "", "PreferNoSchedule").taint("b", "", "PreferNoSchedule"),
            node("tolerated").taint("c", "", "PreferNoSchedule").taint("d", "", "NoSchedule"),
        ]
        .into_iter()
        .map(|n| NodeInfo::new(n.build()).expect("valid"))
        .collect();
        // A NoSchedule toleration does not count against PreferNoSchedule taints.
        let p = pod("p")
            .toleration("c", "Exists", "", "PreferNoSchedule")
            .toleration("a", "Exists", "", "NoSchedule")
            .build();
        let state = CycleState::new();
        let mut scores: Vec<NodeScore<'_>> = nodes
            .iter()
            .map(|n| NodeScore { node: n.name(), score: TaintToleration.score(&state, &p, n) })
            .collect();
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 1, 2, 0]);
        ScorePlugin::normalize(&TaintToleration, &mut scores);
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 50, 0, 100]);
    }
}
