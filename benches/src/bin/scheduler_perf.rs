//! kube-scheduler's scheduler_perf workloads against Flotilla's real scheduler runtime, in this
//! process, on simulated nodes (Node objects only, created `Ready` with 4 CPUs, 32 GiB and 110
//! pods allocatable; no kubelets).
//!
//! Workloads (`--workloads`, upstream or short names), at full size:
//!
//! | workload | nodes | initial pods | measured pods | upstream threshold (pods/s) |
//! |---|---|---|---|---|
//! | SchedulingBasic (`Basic`) | 5,000 | 1,000 | 10,000 | 680 |
//! | SchedulingPodAntiAffinity | 5,000 | 1,000 | 2,000 | 60 |
//! | SchedulingPodAffinity | 5,000 | 5,000 | 5,000 | 35 |
//! | SchedulingNodeAffinity | 5,000 | 5,000 | 10,000 | 220 |
//! | TopologySpreading (`PodTopologySpread`) | 5,000 | 5,000 | 10,000 | 460 (upstream measures 5,000) |
//! | PreemptionBasic (`Preemption`) | 5,000 | 20,000 low-priority | 5,000 high-priority | none |
//! | Memory | 5,000 | 5,000 | 50,000 | 810; peak RSS target < 1 GiB |
//!
//! Each case runs on a fresh cluster on each store of `--store` (`memory`: `MemStore`;
//! `raft3`: three raft members on loopback, fsync on): the initial pods are created and waited
//! for first, then the measured pods are created with at most `--concurrency` creates in
//! flight. A measured pod's latency runs from its create call's return to the harness's pod
//! watch seeing `spec.nodeName` set; pods/s is the measured pods bound over the time from the
//! first measured create to the last binding (upstream averages per-second samples instead).
//! Every case then lists pods and nodes and checks them: every measured pod bound (except
//! PreemptionBasic's, which fit only by preempting: their bound count is reported), no node
//! over its allocatable, and the workload's constraint (one green pod per hostname, blue pods
//! sharing zones, node affinity zones, zone skew within `maxSkew`).
//!
//! With more than one case, each runs in a child process of this binary, so that the peak RSS
//! reported is that case's alone. The process exits non-zero if a case failed a check.
//!
//! ```text
//! nice -n 10 cargo build --release -p flotilla-benches --bins
//! <target>/release/scheduler_perf                                 # every workload, memory store
//! <target>/release/scheduler_perf --workloads Basic --store memory,raft3 --out basic.json
//! <target>/release/scheduler_perf --scale 0.01                    # a smoke run: 50 nodes
//! ```

// A binary's root is its own directory's `mod.rs`, so the helpers need their paths.
#[path = "scheduler_perf/cluster.rs"]
mod cluster;
#[path = "scheduler_perf/measure.rs"]
mod measure;
#[path = "scheduler_perf/observe.rs"]
mod observe;
#[path = "scheduler_perf/report.rs"]
mod report;
#[path = "scheduler_perf/run.rs"]
mod run;
#[path = "scheduler_perf/verify.rs"]
mod verify;
#[path = "scheduler_perf/workloads.rs"]
mod workloads;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use crate::cluster::StoreKind;
use crate::report::CaseResult;
use crate::run::RunOptions;
use crate::workloads::Workload;

