//! The short, seeded Jepsen-style set CI runs: real `flotilla server` clusters in network
//! namespaces under every fault kind (partitions of each shape, SIGKILL and restart,
//! SIGSTOP/SIGCONT, removal and rejoin, a sixth member added and removed, snapshots that a
//! cut-off member must install, wall clocks skewed, lossy and slow links, power cuts that lose
//! unsynced writes), clients issuing register operations through the etcd API, and the history
//! checked for linearizability. Long campaigns use the `flotilla-jepsen` binary
//! (docs/testing.md).
//!
//! Needs root, `ip` and `iptables`: skipped with a printed reason without them, failed instead
//! when `FLOTILLA_REQUIRE_NETNS=1` (as `.ci/run` sets); likewise FUSE (`/dev/fuse`) and
//! `FLOTILLA_REQUIRE_FUSE=1`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use flotilla_jepsen::nemesis::{FaultKind, Schedule};
use flotilla_jepsen::run::{self, RunSpec};

const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

fn can_run() -> Result<bool> {
    match flotilla_jepsen::net::check_available() {
        Ok(()) => Ok(true),
        Err(why) if std::env::var_os("FLOTILLA_REQUIRE_NETNS").is_some_and(|v| v == "1") => {
            anyhow::bail!("FLOTILLA_REQUIRE_NETNS=1 but network namespaces are unavailable: {why}")
        }
        Err(why) => {
            eprintln!("skipping: {why}");
            Ok(false)
        }
    }
}

/// A short run's settings: only the fault kinds `faults`, with shorter faults and gaps than a
/// campaign's, so it still sees several.
fn short(seed: u64, members: usize, secs: u64, faults: &[FaultKind], dir: PathBuf) -> RunSpec {
    let mut spec = RunSpec::new(seed, Duration::from_secs(secs), PathBuf::from(FLOTILLA), dir);
    spec.members = members;
    spec.faults = faults.to_vec();
    spec.interval = (Duration::from_secs(2), Duration::from_secs(4));
    spec.fault_len = (Duration::from_secs(2), Duration::from_secs(5));
    spec
}

/// The first seed whose schedule for `members` and `secs`, drawn from the kinds `wanted`,
/// injects every one of them: fixed for given settings, so CI always runs the same faults.
fn seed_covering(members: usize, secs: u64, wanted: &[FaultKind]) -> Result<u64> {
    (1..10_000)
        .find(|&seed| {
            let s = short(seed, members, secs, wanted, PathBuf::new());
            let plan = Schedule::generate(seed, s.time, members, &s.faults, s.interval, s.fault_len);
            wanted.iter().all(|k| plan.steps.iter().any(|step| step.kind == *k))
        })
        .ok_or_else(|| anyhow::anyhow!("no seed below 10 000 covers {wanted:?}"))
}

/// Runs one seed and fails with the report's summary and path unless it is linearizable.
async fn seeded(
    seed: u64,
    members: usize,
    secs: u64,
    faults: &[FaultKind],
    root: &std::path::Path,
) -> Result<()> {
    let dir = root.join(format!("seed-{seed}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let spec = short(seed, members, secs, faults, dir.clone());
    let limit = Duration::from_secs(secs + 240);
    let report = tokio::time::timeout(limit, run::run(spec))
        .await
        .map_err(|_| anyhow::anyhow!("seed {seed} ran past {limit:?}"))??;
    eprintln!("{}", report.summary());
    anyhow::ensure!(
        report.valid(),
        "seed {seed} is not valid: {}\nreport: {}",
        report.summary(),
        dir.join("report.json").display()
    );
    anyhow::ensure!(report.ops.ok > 0, "no operation succeeded: {}", report.summary());
    anyhow::ensure!(!report.nemesis.is_empty(), "no fault was injected: {}", report.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_and_five_members_stay_linearizable_under_every_fault_kind() -> Result<()> {
    if !can_run()? {
        return Ok(());
    }
    // Run directories (histories, reports, member logs) stay under the target directory for
    // a look after a failure.
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jepsen");
    std::fs::create_dir_all(&root)?;
    if let Some(why) = flotilla_jepsen::lossyfs::unavailable() {
        anyhow::ensure!(
            std::env::var_os("FLOTILLA_REQUIRE_FUSE").is_none_or(|v| v != "1"),
            "FLOTILLA_REQUIRE_FUSE=1 but lossy disks cannot be mounted: {why}"
        );
        eprintln!("skipping: power-loss faults need FUSE: {why}");
        return Ok(());
    }
    use FaultKind::*;
    let three = [PartitionMajority, PartitionLeader, Kill, Pause, Clock, Lossy, PowerLoss];
    let five = [PartitionBridge, PartitionRing, Membership, Snapshot, Slow, Grow];
    let covered: BTreeSet<FaultKind> = three.iter().chain(&five).copied().collect();
    assert_eq!(covered, FaultKind::ALL.into_iter().collect(), "the two runs cover every fault kind");
    seeded(seed_covering(3, 45, &three)?, 3, 45, &three, &root).await?;
    seeded(seed_covering(5, 45, &five)?, 5, 45, &five, &root).await?;
    Ok(())
}
