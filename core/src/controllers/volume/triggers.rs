//! Which claims and volumes to sync when something changes, and the cache indexes that
//! answer it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::ANN_BIND_COMPLETED;
use super::facts::{annotation, claim_ref, claim_volume_name};
use super::protection::claims_of_pod;
use crate::client::{Cache, IndexFn};
use crate::controller::{Change, ObjectKey};

/// The index of volumes by the `namespace/name` of their `claimRef`.
pub const CLAIM_REF_INDEX: &str = "volume:claimRef";
/// The index of objects by namespace (the name [`Cache::by_namespace`] gives it).
pub(crate) const NAMESPACE_INDEX: &str = "namespace";

/// The indexes the volume controllers read volumes through.
pub fn volume_indexes() -> Vec<(String, IndexFn<PersistentVolume>)> {
    let by_claim: IndexFn<PersistentVolume> = Arc::new(|v: &PersistentVolume| {
        claim_ref(v)
            .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or("")))
            .into_iter()
            .collect()
    });
    vec![(CLAIM_REF_INDEX.to_string(), by_claim)]
}

/// Deduplicated keys from mapping both sides of a change.
fn both_sides<K>(change: &Change<K>, map: impl Fn(&K) -> Vec<ObjectKey>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    for obj in [change.old(), change.latest()].into_iter().flatten() {
        for k in map(obj) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// Whether a claim still waits for a volume (no `bind-completed` annotation, not being
/// deleted).
fn waiting(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, ANN_BIND_COMPLETED).is_none() && claim.metadata.deletion_timestamp.is_none()
}

/// The keys of every claim waiting for a volume.
pub fn waiting_claims(claims: &Cache<PersistentVolumeClaim>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> =
        claims.list().iter().filter(|c| waiting(c)).map(|c| ObjectKey::of(c.as_ref())).collect();
    keys.sort();
    keys
}

/// The claims a volume change concerns: the one its `claimRef` names (before or after), and,
/// when the volume is free (no `claimRef`), every claim waiting for a volume.
pub fn claims_for_volume(
    change: &Change<PersistentVolume>,
    claims: &Cache<PersistentVolumeClaim>,
) -> Vec<ObjectKey> {
    let mut keys = both_sides(change, |v| {
        let Some(r) = claim_ref(v) else { return Vec::new() };
        match (r.namespace.as_deref(), r.name.as_deref()) {
            (Some(ns), Some(name)) => vec![ObjectKey::namespaced(ns, name)],
            _ => Vec::new(),
        }
    });
    if change.latest().is_some_and(|v| claim_ref(v).is_none()) {
        for k in waiting_claims(claims) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The claims a class change concerns: every claim waiting for a volume.
pub fn claims_for_class(
    _change: &Change<StorageClass>,
    claims: &Cache<PersistentVolumeClaim>,
) -> Vec<ObjectKey> {
    waiting_claims(claims)
}

/// The claims a pod change concerns: those it mounts (before or after), for their
/// protection finalizer.
pub fn claims_for_pod(change: &Change<Pod>) -> Vec<ObjectKey> {
    both_sides(change, |p| {
        let ns = p.metadata.namespace.as_deref().unwrap_or("");
        claims_of_pod(p).map(|c| ObjectKey::namespaced(ns, c)).collect()
    })
}

/// The volumes a claim change concerns: the one it names (before or after) and those whose
/// `claimRef` names it.
pub fn volumes_for_claim(
    change: &Change<PersistentVolumeClaim>,
    volumes: &Cache<PersistentVolume>,
) -> Vec<ObjectKey> {
    both_sides(change, |c| {
        let mut keys: Vec<ObjectKey> = claim_volume_name(c).map(ObjectKey::cluster).into_iter().collect();
        let key = format!(
            "{}/{}",
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or("")
        );
        for v in volumes.indexed(CLAIM_REF_INDEX, &key) {
            let k = ObjectKey::of(v.as_ref());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    })
}