/// mimalloc, as the `flotilla` binaries use: the figures (throughput, peak RSS) are the
/// allocator's too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Clone, Debug)]
#[command(about = "kube-scheduler's scheduler_perf workloads against Flotilla's scheduler, in process")]
struct Args {
    /// Workloads, in this order (upstream or short names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Basic,PodAntiAffinity,PodAffinity,NodeAffinity,PodTopologySpread,Preemption,Memory"
    )]
    workloads: Vec<Workload>,
    /// Stores each workload runs on.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "memory")]
    store: Vec<StoreKind>,
    /// Multiplies every node and pod count (0.01: 50 nodes; at least 1 node and 1 measured pod).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    scale: f64,
    /// Seeds the scheduler's tie-breaking and TopologySpreading's random node zones.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writes every case's result here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds each phase (node setup, initial pods, measured pods) may take.
    #[arg(long, default_value_t = 1_200)]
    timeout: u64,
    /// Seconds without a new binding, once every pod of a phase exists, that end its wait.
    #[arg(long, default_value_t = 60)]
    stall: u64,
    /// Seconds PreemptionBasic's high-priority pods get to be bound.
    #[arg(long, default_value_t = 120)]
    preemption_deadline: u64,
    /// Pod creates in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 10)]
    progress: u64,
    /// Changes the registry's pod watch cache keeps for resuming watches (its default);
    /// 0 serves pods without a watch cache, as Flotilla's server does today.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_capacity: usize,
    /// Compacts the store's history to its current revision every this many seconds
    /// (kube-apiserver: 300); 0 never does, as Flotilla's server does today.
    #[arg(long, default_value_t = 0)]
    compact_every: u64,
    /// Runs the one case given and writes its result here (the parent's child processes).
    #[arg(long, hide = true)]
    child_out: Option<PathBuf>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl Args {
    fn options(&self) -> RunOptions {
        RunOptions {
            scale: self.scale,
            seed: self.seed,
            timeout: Duration::from_secs(self.timeout.max(1)),
            stall: Duration::from_secs(self.stall.max(1)),
            preemption_deadline: Duration::from_secs(self.preemption_deadline.max(1)),
            concurrency: self.concurrency.max(1),
            progress: Duration::from_secs(self.progress.max(1)),
            watch_cache_capacity: self.watch_cache_capacity,
            compact_every: (self.compact_every > 0).then(|| Duration::from_secs(self.compact_every)),
        }
    }

    /// The arguments of the child process that runs one case.
    fn child_args(&self, workload: Workload, store: StoreKind, out: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            ("--workloads", workload.name().to_string()),
            ("--store", store.name().to_string()),
            ("--scale", self.scale.to_string()),
            ("--seed", self.seed.to_string()),
            ("--timeout", self.timeout.to_string()),
            ("--stall", self.stall.to_string()),
            ("--preemption-deadline", self.preemption_deadline.to_string()),
            ("--concurrency", self.concurrency.to_string()),
            ("--progress", self.progress.to_string()),
            ("--watch-cache-capacity", self.watch_cache_capacity.to_string()),
            ("--compact-every", self.compact_every.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect();
        args.extend(["--child-out".to_string(), out.display().to_string()]);
        args
    }
}

/// The JSON written by `--out`.
#[derive(Serialize)]
struct Output<'a> {
    harness: &'static str,
    scale: f64,
    seed: u64,
    watch_cache_capacity: usize,
    compact_every_secs: u64,
    cases: &'a [CaseResult],
}

/// Runs one case in a child process and reads back its result.
async fn run_child(args: &Args, workload: Workload, store: StoreKind, dir: &Path) -> CaseResult {
    let out = dir.join(format!("{}-{}.json", workload.name(), store.name()));
    let failed = |e: String| CaseResult::failed(workload, store, workload.shape(args.scale), e);
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find this executable: {e}")),
    };
    let status = tokio::process::Command::new(exe)
        .args(args.child_args(workload, store, &out))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return failed(format!("the case's process failed: {s}")),
        Err(e) => return failed(format!("cannot start the case's process: {e}")),
    }
    let read = std::fs::read(&out).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice(&b)?));
    read.unwrap_or_else(|e| failed(format!("cannot read the case's result {}: {e:#}", out.display())))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let opts = args.options();
    let cases: Vec<(Workload, StoreKind)> =
        args.workloads.iter().flat_map(|&w| args.store.iter().map(move |&s| (w, s))).collect();
    anyhow::ensure!(!cases.is_empty(), "no workload or no store given");

    if let Some(out) = &args.child_out {
        anyhow::ensure!(cases.len() == 1, "a child process runs exactly one case");
        let (workload, store) = cases[0];
        let result = run::run_case(workload, store, &opts).await;
        print!("{}", report::case_block(&result));
        let json = serde_json::to_vec_pretty(&result)?;
        std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?;
        return Ok(());
    }

    println!(
        "# scheduler_perf: scale={} seed={} stores={} timeout={}s stall={}s preemption_deadline={}s concurrency={} \
         watch_cache_capacity={} compact_every={}s",
        args.scale,
        args.seed,
        args.store.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        args.timeout,
        args.stall,
        args.preemption_deadline,
        args.concurrency,
        args.watch_cache_capacity,
        args.compact_every
    );
    let mut results = Vec::new();
    if let [(workload, store)] = cases[..] {
        let result = run::run_case(workload, store, &opts).await;
        print!("{}", report::case_block(&result));
        results.push(result);
    } else {
        let dir = tempfile::tempdir()?;
        for &(workload, store) in &cases {
            results.push(run_child(&args, workload, store, dir.path()).await);
        }
    }
    println!();
    println!(
        "# pods/s: measured pods bound / seconds from the first measured create to the last binding; \
         latencies: create call returned to binding seen by a watch"
    );
    print!("{}", report::summary(&results));
    if let Some(out) = &args.out {
        let output = Output {
            harness: "scheduler_perf",
            scale: args.scale,
            seed: args.seed,
            watch_cache_capacity: args.watch_cache_capacity,
            compact_every_secs: args.compact_every,
            cases: &results,
        };
        std::fs::write(out, serde_json::to_vec_pretty(&output)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let failed: Vec<String> =
        results.iter().filter(|r| !r.passed()).map(|r| format!("{} on {}", r.workload, r.store)).collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} cases failed: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    );
    Ok(())
}
