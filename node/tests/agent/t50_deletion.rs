//! Graceful deletion: containers stop with the grace period, then the pod goes.

use std::time::Duration;

use flotilla_core::client::DeleteOptions;
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::Pod;

use crate::fake::{Call, FakeRuntime};
use crate::support::{Agent, NODE, create_bound, get, phase, pod, within};

#[tokio::test(start_paused = true)]
async fn deleting_stops_containers_with_the_grace_period_then_removes_the_pod() {
    within("graceful deletion", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        let mut p = pod("slow", "Always", &[("app", "stubborn"), ("quick", "app")]);
        if let Some(spec) = p.spec.as_mut() {
            spec.termination_grace_period_seconds = Some(20);
        }
        create_bound(&kit, &p, NODE).await;
        kit.eventually("the pod runs", || async { (phase(&kit, "slow").await? == "Running").then_some(()) })
            .await;
        let api = kit.api::<Pod>(Some("default"));
        let opts = DeleteOptions { grace_period_seconds: Some(5), ..Default::default() };
        let marked = api.delete("slow", &opts).await.expect("the delete is accepted");
        assert!(marked.is_some(), "a bound pod waits for its node agent");
        let started = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = get(&kit, "slow").await.expect("the pod is still there during its grace period");
        assert!(during.metadata.deletion_timestamp.is_some());
        kit.eventually("the pod is gone", || async { get(&kit, "slow").await.is_none().then_some(()) }).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(8), "deletion took {took:?}");
        let calls = runtime.calls();
        let grace = Duration::from_secs(5);
        assert!(calls.contains(&Call::Stop("app".into(), grace)), "{calls:?}");
        assert!(calls.contains(&Call::Stop("quick".into(), grace)), "{calls:?}");
        assert!(runtime.snapshot().is_empty());
        assert_eq!(runtime.sandbox_count(), 0);
        // Removal came after the stops.
        let stop_at = calls.iter().position(|c| matches!(c, Call::Stop(..))).expect("a stop");
        let remove_at = calls.iter().position(|c| matches!(c, Call::Remove(..))).expect("a remove");
        assert!(stop_at < remove_at);
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_finished_pod_is_deleted_at_once_and_its_containers_removed() {
    within("deleting a completed pod", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("job", "Never", &[("app", "complete")]), NODE).await;
        kit.eventually("the pod succeeds", || async {
            (phase(&kit, "job").await? == "Succeeded").then_some(())
        })
        .await;
        assert_eq!(runtime.snapshot().len(), 1, "a completed pod keeps its container");
        let api = kit.api::<Pod>(Some("default"));
        assert!(api.delete("job", &DeleteOptions::default()).await.expect("deleted").is_none());
        kit.eventually("its container and sandbox are removed", || async {
            (runtime.snapshot().is_empty() && runtime.sandbox_count() == 0).then_some(())
        })
        .await;
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
