//! [`SchedulerMetrics`]: what the scheduler reports, under kube-scheduler's names and with its
//! meanings, so that dashboards made for kube-scheduler read them:
//!
//! - `scheduler_schedule_attempts_total{result,profile}`: scheduling attempts by how they
//!   ended. `scheduled` counts a pod once its bind succeeded; `unschedulable`, an attempt that
//!   found no node (or whose placement a reserve or permit plugin refused); `error`, an
//!   internal problem (a plugin or snapshot error, a failed assume or bind). Pods the loop
//!   pops only to drop (bound meanwhile, deleted, of no profile here) are not attempts.
//! - `scheduler_scheduling_attempt_duration_seconds{result,profile}`: from the pop to the end
//!   of the attempt, the bind included for `scheduled` and failed binds.
//! - `scheduler_pending_pods{queue}`: pods waiting in the `active` queue, in `backoff`, and in
//!   the `unschedulable` set, as of the loop's last step (a standby's warm queue counts too).
//!   There is no `gated` queue: scheduling gates are not implemented.
//! - `scheduler_pod_scheduling_sli_duration_seconds`: from the time a pod first entered this
//!   scheduler's queue to its successful bind, over every attempt (without kube-scheduler's
//!   `attempts` label; see the next one).
//! - `scheduler_pod_scheduling_attempts`: how many attempts a bound pod took.
//! - `scheduler_preemption_attempts_total`: attempts that ran the post-filter (preemption)
//!   plugins of a profile that has some; `scheduler_preemption_victims`: how many pods each
//!   nomination evicts.
//!
//! The loop observes every attempt, so the handles it uses are resolved once per profile
//! when it starts, and the histograms are `AtomicHistogram`s: an observation is a few atomic
//! operations, with no lock and no allocation, and never waits for a scrape.

use std::fmt;
use std::iter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::queue::{QueueCounts, QueuedPod};

/// How a scheduling attempt ended: the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// The pod was bound.
    Scheduled,
    /// No node fitted the pod, or a plugin refused its placement.
    Unschedulable,
    /// An internal error: a plugin or snapshot error, a failed assume or bind.
    Error,
}

impl AttemptResult {
    /// The label value, as kube-scheduler spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

/// A histogram updated with atomics only (see the [module docs](self)). Clones share the
/// values. A scrape may see an observation's bucket before its sum; the count it reports is
/// always the sum of the buckets it read.
#[derive(Clone, Debug)]
pub(crate) struct AtomicHistogram(Arc<HistogramValues>);

#[derive(Debug)]
struct HistogramValues {
    /// Upper bounds, ascending; the `+Inf` bucket is implicit.
    bounds: Box<[f64]>,
    /// One more than `bounds`: the last is `+Inf`'s.
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: impl IntoIterator<Item = f64>) -> AtomicHistogram {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let buckets = iter::repeat_with(AtomicU64::default).take(bounds.len() + 1).collect();
        AtomicHistogram(Arc::new(HistogramValues { bounds, buckets, sum: AtomicU64::new(0) }))
    }

