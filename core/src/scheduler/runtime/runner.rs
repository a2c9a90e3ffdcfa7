//! The scheduling loop: watch events in, scheduling cycles, binds out.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cache::SchedulerCache;
use super::events::{Events, drain, ready, watch_of};
use super::metrics::{ProfileMetrics, SchedulerMetrics};
use super::nominator::{self, Evictions, Nominator};
use super::queue::{QueuedPod, SchedulingQueue};
use super::recorder::{EventRecord, RECORDER_CAPACITY, Record, Recorder, unschedulable_condition};
use super::{Scheduler, SchedulerStats};
use crate::client::{Client, WatcherEvent};
use crate::registry::Clock;
use crate::scheduler::plugins::DEFAULT_SCHEDULER_NAME;
use crate::scheduler::{
    CycleState, Error as Decision, FitError, Framework, PlacementRejected, PostFilterOutcome, pod_key,
};

/// Pods on a node: the cache's watch.
const ASSIGNED_PODS: &str = "spec.nodeName!=";
/// Pods waiting for a node, finished ones left out: the queue's watch.
const UNASSIGNED_PODS: &str = "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed";

/// How a binding cycle ended.
struct BindOutcome {
    info: QueuedPod,
    node: String,
    /// The cycle's state, for unreserving after a failure.
    state: CycleState,
    result: Result<(), PlacementRejected>,
    /// When the attempt started.
    started: Instant,
    /// Its profile's metrics.
    metrics: Arc<ProfileMetrics>,
}

/// A profile's framework and the handles of its metrics.
#[derive(Clone)]
struct ProfileRun {
    framework: Arc<Framework>,
    metrics: Arc<ProfileMetrics>,
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or(DEFAULT_SCHEDULER_NAME)
}

/// How many preemptors whose evictions failed may wait to be reported to the loop (their
/// tasks wait for room; failures are rare).
const EVICTION_FAILURES_CAPACITY: usize = 64;

/// How long the loop runs scheduling cycles before it lets the other tasks of its thread run.
///
/// The coop budget alone lets it run about 128 cycles in a row; at tens of milliseconds per
/// preemption cycle, that held back for seconds the eviction and bind tasks it spawned
/// (tokio runs a task spawned from a busy worker on that worker first), and the preemptors
/// waited as long for their victims to go.
const YIELD_AFTER: Duration = Duration::from_millis(5);

/// The loop's state; owned by the loop's task, so nothing here is locked.
struct Runner {
    client: Arc<dyn Client>,
    profiles: BTreeMap<String, ProfileRun>,
    queue: SchedulingQueue,
    nominator: Nominator,
    /// The victims preemptors wait for; a preemptor is gated in the queue meanwhile.
    evictions: Evictions,
    /// Where eviction tasks report the preemptors some of whose victims they could not evict.
    eviction_failures: mpsc::Sender<String>,
    cache: SchedulerCache,
    clock: Clock,
    max_binds: usize,
    binding: usize,
    bind_results: mpsc::Sender<BindOutcome>,
    records: mpsc::Sender<Record>,
    tasks: TaskTracker,
    abort: CancellationToken,
    stats: SchedulerStats,
    metrics: SchedulerMetrics,
    /// Keys seen since the queue's watch started a relist.
    relist: Option<HashSet<String>>,
}

