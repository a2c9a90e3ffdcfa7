use std::time::Duration;

use flotilla_node::runtime::ContainerRuntime;

use crate::{exit_of, logs, run, runtime, shell, within};

/// Waits until the script has printed `ready` (its trap is then installed).
async fn ready(rt: &dyn ContainerRuntime, id: &str) {
    while !logs(rt, id, Default::default()).await.contains("ready") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ignoring_sigterm_gets_sigkill_after_grace() {
    within("stopping a container that ignores SIGTERM", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("trap '' TERM; echo ready; while :; do sleep 1; done")).await;
        ready(&rt, &id).await;
        let started = tokio::time::Instant::now();
        rt.stop_container(&id, Duration::from_millis(300)).await.expect("stop");
        assert!(started.elapsed() >= Duration::from_millis(300), "grace was honoured");
        assert_eq!(exit_of(&rt, &id).await, (137, "Error".to_string()));
    })
    .await;
}

#[tokio::test]
async fn trapping_sigterm_exits_by_itself() {
    within("stopping a container that handles SIGTERM", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        // The sleep runs in the background so the shell handles the signal at once; the
        // group signal reaches the sleep too.
        let script = "trap 'echo bye; exit 0' TERM; echo ready; sleep 30 & wait";
        let id = run(&rt, &shell(script)).await;
        ready(&rt, &id).await;
        let started = tokio::time::Instant::now();
        rt.stop_container(&id, Duration::from_secs(10)).await.expect("stop");
        assert!(started.elapsed() < Duration::from_secs(5), "did not wait for the whole grace");
        assert_eq!(exit_of(&rt, &id).await, (0, "Completed".to_string()));
        assert_eq!(logs(&rt, &id, Default::default()).await, "ready\nbye\n");
    })
    .await;
}

#[tokio::test]
async fn stop_reaches_the_whole_process_group() {
    within("stopping a container with a child process", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("sleep 30 & echo $! > child.pid; echo ready; wait")).await;
        ready(&rt, &id).await;
        let pid_file = root.path().join("containers").join(&id).join("work").join("child.pid");
        let child: i32 = std::fs::read_to_string(pid_file).expect("pid file").trim().parse().expect("pid");
        rt.stop_container(&id, Duration::from_secs(5)).await.expect("stop");
        // The sleep was killed with its parent; it may stay a zombie of init briefly.
        for _ in 0..100 {
            let gone =
                std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |s| s.contains(") Z "));
            if gone {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the container's child {child} survived stop");
    })
    .await;
}

#[tokio::test]
async fn stopping_an_exited_container_is_a_no_op() {
    within("stopping an exited container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("exit 4")).await;
        assert_eq!(exit_of(&rt, &id).await.0, 4);
        rt.stop_container(&id, Duration::ZERO).await.expect("stop");
        assert_eq!(exit_of(&rt, &id).await.0, 4, "the recorded exit is kept");
        rt.remove_container(&id).await.expect("remove");
        assert_eq!(
            rt.stop_container(&id, Duration::ZERO).await.map_err(|e| e.reason()),
            Err("ContainerNotFound")
        );
    })
    .await;
}
