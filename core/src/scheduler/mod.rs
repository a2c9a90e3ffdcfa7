//! Scheduling decisions: which node a pod should run on, as pure functions over a snapshot.
//!
//! This is the decision half of kube-scheduler's framework; [`runtime`] drives it (the queue,
//! the cache kept from watches, binding, events and leadership). Nothing else here does I/O or
//! reads a clock, so every decision is reproducible in a test.
//!
//! - [`Snapshot`]: the nodes with what is allocatable and requested on each ([`NodeInfo`]),
//!   built from lists of nodes and pods, with [`Snapshot::add_pod`] and
//!   [`Snapshot::remove_pod`] for optimistic ("assumed") binding.
//! - [`Framework`]: runs a [`Profile`]'s plugins for one pod: pre-filter, filter on every node,
//!   then score, normalize and weigh the feasible nodes, and picks the best one (ties broken by a
//!   seeded generator). An infeasible pod gives a [`FitError`] whose message is
//!   kube-scheduler's ("0/5 nodes are available: 2 Insufficient cpu, 3 node(s) were
//!   unschedulable.").
//! - Plugins are trait objects ([`PreFilterPlugin`], [`FilterPlugin`], [`ScorePlugin`]); the
//!   default ones, with Kubernetes' semantics and reasons, are in [`plugins`], and
//!   [`plugins::default_profile`] assembles them as kube-scheduler's default profile does.
//!
//! - After a node is chosen, the [`ReservePlugin`]s and [`PermitPlugin`]s run in the
//!   scheduling cycle, then the [`PreBindPlugin`]s and [`BindPlugin`]s in the binding cycle
//!   (the only async extension points: they write through the client). When no node fits,
//!   the [`PostFilterPlugin`]s may nominate a node after evicting pods (preemption).
//!
//! Not yet: a pluggable queue sort (the queue orders by priority, then age, as
//! kube-scheduler's PrioritySort does) and permit plugins that make a pod wait.

mod extension;
mod framework;
pub mod plugins;
pub mod runtime;
mod snapshot;
mod status;
mod volumes;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;

pub use extension::{
    BindOutcome, BindPlugin, DefaultBinder, Nomination, PermitPlugin, PlacementRejected, PostFilterOutcome,
    PostFilterPlugin, PreBindPlugin, ReservePlugin,
};
pub use framework::{
    CycleState, FilterPlugin, Framework, MAX_NODE_SCORE, MIN_FEASIBLE_NODES_PERCENTAGE,
    MIN_FEASIBLE_NODES_TO_FIND, NodeScore, PreFilterPlugin, Profile, ScheduleResult, ScorePlugin,
    WeightedScore, default_normalize,
};
pub use snapshot::{
    DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, NodeInfo, NodeTotals, PodInfo, PodRequests, Resources,
    Snapshot, pod_key,
};
pub use status::{FitError, NodeFailure, Status};
pub use volumes::VolumeCatalog;

use crate::quantity::QuantityError;

/// Well-known resource names.
pub mod resource_names {
    /// CPU, in cores (held in thousandths).
    pub const CPU: &str = "cpu";
    /// Memory, in bytes (held in thousandths).
    pub const MEMORY: &str = "memory";
    /// Local ephemeral storage, in bytes (held in thousandths).
    pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
    /// The number of pods a node can run; each pod requests one.
    pub const PODS: &str = "pods";
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The snapshot has no nodes (kube-scheduler's `ErrNoNodesAvailable`).
    #[error("no nodes available to schedule pods")]
    NoNodes,
    /// No node passed every filter; the message is kube-scheduler's.
    #[error(transparent)]
    Unschedulable(#[from] FitError),
    /// A plugin failed (an internal error, not a verdict on the pod).
    #[error("plugin {plugin} failed{}: {message}", node.as_ref().map(|n| format!(" on node {n}")).unwrap_or_default())]
    Plugin {
        /// The plugin's name.
        plugin: &'static str,
        /// The node it was looking at, if any.
        node: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// A score plugin gave a score outside `0..=MAX_NODE_SCORE` after normalization.
    #[error("plugin {plugin} scored node {node} {score}, outside 0..=100")]
    ScoreOutOfRange {
        /// The plugin's name.
        plugin: &'static str,
        /// The node.
        node: String,
        /// The score it gave.
        score: i64,
    },
    /// A resource quantity of a node or pod does not parse.
    #[error("{object}: invalid quantity at {field}")]
    InvalidQuantity {
        /// `node/<name>` or `pod/<namespace>/<name>`.
        object: String,
        /// The field path (`spec.containers[0].resources.requests[cpu]`).
        field: String,
        /// Why it does not parse.
        #[source]
        source: QuantityError,
    },
    /// Two nodes in the snapshot have the same name.
    #[error("node {0} appears twice")]
    DuplicateNode(String),
    /// The named node is not in the snapshot.
    #[error("node {0} is not in the snapshot")]
    NodeNotFound(String),
    /// The pod is not on the named node.
    #[error("pod {pod} is not on node {node}")]
    PodNotFound {
        /// `namespace/name`.
        pod: String,
        /// The node.
        node: String,
    },
}

/// The result type of the scheduler.
pub type Result<T, E = Error> = std::result::Result<T, E>;
