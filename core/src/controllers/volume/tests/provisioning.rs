//! Provisioning in [`sync_claim`], the local-path volume, and the default class.

use serde_json::json;

use super::*;

fn local(name: &str, extra: serde_json::Value) -> StorageClass {
    class(name, LOCAL_PATH_PROVISIONER, extra)
}

fn default_annotation() -> serde_json::Value {
    json!({"metadata": {"annotations": {ANN_DEFAULT_CLASS: "true"}}})
}

#[test]
fn a_claim_of_a_local_path_class_gets_a_volume_made_for_it() {
    let c = claim(
        "data",
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
        "volumeMode": "Filesystem", "resources": {"requests": {"storage": "3Gi"}}}),
    );
    let sc = local(
        "local",
        json!({"parameters": {"basePath": "/srv/volumes/"}, "reclaimPolicy": "Retain",
        "mountOptions": ["noatime"]}),
    );
    let plan = sync(&c, &[], &[&sc]);
    let pv = plan.provision.expect("a volume to create");
    assert_eq!(pv.metadata.name.as_deref(), Some("pvc-data-uid"));
    assert_eq!(facts::annotation(&pv.metadata, ANN_PROVISIONED_BY), Some(LOCAL_PATH_PROVISIONER));
    assert_eq!(pv.metadata.finalizers, Some(vec![PV_PROTECTION_FINALIZER.to_string()]));
    let spec = pv.spec.as_ref().expect("spec");
    let host = spec.host_path.as_ref().expect("hostPath");
    assert_eq!(host.path, "/srv/volumes/default_data_data-uid");
    assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.as_str()), Some("3Gi"));
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(spec.mount_options, Some(vec!["noatime".to_string()]));
    assert_eq!(spec.storage_class_name.as_deref(), Some("local"));
    let r = spec.claim_ref.as_ref().expect("claimRef");
    assert_eq!((r.name.as_deref(), r.uid.as_deref()), (Some("data"), Some("data-uid")));
    // The claim says who provisions it, and stays Pending until the volume shows up.
    let w = plan.claim.expect("claim annotated");
    assert!(w.main && !w.status);
    assert_eq!(facts::annotation(&w.object.metadata, ANN_STORAGE_PROVISIONER), Some(LOCAL_PATH_PROVISIONER));
    assert!(plan.events.is_empty(), "success is recorded by the runtime once created");

    // Once the volume exists, the claim binds to it.
    let mut created = pv.clone();
    created.metadata.uid = Some("pv-uid".into());
    let next = sync(&w.object, &[&created], &[&sc]);
    assert!(next.provision.is_none());
    assert_eq!(next.claim.as_ref().and_then(phase_of_claim), Some(CLAIM_BOUND));
    assert_eq!(next.volume.as_ref().and_then(phase_of_volume), Some(VOLUME_BOUND));
}

#[test]
fn local_path_defaults_delete_and_the_default_base_path() {
    let c = simple_claim("c", "1Gi", Some("local"));
    let pv = local_path_volume(&c, &local("local", json!({}))).expect("provisioned");
    let spec = pv.spec.expect("spec");
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some(RECLAIM_DELETE));
    assert_eq!(spec.host_path.map(|h| h.path), Some(format!("{DEFAULT_BASE_PATH}/default_c_c-uid")));
}

#[test]
fn provisioning_failures_are_reported_on_the_claim() {
    let sc = local("local", json!({}));
    let picky = claim(
        "c",
        json!({"storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}},
        "selector": {"matchLabels": {"x": "y"}}}),
    );
    let no_size = claim("c", json!({"storageClassName": "local"}));
    let bad_param = local("local", json!({"parameters": {"nodePath": "/x"}}));
    let relative = local("local", json!({"parameters": {"basePath": "x"}}));
    let ok = simple_claim("c", "1Gi", Some("local"));
    for (c, sc, needle) in [
        (&picky, &sc, "Selector is not supported"),
        (&no_size, &sc, "spec.resources.requests.storage is required"),
        (&ok, &bad_param, "invalid parameter \"nodePath\""),
        (&ok, &relative, "must be an absolute path"),
    ] {
        let plan = sync(c, &[], &[sc]);
        assert!(plan.provision.is_none());
        assert_eq!(reasons(&plan.events), vec![REASON_PROVISIONING_FAILED]);
        assert!(plan.events[0].message.contains(needle), "{:?} lacks {needle}", plan.events);
        assert_eq!(plan.events[0].type_, crate::controller::events::EventType::Warning);
    }
    let missing = sync(&simple_claim("c", "1Gi", Some("gone")), &[], &[&sc]);
    assert_eq!(reasons(&missing.events), vec![REASON_PROVISIONING_FAILED]);
    assert!(missing.events[0].message.contains("\"gone\" not found"));
}

