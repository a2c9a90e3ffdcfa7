//! Stopping a container: SIGTERM to its process group, SIGKILL after the grace period, and
//! waiting until its exit is known.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::state::ProcessRecord;
use super::{Inner, not_found};
use crate::runtime::{Error, Result};

/// How long stop waits for the process group to go after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often stop looks whether the process has exited.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(10);

impl Inner {
    /// Whether the container's process has ended (or there is no such container).
    fn has_exited(&self, id: &str) -> bool {
        let mut tables = self.lock();
        let Some(entry) = tables.containers.get_mut(id) else { return true };
        if entry.waited && self.cancel.is_cancelled() {
            // Nobody will record its exit any more: look at /proc instead.
            entry.waited = false;
        }
        self.refresh(entry);
        entry.record.process.is_none() || entry.record.exit.is_some()
    }

    async fn wait_exited(&self, id: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.has_exited(id) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(EXIT_POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// The running process of a container, if it runs.
    pub(super) fn running_process(&self, id: &str) -> Result<Option<ProcessRecord>> {
        let mut tables = self.lock();
        let entry = tables.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        self.refresh(entry);
        Ok(match (&entry.record.process, &entry.record.exit) {
            (Some(process), None) => Some(process.clone()),
            _ => None,
        })
    }

    pub(super) async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let Some(process) = self.running_process(id)? else { return Ok(()) };
        tracing::debug!(container = %id, pid = process.pid, ?grace, "stopping container");
        signal_group(process.pid, Signal::SIGTERM);
        if self.wait_exited(id, grace).await {
            return Ok(());
        }
        tracing::info!(container = %id, pid = process.pid, "killing container after grace period");
        signal_group(process.pid, Signal::SIGKILL);
        if self.wait_exited(id, KILL_WAIT).await {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "container {id} (pid {}) still runs {KILL_WAIT:?} after SIGKILL",
            process.pid
        )))
    }
}

/// Signals a process group, which is gone already if it has ended.
pub(super) fn signal_group(pgid: i32, signal: Signal) {
    if let Err(error) = nix::sys::signal::killpg(Pid::from_raw(pgid), signal)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pgid, %signal, %error, "cannot signal process group");
    }
}