    /// Records `value` in the first bucket whose bound is at least `value`.
    pub(crate) fn observe(&self, value: f64) {
        let v = &self.0;
        let index = v.bounds.partition_point(|bound| *bound < value);
        if let Some(bucket) = v.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // Uncontended in practice: one task observes each histogram.
        let _ = v.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// How many values were observed.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The sum of the values observed.
    pub(crate) fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let v = &self.0;
        // `f64::MAX` is how the encoder spells `+Inf`.
        let bounds = v.bounds.iter().copied().chain(iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> =
            bounds.zip(v.buckets.iter().map(|b| b.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Attempt latency: 1 ms doubling to about 16 s (kube-scheduler's buckets).
fn attempt_buckets() -> AtomicHistogram {
    AtomicHistogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The pending-pod gauges, resolved once.
#[derive(Clone, Debug)]
struct Pending {
    active: Gauge,
    backoff: Gauge,
    unschedulable: Gauge,
}

/// The scheduler's metrics (see the [module docs](self)). Cheap to clone; clones share the
/// values. The binary registers them with its registry ([`register`](Self::register)).
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<AttemptLabels, AtomicHistogram, fn() -> AtomicHistogram>,
    pending_family: Family<QueueLabel, Gauge>,
    pending: Pending,
    sli_duration: AtomicHistogram,
    pod_attempts: AtomicHistogram,
    preemption_attempts: Counter,
    preemption_victims: AtomicHistogram,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        let pending_family = Family::<QueueLabel, Gauge>::default();
        let gauge = |queue| pending_family.get_or_create_owned(&QueueLabel { queue });
        let pending = Pending {
            active: gauge("active"),
            backoff: gauge("backoff"),
            unschedulable: gauge("unschedulable"),
        };
        SchedulerMetrics {
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(attempt_buckets),
            pending_family,
            pending,
            // 10 ms doubling to about 87 minutes.
            sli_duration: AtomicHistogram::new(exponential_buckets(0.01, 2.0, 20)),
            pod_attempts: AtomicHistogram::new(exponential_buckets(1.0, 2.0, 5)),
            preemption_attempts: Counter::default(),
            preemption_victims: AtomicHistogram::new(exponential_buckets(1.0, 2.0, 7)),
        }
    }
}

impl SchedulerMetrics {
    /// New metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry`, under `scheduler_*`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("scheduler");
        sub.register(
            "schedule_attempts",
            "Attempts to schedule pods, by result: unschedulable means no node fitted, error an internal problem",
            self.attempts.clone(),
        );
        sub.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm and binding)",
            self.attempt_duration.clone(),
        );
        sub.register(
            "pending_pods",
            "Pods waiting to be scheduled, by queue: active, backoff or unschedulable",
            self.pending_family.clone(),
        );
        sub.register(
            "pod_scheduling_sli_duration_seconds",
            "Latency of a pod from first entering the scheduling queue to its bind, over every attempt",
            self.sli_duration.clone(),
        );
        sub.register(
            "pod_scheduling_attempts",
            "Attempts it took to schedule a pod",
            self.pod_attempts.clone(),
        );
        sub.register("preemption_attempts", "Preemption attempts", self.preemption_attempts.clone());
        sub.register(
            "preemption_victims",
            "Pods evicted by each preemption",
            self.preemption_victims.clone(),
        );
    }

    /// Attempts so far of `profile` that ended with `result`.
    pub fn schedule_attempts(&self, profile: &str, result: AttemptResult) -> u64 {
        let labels = AttemptLabels { result: result.as_str(), profile: profile.to_string() };
        self.attempts.get(&labels).map_or(0, |c| c.get())
    }

    /// The handles of one profile's series (created now, at zero, so they show before the
    /// first attempt).
    pub(crate) fn profile(&self, profile: &str) -> ProfileMetrics {
        let outcome = |result: AttemptResult| {
            let labels = AttemptLabels { result: result.as_str(), profile: profile.to_string() };
            Outcome {
                count: self.attempts.get_or_create_owned(&labels),
                duration: self.attempt_duration.get_or_create_owned(&labels),
            }
        };
        ProfileMetrics {
            scheduled: outcome(AttemptResult::Scheduled),
            unschedulable: outcome(AttemptResult::Unschedulable),
            error: outcome(AttemptResult::Error),
            sli_duration: self.sli_duration.clone(),
            pod_attempts: self.pod_attempts.clone(),
        }
    }

    /// Records where the pods waiting for a node are.
    pub(crate) fn set_pending(&self, counts: &QueueCounts) {
        let gauge = |g: &Gauge, n: usize| {
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        gauge(&self.pending.active, counts.active);
        gauge(&self.pending.backoff, counts.backoff);
        gauge(&self.pending.unschedulable, counts.unschedulable);
    }

    /// Counts one run of a profile's post-filter (preemption) plugins.
    pub(crate) fn preemption_attempted(&self) {
        self.preemption_attempts.inc();
    }

    /// Records the victims of one nomination.
    pub(crate) fn preemption_victims(&self, victims: usize) {
        self.preemption_victims.observe(victims as f64);
    }
}

/// One `result`'s series of a profile.
#[derive(Debug)]
struct Outcome {
    count: Counter,
    duration: AtomicHistogram,
}

impl Outcome {
    fn record(&self, started: Instant) {
        self.count.inc();
        self.duration.observe(started.elapsed().as_secs_f64());
    }
}

/// The series of one profile, resolved once, for the scheduling loop.
#[derive(Debug)]
pub(crate) struct ProfileMetrics {
    scheduled: Outcome,
    unschedulable: Outcome,
    error: Outcome,
    sli_duration: AtomicHistogram,
    pod_attempts: AtomicHistogram,
}

impl ProfileMetrics {
    /// `pod`'s attempt, started at `started`, ended with its bind.
    pub(crate) fn scheduled(&self, started: Instant, pod: &QueuedPod) {
        self.scheduled.record(started);
        self.sli_duration.observe(pod.first_queued.elapsed().as_secs_f64());
        self.pod_attempts.observe(f64::from(pod.attempts));
    }

    /// An attempt started at `started` found no node.
    pub(crate) fn unschedulable(&self, started: Instant) {
        self.unschedulable.record(started);
    }

    /// An attempt started at `started` failed for an internal reason.
    pub(crate) fn error(&self, started: Instant) {
        self.error.record(started);
    }
}

#[cfg(test)]
mod tests;
