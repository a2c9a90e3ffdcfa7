//! [`NodeLifecycleReconciler`]: reads a node, its Lease and its pods from the caches, asks
//! [`decide_node`] what to do and does it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tracing::{debug, info, warn};

use super::plan::{NodePlan, PodRef, decide_node};
use super::{
    DISRUPTION_MESSAGE, DISRUPTION_REASON, EVICTION_EVENT_REASON, Error, LEASE_NAMESPACE,
    NodeLifecycleConfig, Result,
};
use crate::client::{Api, Cache, Client, DeleteOptions};
use crate::controller::conditions;
use crate::controller::events::{EventType, Recorder, reference};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::registry::{self, Clock, Precondition};

/// How soon to look again while the caches are still being filled.
const CACHE_RECHECK: Duration = Duration::from_secs(1);

/// The name of the pods-by-node index this reconciler reads.
pub(crate) const NODE_NAME_INDEX: &str = "nodeName";

/// Keeps nodes' health conditions and `NoExecute` taints in line with their heartbeats, and
/// evicts pods from tainted nodes. Reads the Node, Lease and Pod caches (adding the
/// pods-by-node index if the pod cache lacks it).
pub struct NodeLifecycleReconciler {
    client: Arc<dyn Client>,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    pods: Cache<Pod>,
    clock: Clock,
    config: NodeLifecycleConfig,
    recorder: Recorder,
}

