//! The processes the harness starts: `flotilla up --runtime none` (the control plane, no
//! agent of its own) and `flotilla agent` (the node agent under test), each its own process
//! so that `/proc/<pid>` shows only its own CPU time and memory.
//!
//! A [`Proc`] kills its process when dropped (`kill_on_drop`), so an error or a panic in the
//! harness never leaves one behind; [`Proc::stop`] is the graceful path (SIGTERM, then SIGKILL
//! after a deadline). Everything listens on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a started process may take to print its startup summary.
const STARTUP_LIMIT: Duration = Duration::from_secs(120);
/// How long a process may take to exit after SIGTERM before it is killed.
pub(crate) const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Lines of a process's log shown when something went wrong.
const LOG_TAIL_LINES: usize = 30;

/// The `flotilla` binary: `--flotilla`, else the one next to this executable (both are in
/// `target/release` after `cargo build --release -p flotilla-examples`).
pub(crate) fn find_flotilla(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match flag {
        Some(path) => path,
        None => {
            let exe =
                std::env::current_exe().context("finding this executable to find flotilla next to it")?;
            exe.parent().context("this executable has no directory")?.join("flotilla")
        }
    };
    anyhow::ensure!(
        path.is_file(),
        "no flotilla binary at {} (build it with `cargo build --release -p flotilla-examples`, \
         or pass --flotilla)",
        path.display()
    );
    Ok(path)
}

/// A free port on 127.0.0.1 (bound and released; another process taking it in between is
/// unlikely and makes the start fail loudly).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A started `flotilla` process.
#[derive(Debug)]
pub(crate) struct Proc {
    /// `up` or `agent`, for messages.
    pub(crate) name: &'static str,
    /// Its pid, for `/proc`.
    pub(crate) pid: u32,
    /// The startup summary it printed on stdout.
    pub(crate) summary: Vec<String>,
    child: Child,
    /// Where its stderr (its log) goes.
    log: PathBuf,
    /// Drains its stdout after the summary, so it never blocks on a full pipe.
    drain: JoinHandle<()>,
}

impl Proc {
    /// Starts `flotilla args` with `RUST_LOG=log_filter`, its log in `log`, and waits for the
    /// stdout line starting with `last` (the end of its startup summary).
    pub(crate) async fn spawn(
        name: &'static str,
        flotilla: &Path,
        args: &[String],
        log_filter: &str,
        log: PathBuf,
        last: &str,
    ) -> anyhow::Result<Proc> {
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(flotilla)
            .args(args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", flotilla.display(), args.join(" ")))?;
        let pid = child.id().context("the started process has no pid")?;
        let stdout = child.stdout.take().context("the started process has no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut summary = Vec::new();
        let read = async {
            loop {
                let Some(line) = lines.next_line().await? else {
                    anyhow::bail!("flotilla {name} exited before printing {last:?}; it printed {summary:?}");
                };
                let done = line.starts_with(last);
                summary.push(line);
                if done {
                    return Ok(());
                }
            }
        };
        let started = tokio::time::timeout(STARTUP_LIMIT, read).await;
        let failed = match started {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(anyhow::anyhow!("flotilla {name} did not start within {STARTUP_LIMIT:?}")),
        };
        if let Some(error) = failed {
            return Err(error.context(format!("{}\n{}", args.join(" "), tail(&log))));
        }
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc { name, pid, summary, child, log, drain })
    }

    /// The last lines of its log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `limit`; its exit status and whether
    /// it had to be killed.
    pub(crate) async fn stop(mut self, limit: Duration) -> anyhow::Result<(ExitStatus, bool)> {
        let pid = Pid::from_raw(i32::try_from(self.pid).context("a pid fits in i32")?);
        if let Err(errno) = kill(pid, Signal::SIGTERM) {
            eprintln!("# SIGTERM to flotilla {} failed: {errno}", self.name);
        }
        let (status, killed) = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => (status?, false),
            Err(_) => {
                self.child.kill().await.with_context(|| format!("killing flotilla {}", self.name))?;
                (self.child.wait().await?, true)
            }
        };
        self.drain.abort();
        Ok((status, killed))
    }
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`, indented.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    let shown: Vec<String> = lines[from..].iter().map(|l| format!("    {l}")).collect();
    format!("  last lines of {}:\n{}", path.display(), shown.join("\n"))
}

/// A bootstrap token and the CA pin, from `flotilla token create`.
#[derive(Debug)]
pub(crate) struct JoinToken {
    /// `<id>.<secret>`.
    pub(crate) token: String,
    /// `sha256:<hex>`.
    pub(crate) ca_hash: String,
}

/// Runs `flotilla token create` on the control plane's data directory.
pub(crate) async fn create_token(flotilla: &Path, data_dir: &Path) -> anyhow::Result<JoinToken> {
    let out = Command::new(flotilla)
        .args(["token", "create", "--ttl", "1h", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .context("running flotilla token create")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "flotilla token create: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_token(&stdout)
}

/// The `token:` and `ca-hash:` lines of `flotilla token create`'s output.
pub(crate) fn parse_token(stdout: &str) -> anyhow::Result<JoinToken> {
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .with_context(|| format!("no {key:?} line in flotilla token create's output: {stdout:?}"))
    };
    Ok(JoinToken { token: field("token:")?, ca_hash: field("ca-hash:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_pin_are_read_from_the_printed_lines() {
        let out = "token:    abcdef.0123456789abcdef\nca-hash:  sha256:00ff\n\
                   join with: flotilla agent --server https://127.0.0.1:6443 --token abcdef.0123456789abcdef\n";
        let t = parse_token(out).expect("both lines are there");
        assert_eq!(t.token, "abcdef.0123456789abcdef");
        assert_eq!(t.ca_hash, "sha256:00ff");
        let missing = parse_token("token: abcdef.0123456789abcdef\n").expect_err("no pin");
        assert!(missing.to_string().contains("ca-hash:"), "{missing}");
    }

    #[test]
    fn a_missing_binary_is_named() {
        let error = find_flotilla(Some(PathBuf::from("/nonexistent/flotilla"))).expect_err("no such file");
        assert!(error.to_string().contains("/nonexistent/flotilla"), "{error}");
    }
}
