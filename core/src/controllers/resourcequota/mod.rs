//! The ResourceQuota controller (Kubernetes' `pkg/controller/resourcequota`): keeps each
//! quota's `status` (`hard` and `used`) equal to what its namespace's objects use.
//!
//! The registry charges creates to quotas as they happen (see [`crate::quota`]); nothing
//! there gives usage back. [`QuotaReconciler`] recounts a quota from the objects themselves,
//! which releases what deleted and finished objects held:
//!
//! - when a quota is created or its spec changes (not on the status writes of admission);
//! - when a pod stops counting (deleted, finished, or given a deletion timestamp: it is
//!   recounted again when its grace period ends);
//! - when a Service or PersistentVolumeClaim is deleted;
//! - every [`sync_period`](QuotaConfig::sync_period) (5 minutes, kube-controller-manager's
//!   `--resource-quota-sync-period`), which releases every other kind.
//!
//! A recount reads the quota, then lists the objects (both from the API, not the caches), and
//! writes the status conditional on the quota's resourceVersion: a create charged in between
//! changes the quota, so the write fails and the recount starts over, and nothing is lost.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use tracing::{debug, warn};

use crate::client::{Api, Cache, Client, ListOptions};
use crate::controller::{Action, Change, Controller, Informers, ObjectKey, Reconciler};
use crate::object::ResourceType;
use crate::quota::{self, QuotaRules, pods};
use crate::registry::{self, Clock};

/// The controller's name.
pub const CONTROLLER_NAME: &str = "resourcequota-controller";
/// kube-controller-manager's `--resource-quota-sync-period` default.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(300);

/// How the ResourceQuota controller runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaConfig {
    /// How often every quota is recounted even if nothing triggers it.
    pub sync_period: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig { sync_period: DEFAULT_SYNC_PERIOD }
    }
}

