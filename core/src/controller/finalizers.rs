//! Finalizer helpers: run cleanup before an object goes, exactly as Kubernetes' finalizer
//! protocol asks (add the finalizer before acting; remove it only after cleanup succeeded).
//!
//! [`finalizer`] wraps a reconcile: it adds the finalizer to live objects, calls the
//! reconcile with [`FinalizerEvent::Apply`] once it is there, and with
//! [`FinalizerEvent::Cleanup`] once the object is being deleted, removing the finalizer when
//! cleanup succeeds. Finalizer edits are JSON patches that `test` the list they change, so a
//! concurrent edit is a conflict, not a lost finalizer.

use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use super::Action;
use crate::client::{Api, Error as ClientError};
use crate::object::Resource;
use crate::patch::PatchType;

/// Errors of [`finalizer`].
#[derive(Debug, thiserror::Error)]
pub enum Error<E: std::error::Error + 'static> {
    /// Adding the finalizer to the object failed.
    #[error("cannot add finalizer {finalizer} to {object}")]
    Add {
        /// The finalizer.
        finalizer: String,
        /// `namespace/name` of the object.
        object: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// Removing the finalizer failed.
    #[error("cannot remove finalizer {finalizer} from {object}")]
    Remove {
        /// The finalizer.
        finalizer: String,
        /// `namespace/name` of the object.
        object: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The wrapped reconcile failed.
    #[error("reconcile of {object} failed")]
    Reconcile {
        /// `namespace/name` of the object.
        object: String,
        /// Why.
        #[source]
        source: E,
    },
}

/// What the wrapped reconcile is asked to do.
#[derive(Debug)]
pub enum FinalizerEvent<K> {
    /// The object lives and carries the finalizer: bring the world in line with it.
    Apply(Arc<K>),
    /// The object is being deleted: undo what it caused. On success the finalizer is removed.
    Cleanup(Arc<K>),
}

/// Whether `obj` carries `finalizer`.
pub fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta().finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Runs `reconcile` under `finalizer` for `obj`, read from a cache; `api` writes it. See the
/// module docs.
pub async fn finalizer<K, E, F, Fut>(
    api: &Api<K>,
    finalizer: &str,
    obj: Arc<K>,
    reconcile: F,
) -> Result<Action, Error<E>>
where
    K: Resource,
    E: std::error::Error + Send + Sync + 'static,
    F: FnOnce(FinalizerEvent<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let m = obj.meta();
    let name = m.name.clone().unwrap_or_default();
    let object = match &m.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    let current = m.finalizers.clone().unwrap_or_default();
    let index = current.iter().position(|f| f == finalizer);
    let deleting = m.deletion_timestamp.is_some();
    match (deleting, index) {
        // Being deleted and not ours (any more): nothing to do.
        (true, None) => Ok(Action::Done),
        (true, Some(i)) => {
            let action = reconcile(FinalizerEvent::Cleanup(obj.clone()))
                .await
                .map_err(|source| Error::Reconcile { object: object.clone(), source })?;
            let patch = json!([
                {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": finalizer},
                {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
            ]);
            match api.patch(&name, PatchType::Json, &patch).await {
                Ok(_) | Err(ClientError::NotFound { .. }) => Ok(action),
                Err(source) => Err(Error::Remove { finalizer: finalizer.into(), object, source }),
            }
        }
        (false, None) => {
            // `test` the whole list so two writers cannot both append from the same state.
            let patch = if m.finalizers.is_none() {
                json!([
                    {"op": "test", "path": "/metadata/resourceVersion", "value": m.resource_version},
                    {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
                ])
            } else {
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": current},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
                ])
            };
            match api.patch(&name, PatchType::Json, &patch).await {
                // The change triggers another reconcile, which sees the finalizer.
                Ok(_) => Ok(Action::Done),
                Err(source) => Err(Error::Add { finalizer: finalizer.into(), object, source }),
            }
        }
        (false, Some(_)) => {
            reconcile(FinalizerEvent::Apply(obj)).await.map_err(|source| Error::Reconcile { object, source })
        }
    }
}
