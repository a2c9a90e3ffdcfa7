//! The cluster as one scheduling cycle sees it: nodes, the pods on them and their requests.
//!
//! Every pod in a snapshot is a [`PodInfo`]: its requests and its pod (anti-)affinity terms are
//! parsed once, when the pod enters the scheduler's cache, not in every cycle that reads them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::resource_names::PODS;
use super::volumes::VolumeCatalog;
use super::{Error, Result};
use crate::scheduler::plugins::pod_affinity_terms::PodTerms;

mod memo;
mod requests;

use memo::Memos;
pub use memo::NodeTotals;

pub use requests::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, PodRequests, Resources, pod_key};

/// A pod with what scheduling reads from it computed once (kube-scheduler's `PodInfo`): its
/// `namespace/name` key, its [`PodRequests`] and its parsed pod affinity and anti-affinity
/// terms. Shared (`Arc`) between the cache, the snapshot and the nominated pods.
#[derive(Debug)]
pub struct PodInfo {
    key: String,
    pod: Arc<Pod>,
    requests: PodRequests,
    /// The pod's affinity terms, if it has any that parse (kube-scheduler leaves a kind with
    /// an invalid term out of a placed pod's `PodInfo`, and so does this).
    terms: Option<PodTerms>,
}

impl PodInfo {
    /// Computes the pod's requests and terms; a quantity that does not parse is an error
    /// naming its field.
    pub fn new(pod: Arc<Pod>) -> Result<PodInfo> {
        let requests = PodRequests::of(&pod)?;
        let terms = PodTerms::any(&pod).then(|| PodTerms::of_existing(&pod)).filter(|t| !t.is_empty());
        Ok(PodInfo { key: pod_key(&pod), pod, requests, terms })
    }

    /// `namespace/name`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The pod.
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }

    /// What the pod asks of its node.
    pub fn requests(&self) -> &PodRequests {
        &self.requests
    }

    /// Whether the pod has pod affinity or anti-affinity terms (valid ones).
    pub fn has_affinity_terms(&self) -> bool {
        self.terms.is_some()
    }

    /// The pod's parsed affinity and anti-affinity terms, if it has any.
    pub(crate) fn affinity_terms(&self) -> Option<&PodTerms> {
        self.terms.as_ref()
    }
}

