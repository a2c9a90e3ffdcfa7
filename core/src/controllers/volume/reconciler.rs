//! [`ClaimReconciler`] and [`VolumeReconciler`]: read a claim or a volume and what it relates
//! to from the caches, ask [`sync_claim`] or [`sync_volume`], and perform the plan.
//!
//! Every write replaces the cached object with its `resourceVersion`, so a concurrent change
//! fails with 409 Conflict; the reconcile then fails and is retried with backoff, reading the
//! newer object. A write that finds its object gone ends the reconcile: the deletion triggers
//! whatever has to follow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use tracing::{debug, info};

use super::claim_sync::{ClaimInput, sync_claim};
use super::facts::{claim_key, claim_ref, volume_name};
use super::plan::{Note, ObjectWrite};
use super::protection::claim_in_use;
use super::triggers::{NAMESPACE_INDEX, volume_indexes};
use super::volume_sync::{VolumeInput, sync_volume};
use super::{Error, LOCAL_PATH_PROVISIONER, PVC_PROTECTION_FINALIZER, REASON_PROVISIONING_SUCCEEDED, Result};
use crate::client::{Api, Cache, Client, DeleteOptions, Error as ClientError, ListOptions};
use crate::controller::events::{Recorder, reference};
use crate::controller::finalizers::has_finalizer;
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::object::Resource;
use crate::registry::{Clock, Precondition};

/// How soon to look again while the caches are still being filled.
const CACHE_RECHECK: Duration = Duration::from_secs(1);

/// Objects whose status the plans carry alongside the rest.
trait WithStatus: Resource + Clone {
    /// Takes `other`'s status.
    fn take_status_from(&mut self, other: &Self);
}

impl WithStatus for PersistentVolume {
    fn take_status_from(&mut self, other: &Self) {
        self.status = other.status.clone();
    }
}

impl WithStatus for PersistentVolumeClaim {
    fn take_status_from(&mut self, other: &Self) {
        self.status = other.status.clone();
    }
}

