//! The pod garbage collector on shared informers under a paused clock: a pod bound to a
//! deleted node is set `Failed` and removed once the node's quarantine is over, and finished
//! pods beyond the threshold are removed oldest first.

use std::future::Future;
use std::time::Duration;

use flotilla_core::client::DeleteOptions;
use flotilla_core::controller::conditions;
use flotilla_core::controller::testing::TestKit;
use flotilla_core::controllers::podgc::{PodGcConfig, pod_gc};
use flotilla_core::patch::PatchType;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

const TEST: Duration = Duration::from_secs(1200);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

async fn create_node(kit: &TestKit, name: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
    kit.api::<Node>(None).create(&node).await.expect("create node");
}

/// A pod bound to `node` in `phase`, holding `finalizers`.
async fn pod_in_phase(kit: &TestKit, name: &str, node: &str, phase: &str, finalizers: &[&str]) {
    let pods = kit.api::<Pod>(Some("default"));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "finalizers": finalizers},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&pod).await.expect("create pod");
    pods.patch_status(name, PatchType::Merge, &json!({"status": {"phase": phase}})).await.expect("phase");
}

/// Starts the collector with `config` on the kit's informers.
fn start(kit: &TestKit, config: PodGcConfig) {
    let gc = pod_gc(kit.informers(), kit.clock(), config);
    kit.informers().start(kit.shutdown_token());
    let is_leader = kit.is_leader();
    kit.spawn_task(move |stop| gc.run(is_leader, stop));
}

#[tokio::test(start_paused = true)]
async fn a_pod_on_a_deleted_node_is_removed_after_the_quarantine() {
    within("orphans", async {
        let kit = TestKit::new().await;
        create_node(&kit, "n1").await;
        create_node(&kit, "n2").await;
        // The finalizer keeps the orphan visible after its deletion, to see how it went.
        pod_in_phase(&kit, "orphan", "n2", "Running", &["test.flotilla.dev/keep"]).await;
        pod_in_phase(&kit, "safe", "n1", "Running", &[]).await;
        start(&kit, PodGcConfig::default());
        tokio::time::sleep(Duration::from_secs(60)).await;

        let deleted_at = kit.now();
        kit.api::<Node>(None).delete("n2", &DeleteOptions::default()).await.expect("delete n2");
        let pods = kit.api::<Pod>(Some("default"));
        let orphan = kit
            .eventually("orphan collected", || async {
                let p = pods.get("orphan").await.ok()?;
                p.metadata.deletion_timestamp.is_some().then_some(p)
            })
            .await;
        let waited = kit.now().duration_since(deleted_at).as_secs();
        // Seen missing at the first pass after the deletion (within 20 s), collected at the first
        // pass 40 s after that.
        assert!((40..=61).contains(&waited), "collected {waited} s after the node went, not 40 to 60");
        let status = orphan.status.expect("status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let conds = status.conditions.unwrap_or_default();
        let c = conditions::find(&conds, "DisruptionTarget").expect("DisruptionTarget");
        assert_eq!(c.reason.as_deref(), Some("DeletionByPodGC"));
        assert_eq!(orphan.metadata.deletion_grace_period_seconds, Some(0), "force deletion");
        // Once its finalizer is gone, so is the pod.
        pods.patch("orphan", PatchType::Merge, &json!({"metadata": {"finalizers": null}}))
            .await
            .expect("drop finalizer");
        assert!(pods.get_opt("orphan").await.expect("read").is_none());

        // The pod on a node that exists is never touched.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let safe = pods.get("safe").await.expect("safe");
        assert!(safe.metadata.deletion_timestamp.is_none());
        assert_eq!(safe.status.and_then(|s| s.phase).as_deref(), Some("Running"));
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn finished_pods_over_the_threshold_are_trimmed_oldest_first() {
    within("terminated", async {
        let kit = TestKit::new().await;
        create_node(&kit, "n1").await;
        for (i, phase) in ["Succeeded", "Failed", "Succeeded", "Failed", "Succeeded"].iter().enumerate() {
            pod_in_phase(&kit, &format!("done-{i}"), "n1", phase, &[]).await;
            // One creation second apart, so age decides.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        pod_in_phase(&kit, "running", "n1", "Running", &[]).await;
        kit.set_leader(false);
        start(&kit, PodGcConfig { terminated_pod_threshold: 3, ..PodGcConfig::default() });
        // Not leading: nothing happens.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let pods = kit.api::<Pod>(Some("default"));
        assert_eq!(pods.list(&Default::default()).await.expect("list").items.len(), 6);

        kit.set_leader(true);
        let left = kit
            .eventually("two oldest finished pods gone", || async {
                let mut names: Vec<String> = pods
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .collect();
                names.sort();
                (names.len() == 4).then_some(names)
            })
            .await;
        assert_eq!(left, ["done-2", "done-3", "done-4", "running"]);
        // And no more afterwards: three finished pods is the threshold.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(pods.list(&Default::default()).await.expect("list").items.len(), 4);
        kit.shutdown().await;
    })
    .await;
}
