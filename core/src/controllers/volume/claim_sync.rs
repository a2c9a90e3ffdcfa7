//! [`sync_claim`]: everything the controller does about one claim (Kubernetes' `syncClaim`
//! with `pvcprotection` and the local-path provisioner), as a [`ClaimPlan`].

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;

use super::facts::{
    annotation, claim_class, claim_class_unset, claim_phase, claim_ref, claim_status_with, claim_volume_name,
    is_bound_to_claim, reference_to, set_annotation, volume_name, volume_status_with,
};
use super::matching::{check_volume_satisfies_claim, find_best_volume};
use super::plan::{ClaimPlan, Note, ObjectWrite};
use super::protection::{self, claim_protection};
use super::provisioner::{default_class, delays_binding, local_path_volume, provisioned_volume_name};
use super::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, CLAIM_BOUND,
    CLAIM_LOST, CLAIM_PENDING, LOCAL_PATH_PROVISIONER, PVC_PROTECTION_FINALIZER, REASON_CLAIM_LOST,
    REASON_CLAIM_MISBOUND, REASON_EXTERNAL_PROVISIONING, REASON_FAILED_BINDING, REASON_PROVISIONING_FAILED,
    REASON_VOLUME_MISMATCH, REASON_WAIT_FOR_FIRST_CONSUMER, VOLUME_BOUND,
};

/// The message of the `FailedBinding` Event of a claim nothing can satisfy.
pub const NO_VOLUME_NO_CLASS: &str =
    "no persistent volumes available for this claim and no storage class is set";
/// The message of the `WaitForFirstConsumer` Event.
pub const WAITING_FOR_CONSUMER: &str = "waiting for first consumer to be created before binding";
/// The message of the `ClaimLost` Event of a bound claim whose `spec.volumeName` was cleared.
pub const LOST_REFERENCE: &str =
    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!";
/// The message of the `ClaimLost` Event of a bound claim whose volume is gone.
pub const LOST_VOLUME: &str = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
/// The message of the `ClaimMisbound` Event.
pub const MISBOUND: &str = "Two claims are bound to the same volume, this one is bound incorrectly";

/// What [`sync_claim`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct ClaimInput<'a> {
    /// The claim.
    pub claim: &'a PersistentVolumeClaim,
    /// Every volume known.
    pub volumes: &'a [&'a PersistentVolume],
    /// Every storage class known.
    pub classes: &'a [&'a StorageClass],
    /// Whether a pod that has not terminated mounts the claim (see
    /// [`claim_in_use`](super::claim_in_use)); only read for a claim being deleted.
    pub in_use: bool,
    /// Now, for the phase transition times of volumes.
    pub now: Timestamp,
}

/// The claim as it should become, and what else to write, while the sync runs.
struct Work<'a> {
    input: ClaimInput<'a>,
    claim: PersistentVolumeClaim,
    volume: Option<(&'a PersistentVolume, PersistentVolume)>,
    provision: Option<PersistentVolume>,
    events: Vec<Note>,
}