/// One node and what is placed on it (kube-scheduler's `NodeInfo`). Cloning it is cheap: the
/// pods are shared.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Shared by clones: preemption's dry runs clone nodes by the thousand.
    name: Arc<str>,
    node: Arc<Node>,
    allocatable: Resources,
    requested: Resources,
    non_zero_requested: Resources,
    pods: Vec<Arc<PodInfo>>,
    /// The pods of `pods` with affinity terms (kube-scheduler's `PodsWithAffinity`).
    with_affinity: Vec<Arc<PodInfo>>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl NodeInfo {
    /// A node with no pods; its `status.allocatable` must parse.
    pub fn new(node: Arc<Node>) -> Result<NodeInfo> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = || format!("node/{name}");
        let allocatable = Resources::parse(
            node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
            &object,
            "status.allocatable",
        )?;
        Ok(NodeInfo {
            name: name.into(),
            node,
            allocatable,
            requested: Resources::new(),
            non_zero_requested: Resources::new(),
            pods: Vec::new(),
            with_affinity: Vec::new(),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node object.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn unschedulable(&self) -> bool {
        self.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
    }

    /// `status.allocatable`, in thousandths; `pods` is how many pods the node takes (times 1000).
    pub fn allocatable(&self) -> &Resources {
        &self.allocatable
    }

    /// The sum of the requests of the pods on the node, with 1000 `pods` for each pod.
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    /// As [`NodeInfo::requested`], with the scoring defaults for containers that request no
    /// cpu or memory.
    pub fn non_zero_requested(&self) -> &Resources {
        &self.non_zero_requested
    }

    /// The pods on the node.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<Pod>> {
        self.pods.iter().map(|p| &p.pod)
    }

    /// The pods on the node, with what is computed from them.
    pub fn pod_infos(&self) -> &[Arc<PodInfo>] {
        &self.pods
    }

    /// The pods on the node that have pod affinity or anti-affinity terms.
    pub fn pods_with_affinity(&self) -> &[Arc<PodInfo>] {
        &self.with_affinity
    }

    /// How many pods are on the node.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Places a pod on the node (replacing one with the same `namespace/name`); its requests
    /// must parse.
    pub fn add_pod(&mut self, pod: Arc<Pod>) -> Result<()> {
        self.add_pod_info(Arc::new(PodInfo::new(pod)?));
        Ok(())
    }

    /// Places a pod on the node (replacing one with the same `namespace/name`).
    pub fn add_pod_info(&mut self, info: Arc<PodInfo>) {
        self.remove_by_key(&info.key);
        self.count(&info.requests, 1);
        if info.terms.is_some() {
            self.with_affinity.push(info.clone());
        }
        self.pods.push(info);
    }

    /// Removes the pod with this `namespace/name`, returning it.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<Pod>> {
        self.remove_by_key(key).map(|info| info.pod.clone())
    }

    /// Removes the pod with this `namespace/name`, returning its info.
    pub fn remove_pod_info(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        self.remove_by_key(key)
    }

    fn remove_by_key(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.key == key)?;
        let placed = self.pods.swap_remove(at);
        if placed.terms.is_some()
            && let Some(at) = self.with_affinity.iter().position(|p| Arc::ptr_eq(p, &placed))
        {
            self.with_affinity.swap_remove(at);
        }
        self.count(&placed.requests, -1);
        Some(placed)
    }

    /// Adds (`sign` 1) or takes off (-1) a pod's requests and one `pods`.
    fn count(&mut self, requests: &PodRequests, sign: i64) {
        self.requested.add_times(&requests.requests, sign);
        self.non_zero_requested.add_times(&requests.non_zero, sign);
        self.requested.add_to(PODS, 1000 * sign);
        self.non_zero_requested.add_to(PODS, 1000 * sign);
    }
}

/// The node a pod counts on: its `spec.nodeName`, unless it has finished.
fn placed_on(pod: &Pod) -> Option<&str> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// The nodes of the cluster with the pods on each, in the order given, and the storage
/// objects ([`VolumeCatalog`], empty unless set).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    volumes: Arc<VolumeCatalog>,
    /// How many pods on all nodes have affinity terms.
    with_affinity: usize,
    /// Bumped by every pod added to or taken off a node.
    version: u64,
    /// The [`Snapshot::version`] each node (by index) last changed at.
    node_versions: Vec<u64>,
    /// What plugins derive from this snapshot between cycles ([`Snapshot::with_memo`]).
    memos: Memos,
}

