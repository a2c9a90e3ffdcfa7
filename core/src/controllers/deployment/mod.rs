//! The Deployment controller, with Kubernetes' semantics (`pkg/controller/deployment`).
//!
//! A Deployment owns ReplicaSets: the *new* one, whose pod template equals the Deployment's
//! (ignoring the `pod-template-hash` label), and *old* ones. The controller adopts orphan
//! ReplicaSets its selector matches and releases owned ones it no longer matches; creates the
//! new ReplicaSet as `<deployment>-<hash>`; rolls out with the `RollingUpdate` or `Recreate`
//! strategy; scales proportionally when the Deployment is resized mid-rollout; keeps
//! `revisionHistoryLimit` old ReplicaSets; and reports the status `kubectl rollout status`
//! reads, with the `Available` and `Progressing` conditions and the progress deadline.
//!
//! - [`decide`] is the whole decision, without I/O: the Deployment, the ReplicaSets of its
//!   namespace and (for `Recreate`) its pods in, a [`Plan`] of writes out.
//! - [`DeploymentReconciler`] reads informer caches, calls [`decide`] and performs the plan
//!   through the [`Client`](crate::client::Client).
//! - [`deployment_indexes`], [`replica_set_indexes`] and [`pod_indexes`] are the cache indexes
//!   it reads through; [`deployments_for_replica_set`] and [`deployment_for_pod`] map changes
//!   of ReplicaSets and pods to the Deployments to reconcile.
//!
//! ## The template hash
//!
//! Kubernetes hashes the template's Go structure (FNV-32a over a `spew` dump) then the
//! collision count, and renders the number with `SafeEncodeString`. Go's dump cannot be
//! reproduced, so Flotilla hashes the template's JSON serialization instead (fields in
//! declaration order, maps sorted: deterministic), followed by the collision count exactly as
//! Kubernetes appends it, and renders it the same way. Names therefore look like Kubernetes'
//! (`web-7d4b9c8f5`) but differ from the ones a Kubernetes cluster would choose; nothing
//! relies on them matching, since the new ReplicaSet is found by comparing templates.

mod annotations;
mod conditions;
mod decide;
mod hash;
mod reconciler;
mod replicas;
mod triggers;

use crate::client;

pub use annotations::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};
pub use conditions::reasons;
pub use decide::{EventRecord, Observed, Plan, Step, decide};
pub use hash::{compute_hash, equal_ignore_hash};
pub use reconciler::DeploymentReconciler;
pub use triggers::{
    CONTROLLER_UID_INDEX, deployment_for_pod, deployment_indexes, deployments_for_replica_set, pod_indexes,
    replica_set_indexes,
};

/// The name the controller writes Events and logs under.
pub const CONTROLLER_NAME: &str = "deployment-controller";

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// What the Deployment controller reports when it cannot decide or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Deployment's selector does not convert (validation should have refused it).
    #[error("deployment {deployment} has an invalid selector")]
    InvalidSelector {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// What is wrong with it.
        #[source]
        source: crate::validation::ErrorList,
    },
    /// `maxSurge` or `maxUnavailable` is neither a non-negative integer nor a percentage.
    #[error("deployment {deployment} has an invalid {field} {value:?}: {reason}")]
    InvalidRollingUpdate {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// `maxSurge` or `maxUnavailable`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `spec.strategy.type` is neither `RollingUpdate` nor `Recreate`.
    #[error("deployment {deployment} has an unexpected strategy type {kind:?}")]
    UnknownStrategy {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// The type as written.
        kind: String,
    },
    /// A write of a ReplicaSet failed (a 409 Conflict means the cache was stale: retried).
    #[error("cannot {verb} replica set {namespace}/{name} of deployment {deployment}")]
    ReplicaSetWrite {
        /// `create`, `update`, `adopt`, `release` or `delete`.
        verb: &'static str,
        /// The namespace.
        namespace: String,
        /// The ReplicaSet's name.
        name: String,
        /// The Deployment's name.
        deployment: String,
        /// What the API said.
        #[source]
        source: Box<client::Error>,
    },
    /// The Deployment could not be read back before adopting ReplicaSets.
    #[error("cannot read deployment {deployment} before adopting replica sets")]
    DeploymentRead {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// What the API said.
        #[source]
        source: Box<client::Error>,
    },
    /// The Deployment read back is not the one the cache holds, or is being deleted: adopting
    /// for it could hand ReplicaSets to the garbage collector (Kubernetes' `canAdopt`).
    #[error("deployment {deployment} cannot adopt replica sets: {reason}")]
    CannotAdopt {
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// Why.
        reason: &'static str,
    },
    /// A write of the Deployment (its revision annotation or its status) failed.
    #[error("cannot update the {what} of deployment {deployment}")]
    DeploymentWrite {
        /// `revision annotation` or `status`.
        what: &'static str,
        /// `namespace/name` of the Deployment.
        deployment: String,
        /// What the API said.
        #[source]
        source: Box<client::Error>,
    },
}

/// The Deployment controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
