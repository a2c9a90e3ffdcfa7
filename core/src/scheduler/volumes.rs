//! The storage objects a scheduling cycle sees: PersistentVolumeClaims, PersistentVolumes and
//! StorageClasses, as the VolumeBinding plugin reads them.
//!
//! The scheduler's cache keeps one [`VolumeCatalog`] from watches and hands each
//! [`Snapshot`](super::Snapshot) a shared, immutable copy ([`Snapshot::volumes`](super::Snapshot::volumes));
//! a change to a claim, volume or class swaps in a new copy without touching the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::controllers::volume::facts::{claim_key, volume_class};

/// Claims by `namespace/name`, volumes and classes by name, and volumes by storage class.
#[derive(Clone, Debug, Default)]
pub struct VolumeCatalog {
    claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    /// Volume names by their storage class (`""`: no class).
    by_class: BTreeMap<String, BTreeSet<String>>,
    classes: BTreeMap<String, Arc<StorageClass>>,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl VolumeCatalog {
    /// An empty catalog.
    pub fn new() -> VolumeCatalog {
        VolumeCatalog::default()
    }

    /// A catalog of these objects (later ones replace earlier ones of the same name).
    pub fn from_objects(
        claims: impl IntoIterator<Item = PersistentVolumeClaim>,
        volumes: impl IntoIterator<Item = PersistentVolume>,
        classes: impl IntoIterator<Item = StorageClass>,
    ) -> VolumeCatalog {
        let mut catalog = VolumeCatalog::new();
        for c in claims {
            catalog.insert_claim(Arc::new(c));
        }
        for v in volumes {
            catalog.insert_volume(Arc::new(v));
        }
        for c in classes {
            catalog.insert_class(Arc::new(c));
        }
        catalog
    }

    /// The claim `namespace/name`.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claim_by_key(&format!("{namespace}/{name}"))
    }

    /// The claim whose `namespace/name` is `key`.
    pub fn claim_by_key(&self, key: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(key)
    }

    /// The volume `name`.
    pub fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes.get(name)
    }

    /// The storage class `name`.
    pub fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes.get(name)
    }

    /// Every claim, by `namespace/name`.
    pub fn claims(&self) -> impl Iterator<Item = (&str, &Arc<PersistentVolumeClaim>)> {
        self.claims.iter().map(|(k, c)| (k.as_str(), c))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.volumes.values()
    }

    /// The volumes of storage class `class` (`""`: volumes without a class), by name.
    pub fn volumes_of_class<'a>(&'a self, class: &str) -> impl Iterator<Item = &'a Arc<PersistentVolume>> {
        self.by_class.get(class).into_iter().flatten().filter_map(|name| self.volumes.get(name))
    }

    /// Every storage class, by name.
    pub fn classes(&self) -> impl Iterator<Item = &Arc<StorageClass>> {
        self.classes.values()
    }

    /// How many claims, volumes and classes there are.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.claims.len(), self.volumes.len(), self.classes.len())
    }

    /// Adds or replaces a claim; returns the one it replaced.
    pub fn insert_claim(&mut self, claim: Arc<PersistentVolumeClaim>) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.insert(claim_key(&claim), claim)
    }

    /// Removes the claim `namespace/name`.
    pub fn remove_claim(&mut self, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.remove(key)
    }

    /// Adds or replaces a volume; returns the one it replaced.
    pub fn insert_volume(&mut self, volume: Arc<PersistentVolume>) -> Option<Arc<PersistentVolume>> {
        let name = name_of(&volume.metadata);
        let class = volume_class(&volume).to_string();
        let old = self.volumes.insert(name.clone(), volume);
        if let Some(old) = &old {
            self.unindex(volume_class(old).to_string(), &name);
        }
        self.by_class.entry(class).or_default().insert(name);
        old
    }

    /// Removes the volume `name`.
    pub fn remove_volume(&mut self, name: &str) -> Option<Arc<PersistentVolume>> {
        let old = self.volumes.remove(name)?;
        self.unindex(volume_class(&old).to_string(), name);
        Some(old)
    }

    fn unindex(&mut self, class: String, name: &str) {
        if let Some(names) = self.by_class.get_mut(&class) {
            names.remove(name);
            if names.is_empty() {
                self.by_class.remove(&class);
            }
        }
    }

    /// Adds or replaces a storage class; returns the one it replaced.
    pub fn insert_class(&mut self, class: Arc<StorageClass>) -> Option<Arc<StorageClass>> {
        self.classes.insert(name_of(&class.metadata), class)
    }

    /// Removes the storage class `name`.
    pub fn remove_class(&mut self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pv(name: &str, class: &str) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"storageClassName": class}}))
            .expect("volume")
    }

    #[test]
    fn volumes_are_found_by_class_and_move_when_their_class_changes() {
        let mut c = VolumeCatalog::from_objects([], [pv("a", "fast"), pv("b", "fast"), pv("c", "")], []);
        let names = |c: &VolumeCatalog, class: &str| -> Vec<String> {
            c.volumes_of_class(class).map(|v| name_of(&v.metadata)).collect()
        };
        assert_eq!(names(&c, "fast"), ["a", "b"]);
        assert_eq!(names(&c, ""), ["c"]);
        c.insert_volume(Arc::new(pv("a", "slow")));
        assert_eq!((names(&c, "fast"), names(&c, "slow")), (vec!["b".to_string()], vec!["a".to_string()]));
        c.remove_volume("b");
        assert!(names(&c, "fast").is_empty());
        assert!(c.remove_volume("b").is_none());
        assert_eq!(c.counts(), (0, 2, 0));
    }
}
