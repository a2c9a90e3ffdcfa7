//! Node agent harness (issue 8): the agent's CPU and memory with `--pods` (110, Kubernetes'
//! default max pods per node) pods on its node, and the time from a pod's binding to it
//! running, with the Docker runtime (or `--runtime process`, Docker-free).
//!
//! It starts, on 127.0.0.1 and in a temporary directory, a control plane with no agent of its
//! own (`flotilla up --runtime none --proxy off`), takes a bootstrap token from it, and starts
//! one `flotilla agent` (its own process, `--proxy off`: the service proxy is a separate
//! component on a Kubernetes node) that joins and registers a node. Then:
//!
//! 1. `idle`: `--idle-secs` with no pods.
//! 2. `ramp`: creates the pods (16 requests in flight), busybox images built `FROM scratch`
//!    around the host's static busybox, sleeping forever. By default the scheduler binds them
//!    (`--bind scheduler`); `--bind node-name` creates them with `spec.nodeName` instead. A
//!    pod's bind time is the arrival of the first watch event showing its node, its running
//!    time the first showing phase `Running` with every container ready; bind->Running is
//!    reported as p50/p99/max (nearest rank), with the time until all run.
//! 3. `steady`: waits `--settle-secs`, then reads the agent and the server once a second for
//!    `--window-secs`: CPU as % of one core (`utime + stime` from `/proc/<pid>/stat`, in
//!    `sysconf(_SC_CLK_TCK)` ticks) over the window and its busiest 10 s, `VmRSS` (now, min,
//!    max), `VmHWM` (the peak since start, ramp included), `RssAnon`/`RssFile`, threads. With
//!    Docker, dockerd's, containerd's and the shims' CPU too, for context.
//! 4. `teardown`: deletes the pods, waits until they are gone from the API and (Docker) until
//!    the daemon lists none of the node's containers, stops the agent and the server with
//!    SIGTERM, force-removes what the agent left, and removes the images the run created.
//!    Child processes are killed if the harness fails or panics (`kill_on_drop`), leftover
//!    containers removed by a drop guard; Ctrl-C runs the teardown.
//!
//! ```text
//! nice cargo build --release -p flotilla-examples          # the flotilla binary
//! nice cargo build --release -p flotilla-benches --bins
//! target/release/agent_bench --pods 110                   # finds target/release/flotilla
//! target/release/agent_bench --runtime process --pods 110
//! ```
//!
//! Figures are of the processes as built: build in release mode. `RUST_LOG` filters the
//! harness's own log; `--child-log` the two flotilla processes' (`info`, their default).

mod docker;
mod measure;
mod pods;
mod procs;
mod report;
mod run;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::report::Results;
use crate::run::Bench;

/// The runtime the agent runs pods with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Runtime {
    /// Docker through its Engine API (a sandbox container and a container per pod).
    Docker,
    /// Each container's command as a host process, no Docker.
    Process,
}

impl Runtime {
    /// The `flotilla agent --runtime` value.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Process => "process",
        }
    }
}

/// How pods reach the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Bind {
    /// Created without a node; the scheduler binds them.
    Scheduler,
    /// Created with `spec.nodeName` (no scheduler involved).
    NodeName,
}

impl Bind {
    /// The `--bind` value.
    fn flag(self) -> &'static str {
        match self {
            Bind::Scheduler => "scheduler",
            Bind::NodeName => "node-name",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "CPU, memory and pod startup of one flotilla agent with N pods")]
pub(crate) struct Args {
    /// Pods on the node (the agent admits at most 110 by default).
    #[arg(long, default_value_t = 110)]
    pub(crate) pods: usize,
    /// Seconds to wait after every pod runs before the steady window.
    #[arg(long, default_value_t = 30)]
    pub(crate) settle_secs: u64,
    /// Seconds of the steady window.
    #[arg(long, default_value_t = 60)]
    pub(crate) window_secs: u64,
    /// Seconds of the idle window (no pods) before the pods; 0 skips it.
    #[arg(long, default_value_t = 10)]
    pub(crate) idle_secs: u64,
    /// The flotilla binary [default: `flotilla` next to this executable].
    #[arg(long)]
    pub(crate) flotilla: Option<PathBuf>,
    /// Run the agent as this binary (`flotilla-agent`, the agent alone) instead of
    /// `flotilla agent`; both take the same flags.
    #[arg(long)]
    pub(crate) agent_bin: Option<PathBuf>,
    /// The agent's runtime.
    #[arg(long, value_enum, default_value_t = Runtime::Docker)]
    pub(crate) runtime: Runtime,
    /// How the pods are bound to the node.
    #[arg(long, value_enum, default_value_t = Bind::Scheduler)]
    pub(crate) bind: Bind,
    /// Seconds every pod may take to run.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout_secs: u64,
    /// RUST_LOG of the flotilla processes.
    #[arg(long, default_value = "info")]
    pub(crate) child_log: String,
    /// Leave the images the run built in place.
    #[arg(long)]
    pub(crate) keep_images: bool,
}

/// The context lines: the machine's state and what runs.
fn header(bench: &Bench) -> Vec<String> {
    let a = &bench.args;
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut lines = vec![
        format!(
            "agent_bench: runtime={} bind={} pods={} idle={}s settle={}s window={}s child_log={}",
            a.runtime.flag(),
            a.bind.flag(),
            a.pods,
            a.idle_secs,
            a.settle_secs,
            a.window_secs,
            a.child_log
        ),
        format!(
            "machine: {cpus} cpus, clock ticks {}/s, loadavg at the start {}, now {}",
            bench.ticks_per_sec,
            bench.load_at_start,
            run::loadavg()
        ),
        format!("flotilla: {}", bench.flotilla.display()),
        match &bench.args.agent_bin {
            Some(bin) => format!("agent: {}", bin.display()),
            None => format!("agent: {} agent", bench.flotilla.display()),
        },
    ];
    if let (Some(up), Some(agent)) = (&bench.up, &bench.agent) {
        lines.push(format!("pids: server {} agent {} (node {})", up.pid, agent.pid, bench.node));
        // What the agent said it runs with (`runtime: docker`, `proxy: off: ...`).
        let said = agent
            .summary
            .iter()
            .map(|l| l.trim())
            .filter(|l| l.starts_with("runtime:") || l.starts_with("proxy:"));
        lines.push(format!("agent: {}", said.collect::<Vec<_>>().join("; ")));
    }
    lines
}

/// Runs the phases in order into `results`, stopping at the first failure.
async fn phases(bench: &mut Bench, results: &mut Results) -> anyhow::Result<()> {
    results.startup = Some(bench.start().await?);
    for line in header(bench).iter().skip(3) {
        eprintln!("# {line}");
    }
    results.idle = bench.idle().await?;
    results.ramp = Some(bench.ramp().await?);
    results.steady = Some(bench.steady().await?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let flotilla = procs::find_flotilla(args.flotilla.clone())?;
    let pods = args.pods;
    let mut bench = Bench::new(args, flotilla)?;
    let mut results = Results::default();
    let outcome = tokio::select! {
        outcome = phases(&mut bench, &mut results) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The header names the pids, which the teardown forgets.
    let header = header(&bench);
    if outcome.is_err() {
        eprintln!("# failed; tearing down");
    }
    let teardown = bench.teardown().await;
    print!("{}", report::render(&header, &results, &teardown, bench.ticks_per_sec, pods));
    outcome?;
    anyhow::ensure!(teardown.errors.is_empty(), "the teardown failed: {:?}", teardown.errors);
    Ok(())
}
