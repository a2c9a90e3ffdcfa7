//! `flotilla-jepsen`: runs seeded failure-test runs against real `flotilla server` clusters in
//! network namespaces (root needed), one at a time or as a campaign, and re-checks saved
//! histories. See docs/testing.md.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use flotilla_jepsen::checker::CheckLimits;
use flotilla_jepsen::nemesis::FaultKind;
use flotilla_jepsen::run::{self, ResultLine, RunSpec};

#[derive(Parser)]
#[command(name = "flotilla-jepsen", about = "Jepsen-style failure testing of Flotilla clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run with one seed.
    Run {
        /// The seed (fixes the fault schedule and the clients' operations).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Runs seeds `--first-seed` .. `--first-seed + --runs`, appending a line per run to
    /// `--results`; stops at the first invalid run unless `--keep-going`.
    Campaign {
        /// How many runs.
        #[arg(long, default_value_t = 10)]
        runs: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// The results file (JSON lines), appended to.
        #[arg(long, default_value = "jepsen/results.jsonl")]
        results: PathBuf,
        /// Go on after a run that was not valid.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Deterministic simulation: runs seeds `--first-seed` .. `--first-seed + --seeds`, each a
    /// whole cluster in this process on a simulated network under a virtual clock (no root,
    /// no namespaces); prints a line per seed and saves the history of any run not valid.
    Sim {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Cluster members.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Simulated seconds of clients and faults per seed (a final heal follows).
        #[arg(long, default_value_t = 20)]
        time: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 5)]
        clients: usize,
        /// Register keys.
        #[arg(long, default_value_t = 3)]
        keys: usize,
        /// Where histories of runs that were not valid are written.
        #[arg(long, default_value = "target/jepsen-sim")]
        out: PathBuf,
    },
    /// Checks a saved history.jsonl again, with the watch logs and list-append and lease
    /// histories saved beside it, and prints the verdicts as JSON.
    Check {
        /// The history file.
        history: PathBuf,
        /// The most configurations the register search explores per key before it gives up
        /// with `unknown` (a run uses 5,000,000).
        #[arg(long, default_value_t = 5_000_000)]
        max_configurations: usize,
    },
}

/// Settings shared by `run` and `campaign`.
#[derive(Args, Clone)]
struct Common {
    /// Cluster members.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Seconds of faults per run (a 5 s quiet period follows).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Fault kinds, comma-separated: partition-majority, partition-leader, partition-bridge,
    /// partition-ring, kill, pause, membership, snapshot, clock, lossy, slow, grow, power-loss
    /// (default: all, leaving out clock where Debian's faketime package is missing and
    /// power-loss where FUSE is unavailable; "none" for none).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Keys in use at a time.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Read with etcd's `serializable` option (from the asked member's possibly stale copy):
    /// not linearizable, so under partitions the checker should report stale reads.
    #[arg(long)]
    serializable_reads: bool,
    /// The flotilla binary (default: `flotilla` next to this program).
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Where runs write their files (one directory per seed).
    #[arg(long, default_value = "target/jepsen")]
    out: PathBuf,
}

impl Common {
    fn spec(&self, seed: u64) -> anyhow::Result<RunSpec> {
        let flotilla = match &self.flotilla {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("flotilla"),
        };
        anyhow::ensure!(
            flotilla.exists(),
            "no flotilla binary at {} (build it with `cargo build --release -p flotilla-examples` or pass --flotilla)",
            flotilla.display()
        );
        let dir = self.out.join(format!("seed-{seed}"));
        if dir.exists() {
            // A seed's directory holds that seed's last run: replaced by this one.
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let mut spec = RunSpec::new(seed, Duration::from_secs(self.time), flotilla, dir);
        spec.members = self.members;
        spec.faults = parse_faults(&self.faults)?;
        spec.workload.clients = self.clients;
        spec.workload.keys = self.keys;
        spec.workload.serializable_reads = self.serializable_reads;
        Ok(spec)
    }
}

fn parse_faults(names: &[String]) -> anyhow::Result<Vec<FaultKind>> {
    if names.is_empty() {
        let missing = flotilla_jepsen::cluster::faketime_unavailable();
        if let Some(why) = &missing {
            eprintln!("flotilla-jepsen: leaving out clock faults: {why}");
        }
        let no_fuse = flotilla_jepsen::lossyfs::unavailable();
        if let Some(why) = &no_fuse {
            eprintln!("flotilla-jepsen: leaving out power-loss faults: {why}");
        }
        return Ok(FaultKind::all()
            .iter()
            .copied()
            .filter(|k| *k != FaultKind::Clock || missing.is_none())
            .filter(|k| *k != FaultKind::PowerLoss || no_fuse.is_none())
            .collect());
    }
    if names.len() == 1 && names[0] == "none" {
        return Ok(Vec::new());
    }
    names.iter().map(|n| n.parse::<FaultKind>().map_err(|e| anyhow::anyhow!("--faults: {e}"))).collect()
}

/// Resolves on the first SIGINT or SIGTERM.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Interrupted, the run in progress is dropped: its cluster's members are killed and its
    // namespaces, bridge and firewall rule removed before the process exits.
    tokio::select! {
        r = commands() => r,
        signal = stop_signal() => anyhow::bail!("stopped by {}", signal?),
    }
}

