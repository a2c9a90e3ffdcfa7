//! A live test (as root, with `FLOTILLA_BIN` and FUSE; skipped with the reason printed
//! otherwise): a one-member cluster on a lossy disk keeps every write it acknowledged through
//! power losses that strike while writes are in flight. With one member every acknowledged
//! write was committed by that member alone, so it must have been synced to its disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::tests::fuse_ready;
use crate::cluster::{Cluster, ClusterSpec, connect};

/// Power losses in the test.
const ROUNDS: u64 = 4;
/// Acknowledged writes per round before the power is cut (with more still in flight).
const WRITES_BEFORE_CUT: usize = 300;

/// Puts `w<round>-<k>` keys one after the other until one fails, counting acknowledgements
/// in `count`; answers those acknowledged.
async fn write_until_failure(
    endpoint: String,
    round: u64,
    count: Arc<AtomicUsize>,
) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    let Ok(mut client) = connect(&endpoint, Duration::from_secs(2)).await else { return acked };
    for k in 0u64.. {
        let (key, value) = (format!("w{round}-{k:05}"), format!("v{round}.{k}"));
        if client.put(key.as_str(), value.as_str(), None).await.is_err() {
            break;
        }
        acked.insert(key, value);
        count.fetch_add(1, Ordering::Relaxed);
    }
    acked
}

/// Every key under `w` on the member at `endpoint`, retried for up to 60 s while it starts.
async fn read_all(endpoint: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let mut client = connect(endpoint, Duration::from_secs(5)).await?;
            let opts = etcd_client::GetOptions::new().with_prefix();
            let resp = client.get("w", Some(opts)).await?;
            let mut all = BTreeMap::new();
            for kv in resp.kvs() {
                all.insert(kv.key_str()?.to_string(), kv.value_str()?.to_string());
            }
            anyhow::Ok(all)
        };
        match attempt.await {
            Ok(all) => return Ok(all),
            Err(e) if Instant::now() >= deadline => return Err(e.context("reading back within 60 s")),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_keeps_every_acknowledged_write_through_power_losses() -> anyhow::Result<()> {
    if let Err(why) = crate::net::check_available() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let Some(flotilla) = crate::testing::flotilla_bin() else { return Ok(()) };
    if !fuse_ready() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let spec = ClusterSpec {
        flotilla,
        members: 1,
        dir: dir.path().to_path_buf(),
        tag: "lossy".into(),
        clock_skew: false,
        spares: 0,
        power_loss: true,
    };
    let scenario = tokio::time::timeout(Duration::from_secs(600), async {
        let mut cluster = Cluster::start(spec).await?;
        let endpoint = cluster.etcd_endpoints()[0].clone();
        let mut acked = BTreeMap::new();
        let mut lost_unsynced = 0;
        for round in 0..ROUNDS {
            let count = Arc::new(AtomicUsize::new(0));
            let writer = tokio::spawn(write_until_failure(endpoint.clone(), round, count.clone()));
            // Cut the power once enough writes were acknowledged, while the writer goes on.
            let deadline = Instant::now() + Duration::from_secs(60);
            while count.load(Ordering::Relaxed) < WRITES_BEFORE_CUT && !writer.is_finished() {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "round {round}: too few writes acknowledged in 60 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let report = cluster.power_loss(0, 0x5eed ^ round).await?;
            eprintln!("round {round}: {report}");
            lost_unsynced += report.files_reverted + report.files_torn;
            let written = writer.await?;
            anyhow::ensure!(!written.is_empty(), "round {round}: no write was acknowledged");
            acked.extend(written);
            cluster.restart(0).await?;
            let all = read_all(&endpoint).await?;
            let missing: Vec<&String> = acked.keys().filter(|k| all.get(*k) != acked.get(*k)).collect();
            anyhow::ensure!(
                missing.is_empty(),
                "round {round}: {} of {} acknowledged writes lost or changed, e.g. {:?}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(5)]
            );
        }
        eprintln!("{} acknowledged writes kept through {ROUNDS} power losses", acked.len());
        anyhow::ensure!(
            lost_unsynced > 0,
            "no power loss dropped any unsynced write: the test proves nothing"
        );
        let problems = cluster.stop().await;
        anyhow::ensure!(problems.is_empty(), "stopping: {problems:?}");
        anyhow::Ok(())
    });
    scenario.await.map_err(|_| anyhow::anyhow!("the scenario took over 600 s"))?
}
