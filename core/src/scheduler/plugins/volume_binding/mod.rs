//! VolumeBinding: a pod's PersistentVolumeClaims decide where it can run, and claims of
//! `WaitForFirstConsumer` classes are bound or provisioned for the node the pod gets
//! (kube-scheduler's `volumebinding` plugin).
//!
//! - **Pre-filter** reads the pod's claims (`spec.volumes[].persistentVolumeClaim`, and
//!   generic ephemeral volumes' `<pod>-<volume>` claims, which the pod must own) from the
//!   snapshot's [`VolumeCatalog`](crate::scheduler::VolumeCatalog). A missing, lost or
//!   deleted claim, or an unbound claim of an `Immediate` class (or of no class, or naming
//!   its volume: the volume controller binds those), makes the pod unschedulable everywhere.
//!   The others are *bound* or *to bind* (unbound, of a `WaitForFirstConsumer` class).
//! - **Filter**: a bound claim's volume must exist and its required node affinity admit the
//!   node. Each claim to bind (smallest request first) takes the best `Available` volume of
//!   its class whose node affinity admits the node ([`find_best_volume`]), not taken by
//!   another claim of the pod nor assumed for another pod; failing that, its class must be
//!   able to provision (a `provisioner` other than `kubernetes.io/no-provisioner`, and
//!   `allowedTopologies` admitting the node's labels). A claim with a selected node already
//!   (`volume.kubernetes.io/selected-node`) fits that node only.
//! - **Reserve** assumes the node's decisions in the plugin's own cache, so the next pod does
//!   not take the same volume; **unreserve** forgets them.
//! - **Pre-bind** writes them: a chosen volume gets its `claimRef` (pre-bound, as
//!   Kubernetes' binder does; the volume controller completes the binding), a claim to
//!   provision gets `volume.kubernetes.io/selected-node`. It then polls until every claim is
//!   bound, for at most the bind timeout ([`DEFAULT_BIND_TIMEOUT`]; Kubernetes waits 600 s,
//!   far longer than a local volume needs, and a pod stuck that long holds a bind slot).
//!
//! Not done: scoring by volume capacity (`VolumeCapacityPriority`), CSI storage capacity and
//! CSI migration, and re-checking a provisioned volume's node affinity while waiting.

mod assume;
mod binder;
#[cfg(test)]
mod tests;
mod topology;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use parking_lot::Mutex;

use self::assume::AssumeCache;
use self::topology::{Affinity, topology_allows};
use crate::client::Client;
use crate::controllers::volume::facts::{
    annotation, claim_class, claim_phase, claim_volume_name, is_bound_to_claim, requested_storage,
    volume_name,
};
use crate::controllers::volume::{
    ANN_SELECTED_NODE, CLAIM_LOST, NO_PROVISIONER, delays_binding, find_best_volume,
};
use crate::scheduler::{
    CycleState, FilterPlugin, NodeInfo, PreBindPlugin, PreFilterPlugin, ReservePlugin, Snapshot, Status,
    pod_key,
};

/// How long pre-bind waits for the claims to be bound by default.
pub const DEFAULT_BIND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often pre-bind looks whether the claims are bound by default.
pub const DEFAULT_BIND_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What a pod's claims decide for one node: volumes to pre-bind, claims to provision.
#[derive(Clone, Debug, Default, PartialEq)]
struct PodVolumes {
    /// Each claim and the volume chosen for it.
    bindings: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    /// The claims to provision on the node.
    provisions: Vec<Arc<PersistentVolumeClaim>>,
}

impl PodVolumes {
    fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.provisions.is_empty()
    }
}

/// A volume the pod may get, with its node affinity parsed once per cycle.
#[derive(Clone, Debug)]
struct Candidate {
    volume: Arc<PersistentVolume>,
    affinity: Affinity,
}

/// A claim of a `WaitForFirstConsumer` class the pod waits for.
#[derive(Clone, Debug)]
struct ClaimToBind {
    claim: Arc<PersistentVolumeClaim>,
    class: Arc<StorageClass>,
    /// The volumes of its class, as assumed.
    candidates: Arc<Vec<Candidate>>,
}

