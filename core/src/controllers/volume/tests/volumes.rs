//! [`sync_volume`]: phases, release and reclaim, unbinding.

use serde_json::json;

use super::*;

fn sync_v(v: &PersistentVolume, c: Option<&PersistentVolumeClaim>) -> VolumePlan {
    sync_volume(&VolumeInput { volume: v, claim: c, now: at(20) })
}

fn phase(plan: &VolumePlan) -> Option<&str> {
    plan.volume.as_ref().and_then(phase_of_volume)
}

/// A volume bound to `default/c` (uid `c-uid`) with `policy`, provisioned by `by`.
fn bound_volume(policy: &str, by: Option<&str>) -> PersistentVolume {
    let mut v = with_claim_ref(simple_volume("v", "1Gi", ""), "c", Some("c-uid"));
    v.spec.as_mut().expect("spec").persistent_volume_reclaim_policy = Some(policy.into());
    v.status.as_mut().expect("status").phase = Some(VOLUME_BOUND.into());
    if let Some(p) = by {
        facts::set_annotation(&mut v.metadata, ANN_PROVISIONED_BY, p);
    }
    v
}

/// `default/c` bound to volume `name`.
fn claim_bound_to(name: &str) -> PersistentVolumeClaim {
    claim("c", json!({"volumeName": name, "resources": {"requests": {"storage": "1Gi"}}}))
}

#[test]
fn a_new_volume_gets_its_finalizer_and_becomes_available() {
    let mut v = volume("v", json!({"capacity": {"storage": "1Gi"}}), None);
    v.metadata.finalizers = None;
    let plan = sync_v(&v, None);
    let w = plan.volume.as_ref().expect("written");
    assert!(w.main && w.status);
    assert_eq!(w.object.metadata.finalizers, Some(vec![PV_PROTECTION_FINALIZER.to_string()]));
    assert_eq!(phase(&plan), Some(VOLUME_AVAILABLE));
    let lpt = w.object.status.as_ref().and_then(|s| s.last_phase_transition_time.clone());
    assert_eq!(lpt.map(|t| t.0), Some(at(20)));
    assert!(!plan.delete && plan.events.is_empty());
    // Available already: nothing.
    assert!(sync_v(&simple_volume("v", "1Gi", ""), None).is_empty());
}

#[test]
fn a_volume_pre_bound_by_name_is_available_for_its_claim() {
    let mut v = with_claim_ref(simple_volume("v", "1Gi", ""), "c", None);
    v.status = None;
    assert_eq!(phase(&sync_v(&v, None)), Some(VOLUME_AVAILABLE));
}

#[test]
fn a_volume_whose_claim_is_bound_to_it_is_bound() {
    let mut v = bound_volume(RECLAIM_RETAIN, None);
    v.status = None;
    let c = claim_bound_to("v");
    assert_eq!(phase(&sync_v(&v, Some(&c))), Some(VOLUME_BOUND));
    // A claim not bound yet: the claim's sync finishes; nothing here.
    let waiting = simple_claim("c", "1Gi", Some(""));
    assert!(sync_v(&v, Some(&waiting)).is_empty());
}

#[test]
fn a_retained_volume_whose_claim_is_gone_is_released_and_stays() {
    let v = bound_volume(RECLAIM_RETAIN, Some(LOCAL_PATH_PROVISIONER));
    let plan = sync_v(&v, None);
    assert_eq!(phase(&plan), Some(VOLUME_RELEASED));
    assert!(!plan.delete);
    let released = plan.volume.expect("written").object;
    assert!(sync_v(&released, None).is_empty(), "Released stays Released");
    // A new claim of the same name (another uid) does not revive it.
    let mut again = claim_bound_to("v");
    again.metadata.uid = Some("new-uid".into());
    assert!(sync_v(&released, Some(&again)).is_empty());
    assert_eq!(phase(&sync_v(&v, Some(&again))), Some(VOLUME_RELEASED));
}

