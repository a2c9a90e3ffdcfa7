//! What the runtime needs to drive the Deployment controller: the cache indexes it reads
//! through, and which Deployments a change of a ReplicaSet or a pod concerns.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as K8sSelector, OwnerReference};

use crate::client::{Cache, IndexFn};
use crate::controller::ObjectKey;
use crate::controllers::util::controller_of;
use crate::object::Resource;
use crate::selector::LabelSelector;
use crate::validation::FieldPath;

/// The index of objects by the uid of their controller (`ownerReferences` with
/// `controller: true`).
pub const CONTROLLER_UID_INDEX: &str = "controllerUid";

/// The namespace index of any kind.
fn namespace_index<K: Resource>() -> (String, IndexFn<K>) {
    Cache::<K>::by_namespace()
}

/// Objects filed under the uid of their controller.
fn controller_uid_index<K: Resource>() -> (String, IndexFn<K>) {
    (
        CONTROLLER_UID_INDEX.to_string(),
        Arc::new(|k: &K| controller_of(k.meta()).map(|r| r.uid.clone()).into_iter().collect()),
    )
}

/// The Deployment cache's indexes: by namespace (orphan ReplicaSets look for Deployments whose
/// selector matches them there).
pub fn deployment_indexes() -> Vec<(String, IndexFn<Deployment>)> {
    vec![namespace_index()]
}

/// The ReplicaSet cache's indexes: by namespace and by controller uid.
pub fn replica_set_indexes() -> Vec<(String, IndexFn<ReplicaSet>)> {
    vec![namespace_index(), controller_uid_index()]
}

/// The pod cache's indexes: by namespace and by controller uid (a `Recreate` Deployment
/// waits for the pods of its old ReplicaSets).
pub fn pod_indexes() -> Vec<(String, IndexFn<Pod>)> {
    vec![namespace_index(), controller_uid_index()]
}

/// The objects of `namespace`, through the namespace index if the cache has it.
pub(super) fn in_namespace<K: Resource>(cache: &Cache<K>, namespace: &str) -> Vec<Arc<K>> {
    if cache.has_index("namespace") {
        return cache.indexed("namespace", namespace);
    }
    cache.list().into_iter().filter(|k| k.meta().namespace.as_deref() == Some(namespace)).collect()
}

/// The objects whose controller has uid `uid` among those of `namespace`, through the
/// controller uid index if the cache has it.
pub(super) fn controlled_by<K: Resource>(cache: &Cache<K>, namespace: &str, uid: &str) -> Vec<Arc<K>> {
    let owned = |k: &Arc<K>| controller_of(k.meta()).is_some_and(|r| r.uid == uid);
    if cache.has_index(CONTROLLER_UID_INDEX) {
        let all = cache.indexed(CONTROLLER_UID_INDEX, uid);
        return all.into_iter().filter(|k| k.meta().namespace.as_deref() == Some(namespace)).collect();
    }
    in_namespace(cache, namespace).into_iter().filter(owned).collect()
}

/// Whether `r` names an object of kind `K` (same kind, same API group).
fn refers_to<K: Resource>(r: &OwnerReference) -> bool {
    let t = K::TYPE;
    let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    r.kind == t.kind && group == t.group
}

