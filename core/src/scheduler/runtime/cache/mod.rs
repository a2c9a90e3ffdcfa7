//! The scheduler's view of the cluster: a [`Snapshot`] kept current from node and
//! assigned-pod watch events, plus the pods the scheduler has placed but whose binding the
//! watch has not shown yet (*assumed* pods).
//!
//! Pure: watch events go in, [`ClusterEvent`]s for the queue come out, and times are
//! arguments. A pod is assumed on its node the moment the scheduler picks it, so the next
//! cycle already counts it; the watch showing the pod bound confirms it (on whatever node it
//! really went to); a failed bind forgets it; an assumed pod whose bind succeeded but which
//! the watch never confirmed expires after a time to live.
//!
//! Pod changes are applied to the snapshot in place. A node added, removed or changed in a
//! way plugins read (labels, taints, `spec.unschedulable`, allocatable) marks the snapshot
//! stale, and it is rebuilt from the cached nodes and pods before the next cycle.
//!
//! PersistentVolumeClaims, PersistentVolumes and StorageClasses are kept in a
//! [`VolumeCatalog`] ([`SchedulerCache::apply_claim`], [`SchedulerCache::apply_volume`],
//! [`SchedulerCache::apply_storage_class`]), shared copy-on-write with the snapshot: a change
//! copies the catalog at most once per cycle and never rebuilds the nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::time::Instant;

use super::cluster_event::ClusterEvent;
use super::{Error, Result};
use crate::client::WatcherEvent;
use crate::scheduler::{NodeInfo, PodInfo, Snapshot, VolumeCatalog, pod_key};

mod volumes;

/// How long an assumed pod whose bind succeeded waits for the watch to show it bound.
pub const DEFAULT_ASSUMED_POD_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
struct CachedPod {
    /// The pod, its requests and terms, shared with the snapshot.
    info: Arc<PodInfo>,
    node: String,
    /// `Some` while assumed: then `Some(expiry)` once its bind succeeded.
    assumed: Option<Option<Instant>>,
}

/// Where the cache has a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The pod's uid.
    pub uid: Option<String>,
    /// The node it is on.
    pub node: String,
    /// Whether the scheduler placed it and the watch has not confirmed it yet.
    pub assumed: bool,
}

/// The scheduler's cache: see the [module docs](self).
#[derive(Debug)]
pub struct SchedulerCache {
    nodes: BTreeMap<String, Arc<Node>>,
    pods: HashMap<String, CachedPod>,
    snapshot: Snapshot,
    /// The snapshot must be rebuilt from `nodes` and `pods`; while false, it mirrors them.
    dirty: bool,
    node_relist: Option<HashSet<String>>,
    pod_relist: Option<HashSet<String>>,
    nodes_ready: bool,
    pods_ready: bool,
    expiries: BTreeSet<(Instant, String)>,
    assumed_ttl: Duration,
    /// How many of `pods` are assumed.
    assumed: usize,
    /// Claims, volumes and classes; the snapshot shares it until the next change.
    volumes: Arc<VolumeCatalog>,
    claim_relist: Option<HashSet<String>>,
    volume_relist: Option<HashSet<String>>,
    class_relist: Option<HashSet<String>>,
    claims_ready: bool,
    volumes_ready: bool,
    classes_ready: bool,
}

fn labels_of(pod: &Pod) -> Option<&BTreeMap<String, String>> {
    pod.metadata.labels.as_ref().filter(|l| !l.is_empty())
}

/// The events a node update amounts to: none for changes no plugin reads (heartbeats).
pub fn node_changes(old: &Node, new: &Node) -> Vec<ClusterEvent> {
    let mut events = Vec::new();
    let labels = |n: &Node| n.metadata.labels.clone().unwrap_or_default();
    if labels(old) != labels(new) {
        events.push(ClusterEvent::NodeLabelsChanged);
    }
    let taints = |n: &Node| {
        let spec = n.spec.as_ref();
        (spec.and_then(|s| s.taints.clone()).unwrap_or_default(), spec.and_then(|s| s.unschedulable))
    };
    if taints(old) != taints(new) {
        events.push(ClusterEvent::NodeTaintsChanged);
    }
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
    if allocatable(old) != allocatable(new) {
        events.push(ClusterEvent::NodeAllocatableChanged);
    }
    events
}

impl SchedulerCache {
    /// An empty cache; assumed pods whose bind succeeded expire after `assumed_ttl`.
    pub fn new(assumed_ttl: Duration) -> SchedulerCache {
        SchedulerCache {
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            snapshot: Snapshot::default(),
            dirty: false,
            node_relist: None,
            pod_relist: None,
            nodes_ready: false,
            pods_ready: false,
            expiries: BTreeSet::new(),
            assumed_ttl,
            assumed: 0,
            volumes: Arc::default(),
            claim_relist: None,
            volume_relist: None,
            class_relist: None,
            claims_ready: false,
            volumes_ready: false,
            classes_ready: false,
        }
    }

