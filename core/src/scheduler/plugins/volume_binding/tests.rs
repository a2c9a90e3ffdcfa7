//! VolumeBinding's pre-filter and filter verdicts (the cases of Kubernetes'
//! `volume_binding_test.go`, and the node-affinity, provisioning and topology rules), and
//! reserve keeping two pods off one volume.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use super::*;
use crate::controllers::volume::facts::claim_ref;
use crate::controllers::volume::{LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER};
use crate::scheduler::VolumeCatalog;
use crate::scheduler::testing::node;

mod bind;

const WAIT: &str = "wait";
const WAIT_NO_PROVISIONER: &str = "wait-static";
const IMMEDIATE: &str = "immediate";

fn class(name: &str, mode: &str, provisioner: &str, extra: Value) -> StorageClass {
    let mut c = json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode});
    if let Value::Object(more) = extra {
        c.as_object_mut().expect("object").extend(more);
    }
    serde_json::from_value(c).expect("class")
}

fn classes() -> Vec<StorageClass> {
    vec![
        class(WAIT, "WaitForFirstConsumer", LOCAL_PATH_PROVISIONER, json!({})),
        class(WAIT_NO_PROVISIONER, "WaitForFirstConsumer", NO_PROVISIONER, json!({})),
        class(IMMEDIATE, "Immediate", LOCAL_PATH_PROVISIONER, json!({})),
        class(
            "zonal",
            "WaitForFirstConsumer",
            LOCAL_PATH_PROVISIONER,
            json!({"allowedTopologies": [{"matchLabelExpressions": [{"key": "zone", "values": ["z1"]}]}]}),
        ),
    ]
}

/// A pod using the claims named.
fn pod(name: &str, claims: &[&str]) -> Pod {
    let volumes: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"containers": [{"name": "c"}], "volumes": volumes},
    }))
    .expect("pod")
}

/// An unbound ReadWriteOnce claim of 1Gi (unless `extra` says otherwise) of `class`.
fn claim(name: &str, class: &str, extra: Value) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "resourceVersion": "1"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    });
    merge(&mut c, extra);
    serde_json::from_value(c).expect("claim")
}

/// A claim bound to `volume`.
fn bound_claim(name: &str, class: &str, volume: &str) -> PersistentVolumeClaim {
    claim(
        name,
        class,
        json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": volume}, "status": {"phase": "Bound"}}),
    )
}

/// An `Available` ReadWriteOnce volume of 1Gi (unless `extra` says otherwise) of `class`.
fn volume(name: &str, class: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "hostPath": {"path": "/data"}},
        "status": {"phase": "Available"},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("volume")
}

/// `extra` for a volume that requires label `key` to be one of `values`.
fn on_label(key: &str, values: &[&str]) -> Value {
    json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}]}}}})
}

/// `extra` for a volume on node `name` (by hostname label).
fn on(name: &str) -> Value {
    on_label(LABEL_HOSTNAME, &[name])
}

/// Merges JSON objects, `extra` winning.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn nodes(names: &[&str]) -> Vec<Arc<Node>> {
    names.iter().map(|n| node(n).label(LABEL_HOSTNAME, n).build()).collect()
}

fn snapshot(
    nodes: Vec<Arc<Node>>,
    claims: Vec<PersistentVolumeClaim>,
    volumes: Vec<PersistentVolume>,
) -> Snapshot {
    let catalog = VolumeCatalog::from_objects(claims, volumes, classes());
    Snapshot::new(nodes, vec![]).expect("snapshot").with_volumes(catalog)
}

/// Pre-filter, then filter on every node: the pre-filter's verdict, or every node's.
fn verdicts(
    plugin: &VolumeBinding,
    pod: &Pod,
    snapshot: &Snapshot,
) -> (CycleState, Result<Vec<Status>, Status>) {
    let mut state = CycleState::new();
    let pre = plugin.pre_filter(&mut state, pod, snapshot);
    if !pre.is_success() {
        return (state, Err(pre));
    }
    let filtered = snapshot.nodes().iter().map(|n| plugin.filter(&state, pod, n)).collect();
    (state, Ok(filtered))
}

fn unresolvable(reasons: &[&str]) -> Status {
    Status::UnschedulableAndUnresolvable { reasons: reasons.iter().map(|r| r.to_string()).collect() }
}

const OK: Status = Status::Success;

