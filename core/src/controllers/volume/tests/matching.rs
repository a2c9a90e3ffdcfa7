//! [`find_best_volume`] and [`check_volume_satisfies_claim`].

use serde_json::json;

use super::*;

fn best<'a>(c: &PersistentVolumeClaim, vs: &[&'a PersistentVolume]) -> Option<&'a str> {
    find_best_volume(c, vs, false).expect("valid claim").map(facts::volume_name)
}

#[test]
fn the_smallest_volume_that_fits_wins() {
    let c = simple_claim("c", "2Gi", Some(""));
    let (small, fit, big) = (
        simple_volume("small", "1Gi", ""),
        simple_volume("fit", "3Gi", ""),
        simple_volume("big", "10Gi", ""),
    );
    assert_eq!(best(&c, &[&big, &small, &fit]), Some("fit"));
    // Equal sizes: the first name, whatever the order.
    let fit2 = simple_volume("a-fit", "3Gi", "");
    assert_eq!(best(&c, &[&fit, &fit2]), Some("a-fit"));
    // Units compare by value: 2Gi == 2147483648.
    let exact = simple_volume("exact", "2147483648", "");
    assert_eq!(best(&c, &[&fit, &exact]), Some("exact"));
}

#[test]
fn a_too_small_volume_is_not_chosen() {
    let c = simple_claim("c", "5Gi", Some(""));
    assert_eq!(best(&c, &[&simple_volume("small", "4Gi", "")]), None);
}

#[test]
fn the_class_must_match_and_empty_means_no_class() {
    let fast = simple_volume("fast", "1Gi", "fast");
    let none = simple_volume("none", "1Gi", "");
    assert_eq!(best(&simple_claim("c", "1Gi", Some("fast")), &[&none, &fast]), Some("fast"));
    assert_eq!(best(&simple_claim("c", "1Gi", Some("")), &[&none, &fast]), Some("none"));
    assert_eq!(best(&simple_claim("c", "1Gi", None), &[&fast, &none]), Some("none"), "unset is no class");
    assert_eq!(best(&simple_claim("c", "1Gi", Some("slow")), &[&none, &fast]), None);
}

#[test]
fn the_volume_must_offer_every_access_mode_asked_for() {
    let c = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
        "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": ""}),
    );
    let rwo = simple_volume("rwo", "1Gi", "");
    let mut both = simple_volume("both", "5Gi", "");
    both.spec.as_mut().expect("spec").access_modes =
        Some(vec!["ReadOnlyMany".into(), "ReadWriteMany".into(), "ReadWriteOnce".into()]);
    assert_eq!(best(&c, &[&rwo, &both]), Some("both"), "a superset fits, a subset does not");
}

#[test]
fn the_claims_selector_filters_volumes_by_label() {
    let c = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "resources": {"requests": {"storage": "1Gi"}},
        "selector": {"matchLabels": {"disk": "ssd"}}}),
    );
    let plain = simple_volume("plain", "1Gi", "");
    let mut ssd = simple_volume("ssd", "2Gi", "");
    ssd.metadata.labels = Some([("disk".to_string(), "ssd".to_string())].into());
    assert_eq!(best(&c, &[&plain, &ssd]), Some("ssd"));
    assert_eq!(best(&c, &[&plain]), None);
}

#[test]
fn the_volume_mode_must_match() {
    let block = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "volumeMode": "Block", "resources": {"requests": {"storage": "1Gi"}}}),
    );
    let fs = simple_volume("fs", "1Gi", "");
    let mut raw = simple_volume("raw", "1Gi", "");
    raw.spec.as_mut().expect("spec").volume_mode = Some("Block".into());
    assert_eq!(best(&block, &[&fs, &raw]), Some("raw"));
    assert_eq!(best(&simple_claim("c", "1Gi", Some("")), &[&raw, &fs]), Some("fs"), "unset is Filesystem");
}

#[test]
fn only_available_volumes_without_a_claim_ref_are_candidates() {
    let c = simple_claim("c", "1Gi", Some(""));
    let mut released = simple_volume("released", "1Gi", "");
    released.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
        phase: Some(VOLUME_RELEASED.into()),
        ..Default::default()
    });
    let fresh =
        volume("fresh", json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}), None);
    let other = with_claim_ref(simple_volume("other", "1Gi", ""), "someone-else", None);
    assert_eq!(best(&c, &[&released, &fresh, &other]), None);
    let mut being_deleted = simple_volume("going", "1Gi", "");
    deleting(&mut being_deleted.metadata);
    assert_eq!(best(&c, &[&being_deleted]), None);
}

