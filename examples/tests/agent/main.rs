//! `flotilla agent` joining a `flotilla up` cluster with a bootstrap token from `flotilla token
//! create`: the node registers Ready, `kubectl get csr` shows its approved requests, a pod
//! scheduled there runs and logs; bad tokens are refused with a clear message.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod t10_join;

const KUBECTL: &str = "/usr/bin/kubectl";
const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

/// A free loopback port (bound and released; the race with other processes is harmless here).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `flotilla up` or `flotilla agent`, with the stdout lines it printed up to the
/// one that ends its startup summary.
struct Running {
    child: Child,
    summary: Vec<String>,
}

/// Starts `flotilla args` and reads its stdout until a line starting with `last` (the rest is
/// drained in the background so the child never blocks on a full pipe).
async fn spawn(args: &[&str], last: &str) -> Result<Running> {
    let mut child = Command::new(FLOTILLA)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting flotilla {}", args.join(" ")))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut summary = Vec::new();
    loop {
        let line = lines.next_line().await?.with_context(|| {
            format!("flotilla {} exited before printing {last:?}, after: {summary:?}", args.join(" "))
        })?;
        let done = line.starts_with(last);
        summary.push(line);
        if done {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(Running { child, summary });
        }
    }
}

/// Stops a child with SIGTERM and checks it exits cleanly.
async fn stop(mut r: Running) -> Result<()> {
    let pid = r.child.id().context("no pid")?;
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let exit = r.child.wait().await?;
    anyhow::ensure!(exit.success(), "exited with {exit} after SIGTERM");
    Ok(())
}

/// Runs `flotilla args` to completion: (success, stdout, stderr).
async fn flotilla(args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(FLOTILLA).args(args).env("RUST_LOG", "warn").kill_on_drop(true).output().await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(KUBECTL)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `kubectl args` until `done` accepts its output (or 30 s pass); the last output.
async fn wait_for(
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(kubeconfig, home, args).await?;
        if done(&out) || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