/// What the pre-filter found for a pod with claims; reserve and pre-bind add to it.
#[derive(Clone, Debug)]
struct PodClaims {
    /// The volumes of the bound claims (`None`: the volume does not exist).
    bound: Vec<Option<Affinity>>,
    /// The claims to bind, smallest request first.
    to_bind: Vec<ClaimToBind>,
    /// The filter's decision for `to_bind` on each feasible node (shared by copies of the
    /// state, as kube-scheduler shares it).
    decisions: Arc<Mutex<HashMap<String, PodVolumes>>>,
    /// What reserve assumed, and on which node.
    reserved: Option<(String, PodVolumes)>,
}

/// The VolumeBinding plugin: see the [module docs](self).
#[derive(Debug)]
pub struct VolumeBinding {
    bind_timeout: Duration,
    poll_interval: Duration,
    assumed: Mutex<AssumeCache>,
}

impl Default for VolumeBinding {
    fn default() -> VolumeBinding {
        VolumeBinding {
            bind_timeout: DEFAULT_BIND_TIMEOUT,
            poll_interval: DEFAULT_BIND_POLL_INTERVAL,
            assumed: Mutex::default(),
        }
    }
}

impl VolumeBinding {
    /// The plugin's name.
    pub const NAME: &'static str = "VolumeBinding";
    /// A node where a claim to bind finds no volume and cannot be provisioned.
    pub const BIND_CONFLICT: &'static str = "node(s) didn't find available persistent volumes to bind";
    /// A node a bound claim's volume cannot be used on.
    pub const NODE_CONFLICT: &'static str = "node(s) had volume node affinity conflict";
    /// A bound claim's volume does not exist.
    pub const PV_NOT_EXIST: &'static str =
        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
    /// The pod has an unbound claim that the volume controller, not the scheduler, binds.
    pub const UNBOUND_IMMEDIATE: &'static str = "pod has unbound immediate PersistentVolumeClaims";

    /// The plugin with the default bind timeout and poll interval.
    pub fn new() -> VolumeBinding {
        VolumeBinding::default()
    }

    /// How long pre-bind waits for the claims to be bound.
    pub fn with_bind_timeout(mut self, timeout: Duration) -> VolumeBinding {
        self.bind_timeout = timeout;
        self
    }

    /// How often pre-bind looks whether the claims are bound.
    pub fn with_poll_interval(mut self, interval: Duration) -> VolumeBinding {
        self.poll_interval = interval;
        self
    }

    /// The bind timeout.
    pub fn bind_timeout(&self) -> Duration {
        self.bind_timeout
    }
}

/// The claims a pod uses, by name, with whether each is a generic ephemeral volume's.
fn claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let mut seen = HashSet::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    volumes
        .iter()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some((c.claim_name.clone(), false)),
            (None, Some(_)) => Some((format!("{pod_name}-{}", v.name), true)),
            (None, None) => None,
        })
        .filter(|(name, _)| seen.insert(name.clone()))
        .collect()
}

