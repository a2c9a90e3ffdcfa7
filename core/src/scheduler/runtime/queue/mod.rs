//! The scheduling queue, with kube-scheduler's semantics, as a pure data structure: every
//! operation takes the current time as an argument and nothing here reads a clock.
//!
//! A pod waits in one of three places:
//! - the **active** queue, ordered by priority (`spec.priority`, highest first), then by the
//!   time it entered the queue: [`SchedulingQueue::pop`] takes the head;
//! - the **backoff** queue, after a failed attempt: it waits `initial_backoff` doubled per
//!   attempt, at most `max_backoff`, counted from the failure, then moves to active
//!   ([`SchedulingQueue::tick`]);
//! - the **unschedulable** set, after no node fitted: it stays until a [`ClusterEvent`] that
//!   could change the verdict of a plugin that rejected it ([`SchedulingQueue::on_event`]), or
//!   until `max_in_unschedulable` has passed; it then moves to backoff if its backoff has not
//!   expired, else to active.
//!
//! A popped pod is *in flight* until the runtime reports the outcome ([`SchedulingQueue::done`],
//! [`SchedulingQueue::requeue_unschedulable`], [`SchedulingQueue::requeue_backoff`]). Events
//! seen while it was in flight are remembered: if one could have helped it, a pod found
//! unschedulable goes to backoff instead of waiting for another event that may never come.
//! Pods are known by `namespace/name`: adding a queued pod again replaces it, and a deleted
//! pod leaves every queue.
//!
//! A pod that preempted others is *gated* ([`SchedulingQueue::gate`]) until the runtime has
//! seen its victims go ([`SchedulingQueue::ungate`]): meanwhile it waits in the unschedulable
//! set whatever the events, as kube-scheduler's DefaultPreemption holds its preemptor back
//! (at PreEnqueue) while the evictions run. Retried earlier, the pod would find its victims
//! still in place and preempt again.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use super::cluster_event::ClusterEvent;
use crate::scheduler::pod_key;

/// The backoff after a pod's first failed attempt (kube-scheduler's `podInitialBackoffSeconds`).
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff (kube-scheduler's `podMaxBackoffSeconds`).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without an event before it is tried again
/// (kube-scheduler's `podMaxInUnschedulablePodsDuration`).
pub const DEFAULT_MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// The queue's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The backoff after the first failed attempt; it doubles with each further attempt.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// How long an unschedulable pod waits for a helpful event before it is retried anyway.
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_in_unschedulable: DEFAULT_MAX_IN_UNSCHEDULABLE,
        }
    }
}

impl QueueConfig {
    /// The backoff after `attempts` failed attempts: `initial_backoff * 2^(attempts-1)`, at
    /// most `max_backoff`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }
}

/// Where a pod is in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Waiting to be popped.
    Active,
    /// Backing off until the instant given.
    Backoff(Instant),
    /// Waiting for a helpful cluster event.
    Unschedulable,
    /// Popped; its outcome is not reported yet.
    InFlight,
}

/// A pod in the queue and its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The latest version of the pod.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// When the pod (re-)entered the queue: first added, or last failed.
    pub timestamp: Instant,
    /// When the pod first entered the queue, kept across attempts: where its scheduling
    /// latency starts.
    pub first_queued: Instant,
    /// How many times it has been popped.
    pub attempts: u32,
    /// The plugins that rejected it the last time it was found unschedulable.
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// The pop that produced this value (0 before any pop).
    cycle: u64,
}

impl QueuedPod {
    fn new(pod: Arc<Pod>, key: String, now: Instant) -> QueuedPod {
        QueuedPod {
            pod,
            key,
            timestamp: now,
            first_queued: now,
            attempts: 0,
            unschedulable_plugins: BTreeSet::new(),
            cycle: 0,
        }
    }

    /// `spec.priority`, 0 if unset.
    pub fn priority(&self) -> i32 {
        priority(&self.pod)
    }
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref()
}

