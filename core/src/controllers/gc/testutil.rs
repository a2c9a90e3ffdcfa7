//! Builders of the objects the collector's unit tests feed it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::object::{DynamicObject, ResourceType};

/// An object of kind `t` named `ns/name` with this uid and these owners.
pub(crate) fn object(
    t: ResourceType,
    ns: &str,
    name: &str,
    uid: &str,
    owners: &[OwnerReference],
) -> DynamicObject {
    DynamicObject {
        api_version: t.api_version(),
        kind: t.kind.to_string(),
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            uid: Some(uid.into()),
            owner_references: (!owners.is_empty()).then(|| owners.to_vec()),
            ..Default::default()
        },
        data: Default::default(),
    }
}

/// A reference to the object of kind `t` named `name` with this uid.
pub(crate) fn owner_ref(t: ResourceType, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: t.api_version(),
        kind: t.kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

/// `obj` with its deletion started and these finalizers.
pub(crate) fn deleting(mut obj: DynamicObject, finalizers: &[&str]) -> DynamicObject {
    obj.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("a valid timestamp")));
    obj.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
    obj
}
