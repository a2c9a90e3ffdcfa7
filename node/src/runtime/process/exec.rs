//! Starting a container's process and running exec commands beside it.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cgroup::ContainerGroups;
use super::launch::{self, Launch, Limits, Namespace};
use super::state::{ContainerRecord, ProcessRecord, io_error};
use super::stop::signal_group;
use super::{Inner, not_found, procfs};
use crate::runtime::{Error, ExecOutput, Result};

/// The most output `exec` collects; the rest is read and dropped.
pub const MAX_EXEC_OUTPUT: usize = 1024 * 1024;

/// How long the exit of a process is held back while its last output reaches the log.
pub(crate) const LOG_DRAIN_WAIT: Duration = Duration::from_millis(500);

fn run_error(detail: String) -> Error {
    Error::Container { reason: "RunContainerError", detail }
}

fn working_dir(inner: &Inner, record: &ContainerRecord) -> PathBuf {
    match &record.working_dir {
        Some(dir) => PathBuf::from(dir),
        None => inner.layout.default_working_dir(&record.id),
    }
}

/// The limits of a container's process (and its exec commands): its cgroups, and the address
/// space limit when no memory cgroup limits it.
fn limits_of(record: &ContainerRecord, groups: Option<&ContainerGroups>) -> Limits {
    Limits {
        cgroup_procs: groups.map(ContainerGroups::procs_files).unwrap_or_default(),
        address_space_bytes: record
            .memory_limit_bytes
            .filter(|_| !groups.is_some_and(ContainerGroups::limits_memory)),
    }
}

/// Starts a created container's process, its log capture and the task awaiting its exit.
pub(super) async fn start(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let record = {
        let tables = inner.lock();
        tables.containers.get(id).ok_or_else(|| not_found("container", id))?.record.clone()
    };
    if record.process.is_some() {
        return Err(run_error(format!("container {id} was already started")));
    }
    let groups = inner
        .cgroups
        .create(id, record.cpu_limit_millis, record.memory_limit_bytes)
        .map_err(|e| run_error(format!("container {id}: setting up its cgroup: {}", e.detail())))?;
    if let Some(groups) = &groups {
        // Recorded before any process joins, so that whoever removes the container finds them.
        let recorded = match inner.lock().containers.get_mut(id) {
            Some(entry) => {
                entry.record.cgroups = Some(groups.clone());
                if let Err(error) = inner.layout.write_container(&entry.record) {
                    tracing::warn!(container = %id, %error, "cannot record the container's cgroups");
                }
                true
            }
            None => false,
        };
        if !recorded {
            inner.cgroups.remove(id, groups).await;
            return Err(not_found("container", id));
        }
    }
    let limits = limits_of(&record, groups.as_ref());
    // The process's ends of its FIFOs, read-write so that they count as readers too: the
    // process never gets SIGPIPE while the agent is away. They are opened before the pump
    // opens its ends, which would otherwise see no writer and end at once.
    let open_rw = |path: PathBuf| {
        OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io_error("opening", &path, e))
    };
    let stdout = open_rw(inner.layout.stdout_fifo(id))?;
    let stderr = open_rw(inner.layout.stderr_fifo(id))?;
    let log_done = {
        let mut tables = inner.lock();
        let entry = tables.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        inner.start_pump(entry)?;
        entry.log_done.subscribe()
    };
    let namespace =
        if record.mounts.is_empty() { Namespace::Host } else { Namespace::Private(record.mounts.clone()) };
    let launched = launch::launch(
        &inner.handle,
        Launch {
            argv: record.argv(),
            env: launch::effective_env(&record.env, &inner.agent_path),
            working_dir: working_dir(inner, &record),
            limits,
            namespace,
            stdout: stdout.into(),
            stderr: stderr.into(),
            kill_on_drop: false,
        },
    )
    .await;
    let child = match launched.and_then(|child| child.id().map(|pid| (child, pid)).ok_or_else(no_pid)) {
        Ok(child) => child,
        Err(detail) => {
            // The pump ends by itself as the FIFOs' writers are gone; it is stopped anyway.
            let groups = inner.lock().containers.get_mut(id).and_then(|entry| {
                if let Some((cancel, _)) = entry.pump.take() {
                    cancel.cancel();
                }
                entry.record.cgroups.take()
            });
            if let Some(groups) = groups {
                inner.cgroups.remove(id, &groups).await;
            }
            return Err(run_error(format!("container {id}: {detail}")));
        }
    };
    let (child, pid) = child;
    let pid = i32::try_from(pid).map_err(|_| run_error(format!("container {id}: pid {pid} out of range")))?;
    // Read before anyone waits for the child, so it is at least a zombie and readable.
    let start_ticks = procfs::read_stat(pid).map_or(0, |s| s.start_ticks);
    let process = ProcessRecord {
        pid,
        start_ticks,
        started_at: Timestamp::now(),
        mount_namespace: !record.mounts.is_empty(),
    };
    {
        let mut tables = inner.lock();
        let Some(entry) = tables.containers.get_mut(id) else {
            // Removed while starting: do not leave its process behind.
            signal_group(pid, Signal::SIGKILL);
            return Err(not_found("container", id));
        };
        entry.record.process = Some(process);
        entry.waited = true;
        if let Err(error) = inner.layout.write_container(&entry.record) {
            tracing::warn!(container = %id, %error, "cannot record start; a restarted agent will not adopt it");
        }
    }
    tracing::debug!(container = %id, pid, "started container");
    let task = wait_for_exit(inner.clone(), id.to_string(), child, log_done, inner.cancel.child_token());
    inner.tasks.spawn(task);
    Ok(())
}