#[test]
fn a_deletable_volume_we_provisioned_is_deleted_once_released() {
    let v = bound_volume(RECLAIM_DELETE, Some(LOCAL_PATH_PROVISIONER));
    let plan = sync_v(&v, None);
    assert_eq!(phase(&plan), Some(VOLUME_RELEASED));
    assert!(plan.delete);
    // Being deleted: not deleted again; the finalizer goes as it is not Bound.
    let mut going = plan.volume.expect("written").object;
    deleting(&mut going.metadata);
    let plan = sync_v(&going, None);
    assert!(!plan.delete);
    let w = plan.volume.expect("finalizer removed");
    assert!(w.main && !w.status);
    assert_eq!(w.object.metadata.finalizers, None);
}

#[test]
fn a_deletable_volume_nobody_provisioned_fails_once_with_a_message() {
    let v = bound_volume(RECLAIM_DELETE, None);
    let plan = sync_v(&v, None);
    assert!(!plan.delete);
    assert_eq!(phase(&plan), Some(VOLUME_FAILED));
    let failed = plan.volume.expect("written").object;
    let message = failed.status.as_ref().and_then(|s| s.message.clone()).expect("message");
    assert_eq!(message, cannot_delete_message(&v));
    assert_eq!(plan.events, vec![Note::warning(REASON_VOLUME_FAILED_DELETE, message)]);
    assert!(sync_v(&failed, None).is_empty(), "Failed stays Failed, no repeated Event");
}

#[test]
fn a_deletable_volume_of_another_provisioner_is_left_to_it() {
    let plan = sync_v(&bound_volume(RECLAIM_DELETE, Some("ebs.csi.aws.com")), None);
    assert_eq!(phase(&plan), Some(VOLUME_RELEASED));
    assert!(!plan.delete && plan.events.is_empty());
}

#[test]
fn recycle_and_unknown_policies_are_reported() {
    let plan = sync_v(&bound_volume(RECLAIM_RECYCLE, None), None);
    assert_eq!(phase(&plan), Some(VOLUME_FAILED));
    assert_eq!(reasons(&plan.events), vec![REASON_VOLUME_FAILED_RECYCLE]);
    let plan = sync_v(&bound_volume("Shred", None), None);
    assert_eq!(phase(&plan), Some(VOLUME_RELEASED));
    assert_eq!(
        plan.events,
        vec![Note::warning(REASON_VOLUME_UNKNOWN_RECLAIM_POLICY, UNKNOWN_RECLAIM_POLICY)]
    );
}

#[test]
fn a_volume_whose_claim_went_elsewhere_is_unbound() {
    let elsewhere = claim_bound_to("other");
    // Bound by the controller: the claimRef goes.
    let mut by_controller = bound_volume(RECLAIM_RETAIN, None);
    facts::set_annotation(&mut by_controller.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
    let plan = sync_v(&by_controller, Some(&elsewhere));
    let w = plan.volume.as_ref().expect("written");
    assert!(facts::claim_ref(&w.object).is_none());
    assert_eq!(facts::annotation(&w.object.metadata, ANN_BOUND_BY_CONTROLLER), None);
    assert_eq!(phase(&plan), Some(VOLUME_AVAILABLE));
    // Pre-bound by the user: only the uid goes.
    let plan = sync_v(&bound_volume(RECLAIM_RETAIN, None), Some(&elsewhere));
    let r = plan.volume.as_ref().and_then(|w| facts::claim_ref(&w.object)).expect("claimRef kept");
    assert_eq!((r.name.as_deref(), r.uid.as_deref()), (Some("c"), None));
    assert_eq!(phase(&plan), Some(VOLUME_AVAILABLE));
    // Provisioned for it, policy Delete: released and deleted.
    let plan = sync_v(&bound_volume(RECLAIM_DELETE, Some(LOCAL_PATH_PROVISIONER)), Some(&elsewhere));
    assert_eq!(phase(&plan), Some(VOLUME_RELEASED));
    assert!(plan.delete);
}

#[test]
fn a_bound_volume_being_deleted_keeps_its_finalizer() {
    let mut v = bound_volume(RECLAIM_RETAIN, None);
    deleting(&mut v.metadata);
    assert!(sync_v(&v, Some(&claim_bound_to("v"))).is_empty());
    // Once released, it may go.
    let plan = sync_v(&v, None);
    let w = plan.volume.expect("written");
    assert!(!w.main && w.status, "Released first; the finalizer on the next sync");
}
