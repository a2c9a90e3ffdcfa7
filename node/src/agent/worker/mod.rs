//! One pod worker per pod uid: on every signal (the pod changed, the runtime changed, a probe
//! flipped, a backoff ended) it lists what the runtime holds for the pod, asks
//! [`plan_pod`](super::plan::plan_pod) what to do, does it, and reports the pod's status when
//! it changed. It ends when the pod is gone and nothing of it is left.

mod actions;
mod config;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::client::{Api, Client, Error as ClientError};
use flotilla_core::controller::events::{EventType, Recorder, reference};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, elapsed};
use super::config::AgentConfig;
use super::heartbeat::error_chain;
use super::hooks::{SharedProbes, SharedVolumes};
use super::plan::{ContainerMemory, PlanInput, PodPlan, PodRuntime, ProbeKind, VolumeState, plan_pod};
use super::status::{StatusInput, pod_status};
use crate::metrics::AgentMetrics;
use crate::probe::Seed;
use crate::runtime::{ContainerRuntime, ContainerState, PodRef};

/// Rounds of plan-and-act in one sync before the worker yields and looks again.
const MAX_ROUNDS_PER_SYNC: usize = 5;
/// The first delay before retrying a sync that failed.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// The longest delay before retrying a sync that failed.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) client: Arc<dyn Client>,
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) recorder: Recorder,
    pub(crate) probes: SharedProbes,
    pub(crate) volumes: SharedVolumes,
    pub(crate) config: Arc<AgentConfig>,
    pub(crate) host_ips: Vec<String>,
    pub(crate) metrics: AgentMetrics,
}

impl Shared {
    fn now(&self) -> Timestamp {
        (self.config.clock)()
    }
}

/// What the API says of a worker's pod.
#[derive(Clone, Debug)]
pub(crate) enum Desired {
    /// The pod as last seen.
    Pod(Box<Pod>),
    /// Gone from the API (last seen state, if it was ever seen).
    Gone(Option<Box<Pod>>),
}

/// Containers whose liveness or startup probe published a failure, by name; the manager
/// fills it from probe updates, the worker empties it when it replaces the container.
pub(crate) type ProbeFailures = Arc<Mutex<BTreeSet<(String, ProbeKind)>>>;

fn lock(f: &ProbeFailures) -> std::sync::MutexGuard<'_, BTreeSet<(String, ProbeKind)>> {
    // Only a set lives behind the lock; a panicking holder cannot leave it half-written.
    f.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a sync ended.
enum Outcome {
    /// Nothing of the pod is left: the worker ends.
    Finished,
    /// Look again at `wake_at` (or on the next signal).
    Idle(Option<Timestamp>),
    /// Something failed: look again after a delay.
    Retry,
}

/// How performing a plan's actions went.
pub(super) enum Performed {
    /// Every action succeeded.
    All,
    /// An action failed (recorded in memory and Events); the rest were skipped.
    Failed,
    /// The pod is finished.
    Finished,
}

/// One pod's worker.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    pod_ref: PodRef,
    desired: watch::Receiver<Desired>,
    signals: mpsc::Receiver<()>,
    probe_failures: ProbeFailures,
    /// The newest state of the pod seen (from the API or our own writes).
    pod: Option<Pod>,
    gone: bool,
    memory: BTreeMap<String, ContainerMemory>,
    volumes: VolumeState,
    volume_backoff: Option<Backoff>,
    /// The container each container name is probed for.
    probing: HashMap<String, String>,
    /// When exited containers without a finish time were first seen, by id.
    exited_seen: HashMap<String, Timestamp>,
    retry: Duration,
}

