//! One case: a workload on one store, from a fresh cluster to its checked result.
//!
//! The initial pods are created and waited for (all bound) first, unmeasured. Then the
//! measured pods are created, at most `concurrency` creates in flight, while the scheduler
//! binds them. A measured pod's latency runs from the moment its create call returned (the
//! harness knows no earlier moment the pod existed; `creationTimestamp` has one-second
//! precision) to the moment the harness's pod watch saw it with `spec.nodeName` set. A pod
//! bound before its create call returned counts as 0. The wall time runs from the first
//! measured create call to the last binding seen, and pods/s is the measured pods bound over
//! it. The run waits for every measured pod until a deadline (`--timeout`, or
//! `--preemption-deadline` for PreemptionBasic's) or, except for PreemptionBasic's, until no
//! pod was bound for `--stall` seconds, then lists the pods and nodes and checks them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_benches::process::{cpu_secs, memory_mib};
use flotilla_core::client::{Api, Client, ListOptions};
use flotilla_core::object::Resource;
use flotilla_core::scheduler::runtime::SchedulerStats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterConfig, POLL, StoreKind};
use crate::measure::{Latency, histogram, record};
use crate::observe::PodObserver;
use crate::report::{CaseResult, Ending, Work};
use crate::verify;
use crate::workloads::{Template, Workload};

/// Page size of the final lists.
const LIST_PAGE: i64 = 5_000;
/// How long the scheduler's counters may take to catch up with the bindings seen.
const SETTLE: Duration = Duration::from_secs(2);

/// How a case runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunOptions {
    /// Node and pod counts are the full ones times this.
    pub(crate) scale: f64,
    /// Seeds the scheduler's tie-breaking and the nodes' random zones.
    pub(crate) seed: u64,
    /// Longest a phase (node setup, initial pods, measured pods) may take.
    pub(crate) timeout: Duration,
    /// A phase whose pods all exist ends when none was bound for this long.
    pub(crate) stall: Duration,
    /// How long PreemptionBasic's high-priority pods get to be bound.
    pub(crate) preemption_deadline: Duration,
    /// Creates in flight at once.
    pub(crate) concurrency: usize,
    /// Time between progress lines on stderr.
    pub(crate) progress: Duration,
    /// Changes the pod watch cache keeps; 0: no watch cache.
    pub(crate) watch_cache_capacity: usize,
    /// How often the store's history is compacted; `None`: never.
    pub(crate) compact_every: Option<Duration>,
}

/// Runs `workload` on `store`; never fails: what went wrong is in the result's `error`.
pub(crate) async fn run_case(workload: Workload, store: StoreKind, opts: &RunOptions) -> CaseResult {
    let mut result = CaseResult::new(workload, store, workload.shape(opts.scale));
    eprintln!(
        "# {workload} on {}: {} nodes, {} initial pods, {} measured pods",
        store.name(),
        result.nodes,
        result.initial,
        result.measured
    );
    let config = ClusterConfig {
        store,
        workload,
        nodes: result.nodes,
        pods: result.initial + result.measured,
        seed: opts.seed,
        setup_timeout: opts.timeout,
        watch_cache_capacity: opts.watch_cache_capacity,
        compact_every: opts.compact_every,
    };
    match Cluster::start(&config).await {
        Ok(cluster) => {
            result.setup_secs = cluster.setup.as_secs_f64();
            let outcome = phases(&cluster, workload, opts, &mut result).await;
            cluster.shutdown().await;
            if let Err(e) = outcome {
                result.error = Some(format!("{e:#}"));
            }
        }
        Err(e) => result.error = Some(format!("starting the cluster: {e:#}")),
    }
    let (rss, peak) = memory_mib();
    if result.peak_rss_mib == 0.0 {
        // The case stopped before its measured pods were bound.
        (result.rss_end_mib, result.peak_rss_mib) = (rss, peak);
    }
    result.peak_rss_with_checks_mib = peak;
    result
}

