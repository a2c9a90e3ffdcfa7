//! The Docker runtime against the real daemon.
//!
//! Each test gets a runtime with a node name of its own, so tests run in parallel without
//! seeing each other's objects, and everything labelled with that node is removed when the
//! test ends, whether it passed or panicked. Without a daemon the tests are skipped, unless
//! `FLOTILLA_REQUIRE_DOCKER=1` (then they fail).

mod t10_sandbox;
mod t20_config;
mod t30_errors;
mod t40_lifecycle;
mod t50_logs_exec;
mod t60_labels;
mod t70_ports;
mod t80_listing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bytes::Bytes;
use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::{
    Container, ContainerConfig, ContainerRuntime, ContainerState, LogOptions, PodRef, Sandbox, SandboxConfig,
};
use flotilla_node::testing;
use futures::TryStreamExt;

/// How long one test may take before it is reported as stuck.
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// How long a container may take to reach an awaited state.
const STATE_WAIT: Duration = Duration::from_secs(30);
/// How often states are polled (Docker has no paused clock).
const POLL: Duration = Duration::from_millis(50);

/// What a test works with.
pub(crate) struct Env {
    pub(crate) runtime: DockerRuntime,
    pub(crate) docker: Docker,
    pub(crate) image: String,
    pub(crate) node: String,
}

/// Runs `body` against a runtime on a fresh node name, then removes everything labelled with
/// that node, even when `body` panics. `stuck` says what probably hangs if the test times out.
pub(crate) async fn with_docker<F, Fut>(test: &str, stuck: &str, body: F)
where
    F: FnOnce(Arc<Env>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(docker) = testing::docker_or_skip(test).await else { return };
    let image = testing::busybox_image(&docker).await.expect("the busybox test image builds");
    let node = testing::unique_name("test-node");
    let runtime = DockerRuntime::with_client(docker.clone(), DockerConfig::new(node.clone()));
    runtime.ensure_sandbox_image().await.expect("the sandbox image builds");
    let env = Arc::new(Env { runtime, docker: docker.clone(), image, node: node.clone() });
    let outcome = tokio::spawn(tokio::time::timeout(TEST_LIMIT, body(env))).await;
    let removed = testing::remove_node_objects(&docker, &node).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_elapsed)) => panic!("{test} ran past {TEST_LIMIT:?}; probably stuck: {stuck}"),
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(join) => panic!("{test} did not finish: {join}"),
        },
    }
    removed.expect("the test's containers are removed");
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

impl Env {
    /// A fresh pod with its running sandbox.
    pub(crate) async fn pod(&self, name: &str) -> (PodRef, Sandbox) {
        let pod = testing::unique_pod("default", &testing::unique_name(name));
        let config = SandboxConfig {
            pod: pod.clone(),
            hostname: name.to_owned(),
            labels: Default::default(),
            ports: Vec::new(),
        };
        let sandbox = self.runtime.run_sandbox(&config).await.expect("the sandbox runs");
        (pod, sandbox)
    }

    /// A container config in `pod` running `command` from the busybox image.
    pub(crate) fn config(&self, pod: &PodRef, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            pod: pod.clone(),
            name: name.to_owned(),
            image: self.image.clone(),
            command: strings(command),
            args: vec![],
            env: vec![],
            working_dir: None,
            mounts: vec![],
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            restart_count: 0,
        }
    }

    /// Creates and starts a container.
    pub(crate) async fn run(&self, sandbox: &Sandbox, config: &ContainerConfig) -> String {
        let id = self.runtime.create_container(&sandbox.id, config).await.expect("the container is created");
        self.runtime.start_container(&id).await.expect("the container starts");
        id
    }

    /// The container as listed now.
    pub(crate) async fn container(&self, id: &str) -> Option<Container> {
        let all = self.runtime.containers().await.expect("containers are listed");
        all.into_iter().find(|c| c.id == id)
    }

    /// Waits until the container's state satisfies `done`; returns that state.
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&ContainerState) -> bool,
    ) -> ContainerState {
        let deadline = tokio::time::Instant::now() + STATE_WAIT;
        loop {
            let state = self.container(id).await.map(|c| c.state);
            if let Some(state) = state.as_ref().filter(|s| done(s)) {
                return state.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "container {id} not {what} after {STATE_WAIT:?}: {state:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the container exited; returns its exit code and reason.
    pub(crate) async fn wait_exited(&self, id: &str) -> (i32, String) {
        match self.wait_for(id, "exited", |s| matches!(s, ContainerState::Exited { .. })).await {
            ContainerState::Exited { exit_code, reason, .. } => (exit_code, reason),
            other => unreachable!("wait_for returned {other:?}"),
        }
    }

    /// The whole log (not followed) as text.
    pub(crate) async fn logs(&self, id: &str, options: LogOptions) -> String {
        let chunks: Vec<Bytes> =
            self.runtime.logs(id, &options).await.expect("logs open").try_collect().await.expect("logs read");
        String::from_utf8_lossy(&chunks.concat()).into_owned()
    }

    /// Waits (up to 20 s) until the container's log contains `text`.
    pub(crate) async fn wait_for_log(&self, id: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.logs(id, LogOptions::default()).await.contains(text) {
            assert!(tokio::time::Instant::now() < deadline, "container {id} never logged {text:?}");
            tokio::time::sleep(POLL).await;
        }
    }
}
