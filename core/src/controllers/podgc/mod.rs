//! The pod garbage collector (Kubernetes' `pkg/controller/podgc`): deletes pods that nothing
//! else will ever remove.
//!
//! Every [`period`](PodGcConfig::period) (20 s, as in Kubernetes) while this process leads,
//! [`PodGc`] reads the Pod and Node caches and asks the pure [`decide`] which pods to delete:
//!
//! - finished pods (`Succeeded`, `Failed`) beyond
//!   [`terminated_pod_threshold`](PodGcConfig::terminated_pod_threshold) (12,500 by default),
//!   evicted ones first, then oldest first by `creationTimestamp`;
//! - pods being deleted on a node that is not ready and carries the
//!   `node.kubernetes.io/out-of-service` taint (the node is known to be down for good);
//! - orphans: pods bound to a node that does not exist. A node missing from the cache is
//!   first held in [`Quarantine`] for [`quarantine`](PodGcConfig::quarantine) (40 s), and
//!   then confirmed gone by a GET answering 404, so a lagging cache cannot cost a new node its
//!   pods;
//! - pods being deleted that were never scheduled (their deletion would wait for a node
//!   agent that does not exist).
//!
//! Each is deleted with grace period 0 and its uid as precondition. A pod that has not
//! finished is first set `Failed` (through the status subresource, conditional on the cached
//! resourceVersion), orphans with a `DisruptionTarget` condition (reason `DeletionByPodGC`),
//! as Kubernetes does so that the pod's owner sees why it went.
//!
//! The collector is a periodic task rather than a keyed controller, as in Kubernetes: its
//! rules are about the set of pods (how many are finished, which nodes are gone), not about
//! one object.

mod decide;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use decide::{Deletion, GcReason, Quarantine, decide, is_terminated};

use crate::client::{Api, Cache, Client, DeleteOptions};
use crate::controller::Informers;
use crate::controller::conditions;
use crate::registry::{self, Clock, Precondition};

/// The collector's name (in its logs).
pub const POD_GC_NAME: &str = "pod-garbage-collector";
/// The taint that says a node is down for good, so its terminating pods may be removed.
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The reason of an orphan's `DisruptionTarget` condition.
pub const ORPHAN_CONDITION_REASON: &str = "DeletionByPodGC";
/// The message of an orphan's `DisruptionTarget` condition.
pub const ORPHAN_CONDITION_MESSAGE: &str = "PodGC: node no longer exists";
/// Kubernetes' `--terminated-pod-gc-threshold` default.
pub const DEFAULT_TERMINATED_POD_THRESHOLD: usize = 12_500;
/// Kubernetes' `gcCheckPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(20);
/// Kubernetes' `quarantineTime`.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(40);

/// How the pod garbage collector runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodGcConfig {
    /// Finished pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`);
    /// `0` keeps them all.
    pub terminated_pod_threshold: usize,
    /// How often the collector looks.
    pub period: Duration,
    /// How long a node must be missing from the cache before its pods count as orphans.
    pub quarantine: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            terminated_pod_threshold: DEFAULT_TERMINATED_POD_THRESHOLD,
            period: DEFAULT_PERIOD,
            quarantine: DEFAULT_QUARANTINE,
        }
    }
}