async fn phases(
    cluster: &Cluster,
    workload: Workload,
    opts: &RunOptions,
    result: &mut CaseResult,
) -> anyhow::Result<()> {
    let observer = PodObserver::start(cluster.client.clone());
    let outcome = async {
        observer.synced(opts.timeout).await?;
        let initial = workload.initial_template();
        let phase = Phase { cluster, observer: &observer, opts, label: "initial", stall: Some(opts.stall) };
        let done = phase.run(&initial, result.initial, opts.timeout).await?;
        result.initial_secs = done.elapsed().as_secs_f64();
        result.initial_bound = observer.bound_in(initial.namespace);
        anyhow::ensure!(
            result.initial_bound >= result.initial,
            "{} of {} initial pods bound ({:?}); not measuring",
            result.initial_bound,
            result.initial,
            done.ending
        );

        let measured = workload.measured_template();
        // Preemption may pause (a preemptor waits for its victims to go, an unschedulable pod
        // for a cluster event or the queue's flush): only its deadline ends the wait.
        let (deadline, stall) = match workload {
            Workload::Preemption => (opts.preemption_deadline, None),
            _ => (opts.timeout, Some(opts.stall)),
        };
        result.deadline_secs = deadline.as_secs_f64();
        let before = *cluster.scheduler.borrow();
        let cpu = cpu_secs();
        let phase = Phase { label: "measured", stall, ..phase };
        let done = phase.run(&measured, result.measured, deadline).await?;
        result.cpu_secs = cpu_secs() - cpu;
        // The watch can show a binding before the scheduler has counted its bind as done.
        let seen = observer.bound_in(measured.namespace) as u64;
        let settled = Instant::now() + SETTLE;
        while cluster.scheduler.borrow().bound < before.bound + seen && Instant::now() < settled {
            tokio::time::sleep(POLL).await;
        }
        result.work = work(&before, &cluster.scheduler.borrow());
        result.ending = done.ending;
        result.created = done.created.iter().filter(|c| c.is_some()).count();
        (result.create_errors, result.first_create_error) = (done.errors, done.first_error.clone());
        result.create_secs = done.created_by.saturating_duration_since(done.start).as_secs_f64();
        measure(&observer, &measured, &done, result);
        result.victims_deleted = observer.deleted_in(workload.initial_template().namespace);
        result.watch_retries = observer.retries();
        // Before the checks: their lists of every pod would count in the peak otherwise.
        (result.rss_end_mib, result.peak_rss_mib) = memory_mib();
        anyhow::Ok(())
    }
    .await;
    observer.stop().await;
    // Checked even after a failed phase: what the cluster holds is still worth knowing.
    let pods = list_all::<Pod>(&cluster.client).await.context("listing the pods")?;
    let nodes = list_all::<Node>(&cluster.client).await.context("listing the nodes")?;
    result.checks = verify::checks(workload, workload.shape(opts.scale), &pods, &nodes);
    result.not_bound = verify::unbound_reasons(&pods);
    outcome
}

/// The measured pods' latencies and throughput, from the create stamps and the watch's.
fn measure(observer: &PodObserver, template: &Template, done: &PhaseDone, result: &mut CaseResult) {
    let keys = (0..done.created.len()).map(|i| format!("{}/{}", template.namespace, template.name(i)));
    let bound = observer.bound_at(keys);
    let mut h = histogram();
    let mut last = None::<Instant>;
    for (created, bound) in done.created.iter().zip(&bound) {
        if let Some(b) = bound {
            last = Some(last.map_or(*b, |l| l.max(*b)));
            if let Some(c) = created {
                record(&mut h, b.saturating_duration_since(*c));
            }
        }
    }
    result.bound = bound.iter().filter(|b| b.is_some()).count();
    let wall = last.unwrap_or(done.end).saturating_duration_since(done.start).as_secs_f64();
    result.wall_secs = wall;
    result.pods_per_sec = if wall > 0.0 { result.bound as f64 / wall } else { 0.0 };
    result.ratio = result.threshold.map(|t| result.pods_per_sec / t);
    result.latency_ms = Latency::of(&h);
}

/// The scheduler's work between two readings of its stats.
fn work(before: &SchedulerStats, after: &SchedulerStats) -> Work {
    Work {
        attempts: after.attempts.saturating_sub(before.attempts),
        bound: after.bound.saturating_sub(before.bound),
        unschedulable: after.unschedulable.saturating_sub(before.unschedulable),
        bind_failures: after.bind_failures.saturating_sub(before.bind_failures),
    }
}

/// Every object of kind `K`, page by page.
async fn list_all<K: Resource>(client: &Arc<dyn Client>) -> anyhow::Result<Vec<K>> {
    let api = Api::<K>::all(client.clone());
    let mut items = Vec::new();
    let mut continue_token = None;
    loop {
        let opts = ListOptions { limit: Some(LIST_PAGE), continue_token, ..Default::default() };
        let page = api.list(&opts).await?;
        items.extend(page.items);
        match page.continue_token.filter(|t| !t.is_empty()) {
            Some(t) => continue_token = Some(t),
            None => return Ok(items),
        }
    }
}

/// What creating and waiting for one phase's pods came to.
struct PhaseDone {
    /// When the first create call was made.
    start: Instant,
    /// When each pod's create call returned; `None` for a failed create.
    created: Vec<Option<Instant>>,
    /// When the last create call returned.
    created_by: Instant,
    /// Failed creates.
    errors: usize,
    /// The first failure.
    first_error: Option<String>,
    /// When the wait ended.
    end: Instant,
    /// Why it ended.
    ending: Ending,
}

