//! The volume controllers' decisions, rule by rule, without I/O.

mod claims;
mod matching;
mod protection;
mod provisioning;
mod volumes;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

/// Seconds after the test epoch.
fn at(s: i64) -> Timestamp {
    let epoch: Timestamp = "2026-01-01T00:00:00Z".parse().expect("epoch");
    epoch.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).expect("in range")
}

/// A live claim `default/<name>` (uid `<name>-uid`) with `spec`, as a cache holds it.
fn claim(name: &str, spec: Value) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
            "resourceVersion": "7", "finalizers": [PVC_PROTECTION_FINALIZER]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }))
    .expect("claim")
}

/// A claim of `size` with access mode ReadWriteOnce and class `class` (`None`: unset).
fn simple_claim(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    claim(name, spec)
}

/// A live volume with `spec` in `phase`, as a cache holds it.
fn volume(name: &str, spec: Value, phase: Option<&str>) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("{name}-uid"), "resourceVersion": "3",
            "finalizers": [PV_PROTECTION_FINALIZER]},
        "spec": spec,
        "status": phase.map(|p| json!({"phase": p})).unwrap_or(json!({})),
    }))
    .expect("volume")
}

/// An `Available` hostPath volume of `size`, ReadWriteOnce, class `class` (`""`: none).
fn simple_volume(name: &str, size: &str, class: &str) -> PersistentVolume {
    volume(
        name,
        json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "hostPath": {"path": format!("/data/{name}")}}),
        Some(VOLUME_AVAILABLE),
    )
}

/// `v` with a `claimRef` to `default/<claim>` and the given uid.
fn with_claim_ref(mut v: PersistentVolume, claim: &str, uid: Option<&str>) -> PersistentVolume {
    v.spec.as_mut().expect("spec").claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some("default".into()),
        name: Some(claim.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    });
    v
}

fn class(name: &str, provisioner: &str, extra: Value) -> StorageClass {
    let mut c = json!({"metadata": {"name": name}, "provisioner": provisioner});
    if let Value::Object(more) = extra {
        for (k, v) in more {
            match (k.as_str(), v) {
                ("metadata", Value::Object(m)) => {
                    c["metadata"].as_object_mut().expect("metadata").extend(m);
                }
                (_, v) => c[k.as_str()] = v,
            }
        }
    }
    serde_json::from_value(c).expect("storage class")
}

fn pod(name: &str, namespace: &str, claims: &[&str], phase: &str) -> Pod {
    let volumes: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": volumes},
        "status": {"phase": phase},
    }))
    .expect("pod")
}

/// Marks an object's metadata as being deleted.
fn deleting(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)));
}

/// Syncs `claim` against `volumes` and `classes`, not in use.
fn sync(
    claim: &PersistentVolumeClaim,
    volumes: &[&PersistentVolume],
    classes: &[&StorageClass],
) -> ClaimPlan {
    sync_claim(&ClaimInput { claim, volumes, classes, in_use: false, now: at(10) })
}

fn phase_of_volume(w: &ObjectWrite<PersistentVolume>) -> Option<&str> {
    facts::volume_phase(&w.object)
}

fn phase_of_claim(w: &ObjectWrite<PersistentVolumeClaim>) -> Option<&str> {
    facts::claim_phase(&w.object)
}

fn reasons(notes: &[Note]) -> Vec<&str> {
    notes.iter().map(|n| n.reason).collect()
}
