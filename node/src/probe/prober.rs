//! The probe workers: one task per pod uid, container name and probe kind (the kubelet's
//! `prober.manager` and `worker`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::Container;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::{Probe, ProbeKind, ProbeOutcome, ProbeState, ProbeUpdate, Seed, probe_once};
use crate::runtime::ContainerRuntime;

/// (pod uid, container name).
type ContainerKey = (String, String);

/// Runs the probes of running containers and reports flips of their results.
///
/// Dropping the prober stops its workers without waiting; [`shutdown`](Self::shutdown) stops
/// and waits.
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<dyn ContainerRuntime>,
    updates: mpsc::Sender<ProbeUpdate>,
    containers: Mutex<HashMap<ContainerKey, Workers>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The workers of one container, and what they published.
struct Workers {
    container_id: String,
    /// Distinguishes these workers from earlier ones of the same container name, so a worker
    /// that lost a race with a restart cannot publish.
    generation: u64,
    cancel: CancellationToken,
    results: BTreeMap<ProbeKind, bool>,
    messages: BTreeMap<ProbeKind, String>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<ContainerKey, Workers>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Prober {
    /// A prober running exec probes through `runtime` and sending result flips to `updates`.
    pub fn new(runtime: Arc<dyn ContainerRuntime>, updates: mpsc::Sender<ProbeUpdate>) -> Self {
        Prober {
            inner: Arc::new(Inner {
                runtime,
                updates,
                containers: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Starts the workers of a running container's probes; restarts them when
    /// `container_id` changed, and does nothing when they already run for it.
    ///
    /// The readiness and startup results start from `seed` ([`Seed::default`] for a new
    /// container: not ready, not started); a startup probe seeded as succeeded does not run.
    /// The initial delay counts from this call. When a restart changes a published result
    /// back to its initial value (a ready container restarting is not ready), a
    /// [`ProbeUpdate`] says so.
    pub fn start_container(
        &self,
        pod_uid: &str,
        pod_ip: Option<IpAddr>,
        container: &Container,
        container_id: &str,
        seed: Seed,
    ) {
        if self.inner.shutdown.is_cancelled() {
            debug!(pod_uid, container = %container.name, "prober shut down, not starting probes");
            return;
        }
        let key = (pod_uid.to_string(), container.name.clone());
        let probes: Vec<(ProbeKind, &Probe)> =
            ProbeKind::ALL.iter().filter_map(|k| k.of(container).map(|p| (*k, p))).collect();
        let mut containers = self.inner.lock();
        if containers.get(&key).is_some_and(|w| w.container_id == container_id) {
            return;
        }
        let previous = containers.remove(&key);
        let generation = match &previous {
            Some(p) => {
                p.cancel.cancel();
                p.generation.wrapping_add(1)
            }
            None => 0,
        };
        if probes.is_empty() {
            return;
        }
        let cancel = self.inner.shutdown.child_token();
        let has_startup = probes.iter().any(|(k, _)| *k == ProbeKind::Startup);
        // Only the startup worker holds the sender: when it stops without success (its
        // container is being restarted), the others stop waiting too.
        let (started_tx, started_rx) = watch::channel(!has_startup || seed.started);
        let mut started_tx = Some(started_tx);
        let start = Instant::now();
        let mut results = BTreeMap::new();
        for (kind, probe) in &probes {
            let state = match kind {
                ProbeKind::Readiness => ProbeState::resumed(*kind, probe, seed.ready),
                ProbeKind::Startup if seed.started => ProbeState::resumed(*kind, probe, true),
                _ => ProbeState::new(*kind, probe),
            };
            results.insert(*kind, state.result());
            let announce = previous
                .as_ref()
                .and_then(|p| p.results.get(kind))
                .filter(|old| **old != state.result())
                .map(|_| state.result());
            let worker = Worker {
                inner: self.inner.clone(),
                key: key.clone(),
                generation,
                container: container.clone(),
                container_id: container_id.to_string(),
                pod_ip,
                probe: (*probe).clone(),
                state,
                cancel: cancel.clone(),
                started: if *kind == ProbeKind::Startup { started_tx.take() } else { None },
                started_rx: started_rx.clone(),
                start,
                announce,
            };
            self.inner.tasks.spawn(worker.run());
        }
        info!(pod_uid, container = %container.name, container_id, kinds = ?probes.iter().map(|p| p.0).collect::<Vec<_>>(), ready = seed.ready, started = seed.started, "started probes");
        containers.insert(
            key,
            Workers {
                container_id: container_id.to_string(),
                generation,
                cancel,
                results,
                messages: BTreeMap::new(),
            },
        );
    }

    /// Stops the workers of one container and forgets its results.
    pub fn stop_container(&self, pod_uid: &str, container_name: &str) {
        let key = (pod_uid.to_string(), container_name.to_string());
        if let Some(w) = self.inner.lock().remove(&key) {
            w.cancel.cancel();
            debug!(pod_uid, container = container_name, "stopped probes");
        }
    }

    /// Stops the workers of every container of a pod.
    pub fn stop_pod(&self, pod_uid: &str) {
        self.inner.lock().retain(|(uid, _), w| {
            let keep = uid != pod_uid;
            if !keep {
                w.cancel.cancel();
            }
            keep
        });
    }

    /// The published result of a container's probe; `None` when it has no such probe running.
    pub fn result(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<bool> {
        let key = (pod_uid.to_string(), container_name.to_string());
        self.inner.lock().get(&key).and_then(|w| w.results.get(&kind).copied())
    }

    /// Why the latest attempt of a container's probe did not succeed (for Events); `None`
    /// after a success or before any attempt.
    pub fn last_message(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<String> {
        let key = (pod_uid.to_string(), container_name.to_string());
        self.inner.lock().get(&key).and_then(|w| w.messages.get(&kind).cloned())
    }

    /// Stops every worker and waits for them to finish.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.lock().clear();
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
    }
}

/// One probe of one container.
struct Worker {
    inner: Arc<Inner>,
    key: ContainerKey,
    generation: u64,
    container: Container,
    container_id: String,
    pod_ip: Option<IpAddr>,
    probe: Probe,
    state: ProbeState,
    cancel: CancellationToken,
    /// The startup worker's way to say its probe succeeded.
    started: Option<watch::Sender<bool>>,
    /// Whether the container's startup probe (if any) succeeded.
    started_rx: watch::Receiver<bool>,
    /// When the container was seen running, for the initial delay.
    start: Instant,
    /// A result to report before probing, when a restart reset it.
    announce: Option<bool>,
}

impl Worker {
    async fn run(mut self) {
        if let Some(success) = self.announce
            && !self.send(success).await
        {
            return;
        }
        // A startup probe seeded as succeeded never runs.
        if self.state.on_hold() {
            return;
        }
        let kind = self.state.kind();
        if kind != ProbeKind::Startup {
            let mut started = self.started_rx.clone();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                // An error: the startup worker gave up (its container is being restarted).
                r = started.wait_for(|s| *s) => if r.is_err() { return },
            }
        }
        let first = (self.start + self.state.initial_delay()).max(Instant::now());
        let mut ticker = tokio::time::interval_at(first, self.state.period());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let outcome = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                o = probe_once(
                    self.inner.runtime.as_ref(),
                    &self.container_id,
                    self.pod_ip,
                    &self.container,
                    &self.probe,
                ) => o,
            };
            if let Some(message) = outcome.message() {
                debug!(pod_uid = %self.key.0, container = %self.key.1, probe = %kind, message, "probe did not succeed");
            }
            let flip = self.state.observe(&outcome);
            if !self.record(&outcome, flip) {
                return;
            }
            if let Some(success) = flip {
                info!(pod_uid = %self.key.0, container = %self.key.1, probe = %kind, success, "probe result changed");
                if !self.send(success).await {
                    return;
                }
            }
            if let Some(started) = &self.started
                && self.state.result()
            {
                started.send_replace(true);
            }
            if self.state.on_hold() {
                return;
            }
        }
    }

    /// Stores the message and any new result; false when these workers were replaced.
    fn record(&self, outcome: &ProbeOutcome, flip: Option<bool>) -> bool {
        let mut containers = self.inner.lock();
        let Some(w) = containers.get_mut(&self.key).filter(|w| w.generation == self.generation) else {
            return false;
        };
        if self.cancel.is_cancelled() {
            return false;
        }
        let kind = self.state.kind();
        match outcome.message() {
            Some(m) => w.messages.insert(kind, m.to_string()),
            None => w.messages.remove(&kind),
        };
        if let Some(success) = flip {
            w.results.insert(kind, success);
        }
        true
    }

    /// Sends an update; false when stopped or nobody listens any more.
    async fn send(&self, success: bool) -> bool {
        let update = ProbeUpdate {
            pod_uid: self.key.0.clone(),
            container_name: self.key.1.clone(),
            kind: self.state.kind(),
            success,
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.inner.updates.send(update) => sent.is_ok(),
        }
    }
}
