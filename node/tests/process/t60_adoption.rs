use std::time::Duration;

use flotilla_node::runtime::process::{UNKNOWN_EXIT_CODE, UNKNOWN_EXIT_REASON};
use flotilla_node::runtime::{ContainerRuntime, ContainerState, LogOptions};

use crate::{exit_of, logs, run, runtime, sandbox, shell, state, within};

#[tokio::test]
async fn a_new_runtime_adopts_running_containers() {
    within("adopting a running container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let first = runtime(root.path());
        let script = "echo before; while [ ! -e go ]; do sleep 0.02; done; echo after; exec sleep 30";
        let id = run(&first, &shell(script)).await;
        while logs(&first, &id, LogOptions::default()).await != "before\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ContainerState::Running { started_at } = state(&first, &id).await else {
            panic!("running before the restart")
        };
        let exited = run(&first, &shell("exit 3")).await;
        assert_eq!(exit_of(&first, &exited).await.0, 3);
        let sb = first.run_sandbox(&sandbox("later")).await.expect("sandbox");
        let created = first.create_container(&sb.id, &shell("echo late start")).await.expect("create");
        let sandboxes = first.sandboxes().await.expect("sandboxes");
        drop(first);

        let second = runtime(root.path());
        assert_eq!(second.sandboxes().await.expect("sandboxes").len(), sandboxes.len());
        assert_eq!(state(&second, &id).await, ContainerState::Running { started_at });
        assert_eq!(exit_of(&second, &exited).await, (3, "Error".to_string()), "recorded exits survive");
        assert_eq!(state(&second, &created).await, ContainerState::Created);

        // Logs written after the restart are captured by the new runtime.
        std::fs::write(root.path().join("containers").join(&id).join("work").join("go"), b"").expect("go");
        while logs(&second, &id, LogOptions::default()).await != "before\nafter\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = second.exec(&id, &["echo".to_string(), "hi".to_string()], Duration::from_secs(5)).await;
        assert_eq!(out.expect("exec").output, b"hi\n");

        second.stop_container(&id, Duration::from_secs(5)).await.expect("stop");
        assert_eq!(exit_of(&second, &id).await, (UNKNOWN_EXIT_CODE, UNKNOWN_EXIT_REASON.to_string()));

        second.start_container(&created).await.expect("start what the first runtime created");
        assert_eq!(exit_of(&second, &created).await.0, 0);
        assert_eq!(logs(&second, &created, LogOptions::default()).await, "late start\n");
    })
    .await;
}

#[tokio::test]
async fn shutdown_leaves_containers_running() {
    within("shutting a runtime down", async {
        let root = tempfile::tempdir().expect("tempdir");
        let first = runtime(root.path());
        let id = run(&first, &shell("exec sleep 30")).await;
        first.shutdown().await;
        drop(first);
        let second = runtime(root.path());
        assert!(matches!(state(&second, &id).await, ContainerState::Running { .. }));
        second.remove_container(&id).await.expect("remove");
        assert!(second.containers().await.expect("containers").is_empty());
        drop(second);
        let third = runtime(root.path());
        assert!(third.containers().await.expect("containers").is_empty(), "removal is persisted");
    })
    .await;
}
