//! What each phase waits for, decided from plain values: the Deployment's status and its
//! ReplicaSets as the API reports them, the pods as the watcher saw them, and (to check a
//! finished phase) a list of the pods.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use crate::observe::Counts;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
const HASH_LABEL: &str = "pod-template-hash";

/// A phase's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    /// A new Deployment has this many pods, all available.
    Available(usize),
    /// A changed template has rolled out to this many pods, and the old ones are gone.
    RolledOut(usize),
    /// No pods remain.
    ScaledToZero,
}

/// One ReplicaSet's replica counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RsView {
    /// Its name.
    pub(crate) name: String,
    /// `spec.replicas`.
    pub(crate) desired: i64,
    /// `status.replicas`.
    pub(crate) current: i64,
}

/// What the API says about the Deployment and its ReplicaSets, and the watcher's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// `metadata.generation`.
    pub(crate) generation: i64,
    /// `status.observedGeneration`.
    pub(crate) observed_generation: i64,
    /// `status.replicas`.
    pub(crate) replicas: i64,
    /// `status.updatedReplicas`.
    pub(crate) updated: i64,
    /// `status.readyReplicas`.
    pub(crate) ready: i64,
    /// `status.availableReplicas`.
    pub(crate) available: i64,
    /// The Deployment's ReplicaSets.
    pub(crate) replica_sets: Vec<RsView>,
    /// The pods as the watcher saw them.
    pub(crate) pods: Counts,
}

impl View {
    /// The view of `deployment` with `replica_sets` (those it owns) and the watcher's `pods`.
    pub(crate) fn new(deployment: &Deployment, replica_sets: &[ReplicaSet], pods: Counts) -> View {
        let status = deployment.status.clone().unwrap_or_default();
        let of = |v: Option<i32>| i64::from(v.unwrap_or(0));
        let uid = deployment.metadata.uid.as_deref();
        let owned = |rs: &&ReplicaSet| {
            let refs = rs.metadata.owner_references.iter().flatten();
            refs.into_iter().any(|r| Some(r.uid.as_str()) == uid)
        };
        View {
            generation: deployment.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            replicas: of(status.replicas),
            updated: of(status.updated_replicas),
            ready: of(status.ready_replicas),
            available: of(status.available_replicas),
            replica_sets: replica_sets
                .iter()
                .filter(owned)
                .map(|rs| RsView {
                    name: rs.metadata.name.clone().unwrap_or_default(),
                    desired: of(rs.spec.as_ref().and_then(|s| s.replicas)),
                    current: i64::from(rs.status.as_ref().map_or(0, |s| s.replicas)),
                })
                .collect(),
            pods,
        }
    }

    /// ReplicaSets that want or have pods.
    fn active_replica_sets(&self) -> usize {
        self.replica_sets.iter().filter(|rs| rs.desired > 0 || rs.current > 0).count()
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deployment generation {}/{} replicas={} updated={} ready={} available={}; replica sets",
            self.observed_generation,
            self.generation,
            self.replicas,
            self.updated,
            self.ready,
            self.available
        )?;
        for rs in &self.replica_sets {
            write!(f, " {}={}/{}", rs.name, rs.current, rs.desired)?;
        }
        let p = &self.pods;
        write!(
            f,
            "; pods seen live={} bound={} ready={} (watch retries {})",
            p.live, p.bound, p.ready, p.retries
        )
    }
}

impl Goal {
    /// Whether the Deployment's status (for the generation the phase wrote) says the goal is
    /// met, as `kubectl rollout status` would.
    pub(crate) fn status_reached(self, v: &View) -> bool {
        if v.observed_generation < v.generation {
            return false;
        }
        match self {
            Goal::Available(n) => {
                let n = n as i64;
                v.replicas == n && v.updated == n && v.available == n
            }
            Goal::RolledOut(n) => {
                let n = n as i64;
                // `replicas` counts the pods of every ReplicaSet: equal to `updated`, the old
                // ones have none left; only the new ReplicaSet still wants any.
                v.replicas == n && v.updated == n && v.available == n && v.active_replica_sets() == 1
            }
            Goal::ScaledToZero => v.replicas == 0 && v.active_replica_sets() == 0,
        }
    }

    /// Whether the pods the watcher sees agree: every wanted pod ready, and no other pod left
    /// (terminating ones included, so a rollout or scale-down ends when deletion completes).
    pub(crate) fn pods_settled(self, v: &View) -> bool {
        let p = &v.pods;
        match self {
            Goal::Available(n) | Goal::RolledOut(n) => p.live == n && p.ready_now == n && p.bound == n,
            Goal::ScaledToZero => p.live == 0,
        }
    }

    /// Whether the phase is over.
    pub(crate) fn reached(self, v: &View) -> bool {
        self.status_reached(v) && self.pods_settled(v)
    }
}

/// A list of the pods, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Pods listed.
    pub(crate) total: usize,
    /// Of those, bound to a node.
    pub(crate) bound: usize,
    /// Of those, `Running` and `Ready`.
    pub(crate) ready: usize,
    /// Of those, being deleted.
    pub(crate) terminating: usize,
    /// The distinct `pod-template-hash` labels.
    pub(crate) templates: BTreeSet<String>,
    /// Nodes with at least one pod.
    pub(crate) nodes: usize,
}

impl Tally {
    /// Counts `pods`.
    pub(crate) fn of(pods: &[Pod]) -> Tally {
        let mut tally = Tally { total: pods.len(), ..Tally::default() };
        let mut nodes = BTreeSet::new();
        for pod in pods {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                tally.bound += 1;
                nodes.insert(node);
            }
            let status = pod.status.as_ref();
            let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && crate::observe::is_ready(pod) {
                tally.ready += 1;
            }
            tally.terminating += usize::from(pod.metadata.deletion_timestamp.is_some());
            let labels = pod.metadata.labels.as_ref();
            if let Some(hash) = labels.and_then(|l| l.get(HASH_LABEL)) {
                tally.templates.insert(hash.clone());
            }
        }
        tally.nodes = nodes.len();
        tally
    }

    /// Whether the pods are what `goal` promises; `previous` are the template hashes of the
    /// pods before the phase (a rollout must have replaced them all).
    pub(crate) fn check(&self, goal: Goal, previous: &BTreeSet<String>) -> Result<(), String> {
        let want = match goal {
            Goal::Available(n) | Goal::RolledOut(n) => n,
            Goal::ScaledToZero => 0,
        };
        let mut problems = Vec::new();
        if self.total != want {
            problems.push(format!("{} pods, expected {want}", self.total));
        }
        if self.ready != want || self.bound != want {
            problems.push(format!("{} ready and {} bound, expected {want}", self.ready, self.bound));
        }
        if self.terminating > 0 {
            problems.push(format!("{} still terminating", self.terminating));
        }
        if want > 0 && self.templates.len() != 1 {
            problems.push(format!("pods of {} templates, expected one", self.templates.len()));
        }
        if matches!(goal, Goal::RolledOut(_)) && !self.templates.is_disjoint(previous) {
            problems.push(format!("pods of the old template {previous:?} remain"));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

#[cfg(test)]
mod tests;
