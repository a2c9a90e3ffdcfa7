//! Service address allocation: cluster IPs and node ports unique across Services, kept on
//! update, released on delete, with errors naming the field for bad requests.

use std::sync::Arc;

use flotilla_core::client::{Api, Client, DeleteOptions, Error, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::{Registry, ServiceRanges};
use flotilla_core::store::MemStore;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

async fn services(cidr: &str, ports: std::ops::RangeInclusive<u16>) -> Api<Service> {
    let ranges = ServiceRanges::new(cidr, ports).expect("valid ranges");
    let registry =
        Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin()).with_service_ranges(ranges);
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let ns = Namespace {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
    Api::namespaced(client, "default")
}

fn svc(name: &str, spec: serde_json::Value) -> Service {
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a valid service")
}

fn ip(s: &Service) -> String {
    s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()
}

fn node_port(s: &Service) -> i32 {
    s.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).unwrap_or(0)
}

fn field_of(e: &Error) -> String {
    match e {
        Error::Invalid { errors, .. } => errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn cluster_ips_are_unique_kept_and_released() {
    // A /28 has 13 allocatable addresses (network, broadcast and the first are not).
    let api = services("10.0.0.0/28", 30000..=30010).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..13 {
        let s = api.create(&svc(&format!("s{i}"), json!({}))).await.expect("create");
        let a = ip(&s);
        assert!(a.starts_with("10.0.0.") && a != "10.0.0.1" && a != "10.0.0.0", "{a}");
        assert!(seen.insert(a.clone()), "{a} given twice");
        let spec = s.spec.expect("spec");
        assert_eq!(spec.cluster_ips, Some(vec![a]));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    }
    let full = api.create(&svc("s13", json!({}))).await.expect_err("range full");
    assert!(full.to_string().contains("range 10.0.0.0/28 is full"), "{full}");

    // Deleting releases the address; it can then be asked for by name.
    let s3 = api.get("s3").await.expect("get");
    api.delete("s3", &DeleteOptions::default()).await.expect("delete");
    let again = api.create(&svc("again", json!({"clusterIP": ip(&s3)}))).await.expect("reuse released ip");
    assert_eq!(ip(&again), ip(&s3));

    // An update leaving the field out keeps the address; changing it is refused.
    let mut s0 = api.get("s0").await.expect("get");
    let kept = ip(&s0);
    s0.spec.as_mut().expect("spec").cluster_ip = None;
    s0.spec.as_mut().expect("spec").cluster_ips = None;
    let s0 = api.replace("s0", &s0).await.expect("update");
    assert_eq!(ip(&s0), kept);
    let mut moved = s0.clone();
    moved.spec.as_mut().expect("spec").cluster_ip = Some(ip(&again));
    moved.spec.as_mut().expect("spec").cluster_ips = Some(vec![ip(&again)]);
    let e = api.replace("s0", &moved).await.expect_err("immutable");
    assert!(field_of(&e).contains("spec.clusterIPs[0]") && field_of(&e).contains("immutable"), "{e}");
}

#[tokio::test]
async fn bad_and_taken_addresses_name_the_field() {
    let api = services("10.0.0.0/24", 30000..=30010).await;
    let e = api.create(&svc("out", json!({"clusterIP": "192.168.0.5"}))).await.expect_err("out of range");
    assert!(field_of(&e).contains("spec.clusterIPs[0]") && field_of(&e).contains("10.0.0.0/24"), "{e}");
    api.create(&svc("first", json!({"clusterIP": "10.0.0.7"}))).await.expect("create");
    let e = api.create(&svc("second", json!({"clusterIP": "10.0.0.7"}))).await.expect_err("taken");
    assert!(field_of(&e).contains("already allocated"), "{e}");
    let headless = api.create(&svc("headless", json!({"clusterIP": "None"}))).await.expect("headless");
    assert_eq!(ip(&headless), "None");
    let e = api
        .create(&svc("np", json!({"ports": [{"port": 80, "nodePort": 30001}]})))
        .await
        .expect_err("nodePort on a ClusterIP service");
    assert!(field_of(&e).contains("spec.ports[0].nodePort"), "{e}");
    let e = api
        .create(&svc("np", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]})))
        .await
        .expect_err("nodePort out of range");
    assert!(field_of(&e).contains("spec.ports[0].nodePort") && field_of(&e).contains("30000-30010"), "{e}");
}

#[tokio::test]
async fn node_ports_are_unique_and_released_when_the_type_changes() {
    let api = services("10.0.0.0/24", 30000..=30002).await;
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..3 {
        let s = api.create(&svc(&format!("n{i}"), json!({"type": "NodePort"}))).await.expect("create");
        let p = node_port(&s);
        assert!((30000..=30002).contains(&p), "{p}");
        assert!(ports.insert(p), "{p} given twice");
    }
    api.create(&svc("n3", json!({"type": "NodePort"}))).await.expect_err("node ports exhausted");
    // Back to ClusterIP: the port is released and someone else may ask for it.
    let mut n0 = api.get("n0").await.expect("get");
    let freed = node_port(&n0);
    n0.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
    n0.spec.as_mut().expect("spec").ports.as_mut().expect("ports")[0].node_port = None;
    let n0 = api.replace("n0", &n0).await.expect("to ClusterIP");
    assert_eq!(node_port(&n0), 0);
    let s = api
        .create(&svc("taker", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": freed}]})))
        .await
        .expect("freed port reused");
    assert_eq!(node_port(&s), freed);
    // An update of a NodePort service that leaves nodePort out keeps it.
    let mut n1 = api.get("n1").await.expect("get");
    let kept = node_port(&n1);
    n1.spec.as_mut().expect("spec").ports.as_mut().expect("ports")[0].node_port = None;
    assert_eq!(node_port(&api.replace("n1", &n1).await.expect("update")), kept);
}