/// Now, at the precision Kubernetes stores.
fn stamp(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

impl NodeLifecycleReconciler {
    /// A reconciler writing through `client`; `clock` is the time heartbeats are compared
    /// with, `recorder` publishes its Events.
    pub fn new(
        client: Arc<dyn Client>,
        nodes: Cache<Node>,
        leases: Cache<Lease>,
        pods: Cache<Pod>,
        clock: Clock,
        config: NodeLifecycleConfig,
        recorder: Recorder,
    ) -> Self {
        if !pods.has_index(NODE_NAME_INDEX) {
            let (name, f) = Cache::<Pod>::by_node_name();
            pods.add_index(&name, f);
        }
        NodeLifecycleReconciler { client, nodes, leases, pods, clock, config, recorder }
    }

    /// Writes the node's new conditions and taints; returns the node as last written.
    async fn write_node(&self, node: &Node, plan: &NodePlan) -> Result<Option<Node>> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut latest = node.clone();
        if let Some(conditions) = &plan.conditions {
            latest.status.get_or_insert_with(Default::default).conditions = Some(conditions.clone());
            latest = match api.replace_status(&name, &latest).await {
                Ok(written) => written,
                Err(registry::Error::NotFound { .. }) => return Ok(None),
                Err(source) => return Err(Error::UpdateNodeStatus { node: name, source }),
            };
            info!(node = %name, "node stopped posting status; conditions set unknown");
            if plan.became_unknown {
                self.recorder.publish(
                    reference(&latest),
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
        }
        if plan.changes_taints() {
            let spec = latest.spec.get_or_insert_with(Default::default);
            let taints = plan.taints_after(spec.taints.as_deref().unwrap_or(&[]));
            spec.taints = (!taints.is_empty()).then_some(taints);
            latest = match api.replace(&name, &latest).await {
                Ok(written) => written,
                Err(registry::Error::NotFound { .. }) => return Ok(None),
                Err(source) => return Err(Error::UpdateTaints { node: name, source }),
            };
            let added: Vec<&str> = plan.add_taints.iter().map(|t| t.key.as_str()).collect();
            let removed: Vec<&str> = plan.remove_taints.iter().map(|t| t.key.as_str()).collect();
            info!(node = %name, ?added, ?removed, "updated node taints");
        }
        Ok(Some(latest))
    }

    /// Sets the pod's `Ready` condition `False`.
    async fn mark_not_ready(&self, pod: &Pod, node: &str, now: &Time) -> Result<()> {
        let key = PodRef::of(pod);
        let mut updated = pod.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let conds = status.conditions.get_or_insert_with(Vec::new);
        let Some(ready) = conds.iter().find(|c| c.type_ == "Ready").cloned() else { return Ok(()) };
        if !conditions::set(conds, PodCondition { status: "False".into(), ..ready }, now) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.replace_status(&key.name, &updated).await {
            Ok(_) => {
                debug!(pod = %key, node, "marked pod not ready");
                self.recorder.publish(
                    reference(pod),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready",
                );
                Ok(())
            }
            Err(registry::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::MarkPodNotReady { pod: key.to_string(), source }),
        }
    }

    /// Says why the pod goes (a `DisruptionTarget` condition) and deletes it, if it is still
    /// the pod the plan was made for.
    async fn evict(&self, pod: &Pod, node: &str, now: &Time) -> Result<()> {
        let key = PodRef::of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut updated = pod.clone();
        let conds =
            updated.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
        let disruption = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(DISRUPTION_REASON.into()),
            message: Some(DISRUPTION_MESSAGE.into()),
            ..Default::default()
        };
        if conditions::set(conds, disruption, now) {
            match api.replace_status(&key.name, &updated).await {
                Ok(_) => {}
                Err(registry::Error::NotFound { .. }) => return Ok(()),
                Err(source) => return Err(Error::EvictPod { pod: key.to_string(), source }),
            }
        }
        self.recorder.publish(
            reference(pod),
            EventType::Normal,
            EVICTION_EVENT_REASON,
            format!("Marking for deletion Pod {key}"),
        );
        let opts = DeleteOptions {
            preconditions: Precondition { uid: key.uid.clone(), resource_version: None },
            ..Default::default()
        };
        match api.delete(&key.name, &opts).await {
            Ok(_) => {
                info!(pod = %key, node, "evicted pod for a NoExecute taint");
                Ok(())
            }
            // Gone, or replaced by another pod of the same name: nothing to evict.
            Err(registry::Error::NotFound { .. } | registry::Error::Conflict { .. }) => Ok(()),
            Err(source) => Err(Error::EvictPod { pod: key.to_string(), source }),
        }
    }
}

/// Keeps the first error to return; logs the later ones, which are not passed up.
fn keep_first(first: &mut Option<Error>, e: Error, pod: &PodRef) {
    match first {
        None => *first = Some(e),
        Some(_) => warn!(pod = %pod, error = %e, "pod write failed"),
    }
}

#[async_trait]
impl Reconciler for NodeLifecycleReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !(self.nodes.is_ready() && self.leases.is_ready() && self.pods.is_ready()) {
            debug!(node = %key, "caches not filled yet");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let Some(node) = self.nodes.get(&key.name) else { return Ok(Action::Done) };
        let lease = self.leases.get(&format!("{LEASE_NAMESPACE}/{}", key.name));
        let pods = self.pods.indexed(NODE_NAME_INDEX, &key.name);
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let now = (self.clock)();
        let plan = decide_node(&node, lease.as_deref(), &pod_refs, now, &self.config);
        let requeue = plan.requeue_after(now).map_or(Action::Done, Action::RequeueAfter);
        if plan.is_empty() {
            return Ok(requeue);
        }
        if self.write_node(&node, &plan).await?.is_none() {
            return Ok(Action::Done);
        }
        let stamp = stamp(now);
        let find = |r: &PodRef| {
            pods.iter().find(|p| {
                p.metadata.namespace.as_deref() == Some(&r.namespace)
                    && p.metadata.name.as_deref() == Some(&r.name)
            })
        };
        // Every pod is tried; the first failure makes the reconcile retry.
        let mut first_error = None;
        for r in &plan.mark_not_ready {
            if let Some(pod) = find(r)
                && let Err(e) = self.mark_not_ready(pod, &key.name, &stamp).await
            {
                keep_first(&mut first_error, e, r);
            }
        }
        for r in &plan.evict {
            if let Some(pod) = find(r)
                && let Err(e) = self.evict(pod, &key.name, &stamp).await
            {
                keep_first(&mut first_error, e, r);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(requeue),
        }
    }
}