/// Whether an update of a pod could change the scheduler's verdict: anything but status,
/// resourceVersion, generation, managed fields and finalizers (kube-scheduler's
/// `isPodUpdated`).
pub fn pod_updated(old: &Pod, new: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.metadata.resource_version = None;
        p.metadata.generation = None;
        p.metadata.managed_fields = None;
        p.metadata.finalizers = None;
        p.status = None;
        p
    };
    strip(old) != strip(new)
}

/// How many pods are where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// In the active queue.
    pub active: usize,
    /// In the backoff queue.
    pub backoff: usize,
    /// In the unschedulable set.
    pub unschedulable: usize,
    /// Popped and not yet reported.
    pub in_flight: usize,
}

struct Entry {
    info: QueuedPod,
    place: Place,
    /// Breaks ties between equal sort keys, in insertion order.
    seq: u64,
}

struct InFlight {
    cycle: u64,
    /// A version of the pod that arrived while it was in flight.
    latest: Option<Arc<Pod>>,
    /// Cluster events seen while it was in flight.
    events: BTreeSet<ClusterEvent>,
}

type ActiveKey = (Reverse<i32>, Instant, u64, String);
type TimedKey = (Instant, u64, String);

/// The scheduling queue: see the [module docs](self).
pub struct SchedulingQueue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BTreeSet<ActiveKey>,
    /// By backoff expiry.
    backoff: BTreeSet<TimedKey>,
    /// By the time the pod was found unschedulable.
    unschedulable: BTreeSet<TimedKey>,
    in_flight: HashMap<String, InFlight>,
    /// Preemptors waiting for their victims to go (in flight or unschedulable).
    gated: HashSet<String>,
    seq: u64,
    cycle: u64,
}