pub(super) async fn run(scheduler: Scheduler, shutdown: CancellationToken) {
    let Scheduler { client, frameworks, config, stats: stats_tx, metrics } = scheduler;
    let mut is_leader = config.is_leader.clone();
    let mut leader_open = true;
    let tasks = TaskTracker::new();
    let abort = CancellationToken::new();
    let (records, records_rx) = mpsc::channel(RECORDER_CAPACITY);
    tasks.spawn(Recorder::new(client.clone(), config.clock.clone()).run(records_rx, abort.clone()));
    // Every running bind has a slot, so a finished bind never waits to report.
    let max_binds = config.max_in_flight_binds.max(1);
    let (bind_results, mut bind_rx) = mpsc::channel(max_binds);
    let (eviction_failures, mut eviction_failures_rx) = mpsc::channel(EVICTION_FAILURES_CAPACITY);

    let mut unassigned_selector = UNASSIGNED_PODS.to_string();
    if let [name] = frameworks.keys().collect::<Vec<_>>()[..] {
        unassigned_selector.push_str(&format!(",spec.schedulerName={name}"));
    }
    let mut nodes: Events<Node> = watch_of(&client, None);
    let mut assigned: Events<Pod> = watch_of(&client, Some(ASSIGNED_PODS.into()));
    let mut unassigned: Events<Pod> = watch_of(&client, Some(unassigned_selector));
    let mut claims: Events<PersistentVolumeClaim> = watch_of(&client, None);
    let mut volumes: Events<PersistentVolume> = watch_of(&client, None);
    let mut classes: Events<StorageClass> = watch_of(&client, None);

    let mut r = Runner {
        client,
        profiles: frameworks
            .into_iter()
            .map(|(k, f)| {
                let run = ProfileRun { framework: Arc::new(f), metrics: Arc::new(metrics.profile(&k)) };
                (k, run)
            })
            .collect(),
        queue: SchedulingQueue::new(config.queue),
        nominator: Nominator::default(),
        evictions: Evictions::default(),
        eviction_failures,
        cache: SchedulerCache::new(config.assumed_pod_ttl),
        clock: config.clock.clone(),
        max_binds,
        binding: 0,
        bind_results,
        records,
        tasks: tasks.clone(),
        abort: abort.clone(),
        stats: SchedulerStats::default(),
        metrics,
        relist: None,
    };
    tracing::info!(profiles = ?r.profiles.keys().collect::<Vec<_>>(), "scheduler starting");
    let mut ran_since = Instant::now();
    loop {
        if ran_since.elapsed() >= YIELD_AFTER {
            tokio::task::yield_now().await;
            ran_since = Instant::now();
        }
        // What is due is done even while cycles keep the loop busy: the timer branch below
        // fires only once tokio's timer driver runs, which a busy worker puts off. Backoffs
        // expired seconds late, behind pods that came after them.
        if r.next_deadline().is_some_and(|d| d <= Instant::now()) {
            r.tick();
        }
        // One cycle, then one event: neither starves the other.
        let leader = *is_leader.borrow();
        if r.can_schedule(leader) {
            r.schedule_one();
        }
        r.publish(leader, &stats_tx);
        let can_schedule = r.can_schedule(leader);
        let deadline = r.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(outcome) = bind_rx.recv() => r.bind_finished(outcome),
            Some(preemptor) = eviction_failures_rx.recv() => r.eviction_failed(&preemptor),
            changed = is_leader.changed(), if leader_open => match changed {
                Ok(()) => tracing::info!(leader = *is_leader.borrow(), "scheduler leadership changed"),
                // The sender is gone: the last value holds for good.
                Err(_) => leader_open = false,
            },
            Some(event) = nodes.next() => drain!(nodes, event, |e| {
                let events = r.cache.apply_node(&e);
                r.cluster_events(events);
            }),
            Some(event) = assigned.next() => drain!(assigned, event, |e| r.assigned(&e)),
            Some(event) = unassigned.next() => drain!(unassigned, event, |e| r.unassigned(e)),
            Some(event) = claims.next() => drain!(claims, event, |e| {
                let events = r.cache.apply_claim(&e);
                r.cluster_events(events);
            }),
            Some(event) = volumes.next() => drain!(volumes, event, |e| {
                let events = r.cache.apply_volume(&e);
                r.cluster_events(events);
            }),
            Some(event) = classes.next() => drain!(classes, event, |e| {
                let events = r.cache.apply_storage_class(&e);
                r.cluster_events(events);
            }),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => r.tick(),
            // Ready at once, but yields when the task's budget is spent: a long run of cycles
            // (a queue of unschedulable pods) must not starve the binds and the recorder.
            _ = tokio::task::coop::consume_budget(), if can_schedule => {}
        }
        // The pod watches' ready events too, whichever branch ran: a branch always ready
        // (bind outcomes, one per cycle while a backlog binds) won every biased choice, and
        // the watches' events waited by the ten thousand, each holding its decoded pod.
        if let Some(event) = ready(&mut assigned) {
            drain!(assigned, event, |e| r.assigned(&e));
        }
        if let Some(event) = ready(&mut unassigned) {
            drain!(unassigned, event, |e| r.unassigned(e));
        }
    }
    tracing::info!(binding = r.binding, "scheduler stopping");
    // Dropping the loop's senders lets the recorder drain and end; an eviction task waiting
    // to report a failure gives up once the receiver is gone.
    drop(r);
    drop(eviction_failures_rx);
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, tasks.wait()).await.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "scheduler tasks did not finish in time; aborting them");
        abort.cancel();
        tasks.wait().await;
    }
    tracing::info!("scheduler stopped");
}

