//! Backup harness: the memory and time of a backup and a restore of a one-member raft store,
//! whole in memory (`RaftStore::backup`, `restore_backup`) and streamed
//! (`RaftStore::backup_stream` into a file, `restore_backup_file`), side by side in one run.
//!
//! The harness loads a store, then runs each step in a fresh child process (this binary
//! with `--step`), so that no step inherits memory an earlier one left in the allocator. A
//! child opens the store (for a backup), resets its peak resident set
//! (`/proc/self/clear_refs`), runs the step and prints how far the peak rose above the
//! resident set at the start of the step: what the step itself needed. The store's own copy
//! of the data (RocksDB and the in-memory MVCC index) is there before the step, so it is not
//! counted.
//!
//! `cargo run --release -p flotilla-benches --bin backup_bench -- --values 2048 --value-kib 128`

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use flotilla_benches::process::{memory_mib, reset_peak_rss};
use flotilla_core::store::{PutRequest, Store};
use flotilla_raft_store::{RaftStore, RaftStoreConfig, RestoreSummary, restore_backup, restore_backup_file};
use futures::StreamExt as _;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Keys written before the backups.
    #[arg(long, default_value_t = 2048)]
    values: usize,
    /// Size of each value, in KiB.
    #[arg(long, default_value_t = 128)]
    value_kib: usize,
    /// Times each step runs (the four steps alternate).
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Run one step in this process (what the harness starts its children with).
    #[arg(long, requires = "dir")]
    step: Option<Step>,
    /// The harness's working directory (for `--step`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Step {
    /// `RaftStore::backup`, then the bytes written to a file.
    BackupWhole,
    /// `RaftStore::backup_stream`, each chunk written to a file as it comes.
    BackupStreamed,
    /// The file read into memory, then `restore_backup`.
    RestoreWhole,
    /// `restore_backup_file`.
    RestoreStreamed,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::BackupWhole => "backup, whole in memory",
            Step::BackupStreamed => "backup, streamed to a file",
            Step::RestoreWhole => "restore, whole in memory",
            Step::RestoreStreamed => "restore, streamed from the file",
        }
    }
}

/// Opens (and on first use initializes) the one-member store in `dir/member`.
async fn open_store(dir: &Path, initialize: bool) -> anyhow::Result<RaftStore> {
    let cfg = RaftStoreConfig::new(1, dir.join("member"), "127.0.0.1:0".parse()?);
    let store = RaftStore::open(cfg).await?;
    if initialize {
        store.initialize(BTreeMap::from([(1, store.local_addr().to_string())])).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.leader().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(store)
}

async fn backup_streamed(store: &RaftStore, file: &Path) -> anyhow::Result<()> {
    let mut stream = store.backup_stream(1024 * 1024).await?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    Ok(())
}

/// Fails unless a restore wrote the keys.
fn restored(summary: &RestoreSummary) -> anyhow::Result<()> {
    anyhow::ensure!(summary.versions > 0, "the restore wrote no key versions: {summary:?}");
    Ok(())
}

/// Child mode: runs `step` and prints `<seconds> <peak above start, MiB>`.
async fn run_step(step: Step, dir: &Path) -> anyhow::Result<()> {
    let file = dir.join("backup.db");
    let target = dir.join("restored");
    let store = match step {
        Step::BackupWhole | Step::BackupStreamed => Some(open_store(dir, false).await?),
        Step::RestoreWhole | Step::RestoreStreamed => None,
    };
    reset_peak_rss().context("resetting the peak resident set")?;
    let (start_rss, _) = memory_mib();
    let started = Instant::now();
    match (step, &store) {
        (Step::BackupWhole, Some(store)) => std::fs::write(dir.join("whole.db"), store.backup().await?)?,
        (Step::BackupStreamed, Some(store)) => backup_streamed(store, &dir.join("streamed.db")).await?,
        (Step::RestoreWhole, _) => restored(&restore_backup(&target, &std::fs::read(&file)?)?)?,
        (Step::RestoreStreamed, _) => restored(&restore_backup_file(&target, &file)?)?,
        _ => anyhow::bail!("no store for {step:?}"),
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = memory_mib();
    if let Some(store) = store {
        store.shutdown().await;
    }
    println!("{secs} {}", peak - start_rss);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(step), Some(dir)) = (args.step, &args.dir) {
        return run_step(step, dir).await;
    }
    reset_peak_rss().context("this harness needs /proc/self/clear_refs (Linux 4.0 or later)")?;
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path(), true).await?;
    let started = Instant::now();
    for i in 0..args.values {
        let value = vec![(i % 251) as u8; args.value_kib * 1024];
        store.put(PutRequest::new(format!("backup-bench/{i:08}"), value)).await?;
    }
    let data_mib = (args.values * args.value_kib) as f64 / 1024.0;
    println!(
        "loaded {} values of {} KiB ({data_mib:.0} MiB) in {:.1} s",
        args.values,
        args.value_kib,
        started.elapsed().as_secs_f64()
    );
    backup_streamed(&store, &dir.path().join("backup.db")).await?;
    store.shutdown().await;
    let backup_mib = std::fs::metadata(dir.path().join("backup.db"))?.len() as f64 / (1024.0 * 1024.0);
    println!("backup file: {backup_mib:.1} MiB; each step in a new process:");
    println!("{:<34} {:>8} {:>22}", "step", "seconds", "peak above start, MiB");
    let me = std::env::current_exe()?;
    for _ in 0..args.repeat {
        for step in [Step::BackupWhole, Step::BackupStreamed, Step::RestoreWhole, Step::RestoreStreamed] {
            let name = step.to_possible_value().context("a step name")?.get_name().to_string();
            let out =
                std::process::Command::new(&me).args(["--step", &name, "--dir"]).arg(dir.path()).output()?;
            anyhow::ensure!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout)?;
            let mut fields = text.split_whitespace().map(str::parse::<f64>);
            let (Some(Ok(secs)), Some(Ok(peak))) = (fields.next(), fields.next()) else {
                anyhow::bail!("{name} printed {text:?}");
            };
            println!("{:<34} {secs:>8.2} {peak:>22.1}", step.label());
            let restored = dir.path().join("restored");
            if restored.exists() {
                std::fs::remove_dir_all(restored)?;
            }
        }
    }
    Ok(())
}
