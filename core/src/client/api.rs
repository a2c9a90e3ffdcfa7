//! [`Api`]: typed access to one kind, in one namespace or across all.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use super::{
    Client, DeleteOptions, Error, GetOptions, ListOptions, Result, Subresource, WatchEvent, WriteOptions,
};
use k8s_openapi::api::core::v1::Pod;

use crate::object::{DynamicObject, Resource};
use crate::patch::PatchType;

/// A typed page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct List<K> {
    /// The store revision the list was read at.
    pub resource_version: String,
    /// The token for the next page, if any.
    pub continue_token: Option<String>,
    /// The objects.
    pub items: Vec<K>,
}

/// A typed watch event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// Created, or started to match.
    Added(K),
    /// Changed.
    Modified(K),
    /// Deleted, or stopped matching.
    Deleted(K),
    /// Seen everything up to this resourceVersion.
    Bookmark(String),
    /// The watch ended with this error.
    Error(Error),
}

/// Typed operations on kind `K`, in one namespace (or all, or none for cluster kinds).
pub struct Api<K> {
    client: Arc<dyn Client>,
    namespace: Option<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { client: self.client.clone(), namespace: self.namespace.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn to_typed<K: Resource>(obj: &DynamicObject) -> Result<K> {
    obj.to_typed().map_err(|e| Error::Internal(e.to_string()))
}

fn to_dynamic<K: Resource>(obj: &K) -> Result<DynamicObject> {
    DynamicObject::from_typed(obj).map_err(|e| Error::BadRequest(e.to_string()))
}

impl<K: Resource> Api<K> {
    /// Objects in `namespace`.
    pub fn namespaced(client: Arc<dyn Client>, namespace: &str) -> Self {
        Api { client, namespace: Some(namespace.to_string()), kind: PhantomData }
    }

    /// Objects in every namespace (list and watch), or cluster-scoped objects.
    pub fn all(client: Arc<dyn Client>) -> Self {
        Api { client, namespace: None, kind: PhantomData }
    }

    fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Reads `name`.
    pub async fn get(&self, name: &str) -> Result<K> {
        to_typed(&self.client.get(&K::TYPE, self.ns(), name, &GetOptions::default()).await?)
    }

    /// Reads `name`, or `None` if it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(k) => Ok(Some(k)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists objects.
    pub async fn list(&self, opts: &ListOptions) -> Result<List<K>> {
        let l = self.client.list(&K::TYPE, self.ns(), opts).await?;
        Ok(List {
            resource_version: l.resource_version,
            continue_token: l.continue_token,
            items: l.items.iter().map(to_typed).collect::<Result<_>>()?,
        })
    }

    /// Creates `obj`.
    pub async fn create(&self, obj: &K) -> Result<K> {
        let w = self.client.create(&K::TYPE, self.ns(), to_dynamic(obj)?, &WriteOptions::default()).await?;
        to_typed(&w.object)
    }

    /// Replaces `name` with `obj` (a set resourceVersion must be current).
    pub async fn replace(&self, name: &str, obj: &K) -> Result<K> {
        let w = self
            .client
            .replace(&K::TYPE, self.ns(), name, to_dynamic(obj)?, Subresource::Main, &WriteOptions::default())
            .await?;
        to_typed(&w.object)
    }

    /// Replaces the status of `name` with that of `obj`.
    pub async fn replace_status(&self, name: &str, obj: &K) -> Result<K> {
        let w = self
            .client
            .replace(
                &K::TYPE,
                self.ns(),
                name,
                to_dynamic(obj)?,
                Subresource::Status,
                &WriteOptions::default(),
            )
            .await?;
        to_typed(&w.object)
    }

    /// Patches `name`.
    pub async fn patch(&self, name: &str, patch_type: PatchType, patch: &serde_json::Value) -> Result<K> {
        self.patch_sub(name, patch_type, patch, Subresource::Main).await
    }

    /// Patches the status of `name`.
    pub async fn patch_status(
        &self,
        name: &str,
        patch_type: PatchType,
        patch: &serde_json::Value,
    ) -> Result<K> {
        self.patch_sub(name, patch_type, patch, Subresource::Status).await
    }

    async fn patch_sub(
        &self,
        name: &str,
        patch_type: PatchType,
        patch: &serde_json::Value,
        sub: Subresource,
    ) -> Result<K> {
        let bytes = serde_json::to_vec(patch).map_err(|e| Error::BadRequest(e.to_string()))?;
        let w = self
            .client
            .patch(&K::TYPE, self.ns(), name, patch_type, &bytes, sub, &WriteOptions::default())
            .await?;
        to_typed(&w.object)
    }

    /// Sets `spec.replicas` (the scale subresource of workloads).
    pub async fn scale(&self, name: &str, replicas: i32) -> Result<K> {
        self.patch(name, PatchType::Merge, &serde_json::json!({ "spec": { "replicas": replicas } })).await
    }

    /// Deletes `name`: `Ok(Some(obj))` while deletion waits for finalizers or a grace period,
    /// `Ok(None)` once it is gone.
    pub async fn delete(&self, name: &str, opts: &DeleteOptions) -> Result<Option<K>> {
        let d = self.client.delete(&K::TYPE, self.ns(), name, opts).await?;
        if d.gone { Ok(None) } else { to_typed(&d.object).map(Some) }
    }

    /// Deletes every object the selectors of `list` select; returns them as deleted (or
    /// marked for deletion).
    pub async fn delete_collection(&self, list: &ListOptions, opts: &DeleteOptions) -> Result<List<K>> {
        let l = self.client.delete_collection(&K::TYPE, self.ns(), list, opts).await?;
        Ok(List {
            resource_version: l.resource_version,
            continue_token: None,
            items: l.items.iter().map(to_typed).collect::<Result<_>>()?,
        })
    }

    /// Watches objects.
    pub async fn watch(&self, opts: &ListOptions) -> Result<impl Stream<Item = Event<K>> + Send + use<K>> {
        let stream = self.client.watch(&K::TYPE, self.ns(), opts).await?;
        Ok(stream.map(|ev| {
            let typed = |o: &DynamicObject| to_typed::<K>(o);
            match ev {
                WatchEvent::Added(o) => typed(&o).map_or_else(Event::Error, Event::Added),
                WatchEvent::Modified(o) => typed(&o).map_or_else(Event::Error, Event::Modified),
                WatchEvent::Deleted(o) => typed(&o).map_or_else(Event::Error, Event::Deleted),
                WatchEvent::Bookmark { resource_version } => Event::Bookmark(resource_version),
                WatchEvent::Error(e) => Event::Error(e),
            }
        }))
    }
}

impl Api<Pod> {
    /// Binds pod `name` to `node` (what a scheduler does); 409 if it is already bound.
    pub async fn bind(&self, name: &str, node: &str) -> Result<Pod> {
        let ns = self.ns().ok_or_else(|| Error::BadRequest("binding a pod needs a namespaced Api".into()))?;
        to_typed(&self.client.bind(ns, name, node, None).await?)
    }
}