#[test]
fn verdicts_follow_kubernetes() {
    let bind = VolumeBinding::BIND_CONFLICT;
    let node_conflict = VolumeBinding::NODE_CONFLICT;
    let zones = || vec![node("z1").label("zone", "z1").build(), node("z2").label("zone", "z2").build()];
    let selected = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "b"}}});
    let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
    let lost = json!({"spec": {"volumeName": "pv-a"}, "status": {"phase": "Lost"}});
    let pre_bound_on_b = {
        let mut v = on("b");
        merge(&mut v, json!({"spec": {"claimRef": {"namespace": "default", "name": "pvc-a"}}}));
        v
    };
    let by_name = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}});
    // (name, pod's claims, nodes, claims, volumes, the pre-filter's verdict or each node's)
    type Case = (
        &'static str,
        Vec<&'static str>,
        Vec<Arc<Node>>,
        Vec<PersistentVolumeClaim>,
        Vec<PersistentVolume>,
        Result<Vec<Status>, Status>,
    );
    let cases: Vec<Case> = vec![
        ("pod has no claims", vec![], nodes(&["a"]), vec![], vec![], Ok(vec![OK])),
        (
            "all bound",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![bound_claim("pvc-a", WAIT, "pv-a")],
            vec![volume("pv-a", WAIT, json!({}))],
            Ok(vec![OK]),
        ),
        (
            "claim does not exist",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![],
            vec![],
            Err(unresolvable(&[r#"persistentvolumeclaim "pvc-a" not found"#])),
        ),
        (
            "part of the claims do not exist",
            vec!["pvc-a", "pvc-b"],
            nodes(&["a"]),
            vec![bound_claim("pvc-a", WAIT, "pv-a")],
            vec![volume("pv-a", WAIT, json!({}))],
            Err(unresolvable(&[r#"persistentvolumeclaim "pvc-b" not found"#])),
        ),
        (
            "immediate claim not bound",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", IMMEDIATE, json!({}))],
            vec![],
            Err(unresolvable(&[VolumeBinding::UNBOUND_IMMEDIATE])),
        ),
        (
            "claim of no class not bound",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", "", json!({}))],
            vec![],
            Err(unresolvable(&[VolumeBinding::UNBOUND_IMMEDIATE])),
        ),
        (
            "claim of a missing class not bound",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", "gone", json!({}))],
            vec![],
            Err(unresolvable(&[VolumeBinding::UNBOUND_IMMEDIATE])),
        ),
        (
            "claim being deleted",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", WAIT, deleting)],
            vec![],
            Err(unresolvable(&[r#"persistentvolumeclaim "pvc-a" is being deleted"#])),
        ),
        (
            "lost claim",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", WAIT, lost)],
            vec![],
            Err(unresolvable(&[
                r#"persistentvolumeclaim "pvc-a" bound to non-existent persistentvolume "pv-a""#,
            ])),
        ),
        (
            "unbound claim, no volume, no provisioner",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", WAIT_NO_PROVISIONER, json!({}))],
            vec![],
            Ok(vec![unresolvable(&[bind])]),
        ),
        (
            "bound claim with a mismatching affinity and an unbound one without volume",
            vec!["pvc-a", "pvc-b"],
            vec![node("a").label("foo", "barbar").build()],
            vec![bound_claim("pvc-a", WAIT, "pv-a"), claim("pvc-b", WAIT_NO_PROVISIONER, json!({}))],
            vec![volume("pv-a", WAIT, on_label("foo", &["bar"]))],
            Ok(vec![unresolvable(&[node_conflict, bind])]),
        ),
        (
            "bound claims' volume affinity picks the node",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![bound_claim("pvc-a", WAIT, "pv-a")],
            vec![volume("pv-a", WAIT, on("b"))],
            Ok(vec![unresolvable(&[node_conflict]), OK]),
        ),
        (
            "volume affinity by node name",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![bound_claim("pvc-a", WAIT, "pv-a")],
            vec![volume("pv-a", WAIT, by_name)],
            Ok(vec![unresolvable(&[node_conflict]), OK]),
        ),
        (
            "bound volume does not exist",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![bound_claim("pvc-a", WAIT, "pv-a")],
            vec![],
            Ok(vec![unresolvable(&[VolumeBinding::PV_NOT_EXIST])]),
        ),
        (
            "wait for first consumer: the only static volume is on one node",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![claim("pvc-a", WAIT_NO_PROVISIONER, json!({}))],
            vec![volume("pv-b", WAIT_NO_PROVISIONER, on("b"))],
            Ok(vec![unresolvable(&[bind]), OK]),
        ),
        (
            "static volumes too small, bound or of another class do not count",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim(
                "pvc-a",
                WAIT_NO_PROVISIONER,
                json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
            )],
            vec![
                volume("small", WAIT_NO_PROVISIONER, json!({})),
                volume("other", WAIT, json!({"spec": {"capacity": {"storage": "5Gi"}}})),
                volume(
                    "taken",
                    WAIT_NO_PROVISIONER,
                    json!({"spec": {"capacity": {"storage": "5Gi"},
                        "claimRef": {"namespace": "default", "name": "else", "uid": "else-uid"}},
                        "status": {"phase": "Bound"}}),
                ),
            ],
            Ok(vec![unresolvable(&[bind])]),
        ),
        (
            "wait for first consumer: provisioning fits every node",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![claim("pvc-a", WAIT, json!({}))],
            vec![],
            Ok(vec![OK, OK]),
        ),
        (
            "allowed topologies",
            vec!["pvc-a"],
            zones(),
            vec![claim("pvc-a", "zonal", json!({}))],
            vec![],
            Ok(vec![OK, unresolvable(&[bind])]),
        ),
        (
            "a selected node is the only node",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![claim("pvc-a", WAIT, selected)],
            vec![],
            Ok(vec![unresolvable(&[bind]), OK]),
        ),
        (
            "a volume pre-bound to the claim is the only volume it gets",
            vec!["pvc-a"],
            nodes(&["a", "b"]),
            vec![claim("pvc-a", WAIT, json!({}))],
            vec![volume("pv-b", WAIT, pre_bound_on_b)],
            Ok(vec![unresolvable(&[bind]), OK]),
        ),
        (
            "claim naming its volume is the controller's to bind",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", WAIT, json!({"spec": {"volumeName": "pv-a"}}))],
            vec![volume("pv-a", WAIT, json!({}))],
            Err(unresolvable(&[VolumeBinding::UNBOUND_IMMEDIATE])),
        ),
        (
            "invalid request",
            vec!["pvc-a"],
            nodes(&["a"]),
            vec![claim("pvc-a", WAIT, json!({"spec": {"resources": {"requests": {"storage": "lots"}}}}))],
            vec![],
            Err(unresolvable(&["claim default/pvc-a: spec.resources.requests.storage is invalid"])),
        ),
    ];
    for (name, pod_claims, nodes, claims, volumes, want) in cases {
        let snapshot = snapshot(nodes, claims, volumes);
        let (_, got) = verdicts(&VolumeBinding::new(), &pod("p", &pod_claims), &snapshot);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn an_ephemeral_volume_needs_its_claim_owned_by_the_pod() {
    let mut p = pod("p", &[]);
    let eph = json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}});
    p.spec.as_mut().expect("spec").volumes = Some(vec![serde_json::from_value(eph).expect("volume")]);
    let none = snapshot(nodes(&["a"]), vec![], vec![]);
    let (_, got) = verdicts(&VolumeBinding::new(), &p, &none);
    let waiting =
        r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch""#;
    assert_eq!(got, Err(unresolvable(&[waiting])));

    let foreign = snapshot(nodes(&["a"]), vec![claim("p-scratch", WAIT, json!({}))], vec![]);
    let (_, got) = verdicts(&VolumeBinding::new(), &p, &foreign);
    assert_eq!(
        got,
        Err(unresolvable(&["PVC default/p-scratch was not created for pod default/p (pod is not owner)"]))
    );

    let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p",
        "uid": "p-uid", "controller": true}]}});
    let owned = snapshot(nodes(&["a"]), vec![claim("p-scratch", WAIT, owner)], vec![]);
    assert_eq!(verdicts(&VolumeBinding::new(), &p, &owned).1, Ok(vec![OK]));
}

/// Pre-filter, filter and reserve `pod` on `node`: the state and reserve's verdict.
fn reserve_on(plugin: &VolumeBinding, pod: &Pod, snapshot: &Snapshot, node: &str) -> (CycleState, Status) {
    let (mut state, filtered) = verdicts(plugin, pod, snapshot);
    let at = snapshot.nodes().iter().position(|n| n.name() == node).expect("node");
    assert_eq!(filtered.map(|f| f[at].clone()), Ok(OK), "{node} fits");
    let status = plugin.reserve(&mut state, pod, node);
    (state, status)
}

fn reserved(state: &CycleState) -> PodVolumes {
    state.get::<PodClaims>().and_then(|c| c.reserved.clone()).map(|(_, v)| v).unwrap_or_default()
}

#[test]
fn two_pods_do_not_both_get_one_volume() {
    let plugin = VolumeBinding::new();
    let claims =
        vec![claim("c1", WAIT_NO_PROVISIONER, json!({})), claim("c2", WAIT_NO_PROVISIONER, json!({}))];
    let s = snapshot(nodes(&["a"]), claims, vec![volume("only", WAIT_NO_PROVISIONER, on("a"))]);
    let (p1, p2) = (pod("p1", &["c1"]), pod("p2", &["c2"]));

    let (mut state1, status) = reserve_on(&plugin, &p1, &s, "a");
    assert_eq!(status, OK);
    let chosen = reserved(&state1);
    assert_eq!(chosen.bindings.len(), 1);
    let (claim, volume) = &chosen.bindings[0];
    assert_eq!((claim_key_of(claim), volume_name(volume)), ("default/c1".to_string(), "only"));
    assert_eq!(claim_ref(volume).and_then(|r| r.uid.as_deref()), Some("c1-uid"), "assumed pre-bound");
    assert_eq!(plugin.assumed.lock().len(), (1, 0));

    // The second pod finds the volume taken.
    assert_eq!(verdicts(&plugin, &p2, &s).1, Ok(vec![unresolvable(&[VolumeBinding::BIND_CONFLICT])]));

    // Unreserving another pod's reservation, or on another node, changes nothing.
    let mut other = CycleState::new();
    plugin.unreserve(&mut other, &p2, "a");
    plugin.unreserve(&mut state1, &p1, "b");
    assert_eq!(plugin.assumed.lock().len(), (1, 0));
    plugin.unreserve(&mut state1, &p1, "a");
    assert_eq!(plugin.assumed.lock().len(), (0, 0));
    let (_, status) = reserve_on(&plugin, &p2, &s, "a");
    assert_eq!(status, OK, "free again");
}

fn claim_key_of(c: &PersistentVolumeClaim) -> String {
    crate::controllers::volume::facts::claim_key(c)
}

#[test]
fn each_claim_of_a_pod_gets_its_own_volume_smallest_claim_first() {
    let claims = vec![
        claim("big", WAIT_NO_PROVISIONER, json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}})),
        claim("small", WAIT_NO_PROVISIONER, json!({})),
    ];
    let five = json!({"spec": {"capacity": {"storage": "5Gi"}}});
    let mut five_on_a = on("a");
    merge(&mut five_on_a, five.clone());
    let volumes = vec![
        volume("a-1", WAIT_NO_PROVISIONER, on("a")),
        volume("a-5", WAIT_NO_PROVISIONER, five_on_a),
        volume("b-5", WAIT_NO_PROVISIONER, {
            let mut v = on("b");
            merge(&mut v, five);
            v
        }),
    ];
    let s = snapshot(nodes(&["a", "b"]), claims, volumes);
    let p = pod("p", &["big", "small"]);
    let plugin = VolumeBinding::new();
    // b has one volume for two claims.
    let (_, filtered) = verdicts(&plugin, &p, &s);
    assert_eq!(filtered, Ok(vec![OK, unresolvable(&[VolumeBinding::BIND_CONFLICT])]));
    let (state, status) = reserve_on(&plugin, &p, &s, "a");
    assert_eq!(status, OK);
    let pairs: Vec<(String, String)> = reserved(&state)
        .bindings
        .iter()
        .map(|(c, v)| (claim_key_of(c), volume_name(v).to_string()))
        .collect();
    assert_eq!(
        pairs,
        [("default/small".to_string(), "a-1".to_string()), ("default/big".into(), "a-5".into())]
    );
}

