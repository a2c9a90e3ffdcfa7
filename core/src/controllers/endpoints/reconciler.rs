//! The two reconcilers: each reads its informer caches, asks its decision function what to
//! write and writes it through the [`Client`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::{debug, info};

use super::expectations::Expectations;
use super::legacy::{EndpointsPlan, plan_endpoints};
use super::slices::{MAX_ENDPOINTS_PER_SLICE, SlicePlan, plan_slices};
use super::triggers::{NAMESPACE_INDEX, SLICE_SERVICE_INDEX, ensure_index, slice_service_index};
use super::{Error, Result, pods};
use crate::client::{Api, Cache, Client, DeleteOptions};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::registry::{self, Clock, Precondition};

/// How soon to look again while the caches have not been filled or have not yet seen this
/// controller's last write (their watch will usually trigger a reconcile sooner).
pub(crate) const CACHE_RECHECK: Duration = Duration::from_secs(1);

/// Whether a create failed because the namespace is being deleted: nothing more will be
/// created there, and the namespace controller removes what exists.
fn namespace_terminating(e: &registry::Error) -> bool {
    matches!(e, registry::Error::Forbidden(m) if m.contains("because it is being terminated"))
}

/// Deletion of exactly the object read: a same-named object created since is not touched.
fn delete_exactly(uid: Option<&str>) -> DeleteOptions {
    DeleteOptions {
        preconditions: Precondition { uid: uid.map(str::to_string), resource_version: None },
        ..Default::default()
    }
}

/// The pods of the Service's namespace, if the Service's endpoints are this controller's.
fn candidate_pods(pods: &Cache<Pod>, service: Option<&Service>, namespace: &str) -> Vec<Arc<Pod>> {
    match service {
        Some(s) if pods::has_managed_endpoints(s) => pods.indexed(NAMESPACE_INDEX, namespace),
        _ => Vec::new(),
    }
}

/// Keeps each selector Service's `v1` Endpoints object current (Kubernetes' endpoint
/// controller). Reads the Service, Pod and Endpoints caches, adding the by-namespace index
/// to the first two if they lack it ([`service_indexes`](super::service_indexes),
/// [`pod_indexes`](super::pod_indexes)).
pub struct EndpointsReconciler {
    client: Arc<dyn Client>,
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
    expectations: Expectations,
}

impl EndpointsReconciler {
    /// A reconciler writing through `client`; `clock` times out writes the Endpoints cache
    /// never shows.
    pub fn new(
        client: Arc<dyn Client>,
        services: Cache<Service>,
        pods: Cache<Pod>,
        endpoints: Cache<Endpoints>,
        clock: Clock,
    ) -> Self {
        ensure_index(&services, Cache::<Service>::by_namespace());
        ensure_index(&pods, Cache::<Pod>::by_namespace());
        EndpointsReconciler { client, services, pods, endpoints, expectations: Expectations::new(clock) }
    }
}

#[async_trait]
impl Reconciler for EndpointsReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(ns) = key.namespace.as_deref() else { return Ok(Action::Done) };
        if !(self.services.is_ready() && self.pods.is_ready() && self.endpoints.is_ready()) {
            debug!(service = %key, "caches not filled yet");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let current = self.endpoints.get(&key.cache_key());
        let seen = |_: &str| current.as_ref().and_then(|e| e.metadata.resource_version.clone());
        if self.expectations.unmet(key, seen) {
            debug!(service = %key, "endpoints cache behind the last write");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let service = self.services.get(&key.cache_key());
        let pods = candidate_pods(&self.pods, service.as_deref(), ns);
        let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let failed = |source| (ns.to_string(), key.name.clone(), source);
        match plan_endpoints(service.as_deref(), &pods, current.as_deref()) {
            EndpointsPlan::Unchanged => {}
            EndpointsPlan::Create(ep) => match api.create(&ep).await {
                Ok(written) => {
                    info!(service = %key, "created endpoints");
                    self.expectations.wrote(key, &key.name, written.metadata.resource_version.as_deref());
                }
                Err(e) if namespace_terminating(&e) => debug!(service = %key, "namespace terminating"),
                Err(e) => {
                    let (namespace, name, source) = failed(e);
                    return Err(Error::CreateEndpoints { namespace, name, source });
                }
            },
            EndpointsPlan::Update(ep) => match api.replace(&key.name, &ep).await {
                Ok(written) => {
                    info!(service = %key, "updated endpoints");
                    self.expectations.wrote(key, &key.name, written.metadata.resource_version.as_deref());
                }
                Err(e) => {
                    let (namespace, name, source) = failed(e);
                    return Err(Error::UpdateEndpoints { namespace, name, source });
                }
            },
            EndpointsPlan::Delete(ep) => {
                match api.delete(&key.name, &delete_exactly(ep.metadata.uid.as_deref())).await {
                    Ok(_) | Err(registry::Error::NotFound { .. }) => {
                        info!(service = %key, "deleted endpoints of a deleted service");
                        self.expectations.deleted(key, &key.name);
                    }
                    Err(e) => {
                        let (namespace, name, source) = failed(e);
                        return Err(Error::DeleteEndpoints { namespace, name, source });
                    }
                }
            }
        }
        Ok(Action::Done)
    }
}

