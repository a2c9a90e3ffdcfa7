//! Pre-bind through the client, over the in-memory store under a paused clock: the writes,
//! waiting for the claims to be bound, and the ways it gives up.

use std::time::Duration;

use crate::controller::testing::TestKit;
use crate::controllers::volume::ANN_BOUND_BY_CONTROLLER;
use crate::controllers::volume::facts::{claim_ref, set_annotation};
use crate::patch::PatchType;

use super::*;

const LIMIT: Duration = Duration::from_secs(300);

/// `obj` as a client creates it: no uid, no resourceVersion.
fn fresh<K: serde::Serialize + serde::de::DeserializeOwned>(obj: &K) -> K {
    let mut v = serde_json::to_value(obj).expect("serializes");
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("uid");
        m.remove("resourceVersion");
    }
    serde_json::from_value(v).expect("deserializes")
}

/// Stores the pod, claims and volumes; the snapshot of nodes `a` and `b` sees them as stored.
async fn stored(
    kit: &TestKit,
    pod: &Pod,
    claims: &[PersistentVolumeClaim],
    volumes: &[PersistentVolume],
) -> (Pod, Snapshot) {
    let mut p = fresh(pod);
    p.spec.as_mut().expect("spec").containers[0].image = Some("busybox".into());
    let p = kit.api::<Pod>(Some("default")).create(&p).await.expect("pod");
    let claim_api = kit.api::<PersistentVolumeClaim>(Some("default"));
    let mut stored_claims = Vec::new();
    for c in claims {
        stored_claims.push(claim_api.create(&fresh(c)).await.expect("claim"));
    }
    let mut stored_volumes = Vec::new();
    let volume_api = kit.api::<PersistentVolume>(None);
    for v in volumes {
        let created = volume_api.create(&fresh(v)).await.expect("volume");
        // Status is not written on create: make it Available, as the volume controller does.
        let name = created.metadata.name.clone().unwrap_or_default();
        let available = json!({"status": {"phase": "Available"}});
        stored_volumes
            .push(volume_api.patch_status(&name, PatchType::Merge, &available).await.expect("status"));
    }
    (p, snapshot(nodes(&["a", "b"]), stored_claims, stored_volumes))
}

fn plugin(timeout: Duration) -> Arc<VolumeBinding> {
    Arc::new(VolumeBinding::new().with_bind_timeout(timeout).with_poll_interval(Duration::from_millis(100)))
}

/// Runs pre-bind for `pod` on `node` in a task of its own.
fn spawn_pre_bind(
    kit: &TestKit,
    plugin: &Arc<VolumeBinding>,
    state: &CycleState,
    pod: &Pod,
    node: &str,
) -> tokio::task::JoinHandle<Status> {
    let (client, plugin, state, pod, node) =
        (kit.client(), plugin.clone(), state.clone(), pod.clone(), node.to_string());
    tokio::spawn(async move { plugin.pre_bind(&client, &state, &pod, &node).await })
}

async fn finish(task: tokio::task::JoinHandle<Status>) -> Status {
    tokio::time::timeout(LIMIT, task).await.expect("pre-bind ends").expect("pre-bind does not panic")
}

/// Marks claim `name` bound to `volume`, as the volume controller does.
async fn complete(kit: &TestKit, name: &str, volume: &str) {
    let api = kit.api::<PersistentVolumeClaim>(Some("default"));
    let mut c = api.get(name).await.expect("claim");
    c.spec.as_mut().expect("spec").volume_name = Some(volume.to_string());
    set_annotation(&mut c.metadata, "pv.kubernetes.io/bind-completed", "yes");
    api.replace(name, &c).await.expect("claim bound");
}

