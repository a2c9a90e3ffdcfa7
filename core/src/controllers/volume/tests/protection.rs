//! Protection finalizers, pod usage, and the triggers.

use std::sync::Arc;

use super::*;
use crate::client::{Cache, WatcherEvent};
use crate::controller::{Change, ObjectKey};

#[test]
fn a_claim_is_in_use_by_live_pods_of_its_namespace_only() {
    let c = simple_claim("data", "1Gi", Some(""));
    assert!(claim_in_use(&c, [&pod("p", "default", &["logs", "data"], "Running")]));
    assert!(claim_in_use(&c, [&pod("p", "default", &["data"], "Pending")]));
    let mut stopping = pod("p", "default", &["data"], "Running");
    deleting(&mut stopping.metadata);
    assert!(claim_in_use(&c, [&stopping]), "a pod being deleted holds it until it stops");
    assert!(!claim_in_use(&c, [&pod("p", "default", &["data"], "Succeeded")]));
    assert!(!claim_in_use(&c, [&pod("p", "default", &["data"], "Failed")]));
    assert!(!claim_in_use(&c, [&pod("p", "other", &["data"], "Running")]));
    assert!(!claim_in_use(&c, [&pod("p", "default", &["logs"], "Running")]));
}

#[test]
fn protection_finalizers_are_added_to_live_objects_and_removed_when_free() {
    let mut c = simple_claim("c", "1Gi", Some(""));
    assert_eq!(claim_protection(&c, true), FinalizerChange::Keep);
    c.metadata.finalizers = None;
    assert_eq!(claim_protection(&c, true), FinalizerChange::Add);
    let mut going = simple_claim("c", "1Gi", Some(""));
    deleting(&mut going.metadata);
    assert_eq!(claim_protection(&going, true), FinalizerChange::Keep);
    assert_eq!(claim_protection(&going, false), FinalizerChange::Remove);
    going.metadata.finalizers = None;
    assert_eq!(claim_protection(&going, false), FinalizerChange::Keep, "nothing to remove");

    let mut v = simple_volume("v", "1Gi", "");
    v.metadata.finalizers = None;
    assert_eq!(volume_protection(&v), FinalizerChange::Add);
    let mut going = simple_volume("v", "1Gi", "");
    deleting(&mut going.metadata);
    assert_eq!(volume_protection(&going), FinalizerChange::Remove);
    going.status.as_mut().expect("status").phase = Some(VOLUME_BOUND.into());
    assert_eq!(volume_protection(&going), FinalizerChange::Keep);
}

fn cache_of<K: crate::object::Resource + Clone>(objects: &[&K]) -> Cache<K> {
    let cache = Cache::default();
    cache.apply(&WatcherEvent::Init);
    for o in objects {
        cache.apply(&WatcherEvent::InitApply((*o).clone()));
    }
    cache.apply(&WatcherEvent::InitDone);
    cache
}

#[test]
fn volume_changes_trigger_their_claim_and_free_volumes_every_waiting_claim() {
    let waiting = simple_claim("waiting", "1Gi", Some(""));
    let (bound, _) = {
        let c = simple_claim("bound", "1Gi", Some(""));
        let v = simple_volume("v", "1Gi", "");
        let plan = sync(&c, &[&v], &[]);
        (plan.claim.expect("claim").object, ())
    };
    let claims = cache_of(&[&waiting, &bound]);
    let free = Arc::new(simple_volume("free", "1Gi", ""));
    let keys = claims_for_volume(&Change::Applied { old: None, new: free }, &claims);
    assert_eq!(keys, vec![ObjectKey::namespaced("default", "waiting")]);
    let taken = Arc::new(with_claim_ref(simple_volume("taken", "1Gi", ""), "bound", Some("bound-uid")));
    let keys = claims_for_volume(&Change::Deleted(taken), &claims);
    assert_eq!(keys, vec![ObjectKey::namespaced("default", "bound")]);
    let keys = claims_for_pod(&Change::Applied {
        old: Some(Arc::new(pod("p", "default", &["a"], "Running"))),
        new: Arc::new(pod("p", "default", &["a", "b"], "Running")),
    });
    assert_eq!(keys, vec![ObjectKey::namespaced("default", "a"), ObjectKey::namespaced("default", "b")]);
}

#[test]
fn claim_changes_trigger_the_volumes_naming_them() {
    let pre = with_claim_ref(simple_volume("pre", "1Gi", ""), "c", Some("c-uid"));
    let other = with_claim_ref(simple_volume("other", "1Gi", ""), "d", None);
    let volumes = cache_of(&[&pre, &other]);
    for (name, f) in volume_indexes() {
        volumes.add_index(&name, f);
    }
    let c = claim("c", serde_json::json!({"volumeName": "named"}));
    let keys = volumes_for_claim(&Change::Deleted(Arc::new(c)), &volumes);
    assert_eq!(keys, vec![ObjectKey::cluster("named"), ObjectKey::cluster("pre")]);
}