#[test]
fn a_static_volume_of_the_class_is_preferred_to_provisioning() {
    let c = simple_claim("c", "1Gi", Some("local"));
    let v = simple_volume("static", "1Gi", "local");
    let plan = sync(&c, &[&v], &[&local("local", json!({}))]);
    assert!(plan.provision.is_none());
    assert_eq!(plan.volume.map(|w| facts::volume_name(&w.object).to_string()).as_deref(), Some("static"));
}

#[test]
fn a_volume_provisioned_already_is_not_made_twice() {
    let c = simple_claim("c", "5Gi", Some("local"));
    // Made for the claim when it asked for less: it no longer fits.
    let old = with_claim_ref(simple_volume("pvc-c-uid", "1Gi", "local"), "c", Some("c-uid"));
    let plan = sync(&c, &[&old], &[&local("local", json!({}))]);
    assert!(plan.provision.is_none() && plan.volume.is_none(), "{plan:?}");
}

#[test]
fn another_provisioner_is_left_to_make_the_volume() {
    let c = simple_claim("c", "1Gi", Some("ebs"));
    let plan = sync(&c, &[], &[&class("ebs", "ebs.csi.aws.com", json!({}))]);
    assert!(plan.provision.is_none());
    let w = plan.claim.expect("claim annotated");
    assert_eq!(facts::annotation(&w.object.metadata, ANN_STORAGE_PROVISIONER), Some("ebs.csi.aws.com"));
    assert_eq!(reasons(&plan.events), vec![REASON_EXTERNAL_PROVISIONING]);
}

#[test]
fn wait_for_first_consumer_classes_wait() {
    let c = simple_claim("c", "1Gi", Some("lazy"));
    let lazy = local("lazy", json!({"volumeBindingMode": "WaitForFirstConsumer"}));
    let free = simple_volume("free", "1Gi", "lazy");
    let plan = sync(&c, &[&free], &[&lazy]);
    assert!(plan.provision.is_none() && plan.volume.is_none());
    assert_eq!(plan.events, vec![Note::normal(REASON_WAIT_FOR_FIRST_CONSUMER, WAITING_FOR_CONSUMER)]);
    let immediate = local("lazy", json!({"volumeBindingMode": "Immediate"}));
    assert!(sync(&c, &[], &[&immediate]).provision.is_some());
}

#[test]
fn a_claim_naming_no_class_gets_the_single_default_class() {
    let c = simple_claim("c", "1Gi", None);
    let (def, other) = (local("standard", default_annotation()), local("other", json!({})));
    let plan = sync(&c, &[], &[&other, &def]);
    assert!(plan.provision.is_none(), "the class is written first; the next sync provisions");
    let w = plan.claim.expect("claim written");
    assert_eq!(w.object.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()), Some("standard"));
    let next = sync(&w.object, &[], &[&other, &def]);
    assert_eq!(
        next.provision.and_then(|v| v.spec).and_then(|s| s.storage_class_name).as_deref(),
        Some("standard")
    );

    // A class-less static volume is still preferred.
    let plain = simple_volume("plain", "1Gi", "");
    let plan = sync(&c, &[&plain], &[&def]);
    assert_eq!(plan.volume.map(|w| facts::volume_name(&w.object).to_string()).as_deref(), Some("plain"));

    // "" means no class: never defaulted.
    let none = simple_claim("c", "1Gi", Some(""));
    let plan = sync(&none, &[], &[&def]);
    assert!(plan.claim.is_none() && plan.provision.is_none());
    assert_eq!(plan.events, vec![Note::normal(REASON_FAILED_BINDING, NO_VOLUME_NO_CLASS)]);

    // Two defaults: ambiguous, none is chosen.
    let beta = local("beta", json!({"metadata": {"annotations": {ANN_BETA_DEFAULT_CLASS: "true"}}}));
    let plan = sync(&c, &[], &[&def, &beta]);
    assert!(plan.claim.is_none() && plan.provision.is_none());
    assert_eq!(reasons(&plan.events), vec![REASON_FAILED_BINDING]);
    assert_eq!(default_class(&[&def, &other]).and_then(|c| c.metadata.name.as_deref()), Some("standard"));
    assert!(default_class(&[&def, &beta]).is_none());
}

