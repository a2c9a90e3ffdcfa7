//! The plugin's assume cache: volume bindings and provisioning decisions reserved for pods
//! whose binding cycle has not written them yet (kube-scheduler's PV and PVC assume caches).
//!
//! An assumed object is the catalog's object as the binding cycle will write it: a volume
//! with its `claimRef` set to the claim, a claim annotated with its selected node. Scheduling
//! cycles read the catalog through it, so a second pod does not take a volume reserved for
//! the first. An entry lasts until the pod that made it unreserves, or until the catalog
//! shows a different version of the object (the write arrived, or someone else changed it),
//! or the object is gone.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::PodVolumes;
use crate::controllers::volume::facts::{
    annotation, claim_key, claim_ref, is_bound_to_claim, reference_to, set_annotation, volume_name,
};
use crate::controllers::volume::{ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE};
use crate::scheduler::VolumeCatalog;

#[derive(Clone, Debug)]
struct Entry<K> {
    /// The object as assumed.
    object: Arc<K>,
    /// The catalog's `resourceVersion` of the object it was made from.
    base_version: Option<String>,
    /// The pod that assumed it (`namespace/name/uid`).
    owner: String,
}

/// Assumed volumes by name and claims by `namespace/name`.
#[derive(Debug, Default)]
pub(super) struct AssumeCache {
    volumes: HashMap<String, Entry<PersistentVolume>>,
    claims: HashMap<String, Entry<PersistentVolumeClaim>>,
}

fn version(meta: &ObjectMeta) -> Option<&str> {
    meta.resource_version.as_deref()
}

impl AssumeCache {
    /// Drops the entries whose object the catalog has in another version, or not at all.
    pub(super) fn prune(&mut self, catalog: &VolumeCatalog) {
        self.volumes.retain(|name, e| {
            catalog.volume(name).is_some_and(|v| version(&v.metadata) == e.base_version.as_deref())
        });
        self.claims.retain(|key, e| {
            catalog.claim_by_key(key).is_some_and(|c| version(&c.metadata) == e.base_version.as_deref())
        });
    }

    /// The volume as assumed, if an entry for this version of it exists.
    pub(super) fn volume<'a>(&'a self, volume: &'a Arc<PersistentVolume>) -> &'a Arc<PersistentVolume> {
        match self.volumes.get(volume_name(volume)) {
            Some(e) if e.base_version.as_deref() == version(&volume.metadata) => &e.object,
            _ => volume,
        }
    }

    /// The claim as assumed, if an entry for this version of it exists.
    pub(super) fn claim<'a>(
        &'a self,
        claim: &'a Arc<PersistentVolumeClaim>,
    ) -> &'a Arc<PersistentVolumeClaim> {
        match self.claims.get(&claim_key(claim)) {
            Some(e) if e.base_version.as_deref() == version(&claim.metadata) => &e.object,
            _ => claim,
        }
    }

    /// Assumes `decided` for the pod `owner` on `node`: each chosen volume pre-bound to its
    /// claim, each claim to provision annotated with the node. Objects that are so already
    /// are not assumed (nothing will be written for them). Fails, assuming nothing, if a
    /// chosen volume is assumed for another claim meanwhile. Returns the decisions with the
    /// objects as the binding cycle should write them.
    pub(super) fn assume(
        &mut self,
        owner: &str,
        node: &str,
        decided: &PodVolumes,
    ) -> Result<PodVolumes, String> {
        for (claim, volume) in &decided.bindings {
            if let Some(e) = self.volumes.get(volume_name(volume))
                && e.base_version.as_deref() == version(&volume.metadata)
                && !is_bound_to_claim(&e.object, claim)
            {
                return Err(format!(
                    "volume {} is already assumed for another claim than {}",
                    volume_name(volume),
                    claim_key(claim)
                ));
            }
        }
        let mut out = PodVolumes::default();
        for (claim, volume) in &decided.bindings {
            let has_uid = claim_ref(volume).and_then(|r| r.uid.as_deref()).is_some_and(|u| !u.is_empty());
            if is_bound_to_claim(volume, claim) && has_uid {
                out.bindings.push((claim.clone(), volume.clone()));
                continue;
            }
            let mut bound = (**volume).clone();
            bound.spec.get_or_insert_with(Default::default).claim_ref = Some(reference_to(claim));
            set_annotation(&mut bound.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            let bound = Arc::new(bound);
            let entry = Entry {
                object: bound.clone(),
                base_version: version(&volume.metadata).map(str::to_string),
                owner: owner.to_string(),
            };
            self.volumes.insert(volume_name(volume).to_string(), entry);
            out.bindings.push((claim.clone(), bound));
        }
        for claim in &decided.provisions {
            if annotation(&claim.metadata, ANN_SELECTED_NODE) == Some(node) {
                out.provisions.push(claim.clone());
                continue;
            }
            let mut selected = (**claim).clone();
            set_annotation(&mut selected.metadata, ANN_SELECTED_NODE, node);
            let selected = Arc::new(selected);
            let entry = Entry {
                object: selected.clone(),
                base_version: version(&claim.metadata).map(str::to_string),
                owner: owner.to_string(),
            };
            self.claims.insert(claim_key(claim), entry);
            out.provisions.push(selected);
        }
        Ok(out)
    }

    /// Forgets what `owner` assumed for `reserved` (entries another pod made stay).
    pub(super) fn revert(&mut self, owner: &str, reserved: &PodVolumes) {
        for (_, volume) in &reserved.bindings {
            let name = volume_name(volume);
            if self.volumes.get(name).is_some_and(|e| e.owner == owner) {
                self.volumes.remove(name);
            }
        }
        for claim in &reserved.provisions {
            let key = claim_key(claim);
            if self.claims.get(&key).is_some_and(|e| e.owner == owner) {
                self.claims.remove(&key);
            }
        }
    }

    /// How many volumes and claims are assumed.
    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.volumes.len(), self.claims.len())
    }
}
