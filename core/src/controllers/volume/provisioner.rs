//! The local-path provisioner: the PersistentVolume a pending claim of a
//! [`LOCAL_PATH_PROVISIONER`] StorageClass gets, and which class a claim that names none is
//! given.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::facts::{annotation, claim_key, reference_to, requested_storage};
use super::{
    ANN_BETA_DEFAULT_CLASS, ANN_BOUND_BY_CONTROLLER, ANN_DEFAULT_CLASS, ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE, BASE_PATH_PARAMETER, BINDING_WAIT_FOR_FIRST_CONSUMER, DEFAULT_BASE_PATH,
    LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER, PV_PROTECTION_FINALIZER, RECLAIM_DELETE, STORAGE,
};
use crate::quantity::QuantityError;

/// The hostPath type of provisioned volumes: the node agent creates the directory.
pub const HOST_PATH_TYPE: &str = "DirectoryOrCreate";

/// Why a claim cannot be provisioned (the message of a `ProvisioningFailed` Event).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProvisionError {
    /// The claim has a `spec.selector`: a new volume cannot be made to match labels.
    #[error("claim {claim}: claim.Spec.Selector is not supported for dynamic provisioning")]
    Selector {
        /// `namespace/name` of the claim.
        claim: String,
    },
    /// The claim requests no storage.
    #[error("claim {claim}: spec.resources.requests.storage is required for dynamic provisioning")]
    MissingRequest {
        /// `namespace/name` of the claim.
        claim: String,
    },
    /// The claim's request is not a quantity.
    #[error("claim {claim}: spec.resources.requests.storage is invalid")]
    InvalidRequest {
        /// `namespace/name` of the claim.
        claim: String,
        /// Why.
        #[source]
        source: QuantityError,
    },
    /// The claim has no uid (it was never stored).
    #[error("claim {claim} has no uid")]
    MissingUid {
        /// `namespace/name` of the claim.
        claim: String,
    },
    /// The class has a parameter the provisioner does not know.
    #[error(
        "storage class {class}: invalid parameter {parameter:?} for provisioner {LOCAL_PATH_PROVISIONER}"
    )]
    UnknownParameter {
        /// The class.
        class: String,
        /// The parameter.
        parameter: String,
    },
    /// The class's `basePath` is not an absolute path.
    #[error("storage class {class}: parameter basePath {path:?} must be an absolute path")]
    RelativeBasePath {
        /// The class.
        class: String,
        /// The value.
        path: String,
    },
}

fn is_true(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(key)).is_some_and(|v| v == "true")
}

/// Whether the class is marked default (`storageclass.kubernetes.io/is-default-class: "true"`,
/// or the beta annotation).
pub fn is_default_class(class: &StorageClass) -> bool {
    is_true(&class.metadata, ANN_DEFAULT_CLASS) || is_true(&class.metadata, ANN_BETA_DEFAULT_CLASS)
}

/// The default class, when exactly one class is marked default. With several, none is
/// (Kubernetes picks the newest; an ambiguous default is more likely a mistake, and a claim
/// can always name its class).
pub fn default_class<'a>(classes: &[&'a StorageClass]) -> Option<&'a StorageClass> {
    let mut defaults = classes.iter().copied().filter(|c| is_default_class(c));
    let first = defaults.next()?;
    defaults.next().is_none().then_some(first)
}

/// Whether the class delays binding until a pod using the claim is scheduled
/// (`volumeBindingMode: WaitForFirstConsumer`).
pub fn delays_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some(BINDING_WAIT_FOR_FIRST_CONSUMER)
}

/// The name of the volume provisioned for a claim: `pvc-<claim uid>`.
pub fn provisioned_volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The directory of a claim's volume on the node: `<base>/<namespace>_<name>_<uid>`.
pub fn local_path(base: &str, namespace: &str, name: &str, uid: &str) -> String {
    format!("{}/{namespace}_{name}_{uid}", base.trim_end_matches('/'))
}

/// The class's `basePath` parameter (default [`DEFAULT_BASE_PATH`]); any other parameter is
/// an error.
fn base_path(class: &StorageClass) -> Result<&str, ProvisionError> {
    let class_name = || class.metadata.name.clone().unwrap_or_default();
    let mut base = DEFAULT_BASE_PATH;
    for (k, v) in class.parameters.iter().flatten() {
        if k != BASE_PATH_PARAMETER {
            return Err(ProvisionError::UnknownParameter { class: class_name(), parameter: k.clone() });
        }
        if !v.starts_with('/') {
            return Err(ProvisionError::RelativeBasePath { class: class_name(), path: v.clone() });
        }
        base = v;
    }
    Ok(base)
}

/// The node affinity of a volume whose directory lives on `node`: the node's
/// `kubernetes.io/hostname` label must be `node` (the node agent sets it to the node's name).
pub fn on_node(node: &str) -> VolumeNodeAffinity {
    let requirement = NodeSelectorRequirement {
        key: LABEL_HOSTNAME.to_string(),
        operator: "In".to_string(),
        values: Some(vec![node.to_string()]),
    };
    let term = NodeSelectorTerm { match_expressions: Some(vec![requirement]), match_fields: None };
    VolumeNodeAffinity { required: Some(NodeSelector { node_selector_terms: vec![term] }) }
}

/// The volume the local-path provisioner makes for `claim` of `class`: named
/// [`provisioned_volume_name`], a `hostPath` of type [`HOST_PATH_TYPE`] at [`local_path`]
/// under the class's `basePath`, the requested capacity, the claim's access modes and volume
/// mode, the class's reclaim policy (default `Delete`) and mount options, pre-bound to the
/// claim by a `claimRef` with its uid, annotated `pv.kubernetes.io/provisioned-by`, and
/// carrying the pv-protection finalizer from the start. A claim whose node the scheduler
/// selected (`volume.kubernetes.io/selected-node`) gets a volume that requires that node
/// ([`on_node`]): its directory is there.
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<PersistentVolume, ProvisionError> {
    let key = claim_key(claim);
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.selector.is_some() {
        return Err(ProvisionError::Selector { claim: key });
    }
    let request = requested_storage(claim)
        .map_err(|source| ProvisionError::InvalidRequest { claim: key.clone(), source })?
        .ok_or_else(|| ProvisionError::MissingRequest { claim: key.clone() })?;
    let m = &claim.metadata;
    let uid = m.uid.as_deref().filter(|u| !u.is_empty()).ok_or(ProvisionError::MissingUid { claim: key })?;
    let (ns, name) = (m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""));
    let path = local_path(base_path(class)?, ns, name, uid);
    let annotations = BTreeMap::from([
        (ANN_PROVISIONED_BY.to_string(), LOCAL_PATH_PROVISIONER.to_string()),
        (ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string()),
    ]);
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(provisioned_volume_name(uid)),
            annotations: Some(annotations),
            finalizers: Some(vec![PV_PROTECTION_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(STORAGE.to_string(), WireQuantity(request.to_string()))])),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            persistent_volume_reclaim_policy: Some(
                class.reclaim_policy.clone().unwrap_or_else(|| RECLAIM_DELETE.to_string()),
            ),
            mount_options: class.mount_options.clone(),
            storage_class_name: class.metadata.name.clone(),
            claim_ref: Some(reference_to(claim)),
            host_path: Some(HostPathVolumeSource { path, type_: Some(HOST_PATH_TYPE.to_string()) }),
            node_affinity: annotation(m, ANN_SELECTED_NODE).filter(|n| !n.is_empty()).map(on_node),
            ..Default::default()
        }),
        status: None,
    })
}
