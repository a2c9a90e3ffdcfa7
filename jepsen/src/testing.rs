//! What the live tests share: the `flotilla` binary `FLOTILLA_BIN` names, and one
//! `flotilla server` on loopback ports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a server may take to print its `export KUBECONFIG=` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `FLOTILLA_BIN`, or `None` (with the reason printed, so the test can skip) when it does not
/// name a file.
pub(crate) fn flotilla_bin() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("FLOTILLA_BIN").map(PathBuf::from) else {
        eprintln!("skipping: FLOTILLA_BIN does not name a flotilla binary");
        return None;
    };
    if !bin.is_file() {
        eprintln!("skipping: FLOTILLA_BIN={} does not exist", bin.display());
        return None;
    }
    Some(bin)
}

/// One `flotilla server` on free loopback ports, with its data and its standard error
/// (`server.log`) in a directory of its own. Dropping it kills the server.
pub(crate) struct LoopbackServer {
    child: Child,
    drain: JoinHandle<()>,
    /// The etcd endpoint (`http://127.0.0.1:<port>`).
    pub(crate) etcd: String,
    /// The admin kubeconfig the server wrote.
    pub(crate) kubeconfig: PathBuf,
}

impl LoopbackServer {
    /// Starts `bin server` with its data under `dir` and waits until it is up.
    pub(crate) async fn start(bin: &Path, dir: &Path) -> anyhow::Result<LoopbackServer> {
        let [api, etcd, raft] = free_ports()?;
        let log = dir.join("server.log");
        let mut child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--etcd-listen", &format!("127.0.0.1:{etcd}")])
            .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let started = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
                    return Ok(PathBuf::from(path));
                }
            }
            anyhow::bail!("the server exited before printing its KUBECONFIG line")
        };
        let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let kubeconfig = match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => return Err(e.context(server_log())),
            Err(_) => anyhow::bail!("the server did not start within {START_TIMEOUT:?}\n{}", server_log()),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(LoopbackServer { child, drain, etcd: format!("http://127.0.0.1:{etcd}"), kubeconfig })
    }

    /// Kills the server and waits for it to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        self.drain.abort();
        Ok(())
    }
}

/// Three distinct free loopback ports (bound together, then released).
fn free_ports() -> anyhow::Result<[u16; 3]> {
    let listeners = [
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
    ];
    let mut ports = [0; 3];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}