impl Snapshot {
    /// Builds a snapshot. Each pod bound to a listed node (`spec.nodeName`) counts on it;
    /// unbound pods, pods on unknown nodes and finished pods (`Succeeded`, `Failed`) are left
    /// out, as kube-scheduler's cache leaves them out. A pod whose requests do not parse is an
    /// error.
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
    ) -> Result<Snapshot> {
        let infos = pods
            .into_iter()
            .filter(|pod| placed_on(pod).is_some())
            .map(|pod| PodInfo::new(pod).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Snapshot::from_pod_infos(nodes, infos)
    }

    /// [`Snapshot::new`] from pods whose infos are already computed.
    pub fn from_pod_infos(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<PodInfo>>,
    ) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for node in nodes {
            let info = NodeInfo::new(node)?;
            if snapshot.index.contains_key(info.name()) {
                return Err(Error::DuplicateNode(info.name().to_string()));
            }
            snapshot.index.insert(info.name().to_string(), snapshot.nodes.len());
            snapshot.nodes.push(info);
            snapshot.node_versions.push(0);
        }
        for info in pods {
            if let Some(&i) = placed_on(&info.pod).and_then(|node| snapshot.index.get(node)) {
                snapshot.nodes[i].add_pod_info(info);
            }
        }
        snapshot.with_affinity = snapshot.nodes.iter().map(|n| n.with_affinity.len()).sum();
        Ok(snapshot)
    }

    /// Every node, in the order given.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether some pod on some node has pod affinity or anti-affinity terms: if none has and
    /// the incoming pod has none either, inter-pod affinity has nothing to count.
    pub fn has_pods_with_affinity(&self) -> bool {
        self.with_affinity > 0
    }

    /// How many times a pod was added to or taken off a node since the snapshot was built.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The indexes (in [`Snapshot::nodes`]) of the nodes whose pods changed after `version`.
    pub fn changed_since(&self, version: u64) -> impl Iterator<Item = usize> + '_ {
        self.node_versions.iter().enumerate().filter(move |&(_, &v)| v > version).map(|(i, _)| i)
    }

    /// Runs `f` on this snapshot's memo of type `T` (made with `T::default()` on first use),
    /// where a plugin keeps what it derives from the snapshot between cycles, with the
    /// [`Snapshot::version`] it was derived at: on the next cycle it redoes only the nodes
    /// [`Snapshot::changed_since`] names. A memo describes this snapshot only: a clone starts
    /// without any, and so does a snapshot the cache rebuilds. `f` runs under the memos' lock:
    /// it must not call `with_memo` on the same snapshot.
    pub fn with_memo<T: Default + Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.memos.with(f)
    }

    /// Records that the node at `i` changed.
    fn touch(&mut self, i: usize) {
        self.version += 1;
        if let Some(v) = self.node_versions.get_mut(i) {
            *v = self.version;
        }
    }

    /// The claims, volumes and storage classes.
    pub fn volumes(&self) -> &Arc<VolumeCatalog> {
        &self.volumes
    }

    /// Replaces the claims, volumes and storage classes (the nodes stay as they are).
    pub fn set_volumes(&mut self, volumes: Arc<VolumeCatalog>) {
        self.volumes = volumes;
    }

    /// The snapshot with these claims, volumes and storage classes.
    pub fn with_volumes(mut self, volumes: VolumeCatalog) -> Snapshot {
        self.volumes = Arc::new(volumes);
        self
    }

    /// Counts `pod` on `node` (the scheduler "assumes" it there before the binding is written).
    pub fn add_pod(&mut self, node: &str, pod: Arc<Pod>) -> Result<()> {
        self.add_pod_info(node, Arc::new(PodInfo::new(pod)?))
    }

    /// [`Snapshot::add_pod`] with the pod's info already computed.
    pub fn add_pod_info(&mut self, node: &str, info: Arc<PodInfo>) -> Result<()> {
        let &i = self.index.get(node).ok_or_else(|| Error::NodeNotFound(node.to_string()))?;
        let before = self.nodes[i].with_affinity.len();
        self.touch(i);
        self.nodes[i].add_pod_info(info);
        self.with_affinity = self.with_affinity - before + self.nodes[i].with_affinity.len();
        Ok(())
    }

    /// Takes `pod` off `node` (a failed binding is rolled back), returning the stored pod.
    pub fn remove_pod(&mut self, node: &str, pod: &Pod) -> Result<Arc<Pod>> {
        self.remove_pod_key(node, &pod_key(pod)).map(|info| info.pod.clone())
    }

    /// Takes the pod with this `namespace/name` off `node`, returning its info.
    pub fn remove_pod_key(&mut self, node: &str, key: &str) -> Result<Arc<PodInfo>> {
        let &i = self.index.get(node).ok_or_else(|| Error::NodeNotFound(node.to_string()))?;
        let removed = self.nodes[i]
            .remove_by_key(key)
            .ok_or_else(|| Error::PodNotFound { pod: key.to_string(), node: node.to_string() })?;
        self.touch(i);
        if removed.terms.is_some() {
            self.with_affinity -= 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
