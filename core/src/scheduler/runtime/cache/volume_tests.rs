//! The cache's claims, volumes and storage classes from watch events: events for the queue,
//! relists, readiness, and the snapshot sharing the catalog without a node rebuild.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::*;
use crate::scheduler::runtime::cluster_event::ClusterEvent::*;

/// Lists no claims, volumes or classes: the cache is then ready once nodes and pods are.
pub(super) fn list_no_storage(c: &mut SchedulerCache) {
    for done in [
        c.apply_claim(&WatcherEvent::Init),
        c.apply_claim(&WatcherEvent::InitDone),
        c.apply_volume(&WatcherEvent::Init),
        c.apply_volume(&WatcherEvent::InitDone),
        c.apply_storage_class(&WatcherEvent::Init),
        c.apply_storage_class(&WatcherEvent::InitDone),
    ] {
        assert!(done.is_empty());
    }
}

fn claim(name: &str, rv: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "spec": {"storageClassName": "local"}}))
    .expect("claim")
}

fn volume(name: &str, rv: &str) -> PersistentVolume {
    serde_json::from_value(json!({"metadata": {"name": name, "resourceVersion": rv},
        "spec": {"storageClassName": "local", "capacity": {"storage": "1Gi"}}}))
    .expect("volume")
}

fn n(name: &str) -> Node {
    (*crate::scheduler::testing::node(name).capacity("1", "1Gi", "10").build()).clone()
}

fn class(name: &str, mode: &str) -> StorageClass {
    serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": "p", "volumeBindingMode": mode}))
        .expect("class")
}

#[test]
fn readiness_waits_for_every_list() {
    let mut c = SchedulerCache::new(Duration::from_secs(30));
    c.apply_node(&WatcherEvent::Init);
    c.apply_node(&WatcherEvent::InitDone);
    c.apply_pod(&WatcherEvent::Init);
    c.apply_pod(&WatcherEvent::InitDone);
    assert!(!c.is_ready());
    c.apply_claim(&WatcherEvent::Init);
    c.apply_claim(&WatcherEvent::InitDone);
    c.apply_volume(&WatcherEvent::Init);
    c.apply_volume(&WatcherEvent::InitDone);
    assert!(!c.is_ready(), "classes not listed yet");
    c.apply_storage_class(&WatcherEvent::Init);
    c.apply_storage_class(&WatcherEvent::InitDone);
    assert!(c.is_ready());
}

#[test]
fn claims_volumes_and_classes_give_added_and_changed_events() {
    let mut c = SchedulerCache::new(Duration::from_secs(30));
    // (what happens, the events it gives)
    let cases: Vec<(Vec<ClusterEvent>, Vec<ClusterEvent>)> = vec![
        (c.apply_claim(&WatcherEvent::Apply(claim("a", "1"))), vec![ClaimAdded]),
        (c.apply_claim(&WatcherEvent::Apply(claim("a", "1"))), vec![]),
        (c.apply_claim(&WatcherEvent::Apply(claim("a", "2"))), vec![ClaimChanged]),
        (c.apply_claim(&WatcherEvent::Delete(claim("a", "2"))), vec![]),
        (c.apply_volume(&WatcherEvent::Apply(volume("v", "1"))), vec![VolumeAdded]),
        (c.apply_volume(&WatcherEvent::Apply(volume("v", "1"))), vec![]),
        (c.apply_volume(&WatcherEvent::Apply(volume("v", "2"))), vec![VolumeChanged]),
        (c.apply_storage_class(&WatcherEvent::Apply(class("s", "Immediate"))), vec![StorageClassAdded]),
        (
            c.apply_storage_class(&WatcherEvent::Apply(class("s", "WaitForFirstConsumer"))),
            vec![StorageClassChanged],
        ),
        (c.apply_storage_class(&WatcherEvent::Retrying("x".into())), vec![]),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "step {i}");
    }
    let v = c.volumes();
    assert!(v.claim("default", "a").is_none(), "deleted");
    assert_eq!(v.volume("v").and_then(|v| v.metadata.resource_version.as_deref()), Some("2"));
    let mode = v.class("s").and_then(|s| s.volume_binding_mode.as_deref());
    assert_eq!(mode, Some("WaitForFirstConsumer"));
    assert!(c.apply_volume(&WatcherEvent::Delete(volume("v", "2"))).is_empty());
    assert!(c.apply_storage_class(&WatcherEvent::Delete(class("s", "Immediate"))).is_empty());
    assert_eq!(c.volumes().counts(), (0, 0, 0));
}

