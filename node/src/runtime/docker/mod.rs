//! [`ContainerRuntime`] on Docker Engine, through its HTTP API ([bollard]).
//!
//! # Pods
//! A pod is a *sandbox* container plus its containers. The sandbox runs a pause-like process
//! from a local image ([`DockerConfig::sandbox_image`], built by
//! [`DockerRuntime::ensure_sandbox_image`] from the host's static busybox when missing, since
//! nothing can be pulled) on the configured Docker network; the pod's IP is the sandbox's IP
//! there. Containers join the sandbox's network and IPC namespaces (`container:<sandbox id>`),
//! so they share the pod's IP, `localhost`, and hostname (Docker gives a container joining
//! another's network that one's hostname). They get the config's command (as entrypoint),
//! args (as cmd), env, working directory, bind mounts, and CPU and memory limits as cgroup
//! limits (`NanoCpus`, `Memory` with swap capped at the same value).
//!
//! # Host ports
//! The sandbox publishes the pod's [`PortMapping`](crate::runtime::PortMapping)s
//! (`hostPort`s) as its `ExposedPorts` and `PortBindings`: Docker forwards
//! `<hostIP or every address>:<hostPort>` to the sandbox's `containerPort`, where the pod's
//! containers listen since they share its network namespace. Publishing needs a network that
//! supports it (the default `bridge` does); a host port already taken on the host makes the
//! sandbox fail to start (`CreatePodSandboxError` with the daemon's message). Ports without a
//! `hostPort` are not published: they are reachable on the pod IP from the host and from
//! other pods on the Docker network.
//!
//! # Labels and adoption
//! Everything created carries the [`labels`](crate::runtime::labels): pod uid, namespace and
//! name, container name, restart count, role (`sandbox` or `container`) and the node name.
//! [`sandboxes`](ContainerRuntime::sandboxes) and [`containers`](ContainerRuntime::containers)
//! list only objects labelled with this runtime's node name, so an agent that restarts sees
//! exactly what it owned (and adopts or removes it), and two agents sharing one daemon never
//! see each other's. Names (`flotilla_<ns>_<pod>_<container>_<restart>_<uid8>`, and `..._POD_...`
//! for the sandbox) make duplicates impossible: creating the same attempt twice conflicts.
//! [`run_sandbox`](ContainerRuntime::run_sandbox) is idempotent: it returns the pod's running
//! sandbox if there is one, and replaces a stopped one.
//!
//! # Errors
//! - An image reference that breaks Docker's grammar is
//!   [`InvalidImageName`](crate::runtime::Error::InvalidImageName); a missing image is
//!   [`ImageNotFound`](crate::runtime::Error::ImageNotFound) (`ErrImagePull`): nothing is pulled.
//! - A create refused by the daemon (e.g. a bind mount whose host path does not exist: the
//!   `Mounts` API refuses it rather than creating an empty directory as `Binds` would) is
//!   `CreateContainerError` with the daemon's message; a config that cannot be expressed
//!   (limits out of range, non-UTF-8 paths) is `CreateContainerConfigError`.
//! - A start that fails (e.g. `executable file not found`) is `RunContainerError` with the
//!   daemon's message, and the container then reports `Exited` with reason
//!   `ContainerCannotRun`.
//! - Exit reasons are `Completed` (0), `Error`, and `OOMKilled`.
//!
//! # Stop, logs, exec
//! Stop sends SIGTERM (or the image's stop signal) and SIGKILL after the grace period, rounded
//! up to whole seconds as Docker takes it; sandboxes are removed with force (killed at once).
//! Logs come from Docker's log driver (`json-file` or `local`; `since` has whole-second
//! precision, rounded down). Exec collects stdout and stderr interleaved and fails with reason
//! `ExecTimeout` when the command outlives its timeout (Docker cannot kill an exec; the process
//! is left to finish or to die with its container).
//!
//! # Listing
//! Docker's list lacks exit codes and times, so a listed container is inspected, but only
//! when the list shows it in a state other than the one it had when last inspected: a node
//! whose containers did not change costs one list call per
//! [`containers`](ContainerRuntime::containers) and no inspects.
//!
//! # Testing
//! [`crate::testing`] finds the daemon (skipping or, with `FLOTILLA_REQUIRE_DOCKER=1`,
//! failing without one), builds a busybox test image and cleans up by node label; the suite
//! in `node/tests/docker/` runs this runtime against the real daemon.
//!
//! # Not done
//! - Pulls (there is no registry) and `ImagePullBackOff` timing, which is the agent's.
//! - Killing an exec that timed out, user namespaces, security options (capabilities,
//!   seccomp, read-only root), a shared PID namespace, and per-container hostnames.
//! - Operations by id do not check the node label: the agent passes ids it listed.

