//! The process runtime: each container's command runs as a child process on the host. It is
//! the embedded default where no Docker is present.
//!
//! # Design
//! - **Sandboxes** are directories; a sandbox's IP is the host's (`ProcessConfig::host_ip`):
//!   processes share the host network, so a port a container listens on is a host port
//!   already and the sandbox's [`PortMapping`](super::PortMapping)s (`hostPort`s) need no
//!   publishing (a `containerPort` other than its `hostPort` is not remapped).
//! - **Images** are not run from: an empty or any other reference is accepted and ignored,
//!   except one starting with `/`, which must be an existing path (else `ErrImagePull`).
//!   The command line is `command ++ args`; there is no image entrypoint to fall back on, so
//!   both empty is `CreateContainerConfigError`, and a program that cannot be found is
//!   `RunContainerError` at start.
//! - **Environment**: exactly the container's variables, plus the agent's `PATH` (or the
//!   usual `/usr/local/sbin:...:/bin`) when the container sets none; nothing else of the
//!   agent's environment. **Working directory**: the given one (it must exist), else a fresh
//!   `work/` folder in the container's state directory.
//! - **Process groups**: each container process leads its own process group; stop sends
//!   SIGTERM to the group, SIGKILL after the grace period.
//! - **Logs**: the process writes to two FIFOs in its state directory, which it holds open
//!   read-write so that it never gets SIGPIPE while no agent reads (it blocks when the pipe
//!   buffer fills instead). A pump task writes what it reads as CRI records into
//!   `container.log` (see `cri_log`). A restarted runtime reopens the FIFOs and goes on.
//!   The log is not rotated.
//! - **State** lives in JSON files with a format version under `root_dir` (see `state`), so
//!   a new `ProcessRuntime` on the same root lists the same sandboxes and containers and
//!   adopts processes that still run: a process is identified by its pid *and* its start
//!   time from `/proc/<pid>/stat`, so a reused pid is not mistaken for it.
//! - **Exit codes** are recorded when the runtime is the process's parent (the exit code, or
//!   128 + signal). An adopted process is not our child and its status cannot be collected:
//!   when it is gone the container reports exit code [`UNKNOWN_EXIT_CODE`] with reason
//!   [`UNKNOWN_EXIT_REASON`] (as the kubelet does for a container it lost), finished at the
//!   time the runtime noticed.
//! - **Start failures** leave the container `Created` (as Docker does); the error says why.
//! - **Removal** is forced, as in CRI: removing a running container kills it first, removing
//!   a sandbox removes its containers. Unknown ids are `NotFound`.
//! - **Exit and logs**: the exit of a process this runtime started is recorded once its log
//!   pump has drained the FIFOs (or after half a second, if children it left behind keep them
//!   open), so a container that shows as exited normally has its whole output in its log.
//!
//! # Limits: what is enforced
//! - CPU: `cpu_limit_millis` becomes a CFS quota in a cgroup of the container's own (100 ms
//!   period, `millis * 100` µs quota, as the kubelet converts it) where the host has a
//!   writable cgroup `cpu` controller (v2, or v1): in practice when the agent runs as root.
//!   Elsewhere it is **not enforced**: the container runs unlimited, and the runtime says so
//!   once with a warning and in [`ProcessRuntime::limit_enforcement`]. See `cgroup`.
//! - Memory: `memory_limit_bytes` becomes a cgroup memory limit in the same way where the
//!   `memory` controller is writable (going over it OOM-kills the container: exit code 137,
//!   reason `OOMKilled`). Elsewhere it becomes `RLIMIT_AS` (address space, not resident
//!   memory: allocations beyond it fail, there is no OOM kill; runtimes that reserve large
//!   address ranges may need a higher limit).
//! - Both are applied by `/bin/sh` right before it execs the program (it writes its own pid
//!   into the groups' `cgroup.procs`, or runs `ulimit -v`), because the workspace forbids the
//!   `unsafe` a `pre_exec` hook needs; the program never runs outside its groups. Exec
//!   commands get the same limits. Removing a container kills what is left in its groups and
//!   removes them.
//! - Mounts: as root, a container with mounts runs in a private mount namespace where each
//!   host path is bind-mounted at its container path (the target is created on the host
//!   filesystem if missing; read-only mounts are remounted read-only). Without root,
//!   creating a container with mounts fails with `CreateContainerConfigError`.
//! - No other isolation: same users, PIDs, network and filesystem as the agent.
//!
//! # Exec
//! `exec` runs the command as another host process with the container's environment,
//! working directory and limits (it joins the container's cgroups, or gets its address space
//! limit), in the container's mount namespace when it has one (joined with `setns`).
//! Standard output and error are collected together (at most [`MAX_EXEC_OUTPUT`] bytes). A
//! command that cannot start is `RunContainerError`; one that outlives the timeout has its
//! process group killed and gives `DeadlineExceeded`.