#[test]
fn a_wait_for_first_consumer_claim_is_provisioned_on_the_node_the_scheduler_selected() {
    let lazy = local("lazy", json!({"volumeBindingMode": "WaitForFirstConsumer"}));
    let mut c = simple_claim("c", "1Gi", Some("lazy"));
    facts::set_annotation(&mut c.metadata, ANN_SELECTED_NODE, "node-1");
    // A free static volume of the class is not taken: the scheduler chose to provision.
    let free = simple_volume("free", "1Gi", "lazy");
    let plan = sync(&c, &[&free], &[&lazy]);
    assert!(plan.volume.is_none());
    let pv = plan.provision.expect("provisioned once a node is selected");
    let affinity = pv.spec.as_ref().and_then(|s| s.node_affinity.clone()).expect("node affinity");
    assert_eq!(affinity, on_node("node-1"));
    let term = &affinity.required.expect("required").node_selector_terms[0];
    let req = &term.match_expressions.as_ref().expect("expressions")[0];
    assert_eq!(
        (req.key.as_str(), req.operator.as_str(), req.values.clone()),
        (LABEL_HOSTNAME, "In", Some(vec!["node-1".to_string()]))
    );
    let w = plan.claim.expect("claim annotated");
    assert_eq!(facts::annotation(&w.object.metadata, ANN_STORAGE_PROVISIONER), Some(LOCAL_PATH_PROVISIONER));
    assert!(plan.events.is_empty(), "{:?}", plan.events);

    // Another provisioner is told the same way (it reads the annotation itself).
    let ebs = class("ebs", "ebs.csi.aws.com", json!({"volumeBindingMode": "WaitForFirstConsumer"}));
    let mut e = simple_claim("e", "1Gi", Some("ebs"));
    facts::set_annotation(&mut e.metadata, ANN_SELECTED_NODE, "node-1");
    let plan = sync(&e, &[], &[&ebs]);
    assert!(plan.provision.is_none());
    assert_eq!(reasons(&plan.events), vec![REASON_EXTERNAL_PROVISIONING]);

    // An Immediate claim gets no node affinity.
    let now = local("now", json!({}));
    let pv = sync(&simple_claim("i", "1Gi", Some("now")), &[], &[&now]).provision.expect("provisioned");
    assert!(pv.spec.and_then(|s| s.node_affinity).is_none());
}

#[test]
fn a_volume_the_scheduler_pre_bound_to_a_waiting_claim_is_bound() {
    let lazy = local("lazy", json!({"volumeBindingMode": "WaitForFirstConsumer"}));
    let c = simple_claim("c", "1Gi", Some("lazy"));
    // What the scheduler writes: claimRef with the claim's uid, bound by a controller.
    let mut v = with_claim_ref(simple_volume("static", "2Gi", "lazy"), "c", Some("c-uid"));
    facts::set_annotation(&mut v.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
    let plan = sync(&c, &[&v], &[&lazy]);
    assert!(plan.provision.is_none());
    let volume = plan.volume.expect("volume written");
    assert_eq!(phase_of_volume(&volume), Some(VOLUME_BOUND));
    let claim = plan.claim.expect("claim written");
    assert_eq!(phase_of_claim(&claim), Some(CLAIM_BOUND));
    assert_eq!(facts::claim_volume_name(&claim.object), Some("static"));
    assert_eq!(facts::annotation(&claim.object.metadata, ANN_BIND_COMPLETED), Some("yes"));
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}