async fn commands() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // kube's client logs every failed request at ERROR; under a nemesis that is most of them,
    // and the object history records each one anyway. In a simulation, every member logs
    // into this process, and a cut-off leader warns of every heartbeat it cannot send. fuser
    // warns when its own unmount finds a lossy disk unmounted already (LossyFs unmounts first).
    let default_filter = match cli.command {
        Command::Sim { .. } => "error",
        _ => "info,kube_client=off,fuser::mnt=error",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    match cli.command {
        Command::Run { seed, common } => {
            flotilla_jepsen::net::check_available().map_err(|why| anyhow::anyhow!("cannot run: {why}"))?;
            let report = run::run(common.spec(seed)?).await?;
            println!("{}", report.summary());
            println!("report: {}", report.spec.dir.join("report.json").display());
            anyhow::ensure!(report.valid(), "seed {seed}: {:?}", report.verdict.valid);
        }
        Command::Campaign { runs, first_seed, results, keep_going, common } => {
            flotilla_jepsen::net::check_available().map_err(|why| anyhow::anyhow!("cannot run: {why}"))?;
            let mut bad = Vec::new();
            for seed in first_seed..first_seed.saturating_add(runs) {
                let report = run::run(common.spec(seed)?).await.with_context(|| format!("seed {seed}"))?;
                ResultLine::of(&report).append(&results)?;
                println!("{}", report.summary());
                if !report.valid() {
                    bad.push(seed);
                    if !keep_going {
                        break;
                    }
                }
            }
            anyhow::ensure!(bad.is_empty(), "runs not valid: seeds {bad:?}");
        }
        Command::Sim { seeds, first_seed, members, time, clients, keys, out } => {
            let mut bad = Vec::new();
            let started = tokio::time::Instant::now();
            for seed in first_seed..first_seed.saturating_add(seeds) {
                let spec = flotilla_jepsen::sim::SimSpec {
                    seed,
                    members,
                    duration: Duration::from_secs(time),
                    clients,
                    keys,
                    serializable_reads: false,
                    lossy_watch_resume: false,
                    lease_reads_miss: false,
                };
                // The simulation runs its own paused-clock runtime, on a thread of its own.
                let report = tokio::task::spawn_blocking(move || flotilla_jepsen::sim::run(&spec))
                    .await?
                    .with_context(|| format!("seed {seed}"))?;
                println!("{}", report.summary());
                if !report.valid() {
                    let path = out.join(format!("sim-seed-{seed}.jsonl"));
                    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
                    report.history.save(&path)?;
                    println!("  history: {}", path.display());
                    bad.push(seed);
                }
            }
            println!(
                "{seeds} seeds in {:.1} s of real time, {} not valid",
                started.elapsed().as_secs_f64(),
                bad.len()
            );
            anyhow::ensure!(
                bad.is_empty(),
                "seeds not valid: {bad:?} (re-run one with --first-seed N --seeds 1)"
            );
        }
        Command::Check { history, max_configurations } => {
            let limits = CheckLimits { max_states_per_key: max_configurations, ..CheckLimits::default() };
            let found = run::recheck(&history, &limits)?;
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
    }
    Ok(())
}
