//! Images that are missing or cannot even be named.

use std::time::Duration;

use flotilla_core::client::ListOptions;
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::Event;

use crate::fake::FakeRuntime;
use crate::support::{Agent, NODE, create_bound, phase, pod, waiting_reason, within};

async fn events_with(kit: &TestKit, reason: &str) -> Vec<Event> {
    let list = kit.api::<Event>(Some("default")).list(&ListOptions::default()).await.expect("events");
    list.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_err_image_pull_then_image_pull_back_off() {
    within("missing image", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("absent", "Always", &[("app", "missing:1")]), NODE).await;
        create_bound(&kit, &pod("fine", "Always", &[("app", "app")]), NODE).await;
        kit.eventually("ErrImagePull first", || async {
            (waiting_reason(&kit, "absent", "app").await? == "ErrImagePull").then_some(())
        })
        .await;
        kit.eventually("then ImagePullBackOff", || async {
            (waiting_reason(&kit, "absent", "app").await? == "ImagePullBackOff").then_some(())
        })
        .await;
        kit.eventually("ErrImagePull again when the backoff ends", || async {
            (waiting_reason(&kit, "absent", "app").await? == "ErrImagePull").then_some(())
        })
        .await;
        assert_eq!(phase(&kit, "absent").await.as_deref(), Some("Pending"));
        // The other pod is not held up, and nothing was created for the missing image.
        kit.eventually("the other pod runs", || async {
            (phase(&kit, "fine").await? == "Running").then_some(())
        })
        .await;
        assert_eq!(runtime.creates(), 1);
        let failed = kit
            .eventually("a Failed event names the image", || async {
                let e = events_with(&kit, "Failed").await;
                e.into_iter().find(|e| e.message.as_deref().is_some_and(|m| m.contains("missing:1")))
            })
            .await;
        assert!(failed.message.unwrap_or_default().starts_with("Failed to pull image"));
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_invalid_image_name_is_reported_once_and_not_retried() {
    within("invalid image", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("bad", "Always", &[("app", "Not An Image")]), NODE).await;
        kit.eventually("InvalidImageName", || async {
            (waiting_reason(&kit, "bad", "app").await? == "InvalidImageName").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(waiting_reason(&kit, "bad", "app").await.as_deref(), Some("InvalidImageName"));
        let inspect = events_with(&kit, "InspectFailed").await;
        assert_eq!(inspect.len(), 1);
        assert_eq!(inspect[0].count, Some(1), "the name was inspected again");
        assert_eq!(runtime.creates(), 0);
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