#[test]
fn a_claim_reserved_for_provisioning_takes_later_pods_to_its_node() {
    let plugin = VolumeBinding::new();
    let s = snapshot(nodes(&["a", "b"]), vec![claim("shared", WAIT, json!({}))], vec![]);
    let (first, second) = (pod("p1", &["shared"]), pod("p2", &["shared"]));
    let (state, status) = reserve_on(&plugin, &first, &s, "b");
    assert_eq!(status, OK);
    let provisions = reserved(&state).provisions;
    assert_eq!(provisions.len(), 1);
    assert_eq!(annotation(&provisions[0].metadata, ANN_SELECTED_NODE), Some("b"));
    assert_eq!(verdicts(&plugin, &second, &s).1, Ok(vec![unresolvable(&[VolumeBinding::BIND_CONFLICT]), OK]));

    // The catalog showing a newer claim (the annotation written, or any change) ends the
    // assumption: the catalog is the truth from then on.
    let mut written = claim("shared", WAIT, json!({"metadata": {"resourceVersion": "2"}}));
    crate::controllers::volume::facts::set_annotation(&mut written.metadata, ANN_SELECTED_NODE, "b");
    let newer = snapshot(nodes(&["a", "b"]), vec![written], vec![]);
    assert_eq!(
        verdicts(&plugin, &second, &newer).1,
        Ok(vec![unresolvable(&[VolumeBinding::BIND_CONFLICT]), OK])
    );
    assert_eq!(plugin.assumed.lock().len(), (0, 0), "pruned");
}

#[test]
fn pods_whose_claims_are_bound_reserve_nothing() {
    let plugin = VolumeBinding::new();
    let s = snapshot(nodes(&["a"]), vec![bound_claim("c", WAIT, "v")], vec![volume("v", WAIT, json!({}))]);
    let p = pod("p", &["c"]);
    let (state, status) = reserve_on(&plugin, &p, &s, "a");
    assert_eq!(status, OK);
    assert!(reserved(&state).is_empty());
    assert_eq!(plugin.assumed.lock().len(), (0, 0));
    let mut none = CycleState::new();
    assert_eq!(plugin.reserve(&mut none, &pod("q", &[]), "a"), OK, "a pod without claims");
}