#[test]
fn a_relist_drops_what_it_did_not_list() {
    let mut c = SchedulerCache::new(Duration::from_secs(30));
    c.apply_claim(&WatcherEvent::Apply(claim("kept", "1")));
    c.apply_claim(&WatcherEvent::Apply(claim("gone", "1")));
    c.apply_volume(&WatcherEvent::Apply(volume("kept", "1")));
    c.apply_volume(&WatcherEvent::Apply(volume("gone", "1")));
    c.apply_storage_class(&WatcherEvent::Apply(class("kept", "Immediate")));
    c.apply_storage_class(&WatcherEvent::Apply(class("gone", "Immediate")));

    assert!(c.apply_claim(&WatcherEvent::Init).is_empty());
    assert!(c.apply_claim(&WatcherEvent::InitApply(claim("kept", "1"))).is_empty(), "unchanged");
    assert_eq!(c.apply_claim(&WatcherEvent::InitApply(claim("new", "1"))), [ClaimAdded]);
    assert!(c.apply_claim(&WatcherEvent::InitDone).is_empty());
    c.apply_volume(&WatcherEvent::Init);
    assert_eq!(c.apply_volume(&WatcherEvent::InitApply(volume("kept", "5"))), [VolumeChanged]);
    c.apply_volume(&WatcherEvent::InitDone);
    c.apply_storage_class(&WatcherEvent::Init);
    c.apply_storage_class(&WatcherEvent::InitApply(class("kept", "Immediate")));
    c.apply_storage_class(&WatcherEvent::InitDone);

    let v = c.volumes();
    let claims: Vec<&str> = v.claims().map(|(k, _)| k).collect();
    assert_eq!(claims, ["default/kept", "default/new"]);
    let volumes: Vec<_> = v.volumes().map(|v| v.metadata.name.clone().unwrap_or_default()).collect();
    assert_eq!(volumes, ["kept"]);
    let classes: Vec<_> = v.classes().map(|c| c.metadata.name.clone().unwrap_or_default()).collect();
    assert_eq!(classes, ["kept"]);
}

#[test]
fn the_snapshot_gets_each_new_catalog_without_a_node_rebuild() {
    let mut c = SchedulerCache::new(Duration::from_secs(30));
    c.apply_node(&WatcherEvent::Apply(n("n")));
    let first = c.snapshot().expect("snapshot").clone();
    assert_eq!(first.volumes().counts(), (0, 0, 0));

    c.apply_volume(&WatcherEvent::Apply(volume("v", "1")));
    assert!(!c.dirty, "a volume does not make the nodes stale");
    let second = c.snapshot().expect("snapshot").volumes().clone();
    assert_eq!(second.counts(), (0, 1, 0));
    assert!(Arc::ptr_eq(&second, &c.volumes), "shared, not copied");
    assert_eq!(first.volumes().counts(), (0, 0, 0), "an earlier snapshot keeps its catalog");

    // A node change rebuilds the nodes, and the rebuilt snapshot still has the catalog.
    c.apply_node(&WatcherEvent::Apply(n("m")));
    let third = c.snapshot().expect("snapshot");
    assert_eq!((third.len(), third.volumes().counts()), (2, (0, 1, 0)));
}