/// Whether the pod has a volume backed by a claim (cheaper than [`claim_names`], for the
/// filter's every node).
fn uses_claims(pod: &Pod) -> bool {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    volumes.iter().any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

/// Whether the pod controls the claim (an ephemeral volume's claim must be the pod's own).
fn owned_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let uid = pod.metadata.uid.as_deref();
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

/// The owner of a pod's assumptions: `namespace/name/uid`.
fn owner(pod: &Pod) -> String {
    format!("{}/{}", pod_key(pod), pod.metadata.uid.as_deref().unwrap_or(""))
}

/// Whether `class` can provision a volume for `node`.
fn can_provision(class: &StorageClass, node: &NodeInfo) -> bool {
    !class.provisioner.is_empty() && class.provisioner != NO_PROVISIONER && topology_allows(class, node)
}

impl VolumeBinding {
    /// Sorts the pod's claims into bound and to bind, or finds the pod unschedulable.
    fn pod_claims(&self, pod: &Pod, snapshot: &Snapshot) -> Result<Option<PodClaims>, Status> {
        let names = claim_names(pod);
        if names.is_empty() {
            return Ok(None);
        }
        let catalog = snapshot.volumes();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut assumed = self.assumed.lock();
        assumed.prune(catalog);
        let (mut bound, mut to_bind, mut immediate) = (Vec::new(), Vec::new(), false);
        let mut candidates_of: HashMap<String, Arc<Vec<Candidate>>> = HashMap::new();
        for (name, ephemeral) in names {
            let Some(claim) = catalog.claim(namespace, &name) else {
                return Err(Status::unresolvable(if ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\""
                    )
                } else {
                    format!("persistentvolumeclaim \"{name}\" not found")
                }));
            };
            let claim = assumed.claim(claim).clone();
            if claim_phase(&claim) == Some(CLAIM_LOST) {
                let volume = claim_volume_name(&claim).unwrap_or("");
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{volume}\""
                )));
            }
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                )));
            }
            if ephemeral && !owned_by(&claim, pod) {
                return Err(Status::unresolvable(format!(
                    "PVC {namespace}/{name} was not created for pod {} (pod is not owner)",
                    pod_key(pod)
                )));
            }
            if binder::fully_bound(&claim) {
                let volume = claim_volume_name(&claim).and_then(|v| catalog.volume(v));
                bound.push(volume.map(|v| Affinity::of(v)));
                continue;
            }
            let class_name = claim_class(&claim);
            let class = catalog.class(class_name).filter(|c| delays_binding(Some(c.as_ref())));
            let Some(class) = class.filter(|_| claim_volume_name(&claim).is_none()) else {
                immediate = true;
                continue;
            };
            if let Err(invalid) = find_best_volume(&claim, &[], false) {
                return Err(Status::unresolvable(invalid.to_string()));
            }
            let candidates = candidates_of
                .entry(class_name.to_string())
                .or_insert_with(|| {
                    let volumes = catalog.volumes_of_class(class_name).map(|v| assumed.volume(v).clone());
                    Arc::new(
                        volumes.map(|volume| Candidate { affinity: Affinity::of(&volume), volume }).collect(),
                    )
                })
                .clone();
            to_bind.push(ClaimToBind { claim, class: class.clone(), candidates });
        }
        if immediate {
            return Err(Status::unresolvable(Self::UNBOUND_IMMEDIATE));
        }
        to_bind.sort_by_key(|c| requested_storage(&c.claim).ok().flatten().unwrap_or_default());
        Ok(Some(PodClaims { bound, to_bind, decisions: Arc::default(), reserved: None }))
    }
}

/// The reasons `node` does not fit the pod's claims (none: it fits), and what binding the
/// claims to bind there takes.
fn find_pod_volumes(claims: &PodClaims, node: &NodeInfo) -> (Vec<&'static str>, PodVolumes) {
    let (mut missing, mut conflict) = (false, false);
    for affinity in &claims.bound {
        match affinity {
            None => missing = true,
            Some(a) if !a.matches(node) => conflict = true,
            Some(_) => continue,
        }
        break;
    }
    let (satisfied, volumes) = bind_on(&claims.to_bind, node);
    let mut reasons = Vec::new();
    if conflict {
        reasons.push(VolumeBinding::NODE_CONFLICT);
    }
    if !satisfied {
        reasons.push(VolumeBinding::BIND_CONFLICT);
    }
    if missing {
        reasons.push(VolumeBinding::PV_NOT_EXIST);
    }
    (reasons, volumes)
}