impl std::fmt::Debug for SchedulingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulingQueue")
            .field("config", &self.config)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            config,
            entries: HashMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            in_flight: HashMap::new(),
            gated: HashSet::new(),
            seq: 0,
            cycle: 0,
        }
    }

    /// The queue's timings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// How many pods are where.
    pub fn counts(&self) -> QueueCounts {
        QueueCounts {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable.len(),
            in_flight: self.in_flight.len(),
        }
    }

    /// Whether a pod is waiting in the active queue.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Where the pod with this key is.
    pub fn place(&self, key: &str) -> Option<Place> {
        if self.in_flight.contains_key(key) {
            return Some(Place::InFlight);
        }
        self.entries.get(key).map(|e| e.place)
    }

    /// The queued pod with this key (not in flight).
    pub fn get(&self, key: &str) -> Option<&QueuedPod> {
        self.entries.get(key).map(|e| &e.info)
    }

    /// The keys of every pod the queue knows, in flight or waiting.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys().chain(self.in_flight.keys())
    }

    /// Adds a pod, or updates it where it is: a pod in flight keeps the new version for when
    /// it comes back; an unschedulable pod whose update could change the verdict
    /// ([`pod_updated`]) moves to backoff or active; a pod with another uid under the same
    /// name (deleted and created again) replaces the old one as a new pod.
    pub fn add(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        if let Some(flight) = self.in_flight.get_mut(&key) {
            flight.latest = Some(pod);
            return;
        }
        let Some(entry) = self.entries.get(&key) else {
            self.insert(QueuedPod::new(pod, key, now), Place::Active);
            return;
        };
        if uid(&entry.info.pod) != uid(&pod) {
            self.remove(&key);
            self.insert(QueuedPod::new(pod, key, now), Place::Active);
            return;
        }
        let place = entry.place;
        let moves =
            place == Place::Unschedulable && !self.gated.contains(&key) && pod_updated(&entry.info.pod, &pod);
        let reorder = place == Place::Active && priority(&entry.info.pod) != priority(&pod);
        if !moves && !reorder {
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.info.pod = pod;
            }
            return;
        }
        let Some(mut info) = self.remove(&key) else { return };
        info.pod = pod;
        let place = if moves { self.active_or_backoff(&info, now) } else { place };
        self.insert(info, place);
    }

    /// Removes a deleted pod (or one that no longer needs scheduling) from every queue.
    pub fn delete(&mut self, key: &str) {
        self.remove(key);
        self.in_flight.remove(key);
        self.gated.remove(key);
    }

    /// The pod with this key preempted others: until [`ungate`](Self::ungate), it goes to
    /// the unschedulable set when it comes back from flight, and no event or update moves it
    /// from there (only the [`tick`](Self::tick) after `max_in_unschedulable` does, in case
    /// the runtime never sees its victims go).
    pub fn gate(&mut self, key: &str) {
        self.gated.insert(key.to_string());
    }

    /// The pod's victims are gone: events move it again, starting with the one that told of
    /// the last victim's deletion.
    pub fn ungate(&mut self, key: &str) {
        self.gated.remove(key);
    }

    /// Whether the pod with this key is gated.
    pub fn is_gated(&self, key: &str) -> bool {
        self.gated.contains(key)
    }

    /// Moves an unschedulable or backing-off pod to the active queue at once (kube-scheduler's
    /// `Activate`, which its preemption calls when evicting failed): it is no longer gated.
    pub fn activate(&mut self, key: &str) {
        self.gated.remove(key);
        if matches!(self.place(key), Some(Place::Unschedulable | Place::Backoff(_)))
            && let Some(info) = self.remove(key)
        {
            self.insert(info, Place::Active);
        }
    }

    /// Takes the head of the active queue: it is in flight until its outcome is reported.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        let (_, _, _, key) = self.active.first()?.clone();
        let mut info = self.remove(&key)?;
        self.cycle += 1;
        info.attempts = info.attempts.saturating_add(1);
        info.cycle = self.cycle;
        self.in_flight.insert(key, InFlight { cycle: self.cycle, latest: None, events: BTreeSet::new() });
        Some(info)
    }

    /// The pod needs no more scheduling (it is bound, or being bound, or gone). If the pod
    /// was deleted and created again while in flight, the new one is added.
    pub fn done(&mut self, info: &QueuedPod, now: Instant) {
        if self.in_flight.get(&info.key).is_some_and(|f| f.cycle == info.cycle) {
            self.gated.remove(&info.key);
        }
        if let Some(flight) = self.take_flight(info)
            && let Some(latest) = flight.latest.filter(|p| uid(p) != uid(&info.pod))
        {
            self.add(latest, now);
        }
    }

    /// No node fitted the pod; `plugins` rejected it. It waits in the unschedulable set, or
    /// in backoff if an event while it was in flight could have helped it (and it is not
    /// gated).
    pub fn requeue_unschedulable(&mut self, info: QueuedPod, plugins: BTreeSet<&'static str>, now: Instant) {
        let Some((mut info, events)) = self.returning(info, now) else { return };
        info.unschedulable_plugins = plugins;
        let gated = self.gated.contains(&info.key);
        let place = if !gated && events.iter().any(|e| e.may_help_any(&info.unschedulable_plugins)) {
            self.backoff_place(&info)
        } else {
            Place::Unschedulable
        };
        self.insert(info, place);
    }

    /// The attempt failed for another reason (an error, a failed bind): the pod backs off.
    pub fn requeue_backoff(&mut self, info: QueuedPod, now: Instant) {
        let Some((info, _)) = self.returning(info, now) else { return };
        let place = self.backoff_place(&info);
        self.insert(info, place);
    }

    /// Moves the unschedulable pods `event` could help to backoff or active; returns how many
    /// moved.
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) -> usize {
        for flight in self.in_flight.values_mut() {
            flight.events.insert(event);
        }
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, _, key)| {
                !self.gated.contains(key)
                    && self
                        .entries
                        .get(key)
                        .is_some_and(|e| event.may_help_any(&e.info.unschedulable_plugins))
            })
            .map(|(_, _, key)| key.clone())
            .collect();
        for key in &helped {
            self.move_out_of_unschedulable(key, now);
        }
        helped.len()
    }

    /// Moves the pods whose backoff has expired to active, and the pods unschedulable for
    /// `max_in_unschedulable` to backoff or active.
    pub fn tick(&mut self, now: Instant) {
        while let Some((expiry, _, key)) = self.backoff.first().cloned() {
            if expiry > now {
                break;
            }
            if let Some(info) = self.remove(&key) {
                self.insert(info, Place::Active);
            }
        }
        while let Some((since, _, key)) = self.unschedulable.first().cloned() {
            if since + self.config.max_in_unschedulable > now {
                break;
            }
            self.move_out_of_unschedulable(&key, now);
        }
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(t, _, _)| *t);
        let flush = self.unschedulable.first().map(|(t, _, _)| *t + self.config.max_in_unschedulable);
        backoff.into_iter().chain(flush).min()
    }

    fn backoff_expiry(&self, info: &QueuedPod) -> Instant {
        info.timestamp + self.config.backoff(info.attempts)
    }

    fn backoff_place(&self, info: &QueuedPod) -> Place {
        Place::Backoff(self.backoff_expiry(info))
    }

    fn active_or_backoff(&self, info: &QueuedPod, now: Instant) -> Place {
        let expiry = self.backoff_expiry(info);
        if expiry > now { Place::Backoff(expiry) } else { Place::Active }
    }

    fn move_out_of_unschedulable(&mut self, key: &str, now: Instant) {
        if let Some(info) = self.remove(key) {
            let place = self.active_or_backoff(&info, now);
            self.insert(info, place);
        }
    }

    /// The in-flight record of `info`, if this pop is still the current one.
    fn take_flight(&mut self, info: &QueuedPod) -> Option<InFlight> {
        match self.in_flight.get(&info.key) {
            Some(f) if f.cycle == info.cycle => self.in_flight.remove(&info.key),
            _ => None,
        }
    }

    /// A pod coming back from flight, with its latest version and failure time, and the
    /// events seen meanwhile; `None` if it was deleted meanwhile. A pod created again under
    /// the same name is added as a new pod instead.
    fn returning(
        &mut self,
        mut info: QueuedPod,
        now: Instant,
    ) -> Option<(QueuedPod, BTreeSet<ClusterEvent>)> {
        let flight = self.take_flight(&info)?;
        if let Some(latest) = flight.latest {
            if uid(&latest) != uid(&info.pod) {
                // A new pod under the old name: the old one's preemption is not its own.
                self.gated.remove(&info.key);
                self.add(latest, now);
                return None;
            }
            info.pod = latest;
        }
        info.timestamp = now;
        Some((info, flight.events))
    }

    fn insert(&mut self, info: QueuedPod, place: Place) {
        self.seq += 1;
        let seq = self.seq;
        let key = info.key.clone();
        match place {
            Place::Active => {
                self.active.insert((Reverse(info.priority()), info.timestamp, seq, key.clone()));
            }
            Place::Backoff(expiry) => {
                self.backoff.insert((expiry, seq, key.clone()));
            }
            Place::Unschedulable => {
                self.unschedulable.insert((info.timestamp, seq, key.clone()));
            }
            // In-flight pods live in `in_flight`, never in `entries`.
            Place::InFlight => return,
        }
        self.entries.insert(key, Entry { info, place, seq });
    }

    fn remove(&mut self, key: &str) -> Option<QueuedPod> {
        let Entry { info, place, seq } = self.entries.remove(key)?;
        let key = key.to_string();
        match place {
            Place::Active => self.active.remove(&(Reverse(info.priority()), info.timestamp, seq, key)),
            Place::Backoff(expiry) => self.backoff.remove(&(expiry, seq, key)),
            Place::Unschedulable => self.unschedulable.remove(&(info.timestamp, seq, key)),
            Place::InFlight => false,
        };
        Some(info)
    }
}

#[cfg(test)]
mod tests;
