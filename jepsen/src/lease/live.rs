//! A live test against one real `flotilla server` (named by `FLOTILLA_BIN`; skipped with the
//! reason printed when it is unset or missing): three lease clients for 6 s with a 2 s TTL,
//! then the final phase, and the checker's verdict.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use super::{LeaseCall, LeaseHistory, LeaseRecorder, LeaseSpec, check, run};

/// How long the server may take to print its `export KUBECONFIG=` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `FLOTILLA_BIN`, or `None` (with the reason printed) when it does not name a file.
fn flotilla_bin() -> Option<PathBuf> {
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

/// A free loopback port (free when asked; nothing else here binds ports meanwhile).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_a_single_member_expire_on_time() -> anyhow::Result<()> {
    let Some(bin) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let (api, etcd, raft) = (free_port()?, free_port()?, free_port()?);
    let log = dir.path().join("server.log");
    let mut server = Command::new(&bin)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .args(["--etcd-listen", &format!("127.0.0.1:{etcd}")])
        .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {} server", bin.display()))?;
    let stdout = server.stdout.take().context("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let up = async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("export KUBECONFIG=") {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the server exited before it was up")
    };
    let started = tokio::time::timeout(START_TIMEOUT, up)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no `export KUBECONFIG=` line within {START_TIMEOUT:?}")));
    if let Err(e) = started {
        anyhow::bail!("{e}; server log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let spec = LeaseSpec { ttl_secs: 2, ..LeaseSpec::new("leasetest", 5) };
    let start = Instant::now();
    let recorder = LeaseRecorder::new(&spec, start);
    let endpoints = [format!("http://127.0.0.1:{etcd}")];
    let stats = tokio::time::timeout(
        Duration::from_secs(120),
        run(&endpoints, &spec, &recorder, start + Duration::from_secs(6)),
    )
    .await
    .context("the lease workload ran past 120 s")??;
    let history = recorder.history();
    let path = dir.path().join("leases.jsonl");
    history.save(&path)?;
    let verdict = check(&LeaseHistory::load(&path)?);
    eprintln!("{stats:?}\n{}", verdict.summary());
    anyhow::ensure!(verdict.valid, "{verdict:#?}");
    anyhow::ensure!(verdict.kept_alive >= 1 && verdict.expired >= 1, "{}", verdict.summary());
    anyhow::ensure!(verdict.undecided == 0 && stats.reads_failed == 0, "{stats:?} {}", verdict.summary());
    // Some key was read present, then absent.
    let present_then_absent = history.ops.iter().filter(|o| o.call == LeaseCall::Read).any(|seen| {
        seen.present == Some(true)
            && history.ops.iter().any(|gone| {
                gone.key == seen.key && gone.present == Some(false) && gone.invoke_ns >= seen.complete_ns
            })
    });
    anyhow::ensure!(present_then_absent, "no key was read present and then absent");
    Ok(())
}
