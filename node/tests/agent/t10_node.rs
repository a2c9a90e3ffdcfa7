//! Registration, node status and the Lease.

use std::time::Duration;

use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::fake::FakeRuntime;
use crate::support::{Agent, NODE, within};

async fn renew_time(kit: &TestKit) -> Option<Timestamp> {
    let lease = kit.api::<Lease>(Some("kube-node-lease")).get_opt(NODE).await.ok()??;
    lease.spec?.renew_time.map(|t| t.0)
}

#[tokio::test(start_paused = true)]
async fn node_registers_with_capacity_conditions_and_a_lease() {
    within("node registration", async {
        let kit = TestKit::new().await;
        let agent = Agent::start(&kit, FakeRuntime::new(kit.clock()));
        let nodes = kit.api::<Node>(None);
        let node = kit
            .eventually("the node is registered and Ready", || async {
                let n = nodes.get_opt(NODE).await.ok()??;
                let ready = n
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(n)
            })
            .await;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some(NODE));
        assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
        let status = node.status.clone().expect("a status");
        let capacity = status.capacity.clone().expect("capacity");
        assert_eq!(capacity["pods"].0, "110");
        assert_ne!(capacity["cpu"].0, "0");
        assert!(capacity["memory"].0.ends_with("Ki"), "{:?}", capacity["memory"]);
        assert!(capacity.contains_key("ephemeral-storage"));
        assert_eq!(status.allocatable, status.capacity);
        let types: Vec<&str> = status.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"] {
            assert!(types.contains(&t), "{t} missing from {types:?}");
        }
        let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let addresses: Vec<(&str, &str)> =
            status.addresses.iter().flatten().map(|a| (a.type_.as_str(), a.address.as_str())).collect();
        assert!(addresses.contains(&("InternalIP", "192.168.0.10")), "{addresses:?}");
        let info = status.node_info.expect("node info");
        assert!(info.kubelet_version.starts_with("flotilla/"), "{}", info.kubelet_version);
        assert!(info.container_runtime_version.starts_with("fake://"));

        let lease = kit
            .eventually("the lease exists", || async {
                kit.api::<Lease>(Some("kube-node-lease")).get_opt(NODE).await.ok()?
            })
            .await;
        let spec = lease.spec.expect("a lease spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        // Renewed every 10 s: sample renewals over a minute.
        let mut renewals = Vec::new();
        let mut last = renew_time(&kit).await.expect("a renew time");
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = renew_time(&kit).await.expect("a renew time");
            if now != last {
                renewals.push(now.duration_since(last).as_secs());
                last = now;
            }
        }
        assert!(renewals.len() >= 5 && renewals.len() <= 7, "renewals: {renewals:?}");
        assert!(renewals.iter().all(|s| *s == 10), "renewal intervals: {renewals:?}");
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn labels_and_taints_others_set_are_kept() {
    within("node labels and taints", async {
        let kit = TestKit::new().await;
        let nodes = kit.api::<Node>(None);
        let existing = Node {
            metadata: ObjectMeta {
                name: Some(NODE.into()),
                labels: Some([("team".to_string(), "blue".to_string())].into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::NodeSpec {
                taints: Some(vec![Taint {
                    key: "dedicated".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        };
        nodes.create(&existing).await.expect("the node is created");
        let agent = Agent::start(&kit, FakeRuntime::new(kit.clock()));
        let node = kit
            .eventually("the agent's labels and status are added", || async {
                let n = nodes.get_opt(NODE).await.ok()??;
                let has = n.metadata.labels.as_ref()?.contains_key("kubernetes.io/hostname");
                (has && n.status.as_ref()?.conditions.is_some()).then_some(n)
            })
            .await;
        assert_eq!(
            node.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str),
            Some("blue")
        );
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, "dedicated");
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