/// What to do about one claim:
///
/// - **Protection.** The `kubernetes.io/pvc-protection` finalizer is added to a live claim
///   and removed from a claim being deleted that is not `in_use`.
/// - **Unbound claims** (no `pv.kubernetes.io/bind-completed` annotation) that are not being
///   deleted: a claim naming a volume (`spec.volumeName`) binds to it if the volume has no
///   `claimRef` and [satisfies it](check_volume_satisfies_claim), or is pre-bound to it;
///   otherwise it stays `Pending` (with a `VolumeMismatch` or `FailedBinding` Event). A claim
///   naming none binds to the [best volume](find_best_volume); failing that, a claim without
///   any class is given the default class (written to `spec.storageClassName`); a claim of a
///   `WaitForFirstConsumer` class waits until the scheduler pre-binds a volume to it (bound
///   as any pre-bound volume) or selects a node for it (`volume.kubernetes.io/selected-node`:
///   it is provisioned then); a claim of a class is provisioned (the local-path
///   provisioner builds the volume; another provisioner is left to do it, the claim
///   annotated `volume.kubernetes.io/storage-provisioner`); and a claim without class gets
///   the `FailedBinding` Event [`NO_VOLUME_NO_CLASS`]. Unbound claims are `Pending`.
/// - **Binding** writes the volume first (`claimRef` with the claim's uid,
///   `pv.kubernetes.io/bound-by-controller` when the controller chose it, phase `Bound`),
///   then the claim (`spec.volumeName`, `pv.kubernetes.io/bind-completed: "yes"`, phase
///   `Bound`, access modes and capacity from the volume). A volume already pre-bound to the
///   claim wins any later matching, so a binding interrupted between the two writes ends on
///   the same volume.
/// - **Bound claims** stay bound (missing parts of the binding are written again) unless
///   their volume is gone or bound to another claim: then they are `Lost`, with a
///   `ClaimLost` or `ClaimMisbound` Event.
pub fn sync_claim(input: &ClaimInput<'_>) -> ClaimPlan {
    let mut w =
        Work { input: *input, claim: input.claim.clone(), volume: None, provision: None, events: Vec::new() };
    let change = claim_protection(input.claim, input.in_use);
    protection::apply(&mut w.claim.metadata, PVC_PROTECTION_FINALIZER, change);
    if annotation(&input.claim.metadata, ANN_BIND_COMPLETED).is_some() {
        w.sync_bound();
    } else if input.claim.metadata.deletion_timestamp.is_some() {
        // A claim on its way out gets no volume.
        w.pending();
    } else {
        match claim_volume_name(input.claim) {
            Some(name) => w.sync_named(name),
            None => w.sync_unnamed(),
        }
    }
    w.finish()
}

impl<'a> Work<'a> {
    fn finish(self) -> ClaimPlan {
        ClaimPlan {
            volume: self.volume.and_then(|(before, after)| ObjectWrite::volume(before, after)),
            claim: ObjectWrite::claim(self.input.claim, self.claim),
            provision: self.provision,
            events: self.events,
        }
    }

