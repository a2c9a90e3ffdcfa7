//! The real `NodeAgent` (its Prober and volume manager as `NodeAgent::new` wires them) on the
//! real runtimes, Docker and plain processes, under a TestKit control plane (in-memory
//! registry) in real time: the scenarios of `node/tests/agent/` that depend on timing,
//! signals, exec and logs, where a fake runtime and a paused clock cannot tell the truth.
//!
//! Each scenario is written once, as an `async fn(Arc<Env>)`, and runs twice: `docker` (on the
//! local daemon, skipped with a printed reason without one unless `FLOTILLA_REQUIRE_DOCKER=1`)
//! and `process` (always). Every run has a node name of its own, and everything labelled with
//! it (Docker) or kept under its root (processes) is removed when the run ends, whether it
//! passed or panicked. Containers run `/bin/sh -c` scripts that busybox and the host's shell
//! both understand: from the image `flotilla_node::testing` builds around the host's busybox
//! on Docker, from the host's `/bin/sh` on the process runtime (which ignores images).
//!
//! Agents run with the system clock: the TestKit's clock starts at a fixed epoch, and the
//! runtimes stamp exits with real time, which the agent's backoff compares with its own now.

mod t10_crash_loop;
mod t20_probes;
mod t30_termination;
mod t40_adoption;
mod t50_logs;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bytes::Bytes;
use flotilla_core::client::ListOptions;
use flotilla_core::controller::testing::TestKit;
use flotilla_node::agent::{AgentConfig, NodeAgent};
use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::process::{ProcessConfig, ProcessRuntime};
use flotilla_node::runtime::{
    Container as RuntimeContainer, ContainerConfig, ContainerRuntime, ContainerState, ExecOutput, LogOptions,
    Result as RuntimeResult, Sandbox, SandboxConfig,
};
use flotilla_node::testing;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Event, ExecAction, NodeAddress, Pod, PodCondition, PodSpec, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one run may take before it is reported as stuck.
const RUN_LIMIT: Duration = Duration::from_secs(90);
/// How often [`until`] looks (real time: the runtimes do not follow a paused clock).
const POLL: Duration = Duration::from_millis(50);
/// How long a command run with [`exec`] may take.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// The address agents and the process runtime give their node.
const NODE_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Which real runtime a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `DockerRuntime` on the local daemon.
    Docker,
    /// `ProcessRuntime` under a temporary root.
    Process,
}

enum Backend {
    Docker(Docker),
    Process(PathBuf),
}

/// One run's node: the control plane, how to open its runtime, and its agents.
pub(crate) struct Env {
    pub(crate) kit: TestKit,
    pub(crate) node: String,
    /// The image containers name (the busybox test image; ignored by the process runtime).
    pub(crate) image: String,
    backend: Backend,
    /// Agents' root directory (kept across agents, as a restarted kubelet keeps it).
    agent_root: PathBuf,
    _root: tempfile::TempDir,
    /// Stops every agent of the run (also when the scenario panicked).
    stop: CancellationToken,
    agents: TaskTracker,
}

/// Runs `scenario` on a fresh node of runtime `kind`, then stops its agents and removes what
/// they left, even when the scenario panics. `stuck` says what probably hangs on a timeout.
pub(crate) async fn run<F, Fut>(kind: Kind, test: &str, stuck: &str, scenario: F)
where
    F: FnOnce(Arc<Env>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let node = testing::unique_name("agent-real");
    let root = tempfile::tempdir().expect("a temporary directory");
    let backend = match kind {
        Kind::Docker => {
            let Some(docker) = testing::docker_or_skip(test).await else { return };
            Backend::Docker(docker)
        }
        Kind::Process => Backend::Process(root.path().join("runtime")),
    };
    let image = match &backend {
        Backend::Docker(docker) => {
            let image = testing::busybox_image(docker).await.expect("the busybox test image builds");
            let runtime = DockerRuntime::with_client(docker.clone(), DockerConfig::new(node.clone()));
            runtime.ensure_sandbox_image().await.expect("the sandbox image builds");
            image
        }
        Backend::Process(_) => "busybox".to_owned(),
    };
    let env = Arc::new(Env {
        kit: TestKit::new().await,
        node: node.clone(),
        image,
        backend,
        agent_root: root.path().join("agent"),
        _root: root,
        stop: CancellationToken::new(),
        agents: TaskTracker::new(),
    });
    let started = Instant::now();
    let outcome = tokio::spawn(tokio::time::timeout(RUN_LIMIT, scenario(env.clone()))).await;
    eprintln!("{test}: scenario took {:.1}s", started.elapsed().as_secs_f64());
    env.stop.cancel();
    env.agents.close();
    env.agents.wait().await;
    let cleaned = env.clean_up().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_elapsed)) => panic!("{test} ran past {RUN_LIMIT:?}; probably stuck: {stuck}"),
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(join) => panic!("{test} did not finish: {join}"),
        },
    }
    cleaned.expect("the run's containers and sandboxes are removed");
}