mod container;
pub(crate) mod error;
pub(crate) mod image;
mod inspected;
mod reference;
mod sandbox;
mod spec;
mod state;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use self::error::{Error, Result};
use crate::runtime::{
    Container, ContainerConfig, ContainerRuntime, ExecOutput, LogOptions, Result as RuntimeResult, Sandbox,
    SandboxConfig,
};

/// The sandbox image used unless configured otherwise.
pub const DEFAULT_SANDBOX_IMAGE: &str = "flotilla/pause:1";
/// The Docker network sandboxes join unless configured otherwise.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The daemon's local socket, used when [`DockerConfig::host`] is `None`. Named here rather
/// than read from `DOCKER_HOST`: configuration is passed explicitly.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Where Debian's `busybox-static` installs busybox.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// How long [`DockerRuntime::connect`] waits for the daemon to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The sandbox's command when Flotilla builds its image: sleep for 68 years.
const PAUSE_CMD: &[&str] = &["/bin/busybox", "sleep", "2147483647"];

/// How to reach Docker and what to create there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerConfig {
    /// The node this agent runs as; it labels everything created, and listing only sees it.
    pub node_name: String,
    /// The image of sandboxes (a pause-like process running its own command). When it is
    /// missing, [`DockerRuntime::ensure_sandbox_image`] builds Flotilla's busybox pause image
    /// under this tag; load another image under it beforehand to use that one instead.
    pub sandbox_image: String,
    /// The Docker network sandboxes join.
    pub network: String,
    /// The daemon's endpoint (`unix:///...`, `tcp://...`); `None` is [`DEFAULT_HOST`].
    pub host: Option<String>,
    /// The static busybox the sandbox image is built from when missing.
    pub busybox: PathBuf,
}

impl DockerConfig {
    /// The defaults for node `node_name`: [`DEFAULT_SANDBOX_IMAGE`], [`DEFAULT_NETWORK`], the
    /// local socket, [`DEFAULT_BUSYBOX`].
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_owned(),
            network: DEFAULT_NETWORK.to_owned(),
            host: None,
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
        }
    }
}

/// The Docker runtime: cheap to clone (one shared client).
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    config: Arc<DockerConfig>,
    /// Inspect results of listed containers, shared by the clones.
    inspected: Arc<inspected::Inspected>,
}

impl DockerRuntime {
    /// Connects to the daemon, agreeing on an API version both speak.
    pub async fn connect(config: DockerConfig) -> Result<Self> {
        let host = config.host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let client = Docker::connect_with_host(&host)
            .map_err(|source| Error::Connect { host: host.clone(), source })?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, client.negotiate_version()).await {
            Ok(negotiated) => negotiated.map_err(|source| Error::Unreachable { host, source })?,
            Err(_elapsed) => {
                return Err(Error::Unreachable { host, source: bollard::errors::Error::RequestTimeoutError });
            }
        };
        Ok(Self::with_client(docker, config))
    }

    /// A runtime over an existing client (whose API version is already agreed).
    pub fn with_client(docker: Docker, config: DockerConfig) -> Self {
        Self { docker, config: Arc::new(config), inspected: Arc::default() }
    }

    /// Checks the daemon answers.
    pub async fn ping(&self) -> Result<()> {
        let host = self.config.host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned());
        self.docker.ping().await.map(drop).map_err(|source| Error::Unreachable { host, source })
    }

    /// The client, for what the runtime contract does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The configuration.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// Builds the sandbox image from the host's static busybox unless it exists.
    pub async fn ensure_sandbox_image(&self) -> Result<()> {
        let spec = image::BusyboxImage {
            tag: &self.config.sandbox_image,
            busybox: &self.config.busybox,
            applets: &["sleep"],
            cmd: PAUSE_CMD,
        };
        image::ensure(&self.docker, &spec).await
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ensure_image(&self, image: &str) -> RuntimeResult<()> {
        self.ensure_image_impl(image).await
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<Sandbox> {
        self.run_sandbox_impl(config).await
    }

    async fn remove_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.remove_sandbox_impl(id).await
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> RuntimeResult<String> {
        self.create_container_impl(sandbox_id, config).await
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.start_container_impl(id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        self.stop_container_impl(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.remove_container_impl(id).await
    }

    async fn sandboxes(&self) -> RuntimeResult<Vec<Sandbox>> {
        self.sandboxes_impl().await
    }

    async fn containers(&self) -> RuntimeResult<Vec<Container>> {
        self.containers_impl().await
    }

    async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> RuntimeResult<BoxStream<'static, RuntimeResult<Bytes>>> {
        self.logs_impl(id, options).await
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> RuntimeResult<ExecOutput> {
        self.exec_impl(id, command, timeout).await
    }
}
