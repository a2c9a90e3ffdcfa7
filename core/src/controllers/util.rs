//! Small facts about objects that several controllers need: who controls an object, whether a
//! pod counts as active, ready or available.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::object::Resource;

/// The owner reference with `controller: true`, if the object has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// A controller reference to `owner`, as Kubernetes' controllers write it: `controller` and
/// `blockOwnerDeletion` set, so foreground deletion of the owner waits for the dependent.
pub fn controller_reference<K: Resource>(owner: &K) -> OwnerReference {
    let t = K::TYPE;
    let api_version =
        if t.group.is_empty() { t.version.to_string() } else { format!("{}/{}", t.group, t.version) };
    OwnerReference {
        api_version,
        kind: t.kind.to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether the object is being deleted (has a `deletionTimestamp`).
pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// A pod counts towards a ReplicaSet's replicas while it is neither finished (`Succeeded`,
/// `Failed`) nor being deleted (Kubernetes' `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed")) && !is_deleting(&pod.metadata)
}

/// The time since which the pod's `Ready` condition has been `True`, if it is.
pub fn pod_ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (Kubernetes'
/// `IsPodAvailable`). A ready condition without a transition time counts as ready long ago.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => true,
        Some(Some(since)) => {
            let ready_for = now.as_second().saturating_sub(since.as_second());
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("test pod")
    }

    #[test]
    fn availability_needs_ready_for_min_ready_seconds() {
        let p = pod(json!({"metadata": {"name": "a"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}));
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        assert!(is_pod_ready(&p));
        assert!(is_pod_available(&p, 0, t0));
        assert!(!is_pod_available(&p, 10, t0));
        assert!(is_pod_available(&p, 10, t0 + std::time::Duration::from_secs(10)));
        let not_ready = pod(json!({"metadata": {"name": "b"}, "status": {"conditions": [
            {"type": "Ready", "status": "False"}]}}));
        assert!(!is_pod_ready(&not_ready));
        assert!(!is_pod_available(&not_ready, 0, t0));
    }

    #[test]
    fn finished_and_deleting_pods_are_not_active() {
        assert!(is_pod_active(&pod(json!({"metadata": {"name": "a"}}))));
        assert!(!is_pod_active(&pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Failed"}}))));
        assert!(!is_pod_active(&pod(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}})
        )));
    }

    #[test]
    fn controller_reference_names_the_owner() {
        let rs: ReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "web", "uid": "u1"}})).expect("rs");
        let r = controller_reference(&rs);
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.uid.as_str()),
            ("apps/v1", "ReplicaSet", "u1")
        );
        let mut meta = ObjectMeta { owner_references: Some(vec![r]), ..Default::default() };
        assert!(is_controlled_by(&meta, "u1"));
        meta.owner_references.as_mut().expect("refs")[0].controller = Some(false);
        assert!(controller_of(&meta).is_none());
    }
}