fn resource_version(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        pod_ref: PodRef,
        desired: watch::Receiver<Desired>,
        signals: mpsc::Receiver<()>,
        probe_failures: ProbeFailures,
    ) -> Self {
        Worker {
            shared,
            pod_ref,
            desired,
            signals,
            probe_failures,
            pod: None,
            gone: false,
            memory: BTreeMap::new(),
            volumes: VolumeState::NotReady,
            volume_backoff: None,
            probing: HashMap::new(),
            exited_seen: HashMap::new(),
            retry: RETRY_INITIAL,
        }
    }

    /// Runs until the pod is finished (then reports its uid on `done`) or `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken, done: mpsc::Sender<String>) {
        let mut wake = Some(tokio::time::Instant::now());
        loop {
            let deadline = wake.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Our own status writes come back through the watch: only news counts.
                    if !self.desired_is_news() {
                        continue;
                    }
                }
                Some(()) = self.signals.recv() => {}
                _ = tokio::time::sleep_until(deadline), if wake.is_some() => {}
            }
            let started = tokio::time::Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                o = self.sync() => o,
            };
            self.shared.metrics.pod_worker_synced(started.elapsed().as_secs_f64());
            wake = match outcome {
                Outcome::Finished => {
                    tracing::debug!(pod = %self.key(), uid = %self.pod_ref.uid, "pod worker finished");
                    // The manager may be gone already at shutdown; nothing else to tell.
                    let _ = done.send(self.pod_ref.uid.clone()).await;
                    return;
                }
                Outcome::Idle(at) => {
                    self.retry = RETRY_INITIAL;
                    at.map(|at| tokio::time::Instant::now() + elapsed(at, self.shared.now()))
                }
                Outcome::Retry => {
                    let delay = self.retry;
                    self.retry = (self.retry * 2).min(RETRY_MAX);
                    Some(tokio::time::Instant::now() + delay)
                }
            };
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.pod_ref.namespace, self.pod_ref.name)
    }

    /// Keeps `pod` if it is at least as new as the one known.
    fn observe(&mut self, pod: &Pod) {
        let newer = match (self.pod.as_ref().and_then(resource_version), resource_version(pod)) {
            (Some(known), Some(seen)) => seen >= known,
            _ => true,
        };
        if newer {
            self.pod = Some(pod.clone());
        }
    }

    /// Whether the desired state says something the worker does not know yet.
    fn desired_is_news(&mut self) -> bool {
        let desired = self.desired.borrow_and_update();
        match &*desired {
            Desired::Gone(_) => true,
            Desired::Pod(p) => match (self.pod.as_ref().and_then(resource_version), resource_version(p)) {
                (Some(known), Some(seen)) => seen > known,
                _ => true,
            },
        }
    }

    fn take_desired(&mut self) {
        let desired = self.desired.borrow_and_update().clone();
        match desired {
            Desired::Pod(p) => self.observe(&p),
            Desired::Gone(last) => {
                self.gone = true;
                if let Some(p) = last {
                    self.observe(&p);
                }
            }
        }
    }

    fn event(&self, type_: EventType, reason: &str, message: impl Into<String>) {
        if let Some(pod) = &self.pod {
            self.shared.recorder.publish(reference(pod), type_, reason, message);
        }
    }

    fn terminating(&self) -> bool {
        self.gone || self.pod.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    }

    /// What the runtime holds for this pod; exited containers without a finish time get the
    /// time they were first seen exited, so backoffs have an event to count from.
    async fn list_runtime(&mut self) -> crate::runtime::Result<PodRuntime> {
        let uid = &self.pod_ref.uid;
        let sandboxes = self.shared.runtime.sandboxes().await?;
        let containers = self.shared.runtime.containers().await?;
        let now = self.shared.now();
        let mut state = PodRuntime {
            sandboxes: sandboxes.into_iter().filter(|s| &s.pod.uid == uid).collect(),
            containers: containers.into_iter().filter(|c| &c.pod.uid == uid).collect(),
        };
        for c in &mut state.containers {
            if let ContainerState::Exited { finished_at, .. } = &mut c.state
                && finished_at.is_none()
            {
                *finished_at = Some(*self.exited_seen.entry(c.id.clone()).or_insert(now));
            }
        }
        let ids: BTreeSet<&String> = state.containers.iter().map(|c| &c.id).collect();
        self.exited_seen.retain(|id, _| ids.contains(id));
        Ok(state)
    }

    /// Starts probing running containers that are not probed yet, and stops probing those
    /// that stopped. A container the pod's status already reports under the same id (one this
    /// agent adopted) resumes the readiness and startup results reported for it.
    fn sync_probes(&mut self, runtime: &PodRuntime) {
        let uid = self.pod_ref.uid.clone();
        let Some(pod) = self.pod.clone().filter(|_| !self.terminating()) else {
            if !self.probing.is_empty() {
                self.shared.probes.stop_pod(&uid);
                self.probing.clear();
            }
            return;
        };
        let ip = runtime.running_sandbox().and_then(|s| s.ip);
        let mut wanted: HashMap<String, String> = HashMap::new();
        for spec in pod.spec.iter().flat_map(|s| &s.containers) {
            let running = runtime
                .containers
                .iter()
                .filter(|c| c.name == spec.name && matches!(c.state, ContainerState::Running { .. }))
                .max_by_key(|c| c.restart_count);
            let Some(c) = running else { continue };
            if self.probing.get(&spec.name) != Some(&c.id) {
                lock(&self.probe_failures).retain(|(name, _)| name != &spec.name);
                let seed = Seed::adopted(&pod, self.shared.runtime.name(), &spec.name, &c.id);
                self.shared.probes.start_container(&uid, ip, spec, &c.id, seed);
            }
            wanted.insert(spec.name.clone(), c.id.clone());
        }
        for name in self.probing.keys().filter(|n| !wanted.contains_key(*n)) {
            self.shared.probes.stop_container(&uid, name);
        }
        self.probing = wanted;
    }

    /// A probe result as the plan reads it: `Some(false)` for a liveness or startup probe only
    /// once it published a failure.
    fn probe_result(&self, name: &str, kind: ProbeKind) -> Option<bool> {
        if kind != ProbeKind::Readiness && lock(&self.probe_failures).contains(&(name.to_string(), kind)) {
            return Some(false);
        }
        let result = self.shared.probes.result(&self.pod_ref.uid, name, kind);
        match kind {
            // The prober reads a startup probe that has not succeeded yet as false.
            ProbeKind::Startup => result.filter(|ok| *ok),
            _ => result,
        }
    }

    fn plan(&self, runtime: &PodRuntime) -> PodPlan {
        let probes = |name: &str, kind: ProbeKind| self.probe_result(name, kind);
        plan_pod(&PlanInput {
            pod: self.pod.as_ref(),
            gone: self.gone,
            runtime,
            memory: &self.memory,
            probes: &probes,
            volumes: &self.volumes,
            now: self.shared.now(),
        })
    }

    async fn sync(&mut self) -> Outcome {
        self.take_desired();
        if !self.terminating()
            && self.volumes == VolumeState::Ready
            && let Some(pod) = &self.pod
            && let Err(error) = self.shared.volumes.refresh(pod).await
        {
            tracing::warn!(pod = %self.key(), %error, "volume refresh failed");
        }
        let mut failed = false;
        let mut rounds = 0;
        loop {
            let runtime = match self.list_runtime().await {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(pod = %self.key(), error = %error_chain(&error), "cannot list the runtime");
                    return Outcome::Retry;
                }
            };
            self.sync_probes(&runtime);
            let plan = self.plan(&runtime);
            // After a failure the reasons it recorded (ErrImagePull, ...) are reported first;
            // the next sync reports the backoff.
            if !failed {
                for (name, w) in &plan.waiting {
                    self.memory.entry(name.clone()).or_default().reason = Some(w.clone());
                }
            }
            if plan.actions.is_empty() || failed || rounds == MAX_ROUNDS_PER_SYNC {
                let reported = self.report_status(&runtime).await;
                return if failed || !reported || !plan.actions.is_empty() {
                    Outcome::Retry
                } else {
                    Outcome::Idle(plan.wake_at)
                };
            }
            rounds += 1;
            match self.perform(&plan.actions, &runtime).await {
                Performed::All => {}
                Performed::Failed => failed = true,
                Performed::Finished => return Outcome::Finished,
            }
        }
    }

    /// Writes the pod's status if it changed; false when it must be tried again.
    async fn report_status(&mut self, runtime: &PodRuntime) -> bool {
        let Some(pod) = self.pod.clone().filter(|_| !self.gone) else { return true };
        let probes = |name: &str, kind: ProbeKind| self.probe_result(name, kind);
        let status = pod_status(&StatusInput {
            pod: &pod,
            runtime,
            runtime_name: self.shared.runtime.name(),
            memory: &self.memory,
            probes: &probes,
            host_ips: &self.shared.host_ips,
            now: self.shared.now(),
        });
        if pod.status.as_ref() == Some(&status) {
            return true;
        }
        let api = Api::<Pod>::namespaced(self.shared.client.clone(), &self.pod_ref.namespace);
        let mut new = pod;
        new.status = Some(status);
        match api.replace_status(&self.pod_ref.name, &new).await {
            Ok(written) => {
                self.observe(&written);
                true
            }
            Err(ClientError::Conflict { .. }) => {
                // Someone else wrote the pod: read it, and report again shortly.
                if let Ok(Some(current)) = api.get_opt(&self.pod_ref.name).await {
                    self.observe(&current);
                }
                false
            }
            // The watch will say it is gone.
            Err(ClientError::NotFound { .. }) => true,
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "pod status update failed");
                false
            }
        }
    }
}
