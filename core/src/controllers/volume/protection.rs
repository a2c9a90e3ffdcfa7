//! Storage object in-use protection (Kubernetes' `pvcprotection` and `pvprotection`
//! controllers): a claim a pod uses and a volume bound to a claim are not removed while in
//! use, however early someone deletes them.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::facts::volume_phase;
use super::{PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER, VOLUME_BOUND};

/// What to do with a protection finalizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerChange {
    /// Add it: the object lives and lacks it.
    Add,
    /// Remove it: the object is being deleted and no longer in use.
    Remove,
    /// Leave the finalizers as they are.
    Keep,
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

fn decide(meta: &ObjectMeta, finalizer: &str, in_use: bool) -> FinalizerChange {
    match (meta.deletion_timestamp.is_some(), has(meta, finalizer)) {
        (false, false) => FinalizerChange::Add,
        (true, true) if !in_use => FinalizerChange::Remove,
        _ => FinalizerChange::Keep,
    }
}

/// Applies `change` for `finalizer` to `meta`.
pub(crate) fn apply(meta: &mut ObjectMeta, finalizer: &str, change: FinalizerChange) {
    match change {
        FinalizerChange::Add => meta.finalizers.get_or_insert_with(Vec::new).push(finalizer.to_string()),
        FinalizerChange::Remove => {
            if let Some(f) = meta.finalizers.as_mut() {
                f.retain(|x| x != finalizer);
                if f.is_empty() {
                    meta.finalizers = None;
                }
            }
        }
        FinalizerChange::Keep => {}
    }
}

/// The claim's `kubernetes.io/pvc-protection` finalizer: added to every live claim, removed
/// from a claim being deleted once no pod uses it (`in_use`, see [`claim_in_use`]).
pub fn claim_protection(claim: &PersistentVolumeClaim, in_use: bool) -> FinalizerChange {
    decide(&claim.metadata, PVC_PROTECTION_FINALIZER, in_use)
}

/// The volume's `kubernetes.io/pv-protection` finalizer: added to every live volume, removed
/// from a volume being deleted once it is not `Bound`.
pub fn volume_protection(volume: &PersistentVolume) -> FinalizerChange {
    decide(&volume.metadata, PV_PROTECTION_FINALIZER, volume_phase(volume) == Some(VOLUME_BOUND))
}

/// The claims a pod mounts (`spec.volumes[].persistentVolumeClaim.claimName`), in its
/// namespace.
pub fn claims_of_pod(pod: &Pod) -> impl Iterator<Item = &str> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    volumes.iter().filter_map(|v| v.persistent_volume_claim.as_ref()).map(|c| c.claim_name.as_str())
}

/// Whether the pod has finished (`Succeeded` or `Failed`): a finished pod no longer holds
/// its volumes. A pod being deleted still does until it has stopped.
pub fn pod_terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Whether a pod that has not terminated, in the claim's namespace, mounts it. Unlike
/// Kubernetes, pods not yet scheduled count too: no scheduler plugin keeps such a pod off a
/// node while its claim is being deleted.
pub fn claim_in_use<'a>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'a Pod>) -> bool {
    let (ns, name) = (claim.metadata.namespace.as_deref(), claim.metadata.name.as_deref().unwrap_or(""));
    pods.into_iter().any(|p| {
        p.metadata.namespace.as_deref() == ns && !pod_terminated(p) && claims_of_pod(p).any(|c| c == name)
    })
}
