//! The node lifecycle controller on the runtime under a paused clock: a node whose Lease stops
//! being renewed becomes `Unknown` and unreachable after the grace period, its pods are marked
//! not ready and evicted when their toleration runs out, and the node's return removes the
//! taint.

use std::future::Future;
use std::time::Duration;

use flotilla_core::controller::conditions;
use flotilla_core::controller::events::Recorder;
use flotilla_core::controller::testing::TestKit;
use flotilla_core::controllers::nodelifecycle::{
    CONTROLLER_NAME, LEASE_NAMESPACE, NodeLifecycleConfig, TAINT_UNREACHABLE, node_lifecycle_controller,
};
use flotilla_core::patch::PatchType;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TEST: Duration = Duration::from_secs(1200);
/// How often the test's stand-in kubelets renew their Leases (the kubelet's default).
const RENEW_EVERY: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("in range")
}

/// What a kubelet does to say it is alive: renews its Lease and posts its conditions
/// (`Ready=True`, no pressure).
async fn heartbeat(kit: &TestKit, node: &str) {
    let now = kit.now();
    let leases = kit.api::<Lease>(Some(LEASE_NAMESPACE));
    let renew = json!({"spec": {"renewTime": MicroTime(now)}});
    if leases.get_opt(node).await.expect("read lease").is_some() {
        leases.patch(node, PatchType::Merge, &renew).await.expect("renew lease");
    } else {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": MicroTime(now)},
        }))
        .expect("lease");
        leases.create(&lease).await.expect("create lease");
    }
    let nodes = kit.api::<Node>(None);
    let mut n = nodes.get(node).await.expect("read node");
    let stamp = Time(whole_seconds(now));
    let status = n.status.get_or_insert_with(Default::default);
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let posted = [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ];
    for (type_, status, reason) in posted {
        let c = NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: None,
            last_heartbeat_time: Some(stamp.clone()),
            last_transition_time: None,
        };
        conditions::set(conds, c, &stamp);
    }
    nodes.replace_status(node, &n).await.expect("post node status");
}

/// Renews the node's Lease every [`RENEW_EVERY`] until `stop` (without posting status, as a
/// kubelet whose status has not changed).
fn renew_lease_until(kit: &TestKit, node: &str, stop: CancellationToken) {
    let leases = kit.api::<Lease>(Some(LEASE_NAMESPACE));
    let (clock, node) = (kit.clock(), node.to_string());
    kit.spawn_task(move |shutdown| async move {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            let renew = json!({"spec": {"renewTime": MicroTime(clock())}});
            leases.patch(&node, PatchType::Merge, &renew).await.expect("renew lease");
        }
    });
}

async fn create_node(kit: &TestKit, name: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
    kit.api::<Node>(None).create(&node).await.expect("create node");
    heartbeat(kit, name).await;
}

/// A running, ready pod bound to `node`, with `tolerations`.
async fn running_pod(kit: &TestKit, name: &str, node: &str, tolerations: Value) {
    let pods = kit.api::<Pod>(Some("default"));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": tolerations},
    }))
    .expect("pod");
    pods.create(&pod).await.expect("create pod");
    let now = Time(whole_seconds(kit.now()));
    let ready = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status =
        json!({"status": {"phase": "Running", "conditions": [ready("Ready"), ready("ContainersReady")]}});
    pods.patch_status(name, PatchType::StrategicMerge, &status).await.expect("pod running");
}