/// A failed step of collecting one pod; logged, and tried again on the next pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Confirming that a node is gone failed.
    #[error("reading node {node}")]
    GetNode {
        /// The node.
        node: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
    /// Setting the pod `Failed` before deleting it failed.
    #[error("marking pod {pod} failed")]
    MarkFailed {
        /// The pod, `namespace/name`.
        pod: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
    /// Deleting the pod failed.
    #[error("deleting pod {pod}")]
    Delete {
        /// The pod, `namespace/name`.
        pod: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
}

/// The result type of the pod garbage collector.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The pod garbage collector; see the [module docs](self).
pub struct PodGc {
    client: Arc<dyn Client>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    clock: Clock,
    config: PodGcConfig,
    quarantine: Quarantine,
}

/// The collector over the shared informers' Pod and Node caches.
pub fn pod_gc(informers: &Informers, clock: Clock, config: PodGcConfig) -> PodGc {
    PodGc::new(informers.client(), informers.cache::<Pod>(), informers.cache::<Node>(), clock, config)
}

impl PodGc {
    /// A collector reading `pods` and `nodes` (caches someone else fills, such as the shared
    /// informers') and writing through `client`; `clock` times the quarantine.
    pub fn new(
        client: Arc<dyn Client>,
        pods: Cache<Pod>,
        nodes: Cache<Node>,
        clock: Clock,
        config: PodGcConfig,
    ) -> PodGc {
        let quarantine = Quarantine::new(config.quarantine);
        PodGc { client, pods, nodes, clock, config, quarantine }
    }

    /// Runs a pass every [`period`](PodGcConfig::period) until `shutdown`, while `is_leader`
    /// is true. A pass in progress when leadership is lost is abandoned, and the quarantine
    /// starts over.
    pub async fn run(mut self, mut is_leader: watch::Receiver<bool>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if !*is_leader.borrow_and_update() {
                self.quarantine.clear();
                continue;
            }
            let lost = async {
                if is_leader.wait_for(|l| !*l).await.is_err() {
                    // The sender is gone while we lead: we lead until shutdown.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = lost => {
                    info!(controller = POD_GC_NAME, "lost leadership; pass abandoned");
                    self.quarantine.clear();
                }
                _ = self.run_once() => {}
            }
        }
        debug!(controller = POD_GC_NAME, "stopped");
    }

    /// One pass: decides on the cached pods and nodes and deletes what it decided. Returns how
    /// many pods it deleted (or started deleting). Does nothing until both caches are filled.
    pub async fn run_once(&mut self) -> usize {
        if !(self.pods.is_ready() && self.nodes.is_ready()) {
            debug!(controller = POD_GC_NAME, "caches not filled yet");
            return 0;
        }
        let now = (self.clock)();
        let (pods, nodes) = (self.pods.list(), self.nodes.list());
        let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let nodes: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
        self.quarantine.observe(&pods, &nodes, now);
        let deletions = decide(&pods, &nodes, now, &self.quarantine, &self.config);
        let mut gone: Vec<(String, bool)> = Vec::new();
        let mut deleted = 0;
        for d in &deletions {
            if let Some(node) = d.missing_node() {
                let confirmed = match gone.iter().find(|(n, _)| n == node) {
                    Some((_, g)) => *g,
                    None => {
                        let g = self.confirm_gone(node).await;
                        gone.push((node.to_string(), g));
                        g
                    }
                };
                if !confirmed {
                    continue;
                }
            }
            let pod = pods.iter().find(|p| {
                p.metadata.namespace.as_deref() == Some(&d.namespace)
                    && p.metadata.name.as_deref() == Some(&d.name)
            });
            let Some(pod) = pod else { continue };
            match self.collect(pod, d).await {
                Ok(true) => {
                    deleted += 1;
                    info!(controller = POD_GC_NAME, pod = %d, reason = ?d.reason, "deleted pod");
                }
                Ok(false) => {}
                Err(error) => warn!(controller = POD_GC_NAME, pod = %d, %error, "cannot collect pod"),
            }
        }
        deleted
    }

    /// Whether the API server says `node` does not exist; a node that exists after all leaves
    /// the quarantine.
    async fn confirm_gone(&mut self, node: &str) -> bool {
        match Api::<Node>::all(self.client.clone()).get(node).await {
            Err(registry::Error::NotFound { .. }) => true,
            Ok(_) => {
                debug!(controller = POD_GC_NAME, node, "node exists; the cache was behind");
                self.quarantine.release(node);
                false
            }
            Err(source) => {
                let error = Error::GetNode { node: node.into(), source };
                warn!(controller = POD_GC_NAME, %error, "cannot confirm node is gone");
                false
            }
        }
    }

    /// Sets the pod `Failed` if the decision says so, then deletes it at once. `Ok(false)` when
    /// it was already gone or replaced.
    async fn collect(&self, pod: &Pod, d: &Deletion) -> Result<bool> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &d.namespace);
        if d.mark_failed {
            let mut failed = pod.clone();
            let status = failed.status.get_or_insert_with(Default::default);
            status.phase = Some("Failed".into());
            if let Some(c) = &d.condition {
                let now = c
                    .last_transition_time
                    .clone()
                    .unwrap_or_else(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time((self.clock)()));
                conditions::set(status.conditions.get_or_insert_with(Vec::new), c.clone(), &now);
            }
            match api.replace_status(&d.name, &failed).await {
                Ok(_) => {}
                Err(registry::Error::NotFound { .. }) => return Ok(false),
                Err(source) => return Err(Error::MarkFailed { pod: d.to_string(), source }),
            }
        }
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Precondition { uid: d.uid.clone(), resource_version: None },
            ..Default::default()
        };
        match api.delete(&d.name, &opts).await {
            Ok(_) => Ok(true),
            // Gone, or a new pod of the same name (the uid precondition failed).
            Err(registry::Error::NotFound { .. } | registry::Error::Conflict { .. }) => Ok(false),
            Err(source) => Err(Error::Delete { pod: d.to_string(), source }),
        }
    }
}
