//! Graceful termination with real signals: a container that handles SIGTERM ends at once
//! with exit code 0; one that ignores it is killed when its grace period ends. Either pod
//! leaves the API only once the runtime holds nothing of it.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::DeleteOptions;
use flotilla_node::runtime::ContainerState;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::{Agent, Env, Kind, Observed, POLL, log_text, pod, run, runtime_id, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker() {
    run(Kind::Docker, "t30_termination::docker", "stopping or removing", termination).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process() {
    run(Kind::Process, "t30_termination::process", "stopping or removing", termination).await;
}

/// The grace period of the pod that ignores SIGTERM.
const SHORT_GRACE: Duration = Duration::from_secs(2);

/// A loop of short sleeps, so that a shell running as PID 1 (Docker signals only it) gets to
/// its trap quickly; it says when its trap is set.
fn script(trap: &str) -> String {
    format!("trap {trap} TERM; echo trapped; while :; do sleep 0.1; done")
}

async fn termination(env: Arc<Env>) {
    let agent = Agent::start(&env);
    let runtime = agent.runtime();
    let polite =
        env.create_bound(&pod("polite", "Always", 30, vec![env.shell("app", &script("'exit 0'"))])).await;
    let stubborn =
        env.create_bound(&pod("stubborn", "Always", 2, vec![env.shell("app", &script("''"))])).await;
    let polite_id = trapped(&env, &runtime, "polite").await;
    let stubborn_id = trapped(&env, &runtime, "stubborn").await;

    let api = env.kit.api::<Pod>(Some("default"));
    let deleted = Instant::now();
    for name in ["polite", "stubborn"] {
        let marked = api.delete(name, &DeleteOptions::default()).await.expect("the delete is accepted");
        assert!(marked.is_some(), "{name}: a running pod waits for its node agent");
    }
    let (polite_took, stubborn_took) = tokio::join!(
        gone(&env, &runtime, "polite", &polite, deleted),
        gone(&env, &runtime, "stubborn", &stubborn, deleted)
    );
    assert!(polite_took < Duration::from_secs(10), "polite pod gone after {polite_took:?} (grace 30 s)");
    assert!(stubborn_took >= SHORT_GRACE, "stubborn pod gone after {stubborn_took:?} (grace 2 s)");

    let stops = runtime.stops();
    let stop_of = |id: &str| {
        stops.iter().find(|s| s.id == id).cloned().unwrap_or_else(|| panic!("{id} stopped: {stops:#?}"))
    };
    let polite_stop = stop_of(&polite_id);
    assert_eq!(polite_stop.grace, Duration::from_secs(30));
    assert!(polite_stop.took < Duration::from_secs(5), "{polite_stop:?}");
    assert!(
        matches!(&polite_stop.after, Some(ContainerState::Exited { exit_code: 0, reason, .. }) if reason == "Completed"),
        "{polite_stop:?}"
    );
    let stubborn_stop = stop_of(&stubborn_id);
    assert_eq!(stubborn_stop.grace, SHORT_GRACE);
    // A little tolerance: Docker and the process runtime measure the grace on their own clocks.
    assert!(
        stubborn_stop.took >= SHORT_GRACE - Duration::from_millis(100)
            && stubborn_stop.took < Duration::from_secs(10),
        "{stubborn_stop:?}"
    );
    assert!(
        matches!(stubborn_stop.after, Some(ContainerState::Exited { exit_code: 137, .. })),
        "{stubborn_stop:?}"
    );
    agent.stop().await;
}

/// Waits until pod `name` runs and its container set its trap; returns the container's id.
async fn trapped(env: &Env, runtime: &Observed, name: &str) -> String {
    let what = format!("{name} runs with its trap set");
    until(&what, Duration::from_secs(30), || async {
        let s = env.status(name, "app").await?;
        s.state.as_ref()?.running.as_ref()?;
        let id = runtime_id(s.container_id.as_deref()?);
        log_text(runtime, &id).await.ok()?.contains("trapped").then_some(id)
    })
    .await
}

/// Waits until pod `name` (uid `uid`) is gone from the API, checking at that moment that the
/// runtime lists neither containers nor sandboxes of it; returns how long after `deleted`.
async fn gone(env: &Env, runtime: &Observed, name: &str, uid: &str, deleted: Instant) -> Duration {
    let deadline = deleted + Duration::from_secs(40);
    loop {
        // The pod first, then the runtime: whatever the runtime lists now it held when the
        // pod was already gone.
        if env.get(name).await.is_none() {
            let containers = runtime.containers_of(uid).await;
            let sandboxes = runtime.sandboxes_of(uid).await;
            assert!(containers.is_empty(), "{name} left the API with containers still there: {containers:?}");
            assert!(sandboxes.is_empty(), "{name} left the API with sandboxes still there: {sandboxes:?}");
            return deleted.elapsed();
        }
        assert!(Instant::now() < deadline, "{name} still in the API 40 s after its deletion");
        tokio::time::sleep(POLL).await;
    }
}
