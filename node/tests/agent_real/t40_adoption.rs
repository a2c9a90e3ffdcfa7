//! A restarted agent adopts the containers that run: a second agent on the same node and
//! runtime state (a new runtime instance, as a new agent process opens it) keeps them
//! running, with the same ids, start times and restart counts, and the pods stay Ready, also
//! those with a readiness probe: an adopted container resumes the readiness the first agent
//! reported for it, where the kubelet reads it unready until probed (kubernetes#100277).

use std::sync::Arc;
use std::time::Duration;

use flotilla_node::runtime::ContainerState;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, Probe};
use tokio::time::Instant;

use crate::{
    Agent, Env, Kind, POLL, condition, exec, exec_probe, pod, run, running_and_ready, runtime_id, until,
};

/// How long the pods are watched after the second agent starts: its first list of pods, its
/// first relist (1 s) and its first probes (1 s period) fall inside.
const HANDOVER: Duration = Duration::from_secs(4);
/// `initialDelaySeconds` of the readiness probe in [`readiness_kept`]: longer than
/// [`HANDOVER`], so the second agent does not probe during the handover.
const PROBE_DELAY_SECONDS: i32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker() {
    run(Kind::Docker, "t40_adoption::docker", "stopping or starting an agent", adoption).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process() {
    run(Kind::Process, "t40_adoption::process", "stopping or starting an agent", adoption).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_kept_docker() {
    let test = "t40_adoption::readiness_kept_docker";
    run(Kind::Docker, test, "stopping or starting an agent", readiness_kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_kept_process() {
    let test = "t40_adoption::readiness_kept_process";
    run(Kind::Process, test, "stopping or starting an agent", readiness_kept).await;
}

fn app(pod: &Pod) -> Option<ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == "app").cloned()
}

/// A pod's container under the first agent.
struct Before {
    uid: String,
    /// Its status' container id, start time and restart count.
    identity: Identity,
    /// Its state as the runtime listed it (with the runtime's exact start time).
    state: ContainerState,
}

type Identity = (Option<String>, Option<String>, i32);

/// What must not change across the handover: container id, start time, restart count.
fn identity(s: &ContainerStatus) -> Identity {
    let started = s.state.as_ref().and_then(|st| st.running.as_ref()).and_then(|r| r.started_at.as_ref());
    (s.container_id.clone(), started.map(|t| t.0.to_string()), s.restart_count)
}

/// Pod `steady` has no probes; pod `probed` has a readiness probe (1 s period) that passes
/// while `ready` exists. Both keep their container across the handover and stay Running and
/// Ready throughout: the second agent's first sync of `probed` may come before its first
/// probe, and reports the readiness the first agent reported for the same container.
async fn adoption(env: Arc<Env>) {
    let first = Agent::start(&env);
    env.create_bound(&pod("steady", "Always", 1, vec![env.shell("app", "exec sleep 3600")])).await;
    let mut probed = env.shell("app", "touch ready && exec sleep 3600");
    probed.readiness_probe = Some(exec_probe("test -f ready"));
    env.create_bound(&pod("probed", "Always", 1, vec![probed])).await;
    let names = ["steady", "probed"];
    let mut before = Vec::new();
    for name in names {
        let what = format!("{name} Running and Ready under the first agent");
        let p = until(&what, Duration::from_secs(30), || async {
            let p = env.get(name).await?;
            running_and_ready(&p).then_some(p)
        })
        .await;
        let s = app(&p).expect("a status");
        assert_eq!(s.restart_count, 0);
        let uid = p.metadata.uid.clone().expect("a uid");
        let held = first.runtime().containers_of(&uid).await;
        assert_eq!(held.len(), 1, "{name}: {held:?}");
        before.push(Before { uid, identity: identity(&s), state: held[0].state.clone() });
    }
    first.stop().await;

    let second = Agent::start(&env);
    let runtime = second.runtime();
    let watching = Instant::now();
    while watching.elapsed() < HANDOVER {
        for (name, Before { identity: was, .. }) in names.iter().zip(&before) {
            let p = env.get(name).await.expect("the pod exists");
            let now = app(&p).map(|s| identity(&s));
            let ready = condition(&p, "Ready");
            assert!(
                running_and_ready(&p) && now.as_ref() == Some(was),
                "{name} changed {:?} after the second agent started: {now:?} (was {was:?}), Ready {ready:?}",
                watching.elapsed()
            );
        }
        tokio::time::sleep(POLL).await;
    }

    // The second agent probes the same container: the pod follows the file it checks.
    let id = runtime_id(before[1].identity.0.as_deref().expect("an id"));
    exec(runtime.as_ref(), &id, "rm ready").await;
    until("probed unready under the second agent", Duration::from_secs(15), || async {
        (!running_and_ready(&env.get("probed").await?)).then_some(())
    })
    .await;
    exec(runtime.as_ref(), &id, "touch ready").await;
    until("probed Ready again", Duration::from_secs(15), || async {
        running_and_ready(&env.get("probed").await?).then_some(())
    })
    .await;

    // The runtime still holds exactly the first containers, running since the same instant.
    for (name, Before { uid, identity: was, state }) in names.iter().zip(&before) {
        let held = runtime.containers_of(uid).await;
        let ids: Vec<String> = held.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, vec![runtime_id(was.0.as_deref().expect("an id"))], "{name}: {held:?}");
        assert!(matches!(held[0].state, ContainerState::Running { .. }), "{name}: {held:?}");
        assert_eq!(&held[0].state, state, "{name}: started once");
        assert_eq!(held[0].restart_count, 0);
    }
    let started: i32 = env
        .events()
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Started"))
        .map(|e| e.count.unwrap_or(1))
        .sum();
    assert_eq!(started, 2, "one start per pod, none by the second agent");
    assert_eq!(runtime.stops().len(), 0, "the second agent stopped nothing");
    assert_eq!(runtime.sandboxes_of(&before[1].uid).await.len(), 1);
    second.stop().await;
}

/// Pod `probed`'s readiness probe first runs [`PROBE_DELAY_SECONDS`] after an agent starts
/// probing its container, so during the handover only what the first agent reported can keep
/// it Ready (without that, the second agent reports it unready from its first sync until the
/// probe runs). It stays Running and Ready with the same container, and its Ready condition
/// keeps its transition time (no unready status was written between two looks). Once the
/// second agent probes, the probe decides: removing the file makes the pod unready.
async fn readiness_kept(env: Arc<Env>) {
    let first = Agent::start(&env);
    let mut probed = env.shell("app", "touch ready && exec sleep 3600");
    let probe = Probe { initial_delay_seconds: Some(PROBE_DELAY_SECONDS), ..exec_probe("test -f ready") };
    probed.readiness_probe = Some(probe);
    env.create_bound(&pod("probed", "Always", 1, vec![probed])).await;
    let p = until("probed Running and Ready under the first agent", Duration::from_secs(30), || async {
        let p = env.get("probed").await?;
        running_and_ready(&p).then_some(p)
    })
    .await;
    let was = condition(&p, "Ready").and_then(|c| c.last_transition_time).expect("a Ready transition time");
    let id = app(&p).and_then(|s| s.container_id).expect("a container id");
    first.stop().await;

    let second = Agent::start(&env);
    let watching = Instant::now();
    while watching.elapsed() < HANDOVER {
        let p = env.get("probed").await.expect("the pod exists");
        let ready = condition(&p, "Ready");
        let now = app(&p).and_then(|s| s.container_id);
        assert!(
            running_and_ready(&p)
                && ready.as_ref().and_then(|c| c.last_transition_time.as_ref()) == Some(&was)
                && now.as_ref() == Some(&id),
            "probed changed {:?} after the second agent started: container {now:?} (was {id}), \
             Ready {ready:?} (last transition was {was:?})",
            watching.elapsed()
        );
        tokio::time::sleep(POLL).await;
    }

    let runtime = second.runtime();
    exec(runtime.as_ref(), &runtime_id(&id), "rm ready").await;
    until("probed unready once the second agent probes it", Duration::from_secs(15), || async {
        (!running_and_ready(&env.get("probed").await?)).then_some(())
    })
    .await;
    let held = runtime.containers_of(p.metadata.uid.as_deref().expect("a uid")).await;
    let ids: Vec<String> = held.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![runtime_id(&id)], "the same container, not restarted: {held:?}");
    second.stop().await;
}
