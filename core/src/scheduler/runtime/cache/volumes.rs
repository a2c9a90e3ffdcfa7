//! The cache's claims, volumes and storage classes, from their watches.
//!
//! Every added object, and every object that changed in any way, is a [`ClusterEvent`] for the
//! VolumeBinding plugin's rejected pods; deletions are none (a claim, volume or class going
//! away never makes a pod schedulable, as kube-scheduler registers it).

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::SchedulerCache;
use crate::client::WatcherEvent;
use crate::controllers::volume::facts::claim_key;
use crate::scheduler::VolumeCatalog;
use crate::scheduler::runtime::cluster_event::ClusterEvent;

/// How a watch event of one kind changes the catalog.
enum Step<'a, K> {
    /// A relist starts.
    Init,
    /// An object was listed, created or changed (`listed`: part of a relist).
    Upsert(&'a K, bool),
    /// The relist is complete.
    InitDone,
    /// An object was deleted.
    Delete(&'a K),
    /// Nothing to do.
    Nothing,
}

fn step<K>(event: &WatcherEvent<K>) -> Step<'_, K> {
    match event {
        WatcherEvent::Init => Step::Init,
        WatcherEvent::InitApply(k) => Step::Upsert(k, true),
        WatcherEvent::Apply(k) => Step::Upsert(k, false),
        WatcherEvent::InitDone => Step::InitDone,
        WatcherEvent::Delete(k) => Step::Delete(k),
        WatcherEvent::Retrying(_) => Step::Nothing,
    }
}

/// The event an upsert amounts to: none when nothing changed.
fn upserted<K: PartialEq>(
    old: Option<&Arc<K>>,
    new: &K,
    added: ClusterEvent,
    changed: ClusterEvent,
) -> Option<ClusterEvent> {
    match old {
        None => Some(added),
        Some(old) if **old == *new => None,
        Some(_) => Some(changed),
    }
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl SchedulerCache {
    /// The catalog of claims, volumes and classes, as the next snapshot gets it.
    pub fn volumes(&self) -> &Arc<VolumeCatalog> {
        &self.volumes
    }

    fn catalog(&mut self) -> &mut VolumeCatalog {
        // Copies the catalog only while a snapshot (or a cycle) still shares it.
        Arc::make_mut(&mut self.volumes)
    }

    /// Applies a PersistentVolumeClaim watch event (all namespaces).
    pub fn apply_claim(&mut self, event: &WatcherEvent<PersistentVolumeClaim>) -> Vec<ClusterEvent> {
        match step(event) {
            Step::Init => self.claim_relist = Some(HashSet::new()),
            Step::Upsert(claim, listed) => {
                let key = claim_key(claim);
                if listed && let Some(seen) = &mut self.claim_relist {
                    seen.insert(key.clone());
                }
                let old = self.volumes.claim_by_key(&key);
                let event = upserted(old, claim, ClusterEvent::ClaimAdded, ClusterEvent::ClaimChanged);
                if event.is_some() {
                    self.catalog().insert_claim(Arc::new(claim.clone()));
                }
                return event.into_iter().collect();
            }
            Step::InitDone => {
                let seen = self.claim_relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .volumes
                    .claims()
                    .map(|(k, _)| k)
                    .filter(|k| !seen.contains(*k))
                    .map(str::to_string)
                    .collect();
                for key in gone {
                    self.catalog().remove_claim(&key);
                }
                self.claims_ready = true;
            }
            Step::Delete(claim) => {
                let key = claim_key(claim);
                if self.volumes.claim_by_key(&key).is_some() {
                    self.catalog().remove_claim(&key);
                }
            }
            Step::Nothing => {}
        }
        Vec::new()
    }

    /// Applies a PersistentVolume watch event.
    pub fn apply_volume(&mut self, event: &WatcherEvent<PersistentVolume>) -> Vec<ClusterEvent> {
        match step(event) {
            Step::Init => self.volume_relist = Some(HashSet::new()),
            Step::Upsert(volume, listed) => {
                let key = name(&volume.metadata);
                if listed && let Some(seen) = &mut self.volume_relist {
                    seen.insert(key.clone());
                }
                let old = self.volumes.volume(&key);
                let event = upserted(old, volume, ClusterEvent::VolumeAdded, ClusterEvent::VolumeChanged);
                if event.is_some() {
                    self.catalog().insert_volume(Arc::new(volume.clone()));
                }
                return event.into_iter().collect();
            }
            Step::InitDone => {
                let seen = self.volume_relist.take().unwrap_or_default();
                let gone: Vec<String> =
                    self.volumes.volumes().map(|v| name(&v.metadata)).filter(|k| !seen.contains(k)).collect();
                for key in gone {
                    self.catalog().remove_volume(&key);
                }
                self.volumes_ready = true;
            }
            Step::Delete(volume) => {
                let key = name(&volume.metadata);
                if self.volumes.volume(&key).is_some() {
                    self.catalog().remove_volume(&key);
                }
            }
            Step::Nothing => {}
        }
        Vec::new()
    }

    /// Applies a StorageClass watch event.
    pub fn apply_storage_class(&mut self, event: &WatcherEvent<StorageClass>) -> Vec<ClusterEvent> {
        match step(event) {
            Step::Init => self.class_relist = Some(HashSet::new()),
            Step::Upsert(class, listed) => {
                let key = name(&class.metadata);
                if listed && let Some(seen) = &mut self.class_relist {
                    seen.insert(key.clone());
                }
                let old = self.volumes.class(&key);
                let event =
                    upserted(old, class, ClusterEvent::StorageClassAdded, ClusterEvent::StorageClassChanged);
                if event.is_some() {
                    self.catalog().insert_class(Arc::new(class.clone()));
                }
                return event.into_iter().collect();
            }
            Step::InitDone => {
                let seen = self.class_relist.take().unwrap_or_default();
                let gone: Vec<String> =
                    self.volumes.classes().map(|c| name(&c.metadata)).filter(|k| !seen.contains(k)).collect();
                for key in gone {
                    self.catalog().remove_class(&key);
                }
                self.classes_ready = true;
            }
            Step::Delete(class) => {
                let key = name(&class.metadata);
                if self.volumes.class(&key).is_some() {
                    self.catalog().remove_class(&key);
                }
            }
            Step::Nothing => {}
        }
        Vec::new()
    }
}