fn pod_ready(p: &Pod) -> Option<&str> {
    let conditions = p.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

fn unreachable_taint(n: &Node) -> Option<Timestamp> {
    let taints = n.spec.as_ref()?.taints.as_ref()?;
    let t = taints.iter().find(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoExecute")?;
    Some(t.time_added.as_ref().expect("the controller stamps timeAdded").0)
}

fn secs_between(a: Timestamp, b: Timestamp) -> i64 {
    b.as_second() - a.as_second()
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_is_tainted_its_pods_evicted_and_its_return_untaints_it() {
    within("node lifecycle", async {
        let kit = TestKit::new().await;
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": LEASE_NAMESPACE}})).expect("namespace");
        kit.api::<Namespace>(None).create(&ns).await.expect("lease namespace");
        let (recorder, events_task) = Recorder::new(kit.client(), CONTROLLER_NAME, kit.clock());
        kit.spawn_task(|stop| events_task.run(stop));
        let config = NodeLifecycleConfig::default();
        kit.spawn(node_lifecycle_controller(kit.informers(), kit.clock(), config, recorder));

        create_node(&kit, "n1").await;
        create_node(&kit, "n2").await;
        let n1_kubelet = CancellationToken::new();
        renew_lease_until(&kit, "n1", n1_kubelet.clone());
        renew_lease_until(&kit, "n2", CancellationToken::new());
        let unreachable_for = |s: i64| {
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}])
        };
        running_pod(&kit, "brief", "n1", unreachable_for(20)).await;
        running_pod(&kit, "patient", "n1", json!([])).await;
        running_pod(&kit, "elsewhere", "n2", json!([])).await;

        // Heartbeating nodes are left alone, however long: leases alone keep them healthy.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let nodes = kit.api::<Node>(None);
        for name in ["n1", "n2"] {
            let n = nodes.get(name).await.expect("node");
            assert!(unreachable_taint(&n).is_none(), "{name} tainted while heartbeating");
            let ready = n.status.and_then(|s| s.conditions).unwrap_or_default();
            assert!(conditions::is_true(&ready, "Ready"), "{name} not ready while heartbeating");
        }

        // n1's kubelet dies: its last renewal is its last heartbeat.
        n1_kubelet.cancel();
        let leases = kit.api::<Lease>(Some(LEASE_NAMESPACE));
        let last = leases.get("n1").await.expect("lease").spec.and_then(|s| s.renew_time).expect("renewed").0;
        let node = kit
            .eventually("n1 unknown and unreachable", || async {
                let n = nodes.get("n1").await.ok()?;
                unreachable_taint(&n)?;
                Some(n)
            })
            .await;
        let status = node.status.clone().expect("status");
        let conds = status.conditions.expect("conditions");
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            let c = conditions::find(&conds, type_).unwrap_or_else(|| panic!("{type_} condition"));
            assert_eq!(c.status, "Unknown", "{type_}");
            assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"), "{type_}");
            assert_eq!(c.message.as_deref(), Some("Kubelet stopped posting node status."));
        }
        let tainted_at = unreachable_taint(&node).expect("taint");
        let silent_for = secs_between(whole_seconds(last), tainted_at);
        assert!((40..=41).contains(&silent_for), "tainted {silent_for} s after the last heartbeat, not 40");

        // Its pods are marked not ready at once; n2's is untouched.
        let pods = kit.api::<Pod>(Some("default"));
        kit.eventually("n1's pods not ready", || async {
            let brief = pods.get("brief").await.ok()?;
            let patient = pods.get("patient").await.ok()?;
            (pod_ready(&brief) == Some("False") && pod_ready(&patient) == Some("False")).then_some(())
        })
        .await;
        assert_eq!(pod_ready(&pods.get("elsewhere").await.expect("pod")), Some("True"));

        // The pod tolerating unreachable for 20 s is evicted 20 s after the taint.
        let brief = kit
            .eventually("brief evicted", || async {
                let p = pods.get("brief").await.ok()?;
                p.metadata.deletion_timestamp.is_some().then_some(p)
            })
            .await;
        let evicted_after = secs_between(tainted_at, kit.now());
        assert!((20..=21).contains(&evicted_after), "evicted {evicted_after} s after the taint, not 20");
        let conds = brief.status.and_then(|s| s.conditions).unwrap_or_default();
        let disruption = conditions::find(&conds, "DisruptionTarget").expect("DisruptionTarget condition");
        assert_eq!(disruption.reason.as_deref(), Some("DeletionByTaintManager"));
        let events = kit.api::<Event>(Some("default"));
        kit.eventually("eviction event", || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("TaintManagerEviction")
                        && e.involved_object.name.as_deref() == Some("brief")
                })
                .map(|e| assert_eq!(e.message.as_deref(), Some("Marking for deletion Pod default/brief")))
        })
        .await;
        // The pod with the default 300 s is still there a minute later.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let patient = pods.get("patient").await.expect("patient");
        assert!(patient.metadata.deletion_timestamp.is_none(), "evicted before its default 300 s");

        // The kubelet comes back: renews its lease and posts Ready=True; the taint goes.
        heartbeat(&kit, "n1").await;
        renew_lease_until(&kit, "n1", CancellationToken::new());
        kit.eventually("n1 untainted", || async {
            let n = nodes.get("n1").await.ok()?;
            unreachable_taint(&n).is_none().then_some(())
        })
        .await;
        // And stays so: nothing left to evict it for.
        tokio::time::sleep(Duration::from_secs(600)).await;
        let n = nodes.get("n1").await.expect("n1");
        assert!(n.spec.and_then(|s| s.taints).unwrap_or_default().is_empty());
        let patient = pods.get("patient").await.expect("patient");
        assert!(patient.metadata.deletion_timestamp.is_none(), "the node recovered in time");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_tolerates_nothing_leaves_an_unreachable_node_after_300_seconds() {
    within("default toleration", async {
        let kit = TestKit::new().await;
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": LEASE_NAMESPACE}})).expect("namespace");
        kit.api::<Namespace>(None).create(&ns).await.expect("lease namespace");
        let (recorder, events_task) = Recorder::new(kit.client(), CONTROLLER_NAME, kit.clock());
        kit.spawn_task(|stop| events_task.run(stop));
        let config =
            NodeLifecycleConfig { node_monitor_grace_period: Duration::from_secs(20), ..Default::default() };
        kit.spawn(node_lifecycle_controller(kit.informers(), kit.clock(), config, recorder));
        // Heartbeats once, then never again.
        create_node(&kit, "n1").await;
        running_pod(&kit, "plain", "n1", json!([])).await;
        let nodes = kit.api::<Node>(None);
        let tainted_at = kit
            .eventually("n1 unreachable", || async { unreachable_taint(&nodes.get("n1").await.ok()?) })
            .await;
        let pods = kit.api::<Pod>(Some("default"));
        tokio::time::sleep(Duration::from_secs(290)).await;
        let plain = pods.get("plain").await.expect("plain");
        assert!(plain.metadata.deletion_timestamp.is_none(), "evicted before 300 s");
        assert_eq!(pod_ready(&plain), Some("False"));
        kit.eventually("plain evicted", || async {
            let p = pods.get("plain").await.ok()?;
            p.metadata.deletion_timestamp.is_some().then_some(())
        })
        .await;
        let after = secs_between(tainted_at, kit.now());
        assert!((300..=301).contains(&after), "evicted {after} s after the taint, not 300");
        kit.shutdown().await;
    })
    .await;
}
