//! The in-process client with hooks that stage races and slow starts.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

use super::pod;
use crate::client::{
    Client, DeleteOptions, Deleted, GetOptions, ListOptions, LocalClient, ObjectList, Result, Subresource,
    WatchStream, WriteOptions, Written,
};
use crate::object::{DynamicObject, Resource, ResourceType};
use crate::patch::PatchType;

/// The in-process client, with hooks: a delay on the first list of one kind, and a pod
/// replaced by a new one of the same name just before the collector deletes it.
pub(super) struct Hooked {
    pub(super) inner: LocalClient,
    pub(super) slow_first_list: Mutex<Option<(ResourceType, Duration)>>,
    pub(super) replace_before_delete: Mutex<Option<String>>,
}

#[async_trait]
impl Client for Hooked {
    async fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &GetOptions,
    ) -> Result<DynamicObject> {
        self.inner.get(t, ns, name, o).await
    }
    async fn list(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> Result<ObjectList> {
        let delay = {
            let mut slow = self.slow_first_list.lock();
            match *slow {
                Some((kind, delay)) if kind == *t => {
                    *slow = None;
                    Some(delay)
                }
                _ => None,
            }
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.list(t, ns, o).await
    }
    async fn create(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        obj: DynamicObject,
        o: &WriteOptions,
    ) -> Result<Written> {
        self.inner.create(t, ns, obj, o).await
    }
    async fn replace(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: DynamicObject,
        sub: Subresource,
        o: &WriteOptions,
    ) -> Result<Written> {
        self.inner.replace(t, ns, name, obj, sub, o).await
    }
    async fn patch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        patch: &[u8],
        sub: Subresource,
        o: &WriteOptions,
    ) -> Result<Written> {
        self.inner.patch(t, ns, name, pt, patch, sub, o).await
    }
    async fn delete(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> Result<Deleted> {
        let replace = {
            let mut hook = self.replace_before_delete.lock();
            if *t == Pod::TYPE && hook.as_deref() == Some(name) { hook.take() } else { None }
        };
        if replace.is_some() {
            self.inner.delete(t, ns, name, &DeleteOptions::default()).await?;
            let fresh = DynamicObject::from_typed(&pod(name, &[], &[])).expect("a pod converts");
            self.inner.create(t, ns, fresh, &WriteOptions::default()).await?;
        }
        self.inner.delete(t, ns, name, o).await
    }
    async fn watch(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> Result<WatchStream> {
        self.inner.watch(t, ns, o).await
    }
    async fn bind(&self, ns: &str, name: &str, node: &str, uid: Option<&str>) -> Result<DynamicObject> {
        self.inner.bind(ns, name, node, uid).await
    }
    async fn delete_collection(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        l: &ListOptions,
        o: &DeleteOptions,
    ) -> Result<ObjectList> {
        self.inner.delete_collection(t, ns, l, o).await
    }
}
