//! Exec probes through the real runtimes: readiness follows a file the test creates and
//! removes in the container, and a failed liveness probe restarts the container.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::{Agent, Env, Kind, condition, exec, exec_probe, pod, run, runtime_id, until};

/// How long a probe result may take to show in the pod: a probe period (1 s), the exec, and
/// the status write, with room for a busy machine.
const FLIP: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker() {
    run(Kind::Docker, "t20_probes::docker", "probing or restarting", probes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process() {
    run(Kind::Process, "t20_probes::process", "probing or restarting", probes).await;
}

fn find<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name)
}

/// Whether `pod`'s Ready condition is `ready`, and container `ready` agrees.
fn ready_is(pod: &Pod, ready: bool) -> bool {
    let want = if ready { "True" } else { "False" };
    condition(pod, "Ready").is_some_and(|c| c.status == want)
        && find(pod, "ready").is_some_and(|c| c.ready == ready)
}

/// Container `live` (liveness: no file `dead`, which only the test creates, so that a probe
/// running before the shell does cannot fail it) and container
/// `ready` (readiness: `ready` exists, which only the test creates). Relative paths: the
/// working directory is `/` on Docker and a fresh directory per container on processes.
async fn probes(env: Arc<Env>) {
    let agent = Agent::start(&env);
    let runtime = agent.runtime();
    let mut live = env.shell("live", "exec sleep 3600");
    live.liveness_probe = Some(exec_probe("test ! -e dead"));
    let mut ready = env.shell("ready", "exec sleep 3600");
    ready.readiness_probe = Some(exec_probe("test -f ready"));
    env.create_bound(&pod("probed", "Always", 1, vec![live, ready])).await;

    let first = until("Running, with only `live` ready", Duration::from_secs(30), || async {
        let p = env.get("probed").await?;
        let phase = p.status.as_ref()?.phase.as_deref();
        (phase == Some("Running") && find(&p, "live")?.ready && ready_is(&p, false)).then_some(p)
    })
    .await;
    let not_ready = condition(&first, "Ready").expect("a Ready condition");
    assert_eq!(not_ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(not_ready.message.as_deref(), Some("containers with unready status: [ready]"));
    let ready_id = runtime_id(&find(&first, "ready").and_then(|c| c.container_id.clone()).expect("an id"));
    let live_before = find(&first, "live").cloned().expect("a status of `live`");
    assert_eq!(live_before.restart_count, 0);

    exec(runtime.as_ref(), &ready_id, "touch ready").await;
    until("Ready once the file exists", FLIP, || async {
        ready_is(&env.get("probed").await?, true).then_some(())
    })
    .await;
    exec(runtime.as_ref(), &ready_id, "rm ready").await;
    until("not Ready once the file is gone", FLIP, || async {
        ready_is(&env.get("probed").await?, false).then_some(())
    })
    .await;

    let live_id = runtime_id(live_before.container_id.as_deref().expect("an id"));
    exec(runtime.as_ref(), &live_id, "touch dead").await;
    let restarted = until("the liveness failure restarts `live`", FLIP, || async {
        let s = env.status("probed", "live").await?;
        let running = s.state.as_ref()?.running.is_some();
        (s.restart_count == 1 && running && s.ready).then_some(s)
    })
    .await;
    assert_ne!(restarted.container_id, live_before.container_id, "a new container");
    let killed = restarted.last_state.and_then(|s| s.terminated).expect("the killed container's end");
    assert_eq!(killed.container_id, live_before.container_id);
    let events = env.events().await;
    let said = |reason: &str, text: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason) && e.message.as_deref().is_some_and(|m| m.contains(text))
        })
    };
    assert!(said("Unhealthy", "Liveness probe failed"), "{events:#?}");
    assert!(said("Killing", "Container live failed liveness probe, will be restarted"), "{events:#?}");

    // The new instance (a new root file system or working directory, without `dead`) is
    // healthy and stays; `ready` can be ready again.
    exec(runtime.as_ref(), &ready_id, "touch ready").await;
    let last = until("Ready again", FLIP, || async {
        let p = env.get("probed").await?;
        ready_is(&p, true).then_some(p)
    })
    .await;
    let live_now = find(&last, "live").expect("a status of `live`");
    assert_eq!((live_now.restart_count, &live_now.container_id), (1, &restarted.container_id));
    assert_eq!(find(&last, "ready").map(|c| c.restart_count), Some(0), "readiness never restarts");
    agent.stop().await;
}