    fn volume_named(&self, name: &str) -> Option<&'a PersistentVolume> {
        self.input.volumes.iter().copied().find(|v| volume_name(v) == name)
    }

    fn set_phase(&mut self, phase: &str, volume: Option<&PersistentVolume>) {
        if let Some(status) = claim_status_with(&self.claim, phase, volume) {
            self.claim.status = Some(status);
        }
    }

    fn pending(&mut self) {
        self.set_phase(CLAIM_PENDING, None);
    }

    fn lost(&mut self, reason: &'static str, message: &str) {
        if claim_phase(self.input.claim) != Some(CLAIM_LOST) {
            self.events.push(Note::warning(reason, message));
        }
        self.set_phase(CLAIM_LOST, None);
    }

    /// Binds the claim and `volume` to each other (Kubernetes' `bind`): whatever part of the
    /// binding is missing is written.
    fn bind(&mut self, volume: &'a PersistentVolume) {
        let claim = self.input.claim;
        let mut v = volume.clone();
        let bound = is_bound_to_claim(volume, claim);
        let has_uid = claim_ref(volume).and_then(|r| r.uid.as_deref()).is_some_and(|u| !u.is_empty());
        if !bound || !has_uid {
            v.spec.get_or_insert_with(Default::default).claim_ref = Some(reference_to(claim));
            if !bound {
                set_annotation(&mut v.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
        }
        if let Some(status) = volume_status_with(&v, VOLUME_BOUND, None, self.input.now) {
            v.status = Some(status);
        }
        let name = volume_name(volume).to_string();
        if claim_volume_name(&self.claim) != Some(name.as_str()) {
            self.claim.spec.get_or_insert_with(Default::default).volume_name = Some(name);
            set_annotation(&mut self.claim.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        }
        if annotation(&self.claim.metadata, ANN_BIND_COMPLETED).is_none() {
            set_annotation(&mut self.claim.metadata, ANN_BIND_COMPLETED, "yes");
        }
        self.set_phase(CLAIM_BOUND, Some(&v));
        self.volume = Some((volume, v));
    }

    /// A bound claim (Kubernetes' `syncBoundClaim`).
    fn sync_bound(&mut self) {
        let claim = self.input.claim;
        let Some(name) = claim_volume_name(claim) else {
            return self.lost(REASON_CLAIM_LOST, LOST_REFERENCE);
        };
        let Some(volume) = self.volume_named(name) else {
            return self.lost(REASON_CLAIM_LOST, LOST_VOLUME);
        };
        if claim_ref(volume).is_none() || is_bound_to_claim(volume, claim) {
            self.bind(volume);
        } else {
            self.lost(REASON_CLAIM_MISBOUND, MISBOUND);
        }
    }

    /// An unbound claim naming its volume.
    fn sync_named(&mut self, name: &str) {
        let claim = self.input.claim;
        let Some(volume) = self.volume_named(name) else {
            // The volume may be created later (or the cache is behind): wait.
            return self.pending();
        };
        if claim_ref(volume).is_none() {
            match check_volume_satisfies_claim(volume, claim) {
                Ok(()) => self.bind(volume),
                Err(mismatch) => {
                    let message = format!("Cannot bind to requested volume \"{name}\": {mismatch}");
                    self.events.push(Note::warning(REASON_VOLUME_MISMATCH, message));
                    self.pending();
                }
            }
        } else if is_bound_to_claim(volume, claim) {
            self.bind(volume);
        } else {
            let message = format!("volume \"{name}\" already bound to a different claim.");
            self.events.push(Note::warning(REASON_FAILED_BINDING, message));
            self.pending();
        }
    }

    /// An unbound claim that lets the controller choose.
    fn sync_unnamed(&mut self) {
        let (claim, classes) = (self.input.claim, self.input.classes);
        let class_name = claim_class(claim);
        let class = classes.iter().copied().find(|c| c.metadata.name.as_deref() == Some(class_name));
        let delay = !class_name.is_empty() && delays_binding(class);
        match find_best_volume(claim, self.input.volumes, delay) {
            Ok(Some(volume)) => return self.bind(volume),
            Ok(None) => {}
            Err(invalid) => {
                self.events.push(Note::warning(REASON_FAILED_BINDING, invalid.to_string()));
                return self.pending();
            }
        }
        if claim_class_unset(claim)
            && let Some(default) = default_class(classes)
        {
            // Kubernetes' retroactive default class: the write triggers the next sync.
            self.claim.spec.get_or_insert_with(Default::default).storage_class_name =
                default.metadata.name.clone();
            return self.pending();
        }
        if delay && annotation(&claim.metadata, ANN_SELECTED_NODE).is_none_or(str::is_empty) {
            self.events.push(Note::normal(REASON_WAIT_FOR_FIRST_CONSUMER, WAITING_FOR_CONSUMER));
        } else if !class_name.is_empty() {
            self.provision(class_name, class);
        } else {
            self.events.push(Note::normal(REASON_FAILED_BINDING, NO_VOLUME_NO_CLASS));
        }
        self.pending();
    }

    /// Asks the class's provisioner for a volume.
    fn provision(&mut self, class_name: &str, class: Option<&StorageClass>) {
        let claim = self.input.claim;
        let Some(class) = class else {
            let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
            return self.events.push(Note::warning(REASON_PROVISIONING_FAILED, message));
        };
        let provisioner = class.provisioner.as_str();
        if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(provisioner) {
            set_annotation(&mut self.claim.metadata, ANN_STORAGE_PROVISIONER, provisioner);
        }
        if provisioner != LOCAL_PATH_PROVISIONER {
            let message = format!(
                "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
                 or manually by the system administrator. If volume creation is delayed, please verify \
                 that the provisioner is running and correctly registered."
            );
            return self.events.push(Note::normal(REASON_EXTERNAL_PROVISIONING, message));
        }
        let uid = claim.metadata.uid.as_deref().unwrap_or("");
        if self.volume_named(&provisioned_volume_name(uid)).is_some() {
            // Provisioned already, but it does not fit the claim any more (or is being
            // deleted): nothing better to do than wait.
            return;
        }
        match local_path_volume(claim, class) {
            Ok(volume) => self.provision = Some(volume),
            Err(e) => self.events.push(Note::warning(REASON_PROVISIONING_FAILED, e.to_string())),
        }
    }
}
