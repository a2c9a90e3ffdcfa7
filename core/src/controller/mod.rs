//! The controller runtime: what turns a reconcile function into a controller that runs in
//! production.
//!
//! - [`Informers`] share one watch and one cache per resource type between every controller of
//!   a process; each [`Informer`] keeps a [`Cache`](crate::client::Cache) with indexes and
//!   fans out change notifications.
//! - [`WorkQueue`] deduplicates keys, hands a key to one worker at a time, retries failures
//!   with per-key exponential backoff (reset on success) under an overall rate limit, and
//!   supports requeue-after.
//! - [`Controller`] joins them: triggers from the primary kind, owned kinds (through
//!   `ownerReferences`) and arbitrary mappings; bounded concurrency; leadership (acts only
//!   while a `watch::Receiver<bool>` says so, and aborts in-flight reconciles at once when it
//!   turns false); graceful shutdown; Prometheus metrics ([`ControllerMetrics`]).
//! - [`events::Recorder`] writes core v1 Events with repeats aggregated; [`conditions`] and
//!   [`finalizers`] help with status conditions and finalizers.
//! - [`testing`] runs controllers against the in-memory store under a paused clock.
//!
//! A reconciler implements [`Reconciler`]: given the key of a primary object, read what it
//! needs (usually from informer caches), write what is missing, and say when to look again.
//! See `docs/controllers.md` in the repository.

use std::time::Duration;

use async_trait::async_trait;

use crate::object::Resource;

/// The namespace and name of an object: what a work queue holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a namespaced object.
    pub fn namespaced(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { namespace: Some(namespace.to_string()), name: name.to_string() }
    }

    /// The key of a cluster-scoped object.
    pub fn cluster(name: &str) -> ObjectKey {
        ObjectKey { namespace: None, name: name.to_string() }
    }

    /// The key of an object.
    pub fn of<K: Resource>(obj: &K) -> ObjectKey {
        let m = obj.meta();
        ObjectKey {
            namespace: m.namespace.clone().filter(|n| !n.is_empty()),
            name: m.name.clone().unwrap_or_default(),
        }
    }

    /// The key as the informer caches spell it: `namespace/name`, or `name`.
    pub fn cache_key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cache_key())
    }
}

/// What a reconcile asks of the runtime when it succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until something changes.
    Done,
    /// Reconcile this key again after the duration, even if nothing changes (for example when a
    /// pod becomes available after `minReadySeconds`).
    RequeueAfter(Duration),
}

/// A controller's reconcile logic.
///
/// `reconcile` is called with one key at a time per key (never concurrently for the same key),
/// for objects that exist and for objects that were just deleted. It must be idempotent: it
/// may run again for the same state. An error is logged and the key retried with per-key
/// exponential backoff.
#[async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// What a failed reconcile reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Bring the world in line with the object named by `key`.
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Self::Error>;
}

pub mod conditions;
pub mod events;
pub mod finalizers;
mod informer;
mod metrics;
mod queue;
mod runner;
pub mod testing;

pub use informer::{CHANGE_CHANNEL_CAPACITY, Change, Informer, Informers};
pub use metrics::ControllerMetrics;
pub use queue::{Processing, QueueConfig, WorkQueue};
pub use runner::{Controller, ControllerConfig};
