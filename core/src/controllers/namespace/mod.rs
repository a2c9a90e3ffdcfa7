//! The namespace controller: empties a terminating namespace and then finalizes it
//! (Kubernetes' `pkg/controller/namespace`).
//!
//! Deleting a namespace makes the registry mark it `Terminating` and keep it while
//! `spec.finalizers` holds [`FINALIZER`]. [`NamespaceReconciler`] then deletes every object
//! of every namespaced kind in it (a delete collection per kind, background propagation),
//! lists what remains, and hands that to the pure [`plan_namespace`]: while objects remain
//! (waiting for their finalizers or grace periods) it sets the conditions Kubernetes sets
//! (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`,
//! `NamespaceDeletionContentFailure`, ...) and looks again after [`CONTENT_RECHECK`]; once
//! nothing remains it removes [`FINALIZER`] through the `finalize` subresource, and the
//! registry deletes the namespace.
//!
//! The kinds to empty are a constructor argument, so the reconciler works over a remote
//! client too; [`namespaced_types`] lists them from a [`KindRegistry`] (built-in and user
//! kinds alike). The runtime triggers it on namespace changes only: content going away does
//! not trigger it, the requeue does.

mod decision;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use tracing::{debug, info};

pub use decision::{
    CONTENT_FAILURE, CONTENT_RECHECK, CONTENT_REMAINING, DISCOVERY_FAILURE, FINALIZER, FINALIZERS_REMAINING,
    GROUP_VERSION_PARSING_FAILURE, KindContent, NamespacePlan, Next, needs_cleanup, plan_namespace,
};

use crate::client::{Api, Cache, Client, DeleteOptions, ListOptions, Subresource, WriteOptions};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::object::{DynamicObject, KindRegistry, Resource, ResourceType};
use crate::registry::{self, Clock, PropagationPolicy};

/// The namespace controller's name.
pub const NAMESPACE_CONTROLLER_NAME: &str = "namespace-controller";

/// A failed step of emptying or finalizing a namespace; the reconcile is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some kinds could not be deleted or listed (the namespace's
    /// `NamespaceDeletionContentFailure` condition says the same).
    #[error("deleting the content of namespace {namespace}: {}", failures.join("; "))]
    DeleteContent {
        /// The namespace.
        namespace: String,
        /// What failed, per kind.
        failures: Vec<String>,
    },
    /// Writing the namespace's status (phase and conditions) failed.
    #[error("updating the status of namespace {namespace}")]
    UpdateStatus {
        /// The namespace.
        namespace: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
    /// Removing the finalizer through the `finalize` subresource failed.
    #[error("finalizing namespace {namespace}")]
    Finalize {
        /// The namespace.
        namespace: String,
        /// What the API answered.
        #[source]
        source: registry::Error,
    },
}

/// The result type of the namespace controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every namespaced kind `kinds` serves: what a terminating namespace is emptied of.
pub fn namespaced_types(kinds: &KindRegistry) -> Vec<ResourceType> {
    kinds.types().filter(|t| t.namespaced).collect()
}

/// Whether an error says the kind is not served (by this server, or any more).
fn not_served(e: &registry::Error) -> bool {
    matches!(e, registry::Error::UnknownResource { .. } | registry::Error::NotFound { .. })
}

/// Empties terminating namespaces and finalizes them. Reads the Namespace cache.
pub struct NamespaceReconciler {
    client: Arc<dyn Client>,
    namespaces: Cache<Namespace>,
    namespaced_types: Vec<ResourceType>,
    clock: Clock,
}

impl NamespaceReconciler {
    /// A reconciler emptying namespaces of `namespaced_types` (cluster-scoped types among
    /// them are ignored) through `client`; `clock` stamps condition transitions.
    pub fn new(
        client: Arc<dyn Client>,
        namespaces: Cache<Namespace>,
        namespaced_types: Vec<ResourceType>,
        clock: Clock,
    ) -> Self {
        let namespaced_types = namespaced_types.into_iter().filter(|t| t.namespaced).collect();
        NamespaceReconciler { client, namespaces, namespaced_types, clock }
    }

    /// Deletes every object of `t` in `ns` and reports what remains.
    async fn empty_kind(&self, t: &ResourceType, ns: &str) -> KindContent {
        let background =
            DeleteOptions { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        let all = ListOptions::default();
        let failed =
            |e: registry::Error| KindContent::failed(t, format!("{}: {e}", KindContent::resource_name(t)));
        match self.client.delete_collection(t, Some(ns), &all, &background).await {
            Ok(_) => {}
            Err(e) if not_served(&e) => return KindContent::remaining(t, &[]),
            Err(e) => return failed(e),
        }
        match self.client.list(t, Some(ns), &all).await {
            Ok(list) => KindContent::remaining(t, &list.items),
            Err(e) if not_served(&e) => KindContent::remaining(t, &[]),
            Err(e) => failed(e),
        }
    }

    /// Sets `spec.finalizers` of `ns` to `finalizers` through the `finalize` subresource.
    async fn finalize(&self, ns: &Namespace, finalizers: Vec<String>) -> Result<(), registry::Error> {
        let mut finalized = ns.clone();
        finalized.spec.get_or_insert_with(Default::default).finalizers = Some(finalizers);
        let obj =
            DynamicObject::from_typed(&finalized).map_err(|e| registry::Error::BadRequest(e.to_string()))?;
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let opts = WriteOptions::default();
        self.client.replace(&Namespace::TYPE, None, name, obj, Subresource::Finalize, &opts).await?;
        Ok(())
    }
}

#[async_trait]
impl Reconciler for NamespaceReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(ns) = self.namespaces.get(&key.cache_key()) else { return Ok(Action::Done) };
        if !needs_cleanup(&ns) {
            return Ok(Action::Done);
        }
        let name = key.name.as_str();
        let mut content = Vec::with_capacity(self.namespaced_types.len());
        for t in &self.namespaced_types {
            content.push(self.empty_kind(t, name).await);
        }
        let plan = plan_namespace(&ns, &content, (self.clock)());
        let mut latest = ns.as_ref().clone();
        if let Some(status) = plan.status {
            let api: Api<Namespace> = Api::all(self.client.clone());
            match api.replace_status(name, &status).await {
                Ok(written) => latest = written,
                Err(registry::Error::NotFound { .. }) => return Ok(Action::Done),
                Err(source) => return Err(Error::UpdateStatus { namespace: name.into(), source }),
            }
        }
        match plan.next {
            Next::Wait(after) => {
                let remaining: usize = content.iter().map(|c| c.remaining).sum();
                debug!(namespace = %name, remaining, "namespace content remains");
                Ok(Action::RequeueAfter(after))
            }
            Next::Retry(failures) => Err(Error::DeleteContent { namespace: name.into(), failures }),
            Next::Finalize(finalizers) => match self.finalize(&latest, finalizers).await {
                Ok(()) => {
                    info!(namespace = %name, "finalized namespace");
                    Ok(Action::Done)
                }
                Err(registry::Error::NotFound { .. }) => Ok(Action::Done),
                Err(source) => Err(Error::Finalize { namespace: name.into(), source }),
            },
        }
    }
}