impl PhaseDone {
    fn elapsed(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// What the creating task hands back.
struct Created {
    stamps: Vec<Option<Instant>>,
    errors: usize,
    first_error: Option<String>,
    done: Instant,
}

/// One phase: create a template's pods and wait for them to be bound.
#[derive(Clone, Copy)]
struct Phase<'a> {
    cluster: &'a Cluster,
    observer: &'a PodObserver,
    opts: &'a RunOptions,
    label: &'static str,
    /// The wait ends when no pod was bound for this long, once all exist.
    stall: Option<Duration>,
}

impl Phase<'_> {
    /// Creates `count` pods of `template` and waits until every created one is seen bound,
    /// `deadline` has passed since the first create, or none was bound for the stall time
    /// (if any).
    async fn run(&self, template: &Template, count: usize, deadline: Duration) -> anyhow::Result<PhaseDone> {
        let start = Instant::now();
        let stop_creating = CancellationToken::new();
        let client = self.cluster.client.clone();
        let task = create_pods(client, template.clone(), count, self.opts.concurrency, stop_creating.clone());
        let mut creating = Some(task);
        let mut created = None::<Created>;
        let (mut last_bound, mut progress_at, mut last_count) = (start, start, 0);
        let ending = loop {
            if let Some(task) = creating.as_mut().filter(|t| t.is_finished()) {
                created = Some(task.await.context("the creating task")?);
                creating = None;
            }
            let bound = self.observer.bound_in(template.namespace);
            let now = Instant::now();
            if bound != last_count {
                (last_bound, last_count) = (now, bound);
            }
            if let Some(c) = &created {
                let ok = count - c.errors;
                if bound >= ok {
                    break Ending::AllBound;
                }
                if self.stall.is_some_and(|stall| now.saturating_duration_since(last_bound) >= stall) {
                    break Ending::Stalled;
                }
            }
            if now.saturating_duration_since(start) >= deadline {
                break Ending::Deadline;
            }
            if now.saturating_duration_since(progress_at) >= self.opts.progress {
                progress_at = now;
                let s = *self.cluster.scheduler.borrow();
                eprintln!(
                    "#   {} {:.0}s: {bound}/{count} bound, creating: {}, scheduler attempts={} unschedulable={} \
                     active={} backoff={} unschedulable_queue={} binding={}",
                    self.label,
                    now.saturating_duration_since(start).as_secs_f64(),
                    creating.is_some(),
                    s.attempts,
                    s.unschedulable,
                    s.queue.active,
                    s.queue.backoff,
                    s.queue.unschedulable,
                    s.binding
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let end = Instant::now();
        let created = match (created, creating) {
            (Some(c), _) => c,
            // The deadline passed while creating: stop, and count what was created.
            (None, Some(task)) => {
                stop_creating.cancel();
                task.await.context("the creating task")?
            }
            (None, None) => anyhow::bail!("the {} phase lost its creating task", self.label),
        };
        Ok(PhaseDone {
            start,
            created: created.stamps,
            created_by: created.done,
            errors: created.errors,
            first_error: created.first_error,
            end,
            ending,
        })
    }
}

/// Creates `count` pods of `template`, at most `concurrency` at once, each stamped when its
/// create call returned, until done or `stop`.
fn create_pods(
    client: Arc<dyn Client>,
    template: Template,
    count: usize,
    concurrency: usize,
    stop: CancellationToken,
) -> JoinHandle<Created> {
    tokio::spawn(async move {
        let api = Api::<Pod>::namespaced(client, template.namespace);
        let mut stamps = vec![None; count];
        let mut errors = 0;
        let mut first_error = None;
        // Pods are built as they are sent: 50,000 ready-made pods would weigh on the memory
        // the run measures.
        let mut results = futures::stream::iter(0..count)
            .map(|i| {
                let (api, pod) = (api.clone(), template.pod(i));
                async move {
                    let r = api.create(&pod).await;
                    (i, r.map(|_| Instant::now()))
                }
            })
            .buffer_unordered(concurrency.max(1));
        loop {
            let (i, r) = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    first_error.get_or_insert_with(|| "stopped at the deadline before every create".to_string());
                    break;
                }
                next = results.next() => match next { Some(next) => next, None => break },
            };
            match r {
                Ok(at) => stamps[i] = Some(at),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{}: {e}", template.name(i)));
                }
            }
        }
        Created { stamps, errors, first_error, done: Instant::now() }
    })
}
