//! Restart policies and crash-loop backoff.

use std::time::Duration;

use flotilla_core::client::ListOptions;
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::Event;

use crate::fake::FakeRuntime;
use crate::support::{Agent, NODE, container_status, create_bound, phase, pod, waiting_reason, within};

#[tokio::test(start_paused = true)]
async fn a_crashing_container_backs_off_10_20_40_seconds() {
    within("crash loop", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        let uid = create_bound(&kit, &pod("crashy", "Always", &[("app", "crash")]), NODE).await;
        let message = kit
            .eventually("the container waits in CrashLoopBackOff for 20 s", || async {
                let s = container_status(&kit, "crashy", "app").await?;
                let w = s.state?.waiting?;
                (w.reason.as_deref() == Some("CrashLoopBackOff") && s.restart_count == 2)
                    .then_some(w.message?)
            })
            .await;
        assert_eq!(
            message,
            format!("back-off 20s restarting failed container=app pod=crashy_default({uid})")
        );
        let s = container_status(&kit, "crashy", "app").await.expect("a status");
        let last = s.last_state.and_then(|l| l.terminated).expect("the last termination");
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(phase(&kit, "crashy").await.as_deref(), Some("Running"));
        kit.eventually("five starts", || async { (runtime.creates() >= 5).then_some(()) }).await;
        let created = runtime.created();
        let counts: Vec<u32> = created.iter().map(|(_, rc, _)| *rc).collect();
        assert_eq!(counts[..5], [0, 1, 2, 3, 4]);
        // Each instance runs 1 s; the first restart is immediate (seen at the next relist),
        // then the backoff doubles.
        let gaps: Vec<i64> =
            created.windows(2).take(4).map(|w| w[1].2.duration_since(w[0].2).as_secs()).collect();
        assert!(gaps[0] <= 2, "first restart after {}s", gaps[0]);
        assert_eq!(gaps[1..], [11, 21, 41], "gaps between starts: {gaps:?}");
        let events = kit.api::<Event>(Some("default")).list(&ListOptions::default()).await.expect("events");
        assert!(
            events.items.iter().any(|e| e.reason.as_deref() == Some("Started") && e.count.unwrap_or(0) >= 4)
        );
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn restart_policies_on_failure_and_never() {
    within("restart policies", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("done-onfailure", "OnFailure", &[("app", "complete")]), NODE).await;
        create_bound(&kit, &pod("fail-never", "Never", &[("app", "crash")]), NODE).await;
        create_bound(&kit, &pod("fail-onfailure", "OnFailure", &[("app", "crash")]), NODE).await;
        kit.eventually("OnFailure + exit 0 succeeds", || async {
            (phase(&kit, "done-onfailure").await? == "Succeeded").then_some(())
        })
        .await;
        kit.eventually("Never + exit 1 fails", || async {
            (phase(&kit, "fail-never").await? == "Failed").then_some(())
        })
        .await;
        kit.eventually("OnFailure + exit 1 restarts", || async {
            (container_status(&kit, "fail-onfailure", "app").await?.restart_count >= 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let per_pod = |pod: &str| runtime.snapshot().iter().filter(|c| c.pod.name == pod).count();
        // Completed pods keep their exited container and are not restarted.
        assert_eq!(per_pod("done-onfailure"), 1);
        assert_eq!(per_pod("fail-never"), 1);
        let never = container_status(&kit, "fail-never", "app").await.expect("a status");
        assert_eq!(never.restart_count, 0);
        assert_eq!(never.state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(1));
        assert_eq!(phase(&kit, "done-onfailure").await.as_deref(), Some("Succeeded"));
        // 1 + 1 + at least 3 for the pod that keeps failing.
        assert!(runtime.creates() >= 5, "{:?}", runtime.created());
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_command_that_cannot_run_ends_in_a_clear_reason() {
    within("missing command", async {
        let kit = TestKit::new().await;
        let agent = Agent::start(&kit, FakeRuntime::new(kit.clock()));
        create_bound(&kit, &pod("nocmd", "Always", &[("app", "nocmd")]), NODE).await;
        kit.eventually("RunContainerError is reported", || async {
            (waiting_reason(&kit, "nocmd", "app").await? == "RunContainerError").then_some(())
        })
        .await;
        kit.eventually("then it backs off", || async {
            (waiting_reason(&kit, "nocmd", "app").await? == "CrashLoopBackOff").then_some(())
        })
        .await;
        let events = kit.api::<Event>(Some("default")).list(&ListOptions::default()).await.expect("events");
        let failed = events
            .items
            .iter()
            .find(|e| e.reason.as_deref() == Some("Failed"))
            .and_then(|e| e.message.clone())
            .expect("a Failed event");
        assert!(failed.contains("executable file not found"), "{failed}");
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