#[test]
fn a_volume_pre_bound_by_claim_ref_goes_to_that_claim_only() {
    let mine = simple_claim("mine", "1Gi", Some(""));
    let theirs = simple_claim("theirs", "1Gi", Some(""));
    let small = simple_volume("small", "1Gi", "");
    // Pre-bound by name, larger, of another class, not Available: still the one for `mine`.
    let mut pre = with_claim_ref(simple_volume("pre", "8Gi", "other-class"), "mine", None);
    pre.status = None;
    assert_eq!(best(&mine, &[&small, &pre]), Some("pre"));
    assert_eq!(best(&theirs, &[&pre]), None);
    // With a uid, only the claim with that uid.
    let with_uid = with_claim_ref(simple_volume("uid", "8Gi", ""), "mine", Some("mine-uid"));
    assert_eq!(best(&mine, &[&small, &with_uid]), Some("uid"));
    let stale = with_claim_ref(simple_volume("stale", "8Gi", ""), "mine", Some("an-older-uid"));
    assert_eq!(best(&mine, &[&stale]), None, "a volume bound to an earlier claim of that name");
    // It must still fit.
    let tiny = with_claim_ref(simple_volume("tiny", "1Mi", ""), "mine", None);
    assert_eq!(best(&mine, &[&tiny]), None);
}

#[test]
fn delayed_binding_takes_only_pre_bound_volumes() {
    let c = simple_claim("c", "1Gi", Some("wait"));
    let free = simple_volume("free", "1Gi", "wait");
    let pre = with_claim_ref(simple_volume("pre", "1Gi", "wait"), "c", None);
    let found = find_best_volume(&c, &[&free], true).expect("valid");
    assert!(found.is_none());
    let found = find_best_volume(&c, &[&free, &pre], true).expect("valid");
    assert_eq!(found.map(facts::volume_name), Some("pre"));
}

#[test]
fn an_invalid_request_or_selector_is_an_error_naming_the_field() {
    let bad = simple_claim("c", "lots", Some(""));
    let err = find_best_volume(&bad, &[], false).expect_err("invalid request");
    assert!(err.to_string().contains("default/c: spec.resources.requests.storage"), "{err}");
    let bad = claim("c", json!({"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}));
    let err = find_best_volume(&bad, &[], false).expect_err("invalid selector");
    assert!(err.to_string().contains("spec.selector"), "{err}");
}

#[test]
fn a_named_volume_must_satisfy_the_claim() {
    let c = simple_claim("c", "2Gi", Some("fast"));
    assert_eq!(check_volume_satisfies_claim(&simple_volume("v", "2Gi", "fast"), &c), Ok(()));
    assert_eq!(check_volume_satisfies_claim(&simple_volume("v", "1Gi", "fast"), &c), Err(Mismatch::TooSmall));
    assert_eq!(check_volume_satisfies_claim(&simple_volume("v", "2Gi", "slow"), &c), Err(Mismatch::Class));
    let mut rox = simple_volume("v", "2Gi", "fast");
    rox.spec.as_mut().expect("spec").access_modes = Some(vec!["ReadOnlyMany".into()]);
    assert_eq!(check_volume_satisfies_claim(&rox, &c), Err(Mismatch::AccessModes));
    let mut block = simple_volume("v", "2Gi", "fast");
    block.spec.as_mut().expect("spec").volume_mode = Some("Block".into());
    assert_eq!(check_volume_satisfies_claim(&block, &c), Err(Mismatch::VolumeMode));
    let mut going = simple_volume("v", "2Gi", "fast");
    deleting(&mut going.metadata);
    assert_eq!(check_volume_satisfies_claim(&going, &c), Err(Mismatch::Deleting));
    // A selector does not matter when the claim names the volume.
    let picky = claim(
        "c",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
        "resources": {"requests": {"storage": "1Gi"}}, "selector": {"matchLabels": {"x": "y"}}}),
    );
    assert_eq!(check_volume_satisfies_claim(&simple_volume("v", "2Gi", "fast"), &picky), Ok(()));
}