mod cgroup;
mod cri_log;
mod exec;
mod launch;
mod log_io;
mod procfs;
mod state;
mod stop;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::state::{ContainerRecord, ExitRecord, Layout, SandboxRecord, io_error};
use super::{
    Container, ContainerConfig, ContainerRuntime, ContainerState, Error, ExecOutput, LogOptions, Result,
    Sandbox, SandboxConfig, labels,
};

pub use self::cgroup::{CgroupVersion, Enforcement, LimitEnforcement};
pub use self::exec::MAX_EXEC_OUTPUT;
pub use self::stop::KILL_WAIT;

/// The exit code reported for a container whose process ended while nobody could collect
/// its status (an adopted process).
pub const UNKNOWN_EXIT_CODE: i32 = 137;

/// The reason reported with [`UNKNOWN_EXIT_CODE`].
pub const UNKNOWN_EXIT_REASON: &str = "ContainerStatusUnknown";

/// What the process runtime needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    /// The node this agent runs (the `flotilla.dev/node` label).
    pub node_name: String,
    /// Where sandboxes, containers, their state and logs are kept.
    pub root_dir: PathBuf,
    /// The host's IP, which every sandbox reports as its pod IP.
    pub host_ip: IpAddr,
}

/// Runs containers as plain host processes; see the [module docs](self).
#[derive(Debug)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProcessConfig,
    layout: Layout,
    /// The agent's `PATH`, for processes that set none.
    agent_path: String,
    handle: Handle,
    is_root: bool,
    cgroups: cgroup::Cgroups,
    tables: Mutex<Tables>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug, Default)]
struct Tables {
    sandboxes: BTreeMap<String, SandboxRecord>,
    containers: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    record: ContainerRecord,
    /// This runtime is the process's parent and a task waits for its exit.
    waited: bool,
    /// `true` when no pump writes to the log (anymore): following readers stop.
    log_done: watch::Sender<bool>,
    pump: Option<(CancellationToken, JoinHandle<()>)>,
}