/// The object `r` (a controller reference from an object in `namespace`) names, if the cache
/// holds it with that uid (Kubernetes' `resolveControllerRef`).
fn resolve<K: Resource>(cache: &Cache<K>, namespace: &str, r: &OwnerReference) -> Option<Arc<K>> {
    if !refers_to::<K>(r) {
        return None;
    }
    let found = cache.get(&format!("{namespace}/{}", r.name))?;
    (found.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(found)
}

/// The Deployments to reconcile when ReplicaSet `rs` changes: its controller if that is a
/// Deployment; for an orphan, every Deployment of its namespace whose (non-empty) selector
/// matches it, one of which may adopt it. Call it with both the old and the new object of an
/// update.
pub fn deployments_for_replica_set(rs: &ReplicaSet, deployments: &Cache<Deployment>) -> Vec<ObjectKey> {
    let Some(namespace) = rs.metadata.namespace.as_deref() else { return Vec::new() };
    if let Some(r) = controller_of(&rs.metadata) {
        return resolve(deployments, namespace, r).map(|d| ObjectKey::of(d.as_ref())).into_iter().collect();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    let mut keys: Vec<ObjectKey> = in_namespace(deployments, namespace)
        .iter()
        .filter(|d| selects(d.spec.as_ref().map(|s| &s.selector), &labels))
        .map(|d| ObjectKey::of(d.as_ref()))
        .collect();
    keys.sort();
    keys
}

/// Whether a Deployment's selector is non-empty, valid and matches `labels` (an empty one
/// matches nothing here, as in Kubernetes).
fn selects(selector: Option<&K8sSelector>, labels: &BTreeMap<String, String>) -> bool {
    let path = FieldPath::new("spec").child("selector");
    match LabelSelector::from_k8s(selector, &path) {
        Ok(s) => !s.is_empty() && s.matches(labels),
        Err(_) => false,
    }
}

/// The Deployment to reconcile when pod `pod` changes: the one controlling the ReplicaSet
/// that controls the pod, if its strategy is `Recreate` (only that strategy waits for pods).
pub fn deployment_for_pod(
    pod: &Pod,
    replica_sets: &Cache<ReplicaSet>,
    deployments: &Cache<Deployment>,
) -> Vec<ObjectKey> {
    let Some(namespace) = pod.metadata.namespace.as_deref() else { return Vec::new() };
    let rs = controller_of(&pod.metadata).and_then(|r| resolve(replica_sets, namespace, r));
    let d = rs.and_then(|rs| controller_of(&rs.metadata).and_then(|r| resolve(deployments, namespace, r)));
    let recreate = |d: &Deployment| {
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
    };
    d.filter(|d| recreate(d)).map(|d| ObjectKey::of(d.as_ref())).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::WatcherEvent;
    use serde_json::{Value, json};

    fn cache<K: Resource>(indexes: Vec<(String, IndexFn<K>)>, objects: Vec<Value>) -> Cache<K> {
        let c = Cache::with_indexes(indexes.into_iter().collect());
        c.apply(&WatcherEvent::Init);
        for o in objects {
            c.apply(&WatcherEvent::InitApply(serde_json::from_value(o).expect("object")));
        }
        c.apply(&WatcherEvent::InitDone);
        c
    }

    fn deployment(name: &str, uid: &str, app: &str, strategy: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"selector": {"matchLabels": {"app": app}}, "template": {},
                "strategy": {"type": strategy}}})
    }

    fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> Value {
        json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
    }

    fn deployments() -> Cache<Deployment> {
        cache(
            deployment_indexes(),
            vec![
                deployment("web", "d1", "web", "RollingUpdate"),
                deployment("web-too", "d2", "web", "Recreate"),
                deployment("db", "d3", "db", "Recreate"),
            ],
        )
    }

    fn rs(v: Value) -> ReplicaSet {
        serde_json::from_value(v).expect("rs")
    }

    #[test]
    fn owned_replica_set_maps_to_its_deployment_if_the_uid_matches() {
        let ds = deployments();
        let owned = rs(json!({"metadata": {"name": "web-1", "namespace": "ns",
            "ownerReferences": owner("Deployment", "apps/v1", "web", "d1")}}));
        assert_eq!(deployments_for_replica_set(&owned, &ds), vec![ObjectKey::namespaced("ns", "web")]);
        let stale = rs(json!({"metadata": {"name": "web-1", "namespace": "ns",
            "ownerReferences": owner("Deployment", "apps/v1", "web", "old-uid")}}));
        assert!(deployments_for_replica_set(&stale, &ds).is_empty());
        let other_kind = rs(json!({"metadata": {"name": "web-1", "namespace": "ns",
            "ownerReferences": owner("Rollout", "argoproj.io/v1alpha1", "web", "d1")}}));
        assert!(deployments_for_replica_set(&other_kind, &ds).is_empty());
    }

    #[test]
    fn orphan_replica_set_maps_to_every_matching_deployment() {
        let ds = deployments();
        let orphan = rs(json!({"metadata": {"name": "x", "namespace": "ns", "labels": {"app": "web"}}}));
        assert_eq!(
            deployments_for_replica_set(&orphan, &ds),
            vec![ObjectKey::namespaced("ns", "web"), ObjectKey::namespaced("ns", "web-too")]
        );
        let elsewhere =
            rs(json!({"metadata": {"name": "x", "namespace": "other", "labels": {"app": "web"}}}));
        assert!(deployments_for_replica_set(&elsewhere, &ds).is_empty());
    }

    #[test]
    fn pod_maps_to_its_recreate_deployment_only() {
        let ds = deployments();
        let rss: Cache<ReplicaSet> = cache(
            replica_set_indexes(),
            vec![
                json!({"metadata": {"name": "db-1", "namespace": "ns", "uid": "r1",
                    "ownerReferences": owner("Deployment", "apps/v1", "db", "d3")}}),
                json!({"metadata": {"name": "web-1", "namespace": "ns", "uid": "r2",
                    "ownerReferences": owner("Deployment", "apps/v1", "web", "d1")}}),
            ],
        );
        let pod = |rs: &str, uid: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns",
                "ownerReferences": owner("ReplicaSet", "apps/v1", rs, uid)}}))
            .expect("pod")
        };
        assert_eq!(
            deployment_for_pod(&pod("db-1", "r1"), &rss, &ds),
            vec![ObjectKey::namespaced("ns", "db")]
        );
        assert!(deployment_for_pod(&pod("web-1", "r2"), &rss, &ds).is_empty(), "rolling update");
        assert!(deployment_for_pod(&pod("db-1", "other"), &rss, &ds).is_empty(), "stale owner");
    }

    #[test]
    fn lookups_work_with_and_without_indexes() {
        let v = json!({"metadata": {"name": "a", "namespace": "ns", "uid": "r1",
            "ownerReferences": owner("Deployment", "apps/v1", "web", "d1")}});
        let indexed: Cache<ReplicaSet> = cache(replica_set_indexes(), vec![v.clone()]);
        let plain: Cache<ReplicaSet> = cache(Vec::new(), vec![v]);
        for c in [indexed, plain] {
            assert_eq!(in_namespace(&c, "ns").len(), 1);
            assert_eq!(controlled_by(&c, "ns", "d1").len(), 1);
            assert!(controlled_by(&c, "other", "d1").is_empty());
        }
    }
}
