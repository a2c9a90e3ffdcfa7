//! Exit codes and reasons, stopping with a grace period, removal.

use std::time::Duration;

use flotilla_node::runtime::{ContainerConfig, ContainerRuntime, ContainerState};
use tokio::time::Instant;

use crate::with_docker;

#[tokio::test]
async fn exit_codes_and_reasons() {
    with_docker("exit_codes_and_reasons", "containers that should exit", |env| async move {
        let (_pod, sandbox) = env.pod("exits").await;
        let done = env.run(&sandbox, &env.config(&sandbox.pod, "done", &["true"])).await;
        let failed = env.run(&sandbox, &env.config(&sandbox.pod, "failed", &["sh", "-c", "exit 3"])).await;
        // `tail` keeps a line that never ends in memory: it grows until the limit kills it.
        let hungry = ContainerConfig {
            memory_limit_bytes: Some(16 << 20),
            ..env.config(&sandbox.pod, "hungry", &["tail", "/dev/zero"])
        };
        let hungry = env.run(&sandbox, &hungry).await;

        assert_eq!(env.wait_exited(&done).await, (0, "Completed".to_owned()));
        assert_eq!(env.wait_exited(&failed).await, (3, "Error".to_owned()));
        assert_eq!(env.wait_exited(&hungry).await.0, 137);
        // Docker learns of the OOM kill from containerd's event, which can come after the exit,
        // and on a loaded machine sometimes never (seen in CI, Docker 20.10 on cgroup v1: the
        // container stayed 137/Error with Docker's own `OOMKilled` false). What the runtime
        // owes is to say what Docker says: OOMKilled exactly when Docker's inspect does.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reason = match env.container(&hungry).await.map(|c| c.state) {
                Some(ContainerState::Exited { reason, .. }) => reason,
                other => panic!("the hungry container stays exited: {other:?}"),
            };
            if reason == "OOMKilled" {
                break;
            }
            if Instant::now() >= deadline {
                let inspected = env.docker.inspect_container(&hungry, None).await.expect("inspected");
                let docker_says = inspected.state.and_then(|s| s.oom_killed);
                assert_eq!(docker_says, Some(false), "Docker reports the OOM kill, the runtime says {reason}");
                assert_eq!(reason, "Error");
                eprintln!("exit_codes_and_reasons: Docker never reported the OOM kill; the runtime said Error as Docker did");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match env.container(&failed).await.expect("listed").state {
            ContainerState::Exited { started_at: Some(started), finished_at: Some(finished), .. } => {
                assert!(started <= finished, "{started} > {finished}");
            }
            other => panic!("an exited container has both times: {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn stop_sends_term_then_kill_after_the_grace_period() {
    with_docker("stop_sends_term_then_kill_after_the_grace_period", "docker stop", |env| async move {
        let (_pod, sandbox) = env.pod("stops").await;
        // The shell runs its trap between the short sleeps, so TERM ends it at once.
        let polite = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
        let stubborn = "trap '' TERM; echo ready; while true; do sleep 0.1; done";
        let polite = env.run(&sandbox, &env.config(&sandbox.pod, "polite", &["sh", "-c", polite])).await;
        let stubborn =
            env.run(&sandbox, &env.config(&sandbox.pod, "stubborn", &["sh", "-c", stubborn])).await;
        for id in [&polite, &stubborn] {
            env.wait_for(id, "running", |s| matches!(s, ContainerState::Running { .. })).await;
            env.wait_for_log(id, "ready").await;
        }

        let started = Instant::now();
        env.runtime.stop_container(&polite, Duration::from_secs(20)).await.expect("stopped");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "TERM was handled, no need to wait out the grace"
        );
        assert_eq!(env.wait_exited(&polite).await, (0, "Completed".to_owned()));
        assert!(env.logs(&polite, Default::default()).await.contains("got-term"));

        let grace = Duration::from_secs(2);
        let started = Instant::now();
        env.runtime.stop_container(&stubborn, grace).await.expect("stopped");
        let took = started.elapsed();
        assert!(took >= grace - Duration::from_millis(100) && took < grace * 5, "killed after {took:?}");
        assert_eq!(env.wait_exited(&stubborn).await, (137, "Error".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn removal_refuses_a_running_container() {
    with_docker("removal_refuses_a_running_container", "docker stop or remove", |env| async move {
        let (_pod, sandbox) = env.pod("removal").await;
        let id = env.run(&sandbox, &env.config(&sandbox.pod, "app", &["sleep", "600"])).await;
        let error = env.runtime.remove_container(&id).await.expect_err("it is running");
        assert_eq!(error.reason(), "RemoveContainerError");
        assert!(env.container(&id).await.is_some());
        env.runtime.stop_container(&id, Duration::ZERO).await.expect("stopped");
        // Stopping a stopped container is fine (Docker answers "not modified").
        env.runtime.stop_container(&id, Duration::ZERO).await.expect("stopped again");
        env.runtime.remove_container(&id).await.expect("removed");
        assert!(env.container(&id).await.is_none());
    })
    .await;
}
