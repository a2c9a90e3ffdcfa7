//! Criterion benches of the object conversions every registry read, write and watch event
//! goes through: a stored pod's JSON decoded into a `DynamicObject`, and a typed pod to and
//! from one. `derived/decode_pod` decodes the same bytes into the `#[serde(flatten)]` struct
//! `DynamicObject` used to derive its decoding from, and `derived/from_typed_pod` converts a
//! typed pod the way `from_typed` used to, side by side with the current ones.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::object::DynamicObject;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The derived decoding `DynamicObject` had before its own.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Flattened {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(flatten)]
    data: Map<String, Value>,
}

/// A bound, running pod as a controller makes them: labels, an owner, two containers with
/// resources, ports, probes and environment, tolerations, and a status with conditions.
fn pod() -> Value {
    let container = |name: &str| {
        json!({
            "name": name, "image": format!("registry.local/{name}:1.2.3"),
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "LEVEL", "value": "info"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"
        })
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c-x2k8p", "namespace": "shop", "uid": "0b7c6a5e-1f2d-4e3c-9a8b-7c6d5e4f3a2b",
            "creationTimestamp": "2026-12-07T10:00:00Z", "generateName": "web-7d4b9c-",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c", "tier": "frontend"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
                "uid": "5e4f3a2b-0b7c-6a5e-1f2d-4e3c9a8b7c6d", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [container("app"), container("sidecar")],
            "nodeName": "node-17", "schedulerName": "default-scheduler", "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "priority": 0,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.17", "podIP": "10.244.17.9", "qosClass": "Burstable",
            "startTime": "2026-12-07T10:00:01Z",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-07T10:00:01Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-07T10:00:04Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:00:04Z"}
            ]
        }
    })
}

fn dynamic(c: &mut Criterion) {
    let bytes = serde_json::to_vec(&pod()).expect("encodes");
    let typed: Pod = serde_json::from_value(pod()).expect("a pod");
    let object: DynamicObject = serde_json::from_slice(&bytes).expect("decodes");
    c.bench_function("dynamic/decode_pod", |b| {
        b.iter(|| serde_json::from_slice::<DynamicObject>(std::hint::black_box(&bytes)).expect("decodes"))
    });
    c.bench_function("derived/decode_pod", |b| {
        b.iter(|| serde_json::from_slice::<Flattened>(std::hint::black_box(&bytes)).expect("decodes"))
    });
    c.bench_function("dynamic/encode_pod", |b| {
        b.iter(|| serde_json::to_vec(std::hint::black_box(&object)).expect("encodes"))
    });
    c.bench_function("dynamic/from_typed_pod", |b| {
        b.iter(|| DynamicObject::from_typed(std::hint::black_box(&typed)).expect("converts"))
    });
    c.bench_function("derived/from_typed_pod", |b| {
        // What `from_typed` did before: the typed pod to a JSON tree, then decoded from it.
        b.iter(|| {
            let tree = serde_json::to_value(std::hint::black_box(&typed)).expect("encodes");
            serde_json::from_value::<Flattened>(tree).expect("converts")
        })
    });
    c.bench_function("dynamic/to_typed_pod", |b| {
        b.iter(|| std::hint::black_box(&object).to_typed::<Pod>().expect("converts"))
    });
}

criterion_group!(benches, dynamic);
criterion_main!(benches);