impl Env {
    /// A new instance of the node's runtime, as a restarted agent process would open it.
    fn open(&self) -> (Arc<dyn ContainerRuntime>, Option<Arc<ProcessRuntime>>) {
        match &self.backend {
            Backend::Docker(docker) => {
                let config = DockerConfig::new(self.node.clone());
                (Arc::new(DockerRuntime::with_client(docker.clone(), config)), None)
            }
            Backend::Process(root) => {
                let config =
                    ProcessConfig { node_name: self.node.clone(), root_dir: root.clone(), host_ip: NODE_IP };
                let runtime = Arc::new(ProcessRuntime::new(config).expect("the process runtime opens"));
                (runtime.clone(), Some(runtime))
            }
        }
    }

    /// Removes every container and sandbox of the node (its agents are stopped).
    async fn clean_up(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Docker(docker) => {
                testing::remove_node_objects(docker, &self.node).await.map(drop).map_err(|e| e.to_string())
            }
            Backend::Process(_) => {
                let (runtime, process) = self.open();
                let result = async {
                    for c in runtime.containers().await? {
                        runtime.remove_container(&c.id).await?;
                    }
                    for s in runtime.sandboxes().await? {
                        runtime.remove_sandbox(&s.id).await?;
                    }
                    Ok::<_, flotilla_node::runtime::Error>(())
                }
                .await;
                if let Some(process) = process {
                    process.shutdown().await;
                }
                result.map_err(|e| e.to_string())
            }
        }
    }

    /// A container running `script` with `/bin/sh -c`.
    pub(crate) fn shell(&self, name: &str, script: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(self.image.clone()),
            command: Some(vec!["/bin/sh".into(), "-c".into()]),
            args: Some(vec![script.into()]),
            ..Default::default()
        }
    }

    /// Creates `pod` in `default` and binds it to this node; returns its uid.
    pub(crate) async fn create_bound(&self, pod: &Pod) -> String {
        let api = self.kit.api::<Pod>(Some("default"));
        let created = api.create(pod).await.expect("the pod is created");
        let name = created.metadata.name.clone().expect("a name");
        api.bind(&name, &self.node).await.expect("the pod is bound");
        created.metadata.uid.expect("a uid")
    }

    /// The current pod `name`, if it exists.
    pub(crate) async fn get(&self, name: &str) -> Option<Pod> {
        self.kit.api::<Pod>(Some("default")).get_opt(name).await.expect("the pod can be read")
    }

    /// The status of container `container` of pod `name`.
    pub(crate) async fn status(&self, name: &str, container: &str) -> Option<ContainerStatus> {
        let status = self.get(name).await?.status?;
        status.container_statuses?.into_iter().find(|c| c.name == container)
    }

    /// The Events of namespace `default`.
    pub(crate) async fn events(&self) -> Vec<Event> {
        let api = self.kit.api::<Event>(Some("default"));
        api.list(&ListOptions::default()).await.expect("events can be listed").items
    }
}

/// A running agent on its own instance of the node's runtime.
pub(crate) struct Agent {
    stop: CancellationToken,
    task: JoinHandle<()>,
    runtime: Arc<Observed>,
    process: Option<Arc<ProcessRuntime>>,
}

impl Agent {
    /// Starts an agent for the node, with the defaults of `AgentConfig::new` (relist 1 s,
    /// crash backoff 10 s doubling).
    pub(crate) fn start(env: &Env) -> Agent {
        let (real, process) = env.open();
        let runtime = Arc::new(Observed { inner: real, stops: Mutex::default() });
        let mut config = AgentConfig::new(env.node.clone(), env.agent_root.clone());
        config.addresses = vec![NodeAddress { type_: "InternalIP".into(), address: NODE_IP.to_string() }];
        let agent = NodeAgent::new(env.kit.client(), runtime.clone(), config);
        let stop = env.stop.child_token();
        let token = stop.clone();
        let task = env.agents.spawn(async move {
            agent.run(token).await.expect("the agent runs until stopped");
        });
        Agent { stop, task, runtime, process }
    }

    /// The runtime the agent drives (for listing, exec and logs from the test).
    pub(crate) fn runtime(&self) -> Arc<Observed> {
        self.runtime.clone()
    }

    /// Stops the agent (containers keep running) and closes its runtime instance.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the agent task ends cleanly");
        if let Some(process) = self.process {
            process.shutdown().await;
        }
    }
}

/// A stop the agent asked of the runtime.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    pub(crate) id: String,
    pub(crate) grace: Duration,
    /// How long the runtime took to stop the container.
    pub(crate) took: Duration,
    /// The container's state listed right after the stop returned.
    pub(crate) after: Option<ContainerState>,
}

