//! [`sync_claim`]: binding, pre-binding, pending and lost claims, and an interrupted bind.

use serde_json::json;

use super::*;

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    facts::annotation(meta, key)
}

#[test]
fn a_new_claim_gets_its_finalizer_and_pending() {
    let mut c = simple_claim("c", "1Gi", Some(""));
    c.metadata.finalizers = None;
    c.status = None;
    let plan = sync(&c, &[], &[]);
    let w = plan.claim.expect("claim written");
    assert!(w.main && w.status);
    assert_eq!(w.object.metadata.finalizers, Some(vec![PVC_PROTECTION_FINALIZER.to_string()]));
    assert_eq!(phase_of_claim(&w), Some(CLAIM_PENDING));
    assert_eq!(plan.events, vec![Note::normal(REASON_FAILED_BINDING, NO_VOLUME_NO_CLASS)]);
    assert!(plan.volume.is_none() && plan.provision.is_none());
}

#[test]
fn a_claim_binds_to_the_matching_volume_volume_first() {
    let c = simple_claim("c", "1Gi", Some(""));
    let (small, fit) = (simple_volume("small", "500Mi", ""), simple_volume("fit", "2Gi", ""));
    let plan = sync(&c, &[&small, &fit], &[]);
    let v = plan.volume.expect("volume written");
    assert!(v.main && v.status);
    assert_eq!(facts::volume_name(&v.object), "fit");
    let r = facts::claim_ref(&v.object).expect("claimRef");
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("default"), Some("c"), Some("c-uid"))
    );
    assert_eq!(annotation(&v.object.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
    assert_eq!(phase_of_volume(&v), Some(VOLUME_BOUND));
    let lpt = v.object.status.as_ref().and_then(|s| s.last_phase_transition_time.clone());
    assert_eq!(lpt.map(|t| t.0), Some(at(10)));
    assert_eq!(v.object.metadata.resource_version.as_deref(), Some("3"), "written over the cached version");

    let w = plan.claim.expect("claim written");
    assert!(w.main && w.status);
    let spec = w.object.spec.as_ref().expect("spec");
    assert_eq!(spec.volume_name.as_deref(), Some("fit"));
    assert_eq!(annotation(&w.object.metadata, ANN_BIND_COMPLETED), Some("yes"));
    assert_eq!(annotation(&w.object.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
    let status = w.object.status.as_ref().expect("status");
    assert_eq!(status.phase.as_deref(), Some(CLAIM_BOUND));
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(status.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.as_str()), Some("2Gi"));
    assert!(plan.events.is_empty());
}

#[test]
fn a_volume_pre_bound_by_claim_ref_is_bound_without_the_controllers_mark() {
    let c = simple_claim("c", "1Gi", Some(""));
    let pre = with_claim_ref(simple_volume("pre", "1Gi", ""), "c", None);
    let plan = sync(&c, &[&simple_volume("other", "1Gi", ""), &pre], &[]);
    let v = plan.volume.expect("volume written");
    assert_eq!(facts::volume_name(&v.object), "pre");
    assert_eq!(facts::claim_ref(&v.object).and_then(|r| r.uid.as_deref()), Some("c-uid"), "uid filled in");
    assert_eq!(annotation(&v.object.metadata, ANN_BOUND_BY_CONTROLLER), None, "the user chose it");
    assert_eq!(plan.claim.and_then(|w| w.object.spec).and_then(|s| s.volume_name).as_deref(), Some("pre"));
}

#[test]
fn a_claim_naming_a_volume_binds_to_that_volume_only() {
    let c = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "wanted"}),
    );
    let (smaller, wanted) = (simple_volume("smaller", "1Gi", ""), simple_volume("wanted", "9Gi", ""));
    let plan = sync(&c, &[&smaller, &wanted], &[]);
    let v = plan.volume.expect("volume written");
    assert_eq!(facts::volume_name(&v.object), "wanted");
    assert_eq!(annotation(&v.object.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
    let w = plan.claim.expect("claim written");
    assert_eq!(annotation(&w.object.metadata, ANN_BOUND_BY_CONTROLLER), None, "the user named it");
    assert_eq!(annotation(&w.object.metadata, ANN_BIND_COMPLETED), Some("yes"));
    assert_eq!(phase_of_claim(&w), Some(CLAIM_BOUND));

    // Missing: the claim waits, bound to nothing else.
    let plan = sync(&c, &[&smaller], &[]);
    assert!(plan.volume.is_none());
    assert!(plan.is_empty(), "already Pending with its finalizer: {plan:?}");
}

#[test]
fn a_named_volume_that_does_not_fit_or_is_taken_leaves_the_claim_pending() {
    let c = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "resources": {"requests": {"storage": "5Gi"}}, "volumeName": "v"}),
    );
    let plan = sync(&c, &[&simple_volume("v", "1Gi", "")], &[]);
    assert!(plan.volume.is_none() && plan.claim.is_none());
    assert_eq!(reasons(&plan.events), vec![REASON_VOLUME_MISMATCH]);
    assert!(plan.events[0].message.contains("requested PV is too small"), "{:?}", plan.events);

    let taken = with_claim_ref(simple_volume("v", "9Gi", ""), "other", Some("other-uid"));
    let plan = sync(&c, &[&taken], &[]);
    assert!(plan.volume.is_none() && plan.claim.is_none());
    assert_eq!(reasons(&plan.events), vec![REASON_FAILED_BINDING]);
    assert!(plan.events[0].message.contains("already bound to a different claim"));
}

