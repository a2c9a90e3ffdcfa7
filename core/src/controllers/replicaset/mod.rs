//! The ReplicaSet controller, with Kubernetes' semantics (`pkg/controller/replicaset`).
//!
//! A ReplicaSet keeps `spec.replicas` (default 1) active pods that its selector matches and
//! that it controls:
//!
//! - **Claims.** Active orphans (no controller reference) its selector matches are adopted:
//!   a merge patch adds its controller reference, carrying the pod's `resourceVersion` and
//!   `uid` as a precondition, so a pod that changed meanwhile (adopted by someone else) fails
//!   with 409 instead of being adopted twice. Pods it controls whose labels it no longer
//!   matches are released (its reference removed, on the same precondition). A ReplicaSet
//!   being deleted does neither; before adopting, the live ReplicaSet is read to make sure it
//!   is not being deleted (an orphan adopted by a deleted owner would be garbage-collected).
//! - **Scaling.** Missing pods are created from `spec.template` (labels, annotations,
//!   finalizers, spec; `generateName: <replicaset>-`; a controller reference) in slow-start
//!   batches of 1, 2, 4, ... that stop at the first batch with a failure; surplus pods are
//!   deleted in Kubernetes' order ([`deletion_order`]). At most [`BURST_REPLICAS`] per sync.
//! - **Expectations.** The caches lag behind the controller's own writes, so it records the
//!   pods it created and deleted ([`Expectations`]) and creates or deletes nothing more until
//!   the pod cache shows them all (or five minutes pass). Meanwhile it still claims and
//!   reports status. The next sync is normally triggered by the pod changes that make the
//!   cache catch up ([`pod_triggers`]); a sync that found expectations pending also asks to be
//!   requeued after [`EXPECTATIONS_RECHECK`], and from then on confirms the awaited pods with
//!   direct reads (a created pod deleted before the cache ever showed it is otherwise only
//!   forgotten when the record expires).
//! - **Status**, through the status subresource and only when it changes: `replicas` (active
//!   claimed pods), `fullyLabeledReplicas` (those carrying every template label),
//!   `readyReplicas`, `availableReplicas` (ready for `minReadySeconds`),
//!   `observedGeneration`, and the `ReplicaFailure` condition (reason `FailedCreate` or
//!   `FailedDelete`) while creating or deleting fails, removed by the next sync that
//!   manages replicas without failing. While a ready pod is not yet available, the sync asks
//!   to be requeued when the first one becomes available.
//! - **Events** about the ReplicaSet: `SuccessfulCreate`, `SuccessfulDelete`, and the
//!   warnings `FailedCreate`, `FailedDelete`, published through the shared
//!   [`Recorder`](crate::controller::events::Recorder): they never hold up a sync, and a
//!   repeated one (the same failure on every retry) bumps the `count` of one Event.
//! - A ReplicaSet that no longer exists only has its expectations forgotten: its pods are the
//!   garbage collector's.
//!
//! [`decide`] is the decision without I/O; [`ReplicaSetReconciler`] reads the caches, asks
//! it, and performs the plan. [`pod_triggers`] maps pod changes to the ReplicaSets to
//! reconcile; [`pod_indexes`] and [`replica_set_indexes`] are the cache indexes it reads
//! through.
//!
//! Not here (yet): Kubernetes' `LogarithmicScaleDown` (pods are compared by exact ready and
//! creation times), and `status.terminatingReplicas`.

mod decide;
mod expectations;
mod reconciler;
mod triggers;

use std::time::Duration;

pub use decide::{
    BURST_REPLICAS, Input, InvalidSelector, POD_DELETION_COST_ANNOTATION, Plan, REPLICA_FAILURE,
    ReplicaFailure, SLOW_START_INITIAL_BATCH_SIZE, Scale, availability_requeue, compute_status, decide,
    deletion_order, desired_replicas, pod_from_template, pods_to_delete, related_pods_per_node, selector,
    slow_start_batches, status_changed,
};
pub use expectations::{Check, EXPECTATIONS_TIMEOUT, Expectations, Pending, PodSeen};
pub use reconciler::ReplicaSetReconciler;
pub use triggers::{pod_indexes, pod_triggers, replica_set_indexes};

use crate::client::Error as ClientError;

/// The name the controller writes Events and logs under.
pub const CONTROLLER_NAME: &str = "replicaset-controller";

/// How long after a sync that found earlier writes not yet visible the ReplicaSet is looked
/// at again if no pod change triggers it first; also the delay after the last write before
/// awaited pods are confirmed with direct reads (at most once per this interval).
pub const EXPECTATIONS_RECHECK: Duration = Duration::from_secs(5);

/// Why a sync failed; the runtime retries the key with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A direct read failed.
    #[error("cannot read {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// The client's error.
        source: ClientError,
    },
    /// The live ReplicaSet may not adopt (gone, replaced, or being deleted).
    #[error("replicaset {replica_set} cannot adopt pods: {reason}")]
    CannotAdopt {
        /// `namespace/name`.
        replica_set: String,
        /// Why.
        reason: String,
    },
    /// Adopting a pod failed (409 when it changed since the cache saw it).
    #[error("cannot adopt pod {pod}: {source}")]
    Adopt {
        /// The pod's name.
        pod: String,
        /// The client's error.
        source: ClientError,
    },
    /// Releasing a pod failed.
    #[error("cannot release pod {pod}: {source}")]
    Release {
        /// The pod's name.
        pod: String,
        /// The client's error.
        source: ClientError,
    },
    /// Creating a pod failed.
    #[error("cannot create pods: {0}")]
    Create(ClientError),
    /// Deleting a pod failed.
    #[error("cannot delete pods: {0}")]
    Delete(ClientError),
    /// Writing the status failed.
    #[error("cannot update status: {0}")]
    Status(ClientError),
}
