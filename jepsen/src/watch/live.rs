//! A live test (as root with `ip`/`iptables` and `FLOTILLA_BIN` naming a `flotilla` binary;
//! skipped with the reason printed otherwise): watchers on every member of a three-member
//! cluster while a client writes, with one member killed and restarted and another paused
//! long enough for its watcher to give up on its stream, and the final revision past the
//! last write under the prefix, so that the watchers reach it by progress notifications.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use tokio::time::Instant;

use super::{check_watches, current_revision, watch};
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::{Call, EventKind, Recorder};
use crate::net;

/// Where the binary is copied, so rebuilding the original does not disturb the test.
const COPY: &str = "/tmp/watch-flotilla";
/// How long one request may take.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A private copy of `FLOTILLA_BIN`, or `None` (with the reason printed) when the test cannot
/// run here.
fn flotilla_copy() -> anyhow::Result<Option<PathBuf>> {
    if let Err(why) = net::check_available() {
        eprintln!("skipping: {why}");
        return Ok(None);
    }
    let Some(bin) = std::env::var_os("FLOTILLA_BIN").map(PathBuf::from) else {
        eprintln!("skipping: FLOTILLA_BIN does not name a flotilla binary");
        return Ok(None);
    };
    if !bin.is_file() {
        eprintln!("skipping: FLOTILLA_BIN={} does not exist", bin.display());
        return Ok(None);
    }
    // Copied beside and renamed over, so a copy that is running is never written to.
    let partial = PathBuf::from(format!("{COPY}.{}", std::process::id()));
    std::fs::copy(&bin, &partial)
        .with_context(|| format!("copying {} to {}", bin.display(), partial.display()))?;
    std::fs::rename(&partial, COPY).with_context(|| format!("renaming {} to {COPY}", partial.display()))?;
    Ok(Some(PathBuf::from(COPY)))
}

/// One writing client: puts and compare-and-sets of decimal values on four keys, each
/// recorded in the history.
struct Writer {
    clients: Vec<Client>,
    recorder: Recorder,
    prefix: String,
    /// The last value acknowledged per key.
    last: [Option<u64>; 4],
    ops: u64,
}

