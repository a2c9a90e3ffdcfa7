//! Container logs through the agent's log endpoint (`flotilla_node::server::router`, the
//! kubelet's `containerLogs`, served here in-process without the TLS its binary adds): the
//! current instance's lines, and with `previous` those of the instance before a restart, or
//! of the last exit of a container waiting in CrashLoopBackOff.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{Agent, Env, Kind, exec, exec_probe, log_text, pod, run, runtime_id, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker() {
    run(Kind::Docker, "t50_logs::docker", "reading logs", logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process() {
    run(Kind::Process, "t50_logs::process", "reading logs", logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_previous_docker() {
    run(Kind::Docker, "t50_logs::crash_loop_previous_docker", "reading logs", crash_loop_previous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_previous_process() {
    run(Kind::Process, "t50_logs::crash_loop_previous_process", "reading logs", crash_loop_previous).await;
}

/// `GET /containerLogs/default/<pod>/app?<query>` on the agent's endpoint.
async fn get(router: &axum::Router, pod: &str, query: &str) -> (StatusCode, String) {
    let request = Request::get(format!("/containerLogs/default/{pod}/app?{query}"))
        .body(Body::empty())
        .expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let body = response.into_body().collect().await.expect("the body is read").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Each instance's first line: a random boot id.
const BOOT: &str = "echo \"boot $(cat /proc/sys/kernel/random/uuid)\"; echo line-2; echo line-3";

/// The instance's boot id from its log, which must be [`BOOT`]'s three lines.
fn boot_id(log: &str) -> &str {
    let first = log.lines().next().unwrap_or_default();
    let boot = first.strip_prefix("boot ").unwrap_or_else(|| panic!("no boot line in {log:?}"));
    assert_eq!(log, format!("boot {boot}\nline-2\nline-3\n"));
    boot
}

/// A container logs three lines and runs until its liveness probe fails (the test creates
/// the file whose absence it checks); its second instance runs on.
async fn logs(env: Arc<Env>) {
    let agent = Agent::start(&env);
    let runtime = agent.runtime();
    let router = flotilla_node::server::router(runtime.clone());
    let mut app = env.shell("app", &format!("{BOOT}; exec sleep 3600"));
    app.liveness_probe = Some(exec_probe("test ! -e dead"));
    env.create_bound(&pod("chatty", "Always", 1, vec![app])).await;

    let first = until("the first instance logged", Duration::from_secs(30), || async {
        let s = env.status("chatty", "app").await?;
        s.state.as_ref()?.running.as_ref()?;
        let (code, body) = get(&router, "chatty", "").await;
        (code == StatusCode::OK && body.ends_with("line-3\n")).then_some(body)
    })
    .await;
    let (code, body) = get(&router, "chatty", "previous=true").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no previous instance yet: {body}");
    let id = env.status("chatty", "app").await.and_then(|s| s.container_id).expect("an id");
    exec(runtime.as_ref(), &runtime_id(&id), "touch dead").await;

    let (status, current) = until("the second instance logged", Duration::from_secs(30), || async {
        let s = env.status("chatty", "app").await?;
        if s.restart_count != 1 || s.state.as_ref()?.running.is_none() {
            return None;
        }
        let (code, body) = get(&router, "chatty", "").await;
        (code == StatusCode::OK && body.ends_with("line-3\n")).then_some((s, body))
    })
    .await;
    let (code, previous) = get(&router, "chatty", "previous=true").await;
    assert_eq!(code, StatusCode::OK, "{previous}");
    assert_eq!(previous, first, "previous is the first instance's log");
    assert_ne!(boot_id(&current), boot_id(&previous), "two instances");

    // The endpoint reads the containers the status names.
    let named = runtime_id(status.container_id.as_deref().expect("an id"));
    assert_eq!(log_text(runtime.as_ref(), &named).await.expect("the runtime's log"), current);
    let last = status.last_state.and_then(|s| s.terminated).and_then(|t| t.container_id).expect("an id");
    assert_eq!(log_text(runtime.as_ref(), &runtime_id(&last)).await.expect("the runtime's log"), previous);
    let (code, tail) = get(&router, "chatty", "tailLines=1").await;
    assert_eq!((code, tail.as_str()), (StatusCode::OK, "line-3\n"));
    agent.stop().await;
}

/// `kubectl logs --previous` on a container in CrashLoopBackOff, the usual way to see why it
/// crashes. The kubelet answers with the status' `lastState.terminated` container (the
/// instance that exited last: `validateContainerLogStatus`), and so does the agent's endpoint:
/// the newest instance once it has exited. (It used to take the instance before the newest,
/// which the pod worker had already removed, and answered 404.)
async fn crash_loop_previous(env: Arc<Env>) {
    let agent = Agent::start(&env);
    let router = flotilla_node::server::router(agent.runtime());
    env.create_bound(&pod("crashy", "Always", 1, vec![env.shell("app", &format!("{BOOT}; exit 1"))])).await;
    let last = until("CrashLoopBackOff after the second exit", Duration::from_secs(30), || async {
        let s = env.status("crashy", "app").await?;
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then_some(())?;
        s.last_state?.terminated?.container_id
    })
    .await;
    let wanted =
        log_text(agent.runtime().as_ref(), &runtime_id(&last)).await.expect("the last instance's log");
    boot_id(&wanted);
    let (code, previous) = get(&router, "crashy", "previous=true").await;
    assert_eq!((code, previous), (StatusCode::OK, wanted), "previous is the status' lastState container");
    agent.stop().await;
}
