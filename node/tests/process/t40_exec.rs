use std::time::Duration;

use flotilla_node::runtime::ContainerRuntime;

use crate::{exit_of, run, runtime, shell, within};

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn exec_gets_env_working_dir_and_both_outputs() {
    within("exec in a running container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let mut config = shell("exec sleep 30");
        config.env = vec![("ANSWER".into(), "42".into())];
        config.working_dir = Some(work.path().display().to_string());
        let id = run(&rt, &config).await;
        let out = rt
            .exec(
                &id,
                &argv(&["sh", "-c", "echo $ANSWER; pwd; echo err >&2; exit 5"]),
                Duration::from_secs(10),
            )
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 5);
        assert_eq!(String::from_utf8_lossy(&out.output), format!("42\n{}\nerr\n", work.path().display()));
        rt.remove_container(&id).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn exec_past_its_timeout_is_killed() {
    within("exec that outlives its timeout", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("exec sleep 30")).await;
        let started = tokio::time::Instant::now();
        let err = rt
            .exec(&id, &argv(&["sh", "-c", "sleep 30; echo late"]), Duration::from_millis(200))
            .await
            .expect_err("times out");
        assert_eq!(err.reason(), "DeadlineExceeded");
        assert!(started.elapsed() < Duration::from_secs(5));
        rt.remove_container(&id).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn exec_needs_a_running_container_and_an_existing_command() {
    within("exec failures", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let running = run(&rt, &shell("exec sleep 30")).await;
        let err = rt.exec(&running, &argv(&["flotilla-no-such-command"]), Duration::from_secs(5)).await;
        assert_eq!(err.map_err(|e| e.reason()), Err("RunContainerError"));
        rt.remove_container(&running).await.expect("remove");

        let exited = run(&rt, &shell("true")).await;
        exit_of(&rt, &exited).await;
        let err = rt.exec(&exited, &argv(&["true"]), Duration::from_secs(5)).await;
        assert_eq!(err.map_err(|e| e.reason()), Err("ContainerNotRunning"));
        let err = rt.exec("nope", &argv(&["true"]), Duration::from_secs(5)).await;
        assert_eq!(err.map_err(|e| e.reason()), Err("ContainerNotFound"));
    })
    .await;
}
