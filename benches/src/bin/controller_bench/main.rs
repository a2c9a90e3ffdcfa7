//! Controller harness: a Deployment of N replicas on M simulated nodes, end to end through
//! the real components, all in this process: a registry on three raft members over loopback
//! (fsync on, as in production) or on the memory store, the real scheduler, the built-in
//! controllers (`ControllerManager`), and hollow kubelets that report every pod bound to their
//! nodes `Running` and `Ready` at once and complete graceful deletions; each node also renews
//! its Lease.
//!
//! It measures, and prints as one table:
//! - `setup`: registering the nodes (Node, status, Lease) until the scheduler has them all;
//! - `create`: creating the Deployment until its status shows N available replicas for the
//!   current generation and a pod watcher has seen N pods `Ready`;
//! - `rollout`: changing the pod template until N updated pods are available and the old
//!   ReplicaSet and its pods are gone;
//! - `scale_to_zero`: scaling to 0 until no pod remains.
//!
//! Pod startup latency is, per pod, the time from the watcher's first sighting of the pod to
//! its first sighting `Ready` (and to bound), as p50/p90/p99/max; Kubernetes' scalability SLO
//! is a p99 under 5 s. A second table shows the work done per phase (scheduling cycles,
//! reconciles, watch retries, failed Lease renewals, raft elections); a last `summary` line of
//! `key=value` pairs is for scripts. Each phase is checked against a list of the pods at its
//! end, and the harness exits non-zero, saying where it stood, when a phase does not finish
//! within `--timeout`.
//!
//! `cargo build --release --workspace --all-features --bin controller_bench`, then
//! `<target>/release/controller_bench` (10,000 replicas on 1,000 nodes, raft3; the workspace's
//! feature set, so RocksDB is built once for every binary); `--quick` for a smoke run of a few
//! seconds (200 replicas on 20 nodes, memory store unless `--store` is given). `RUST_LOG=warn`
//! (or `debug`) shows the components' logs. Measured figures are in `docs/controllers.md`.

mod cluster;
mod goal;
mod measure;
mod observe;
mod phases;
mod report;

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use flotilla_core::registry::WatchCacheConfig;
use flotilla_core::scheduler::runtime::DEFAULT_MAX_IN_FLIGHT_BINDS;

use crate::cluster::{Cluster, ClusterConfig, NAMESPACE, StoreKind};
use crate::measure::memory_mib;
use crate::observe::PodObserver;
use crate::phases::{Bench, PhaseReport};

#[derive(Parser)]
struct Args {
    /// Pods of the Deployment [default: 10000, 200 with --quick].
    #[arg(long)]
    replicas: Option<usize>,
    /// Simulated nodes [default: 1000, 20 with --quick].
    #[arg(long)]
    nodes: Option<usize>,
    /// Which store the registry runs on [default: raft3, memory with --quick].
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// Seeds the scheduler's tie-breaking.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds each phase (node setup included) may take [default: 1200, 120 with --quick].
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds between Lease renewals of each node; 0 sends none.
    #[arg(long, default_value_t = 10)]
    heartbeat: u64,
    /// Binds the scheduler may run at once [default: the scheduler's
    /// `DEFAULT_MAX_IN_FLIGHT_BINDS`, 64; 16, its earlier value, kept a 10,000-pod burst's
    /// startup p99 far above the 5 s SLO].
    #[arg(long)]
    max_binds: Option<usize>,
    /// Hollow kubelet instances, the nodes split between them. Each watches every pod and
    /// keeps at most 32 writes in flight, so a single one serializes what real kubelets do in
    /// parallel (at 10,000 pods it alone held pods bound but not Ready for ~20 s in a rollout).
    #[arg(long, default_value_t = 8)]
    kubelets: usize,
    /// Seconds between progress lines (on stderr) while a phase waits.
    #[arg(long, default_value_t = 5)]
    progress: u64,
    /// A smoke run: 200 replicas on 20 nodes on the memory store, 120 s per phase (each
    /// unless given explicitly).
    #[arg(long)]
    quick: bool,
}

/// Runs the phases in order until one fails; returns those that finished, and the failure.
async fn run_phases(
    cluster: &Cluster,
    replicas: usize,
    timeout: Duration,
    progress: Duration,
) -> (Vec<PhaseReport>, anyhow::Result<()>) {
    let observer = PodObserver::start(cluster.client.clone(), NAMESPACE);
    let mut done = Vec::new();
    let result = async {
        observer.synced(timeout).await?;
        let bench = Bench { cluster, observer: &observer, replicas, timeout, progress_every: progress };
        done.push(bench.create().await?);
        let templates = done[0].tally.templates.clone();
        done.push(bench.rollout(&templates).await?);
        done.push(bench.scale_to_zero().await?);
        anyhow::Ok(())
    }
    .await;
    observer.stop().await;
    (done, result)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Errors only by default: controllers log every retried write conflict as a warning,
    // which at this scale would bury the figures (the work table counts failed reconciles).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let pick =
        |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if args.quick { quick } else { full });
    let replicas = pick(args.replicas, 10_000, 200);
    let nodes = pick(args.nodes, 1_000, 20).max(1);
    let store = args.store.unwrap_or(if args.quick { StoreKind::Memory } else { StoreKind::Raft3 });
    let timeout = Duration::from_secs(args.timeout.unwrap_or(if args.quick { 120 } else { 1_200 }));
    let progress = Duration::from_secs(args.progress.max(1));
    // Every pod changes a few times per phase; size the pod watch cache so watchers that fall
    // briefly behind resume instead of relisting (the defaults suit a small cluster).
    let defaults = WatchCacheConfig::default();
    let pod_cache = WatchCacheConfig {
        capacity: defaults.capacity.max(replicas * 4),
        watcher_buffer: defaults.watcher_buffer.max(replicas),
    };
    println!(
        "# controller_bench: store={store:?} replicas={replicas} nodes={nodes} seed={} heartbeat={}s \
         pod_watch_cache(capacity={}, watcher_buffer={}) max_binds={} kubelets={} timeout={}s",
        args.seed,
        args.heartbeat,
        pod_cache.capacity,
        pod_cache.watcher_buffer,
        args.max_binds.unwrap_or(DEFAULT_MAX_IN_FLIGHT_BINDS).max(1),
        args.kubelets,
        timeout.as_secs()
    );
    let config = ClusterConfig {
        store,
        nodes,
        heartbeat: (args.heartbeat > 0).then(|| Duration::from_secs(args.heartbeat)),
        pod_cache,
        setup_timeout: timeout,
        seed: args.seed,
        max_in_flight_binds: args.max_binds,
        kubelets: args.kubelets,
    };
    let cluster = Cluster::start(&config).await?;
    let (phases, result) = run_phases(&cluster, replicas, timeout, progress).await;
    let setup = cluster.setup;
    cluster.shutdown().await;
    // What finished is printed even when a later phase failed: it was measured.
    let store_name = format!("{store:?}").to_lowercase();
    report::print(setup.as_ref(), replicas, nodes, &store_name, &phases);
    let (rss, hwm) = memory_mib();
    println!(
        "# memory at the end: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB \
         (store, components and watchers share this process)"
    );
    result
}
