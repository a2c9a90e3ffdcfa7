//! persistentVolumeClaim volumes: the claim must be Bound, and its PersistentVolume must be a
//! `hostPath` or `local` volume on this node's file system.

use std::sync::Arc;

use flotilla_core::client::{Api, Client};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
};

use super::Failure;

/// The host path a claim leads to, and the hostPath `type` to check it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClaimPath {
    pub(super) path: String,
    pub(super) type_: Option<String>,
    /// Whether the path must exist already (local volumes), even without a `type`.
    pub(super) must_exist: bool,
}

/// Reads the claim (in the pod's namespace) and its volume.
pub(super) async fn resolve(
    client: &Arc<dyn Client>,
    namespace: &str,
    source: &PersistentVolumeClaimVolumeSource,
) -> Result<ClaimPath, Failure> {
    let name = &source.claim_name;
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| Failure::Api { kind: "persistentvolumeclaim", name: name.clone(), source: e })?;
    let claim = claim.ok_or_else(|| Failure::Invalid(format!("persistentvolumeclaim {name:?} not found")))?;
    let volume_name = bound_volume(name, &claim).map_err(Failure::Invalid)?;
    let volume = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume_name)
        .await
        .map_err(|e| Failure::Api { kind: "persistentvolume", name: volume_name.clone(), source: e })?;
    host_path_of(&claim, &volume_name, volume.as_ref()).map_err(Failure::Invalid)
}

/// The claim's volume name, when the claim is Bound.
fn bound_volume(name: &str, claim: &PersistentVolumeClaim) -> Result<String, String> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Bound" {
        return Err(format!("persistentvolumeclaim {name:?} is not bound (phase {phase})"));
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim {name:?} is Bound but names no volume"))
}

/// The host path of the claim's volume.
fn host_path_of(
    claim: &PersistentVolumeClaim,
    volume_name: &str,
    volume: Option<&PersistentVolume>,
) -> Result<ClaimPath, String> {
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let Some(volume) = volume else {
        return Err(format!(
            "persistentvolume {volume_name:?} of persistentvolumeclaim {claim_name:?} not found"
        ));
    };
    let spec = volume.spec.as_ref();
    // A volume re-bound to another claim (same name, new uid) must not be handed out.
    let claim_ref_uid = spec.and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.uid.as_deref());
    if let (Some(bound_uid), Some(uid)) = (claim_ref_uid, claim.metadata.uid.as_deref())
        && bound_uid != uid
    {
        return Err(format!(
            "persistentvolume {volume_name:?} is bound to another claim than {claim_name:?} (uid {bound_uid})"
        ));
    }
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(ClaimPath { path: h.path.clone(), type_: h.type_.clone(), must_exist: false });
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        // A local volume is prepared by an administrator: it must already exist.
        return Ok(ClaimPath { path: l.path.clone(), type_: None, must_exist: true });
    }
    let source = spec
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().filter(|k| SOURCES.contains(&k.as_str())).cloned().collect::<Vec<_>>())
        })
        .unwrap_or_default();
    Err(format!(
        "persistentvolume {volume_name:?} has source {}; this node mounts only hostPath and local volumes",
        if source.is_empty() { "none".to_string() } else { source.join(", ") }
    ))
}

/// The volume source fields of a PersistentVolume's spec, to name an unsupported one.
const SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];