/// The real runtime, passed through, with the stops the agent asked for recorded: how long
/// each took and how the container ended (the agent removes it right after, so the test
/// could not list it in time).
pub(crate) struct Observed {
    inner: Arc<dyn ContainerRuntime>,
    stops: Mutex<Vec<Stop>>,
}

impl Observed {
    /// The stops so far.
    pub(crate) fn stops(&self) -> Vec<Stop> {
        self.stops.lock().expect("no test thread panics holding the lock").clone()
    }

    /// The containers of pod `uid`.
    pub(crate) async fn containers_of(&self, uid: &str) -> Vec<RuntimeContainer> {
        let all = self.inner.containers().await.expect("containers are listed");
        all.into_iter().filter(|c| c.pod.uid == uid).collect()
    }

    /// The sandboxes of pod `uid`.
    pub(crate) async fn sandboxes_of(&self, uid: &str) -> Vec<Sandbox> {
        let all = self.inner.sandboxes().await.expect("sandboxes are listed");
        all.into_iter().filter(|s| s.pod.uid == uid).collect()
    }
}

#[async_trait]
impl ContainerRuntime for Observed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn ensure_image(&self, image: &str) -> RuntimeResult<()> {
        self.inner.ensure_image(image).await
    }
    async fn run_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<Sandbox> {
        self.inner.run_sandbox(config).await
    }
    async fn remove_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.inner.remove_sandbox(id).await
    }
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> RuntimeResult<String> {
        self.inner.create_container(sandbox_id, config).await
    }
    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.inner.start_container(id).await
    }
    async fn stop_container(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        let started = Instant::now();
        let result = self.inner.stop_container(id, grace).await;
        let took = started.elapsed();
        let listed = self.inner.containers().await.unwrap_or_default();
        let after = listed.into_iter().find(|c| c.id == id).map(|c| c.state);
        let stop = Stop { id: id.to_owned(), grace, took, after };
        self.stops.lock().expect("no test thread panics holding the lock").push(stop);
        result
    }
    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.inner.remove_container(id).await
    }
    async fn sandboxes(&self) -> RuntimeResult<Vec<Sandbox>> {
        self.inner.sandboxes().await
    }
    async fn containers(&self) -> RuntimeResult<Vec<RuntimeContainer>> {
        self.inner.containers().await
    }
    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> RuntimeResult<BoxStream<'static, RuntimeResult<Bytes>>> {
        self.inner.logs(id, options).await
    }
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> RuntimeResult<ExecOutput> {
        self.inner.exec(id, command, timeout).await
    }
}

/// Polls `check` every [`POLL`] until it returns `Some`; panics naming `what` after `within`.
pub(crate) async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not reached within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// A pod `name` in `default` with `policy` and `containers`.
pub(crate) fn pod(name: &str, policy: &str, grace_seconds: i64, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            termination_grace_period_seconds: Some(grace_seconds),
            containers,
            ..Default::default()
        }),
        status: None,
    }
}

/// An exec probe running `script` with `/bin/sh -c` every second; one result flips it. The
/// timeout is generous: a Docker exec on a busy 2-core CI machine may take most of a second.
pub(crate) fn exec_probe(script: &str) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]) }),
        period_seconds: Some(1),
        timeout_seconds: Some(5),
        failure_threshold: Some(1),
        success_threshold: Some(1),
        ..Default::default()
    }
}

/// The runtime's id in a status' `containerID` (`docker://<id>`, `process://<id>`).
pub(crate) fn runtime_id(container_id: &str) -> String {
    match container_id.split_once("://") {
        Some((_, id)) => id.to_owned(),
        None => container_id.to_owned(),
    }
}

/// Runs `script` with `/bin/sh -c` in container `id`, which must succeed.
pub(crate) async fn exec(runtime: &dyn ContainerRuntime, id: &str, script: &str) {
    let command = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let out = runtime.exec(id, &command, EXEC_TIMEOUT).await.expect("the command runs");
    assert_eq!(out.exit_code, 0, "{script:?} in {id}: {}", String::from_utf8_lossy(&out.output));
}

/// The whole log of container `id` (not followed) as text.
pub(crate) async fn log_text(runtime: &dyn ContainerRuntime, id: &str) -> RuntimeResult<String> {
    let chunks: Vec<Bytes> = runtime.logs(id, &LogOptions::default()).await?.try_collect().await?;
    Ok(String::from_utf8_lossy(&chunks.concat()).into_owned())
}

/// Pod condition `type_` of `pod`.
pub(crate) fn condition(pod: &Pod, type_: &str) -> Option<PodCondition> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Whether `pod` is Running with its Ready condition True.
pub(crate) fn running_and_ready(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase == Some("Running") && condition(pod, "Ready").is_some_and(|c| c.status == "True")
}
