//! What the decisions ask the runtime to do: [`ClaimPlan`] and [`VolumePlan`].

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::controller::events::EventType;

/// A write of one object read from a cache: `object` is the object as it should be (with the
/// cached `resourceVersion`, so a concurrent change makes the write fail with 409 Conflict).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectWrite<K> {
    /// The object as it should be.
    pub object: K,
    /// Whether its metadata or spec changed (written first, with `replace`).
    pub main: bool,
    /// Whether its status changed (written next, through the status subresource).
    pub status: bool,
}

impl ObjectWrite<PersistentVolume> {
    /// The write that turns `before` into `after`, if they differ.
    pub(crate) fn volume(before: &PersistentVolume, after: PersistentVolume) -> Option<Self> {
        let status = before.status != after.status;
        let mut same_main = before.clone();
        same_main.status = after.status.clone();
        let main = same_main != after;
        (main || status).then_some(ObjectWrite { object: after, main, status })
    }
}

impl ObjectWrite<PersistentVolumeClaim> {
    /// The write that turns `before` into `after`, if they differ.
    pub(crate) fn claim(before: &PersistentVolumeClaim, after: PersistentVolumeClaim) -> Option<Self> {
        let status = before.status != after.status;
        let mut same_main = before.clone();
        same_main.status = after.status.clone();
        let main = same_main != after;
        (main || status).then_some(ObjectWrite { object: after, main, status })
    }
}

/// An Event to record about the object a plan is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// The Event's reason (`FailedBinding`, `ProvisioningFailed`, ...).
    pub reason: &'static str,
    /// The Event's message.
    pub message: String,
}

impl Note {
    /// A `Normal` Event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Note {
        Note { type_: EventType::Normal, reason, message: message.into() }
    }

    /// A `Warning` Event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Note {
        Note { type_: EventType::Warning, reason, message: message.into() }
    }
}

/// What syncing one claim writes, in this order: the volume (binding), the claim, the new
/// volume (provisioning); then the Events about the claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimPlan {
    /// The volume being bound: its `claimRef` and annotations, then phase `Bound`.
    pub volume: Option<ObjectWrite<PersistentVolume>>,
    /// The claim: finalizer, `spec.volumeName`, annotations, storage class; then its status.
    pub claim: Option<ObjectWrite<PersistentVolumeClaim>>,
    /// A volume to create for the claim (the local-path provisioner's). The runtime records
    /// `ProvisioningSucceeded` when it is created.
    pub provision: Option<PersistentVolume>,
    /// Events about the claim.
    pub events: Vec<Note>,
}

impl ClaimPlan {
    /// Whether the plan writes nothing and records nothing.
    pub fn is_empty(&self) -> bool {
        self.volume.is_none() && self.claim.is_none() && self.provision.is_none() && self.events.is_empty()
    }
}

/// What syncing one volume writes, in this order: the volume (finalizer, `claimRef`), its
/// status, its deletion; then the Events about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumePlan {
    /// The volume as it should be.
    pub volume: Option<ObjectWrite<PersistentVolume>>,
    /// Delete the volume object (its reclaim policy is `Delete` and its provisioner is ours);
    /// conditional on its uid and resourceVersion.
    pub delete: bool,
    /// Events about the volume.
    pub events: Vec<Note>,
}

impl VolumePlan {
    /// Whether the plan writes nothing and records nothing.
    pub fn is_empty(&self) -> bool {
        self.volume.is_none() && !self.delete && self.events.is_empty()
    }
}
