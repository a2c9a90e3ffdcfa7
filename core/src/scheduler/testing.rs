//! Builders for nodes and pods in the scheduler's tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    NodeSpec, NodeStatus, Pod, PodSpec, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

fn list(items: &[(&str, &str)]) -> BTreeMap<String, WireQuantity> {
    items.iter().map(|(k, v)| (k.to_string(), WireQuantity(v.to_string()))).collect()
}

/// A node under construction.
pub(crate) struct NodeBuilder(Node);

pub(crate) fn node(name: &str) -> NodeBuilder {
    let mut n = Node::default();
    n.metadata.name = Some(name.to_string());
    n.spec = Some(NodeSpec::default());
    n.status = Some(NodeStatus { allocatable: Some(BTreeMap::new()), ..Default::default() });
    NodeBuilder(n)
}

impl NodeBuilder {
    pub(crate) fn alloc(mut self, name: &str, q: &str) -> Self {
        if let Some(a) = self.0.status.as_mut().and_then(|s| s.allocatable.as_mut()) {
            a.insert(name.to_string(), WireQuantity(q.to_string()));
        }
        self
    }

    /// cpu, memory and pods at once.
    pub(crate) fn capacity(self, cpu: &str, memory: &str, pods: &str) -> Self {
        self.alloc("cpu", cpu).alloc("memory", memory).alloc("pods", pods)
    }

    pub(crate) fn label(mut self, key: &str, value: &str) -> Self {
        self.0.metadata.labels.get_or_insert_with(BTreeMap::new).insert(key.to_string(), value.to_string());
        self
    }

    pub(crate) fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let taint = Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        };
        self.0.spec.get_or_insert_with(Default::default).taints.get_or_insert_with(Vec::new).push(taint);
        self
    }

    pub(crate) fn unschedulable(mut self) -> Self {
        self.0.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        self
    }

    pub(crate) fn build(self) -> Arc<Node> {
        Arc::new(self.0)
    }
}

/// A pod under construction.
pub(crate) struct PodBuilder(Pod);

pub(crate) fn pod(name: &str) -> PodBuilder {
    let mut p = Pod::default();
    p.metadata.name = Some(name.to_string());
    p.metadata.namespace = Some("default".to_string());
    p.spec = Some(PodSpec::default());
    PodBuilder(p)
}

fn container(requests: &[(&str, &str)]) -> Container {
    Container {
        name: "c".to_string(),
        resources: Some(ResourceRequirements { requests: Some(list(requests)), ..Default::default() }),
        ..Default::default()
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    pub(crate) fn container(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().containers.push(container(requests));
        self
    }

    pub(crate) fn container_with_limits(mut self, limits: &[(&str, &str)]) -> Self {
        let c = Container {
            name: "c".to_string(),
            resources: Some(ResourceRequirements { limits: Some(list(limits)), ..Default::default() }),
            ..Default::default()
        };
        self.spec().containers.push(c);
        self
    }

    pub(crate) fn init_container(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().init_containers.get_or_insert_with(Vec::new).push(container(requests));
        self
    }

    pub(crate) fn sidecar(mut self, requests: &[(&str, &str)]) -> Self {
        let mut c = container(requests);
        c.restart_policy = Some("Always".to_string());
        self.spec().init_containers.get_or_insert_with(Vec::new).push(c);
        self
    }

    pub(crate) fn overhead(mut self, overhead: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(list(overhead));
        self
    }

    pub(crate) fn on(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    pub(crate) fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// `key` and `effect` empty mean unset; `operator` is `Exists`, `Equal` or empty.
    pub(crate) fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let t = Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        };
        self.spec().tolerations.get_or_insert_with(Vec::new).push(t);
        self
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }

    pub(crate) fn required(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.node_affinity().required_during_scheduling_ignored_during_execution =
            Some(NodeSelector { node_selector_terms: terms });
        self
    }

    pub(crate) fn preferred(mut self, weight: i32, preference: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { weight, preference });
        self
    }

    pub(crate) fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.to_string());
        self
    }

    pub(crate) fn build(self) -> Pod {
        self.0
    }

    pub(crate) fn arc(self) -> Arc<Pod> {
        Arc::new(self.0)
    }
}

fn requirements(reqs: &[(&str, &str, &[&str])]) -> Vec<NodeSelectorRequirement> {
    reqs.iter()
        .map(|(key, op, values)| NodeSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        })
        .collect()
}

/// A node selector term of label expressions.
pub(crate) fn term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: Some(requirements(exprs)), match_fields: None }
}

/// A node selector term of field expressions.
pub(crate) fn field_term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: None, match_fields: Some(requirements(exprs)) }
}