    /// Whether the first lists of nodes, assigned pods, claims, volumes and storage classes
    /// are in: scheduling before would over-commit nodes whose pods are not known yet, or
    /// hand a volume out twice.
    pub fn is_ready(&self) -> bool {
        self.nodes_ready && self.pods_ready && self.claims_ready && self.volumes_ready && self.classes_ready
    }

    /// How many nodes are cached.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many pods are on nodes, assumed ones included.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// How many pods are assumed.
    pub fn assumed_count(&self) -> usize {
        self.assumed
    }

    /// Whether the cache has the pod with this key on a node (assumed or bound).
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Where the cache has the pod with this key.
    pub fn placement(&self, key: &str) -> Option<Placement> {
        self.pods.get(key).map(|p| Placement {
            uid: p.info.pod().metadata.uid.clone(),
            node: p.node.clone(),
            assumed: p.assumed.is_some(),
        })
    }

    /// The snapshot of the cached nodes and pods, rebuilt first if a node changed.
    pub fn snapshot(&mut self) -> Result<&Snapshot> {
        if self.dirty {
            let pods = self.pods.values().map(|p| p.info.clone());
            self.snapshot = Snapshot::from_pod_infos(self.nodes.values().cloned(), pods)
                .map_err(|e| Error::Snapshot(Box::new(e)))?;
            self.dirty = false;
        }
        if !Arc::ptr_eq(self.snapshot.volumes(), &self.volumes) {
            self.snapshot.set_volumes(self.volumes.clone());
        }
        Ok(&self.snapshot)
    }

    /// The snapshot, rebuilt first if a node changed, for a cycle that adds pods to it for
    /// a while (the nominated pods of preemptors) and removes them again before any other
    /// call on the cache.
    pub fn snapshot_mut(&mut self) -> Result<&mut Snapshot> {
        self.snapshot()?;
        Ok(&mut self.snapshot)
    }

    /// Applies a node watch event.
    pub fn apply_node(&mut self, event: &WatcherEvent<Node>) -> Vec<ClusterEvent> {
        match event {
            WatcherEvent::Init => {
                self.node_relist = Some(HashSet::new());
                Vec::new()
            }
            WatcherEvent::InitApply(node) => {
                if let Some(seen) = &mut self.node_relist {
                    seen.insert(node.metadata.name.clone().unwrap_or_default());
                }
                self.upsert_node(node)
            }
            WatcherEvent::Apply(node) => self.upsert_node(node),
            WatcherEvent::InitDone => {
                let seen = self.node_relist.take().unwrap_or_default();
                let gone: Vec<String> = self.nodes.keys().filter(|n| !seen.contains(*n)).cloned().collect();
                self.nodes_ready = true;
                gone.iter().flat_map(|n| self.remove_node(n)).collect()
            }
            WatcherEvent::Delete(node) => self.remove_node(node.metadata.name.as_deref().unwrap_or("")),
            WatcherEvent::Retrying(_) => Vec::new(),
        }
    }

