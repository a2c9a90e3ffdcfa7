//! The pod manager: watches the pods bound to this node, keeps one [`Worker`] per pod uid and
//! tells it when its pod, its containers or its probes change. Relisting the runtime every
//! relist interval (kubelet's PLEG) notices containers that exited, and containers of pods this
//! node does not know (they get a worker that removes them). A worker ends when its pod is gone
//! and nothing of it is left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use flotilla_core::client::{Api, ListOptions, WatcherEvent, watcher};
use flotilla_core::controller::events::{EventType, reference};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::{PodRuntime, pod_ref};
use super::worker::{Desired, ProbeFailures, Shared, Worker};
use crate::probe::{ProbeKind, ProbeUpdate};
use crate::runtime::PodRef;

/// Pending "something changed" signals per worker; one is enough, more would be coalesced.
pub const WORKER_SIGNAL_CAPACITY: usize = 1;
/// Finished workers waiting for the manager to forget them.
pub const DONE_CHANNEL_CAPACITY: usize = 64;

struct Handle {
    desired: watch::Sender<Desired>,
    signal: mpsc::Sender<()>,
    probe_failures: ProbeFailures,
}

impl Handle {
    fn poke(&self) {
        // Full means a signal is pending already: the worker will look anyway.
        let _ = self.signal.try_send(());
    }
}

/// Keeps one worker per pod.
pub(crate) struct PodManager {
    shared: Arc<Shared>,
    workers: HashMap<String, Handle>,
    /// The pods bound here, by uid.
    known: HashMap<String, Pod>,
    /// Uids seen since the watcher's last `Init`.
    relisted: HashSet<String>,
    /// Whether the first complete list of pods arrived (before it, unknown containers may
    /// belong to pods not listed yet).
    synced: bool,
    last_runtime: HashMap<String, PodRuntime>,
    tasks: TaskTracker,
    done_tx: mpsc::Sender<String>,
    done_rx: mpsc::Receiver<String>,
}

