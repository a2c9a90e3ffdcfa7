//! The annotations a Deployment writes on its ReplicaSets (revision, revision history, desired
//! and maximum replicas) and copies to them from itself.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The rollout sequence number of a ReplicaSet, and of its Deployment's newest one.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet served (comma-separated), when a rollback reused it.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last sized the ReplicaSet: tells scaling events
/// apart from rollouts.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when it last sized the ReplicaSet: the base of
/// proportional scaling.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// kubectl's client-side apply record, never copied to ReplicaSets.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The extensions/v1beta1 rollback request, never copied to ReplicaSets.
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Kubernetes bounds the revision history annotation to about 100 revisions.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Whether a Deployment annotation stays off its ReplicaSets (Kubernetes' `skipCopyAnnotation`).
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | DEPRECATED_ROLLBACK_TO
    )
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision of an object: `Ok(0)` without the annotation, `Err` if it is not a number.
pub(super) fn revision(meta: &ObjectMeta) -> Result<i64, std::num::ParseIntError> {
    annotation(meta, REVISION_ANNOTATION).map_or(Ok(0), str::parse)
}

/// The highest parseable revision among `replica_sets` (0 if none).
pub(super) fn max_revision<'a>(replica_sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    replica_sets.into_iter().filter_map(|rs| revision(&rs.metadata).ok()).max().unwrap_or(0).max(0)
}

/// An annotation holding an `i32`.
fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// The `desired-replicas` annotation.
pub(super) fn desired_replicas(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// The `max-replicas` annotation.
pub(super) fn max_replicas(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, MAX_REPLICAS_ANNOTATION)
}

fn annotations_mut(meta: &mut ObjectMeta) -> &mut BTreeMap<String, String> {
    meta.annotations.get_or_insert_with(BTreeMap::new)
}

/// Sets `desired-replicas` and `max-replicas`; whether anything changed.
pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = annotations_mut(&mut rs.metadata);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS_ANNOTATION, desired), (MAX_REPLICAS_ANNOTATION, max)] {
        let value = value.to_string();
        if a.get(key) != Some(&value) {
            a.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether `desired-replicas` or `max-replicas` differ from these values.
pub(super) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

/// Copies the Deployment's annotations to the ReplicaSet, except the ones
/// [`skip_copy`] names; whether anything changed. Annotations are only added or changed, never
/// removed, as in Kubernetes.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let a = annotations_mut(&mut rs.metadata);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Brings the new ReplicaSet's annotations up to date (Kubernetes'
/// `SetNewReplicaSetAnnotations`): copies the Deployment's, raises its revision to
/// `new_revision` if lower (keeping the revision it had in `revision-history`: a rollback reused
/// it), and for a ReplicaSet about to be created, sets the replica annotations. Whether
/// anything changed.
pub(super) fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    max_surge: i32,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let a = annotations_mut(&mut rs.metadata);
    let old = a.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(r) => r,
            // An unparseable revision is left for a human: Kubernetes changes nothing then.
            Err(_) => return false,
        },
    };
    if old_revision < new_revision {
        a.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = a.get(REVISION_HISTORY_ANNOTATION).cloned().unwrap_or_default();
            if let Some(h) = append_history(&history, &old) {
                a.insert(REVISION_HISTORY_ANNOTATION.into(), h);
            }
        }
    }
    if !exists {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if set_replicas_annotations(rs, replicas, replicas.saturating_add(max_surge)) {
            changed = true;
        }
    }
    changed
}

/// `history` with `old` appended, dropping the oldest entries to stay within
/// [`MAX_REVISION_HISTORY_CHARS`]; `None` when even that cannot fit it.
fn append_history(history: &str, old: &str) -> Option<String> {
    if history.is_empty() {
        return Some(old.to_string());
    }
    let entries: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + old.len() + 1;
    let mut start = 0;
    while total > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
        total -= entries[start].len() + 1;
        start += 1;
    }
    if total > MAX_REVISION_HISTORY_CHARS {
        return None;
    }
    let mut kept: Vec<&str> = entries[start..].to_vec();
    kept.push(old);
    Some(kept.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(annotations: serde_json::Value) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": "web-1", "annotations": annotations}}))
            .expect("rs")
    }

    fn deployment(annotations: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"replicas": 4, "selector": {}, "template": {}}
        }))
        .expect("deployment")
    }

    fn get<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
        annotation(&rs.metadata, key)
    }

    #[test]
    fn new_replica_set_gets_revision_and_replica_annotations() {
        let d = deployment(json!({
            "team": "a",
            LAST_APPLIED_ANNOTATION: "{}",
            REVISION_ANNOTATION: "7",
        }));
        let mut r = rs(json!({}));
        assert!(set_new_replica_set_annotations(&d, &mut r, 3, false, 1));
        assert_eq!(get(&r, REVISION_ANNOTATION), Some("3"));
        assert_eq!(get(&r, DESIRED_REPLICAS_ANNOTATION), Some("4"));
        assert_eq!(get(&r, MAX_REPLICAS_ANNOTATION), Some("5"));
        assert_eq!(get(&r, "team"), Some("a"));
        assert_eq!(get(&r, LAST_APPLIED_ANNOTATION), None);
        assert_eq!(get(&r, REVISION_HISTORY_ANNOTATION), None);
        assert!(!set_new_replica_set_annotations(&d, &mut r, 3, true, 1), "idempotent");
    }

    #[test]
    fn reused_replica_set_keeps_its_old_revisions() {
        let d = deployment(json!({}));
        let mut r = rs(json!({REVISION_ANNOTATION: "1"}));
        assert!(set_new_replica_set_annotations(&d, &mut r, 3, true, 0));
        assert_eq!(get(&r, REVISION_ANNOTATION), Some("3"));
        assert_eq!(get(&r, REVISION_HISTORY_ANNOTATION), Some("1"));
        assert!(set_new_replica_set_annotations(&d, &mut r, 5, true, 0));
        assert_eq!(get(&r, REVISION_HISTORY_ANNOTATION), Some("1,3"));
        // A higher revision than asked is kept (older ReplicaSets were deleted since).
        assert!(!set_new_replica_set_annotations(&d, &mut r, 2, true, 0));
        assert_eq!(get(&r, REVISION_ANNOTATION), Some("5"));
    }

    #[test]
    fn history_is_bounded() {
        let long = vec!["1234567"; 250].join(",");
        let appended = append_history(&long, "99").expect("fits after dropping");
        assert!(appended.len() <= MAX_REVISION_HISTORY_CHARS);
        assert!(appended.ends_with(",99"));
    }

    #[test]
    fn revisions_parse_and_skip_garbage() {
        let a = rs(json!({REVISION_ANNOTATION: "4"}));
        let b = rs(json!({REVISION_ANNOTATION: "x"}));
        let c = rs(json!({}));
        assert_eq!(revision(&c.metadata), Ok(0));
        assert!(revision(&b.metadata).is_err());
        assert_eq!(max_revision([&a, &b, &c]), 4);
    }
}