    /// Applies a watch event of assigned pods (`spec.nodeName!=`).
    pub fn apply_pod(&mut self, event: &WatcherEvent<Pod>) -> Vec<ClusterEvent> {
        match event {
            WatcherEvent::Init => {
                self.pod_relist = Some(HashSet::new());
                Vec::new()
            }
            WatcherEvent::InitApply(pod) => {
                if let Some(seen) = &mut self.pod_relist {
                    seen.insert(pod_key(pod));
                }
                self.upsert_pod(pod)
            }
            WatcherEvent::Apply(pod) => self.upsert_pod(pod),
            WatcherEvent::InitDone => {
                let seen = self.pod_relist.take().unwrap_or_default();
                // Assumed pods are not bound yet, so no list has them.
                let gone: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|(k, p)| p.assumed.is_none() && !seen.contains(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                self.pods_ready = true;
                gone.iter().flat_map(|k| self.remove_pod(k)).collect()
            }
            WatcherEvent::Delete(pod) => {
                let key = pod_key(pod);
                match self.pods.get(&key) {
                    Some(c) if c.info.pod().metadata.uid == pod.metadata.uid => self.remove_pod(&key),
                    _ => Vec::new(),
                }
            }
            WatcherEvent::Retrying(_) => Vec::new(),
        }
    }

    /// Counts `pod` on `node` before its binding is written. Fails if the cache already has
    /// a pod of that name, or does not know the node.
    pub fn assume(&mut self, pod: &Pod, node: &str) -> Result<()> {
        let key = pod_key(pod);
        if self.pods.contains_key(&key) {
            return Err(Error::AlreadyInCache { pod: key });
        }
        if !self.nodes.contains_key(node) {
            return Err(Error::NodeNotInCache { pod: key, node: node.to_string() });
        }
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let info = PodInfo::new(Arc::new(assumed))
            .map_err(|e| Error::PodRequests { pod: key.clone(), source: Box::new(e) })?;
        let info = Arc::new(info);
        self.snapshot_add(node, &info);
        self.pods.insert(key, CachedPod { info, node: node.to_string(), assumed: Some(None) });
        self.assumed += 1;
        Ok(())
    }

    /// The bind of an assumed pod succeeded: it expires if the watch has not confirmed it
    /// within the time to live.
    pub fn finish_binding(&mut self, pod: &Pod, now: Instant) {
        let key = pod_key(pod);
        let expiry = now + self.assumed_ttl;
        if let Some(c) = self.pods.get_mut(&key)
            && c.info.pod().metadata.uid == pod.metadata.uid
            && c.assumed == Some(None)
        {
            c.assumed = Some(Some(expiry));
            self.expiries.insert((expiry, key));
        }
    }

    /// The bind of a pod assumed on `node` failed: it leaves the node, unless the watch has
    /// shown it bound meanwhile (by someone else, or by this bind after all).
    pub fn forget(&mut self, pod: &Pod, node: &str) -> Vec<ClusterEvent> {
        let key = pod_key(pod);
        match self.pods.get(&key) {
            Some(c)
                if c.assumed.is_some() && c.node == node && c.info.pod().metadata.uid == pod.metadata.uid =>
            {
                self.remove_pod(&key)
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the assumed pods whose time to live has passed.
    pub fn cleanup_expired(&mut self, now: Instant) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        while let Some((expiry, key)) = self.expiries.first().cloned() {
            if expiry > now {
                break;
            }
            self.expiries.remove(&(expiry, key.clone()));
            if self.pods.get(&key).is_some_and(|c| c.assumed == Some(Some(expiry))) {
                tracing::warn!(pod = %key, "assumed pod expired: its binding was never seen");
                events.extend(self.remove_pod(&key));
            }
        }
        events
    }

    /// When the next assumed pod expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(t, _)| *t)
    }

    fn upsert_node(&mut self, node: &Node) -> Vec<ClusterEvent> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node = Arc::new(node.clone());
        if let Err(error) = NodeInfo::new(node.clone()) {
            tracing::warn!(node = %name, %error, "ignoring node the scheduler cannot read");
            return self.remove_node(&name);
        }
        match self.nodes.insert(name, node.clone()) {
            None => {
                self.dirty = true;
                vec![ClusterEvent::NodeAdded]
            }
            Some(old) => {
                let events = node_changes(&old, &node);
                // Other changes (heartbeats) keep the snapshot, and its older node object.
                self.dirty |= !events.is_empty();
                events
            }
        }
    }

    fn remove_node(&mut self, name: &str) -> Vec<ClusterEvent> {
        if self.nodes.remove(name).is_none() {
            return Vec::new();
        }
        self.dirty = true;
        vec![ClusterEvent::NodeDeleted]
    }

    fn upsert_pod(&mut self, pod: &Pod) -> Vec<ClusterEvent> {
        let key = pod_key(pod);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded" | "Failed"));
        let (Some(node), false) = (node, finished) else {
            // Finished pods free their node, as kube-scheduler's cache has it.
            return self.remove_pod(&key);
        };
        let info = match PodInfo::new(Arc::new(pod.clone())) {
            Ok(info) => Arc::new(info),
            Err(error) => {
                tracing::warn!(pod = %key, %error, "ignoring pod the scheduler cannot read");
                return self.remove_pod(&key);
            }
        };
        let mut events = Vec::new();
        if let Some(old) = self.pods.get(&key).cloned() {
            if let Some(expiry) = old.assumed {
                self.assumed -= 1;
                if let Some(expiry) = expiry {
                    self.expiries.remove(&(expiry, key.clone()));
                }
            }
            if old.node != node || old.info.pod().metadata.uid != pod.metadata.uid {
                // Bound elsewhere than assumed (someone else bound it), or a new pod.
                self.snapshot_remove(&old.node, &key);
                events.extend([ClusterEvent::AssignedPodDeleted, ClusterEvent::AssignedPodAdded]);
            } else if old.assumed.is_some() {
                events.push(ClusterEvent::AssignedPodAdded);
            } else if labels_of(old.info.pod()) != labels_of(pod) || old.info.requests() != info.requests() {
                events.push(ClusterEvent::AssignedPodChanged);
            }
        } else {
            events.push(ClusterEvent::AssignedPodAdded);
        }
        self.snapshot_add(&node, &info);
        self.pods.insert(key, CachedPod { info, node, assumed: None });
        events
    }

    fn remove_pod(&mut self, key: &str) -> Vec<ClusterEvent> {
        let Some(old) = self.pods.remove(key) else { return Vec::new() };
        if let Some(expiry) = old.assumed {
            self.assumed -= 1;
            if let Some(expiry) = expiry {
                self.expiries.remove(&(expiry, key.to_string()));
            }
        }
        self.snapshot_remove(&old.node, key);
        vec![ClusterEvent::AssignedPodDeleted]
    }

    fn snapshot_add(&mut self, node: &str, info: &Arc<PodInfo>) {
        if !self.dirty
            && self.nodes.contains_key(node)
            && self.snapshot.add_pod_info(node, info.clone()).is_err()
        {
            self.dirty = true;
        }
    }

    fn snapshot_remove(&mut self, node: &str, key: &str) {
        if !self.dirty && self.nodes.contains_key(node) {
            // Absent only if it was never counted; nothing to undo then.
            let _ = self.snapshot.remove_pod_key(node, key);
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
