//! Raft snapshot harness: the memory and time of a new member catching up from a raft
//! snapshot (the leader reads its kept snapshot and sends it, the new member receives and
//! installs it), in one process with both members.
//!
//! The harness loads a one-member store, has it build a snapshot and purge its log (so a new
//! member can only catch up from the snapshot), then runs each catch-up in a fresh child
//! process (this binary with `--step-dir`): the child opens a copy of the loaded member, resets its peak
//! resident set (`/proc/self/clear_refs`), opens a new empty member, adds it as a learner and
//! waits until it has caught up, then prints the seconds and how far the peak rose above the
//! resident set at the start. The new member's own copy of the data (its in-memory MVCC index
//! and RocksDB's memtables) is part of that rise; what the transfer holds on top of it is the
//! difference between builds.
//!
//! `target/release/snapshot_bench --values 1024 --value-kib 128`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use flotilla_benches::process::{memory_mib, reset_peak_rss};
use flotilla_core::store::{PutRequest, Store};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Keys written before the snapshot.
    #[arg(long, default_value_t = 1024)]
    values: usize,
    /// Size of each value, in KiB.
    #[arg(long, default_value_t = 128)]
    value_kib: usize,
    /// Catch-ups measured, each in a new process.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Run one catch-up in this process, with the loaded member in this directory.
    #[arg(long)]
    step_dir: Option<PathBuf>,
}

/// Opens member `id` in `dir`, initializing a one-member cluster when asked.
async fn open_member(id: u64, dir: &Path, initialize: bool) -> anyhow::Result<RaftStore> {
    let store = RaftStore::open(RaftStoreConfig::new(id, dir, "127.0.0.1:0".parse()?)).await?;
    if initialize {
        store.initialize(BTreeMap::from([(id, store.local_addr().to_string())])).await?;
    }
    Ok(store)
}

/// Waits until `store` knows a leader.
async fn wait_leader(store: &RaftStore) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.leader().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Child mode: one new member catching up from the loaded member's snapshot; prints
/// `<seconds> <peak above start, MiB>`.
async fn catch_up(dir: &Path) -> anyhow::Result<()> {
    // A copy of the loaded member: the catch-up adds a learner to its membership and log.
    let leader_dir = dir.join(format!("leader-{}", std::process::id()));
    let copied =
        std::process::Command::new("cp").arg("-a").arg(dir.join("loaded")).arg(&leader_dir).status()?;
    anyhow::ensure!(copied.success(), "copying the loaded member failed");
    let leader = open_member(1, &leader_dir, false).await?;
    wait_leader(&leader).await?;
    let target = leader.engine().revision();
    let new_dir = dir.join(format!("new-{}", std::process::id()));
    reset_peak_rss().context("resetting the peak resident set")?;
    let (start_rss, _) = memory_mib();
    let started = Instant::now();
    let learner = open_member(2, &new_dir, false).await?;
    leader.add_learner(2, learner.local_addr().to_string()).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while learner.engine().revision() < target {
        anyhow::ensure!(Instant::now() < deadline, "the new member did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = memory_mib();
    learner.shutdown().await;
    leader.shutdown().await;
    std::fs::remove_dir_all(&new_dir)?;
    std::fs::remove_dir_all(&leader_dir)?;
    println!("{secs} {}", peak - start_rss);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.step_dir {
        return catch_up(dir).await;
    }
    reset_peak_rss().context("this harness needs /proc/self/clear_refs (Linux 4.0 or later)")?;
    let dir = tempfile::tempdir()?;
    let store = open_member(1, &dir.path().join("loaded"), true).await?;
    wait_leader(&store).await?;
    let started = Instant::now();
    for i in 0..args.values {
        let value = vec![(i % 251) as u8; args.value_kib * 1024];
        store.put(PutRequest::new(format!("snapshot-bench/{i:08}"), value)).await?;
    }
    let index = store.compact_log(Duration::from_secs(600)).await?.context("nothing applied")?;
    // The purge may finish a little after `compact_log`; a log still holding the entries
    // would let the new member catch up from them instead of the snapshot.
    store
        .raft()
        .wait(Some(Duration::from_secs(60)))
        .metrics(|m| m.purged.as_ref().is_some_and(|p| p.index() >= index), "the log purged")
        .await?;
    store.shutdown().await;
    let data_mib = (args.values * args.value_kib) as f64 / 1024.0;
    let snapshot =
        std::fs::metadata(dir.path().join("loaded/snapshot.bin"))?.len() as f64 / (1024.0 * 1024.0);
    println!(
        "loaded {} values of {} KiB ({data_mib:.0} MiB) in {:.1} s; snapshot at index {index}: {snapshot:.1} MiB",
        args.values,
        args.value_kib,
        started.elapsed().as_secs_f64()
    );
    println!("{:<8} {:>8} {:>22}", "run", "seconds", "peak above start, MiB");
    let me = std::env::current_exe()?;
    for run in 1..=args.repeat {
        let out = std::process::Command::new(&me).arg("--step-dir").arg(dir.path()).output()?;
        anyhow::ensure!(out.status.success(), "catch-up failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout)?;
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        let (Some(Ok(secs)), Some(Ok(peak))) = (fields.next(), fields.next()) else {
            anyhow::bail!("the catch-up printed {text:?}");
        };
        println!("{run:<8} {secs:>8.2} {peak:>22.1}");
    }
    Ok(())
}
