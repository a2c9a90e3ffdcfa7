//! Small facts about volumes, claims and classes that every decision of this module reads:
//! classes, requested and offered storage, access and volume modes, who a volume is bound to,
//! and status updates that change only what differs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::{ANN_BETA_STORAGE_CLASS, RECLAIM_RETAIN, STORAGE, VOLUME_MODE_FILESYSTEM};
use crate::object::Resource;
use crate::quantity::{Quantity, QuantityError};

/// The value of annotation `key`, if set.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Sets annotation `key` to `value`.
pub(crate) fn set_annotation(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(key.to_string(), value.to_string());
}

/// Removes annotation `key` (and the map, once empty).
pub(crate) fn remove_annotation(meta: &mut ObjectMeta, key: &str) {
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(key);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// `namespace/name` of a claim, for messages and logs.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    let m = &claim.metadata;
    format!("{}/{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
}

/// A volume's name.
pub fn volume_name(volume: &PersistentVolume) -> &str {
    volume.metadata.name.as_deref().unwrap_or("")
}

/// The storage class a claim asks for: the beta annotation, else `spec.storageClassName`;
/// `""` means no class (Kubernetes' `GetPersistentVolumeClaimClass`).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// Whether a claim names no class at all (neither field nor annotation): only such claims are
/// given the default class. `storageClassName: ""` is an explicit "no class".
pub fn claim_class_unset(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS).is_none()
        && claim.spec.as_ref().is_none_or(|s| s.storage_class_name.is_none())
}

/// The storage class of a volume: the beta annotation, else `spec.storageClassName`.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = annotation(&volume.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// Parses the `storage` entry of a resource map; `None` when there is none.
pub fn storage_of(map: Option<&BTreeMap<String, WireQuantity>>) -> Result<Option<Quantity>, QuantityError> {
    match map.and_then(|m| m.get(STORAGE)) {
        Some(q) => Quantity::parse(q.0.trim()).map(Some),
        None => Ok(None),
    }
}

/// The storage a claim requests (`spec.resources.requests.storage`).
pub fn requested_storage(claim: &PersistentVolumeClaim) -> Result<Option<Quantity>, QuantityError> {
    storage_of(claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()))
}

/// The storage a volume offers (`spec.capacity.storage`).
pub fn volume_capacity(volume: &PersistentVolume) -> Result<Option<Quantity>, QuantityError> {
    storage_of(volume.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// The claim's access modes.
pub fn claim_access_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or(&[])
}

/// The volume's access modes.
pub fn volume_access_modes(volume: &PersistentVolume) -> &[String] {
    volume.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or(&[])
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_satisfied(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = volume_access_modes(volume);
    claim_access_modes(claim).iter().all(|m| offered.contains(m))
}

/// The claim's volume mode (`Filesystem` when unset).
pub fn claim_volume_mode(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or(VOLUME_MODE_FILESYSTEM)
}

/// The volume's volume mode (`Filesystem` when unset).
pub fn volume_volume_mode(volume: &PersistentVolume) -> &str {
    volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or(VOLUME_MODE_FILESYSTEM)
}

/// The volume's reclaim policy (`Retain` when unset, Kubernetes' default for volumes).
pub fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or(RECLAIM_RETAIN)
}

/// The volume's `spec.claimRef`.
pub fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// The claim's `spec.volumeName` (`None` when unset or empty).
pub fn claim_volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())
}

/// The volume's phase (`None` before anyone set one).
pub fn volume_phase(volume: &PersistentVolume) -> Option<&str> {
    volume.status.as_ref()?.phase.as_deref()
}

/// The claim's phase (`None` before anyone set one).
pub fn claim_phase(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.status.as_ref()?.phase.as_deref()
}

/// Whether `claim_ref` names the claim: same namespace and name, and the same uid unless the
/// reference has none (a volume pre-bound by name). Kubernetes' `IsVolumeBoundToClaim`.
pub fn ref_names_claim(claim_ref: &ObjectReference, claim: &PersistentVolumeClaim) -> bool {
    let m = &claim.metadata;
    claim_ref.name.as_deref().unwrap_or("") == m.name.as_deref().unwrap_or("")
        && claim_ref.namespace.as_deref().unwrap_or("") == m.namespace.as_deref().unwrap_or("")
        && claim_ref.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == m.uid.as_deref())
}

/// Whether the volume is bound, or pre-bound, to the claim (see [`ref_names_claim`]).
pub fn is_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    claim_ref(volume).is_some_and(|r| ref_names_claim(r, claim))
}

/// The `claimRef` a volume bound to `claim` carries (with its uid).
pub fn reference_to(claim: &PersistentVolumeClaim) -> ObjectReference {
    let m = &claim.metadata;
    ObjectReference {
        api_version: Some(PersistentVolumeClaim::TYPE.api_version()),
        kind: Some(PersistentVolumeClaim::TYPE.kind.to_string()),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

/// `t` at the precision Kubernetes stores (seconds), so what is written reads back the same.
pub(crate) fn whole_seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The volume's status with `phase` and `message`, or `None` when it already has them. A
/// phase change stamps `lastPhaseTransitionTime`.
pub fn volume_status_with(
    volume: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
    now: Timestamp,
) -> Option<PersistentVolumeStatus> {
    let current = volume.status.clone().unwrap_or_default();
    if current.phase.as_deref() == Some(phase) && current.message.as_deref() == message {
        return None;
    }
    let mut status = current.clone();
    if current.phase.as_deref() != Some(phase) {
        status.phase = Some(phase.to_string());
        status.last_phase_transition_time = Some(whole_seconds(now));
        status.reason = None;
    }
    status.message = message.map(str::to_string);
    Some(status)
}

/// The claim's status with `phase` and, when bound to `volume`, its access modes and
/// capacity (without a volume, none), or `None` when nothing changes.
pub fn claim_status_with(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Option<PersistentVolumeClaimStatus> {
    let current = claim.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.phase = Some(phase.to_string());
    match volume {
        Some(v) => {
            let modes = volume_access_modes(v);
            status.access_modes = (!modes.is_empty()).then(|| modes.to_vec());
            let capacity = v.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get(STORAGE));
            status.capacity = capacity.map(|q| BTreeMap::from([(STORAGE.to_string(), q.clone())]));
        }
        // Without a volume the claim has neither (Kubernetes resets them too).
        None => {
            status.access_modes = None;
            status.capacity = None;
        }
    }
    (status != current).then_some(status)
}