impl Runner {
    fn can_schedule(&self, leader: bool) -> bool {
        leader && self.cache.is_ready() && self.binding < self.max_binds && self.queue.has_active()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline().into_iter().chain(self.cache.next_expiry()).min()
    }

    fn publish(&mut self, leader: bool, tx: &watch::Sender<SchedulerStats>) {
        self.stats.leader = leader;
        self.stats.ready = self.cache.is_ready();
        self.stats.nodes = self.cache.node_count();
        self.stats.pods = self.cache.pod_count();
        self.stats.assumed = self.cache.assumed_count();
        self.stats.queue = self.queue.counts();
        self.stats.binding = self.binding;
        self.stats.nominated = self.nominator.len();
        self.metrics.set_pending(&self.stats.queue);
        let now = self.stats;
        tx.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.queue.tick(now);
        let events = self.cache.cleanup_expired(now);
        self.cluster_events(events);
    }

    /// After an event of the assigned pods' watch: the preemptors whose last victim the cache
    /// no longer has are ungated.
    fn victims_gone(&mut self, event: &WatcherEvent<Pod>) {
        let keys: Vec<String> = match event {
            WatcherEvent::Delete(pod) => vec![pod_key(pod)],
            WatcherEvent::InitDone => self.evictions.victims().map(String::from).collect(),
            _ => return,
        };
        for key in keys {
            let placement = self.cache.placement(&key);
            let uid = placement.as_ref().map(|p| p.uid.as_deref());
            for preemptor in self.evictions.observed(&key, uid) {
                self.queue.ungate(&preemptor);
            }
        }
    }

    /// Some victims of `preemptor` could not be evicted: it is tried again at once (as
    /// kube-scheduler activates it), rather than waiting for victims that may stay.
    fn eviction_failed(&mut self, preemptor: &str) {
        self.evictions.forget(preemptor);
        self.queue.activate(preemptor);
    }

    fn cluster_events(&mut self, events: Vec<super::ClusterEvent>) {
        let now = Instant::now();
        for event in events {
            let moved = self.queue.on_event(event, now);
            if moved > 0 {
                tracing::debug!(?event, moved, "unschedulable pods moved");
            }
        }
    }

    /// An event of the watch of pods with a node.
    fn assigned(&mut self, event: &WatcherEvent<Pod>) {
        let events = self.cache.apply_pod(event);
        // Before the events: the deletion of a preemptor's last victim moves it.
        self.victims_gone(event);
        self.cluster_events(events);
    }

    /// An event of the watch of pods without a node.
    fn unassigned(&mut self, event: WatcherEvent<Pod>) {
        let now = Instant::now();
        match event {
            WatcherEvent::Init => self.relist = Some(HashSet::new()),
            WatcherEvent::InitApply(pod) => {
                if let Some(seen) = &mut self.relist {
                    seen.insert(pod_key(&pod));
                }
                self.enqueue(pod, now);
            }
            WatcherEvent::Apply(pod) => self.enqueue(pod, now),
            WatcherEvent::InitDone => {
                let seen = self.relist.take().unwrap_or_default();
                let gone: Vec<String> = self.queue.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                for key in gone {
                    self.queue.delete(&key);
                }
            }
            // Deleted, or bound (it no longer matches the watch).
            WatcherEvent::Delete(pod) => {
                let key = pod_key(&pod);
                self.nominator.remove(&key);
                self.evictions.forget(&key);
                self.queue.delete(&key);
            }
            WatcherEvent::Retrying(error) => tracing::debug!(%error, "pod watch retrying"),
        }
    }

    fn enqueue(&mut self, pod: Pod, now: Instant) {
        let ours = self.profiles.contains_key(scheduler_name(&pod));
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        if !ours || bound || pod.metadata.deletion_timestamp.is_some() {
            let key = pod_key(&pod);
            self.nominator.remove(&key);
            self.evictions.forget(&key);
            self.queue.delete(&key);
        } else {
            let pod = Arc::new(pod);
            // A late pending version of a pod placed since (its bind on the way) does not
            // nominate it again: it holds its room where the cache has it.
            if !self.cache.has_pod(&pod_key(&pod)) {
                self.nominator.update(&pod);
            }
            self.queue.add(pod, now);
        }
    }

