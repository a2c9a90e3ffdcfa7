//! Which ReplicaSets a pod change concerns, and the cache indexes the controller reads
//! through.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::decide::selector;
use crate::client::{Cache, IndexFn};
use crate::controller::ObjectKey;
use crate::controllers::util::{controller_of, is_pod_active};
use crate::object::Resource;

/// The name of the by-namespace index of both caches ([`Cache::by_namespace`]).
pub(crate) fn namespace_index() -> String {
    Cache::<Pod>::by_namespace().0
}

/// The indexes the controller reads the pod cache through: pods by namespace.
pub fn pod_indexes() -> Vec<(String, IndexFn<Pod>)> {
    vec![Cache::<Pod>::by_namespace()]
}

/// The indexes the controller reads the ReplicaSet cache through: ReplicaSets by namespace.
pub fn replica_set_indexes() -> Vec<(String, IndexFn<ReplicaSet>)> {
    vec![Cache::<ReplicaSet>::by_namespace()]
}

/// Adds the `indexes` `cache` lacks (a shared cache may already have them).
pub(crate) fn ensure_indexes<K: Resource>(cache: &Cache<K>, indexes: Vec<(String, IndexFn<K>)>) {
    for (name, f) in indexes {
        if !cache.has_index(&name) {
            cache.add_index(&name, f);
        }
    }
}

/// Whether an owner reference names a ReplicaSet (of the `apps` group).
fn is_replica_set(api_version: &str, kind: &str) -> bool {
    let t = ReplicaSet::TYPE;
    kind == t.kind && api_version.split_once('/').is_some_and(|(group, _)| group == t.group)
}

/// The ReplicaSets to reconcile when `pod` changes (give it the old and the new state of a
/// change alike):
///
/// - a pod with a controller reference concerns that controller if it is a ReplicaSet, and
///   nothing else (Kubernetes ignores pods of other controllers);
/// - an active orphan (no controller, not being deleted) concerns every ReplicaSet of its
///   namespace whose selector matches its labels, which may adopt it. ReplicaSets with an
///   invalid or empty selector are skipped (Kubernetes' `getPodReplicaSets`).
pub fn pod_triggers(replica_sets: &Cache<ReplicaSet>, pod: &Pod) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    if let Some(controller) = controller_of(&pod.metadata) {
        return if is_replica_set(&controller.api_version, &controller.kind) {
            vec![ObjectKey::namespaced(namespace, &controller.name)]
        } else {
            Vec::new()
        };
    }
    if !is_pod_active(pod) {
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut keys: Vec<ObjectKey> = replica_sets
        .indexed(&namespace_index(), namespace)
        .iter()
        .filter(|rs| selector(rs).is_ok_and(|s| s.matches(&labels)))
        .map(|rs| ObjectKey::of(rs.as_ref()))
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::client::WatcherEvent;

    fn replica_sets(items: Vec<Value>) -> Cache<ReplicaSet> {
        let cache = Cache::with_indexes(BTreeMap::new());
        ensure_indexes(&cache, replica_set_indexes());
        ensure_indexes(&cache, replica_set_indexes()); // idempotent
        cache.apply(&WatcherEvent::Init);
        for v in items {
            cache.apply(&WatcherEvent::InitApply(serde_json::from_value(v).expect("rs")));
        }
        cache.apply(&WatcherEvent::InitDone);
        cache
    }

    fn rs(ns: &str, name: &str, selector: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
               "spec": {"selector": selector}})
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn controlled_pods_trigger_their_replicaset_only() {
        let cache = replica_sets(vec![rs("ns", "web", json!({"matchLabels": {"app": "web"}}))]);
        let owned = pod(json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone", "uid": "u", "controller": true}]}}));
        assert_eq!(pod_triggers(&cache, &owned), [ObjectKey::namespaced("ns", "gone")]);
        let job = pod(json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]}}));
        assert!(pod_triggers(&cache, &job).is_empty());
        let foreign = pod(json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "ReplicaSet", "name": "x", "uid": "u", "controller": true}]}}));
        assert!(pod_triggers(&cache, &foreign).is_empty());
    }

    #[test]
    fn orphans_trigger_every_matching_replicaset_of_their_namespace() {
        let cache = replica_sets(vec![
            rs("ns", "web", json!({"matchLabels": {"app": "web"}})),
            rs(
                "ns",
                "web-canary",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
            ),
            rs("ns", "db", json!({"matchLabels": {"app": "db"}})),
            rs("ns", "everything", json!({})),
            rs("other", "web", json!({"matchLabels": {"app": "web"}})),
        ]);
        let orphan = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}]}});
        assert_eq!(
            pod_triggers(&cache, &pod(orphan.clone())),
            [ObjectKey::namespaced("ns", "web"), ObjectKey::namespaced("ns", "web-canary")]
        );
        let mut deleting = orphan.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(pod_triggers(&cache, &pod(deleting)).is_empty());
        let mut finished = orphan;
        finished["status"] = json!({"phase": "Succeeded"});
        assert!(pod_triggers(&cache, &pod(finished)).is_empty());
    }
}
