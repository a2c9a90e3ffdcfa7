//! Crash-loop backoff in real time. As in the kubelet, the first exit restarts at once (no
//! backoff is recorded before it); from the second exit on, the container waits in
//! `CrashLoopBackOff` for 10 s, then 20 s, counted from the exit.

use std::sync::Arc;
use std::time::Duration;

use flotilla_node::agent::backoff::elapsed;
use k8s_openapi::api::core::v1::ContainerStateTerminated;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::{Agent, Env, Kind, pod, run, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker() {
    run(Kind::Docker, "t10_crash_loop::docker", "the crash loop", crash_loop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process() {
    run(Kind::Process, "t10_crash_loop::process", "the crash loop", crash_loop).await;
}

/// A crashing container: exit 1, restarted at once, then after 10 s, then backing off 20 s.
async fn crash_loop(env: Arc<Env>) {
    let agent = Agent::start(&env);
    let created = Instant::now();
    let app = env.shell("app", "echo crashing; exit 1");
    let uid = env.create_bound(&pod("crashy", "Always", 1, vec![app])).await;

    until("the first restart", Duration::from_secs(30), || async {
        (env.status("crashy", "app").await?.restart_count >= 1).then_some(())
    })
    .await;
    let first_restart = created.elapsed();
    assert!(
        first_restart < Duration::from_secs(9),
        "the first exit is restarted without backoff, but the first restart came {first_restart:?} after \
         the pod was created"
    );

    // The second exit: waiting 10 s, with the exit it waits after as the last state.
    let (message, second_exit) = backing_off(&env, 1).await;
    let seen_backing_off = Instant::now();
    assert_eq!(message, format!("back-off 10s restarting failed container=app pod=crashy_default({uid})"));
    assert_eq!((second_exit.exit_code, second_exit.reason.as_deref()), (1, Some("Error")));
    let phase = env.get("crashy").await.and_then(|p| p.status?.phase);
    assert_eq!(phase.as_deref(), Some("Running"), "an Always pod in a crash loop stays Running");

    // The third exit: the restart before it came 10 s after the second exit.
    let (message, third_exit) = backing_off(&env, 2).await;
    let waited = seen_backing_off.elapsed();
    assert_eq!(message, format!("back-off 20s restarting failed container=app pod=crashy_default({uid})"));
    assert_eq!(third_exit.exit_code, 1);
    let exited: Timestamp = second_exit.finished_at.expect("the second exit's time").0;
    let restarted: Timestamp = third_exit.started_at.expect("the third start's time").0;
    let gap = elapsed(restarted, exited);
    eprintln!("restarted {gap:?} after the exit it backed off from");
    // Status times may be whole seconds: a 10 s wait can read as 9 s.
    assert!(
        gap >= Duration::from_secs(9) && gap <= Duration::from_secs(20),
        "restarted {gap:?} after the exit it backed off from (want 10 s); the test saw it {waited:?} after \
         seeing the backoff"
    );
    agent.stop().await;
}

/// Waits until container `app` of `crashy` backs off with restart count `restarts`; returns
/// the waiting message and the exit it waits after.
async fn backing_off(env: &Env, restarts: i32) -> (String, ContainerStateTerminated) {
    let what = format!("CrashLoopBackOff with restart count {restarts}");
    until(&what, Duration::from_secs(40), || async {
        let s = env.status("crashy", "app").await?;
        let waiting = s.state?.waiting?;
        if waiting.reason.as_deref() != Some("CrashLoopBackOff") || s.restart_count != restarts {
            return None;
        }
        Some((waiting.message?, s.last_state?.terminated?))
    })
    .await
}
