//! Flotilla's store against etcd 3.4, side by side, through the same etcd v3 client workload.
//!
//! Each repeat starts a fresh three-member cluster of each system on loopback, one system at
//! a time and on fresh data directories under one temporary directory (so both write to the
//! same filesystem, both with fsync on): three bare Flotilla store members (this binary's
//! hidden `member` subcommand: `RaftStore` with its etcd endpoint, nothing else, the fair
//! counterpart of an etcd process; `flotilla server` also runs an API server, scheduler and
//! controllers), and three `etcd` processes with default settings. The order alternates
//! (even repeats Flotilla first, odd ones etcd first) so each pair runs close in time on a
//! machine that drifts between fast and slow states.
//!
//! Before the cases, `--keys` keys `/bench/00000000`.. are loaded with 256-byte values. Then
//! for each case and client count, `clients` closed-loop tokio tasks (task `i` on gRPC
//! connection `i % conns`, connection `j` to member `j % 3`) run for `--secs`:
//!
//! - `put`: 256-byte values to distinct keys `/bench/put/{task}/{i}`.
//! - `get`: linearizable single-key gets of random loaded keys.
//! - `cas`: get a random loaded key, then a transaction putting it if its mod revision is
//!   still the one read. One op is one such attempt (get plus transaction, latency of both):
//!   a transaction that ran counts whether its compare succeeded or not, as etcd's own
//!   `benchmark txn-put` counts transactions; failed compares are reported as `conflicts`.
//! - `watch`: `--watchers` watchers of the prefix `/bench/watch/`, `--watchers-per-stream` to
//!   a gRPC watch stream, the streams spread over the connections, plus `clients` writers
//!   whose values carry their send time. ops/s is events delivered per second (each put
//!   reaches every watcher), latency is each delivery's, from the put's send time to its
//!   receipt; events not delivered within 5 s of quiet after the writers stop are `missed`.
//!   Watch runs only at client counts up to `--watch-max-clients` (16 by default): the
//!   harness decodes every delivery and shares the machine's cores with the members.
//!
//! Latencies are recorded in µs; errors are counted apart. Per case the members' CPU seconds
//! (utime + stime of the three processes, from `/proc/<pid>/stat`) and, per run, the sum of
//! their peak resident sets (`VmHWM`) are recorded. Each finished case prints a CSV line;
//! the end prints, per case and client count, each system's median ops/s, p50 and p99 over
//! the repeats and the Flotilla/etcd ratios of those medians, the members' median CPU per
//! case and their peak RSS. `--out results.json` also writes every raw result.
//!
//! A case that makes no progress for 30 s fails; clusters are always stopped (SIGTERM, then
//! SIGKILL after 15 s), also on errors and on Ctrl-C (twice kills them at once).
//!
//! ```text
//! apt-get install etcd-server        # etcd 3.4 (Debian), or pass --etcd-bin
//! cargo build --release -p flotilla-benches --bin etcd_compare
//! target/release/etcd_compare run --clients 1,16,128,512 --secs 10 --repeats 3 --out cmp.json
//! target/release/etcd_compare run --systems etcd --cases put,get --clients 64
//! ```
//!
//! Build it in release mode: debug builds of either side say nothing about speed.

// A binary's root is its own directory's `mod.rs`, so the helpers need their paths.
#[path = "etcd_compare/cluster.rs"]
mod cluster;
#[path = "etcd_compare/report.rs"]
mod report;
#[path = "etcd_compare/watch.rs"]
mod watch;
#[path = "etcd_compare/workload.rs"]
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, System};
use crate::report::{CaseResult, SystemRun};
use crate::workload::{Case, Pool, Settings};

/// Connections used to load the keys.
const LOAD_CONNS: usize = 8;
/// Connections per case unless `--conns` is given: one per client, at most this many.
const DEFAULT_MAX_CONNS: usize = 8;

#[derive(Parser)]
#[command(about = "Flotilla's store against etcd, side by side, through the etcd v3 API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the comparison.
    Run(RunArgs),
    /// Runs one bare Flotilla store member until SIGTERM (started by `run`).
    #[command(hide = true)]
    Member(MemberArgs),
}