impl Writer {
    /// Writes values `from..to`, alternating between the clients of `via`: value `i` goes to
    /// key `k(i mod 4)`, every third one by a CAS from the key's last acknowledged value.
    async fn write(&mut self, values: std::ops::Range<u64>, via: &[usize]) {
        for i in values {
            let slot = (i % 4) as usize;
            let key = format!("{}k{slot}", self.prefix);
            let call = match self.last[slot] {
                Some(from) if i % 3 == 2 => Call::Cas { from, to: i },
                _ => Call::Write { value: i },
            };
            let process = self.ops;
            self.ops += 1;
            let client = &mut self.clients[via[i as usize % via.len()]];
            self.recorder.invoke(process, &key, call);
            let sent = async {
                match call {
                    Call::Cas { from, to } => {
                        let txn = Txn::new()
                            .when([Compare::value(key.as_str(), CompareOp::Equal, from.to_string())])
                            .and_then([TxnOp::put(key.as_str(), to.to_string(), None)]);
                        client.txn(txn).await.map(|r| r.succeeded())
                    }
                    _ => client.put(key.as_str(), i.to_string(), None).await.map(|_| true),
                }
            };
            let (kind, error) = match tokio::time::timeout(OP_TIMEOUT, sent).await {
                Ok(Ok(true)) => (EventKind::Ok, None),
                Ok(Ok(false)) => (EventKind::Fail, Some("compare failed".to_string())),
                Ok(Err(e)) => (EventKind::Info, Some(e.to_string())),
                Err(_) => (EventKind::Info, Some("timed out".to_string())),
            };
            if kind == EventKind::Ok {
                self.last[slot] = Some(i);
            }
            self.recorder.complete(process, &key, kind, call, None, error);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_every_member_agree_through_a_kill_and_restart() -> anyhow::Result<()> {
    let Some(flotilla) = flotilla_copy()? else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let tag = format!("wt{}", std::process::id() % 1_000_000);
    let spec = ClusterSpec {
        flotilla,
        members: 3,
        dir: dir.path().to_path_buf(),
        tag: tag.clone(),
        clock_skew: false,
        spares: 0,
        power_loss: false,
    };
    // Dropping the cluster (on a timeout or an error) kills its members and removes the network.
    let scenario = tokio::time::timeout(Duration::from_secs(600), async {
        let mut cluster = Cluster::start(spec).await?;
        let endpoints = cluster.etcd_endpoints();
        let prefix = format!("watchtest/{tag}/");
        let soon = || Instant::now() + Duration::from_secs(60);
        let start = current_revision(&endpoints, &prefix, OP_TIMEOUT, soon()).await? + 1;
        let (final_tx, final_rx) = tokio::sync::watch::channel(None);
        // The writes end well after `until`; the watchers then wait for the final revision.
        let until = Instant::now() + Duration::from_secs(1);
        let tail = Duration::from_secs(300);
        let watchers = {
            let (endpoints, prefix) = (endpoints.clone(), prefix.clone());
            tokio::spawn(
                async move { watch(&endpoints, &prefix, start, until, OP_TIMEOUT, tail, final_rx).await },
            )
        };
        let options = ConnectOptions::new().with_connect_timeout(OP_TIMEOUT).with_timeout(OP_TIMEOUT);
        let mut clients = Vec::new();
        for endpoint in &endpoints[..2] {
            clients.push(Client::connect([endpoint.as_str()], Some(options.clone())).await?);
        }
        let recorder = Recorder::new();
        let mut writer =
            Writer { clients, recorder: recorder.clone(), prefix: prefix.clone(), last: [None; 4], ops: 0 };
        let (victim, sleeper) = (2, 1);
        writer.write(0..30, &[0, 1]).await;
        cluster.kill(victim).await?;
        writer.write(30..60, &[0, 1]).await;
        cluster.restart(victim).await?;
        writer.write(60..90, &[0, 1]).await;
        // Paused for longer than a watcher waits for an answer to its progress request.
        cluster.pause(sleeper).await?;
        let paused = Instant::now();
        writer.write(90..100, &[0]).await;
        tokio::time::sleep_until(paused + 5 * OP_TIMEOUT).await;
        cluster.resume(sleeper).await?;
        writer.write(100..110, &[0, 1]).await;
        // A write outside the prefix: the final revision is past every event the watchers get.
        let mut outside = Client::connect([endpoints[0].as_str()], Some(options)).await?;
        let outside_key = format!("watchtest/{tag}-outside");
        tokio::time::timeout(OP_TIMEOUT, outside.put(outside_key, "x", None)).await??;
        let final_revision = current_revision(&endpoints, &prefix, OP_TIMEOUT, soon()).await?;
        final_tx.send_replace(Some(final_revision));
        let logs = watchers.await??;
        let history = recorder.history();
        let verdict = check_watches(&logs, &history, final_revision);
        let acked = history.events.iter().filter(|e| e.kind == EventKind::Ok).count();
        eprintln!("start {start}, final {final_revision}, {acked} acknowledged writes");
        eprintln!("{}", serde_json::to_string_pretty(&verdict.watchers)?);
        for l in &logs {
            eprintln!(
                "watcher {} failures: {:?}",
                l.watcher,
                l.failures.iter().map(|f| &f.error).collect::<Vec<_>>()
            );
        }
        anyhow::ensure!(verdict.valid && verdict.complete, "{verdict:#?}");
        anyhow::ensure!(
            logs[victim].reconnects >= 1,
            "the killed member's watcher never reconnected: {:#?}",
            logs[victim]
        );
        anyhow::ensure!(acked >= 80, "only {acked} of 110 writes were acknowledged");
        let stalled = |l: &super::WatchLog| l.failures.iter().any(|f| f.error.contains("progress request"));
        anyhow::ensure!(
            logs[sleeper].reconnects >= 1 && stalled(&logs[sleeper]),
            "the paused member's watcher did not give up on its stream: {:#?}",
            logs[sleeper]
        );
        anyhow::ensure!(logs.iter().all(|l| !l.progress.is_empty()), "{:#?}", verdict.watchers);
        anyhow::ensure!(logs.iter().all(|l| l.events.len() >= acked), "{:#?}", verdict.watchers);
        let problems = cluster.stop().await;
        anyhow::ensure!(problems.is_empty(), "stopping the cluster: {problems:?}");
        anyhow::Ok(())
    })
    .await;
    scenario.map_err(|_| anyhow::anyhow!("the watch scenario ran past its outer timeout"))?
}