impl ProcessRuntime {
    /// Opens (or creates) the runtime's state under `config.root_dir` and adopts the
    /// processes of its containers that still run. Must be called within a Tokio runtime.
    pub fn new(config: ProcessConfig) -> Result<Self> {
        let handle = Handle::try_current()
            .map_err(|_| Error::Unavailable("the process runtime needs a Tokio runtime".to_string()))?;
        let layout = Layout::new(config.root_dir.clone());
        layout.create()?;
        let mut tables = Tables::default();
        for record in layout.load_sandboxes()? {
            tables.sandboxes.insert(record.id.clone(), record);
        }
        let cgroups = cgroup::Cgroups::detect(&config.node_name, &config.root_dir);
        let inner = Arc::new(Inner {
            cgroups,
            agent_path: std::env::var("PATH").unwrap_or_else(|_| launch::DEFAULT_PATH.to_string()),
            is_root: nix::unistd::geteuid().is_root(),
            config,
            layout,
            handle,
            tables: Mutex::new(Tables::default()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        for record in inner.layout.load_containers()? {
            let id = record.id.clone();
            let mut entry = Entry { record, waited: false, log_done: watch::Sender::new(true), pump: None };
            inner.refresh(&mut entry);
            if let (Some(process), None) = (&entry.record.process, &entry.record.exit) {
                tracing::info!(container = %id, pid = process.pid, "adopting running container");
                if let Err(error) = inner.start_pump(&mut entry) {
                    tracing::warn!(container = %id, %error, "cannot capture logs of adopted container");
                }
            }
            tables.containers.insert(id, entry);
        }
        *inner.lock() = tables;
        Ok(ProcessRuntime { inner })
    }

    /// How containers' CPU and memory limits are enforced on this host (cgroups where
    /// writable; see the [module docs](self)).
    pub fn limit_enforcement(&self) -> &LimitEnforcement {
        self.inner.cgroups.enforcement()
    }

    /// Stops the runtime's tasks (log capture, exit watching) and waits for them. The
    /// containers' processes keep running; a new runtime on the same root adopts them.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        // The tasks hold the inner state; without this they would outlive the runtime.
        self.inner.cancel.cancel();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves whole records behind, never torn ones.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn labels(
        &self,
        pod: &super::PodRef,
        role: &str,
        extra: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = extra.clone();
        out.insert(labels::POD_UID.to_string(), pod.uid.clone());
        out.insert(labels::POD_NAMESPACE.to_string(), pod.namespace.clone());
        out.insert(labels::POD_NAME.to_string(), pod.name.clone());
        out.insert(labels::ROLE.to_string(), role.to_string());
        out.insert(labels::NODE.to_string(), self.config.node_name.clone());
        out
    }

    /// Notices that a process this runtime does not wait for has gone, and records it.
    fn refresh(&self, entry: &mut Entry) {
        let Some(process) = &entry.record.process else { return };
        if entry.record.exit.is_some() || entry.waited || procfs::is_alive(process.pid, process.start_ticks) {
            return;
        }
        entry.record.exit = Some(ExitRecord {
            exit_code: UNKNOWN_EXIT_CODE,
            reason: UNKNOWN_EXIT_REASON.to_string(),
            finished_at: Some(Timestamp::now()),
        });
        if let Err(error) = self.layout.write_container(&entry.record) {
            tracing::warn!(container = %entry.record.id, %error, "cannot record exit");
        }
    }

    /// Starts copying the container's FIFOs into its log.
    fn start_pump(self: &Arc<Self>, entry: &mut Entry) -> Result<()> {
        let id = entry.record.id.clone();
        let stdout = log_io::open_fifo_reader(&self.layout.stdout_fifo(&id))?;
        let stderr = log_io::open_fifo_reader(&self.layout.stderr_fifo(&id))?;
        let cancel = self.cancel.child_token();
        entry.log_done.send_replace(false);
        let task = log_io::pump(
            id.clone(),
            stdout,
            stderr,
            self.layout.container_log(&id),
            cancel.clone(),
            entry.log_done.clone(),
        );
        entry.pump = Some((cancel, self.tasks.spawn(task)));
        Ok(())
    }

    /// Records how a process this runtime waited for ended.
    fn record_exit(&self, id: &str, status: std::io::Result<std::process::ExitStatus>) {
        use std::os::unix::process::ExitStatusExt;
        let exit_code = match status {
            Ok(s) => s.code().or_else(|| s.signal().map(|sig| 128 + sig)).unwrap_or(UNKNOWN_EXIT_CODE),
            Err(error) => {
                tracing::warn!(container = %id, %error, "cannot collect exit status");
                UNKNOWN_EXIT_CODE
            }
        };
        let mut tables = self.lock();
        let Some(entry) = tables.containers.get_mut(id) else { return };
        entry.waited = false;
        let oom_killed =
            exit_code == OOM_EXIT_CODE && entry.record.cgroups.as_ref().is_some_and(|g| g.oom_killed());
        entry.record.exit = Some(ExitRecord {
            exit_code,
            reason: if oom_killed { OOM_KILLED } else { exit_reason(exit_code) }.to_string(),
            finished_at: Some(Timestamp::now()),
        });
        tracing::debug!(container = %id, exit_code, "container exited");
        if let Err(error) = self.layout.write_container(&entry.record) {
            tracing::warn!(container = %id, %error, "cannot record exit");
        }
    }
}

/// The exit code of a process killed by SIGKILL, as the OOM killer does.
const OOM_EXIT_CODE: i32 = 128 + 9;
/// The reason of a container whose memory cgroup saw an OOM kill.
const OOM_KILLED: &str = "OOMKilled";

/// The reason a container with this exit code shows.
fn exit_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 { "Completed" } else { "Error" }
}

fn not_found(what: &'static str, id: &str) -> Error {
    Error::NotFound { what, id: id.to_string() }
}

fn config_error(detail: String) -> Error {
    Error::Container { reason: "CreateContainerConfigError", detail }
}

/// Checks an image reference: only a path (starting with `/`) means something here.
fn check_image(image: &str) -> Result<()> {
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidImageName { image: image.to_string() });
    }
    if image.starts_with('/') && !std::path::Path::new(image).exists() {
        return Err(Error::ImageNotFound {
            image: image.to_string(),
            detail: "no such path on this host".to_string(),
        });
    }
    Ok(())
}