#[tokio::test(start_paused = true)]
async fn pre_bind_writes_the_decisions_and_waits_for_the_claims_to_be_bound() {
    let kit = TestKit::new().await;
    let claims = [claim("static", WAIT_NO_PROVISIONER, json!({})), claim("new", WAIT, json!({}))];
    let (p, s) =
        stored(&kit, &pod("p", &["static", "new"]), &claims, &[volume("v", WAIT_NO_PROVISIONER, on("a"))])
            .await;
    let plugin = plugin(Duration::from_secs(60));
    let (state, status) = reserve_on(&plugin, &p, &s, "a");
    assert_eq!(status, OK);
    let task = spawn_pre_bind(&kit, &plugin, &state, &p, "a");

    let static_uid = s.volumes().claim("default", "static").and_then(|c| c.metadata.uid.clone());
    let volumes = kit.api::<PersistentVolume>(None);
    let v = kit
        .eventually("the volume pre-bound", || async {
            volumes.get("v").await.ok().filter(|v| claim_ref(v).is_some())
        })
        .await;
    let r = claim_ref(&v).expect("claimRef");
    assert_eq!((r.name.as_deref(), r.uid.clone()), (Some("static"), static_uid));
    assert_eq!(annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
    let claim_api = kit.api::<PersistentVolumeClaim>(Some("default"));
    kit.eventually("the node selected", || async {
        let c = claim_api.get("new").await.ok()?;
        (annotation(&c.metadata, ANN_SELECTED_NODE) == Some("a")).then_some(())
    })
    .await;
    assert!(!task.is_finished(), "waits for the claims to be bound");

    complete(&kit, "static", "v").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "one claim is still unbound");
    complete(&kit, "new", "pvc-new").await;
    assert_eq!(finish(task).await, OK);
    kit.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pre_bind_gives_up_after_the_timeout() {
    let kit = TestKit::new().await;
    let (p, s) = stored(&kit, &pod("p", &["c"]), &[claim("c", WAIT, json!({}))], &[]).await;
    let plugin = plugin(Duration::from_secs(5));
    let (state, _) = reserve_on(&plugin, &p, &s, "b");
    let status = finish(spawn_pre_bind(&kit, &plugin, &state, &p, "b")).await;
    assert!(
        matches!(&status, Status::Error { message } if message.contains("timed out after 5s")),
        "{status:?}"
    );
    kit.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pre_bind_fails_when_the_volume_was_taken_or_provisioning_was_given_up() {
    let kit = TestKit::new().await;
    let claims = [claim("c", WAIT_NO_PROVISIONER, json!({})), claim("d", WAIT, json!({}))];
    let (p, s) =
        stored(&kit, &pod("p", &["c"]), &claims[..1], &[volume("v", WAIT_NO_PROVISIONER, on("a"))]).await;
    let plugin = plugin(Duration::from_secs(60));
    let (state, _) = reserve_on(&plugin, &p, &s, "a");
    // Someone else pre-binds the volume after the scheduler chose it.
    let volumes = kit.api::<PersistentVolume>(None);
    let taken = json!({"spec": {"claimRef": {"namespace": "default", "name": "other", "uid": "x"}}});
    volumes.patch("v", PatchType::Merge, &taken).await.expect("taken");
    let status = finish(spawn_pre_bind(&kit, &plugin, &state, &p, "a")).await;
    assert!(
        matches!(&status, Status::Error { message } if message.contains("already bound to another claim")),
        "{status:?}"
    );

    // The provisioner takes the selected node away: it cannot make the volume there.
    let (q, s) = stored(&kit, &pod("q", &["d"]), &claims[1..], &[]).await;
    let (state, _) = reserve_on(&plugin, &q, &s, "b");
    let task = spawn_pre_bind(&kit, &plugin, &state, &q, "b");
    let claim_api = kit.api::<PersistentVolumeClaim>(Some("default"));
    kit.eventually("the node selected", || async {
        let c = claim_api.get("d").await.ok()?;
        annotation(&c.metadata, ANN_SELECTED_NODE).map(|_| ())
    })
    .await;
    let undo = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: null}}});
    claim_api.patch("d", PatchType::Merge, &undo).await.expect("annotation removed");
    let status = finish(task).await;
    assert!(
        matches!(&status, Status::Error { message } if message.contains("provisioning failed")),
        "{status:?}"
    );

    // A pod deleted while its volumes are bound ends the wait too.
    kit.api::<Pod>(Some("default")).delete("q", &Default::default()).await.expect("deleted");
    let (state, _) = reserve_on(&plugin, &q, &s, "b");
    let status = finish(spawn_pre_bind(&kit, &plugin, &state, &q, "b")).await;
    assert!(
        matches!(&status, Status::Error { message } if message.contains("pod does not exist")),
        "{status:?}"
    );
    kit.shutdown().await;
}
