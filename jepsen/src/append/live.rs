//! A live test of the append workload against one real `flotilla server` (skipped, with the
//! reason printed, when `FLOTILLA_BIN` does not name a binary): four clients for about five
//! seconds, then the checker on the recorded history.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use super::{AppendRecorder, AppendSpec, MicroOp, Outcome, check, run};

/// How long the server may take to print its startup summary.
const STARTUP: Duration = Duration::from_secs(60);
/// How long the clients run.
const WORKLOAD: Duration = Duration::from_secs(5);

/// A free local port (bound then released; the server binds it right after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn the_workload_against_a_real_server_is_valid() -> anyhow::Result<()> {
    let Some(bin) = std::env::var_os("FLOTILLA_BIN").map(PathBuf::from) else {
        eprintln!("skipping: FLOTILLA_BIN does not name a flotilla binary");
        return Ok(());
    };
    if !bin.is_file() {
        eprintln!("skipping: FLOTILLA_BIN={} does not exist", bin.display());
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (api, etcd, raft) = (free_port()?, free_port()?, free_port()?);
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut server = Command::new(&bin)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--etcd-listen", &format!("127.0.0.1:{etcd}")])
        .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = server.stdout.take().context("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let started = async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("export KUBECONFIG=") {
                return Ok(());
            }
        }
        anyhow::bail!("the server exited before printing its KUBECONFIG line")
    };
    let server_log = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    match tokio::time::timeout(STARTUP, started).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context(server_log())),
        Err(_) => anyhow::bail!("the server did not start within {STARTUP:?}\n{}", server_log()),
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let endpoints = vec![format!("http://127.0.0.1:{etcd}")];
    let spec = AppendSpec { clients: 4, ..AppendSpec::new("live/append", 1) };
    let recorder = AppendRecorder::new();
    let stats = tokio::time::timeout(
        WORKLOAD + Duration::from_secs(30),
        run(&endpoints, &spec, &recorder, Instant::now() + WORKLOAD),
    )
    .await
    .context("the clients did not stop: a request hung past its timeout?")??;
    let history = recorder.history();
    let verdict = check(&history);
    eprintln!("{stats:?}\n{}", verdict.summary());
    assert!(verdict.valid, "{:#?}", verdict.anomalies);
    assert_eq!(stats.invoked as usize, history.txns.len());
    let ok = || history.txns.iter().filter(|t| t.outcome == Outcome::Ok);
    let appended = ok().flat_map(|t| &t.ops).any(|op| matches!(op, MicroOp::Append { .. }));
    let read_some = ok()
        .flat_map(|t| &t.ops)
        .any(|op| matches!(op, MicroOp::Read { value: Some(v), .. } if !v.is_empty()));
    assert!(appended && read_some, "{stats:?}: no committed append or no non-empty read");
    assert!(verdict.counts.edges.ww > 0 && verdict.counts.edges.wr > 0, "{:?}", verdict.counts);
    server.kill().await?;
    drain.abort();
    Ok(())
}