/// Keeps each selector Service's EndpointSlices current (Kubernetes' EndpointSlice
/// controller). Reads the Service, Pod and EndpointSlice caches, adding the indexes it needs
/// if they lack them: by namespace for the first two,
/// [`slice_service_index`](super::slice_service_index) for the slices.
pub struct EndpointSliceReconciler {
    client: Arc<dyn Client>,
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
    expectations: Expectations,
    max_endpoints_per_slice: usize,
}

impl EndpointSliceReconciler {
    /// A reconciler writing through `client`, with [`MAX_ENDPOINTS_PER_SLICE`] endpoints per
    /// slice; `clock` times out writes the slice cache never shows.
    pub fn new(
        client: Arc<dyn Client>,
        services: Cache<Service>,
        pods: Cache<Pod>,
        slices: Cache<EndpointSlice>,
        clock: Clock,
    ) -> Self {
        ensure_index(&services, Cache::<Service>::by_namespace());
        ensure_index(&pods, Cache::<Pod>::by_namespace());
        ensure_index(&slices, slice_service_index());
        EndpointSliceReconciler {
            client,
            services,
            pods,
            slices,
            expectations: Expectations::new(clock),
            max_endpoints_per_slice: MAX_ENDPOINTS_PER_SLICE,
        }
    }

    /// Puts at most `max` (at least 1) endpoints in a slice.
    pub fn with_max_endpoints_per_slice(mut self, max: usize) -> Self {
        self.max_endpoints_per_slice = max.max(1);
        self
    }

    /// Performs the plan: creates, then updates, then deletes (so endpoints moving between
    /// slices are never absent from all of them). Returns whether it got to the end.
    async fn write(&self, key: &ObjectKey, ns: &str, plan: SlicePlan) -> Result<bool> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        for slice in &plan.create {
            match api.create(slice).await {
                Ok(w) => {
                    let name = w.metadata.name.as_deref().unwrap_or_default();
                    self.expectations.wrote(key, name, w.metadata.resource_version.as_deref());
                }
                Err(e) if namespace_terminating(&e) => {
                    debug!(service = %key, "namespace terminating");
                    return Ok(false);
                }
                Err(source) => {
                    return Err(Error::CreateSlice {
                        namespace: ns.into(),
                        service: key.name.clone(),
                        source,
                    });
                }
            }
        }
        for slice in &plan.update {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            match api.replace(name, slice).await {
                Ok(w) => self.expectations.wrote(key, name, w.metadata.resource_version.as_deref()),
                Err(source) => {
                    return Err(Error::UpdateSlice { namespace: ns.into(), name: name.into(), source });
                }
            }
        }
        for slice in &plan.delete {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            match api.delete(name, &delete_exactly(slice.metadata.uid.as_deref())).await {
                Ok(_) | Err(registry::Error::NotFound { .. }) => self.expectations.deleted(key, name),
                Err(source) => {
                    return Err(Error::DeleteSlice { namespace: ns.into(), name: name.into(), source });
                }
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl Reconciler for EndpointSliceReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(ns) = key.namespace.as_deref() else { return Ok(Action::Done) };
        if !(self.services.is_ready() && self.pods.is_ready() && self.slices.is_ready()) {
            debug!(service = %key, "caches not filled yet");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let existing = self.slices.indexed(SLICE_SERVICE_INDEX, &key.cache_key());
        let seen = |name: &str| {
            let slice = existing.iter().find(|s| s.metadata.name.as_deref() == Some(name));
            slice.and_then(|s| s.metadata.resource_version.clone())
        };
        if self.expectations.unmet(key, seen) {
            debug!(service = %key, "endpoint slice cache behind the last write");
            return Ok(Action::RequeueAfter(CACHE_RECHECK));
        }
        let service = self.services.get(&key.cache_key());
        let pods = candidate_pods(&self.pods, service.as_deref(), ns);
        let pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let existing: Vec<&EndpointSlice> = existing.iter().map(Arc::as_ref).collect();
        let plan = plan_slices(service.as_deref(), &pods, &existing, self.max_endpoints_per_slice);
        if plan.is_empty() {
            return Ok(Action::Done);
        }
        let (created, updated, deleted) = (plan.create.len(), plan.update.len(), plan.delete.len());
        if self.write(key, ns, plan).await? {
            info!(service = %key, created, updated, deleted, "synced endpoint slices");
        }
        Ok(Action::Done)
    }
}
