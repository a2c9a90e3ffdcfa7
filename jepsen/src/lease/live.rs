//! A live test against one real `flotilla server` (named by `FLOTILLA_BIN`; skipped with the
//! reason printed when it is unset or missing): three lease clients for 6 s with a 2 s TTL,
//! then the final phase, and the checker's verdict.

use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{LeaseCall, LeaseHistory, LeaseRecorder, LeaseSpec, check, run};
use crate::testing::{LoopbackServer, flotilla_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_a_single_member_expire_on_time() -> anyhow::Result<()> {
    let Some(bin) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let server = LoopbackServer::start(&bin, dir.path()).await?;

    let spec = LeaseSpec { ttl_secs: 2, ..LeaseSpec::new("leasetest", 5) };
    let start = Instant::now();
    let recorder = LeaseRecorder::new(&spec, start);
    let endpoints = [server.etcd.clone()];
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
    server.stop().await
}
