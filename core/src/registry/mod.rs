//! The registry: Kubernetes object semantics over any [`Store`].
//!
//! It gives objects their uid, timestamps, `resourceVersion` (the store revision of their
//! last change) and `generation`; checks optimistic concurrency on every update; keeps the
//! status subresource apart from the main object; honours finalizers, grace periods and
//! propagation policies on delete; lists with selectors and consistent pagination; and
//! turns store watches into object watch events. Every operation works on
//! [`DynamicObject`]s of any registered kind; the typed client sits on top.

mod apply;
mod cache;
mod encoding;
mod error;
mod list;
mod meta;
mod options;
mod pods;
mod priority;
mod quota;
mod services;
mod watch;
mod write;

use std::sync::Arc;

pub use cache::{WAIT_FOR_REVISION, WatchCache, WatchCacheConfig};
pub use encoding::OBJECT_FORMAT;
pub use error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
pub use list::ObjectList;
pub use options::{
    DeleteOptions, FieldValidation, GetOptions, ListOptions, Precondition, PropagationPolicy,
    ResourceVersionMatch, Subresource, WriteOptions,
};
pub use services::ServiceRanges;
pub use watch::{WatchEvent, WatchStream};
pub use write::{Deleted, Written};

use crate::object::{DynamicObject, KindRegistry, KindStrategy, ResourceType};
use crate::store::Store;

/// A source of wall-clock time for timestamps.
pub type Clock = Arc<dyn Fn() -> k8s_openapi::jiff::Timestamp + Send + Sync>;

/// Object semantics over a store: see the [module docs](self).
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    kinds: Arc<KindRegistry>,
    clock: Clock,
    caches: cache::Caches,
    service_ranges: ServiceRanges,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("kinds", &self.kinds).finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry serving `kinds` from `store`, with the system clock.
    pub fn new(store: Arc<dyn Store>, kinds: KindRegistry) -> Self {
        Registry {
            store,
            kinds: Arc::new(kinds),
            clock: Arc::new(k8s_openapi::jiff::Timestamp::now),
            caches: cache::Caches::default(),
            service_ranges: ServiceRanges::default(),
        }
    }

    /// Gives Services cluster IPs and node ports from `ranges` (default: `10.96.0.0/12` and
    /// `30000-32767`).
    pub fn with_service_ranges(mut self, ranges: ServiceRanges) -> Self {
        self.service_ranges = ranges;
        self
    }

    /// Uses `clock` for creation and deletion timestamps (tests pin it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The kinds served.
    pub fn kinds(&self) -> &KindRegistry {
        &self.kinds
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Serves lists at resourceVersion `"0"` (or not older than a given one), gets at `"0"`
    /// and watches of `t` from a [`WatchCache`] from now on.
    pub async fn enable_watch_cache(&self, t: &ResourceType, config: WatchCacheConfig) -> Result<()> {
        let cache = WatchCache::start(self.store.clone(), self.strategy(t)?, config).await?;
        self.caches.insert(t, cache)
    }

    /// The watch cache of `t`, if enabled.
    pub fn watch_cache(&self, t: &ResourceType) -> Option<Arc<WatchCache>> {
        self.caches.get(t)
    }

    /// Stops every watch cache (their watches end).
    pub async fn shutdown(&self) {
        for c in self.caches.drain() {
            c.shutdown().await;
        }
    }

    /// The strategy of `t`, or UnknownResource.
    fn strategy(&self, t: &ResourceType) -> Result<Arc<dyn KindStrategy>> {
        self.kinds
            .get(t.group, t.plural)
            .cloned()
            .ok_or_else(|| Error::UnknownResource { resource: error::qualified(t) })
    }

    /// Now, at the precision Kubernetes stores (seconds).
    fn now(&self) -> Time {
        let t = (self.clock)();
        Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
    }
}

/// The namespace an operation addresses: `""` for cluster-scoped kinds.
fn scope_namespace<'a>(t: &ResourceType, namespace: Option<&'a str>) -> Result<&'a str> {
    match (t.namespaced, namespace.filter(|n| !n.is_empty())) {
        (true, Some(ns)) => Ok(ns),
        (true, None) => {
            Err(Error::BadRequest(format!("{} is namespaced: a namespace is required", t.plural)))
        }
        (false, _) => Ok(""),
    }
}

/// The object as `DynamicObject` for error messages.
fn kind_of(t: &ResourceType, obj: &DynamicObject) -> String {
    if obj.kind.is_empty() { t.kind.to_string() } else { obj.kind.clone() }
}

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