    /// One scheduling cycle: the queue's head is placed, found unschedulable, or sent back.
    fn schedule_one(&mut self) {
        let Some(info) = self.queue.pop() else { return };
        self.stats.attempts += 1;
        let now = Instant::now();
        match self.cache.placement(&info.key) {
            // Bound, or being bound, already.
            Some(p) if p.uid == info.pod.metadata.uid => return self.queue.done(&info, now),
            // An older pod of the same name still holds its place; wait for it to go.
            Some(_) => return self.queue.requeue_backoff(info, now),
            None => {}
        }
        let Some(ProfileRun { framework, metrics }) = self.profiles.get(scheduler_name(&info.pod)).cloned()
        else {
            return self.queue.done(&info, now);
        };
        // Nominated pods the cache has placed (usually none: see `Nominator::count_ahead`).
        let cache = &self.cache;
        let placed: Vec<&str> = self.nominator.keys().filter(|key| cache.has_pod(key)).collect();
        let snapshot = match self.cache.snapshot_mut() {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::error!(%error, "cannot schedule");
                metrics.error(now);
                return self.failed(info, "SchedulerError", error.to_string(), now);
            }
        };
        // Room promised to nominated pods of at least this priority is taken for this cycle.
        let counted = self.nominator.count_ahead(snapshot, &info.pod, |key| placed.contains(&key));
        // A pod that preempted tries the node it was nominated first; this process's
        // nomination may be ahead of the pod's status.
        let nominated = self.nominator.node_of(&info.key).or_else(|| nominator::nominated_node(&info.pod));
        let (mut state, decision) = framework.schedule_nominated(snapshot, &info.pod, nominated);
        let preemption = match &decision {
            Err(Decision::Unschedulable(fit)) => {
                if !framework.profile().post_filters.is_empty() {
                    self.metrics.preemption_attempted();
                }
                Some(framework.post_filter(&state, &info.pod, snapshot, fit))
            }
            _ => None,
        };
        for (node, key) in counted {
            // Cannot fail: the pod was added to that node just above.
            let _ = snapshot.remove_pod_key(node, key);
        }
        match decision {
            Ok(result) => {
                if let Err(rejected) = framework.reserve_and_permit(&mut state, &info.pod, &result.node) {
                    tracing::debug!(pod = %info.key, node = %result.node, %rejected, "placement refused");
                    let plugins = BTreeSet::from([rejected.plugin]);
                    metrics.unschedulable(now);
                    return self.unschedulable(info, rejected.to_string(), plugins, now);
                }
                self.assume_and_bind(info, ProfileRun { framework, metrics }, state, result.node, now)
            }
            Err(Decision::Unschedulable(fit)) => {
                metrics.unschedulable(now);
                self.preempt_or_give_up(info, fit, preemption, now)
            }
            Err(e @ Decision::NoNodes) => {
                metrics.unschedulable(now);
                self.unschedulable(info, e.to_string(), BTreeSet::new(), now)
            }
            Err(error) => {
                tracing::warn!(pod = %info.key, %error, "scheduling failed");
                metrics.error(now);
                self.failed(info, "SchedulerError", error.to_string(), now);
            }
        }
    }

    /// A pod no node fits: the post-filters' outcome nominates a node (its victims are
    /// evicted) or adds to the message.
    fn preempt_or_give_up(
        &mut self,
        info: QueuedPod,
        fit: FitError,
        preemption: Option<PostFilterOutcome>,
        now: Instant,
    ) {
        let plugins = fit.unschedulable_plugins();
        let mut message = fit.to_string();
        match preemption {
            Some(PostFilterOutcome::Nominate(nomination)) => {
                self.stats.preemptions += 1;
                self.metrics.preemption_victims(nomination.victims.len());
                tracing::debug!(pod = %info.key, node = %nomination.node, victims = nomination.victims.len(), "preempting");
                for victim in &nomination.victims {
                    let note = format!("Preempted by pod {} on node {}", info.key, nomination.node);
                    self.event(victim, "Normal", "Preempted", note);
                }
                self.nominator.nominate(info.pod.clone(), nomination.node.clone());
                // Not retried until the cache has seen its victims go.
                self.evictions.start(&info.key, &nomination.victims);
                if self.evictions.is_waiting(&info.key) {
                    self.queue.gate(&info.key);
                }
                let (client, abort) = (self.client.clone(), self.abort.clone());
                let (failures, key, pod) =
                    (self.eviction_failures.clone(), info.key.clone(), info.pod.clone());
                let (node, victims) = (nomination.node, nomination.victims);
                self.tasks.spawn(async move {
                    if nominator::evict(client, pod, node, victims, abort).await > 0 {
                        // The loop may have stopped; then nobody needs to know.
                        let _ = failures.send(key).await;
                    }
                });
            }
            Some(PostFilterOutcome::NotHelped { message: more }) if !more.is_empty() => {
                message = format!("{message} preemption: {more}");
            }
            Some(PostFilterOutcome::Error(error)) => {
                tracing::warn!(pod = %info.key, %error, "preemption failed");
            }
            _ => {}
        }
        self.unschedulable(info, message, plugins, now);
    }

    fn unschedulable(
        &mut self,
        info: QueuedPod,
        message: String,
        plugins: BTreeSet<&'static str>,
        now: Instant,
    ) {
        self.stats.unschedulable += 1;
        tracing::debug!(pod = %info.key, %message, "pod is unschedulable");
        self.report_failure(&info.pod, "Unschedulable", message);
        self.queue.requeue_unschedulable(info, plugins, now);
    }

    fn failed(&mut self, info: QueuedPod, reason: &'static str, message: String, now: Instant) {
        self.report_failure(&info.pod, reason, message);
        self.queue.requeue_backoff(info, now);
    }

    fn report_failure(&mut self, pod: &Arc<Pod>, reason: &'static str, message: String) {
        let now = super::recorder::now(&self.clock);
        if let Some(patch) = unschedulable_condition(pod, reason, &message, &now) {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            self.record(Record::Condition { namespace, name, patch });
        }
        self.event(pod, "Warning", "FailedScheduling", message);
    }

    fn event(&mut self, pod: &Arc<Pod>, type_: &'static str, reason: &'static str, message: String) {
        let component = scheduler_name(pod).to_string();
        self.record(Record::Event(EventRecord { pod: pod.clone(), type_, reason, message, component }));
    }

    fn record(&mut self, record: Record) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.records.try_send(record) {
            tracing::debug!(capacity = RECORDER_CAPACITY, "recorder busy; dropping a record");
        }
    }

    /// Assumes the pod on `node` and binds it in a task of its own; the attempt started at
    /// `started`.
    fn assume_and_bind(
        &mut self,
        info: QueuedPod,
        ProfileRun { framework, metrics }: ProfileRun,
        mut state: CycleState,
        node: String,
        started: Instant,
    ) {
        if let Err(error) = self.cache.assume(&info.pod, &node) {
            tracing::warn!(pod = %info.key, %node, %error, "cannot assume pod");
            framework.unreserve(&mut state, &info.pod, &node);
            metrics.error(started);
            return self.queue.requeue_backoff(info, started);
        }
        // Placed: any nomination is spent (the pod may land elsewhere than nominated).
        self.nominator.remove(&info.key);
        self.evictions.forget(&info.key);
        self.binding += 1;
        let (client, results, abort) = (self.client.clone(), self.bind_results.clone(), self.abort.clone());
        self.tasks.spawn(async move {
            let pod = info.pod.clone();
            let result = tokio::select! {
                biased;
                _ = abort.cancelled() => return,
                r = framework.pre_bind_and_bind(&client, &state, &pod, &node) => r,
            };
            // The loop may have stopped; then nobody needs the outcome.
            let _ = results.send(BindOutcome { info, node, state, result, started, metrics }).await;
        });
    }

    fn bind_finished(&mut self, outcome: BindOutcome) {
        let BindOutcome { info, node, mut state, result, started, metrics } = outcome;
        self.binding -= 1;
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.stats.bound += 1;
                metrics.scheduled(started, &info);
                tracing::debug!(pod = %info.key, %node, "bound pod");
                self.cache.finish_binding(&info.pod, now);
                let message = format!("Successfully assigned {} to {node}", info.key);
                self.event(&info.pod, "Normal", "Scheduled", message);
                self.queue.done(&info, now);
            }
            Err(error) => {
                self.stats.bind_failures += 1;
                metrics.error(started);
                tracing::info!(pod = %info.key, %node, %error, "bind failed; rolling back");
                if let Some(profile) = self.profiles.get(scheduler_name(&info.pod)) {
                    profile.framework.unreserve(&mut state, &info.pod, &node);
                }
                let events = self.cache.forget(&info.pod, &node);
                self.cluster_events(events);
                self.event(
                    &info.pod,
                    "Warning",
                    "FailedScheduling",
                    format!("Binding rejected: {}", error.status.reasons().join(", ")),
                );
                // Even a conflict goes back: if someone else bound the pod, the watch removes
                // it from the queue; if it was only changed meanwhile, it still needs a node.
                self.queue.requeue_backoff(info, now);
            }
        }
    }
}
