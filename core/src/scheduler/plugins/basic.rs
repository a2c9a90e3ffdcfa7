//! NodeUnschedulable and NodeName.

use k8s_openapi::api::core::v1::{Pod, Taint};

use super::taints::tolerated;
use crate::scheduler::{CycleState, FilterPlugin, NodeInfo, Status};

/// Keeps pods off cordoned nodes (`spec.unschedulable`) unless they tolerate the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl NodeUnschedulable {
    /// The reason a node is rejected.
    pub const REASON: &'static str = "node(s) were unschedulable";
    /// The taint whose toleration lets a pod onto a cordoned node.
    pub const TAINT_KEY: &'static str = "node.kubernetes.io/unschedulable";
}

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::Success;
        }
        let taint = Taint {
            key: Self::TAINT_KEY.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        if tolerated(tolerations, &taint) { Status::Success } else { Status::unresolvable(Self::REASON) }
    }

    /// Reads only the node object and the pod.
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

/// Keeps a pod that names a node (`spec.nodeName`) off every other node.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeName;

impl NodeName {
    /// The reason a node is rejected.
    pub const REASON: &'static str = "node(s) didn't match the requested node name";
}

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            None | Some("") => Status::Success,
            Some(name) if name == node.name() => Status::Success,
            Some(_) => Status::unresolvable(Self::REASON),
        }
    }

    /// Reads only the node's name and the pod.
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    fn info(n: crate::scheduler::testing::NodeBuilder) -> NodeInfo {
        NodeInfo::new(n.build()).expect("valid node")
    }

    #[test]
    fn node_unschedulable() {
        let state = CycleState::new();
        let key = NodeUnschedulable::TAINT_KEY;
        let cases = [
            ("schedulable node", pod("p"), node("n"), true),
            ("cordoned node", pod("p"), node("n").unschedulable(), false),
            (
                "tolerates the taint",
                pod("p").toleration(key, "Exists", "", "NoSchedule"),
                node("n").unschedulable(),
                true,
            ),
            (
                "tolerates everything",
                pod("p").toleration("", "Exists", "", ""),
                node("n").unschedulable(),
                true,
            ),
            (
                "wrong effect",
                pod("p").toleration(key, "Exists", "", "NoExecute"),
                node("n").unschedulable(),
                false,
            ),
            ("wrong key", pod("p").toleration("other", "Exists", "", ""), node("n").unschedulable(), false),
        ];
        for (name, p, n, fits) in cases {
            let status = NodeUnschedulable.filter(&state, &p.build(), &info(n));
            let want =
                if fits { Status::Success } else { Status::unresolvable("node(s) were unschedulable") };
            assert_eq!(status, want, "{name}");
        }
    }

    #[test]
    fn node_name() {
        let state = CycleState::new();
        let cases = [
            ("no node name", pod("p"), true),
            ("matching", pod("p").on("n"), true),
            ("other node", pod("p").on("m"), false),
        ];
        for (name, p, fits) in cases {
            let status = NodeName.filter(&state, &p.build(), &info(node("n")));
            let want = if fits {
                Status::Success
            } else {
                Status::unresolvable("node(s) didn't match the requested node name")
            };
            assert_eq!(status, want, "{name}");
        }
    }
}