fn no_pid() -> String {
    "the process ended before its pid was known".to_string()
}

/// Waits for the process to exit, then for its last output to reach the log (for at most
/// [`LOG_DRAIN_WAIT`]: children it left behind may hold its FIFOs open), and records the exit.
/// So once a container shows as exited, its log is normally complete.
async fn wait_for_exit(
    inner: Arc<Inner>,
    id: String,
    mut child: Child,
    mut log_done: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let status = tokio::select! {
        biased;
        // The child keeps running; a runtime on the same root adopts it.
        () = cancel.cancelled() => return,
        status = child.wait() => status,
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => return,
        _ = tokio::time::timeout(LOG_DRAIN_WAIT, log_done.wait_for(|done| *done)) => {}
    }
    inner.record_exit(&id, status);
}

/// Runs `command` beside a running container; see the module docs.
pub(super) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    let not_running = || Error::Container {
        reason: "ContainerNotRunning",
        detail: format!("cannot exec in container {id}: it is not running"),
    };
    let process = inner.running_process(id)?.ok_or_else(not_running)?;
    let record = {
        let tables = inner.lock();
        tables.containers.get(id).ok_or_else(|| not_found("container", id))?.record.clone()
    };
    let namespace = if process.mount_namespace {
        let path = PathBuf::from(format!("/proc/{}/ns/mnt", process.pid));
        let ns = std::fs::File::open(&path).map_err(|e| io_error("opening", &path, e))?;
        // Checked after opening: the file then surely belongs to the container's process.
        if !procfs::is_alive(process.pid, process.start_ticks) {
            return Err(not_running());
        }
        Namespace::Join(ns)
    } else {
        Namespace::Host
    };
    let pipe_error =
        |e| Error::Unavailable(format!("creating an output pipe for exec in container {id}: {e}"));
    let (reader, writer) = std::io::pipe().map_err(pipe_error)?;
    let stdout = writer.try_clone().map_err(pipe_error)?;
    let mut child = launch::launch(
        &inner.handle,
        Launch {
            argv: command.to_vec(),
            env: launch::effective_env(&record.env, &inner.agent_path),
            working_dir: working_dir(inner, &record),
            limits: limits_of(&record, record.cgroups.as_ref()),
            namespace,
            stdout: stdout.into(),
            stderr: writer.into(),
            kill_on_drop: true,
        },
    )
    .await
    .map_err(|detail| run_error(format!("exec in container {id}: {detail}")))?;
    let pid = child.id();
    let mut output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(pipe_error)?;
    let run = async { tokio::join!(read_capped(&mut output), child.wait()) };
    match tokio::time::timeout(timeout, run).await {
        Ok((output, status)) => {
            use std::os::unix::process::ExitStatusExt;
            let status =
                status.map_err(|e| Error::Unavailable(format!("waiting for exec in container {id}: {e}")))?;
            let exit_code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1);
            Ok(ExecOutput { exit_code, output })
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                signal_group(pid, Signal::SIGKILL);
            }
            Err(Error::Container {
                reason: "DeadlineExceeded",
                detail: format!("exec {command:?} in container {id} did not finish within {timeout:?}"),
            })
        }
    }
}

/// Reads until every writer has closed, keeping at most [`MAX_EXEC_OUTPUT`] bytes.
async fn read_capped(pipe: &mut pipe::Receiver) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT - out.len();
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