/// A container's state from its record.
fn state_of(record: &ContainerRecord) -> ContainerState {
    match (&record.process, &record.exit) {
        (None, _) => ContainerState::Created,
        (Some(process), None) => ContainerState::Running { started_at: Some(process.started_at) },
        (Some(process), Some(exit)) => ContainerState::Exited {
            exit_code: exit.exit_code,
            reason: exit.reason.clone(),
            started_at: Some(process.started_at),
            finished_at: exit.finished_at,
        },
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        check_image(image)
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let inner = &self.inner;
        let id = inner.layout.create_object_dir(&inner.layout.sandboxes_dir())?;
        let labels = inner.labels(&config.pod, "sandbox", &config.labels);
        let record = SandboxRecord::new(id.clone(), config, labels);
        inner.layout.write_sandbox(&record)?;
        inner.lock().sandboxes.insert(id.clone(), record);
        tracing::debug!(sandbox = %id, pod = %config.pod.name, "created sandbox");
        Ok(Sandbox { id, pod: config.pod.clone(), ip: Some(inner.config.host_ip), running: true })
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let leftovers: Vec<String> = {
            let tables = self.inner.lock();
            if !tables.sandboxes.contains_key(id) {
                return Err(not_found("sandbox", id));
            }
            tables
                .containers
                .values()
                .filter(|e| e.record.sandbox_id == id)
                .map(|e| e.record.id.clone())
                .collect()
        };
        // As CRI's RemovePodSandbox does: containers still in it are killed and removed.
        for container in leftovers {
            self.remove_container(&container).await?;
        }
        self.inner.layout.remove_dir(&self.inner.layout.sandbox_dir(id))?;
        self.inner.lock().sandboxes.remove(id);
        Ok(())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let inner = &self.inner;
        if !inner.lock().sandboxes.contains_key(sandbox_id) {
            return Err(not_found("sandbox", sandbox_id));
        }
        check_image(&config.image)?;
        let who = format!("container {:?} of pod {}/{}", config.name, config.pod.namespace, config.pod.name);
        if config.command.is_empty() && config.args.is_empty() {
            return Err(config_error(format!(
                "{who} has neither command nor args, and the process runtime has no image entrypoint"
            )));
        }
        for m in &config.mounts {
            let mount = format!("mount {} at {}", m.host_path.display(), m.container_path.display());
            if !inner.is_root {
                return Err(config_error(format!("{who}: {mount} needs root, and the agent is not root")));
            }
            if !m.container_path.is_absolute() {
                return Err(config_error(format!("{who}: {mount}: the container path must be absolute")));
            }
            if !m.host_path.exists() {
                return Err(config_error(format!("{who}: {mount}: the host path does not exist")));
            }
        }
        let id = inner.layout.create_object_dir(&inner.layout.containers_dir())?;
        let labels = {
            let mut extra = BTreeMap::new();
            extra.insert(labels::CONTAINER_NAME.to_string(), config.name.clone());
            extra.insert(labels::RESTART_COUNT.to_string(), config.restart_count.to_string());
            inner.labels(&config.pod, "container", &extra)
        };
        let record = ContainerRecord::new(id.clone(), sandbox_id.to_string(), config, labels);
        let prepare = || -> Result<()> {
            for fifo in [inner.layout.stdout_fifo(&id), inner.layout.stderr_fifo(&id)] {
                nix::unistd::mkfifo(fifo.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| io_error("creating fifo", &fifo, e.into()))?;
            }
            let work = inner.layout.default_working_dir(&id);
            std::fs::create_dir(&work).map_err(|e| io_error("creating", &work, e))?;
            inner.layout.write_container(&record)
        };
        if let Err(e) = prepare() {
            // Best effort: a directory without a record is skipped when loading anyway.
            let _ = inner.layout.remove_dir(&inner.layout.container_dir(&id));
            return Err(e);
        }
        let entry = Entry { record, waited: false, log_done: watch::Sender::new(true), pump: None };
        inner.lock().containers.insert(id.clone(), entry);
        tracing::debug!(container = %id, sandbox = %sandbox_id, name = %config.name, "created container");
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        exec::start(&self.inner, id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.inner.stop(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        // As CRI's RemoveContainer does: a running container is killed first.
        self.inner.stop(id, Duration::ZERO).await?;
        let Some(entry) = self.inner.lock().containers.remove(id) else {
            return Err(not_found("container", id));
        };
        if let Some((cancel, task)) = entry.pump {
            cancel.cancel();
            if let Err(error) = task.await {
                tracing::warn!(container = %id, %error, "log capture task failed");
            }
        }
        if let Some(groups) = &entry.record.cgroups {
            self.inner.cgroups.remove(id, groups).await;
        }
        self.inner.layout.remove_dir(&self.inner.layout.container_dir(id))
    }

    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        let ip = Some(self.inner.config.host_ip);
        let tables = self.inner.lock();
        Ok(tables
            .sandboxes
            .values()
            .map(|r| Sandbox { id: r.id.clone(), pod: r.pod.to_pod_ref(), ip, running: true })
            .collect())
    }

    async fn containers(&self) -> Result<Vec<Container>> {
        let mut tables = self.inner.lock();
        Ok(tables
            .containers
            .values_mut()
            .map(|entry| {
                self.inner.refresh(entry);
                let r = &entry.record;
                Container {
                    id: r.id.clone(),
                    pod: r.pod.to_pod_ref(),
                    name: r.name.clone(),
                    image: r.image.clone(),
                    image_id: r.image.starts_with('/').then(|| r.image.clone()),
                    state: state_of(r),
                    restart_count: r.restart_count,
                }
            })
            .collect())
    }

    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        let done = {
            let tables = self.inner.lock();
            let entry = tables.containers.get(id).ok_or_else(|| not_found("container", id))?;
            entry.log_done.subscribe()
        };
        log_io::read(&self.inner.layout.container_log(id), options, done)
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        exec::exec(&self.inner, id, command, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::state::ProcessRecord;
    use super::*;

    #[test]
    fn exit_reasons() {
        assert_eq!(exit_reason(0), "Completed");
        assert_eq!(exit_reason(1), "Error");
        assert_eq!(exit_reason(137), "Error");
    }

    #[test]
    fn images_are_ignored_unless_paths() {
        assert!(check_image("").is_ok());
        assert!(check_image("busybox:1.36").is_ok());
        assert!(check_image("/").is_ok());
        assert_eq!(check_image("/no/such/image/path").map_err(|e| e.reason()), Err("ErrImagePull"));
        assert_eq!(check_image("bad name").map_err(|e| e.reason()), Err("InvalidImageName"));
    }

    #[test]
    fn state_follows_the_record() {
        let config = ContainerConfig {
            pod: super::super::PodRef { uid: "u".into(), namespace: "ns".into(), name: "p".into() },
            name: "c".into(),
            image: String::new(),
            command: vec!["true".into()],
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            restart_count: 0,
        };
        let mut record = ContainerRecord::new("id".into(), "sb".into(), &config, BTreeMap::new());
        assert_eq!(state_of(&record), ContainerState::Created);
        let started_at: Timestamp = "2025-01-01T00:00:00Z".parse().expect("timestamp");
        record.process = Some(ProcessRecord { pid: 1, start_ticks: 1, started_at, mount_namespace: false });
        assert_eq!(state_of(&record), ContainerState::Running { started_at: Some(started_at) });
        let finished_at = Some(started_at + Duration::from_secs(1));
        record.exit = Some(ExitRecord { exit_code: 2, reason: "Error".into(), finished_at });
        assert_eq!(
            state_of(&record),
            ContainerState::Exited {
                exit_code: 2,
                reason: "Error".into(),
                started_at: Some(started_at),
                finished_at
            }
        );
    }
}
