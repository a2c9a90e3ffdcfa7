//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! `Background`, `Foreground` and `Orphan` propagation policies of deletes, with Kubernetes'
//! semantics (`pkg/controller/garbagecollector`).
//!
//! It works on every kind it is given, user-defined ones included, as
//! [`DynamicObject`](crate::object::DynamicObject)s, in three layers:
//!
//! - [`Graph`] (pure): every object seen, by uid, with its owners and dependents, fed by
//!   watch events; each change returns the [`Attention`] it calls for (uids to look at for
//!   deletion, owners whose dependents to orphan).
//! - The decisions (pure): from the graph, an object's latest state and what its owners
//!   turned out to be, the [`Step`]s to take. [`owner_lookup`] says which owners the graph
//!   vouches for and which must be read live first (an owner the graph has not seen counts
//!   as gone only once a read finds nothing with its uid: Kubernetes' "virtual node" check),
//!   [`owner_state_from_read`] classifies what the read found, and [`attempt_to_delete`]
//!   decides: delete an object whose owners are all gone (in the background), drop the
//!   references to gone owners when a live one remains, delete in the foreground a dependent
//!   of an owner in foreground deletion that has dependents of its own, and remove an
//!   owner's `foregroundDeletion` finalizer once no blocking dependent remains.
//!   [`is_orphaning`], [`orphan_dependent`] and [`remove_finalizer`] release the dependents
//!   of an owner deleted with `orphan`, then its finalizer. Deletes carry a uid precondition
//!   (and a resourceVersion one, dropped by [`retry_delete_without_version`] when only
//!   unrelated fields moved). Invalid references (a namespaced owner in another namespace, a
//!   cluster-scoped dependent of a namespaced kind) give a Warning event, as in Kubernetes.
//! - [`GarbageCollector`] (I/O): one watch per kind, a work queue of uids with per-uid
//!   backoff, bounded concurrency, leadership and graceful shutdown.

mod decide;
mod graph;
mod queue;
mod runner;
mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use decide::{
    INVALID_OWNER_REASON, OwnerLookup, OwnerState, OwnerTarget, Step, attempt_to_delete, has_finalizer,
    is_orphaning, needs_look, orphan_dependent, owner_lookup, owner_state_from_read, owner_target,
    remove_finalizer, retry_delete_without_version,
};
pub use graph::{
    Attention, FOREGROUND_FINALIZER, Graph, Identity, Node, ORPHAN_FINALIZER, Uid, api_group, blocks_owner,
};

use crate::client::Client;
use crate::object::ResourceType;

/// The controller's name, as leader election and events know it.
pub const CONTROLLER_NAME: &str = "garbage-collector";

/// How the collector runs.
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// Objects worked on at once.
    pub workers: usize,
    /// The first retry delay of an object whose work failed; it doubles with each failure.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// How many owners confirmed absent are remembered (saving a read each).
    pub absent_owner_cache: usize,
    /// How long to wait for every kind's first list before acting anyway (a kind the server
    /// does not serve never lists; owners are read live before counting as gone, so acting
    /// with part of the graph missing costs reads, not wrong deletes).
    pub initial_sync_timeout: Duration,
    /// How long running work may go on after shutdown is asked.
    pub shutdown_grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            workers: 20,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(300),
            absent_owner_cache: 500,
            initial_sync_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a piece of the collector's work failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an object failed.
    #[error("reading {object}")]
    Read {
        /// The object.
        object: String,
        /// What the client said.
        #[source]
        source: crate::client::Error,
    },
    /// Reading an object's owner failed.
    #[error("reading owner {owner} of {object}")]
    ReadOwner {
        /// The dependent.
        object: String,
        /// The owner reference (kind, name, uid).
        owner: String,
        /// What the client said.
        #[source]
        source: crate::client::Error,
    },
    /// Deleting an object failed.
    #[error("deleting {object}")]
    Delete {
        /// The object.
        object: String,
        /// What the client said.
        #[source]
        source: crate::client::Error,
    },
    /// Patching an object's owner references or finalizers failed.
    #[error("patching {object}")]
    Patch {
        /// The object.
        object: String,
        /// What the client said.
        #[source]
        source: crate::client::Error,
    },
    /// An owner reference names a kind the collector does not serve (yet).
    #[error("owner of {object} is a {api_version} {kind}, a kind the collector does not know")]
    UnknownOwnerKind {
        /// The dependent.
        object: String,
        /// The reference's apiVersion.
        api_version: String,
        /// The reference's kind.
        kind: String,
    },
    /// A patch could not be encoded.
    #[error("encoding the patch of {object}")]
    Encode {
        /// The object.
        object: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The collector's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The garbage collector of the kinds it is given; see the [module docs](self).
pub struct GarbageCollector {
    client: Arc<dyn Client>,
    types: Vec<ResourceType>,
    config: GcConfig,
}

impl std::fmt::Debug for GarbageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self.types.iter().map(|t| t.kind).collect();
        f.debug_struct("GarbageCollector").field("kinds", &kinds).field("config", &self.config).finish()
    }
}

impl GarbageCollector {
    /// A collector of objects of `types` (every kind that may own or be owned; over a local
    /// client, `registry.kinds().types()`) through `client`.
    pub fn new(client: Arc<dyn Client>, types: Vec<ResourceType>, config: GcConfig) -> Self {
        GarbageCollector { client, types, config }
    }

    /// Runs until `shutdown`: watches every kind into the graph all along, and acts (reads,
    /// deletes, patches) only while `is_leader` is true and every kind has been listed once
    /// (or [`GcConfig::initial_sync_timeout`] has passed), so a dependent listed before its
    /// owner is not even looked at before the owner is in the graph.
    pub async fn run(self, is_leader: tokio::sync::watch::Receiver<bool>, shutdown: CancellationToken) {
        runner::run(self, is_leader, shutdown).await
    }
}