/// Performs `w`: the main part, then the status on top of what the first write returned.
/// `Ok(None)` when the object is gone.
async fn write<K: WithStatus>(api: &Api<K>, w: &ObjectWrite<K>) -> Result<Option<K>, ClientError> {
    let name = w.object.meta().name.clone().unwrap_or_default();
    let mut latest = w.object.clone();
    if w.main {
        latest = match api.replace(&name, &w.object).await {
            Ok(written) => written,
            Err(ClientError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    if w.status {
        latest.take_status_from(&w.object);
        latest = match api.replace_status(&name, &latest).await {
            Ok(written) => written,
            Err(ClientError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    Ok(Some(latest))
}

fn publish<K: Resource>(recorder: &Recorder, obj: &K, notes: Vec<Note>) {
    for n in notes {
        recorder.publish(reference(obj), n.type_, n.reason, n.message);
    }
}

/// Binds, provisions and protects claims: see the [module docs](super).
pub struct ClaimReconciler {
    client: Arc<dyn Client>,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    pods: Cache<Pod>,
    clock: Clock,
    recorder: Recorder,
}

impl ClaimReconciler {
    /// A reconciler reading these caches (the volume and pod caches gain the indexes it
    /// reads through) and writing through `client`; `recorder` publishes its Events.
    pub fn new(
        client: Arc<dyn Client>,
        claims: Cache<PersistentVolumeClaim>,
        volumes: Cache<PersistentVolume>,
        classes: Cache<StorageClass>,
        pods: Cache<Pod>,
        clock: Clock,
        recorder: Recorder,
    ) -> Self {
        for (name, f) in volume_indexes() {
            if !volumes.has_index(&name) {
                volumes.add_index(&name, f);
            }
        }
        if !pods.has_index(NAMESPACE_INDEX) {
            let (name, f) = Cache::<Pod>::by_namespace();
            pods.add_index(&name, f);
        }
        ClaimReconciler { client, claims, volumes, classes, pods, clock, recorder }
    }

    /// Whether a pod mounts the claim, by the cache and, when the cache says no, by the API
    /// server (a pod created a moment ago may not be cached yet; removing the finalizer
    /// cannot be undone).
    async fn in_use(&self, claim: &PersistentVolumeClaim, namespace: &str) -> Result<bool> {
        let cached = self.pods.indexed(NAMESPACE_INDEX, namespace);
        if claim_in_use(claim, cached.iter().map(Arc::as_ref)) {
            return Ok(true);
        }
        let deleting = claim.metadata.deletion_timestamp.is_some();
        if !deleting || !has_finalizer(claim, PVC_PROTECTION_FINALIZER) {
            return Ok(false);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListOptions::default())
            .await
            .map_err(|source| Error::ListPods { namespace: namespace.to_string(), source })?;
        Ok(claim_in_use(claim, pods.items.iter()))
    }
}

#[async_trait]
impl Reconciler for ClaimReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let ready = self.claims.is_ready()
            && self.volumes.is_ready()
            && self.classes.is_ready()
            && self.pods.is_ready();
        if !ready {
            debug!(claim = %key, "caches not filled yet");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let (Some(namespace), Some(claim)) = (&key.namespace, self.claims.get(&key.cache_key())) else {
            return Ok(Action::Done);
        };
        let volumes = self.volumes.list();
        let volume_refs: Vec<&PersistentVolume> = volumes.iter().map(Arc::as_ref).collect();
        let classes = self.classes.list();
        let class_refs: Vec<&StorageClass> = classes.iter().map(Arc::as_ref).collect();
        let in_use = self.in_use(&claim, namespace).await?;
        let input = ClaimInput {
            claim: &claim,
            volumes: &volume_refs,
            classes: &class_refs,
            in_use,
            now: (self.clock)(),
        };
        let plan = sync_claim(&input);
        if plan.is_empty() {
            return Ok(Action::Done);
        }
        if let Some(w) = &plan.volume {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let volume = volume_name(&w.object).to_string();
            match write(&api, w).await {
                Ok(Some(_)) => info!(claim = %key, %volume, "bound volume to claim"),
                Ok(None) => return Ok(Action::Done),
                Err(source) => return Err(Error::WriteVolume { volume, source }),
            }
        }
        if let Some(w) = &plan.claim {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            match write(&api, w).await {
                Ok(Some(written)) => {
                    let phase = written.status.as_ref().and_then(|s| s.phase.clone());
                    debug!(claim = %key, phase = ?phase, "updated claim");
                }
                Ok(None) => return Ok(Action::Done),
                Err(source) => return Err(Error::WriteClaim { claim: claim_key(&claim), source }),
            }
        }
        if let Some(pv) = &plan.provision {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let volume = volume_name(pv).to_string();
            match api.create(pv).await {
                Ok(_) => {
                    info!(claim = %key, %volume, "provisioned local-path volume");
                    let message =
                        format!("Successfully provisioned volume {volume} using {LOCAL_PATH_PROVISIONER}");
                    publish(
                        &self.recorder,
                        claim.as_ref(),
                        vec![Note::normal(REASON_PROVISIONING_SUCCEEDED, message)],
                    );
                }
                Err(ClientError::AlreadyExists { .. }) => {
                    debug!(claim = %key, %volume, "volume provisioned already")
                }
                Err(source) => {
                    return Err(Error::CreateVolume { volume, claim: claim_key(&claim), source });
                }
            }
        }
        publish(&self.recorder, claim.as_ref(), plan.events);
        Ok(Action::Done)
    }
}

/// Keeps volumes' phases, reclaims released volumes and protects bound ones: see the
/// [module docs](super).
pub struct VolumeReconciler {
    client: Arc<dyn Client>,
    volumes: Cache<PersistentVolume>,
    claims: Cache<PersistentVolumeClaim>,
    clock: Clock,
    recorder: Recorder,
}

impl VolumeReconciler {
    /// A reconciler reading these caches (the volume cache gains the indexes the triggers
    /// read through) and writing through `client`; `recorder` publishes its Events.
    pub fn new(
        client: Arc<dyn Client>,
        volumes: Cache<PersistentVolume>,
        claims: Cache<PersistentVolumeClaim>,
        clock: Clock,
        recorder: Recorder,
    ) -> Self {
        for (name, f) in volume_indexes() {
            if !volumes.has_index(&name) {
                volumes.add_index(&name, f);
            }
        }
        VolumeReconciler { client, volumes, claims, clock, recorder }
    }

    /// The claim the volume's `claimRef` names, if it exists. When the cache lacks it, or has
    /// one with another uid, the API server is asked: releasing a volume on a stale cache
    /// could delete it under a claim that still exists.
    async fn claim_of(&self, volume: &PersistentVolume) -> Result<Option<Arc<PersistentVolumeClaim>>> {
        let Some(r) = claim_ref(volume) else { return Ok(None) };
        let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) else { return Ok(None) };
        let uid = r.uid.as_deref().filter(|u| !u.is_empty());
        let cached = self.claims.get(&format!("{ns}/{name}"));
        if uid.is_none() || cached.as_ref().is_some_and(|c| c.metadata.uid.as_deref() == uid) {
            return Ok(cached);
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let live = api
            .get_opt(name)
            .await
            .map_err(|source| Error::ReadClaim { claim: format!("{ns}/{name}"), source })?;
        Ok(live.map(Arc::new))
    }
}

#[async_trait]
impl Reconciler for VolumeReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if !(self.volumes.is_ready() && self.claims.is_ready()) {
            debug!(volume = %key, "caches not filled yet");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let Some(volume) = self.volumes.get(&key.name) else { return Ok(Action::Done) };
        let claim = self.claim_of(&volume).await?;
        let plan =
            sync_volume(&VolumeInput { volume: &volume, claim: claim.as_deref(), now: (self.clock)() });
        if plan.is_empty() {
            return Ok(Action::Done);
        }
        let mut latest = volume.as_ref().clone();
        if let Some(w) = &plan.volume {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            latest = match write(&api, w).await {
                Ok(Some(written)) => written,
                Ok(None) => return Ok(Action::Done),
                Err(source) => return Err(Error::WriteVolume { volume: key.name.clone(), source }),
            };
            let phase = latest.status.as_ref().and_then(|s| s.phase.clone());
            debug!(volume = %key, phase = ?phase, "updated volume");
        }
        if plan.delete {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let opts = DeleteOptions {
                preconditions: Precondition {
                    uid: latest.metadata.uid.clone(),
                    resource_version: latest.metadata.resource_version.clone(),
                },
                ..Default::default()
            };
            match api.delete(&key.name, &opts).await {
                Ok(_) => info!(volume = %key, "deleted released volume"),
                Err(ClientError::NotFound { .. }) => {}
                Err(source) => return Err(Error::DeleteVolume { volume: key.name.clone(), source }),
            }
        }
        publish(&self.recorder, &latest, plan.events);
        Ok(Action::Done)
    }
}