impl PodManager {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let (done_tx, done_rx) = mpsc::channel(DONE_CHANNEL_CAPACITY);
        PodManager {
            shared,
            workers: HashMap::new(),
            known: HashMap::new(),
            relisted: HashSet::new(),
            synced: false,
            last_runtime: HashMap::new(),
            tasks: TaskTracker::new(),
            done_tx,
            done_rx,
        }
    }

    /// Runs until `shutdown`, then waits for the workers (which leave containers running, to
    /// be adopted by the next agent).
    pub(crate) async fn run(
        mut self,
        mut probe_updates: mpsc::Receiver<ProbeUpdate>,
        shutdown: CancellationToken,
    ) {
        let node = self.shared.config.node_name.clone();
        let opts =
            ListOptions { field_selector: Some(format!("spec.nodeName={node}")), ..Default::default() };
        let pods = watcher(Api::<Pod>::all(self.shared.client.clone()), opts);
        tokio::pin!(pods);
        let mut relist = tokio::time::interval(self.shared.config.relist_interval);
        relist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(uid) = self.done_rx.recv() => { self.workers.remove(&uid); }
                ev = pods.next() => match ev {
                    Some(ev) => self.on_pod_event(ev, &shutdown).await,
                    None => break,
                },
                Some(update) = probe_updates.recv() => self.on_probe(update),
                _ = relist.tick() => self.relist(&shutdown).await,
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn spawn(&mut self, pod_ref: PodRef, desired: Desired, shutdown: &CancellationToken) {
        let (desired_tx, desired_rx) = watch::channel(desired);
        let (signal_tx, signal_rx) = mpsc::channel(WORKER_SIGNAL_CAPACITY);
        let probe_failures = ProbeFailures::default();
        let uid = pod_ref.uid.clone();
        tracing::debug!(pod = %format!("{}/{}", pod_ref.namespace, pod_ref.name), %uid, "starting pod worker");
        let worker = Worker::new(self.shared.clone(), pod_ref, desired_rx, signal_rx, probe_failures.clone());
        self.tasks.spawn(worker.run(shutdown.clone(), self.done_tx.clone()));
        self.workers.insert(uid, Handle { desired: desired_tx, signal: signal_tx, probe_failures });
    }

    fn bound_here(&self, pod: &Pod) -> bool {
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.shared.config.node_name.as_str())
    }

    fn upsert(&mut self, pod: Pod, shutdown: &CancellationToken) {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else { return };
        if !self.bound_here(&pod) {
            // Not ours (any more): what runs of it is cleaned up like a deleted pod's.
            self.gone(&uid, Some(pod), shutdown);
            return;
        }
        self.relisted.insert(uid.clone());
        self.known.insert(uid.clone(), pod.clone());
        match self.workers.get(&uid) {
            Some(h) => {
                h.desired.send_replace(Desired::Pod(Box::new(pod)));
            }
            None => self.spawn(pod_ref(&pod), Desired::Pod(Box::new(pod)), shutdown),
        }
    }

    fn gone(&mut self, uid: &str, last: Option<Pod>, shutdown: &CancellationToken) {
        let last = self.known.remove(uid).or(last);
        match self.workers.get(uid) {
            Some(h) => {
                h.desired.send_replace(Desired::Gone(last.map(Box::new)));
            }
            None if self.last_runtime.get(uid).is_some_and(|r| !r.is_empty()) => {
                let pod_ref = match &last {
                    Some(p) => pod_ref(p),
                    None => PodRef { uid: uid.to_string(), namespace: String::new(), name: String::new() },
                };
                self.spawn(pod_ref, Desired::Gone(last.map(Box::new)), shutdown);
            }
            None => {}
        }
    }

    async fn on_pod_event(&mut self, ev: WatcherEvent<Pod>, shutdown: &CancellationToken) {
        match ev {
            WatcherEvent::Init => self.relisted.clear(),
            WatcherEvent::InitApply(pod) | WatcherEvent::Apply(pod) => self.upsert(pod, shutdown),
            WatcherEvent::InitDone => {
                let missing: Vec<String> =
                    self.known.keys().filter(|uid| !self.relisted.contains(*uid)).cloned().collect();
                for uid in missing {
                    self.gone(&uid, None, shutdown);
                }
                if !self.synced {
                    self.synced = true;
                    tracing::info!(node = %self.shared.config.node_name, pods = self.known.len(), "pods listed");
                    self.relist(shutdown).await;
                    self.clean_orphan_volumes(shutdown).await;
                }
            }
            WatcherEvent::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.gone(&uid, Some(pod), shutdown);
                }
            }
            WatcherEvent::Retrying(error) => tracing::debug!(%error, "pod watch retrying"),
        }
    }

    fn on_probe(&mut self, update: ProbeUpdate) {
        let Some(h) = self.workers.get(&update.pod_uid) else { return };
        if !update.success {
            match update.kind {
                ProbeKind::Liveness | ProbeKind::Startup => {
                    let mut failures = h.probe_failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.insert((update.container_name.clone(), update.kind));
                }
                ProbeKind::Readiness => {
                    if let Some(pod) = self.known.get(&update.pod_uid) {
                        let detail = self
                            .shared
                            .probes
                            .message(&update.pod_uid, &update.container_name, ProbeKind::Readiness)
                            .unwrap_or_default();
                        self.shared.recorder.publish(
                            reference(pod),
                            EventType::Warning,
                            "Unhealthy",
                            format!("Readiness probe failed: {detail}"),
                        );
                    }
                }
            }
        }
        h.poke();
    }

    /// Lists the runtime: pokes the workers of pods whose containers changed, and starts
    /// workers that remove what belongs to no pod this node knows.
    async fn relist(&mut self, shutdown: &CancellationToken) {
        let started = tokio::time::Instant::now();
        let listed = async {
            let sandboxes = self.shared.runtime.sandboxes().await?;
            let containers = self.shared.runtime.containers().await?;
            Ok::<_, crate::runtime::Error>((sandboxes, containers))
        };
        let (sandboxes, containers) = match listed.await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "cannot list the runtime");
                return;
            }
        };
        self.shared.metrics.relisted(started.elapsed().as_secs_f64(), &sandboxes, &containers);
        let mut now: BTreeMap<String, (PodRef, PodRuntime)> = BTreeMap::new();
        for s in sandboxes {
            now.entry(s.pod.uid.clone())
                .or_insert_with(|| (s.pod.clone(), PodRuntime::default()))
                .1
                .sandboxes
                .push(s);
        }
        for c in containers {
            now.entry(c.pod.uid.clone())
                .or_insert_with(|| (c.pod.clone(), PodRuntime::default()))
                .1
                .containers
                .push(c);
        }
        let mut changed: Vec<String> =
            self.last_runtime.keys().filter(|uid| !now.contains_key(*uid)).cloned().collect();
        for (uid, (_, state)) in &now {
            if self.last_runtime.get(uid) != Some(state) {
                changed.push(uid.clone());
            }
        }
        self.last_runtime = now.iter().map(|(uid, (_, state))| (uid.clone(), state.clone())).collect();
        for uid in changed {
            if let Some(h) = self.workers.get(&uid) {
                h.poke();
            }
        }
        if !self.synced {
            return;
        }
        for (uid, (pod_ref, _)) in now {
            if !self.workers.contains_key(&uid) && !self.known.contains_key(&uid) {
                tracing::info!(pod = %format!("{}/{}", pod_ref.namespace, pod_ref.name), %uid, "removing containers of a pod not bound here");
                self.spawn(pod_ref, Desired::Gone(None), shutdown);
            }
        }
    }

    /// Starts workers that tear down volumes left on disk by pods this node does not know.
    async fn clean_orphan_volumes(&mut self, shutdown: &CancellationToken) {
        let uids = match self.shared.volumes.pods_on_disk().await {
            Ok(u) => u,
            Err(error) => {
                tracing::warn!(%error, "cannot list pod volumes on disk");
                return;
            }
        };
        for uid in uids {
            if !self.workers.contains_key(&uid) && !self.known.contains_key(&uid) {
                let pod_ref = PodRef { uid, namespace: String::new(), name: String::new() };
                self.spawn(pod_ref, Desired::Gone(None), shutdown);
            }
        }
    }
}
