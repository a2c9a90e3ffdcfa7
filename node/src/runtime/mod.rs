//! The container runtime contract the node agent drives, and its implementations.
//!
//! A pod is a *sandbox* (what holds its network namespace and IP) plus its containers. The
//! agent asks the runtime to create, start, stop and remove them, and lists what the runtime
//! holds to learn actual state. Everything a runtime creates carries the labels in
//! [`labels`], so an agent that restarts finds (and adopts or cleans up) what it owns. No
//! registry is reachable: images must already exist locally.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod docker;
pub mod hollow;
pub mod instrumented;
pub mod process;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;

/// Label keys every runtime object carries.
pub mod labels {
    /// The pod's uid.
    pub const POD_UID: &str = "flotilla.dev/pod-uid";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "flotilla.dev/pod-namespace";
    /// The pod's name.
    pub const POD_NAME: &str = "flotilla.dev/pod-name";
    /// The container's name in the pod spec (absent on sandboxes).
    pub const CONTAINER_NAME: &str = "flotilla.dev/container-name";
    /// How many times this container (by name, in this pod) was started before this one.
    pub const RESTART_COUNT: &str = "flotilla.dev/restart-count";
    /// `sandbox` or `container`.
    pub const ROLE: &str = "flotilla.dev/role";
    /// The node agent that owns it.
    pub const NODE: &str = "flotilla.dev/node";
}

/// Errors of a runtime, with the reason the agent reports in container states.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image is not present locally (reason `ErrImagePull`).
    #[error("image {image:?} not found locally: {detail}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// What the runtime said.
        detail: String,
    },
    /// The image reference cannot be parsed (reason `InvalidImageName`).
    #[error("invalid image name {image:?}")]
    InvalidImageName {
        /// The image reference.
        image: String,
    },
    /// The container could not be created or started (reason `CreateContainerError` or
    /// `RunContainerError`, e.g. a command that does not exist).
    #[error("{reason}: {detail}")]
    Container {
        /// The Kubernetes reason.
        reason: &'static str,
        /// What the runtime said.
        detail: String,
    },
    /// No such sandbox or container.
    #[error("{what} {id} not found")]
    NotFound {
        /// `sandbox` or `container`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The runtime itself failed (daemon down, I/O error).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The reason a container waiting because of this error shows (`ErrImagePull`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ImageNotFound { .. } => "ErrImagePull",
            Error::InvalidImageName { .. } => "InvalidImageName",
            Error::Container { reason, .. } => reason,
            Error::NotFound { .. } => "ContainerNotFound",
            Error::Unavailable(_) => "RuntimeUnavailable",
        }
    }
}

/// The result type of runtimes.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which pod a sandbox or container belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// What a sandbox needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxConfig {
    /// The pod.
    pub pod: PodRef,
    /// The pod's hostname.
    pub hostname: String,
    /// Extra labels (the agent's own are added by the runtime).
    pub labels: BTreeMap<String, String>,
    /// The pod's host ports (`containers[].ports[]` with a `hostPort`): the Docker runtime
    /// publishes them on the sandbox; the process runtime needs nothing (its containers use
    /// the host's network, so their ports are host ports already); the hollow one ignores them.
    pub ports: Vec<PortMapping>,
}

/// A container port published on a host port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The port in the pod.
    pub container_port: u16,
    /// The port on the host.
    pub host_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The host address to listen on; `None` is every address.
    pub host_ip: Option<IpAddr>,
}

/// A port's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase name Docker uses (`tcp`, `udp`, `sctp`).
    pub fn lowercase(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A sandbox as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    /// The runtime's id.
    pub id: String,
    /// The pod.
    pub pod: PodRef,
    /// The pod's IP, once it has one.
    pub ip: Option<IpAddr>,
    /// Whether it is running.
    pub running: bool,
}

/// A bind mount into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The path on the host.
    pub host_path: PathBuf,
    /// The path in the container.
    pub container_path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a container needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerConfig {
    /// The pod.
    pub pod: PodRef,
    /// The container's name in the pod spec.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// The entrypoint (`command`); empty keeps the image's.
    pub command: Vec<String>,
    /// The arguments (`args`); empty keeps the image's.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// The working directory, if set.
    pub working_dir: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// How many times a container of this name in this pod started before.
    pub restart_count: u32,
}

/// A container's state as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running since the time given.
    Running {
        /// When it started.
        started_at: Option<Timestamp>,
    },
    /// Finished.
    Exited {
        /// The exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, ...
        reason: String,
        /// When it started.
        started_at: Option<Timestamp>,
        /// When it finished.
        finished_at: Option<Timestamp>,
    },
    /// The runtime cannot say.
    Unknown,
}

/// A container as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    /// The runtime's id.
    pub id: String,
    /// The pod.
    pub pod: PodRef,
    /// The container's name in the pod spec.
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    /// The image's id, when known.
    pub image_id: Option<String>,
    /// Its state.
    pub state: ContainerState,
    /// The restart count it was created with.
    pub restart_count: u32,
}

/// What to read of a container's log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming as the container writes.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
}

/// The outcome of running a command in a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code.
    pub exit_code: i32,
    /// Standard output and error, interleaved.
    pub output: Vec<u8>,
}

/// A container runtime: Docker (through the Engine API), plain processes, or a hollow one.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// A short name for logs and node status (`docker`, `process`).
    fn name(&self) -> &'static str;

    /// Checks the image exists locally.
    async fn ensure_image(&self, image: &str) -> Result<()>;

    /// Creates and starts a pod's sandbox; returns it with its IP.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox>;

    /// Stops and removes a sandbox (its containers must be removed first).
    async fn remove_sandbox(&self, id: &str) -> Result<()>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String>;

    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;

    /// Stops a container: SIGTERM, then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a stopped container.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// Every sandbox this runtime holds for the agent.
    async fn sandboxes(&self) -> Result<Vec<Sandbox>>;

    /// Every container this runtime holds for the agent.
    async fn containers(&self) -> Result<Vec<Container>>;

    /// A container's log.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Runs `command` in a running container (exec probes), waiting at most `timeout`.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput>;
}
