//! The client interface every component uses: [`Client`] (any kind, as
//! [`DynamicObject`]s) and the typed [`Api`] on top of it.
//!
//! [`LocalClient`] is the in-process implementation, straight to a [`Registry`]; the HTTP
//! implementation lives in `flotilla-api`. Components written against `Arc<dyn Client>` run
//! on either.

mod api;
mod reflector;
mod watcher;

use async_trait::async_trait;

pub use api::{Api, Event, List};
pub use reflector::{Cache, IndexFn, object_key, reflector};
pub use watcher::{WatcherEvent, watcher};

use crate::object::{DynamicObject, ResourceType};
use crate::patch::PatchType;
use crate::registry::Registry;
pub use crate::registry::{
    DeleteOptions, Deleted, Error, GetOptions, ListOptions, ObjectList, Precondition, PropagationPolicy,
    Result, Subresource, WatchEvent, WatchStream, WriteOptions, Written,
};

/// Operations on objects of any kind. `namespace` is ignored for cluster-scoped kinds and
/// `None` lists or watches across all namespaces.
#[async_trait]
pub trait Client: Send + Sync + 'static {
    /// Reads one object.
    async fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &GetOptions,
    ) -> Result<DynamicObject>;

    /// Lists objects.
    async fn list(&self, t: &ResourceType, namespace: Option<&str>, opts: &ListOptions)
    -> Result<ObjectList>;

    /// Creates an object.
    async fn create(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        obj: DynamicObject,
        opts: &WriteOptions,
    ) -> Result<Written>;

    /// Replaces an object or its status.
    async fn replace(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: DynamicObject,
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written>;

    /// Patches an object or its status.
    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written>;

    /// Deletes an object.
    async fn delete(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted>;

    /// Watches objects.
    async fn watch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WatchStream>;

    /// Binds a pod to a node (`pods/binding`), optionally only if its uid is `uid`.
    async fn bind(&self, namespace: &str, name: &str, node: &str, uid: Option<&str>)
    -> Result<DynamicObject>;

    /// Deletes every object the selectors of `list` select (deletecollection).
    async fn delete_collection(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<ObjectList>;
}

/// The in-process client: calls go straight to a [`Registry`].
#[derive(Clone, Debug)]
pub struct LocalClient {
    registry: Registry,
}

impl LocalClient {
    /// A client of `registry`.
    pub fn new(registry: Registry) -> Self {
        LocalClient { registry }
    }

    /// The registry behind this client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[async_trait]
impl Client for LocalClient {
    async fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &GetOptions,
    ) -> Result<DynamicObject> {
        self.registry.get(t, namespace, name, opts).await
    }

    async fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList> {
        self.registry.list(t, namespace, opts).await
    }

    async fn create(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        obj: DynamicObject,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.registry.create(t, namespace, obj, opts).await
    }

    async fn replace(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: DynamicObject,
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.registry.update(t, namespace, name, obj, subresource, opts).await
    }

    async fn patch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.registry.patch(t, namespace, name, patch_type, patch, subresource, opts).await
    }

    async fn delete(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        self.registry.delete(t, namespace, name, opts).await
    }

    async fn watch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WatchStream> {
        self.registry.watch(t, namespace, opts).await
    }

    async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> Result<DynamicObject> {
        self.registry.bind(namespace, name, node, uid).await
    }

    async fn delete_collection(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<ObjectList> {
        self.registry.delete_collection(t, namespace, list, opts).await
    }
}
