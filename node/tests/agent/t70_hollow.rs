//! The agent on the hollow runtime (in-memory, containers run at once).

use std::sync::Arc;

use flotilla_core::client::DeleteOptions;
use flotilla_core::controller::testing::TestKit;
use flotilla_node::runtime::hollow::HollowRuntime;
use k8s_openapi::api::core::v1::Pod;

use crate::support::{Agent, NODE, create_bound, get, phase, pod, waiting_reason, within};

#[tokio::test(start_paused = true)]
async fn pods_run_fail_to_pull_and_are_deleted_on_the_hollow_runtime() {
    within("hollow runtime", async {
        let kit = TestKit::new().await;
        let runtime = Arc::new(HollowRuntime::new(NODE));
        runtime.fail_image("absent:1");
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("web", "Always", &[("app", "app:1")]), NODE).await;
        create_bound(&kit, &pod("broken", "Always", &[("app", "absent:1")]), NODE).await;
        let running = kit
            .eventually("the pod runs and is ready", || async {
                let p = get(&kit, "web").await?;
                let s = p.status.clone()?;
                let ready = s.container_statuses.as_ref()?.iter().all(|c| c.ready);
                (s.phase.as_deref() == Some("Running") && ready).then_some(s)
            })
            .await;
        assert!(running.pod_ip.is_some());
        kit.eventually("the missing image is reported", || async {
            let r = waiting_reason(&kit, "broken", "app").await?;
            (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(())
        })
        .await;
        let api = kit.api::<Pod>(Some("default"));
        api.delete("web", &DeleteOptions::default()).await.expect("the delete is accepted");
        kit.eventually("the pod is gone", || async { get(&kit, "web").await.is_none().then_some(()) }).await;
        assert_eq!(phase(&kit, "broken").await.as_deref(), Some("Pending"));
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