#[derive(Args, Clone, Debug, Serialize)]
struct RunArgs {
    /// Client counts: each case runs once per count.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128,512", value_parser = clap::value_parser!(u64).range(1..))]
    clients: Vec<u64>,
    /// Seconds each case runs at each client count.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// Fresh clusters per system.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    repeats: u64,
    /// The cases, in this order.
    #[arg(long, value_delimiter = ',', default_value = "put,get,cas,watch")]
    cases: Vec<Case>,
    /// The systems compared (either alone is allowed).
    #[arg(long, value_delimiter = ',', default_value = "flotilla,etcd")]
    systems: Vec<System>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Keys loaded before the cases, read by get and cas.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Watchers in the watch case.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    watchers: u64,
    /// Watchers sharing one gRPC watch stream (etcd's `benchmark watch` default).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    watchers_per_stream: u64,
    /// The watch case runs only at client (writer) counts up to this.
    #[arg(long, default_value_t = 16)]
    watch_max_clients: u64,
    /// gRPC connections the client tasks share [default: the client count, at most 8].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    conns: Option<u64>,
    /// Where the temporary directory for the members' data goes [default: the system's].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Writes every raw result here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct MemberArgs {
    /// The member's raft id.
    #[arg(long)]
    id: u64,
    /// Where the member keeps its data.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where the member transport listens.
    #[arg(long)]
    raft_listen: SocketAddr,
    /// Where the etcd v3 API listens.
    #[arg(long)]
    etcd_listen: SocketAddr,
    /// Bootstraps the cluster with these voters, `id=raftaddr,...` (one member only).
    #[arg(long)]
    initialize: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Member(args) => member(args).await,
        Command::Run(args) => {
            let cancel = CancellationToken::new();
            let interrupts = async {
                signalled().await;
                eprintln!("interrupted: stopping the cluster (interrupt again to kill it)");
                cancel.cancel();
                signalled().await;
            };
            tokio::select! {
                r = run(&args, &cancel) => r,
                // Dropping `run` kills the members (kill_on_drop) and removes their data.
                () = interrupts => anyhow::bail!("interrupted twice: members killed"),
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// One bare store member serving the etcd API, until SIGTERM or SIGINT.
async fn member(args: MemberArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let voters = args.initialize.as_deref().map(cluster::parse_voters).transpose()?;
    let mut cfg = RaftStoreConfig::new(args.id, &args.data_dir, args.raft_listen);
    cfg.etcd_listen = Some(args.etcd_listen);
    let store = RaftStore::open(cfg).await.with_context(|| format!("opening member {}", args.id))?;
    if let Some(voters) = voters
        && let Err(e) = store.initialize(voters).await
    {
        store.shutdown().await;
        return Err(e).context("initializing the cluster");
    }
    signalled().await;
    store.shutdown().await;
    Ok(())
}

/// The comparison: every repeat, every system, then the summary (also after a failure).
async fn run(args: &RunArgs, cancel: &CancellationToken) -> anyhow::Result<()> {
    let mut tmp = tempfile::Builder::new();
    tmp.prefix("etcd-compare-");
    let root = match &args.work_dir {
        Some(dir) => tmp.tempdir_in(dir),
        None => tmp.tempdir(),
    }
    .context("creating the data directory")?;
    eprintln!("data under {}", root.path().display());
    let mut results = Vec::new();
    let mut runs = Vec::new();
    println!("{}", report::HEADER);
    let outcome = async {
        for repeat in 0..args.repeats as usize {
            let mut order = args.systems.clone();
            if repeat % 2 == 1 {
                order.reverse();
            }
            for system in order {
                let dir = root.path().join(format!("{system}-r{repeat}"));
                let r = run_system(args, system, repeat, &dir, cancel, &mut results, &mut runs).await;
                // Each run starts on fresh directories: free the disk now.
                let _ = std::fs::remove_dir_all(&dir);
                r.with_context(|| format!("{system}, repeat {repeat}"))?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    report::print_summary(&results, &runs);
    if let Some(out) = &args.out {
        report::write_json(out, &report::Raw { settings: args, cases: &results, runs: &runs })?;
        eprintln!("wrote {}", out.display());
    }
    outcome
}

/// One fresh cluster of `system`: load the keys, run every case at every client count,
/// record the members' peak memory, stop the cluster (also when a case fails).
async fn run_system(
    args: &RunArgs,
    system: System,
    repeat: usize,
    dir: &std::path::Path,
    cancel: &CancellationToken,
    results: &mut Vec<CaseResult>,
    runs: &mut Vec<SystemRun>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!cancel.is_cancelled(), "interrupted");
    let started = Instant::now();
    let cluster = Cluster::start(system, &args.etcd_bin, dir).await?;
    let ready_secs = started.elapsed().as_secs_f64();
    eprintln!("{system} repeat {repeat}: cluster ready in {ready_secs:.1} s");
    let settings = Settings {
        duration: Duration::from_secs(args.secs),
        keys: args.keys as usize,
        watchers: args.watchers as usize,
        watchers_per_stream: args.watchers_per_stream as usize,
    };
    let mut load_secs = 0.0;
    let cases = async {
        let loading = Instant::now();
        let pool = Pool::connect(cluster.endpoints(), LOAD_CONNS).await?;
        tokio::select! {
            biased;
            () = cancel.cancelled() => anyhow::bail!("interrupted"),
            r = workload::load_keys(&pool, settings.keys) => r?,
        }
        drop(pool);
        load_secs = loading.elapsed().as_secs_f64();
        eprintln!("{system} repeat {repeat}: {} keys loaded in {load_secs:.1} s", settings.keys);
        for &case in &args.cases {
            for &clients in &args.clients {
                if case == Case::Watch && clients > args.watch_max_clients {
                    continue;
                }
                let clients = clients as usize;
                let conns = args.conns.map_or(clients.min(DEFAULT_MAX_CONNS), |c| c as usize);
                let pool = Pool::connect(cluster.endpoints(), conns).await?;
                let (cpu0, own0) = (cluster.cpu_secs(), flotilla_benches::process::cpu_secs());
                let outcome = workload::run_case(&pool, case, clients, &settings, cancel)
                    .await
                    .with_context(|| format!("case {case} with {clients} clients"))?;
                let cpu = (cluster.cpu_secs() - cpu0, flotilla_benches::process::cpu_secs() - own0);
                let r = CaseResult::new((system, repeat, case), (clients, conns), &outcome, cpu);
                println!("{}", report::line(&r));
                results.push(r);
            }
        }
        anyhow::Ok(())
    }
    .await;
    runs.push(SystemRun { system, repeat, peak_rss_mib: cluster.peak_rss_mib(), ready_secs, load_secs });
    cluster.stop().await;
    cases
}
