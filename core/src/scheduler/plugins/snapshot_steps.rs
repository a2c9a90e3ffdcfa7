//! A snapshot changed step by step between cycles, as the scheduler's cache changes it: the
//! tests of what plugins keep in a snapshot ([`Snapshot::with_memo`]) compare it after every
//! step with counting afresh.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;

use crate::scheduler::{CycleState, PodInfo, PreFilterPlugin, Snapshot, Status};

/// One change to a snapshot between cycles; `P` describes a pod to add.
#[derive(Clone, Debug)]
pub(crate) enum Step<P> {
    /// Places a new pod on the node at this index (modulo the nodes).
    Add(usize, P),
    /// Takes off the placed pod at this index (modulo the pods placed).
    Remove(usize),
    /// Goes on with a clone of the snapshot, changing it alone from then on.
    Clone,
    /// Runs the plugin's pre-filter and a preemption dry run taking the pod at this index off.
    DryRun(usize),
}

/// Steps adding pods drawn from `pod`.
pub(crate) fn gen_step<P: Clone + Debug>(pod: impl Strategy<Value = P>) -> impl Strategy<Value = Step<P>> {
    prop_oneof![
        3 => (any::<usize>(), pod).prop_map(|(at, p)| Step::Add(at, p)),
        3 => any::<usize>().prop_map(Step::Remove),
        1 => Just(Step::Clone),
        2 => any::<usize>().prop_map(Step::DryRun),
    ]
}

/// A snapshot and the pods placed on it.
pub(crate) struct Changing {
    pub(crate) snapshot: Snapshot,
    /// `(node, pod)` for every pod placed.
    pods: Vec<(String, Arc<Pod>)>,
    nodes: Vec<String>,
}

impl Changing {
    /// `snapshot`, whose placed pods are `pods`.
    pub(crate) fn new(snapshot: Snapshot, pods: Vec<(String, Arc<Pod>)>) -> Changing {
        let nodes = snapshot.nodes().iter().map(|n| n.name().to_string()).collect();
        Changing { snapshot, pods, nodes }
    }

    /// Applies step number `n`: `make(name, p)` builds a pod to add (placed here); a dry run
    /// runs `plugin`'s pre-filter for `incoming`, then its `remove_pod` for a placed pod.
    pub(crate) fn apply<P>(
        &mut self,
        n: usize,
        step: Step<P>,
        make: impl Fn(&str, &P) -> Pod,
        plugin: &dyn PreFilterPlugin,
        incoming: &Pod,
    ) -> Result<(), TestCaseError> {
        match step {
            Step::Add(at, p) if !self.nodes.is_empty() => {
                let node = self.nodes[at % self.nodes.len()].clone();
                let mut pod = make(&format!("added-{n}"), &p);
                pod.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                let pod = Arc::new(pod);
                self.snapshot.add_pod(&node, pod.clone()).expect("the node exists");
                self.pods.push((node, pod));
            }
            Step::Remove(at) if !self.pods.is_empty() => {
                let (node, pod) = self.pods.swap_remove(at % self.pods.len());
                self.snapshot.remove_pod(&node, &pod).expect("placed");
            }
            Step::Clone => self.snapshot = self.snapshot.clone(),
            Step::DryRun(at) if !self.pods.is_empty() => {
                let (node, pod) = &self.pods[at % self.pods.len()];
                let mut state = CycleState::new();
                prop_assert_eq!(plugin.pre_filter(&mut state, incoming, &self.snapshot), Status::Success);
                let info = PodInfo::new(pod.clone()).expect("valid pod");
                let node = self.snapshot.node(node).expect("the node exists");
                prop_assert_eq!(plugin.remove_pod(&mut state, incoming, &info, node), Status::Success);
            }
            Step::Add(..) | Step::Remove(_) | Step::DryRun(_) => {}
        }
        Ok(())
    }
}
