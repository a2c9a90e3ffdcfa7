//! A restarted agent adopts what runs instead of restarting it, and removes what belongs to
//! pods that are gone.

use std::time::Duration;

use flotilla_core::client::{DeleteOptions, ListOptions};
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::{Event, Pod};

use crate::fake::{Call, FakeRuntime};
use crate::support::{Agent, NODE, container_status, create_bound, phase, pod, within};

#[tokio::test(start_paused = true)]
async fn a_new_agent_adopts_running_containers_and_removes_orphans() {
    within("adoption", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let first = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("keep", "Always", &[("app", "app")]), NODE).await;
        create_bound(&kit, &pod("doomed", "Always", &[("app", "app")]), NODE).await;
        kit.eventually("both pods run", || async {
            (phase(&kit, "keep").await? == "Running" && phase(&kit, "doomed").await? == "Running")
                .then_some(())
        })
        .await;
        first.stop().await;
        let creates = runtime.creates();
        let before = container_status(&kit, "keep", "app").await.expect("a status");

        // While no agent runs: one pod is force-deleted, and a stray container appears.
        let api = kit.api::<Pod>(Some("default"));
        let force = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        assert!(api.delete("doomed", &force).await.expect("force delete").is_none());
        runtime.add_orphan("ghost-uid");

        let second = Agent::start(&kit, runtime.clone());
        kit.eventually("the deleted pod's and the stray containers are removed", || async {
            let left: Vec<String> = runtime.snapshot().into_iter().map(|c| c.pod.name).collect();
            (left == vec!["keep".to_string()] && runtime.sandbox_count() == 1).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(runtime.creates(), creates, "the new agent created containers");
        let after = container_status(&kit, "keep", "app").await.expect("a status");
        assert_eq!(after.container_id, before.container_id);
        assert_eq!(after.restart_count, 0);
        assert!(after.ready);
        assert_eq!(phase(&kit, "keep").await.as_deref(), Some("Running"));
        let calls = runtime.calls();
        assert!(calls.contains(&Call::Stop("ghost".into(), Duration::from_secs(2))), "{calls:?}");
        assert!(calls.contains(&Call::RemoveSandbox("ghost-uid".into())), "{calls:?}");
        // The adopted pod got no new lifecycle Events.
        let events = kit.api::<Event>(Some("default")).list(&ListOptions::default()).await.expect("events");
        let started = events
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Started"))
            .map(|e| e.count.unwrap_or(1))
            .sum::<i32>();
        assert_eq!(started, 2);
        second.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn restart_counts_continue_after_adoption() {
    within("restart counts", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let first = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("flaky", "Always", &[("app", "crash")]), NODE).await;
        kit.eventually("two restarts", || async {
            (container_status(&kit, "flaky", "app").await?.restart_count >= 2).then_some(())
        })
        .await;
        first.stop().await;
        let count = runtime.created().last().map(|(_, rc, _)| *rc).expect("created");
        let second = Agent::start(&kit, runtime.clone());
        kit.eventually("the next restart continues the count", || async {
            let rc = runtime.created().last().map(|(_, rc, _)| *rc)?;
            (rc == count + 1).then_some(())
        })
        .await;
        second.stop().await;
        kit.shutdown().await;
    })
    .await;
}