/// The claim as the binding left it, and the volume too.
fn bound_pair() -> (PersistentVolumeClaim, PersistentVolume) {
    let c = simple_claim("c", "1Gi", Some(""));
    let v = simple_volume("v", "1Gi", "");
    let plan = sync(&c, &[&v], &[]);
    (plan.claim.expect("claim").object, plan.volume.expect("volume").object)
}

#[test]
fn a_fully_bound_claim_needs_nothing() {
    let (c, v) = bound_pair();
    let plan = sync(&c, &[&v], &[]);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn a_bound_claim_whose_volume_vanished_is_lost_once() {
    let (c, _) = bound_pair();
    let plan = sync(&c, &[], &[]);
    let w = plan.claim.expect("claim written");
    assert!(!w.main && w.status);
    assert_eq!(phase_of_claim(&w), Some(CLAIM_LOST));
    let status = w.object.status.as_ref().expect("status");
    assert!(status.access_modes.is_none() && status.capacity.is_none(), "reset with the volume gone");
    assert_eq!(plan.events, vec![Note::warning(REASON_CLAIM_LOST, LOST_VOLUME)]);
    // Lost already: no second Event.
    let again = sync(&w.object, &[], &[]);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn a_bound_claim_whose_volume_names_another_claim_is_misbound() {
    let (c, v) = bound_pair();
    let stolen = with_claim_ref(v, "thief", Some("thief-uid"));
    let plan = sync(&c, &[&stolen], &[]);
    assert_eq!(plan.claim.as_ref().and_then(phase_of_claim), Some(CLAIM_LOST));
    assert_eq!(plan.events, vec![Note::warning(REASON_CLAIM_MISBOUND, MISBOUND)]);
    assert!(plan.volume.is_none(), "the other claim's volume is not touched");
}

#[test]
fn a_bound_claim_whose_volume_lost_its_claim_ref_binds_it_again() {
    let (c, mut v) = bound_pair();
    v.spec.as_mut().expect("spec").claim_ref = None;
    let plan = sync(&c, &[&v], &[]);
    let w = plan.volume.expect("volume written");
    assert_eq!(facts::claim_ref(&w.object).and_then(|r| r.name.as_deref()), Some("c"));
    assert!(plan.claim.is_none(), "the claim is bound already");
}

#[test]
fn a_bind_interrupted_after_the_volume_write_ends_on_the_same_volume() {
    let c = simple_claim("c", "1Gi", Some(""));
    let v = simple_volume("v", "2Gi", "");
    let first = sync(&c, &[&v], &[]);
    // The volume write went through; the claim write failed (409): the claim is unchanged.
    let mut written = first.volume.expect("volume").object;
    written.metadata.resource_version = Some("4".into());
    // Meanwhile a better-fitting volume appeared.
    let better = simple_volume("better", "1Gi", "");
    let second = sync(&c, &[&better, &written], &[]);
    assert!(second.volume.is_none(), "the volume is bound already: {:?}", second.volume);
    let w = second.claim.expect("claim written");
    assert_eq!(w.object.spec.as_ref().and_then(|s| s.volume_name.as_deref()), Some("v"));
    assert_eq!(phase_of_claim(&w), Some(CLAIM_BOUND));
}

#[test]
fn a_claim_being_deleted_is_not_bound_and_loses_its_finalizer_when_unused() {
    let mut c = simple_claim("c", "1Gi", Some(""));
    deleting(&mut c.metadata);
    let v = simple_volume("v", "1Gi", "");
    let in_use =
        sync_claim(&ClaimInput { claim: &c, volumes: &[&v], classes: &[], in_use: true, now: at(1) });
    assert!(in_use.is_empty(), "in use: nothing changes: {in_use:?}");
    let unused = sync(&c, &[&v], &[]);
    assert!(unused.volume.is_none(), "no volume for a claim on its way out");
    let w = unused.claim.expect("claim written");
    assert!(w.main && !w.status);
    assert_eq!(w.object.metadata.finalizers, None);
}
