//! [`sync_volume`]: everything the controller does about one volume (Kubernetes'
//! `syncVolume` and `reclaimVolume` with `pvprotection`), as a [`VolumePlan`].

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::jiff::Timestamp;

use super::facts::{
    annotation, claim_ref, claim_volume_name, reclaim_policy, ref_names_claim, remove_annotation,
    volume_name, volume_phase, volume_status_with,
};
use super::plan::{Note, ObjectWrite, VolumePlan};
use super::protection::{self, volume_protection};
use super::{
    ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, LOCAL_PATH_PROVISIONER, PV_PROTECTION_FINALIZER,
    REASON_VOLUME_FAILED_DELETE, REASON_VOLUME_FAILED_RECYCLE, REASON_VOLUME_UNKNOWN_RECLAIM_POLICY,
    RECLAIM_DELETE, RECLAIM_RECYCLE, RECLAIM_RETAIN, VOLUME_AVAILABLE, VOLUME_BOUND, VOLUME_FAILED,
    VOLUME_RELEASED,
};

/// The message of the `VolumeUnknownReclaimPolicy` Event.
pub const UNKNOWN_RECLAIM_POLICY: &str = "Volume has unrecognized PersistentVolumeReclaimPolicy";
/// The message (status and Event) of a `Recycle` volume once released.
pub const RECYCLE_UNSUPPORTED: &str = "the Recycle reclaim policy is not supported; \
    remove the data and the claimRef by hand to make the volume Available again";

/// What [`sync_volume`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct VolumeInput<'a> {
    /// The volume.
    pub volume: &'a PersistentVolume,
    /// The claim the volume's `claimRef` names by namespace and name, if it exists (whatever
    /// its uid). The runtime reads it from the API server when the cache does not have it,
    /// so a lagging cache never releases a volume.
    pub claim: Option<&'a PersistentVolumeClaim>,
    /// Now, for phase transition times.
    pub now: Timestamp,
}

/// The message of a `Delete` volume this controller cannot delete.
pub fn cannot_delete_message(volume: &PersistentVolume) -> String {
    format!(
        "cannot delete volume \"{}\": it was not provisioned by {LOCAL_PATH_PROVISIONER} and no other \
         provisioner claims it; delete it by hand",
        volume_name(volume)
    )
}

/// What to do about one volume:
///
/// - **Protection.** The `kubernetes.io/pv-protection` finalizer is added to a live volume
///   and removed from a volume being deleted that is not `Bound`.
/// - **Phase.** No `claimRef`, or one without uid (pre-bound by name, waiting for its claim):
///   `Available`. A `claimRef` whose claim is bound to the volume: `Bound`. Whose claim exists
///   but is not bound yet: nothing (the claim's sync finishes the binding).
/// - **Release.** A `claimRef` to a claim that no longer exists (or exists with another uid):
///   `Released`, then reclaimed: `Retain` stays `Released`; `Delete` deletes the volume
///   object if [`LOCAL_PATH_PROVISIONER`] made it, waits for the provisioner named in
///   `pv.kubernetes.io/provisioned-by` otherwise, and turns `Failed` (with a message and a
///   `VolumeFailedDelete` Event) when no provisioner made it; `Recycle` turns `Failed`
///   (not supported).
/// - **Misbinding.** A `claimRef` to a claim bound to another volume: a volume provisioned
///   for it with policy `Delete` is released (and deleted); one the controller bound is
///   unbound (`claimRef` removed); one pre-bound by the user keeps its `claimRef` without
///   the uid. Both become `Available`.
pub fn sync_volume(input: &VolumeInput<'_>) -> VolumePlan {
    let volume = input.volume;
    let mut v = volume.clone();
    let mut plan = VolumePlan::default();
    protection::apply(&mut v.metadata, PV_PROTECTION_FINALIZER, volume_protection(volume));
    match claim_ref(volume) {
        None => set_phase(&mut v, VOLUME_AVAILABLE, None, input.now),
        Some(r) if r.uid.as_deref().is_none_or(str::is_empty) => {
            set_phase(&mut v, VOLUME_AVAILABLE, None, input.now)
        }
        Some(r) => match input.claim.filter(|c| ref_names_claim(r, c)) {
            None => release(&mut v, &mut plan, input.now),
            Some(claim) => match claim_volume_name(claim) {
                None => {}
                Some(n) if n == volume_name(volume) => set_phase(&mut v, VOLUME_BOUND, None, input.now),
                Some(_) => {
                    if ours(volume) && reclaim_policy(volume) == RECLAIM_DELETE {
                        release(&mut v, &mut plan, input.now);
                    } else {
                        unbind(&mut v, input.now);
                    }
                }
            },
        },
    }
    plan.volume = ObjectWrite::volume(volume, v);
    plan
}

fn set_phase(v: &mut PersistentVolume, phase: &str, message: Option<&str>, now: Timestamp) {
    if let Some(status) = volume_status_with(v, phase, message, now) {
        v.status = Some(status);
    }
}

/// Whether the local-path provisioner made the volume.
fn ours(volume: &PersistentVolume) -> bool {
    annotation(&volume.metadata, ANN_PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER)
}

/// Marks the volume `Released` (unless it is `Released` or `Failed` already) and reclaims it.
fn release(v: &mut PersistentVolume, plan: &mut VolumePlan, now: Timestamp) {
    let was = volume_phase(v).map(str::to_string);
    if !matches!(was.as_deref(), Some(VOLUME_RELEASED) | Some(VOLUME_FAILED)) {
        set_phase(v, VOLUME_RELEASED, None, now);
    }
    let fail = |v: &mut PersistentVolume, plan: &mut VolumePlan, reason: &'static str, message: &str| {
        if was.as_deref() != Some(VOLUME_FAILED) {
            set_phase(v, VOLUME_FAILED, Some(message), now);
            plan.events.push(Note::warning(reason, message));
        }
    };
    match reclaim_policy(v) {
        RECLAIM_RETAIN => {}
        RECLAIM_DELETE => {
            let provisioner = annotation(&v.metadata, ANN_PROVISIONED_BY);
            if v.metadata.deletion_timestamp.is_some() {
                // Deleted already: the protection finalizer goes once it is not Bound.
            } else if provisioner == Some(LOCAL_PATH_PROVISIONER) {
                plan.delete = true;
            } else if provisioner.is_none() {
                let message = cannot_delete_message(v);
                fail(v, plan, REASON_VOLUME_FAILED_DELETE, &message);
            }
            // Another provisioner made it: that provisioner deletes it.
        }
        RECLAIM_RECYCLE => fail(v, plan, REASON_VOLUME_FAILED_RECYCLE, RECYCLE_UNSUPPORTED),
        _ => {
            if was.as_deref() != Some(VOLUME_RELEASED) && was.as_deref() != Some(VOLUME_FAILED) {
                plan.events.push(Note::warning(REASON_VOLUME_UNKNOWN_RECLAIM_POLICY, UNKNOWN_RECLAIM_POLICY));
            }
        }
    }
}

/// Undoes a binding whose claim went elsewhere (Kubernetes' `unbindVolume`): a `claimRef` the
/// controller set goes, one the user set loses only its uid; the volume is `Available`.
fn unbind(v: &mut PersistentVolume, now: Timestamp) {
    if annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
        if let Some(spec) = v.spec.as_mut() {
            spec.claim_ref = None;
        }
        remove_annotation(&mut v.metadata, ANN_BOUND_BY_CONTROLLER);
    } else if let Some(r) = v.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = None;
    }
    set_phase(v, VOLUME_AVAILABLE, None, now);
}