/// A failed recount; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the quota or listing objects failed.
    #[error("reading {what} for quota {quota}")]
    Read {
        /// What was read: `the quota`, `pods`, ...
        what: String,
        /// The quota, `namespace/name`.
        quota: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
    /// An object's usage could not be computed.
    #[error("counting usage for quota {quota}")]
    Usage {
        /// The quota, `namespace/name`.
        quota: String,
        /// Why.
        #[source]
        source: quota::Error,
    },
    /// Writing the quota's status failed.
    #[error("updating the status of quota {quota}")]
    UpdateStatus {
        /// The quota, `namespace/name`.
        quota: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
}

/// The result type of the ResourceQuota controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Recounts quotas; see the [module docs](self).
pub struct QuotaReconciler {
    client: Arc<dyn Client>,
    quotas: Cache<ResourceQuota>,
    types: Vec<ResourceType>,
    clock: Clock,
    config: QuotaConfig,
}

impl QuotaReconciler {
    /// A reconciler for the quotas in `quotas` (a cache someone else fills), counting objects
    /// of the kinds among `types` through `client`; `clock` decides when a terminating pod
    /// stops counting.
    pub fn new(
        client: Arc<dyn Client>,
        quotas: Cache<ResourceQuota>,
        types: Vec<ResourceType>,
        clock: Clock,
        config: QuotaConfig,
    ) -> Self {
        QuotaReconciler { client, quotas, types, clock, config }
    }

    /// The kinds `rules` counts that are served.
    fn counted_types(&self, rules: &QuotaRules) -> Vec<ResourceType> {
        let served = |(group, plural): (&str, &str)| {
            self.types.iter().find(|t| t.namespaced && t.group == group && t.plural == plural).copied()
        };
        rules.counted_kinds().into_iter().filter_map(served).collect()
    }
}

/// Whether a quota change asks for a recount: created, or its spec changed (admission's
/// status writes do not).
pub fn spec_changed(change: &Change<ResourceQuota>) -> bool {
    match change {
        Change::Applied { old: Some(old), new } => old.spec != new.spec,
        Change::Applied { old: None, .. } => true,
        Change::Deleted(_) => false,
    }
}

/// Whether a pod change may release quota: the pod went away, finished, or started
/// terminating.
pub fn pod_released(change: &Change<Pod>) -> bool {
    let finished =
        |p: &Pod| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    match change {
        Change::Deleted(_) => true,
        Change::Applied { old: Some(old), new } => {
            (finished(new) && !finished(old))
                || (new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none())
        }
        Change::Applied { old: None, .. } => false,
    }
}

/// The keys of every cached quota in `namespace`.
fn quotas_in(quotas: &Cache<ResourceQuota>, namespace: Option<&str>) -> Vec<ObjectKey> {
    let Some(ns) = namespace else { return Vec::new() };
    quotas
        .list()
        .iter()
        .filter(|q| q.metadata.namespace.as_deref() == Some(ns))
        .map(|q| ObjectKey::of(q.as_ref()))
        .collect()
}

/// The ResourceQuota controller over the shared informers, counting kinds among `types`.
pub fn resource_quota_controller(
    informers: &Informers,
    clock: Clock,
    types: Vec<ResourceType>,
    config: QuotaConfig,
) -> Controller<ResourceQuota, QuotaReconciler> {
    let quotas = informers.informer::<ResourceQuota>();
    let reconciler = QuotaReconciler::new(informers.client(), quotas.cache(), types, clock, config);
    let (q1, q2, q3) = (quotas.cache(), quotas.cache(), quotas.cache());
    Controller::new(CONTROLLER_NAME, quotas, reconciler)
        .filter_primary(spec_changed)
        .watches(informers.informer::<Pod>(), move |c: &Change<Pod>| match pod_released(c) {
            true => quotas_in(&q1, c.old().and_then(|p| p.metadata.namespace.as_deref())),
            false => Vec::new(),
        })
        .watches(informers.informer::<Service>(), move |c: &Change<Service>| match c {
            Change::Deleted(s) => quotas_in(&q2, s.metadata.namespace.as_deref()),
            Change::Applied { .. } => Vec::new(),
        })
        .watches(informers.informer::<PersistentVolumeClaim>(), move |c: &Change<PersistentVolumeClaim>| {
            match c {
                Change::Deleted(s) => quotas_in(&q3, s.metadata.namespace.as_deref()),
                Change::Applied { .. } => Vec::new(),
            }
        })
}

#[async_trait]
impl Reconciler for QuotaReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        if self.quotas.get(&key.cache_key()).is_none() {
            return Ok(Action::Done);
        }
        let ns = key.namespace.clone().unwrap_or_default();
        let id = format!("{ns}/{}", key.name);
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
        let read = |what: &str| {
            let (what, quota) = (what.to_string(), id.clone());
            move |source| Error::Read { what, quota, source }
        };
        let Some(quota) = api.get_opt(&key.name).await.map_err(read("the quota"))? else {
            return Ok(Action::Done);
        };
        let rules = match QuotaRules::of(&quota) {
            Ok(r) => r,
            Err(error) => {
                warn!(controller = CONTROLLER_NAME, quota = %id, %error, "invalid quota; not counted");
                return Ok(Action::Done);
            }
        };
        let mut objects = Vec::new();
        for t in self.counted_types(&rules) {
            let list =
                self.client.list(&t, Some(&ns), &ListOptions::default()).await.map_err(read(t.plural))?;
            objects.extend(list.items.into_iter().map(|o| (t.group, t.plural, o)));
        }
        let now = (self.clock)();
        let used = rules
            .usage(objects.iter().map(|(g, p, o)| (*g, *p, o)), now)
            .map_err(|source| Error::Usage { quota: id.clone(), source })?;
        // Recount again when a terminating pod's grace period ends.
        let mut next = self.config.sync_period;
        for (_, _, o) in objects.iter().filter(|(g, p, _)| g.is_empty() && *p == "pods") {
            let Ok(pod) = o.to_typed::<Pod>() else { continue };
            if let Some(at) = pods::stops_counting_at(&pod).filter(|_| pods::is_counted(&pod, now)) {
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
                next = next.min(wait + Duration::from_secs(1));
            }
        }
        let mut status = quota.status.clone().unwrap_or_default();
        let (hard, used) = (quota::to_wire(&rules.hard), quota::to_wire(&used));
        if status.hard.as_ref() == Some(&hard) && status.used.as_ref() == Some(&used) {
            return Ok(Action::RequeueAfter(next));
        }
        status.hard = Some(hard);
        status.used = Some(used);
        let mut written = quota.clone();
        written.status = Some(status);
        match api.replace_status(&key.name, &written).await {
            Ok(_) => {
                debug!(controller = CONTROLLER_NAME, quota = %id, "quota usage recounted");
                Ok(Action::RequeueAfter(next))
            }
            Err(registry::Error::NotFound { .. }) => Ok(Action::Done),
            // A create was charged meanwhile: count again from what is there now.
            Err(registry::Error::Conflict { .. }) => Ok(Action::RequeueAfter(Duration::ZERO)),
            Err(source) => Err(Error::UpdateStatus { quota: id, source }),
        }
    }
}