/// Whether every claim to bind gets a volume or can be provisioned on `node`, and how.
fn bind_on(to_bind: &[ClaimToBind], node: &NodeInfo) -> (bool, PodVolumes) {
    let mut volumes = PodVolumes::default();
    let mut to_provision = Vec::new();
    let mut chosen: HashSet<&str> = HashSet::new();
    for c in to_bind {
        match annotation(&c.claim.metadata, ANN_SELECTED_NODE) {
            Some(selected) if selected != node.name() => return (false, PodVolumes::default()),
            Some(_) => {
                to_provision.push(c);
                continue;
            }
            None => {}
        }
        // A volume pre-bound to the claim is the only one it can get.
        let pre_bound = c.candidates.iter().find(|v| is_bound_to_claim(&v.volume, &c.claim));
        if pre_bound.is_some_and(|v| !v.affinity.matches(node)) {
            return (false, PodVolumes::default());
        }
        let fitting: Vec<&PersistentVolume> = c
            .candidates
            .iter()
            .filter(|v| !chosen.contains(volume_name(&v.volume)) && v.affinity.matches(node))
            .map(|v| &*v.volume)
            .collect();
        match find_best_volume(&c.claim, &fitting, false) {
            Ok(Some(best)) => {
                let found = c.candidates.iter().find(|v| std::ptr::eq(&*v.volume, best));
                if let Some(v) = found {
                    chosen.insert(volume_name(&v.volume));
                    volumes.bindings.push((c.claim.clone(), v.volume.clone()));
                }
            }
            // No static volume here: provisioning may still do.
            Ok(None) | Err(_) => to_provision.push(c),
        }
    }
    if !to_provision.iter().all(|c| can_provision(&c.class, node)) {
        return (false, PodVolumes::default());
    }
    volumes.provisions = to_provision.iter().map(|c| c.claim.clone()).collect();
    (true, volumes)
}

impl PreFilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        match self.pod_claims(pod, snapshot) {
            Ok(Some(claims)) => {
                state.insert(claims);
                Status::Success
            }
            // No claims: the other extension points skip the pod.
            Ok(None) => Status::Success,
            Err(status) => status,
        }
    }
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let Some(claims) = state.get::<PodClaims>() else {
            if uses_claims(pod) {
                return Status::error("VolumeBinding: the pre-filter did not run for a pod with claims");
            }
            return Status::Success;
        };
        let (reasons, volumes) = find_pod_volumes(claims, node);
        if !reasons.is_empty() {
            return Status::UnschedulableAndUnresolvable {
                reasons: reasons.into_iter().map(String::from).collect(),
            };
        }
        if !claims.to_bind.is_empty() {
            claims.decisions.lock().insert(node.name().to_string(), volumes);
        }
        Status::Success
    }

    /// Reads the pod's claims and the node (its pre-filter has no add or remove hooks).
    fn reads_pod_updates(&self) -> bool {
        false
    }
}

impl ReservePlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn reserve(&self, state: &mut CycleState, pod: &Pod, node: &str) -> Status {
        let Some(claims) = state.get_mut::<PodClaims>() else { return Status::Success };
        if claims.to_bind.is_empty() {
            claims.reserved = Some((node.to_string(), PodVolumes::default()));
            return Status::Success;
        }
        let Some(decided) = claims.decisions.lock().get(node).cloned() else {
            return Status::error(format!("VolumeBinding: no volume decisions for node {node}"));
        };
        match self.assumed.lock().assume(&owner(pod), node, &decided) {
            Ok(assumed) => {
                claims.reserved = Some((node.to_string(), assumed));
                Status::Success
            }
            Err(message) => Status::error(message),
        }
    }

    fn unreserve(&self, state: &mut CycleState, pod: &Pod, node: &str) {
        let Some(claims) = state.get_mut::<PodClaims>() else { return };
        if claims.reserved.as_ref().is_some_and(|(n, _)| n == node)
            && let Some((_, reserved)) = claims.reserved.take()
        {
            self.assumed.lock().revert(&owner(pod), &reserved);
        }
    }
}

#[async_trait]
impl PreBindPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn pre_bind(&self, client: &Arc<dyn Client>, state: &CycleState, pod: &Pod, node: &str) -> Status {
        let Some(claims) = state.get::<PodClaims>() else { return Status::Success };
        let reserved = match &claims.reserved {
            Some((n, reserved)) if n == node => reserved,
            _ => return Status::error(format!("VolumeBinding: nothing reserved on node {node}")),
        };
        if reserved.is_empty() {
            return Status::Success;
        }
        match binder::bind_pod_volumes(client, pod, node, reserved, self.bind_timeout, self.poll_interval)
            .await
        {
            Ok(()) => Status::Success,
            Err(message) => {
                tracing::info!(pod = %pod_key(pod), node, %message, "binding volumes failed");
                Status::error(message)
            }
        }
    }
}
