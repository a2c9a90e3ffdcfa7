//! The remote client: core's [`Client`] over HTTP(S), so that every component written against
//! `Arc<dyn Client>` (node agent, scheduler, controllers) runs unchanged against a remote
//! Flotilla (or Kubernetes) API server.
//!
//! Start with [`RemoteClient::from_kubeconfig`], or [`RemoteClient::new`] with a
//! [`ClientConfig`]:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use flotilla_api::client::RemoteClient;
//! use flotilla_core::client::{Api, Client};
//! use k8s_openapi::api::core::v1::Pod;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client: Arc<dyn Client> = Arc::new(RemoteClient::from_kubeconfig("admin.kubeconfig".as_ref())?);
//! let pods = Api::<Pod>::namespaced(client, "default");
//! for pod in pods.list(&Default::default()).await?.items {
//!     println!("{:?}", pod.metadata.name);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Requests go to Kubernetes' URLs (`/api/v1/namespaces/<ns>/pods/<name>`,
//! `/apis/<group>/<version>/...`) with Kubernetes' query parameters, over one pooled
//! connection set (HTTP/2 multiplexed when the server offers it over TLS). Error responses
//! (`Status` objects) become the core [`registry::Error`] variant the server started from,
//! field errors of `Invalid` included. Failures only HTTP has land on the nearest variant:
//! 401 Unauthorized becomes `Forbidden` (the registry has no "who are you" variant), other
//! 4xx `BadRequest`, 429 once retries are exhausted `Unavailable`, and connection failures
//! `Unavailable` with the cause in the message. Reads are retried on throttling, server
//! errors and connection failures, writes only when the server cannot have acted on them
//! ([`RetryPolicy`]). A watch decodes the server's event lines as they arrive; core's
//! `watcher` resumes and relists over it as over a local registry.
//!
//! Two calls differ slightly from [`LocalClient`](flotilla_core::client::LocalClient): `bind`
//! reads the pod back after the binding (the server answers a binding with a `Status`), so
//! it returns the pod as of just after, not exactly as written; and a watch over HTTP/1.1
//! notices a silently dead server only when the server's watch timeout would have ended it
//! (over HTTP/2, pings notice within a minute).

mod config;
pub(crate) mod connector;
mod error;
mod request;
mod retry;
mod status;
mod transport;
mod watch;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use flotilla_core::client::Client;
use flotilla_core::object::{DynamicObject, Resource, ResourceType};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{
    self, DeleteOptions, Deleted, GetOptions, ListOptions, ObjectList, Subresource, WatchStream,
    WriteOptions, Written,
};
use futures::TryStreamExt;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use url::Url;

pub use config::{ClientConfig, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT, RetryPolicy};
pub use error::{Error, Result};
use request::{
    binding_body, check_name, delete_body, get_query, list_query, object_namespace, resource_url,
    subresource_segment, with_query, write_query,
};
use transport::{Reply, Req, Transport};

use crate::kubeconfig::{DEFAULT_NAMESPACE, Kubeconfig, ResolvedContext};

/// Core's [`Client`] over HTTP(S) to an API server; cheap to clone (clones share the
/// connection pool).
#[derive(Clone)]
pub struct RemoteClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    namespace: String,
    transport: Transport,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("server", &self.inner.base.as_str())
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// A list response: `<Kind>List` with list metadata.
#[derive(Deserialize)]
struct WireList {
    #[serde(default)]
    metadata: WireListMeta,
    #[serde(default)]
    items: Option<Vec<DynamicObject>>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireListMeta {
    resource_version: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    remaining_item_count: Option<i64>,
}

impl RemoteClient {
    /// A client of the server `config` describes. Needs no runtime to build, but its calls
    /// run on tokio.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Self::build(config, DEFAULT_NAMESPACE.to_string())
    }

    fn build(config: ClientConfig, namespace: String) -> Result<Self> {
        let transport = Transport::new(&config)?;
        Ok(RemoteClient { inner: Arc::new(Inner { base: config.server, namespace, transport }) })
    }

    /// A client of the current context of the kubeconfig at `path` (as kubectl would use it).
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let kubeconfig_error = |source| Error::Kubeconfig { path: path.to_path_buf(), source };
        let context = Kubeconfig::load(path).and_then(|k| k.current()).map_err(kubeconfig_error)?;
        Self::from_context(&context)
    }

    /// A client of a resolved kubeconfig context.
    pub fn from_context(context: &ResolvedContext) -> Result<Self> {
        Self::build(ClientConfig::from_context(context), context.namespace.clone())
    }

    /// The server's URL.
    pub fn server(&self) -> &Url {
        &self.inner.base
    }

    /// The namespace of the kubeconfig context the client came from ([`DEFAULT_NAMESPACE`]
    /// otherwise): where components put their objects when told nothing else.
    pub fn default_namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn url(&self, t: &ResourceType, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Url {
        resource_url(&self.inner.base, t, ns, name, sub)
    }

    async fn send(&self, t: &ResourceType, req: Req) -> registry::Result<Reply> {
        self.inner.transport.send(t, req).await
    }

    async fn written(&self, t: &ResourceType, req: Req) -> registry::Result<Written> {
        let what = format!("{} {}", req.method, req.url);
        let reply = self.send(t, req).await?;
        Ok(Written { object: reply.json(&what)?, warnings: status::warnings(&reply.headers) })
    }

    async fn list_of(&self, t: &ResourceType, req: Req) -> registry::Result<ObjectList> {
        let what = format!("{} {}", req.method, req.url);
        let list: WireList = self.send(t, req).await?.json(&what)?;
        Ok(ObjectList {
            resource_version: list.metadata.resource_version.unwrap_or_default(),
            continue_token: list.metadata.continue_token.filter(|c| !c.is_empty()),
            remaining_item_count: list.metadata.remaining_item_count,
            items: list.items.unwrap_or_default(),
        })
    }
}

#[async_trait]
impl Client for RemoteClient {
    async fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &GetOptions,
    ) -> registry::Result<DynamicObject> {
        check_name(name)?;
        let url = self.url(t, object_namespace(t, namespace)?, Some(name), None);
        let req = Req::new(Method::GET, with_query(url, &get_query(opts)));
        let what = format!("GET {}", req.url);
        self.send(t, req).await?.json(&what)
    }

    async fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> registry::Result<ObjectList> {
        let url = with_query(self.url(t, namespace, None, None), &list_query(opts, false));
        self.list_of(t, Req::new(Method::GET, url)).await
    }

    async fn create(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        obj: DynamicObject,
        opts: &WriteOptions,
    ) -> registry::Result<Written> {
        // As the registry does: the object's own namespace when the call names none.
        let ns = namespace.filter(|n| !n.is_empty()).or(obj.metadata.namespace.as_deref());
        let url = self.url(t, object_namespace(t, ns)?, None, None);
        let req = Req::json(Method::POST, with_query(url, &write_query(opts)), &obj)?;
        self.written(t, req).await
    }

    async fn replace(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        obj: DynamicObject,
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> registry::Result<Written> {
        check_name(name)?;
        let url = self.url(t, object_namespace(t, namespace)?, Some(name), subresource_segment(subresource));
        let req = Req::json(Method::PUT, with_query(url, &write_query(opts)), &obj)?;
        self.written(t, req).await
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
    ) -> registry::Result<Written> {
        check_name(name)?;
        let url = self.url(t, object_namespace(t, namespace)?, Some(name), subresource_segment(subresource));
        let url = with_query(url, &write_query(opts));
        let req =
            Req::with_body(Method::PATCH, url, patch_type.content_type(), Bytes::copy_from_slice(patch));
        self.written(t, req).await
    }

    async fn delete(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> registry::Result<Deleted> {
        check_name(name)?;
        let url = self.url(t, object_namespace(t, namespace)?, Some(name), None);
        let req = Req::json(Method::DELETE, url, &delete_body(opts))?;
        let what = format!("DELETE {}", req.url);
        let reply = self.send(t, req).await?;
        // 200: gone; 202: accepted, waiting for finalizers or a grace period.
        Ok(Deleted { object: reply.json(&what)?, gone: reply.status != StatusCode::ACCEPTED })
    }

    async fn watch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> registry::Result<WatchStream> {
        let url = with_query(self.url(t, namespace, None, None), &list_query(opts, true));
        let body = self.inner.transport.open(t, url).await?;
        Ok(watch::events(*t, body.into_data_stream().map_err(|e| transport::error_chain(&e))))
    }

    async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> registry::Result<DynamicObject> {
        let t = Pod::TYPE;
        check_name(name)?;
        let ns = object_namespace(&t, Some(namespace))?;
        let url = self.url(&t, ns, Some(name), Some("binding"));
        let req = Req::json(Method::POST, url, &binding_body(namespace, name, node, uid))?;
        self.send(&t, req).await?;
        // The server answers a binding with a Status; the caller wants the bound pod.
        self.get(&t, ns, name, &GetOptions::default()).await
    }

    async fn delete_collection(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> registry::Result<ObjectList> {
        let url = with_query(self.url(t, namespace, None, None), &list_query(list, false));
        let req = Req::json(Method::DELETE, url, &delete_body(opts))?;
        self.list_of(t, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_a_runtime() -> Result<()> {
        let client =
            RemoteClient::new(ClientConfig::new("http://127.0.0.1:1/prefix".parse().expect("a URL")))?;
        assert_eq!((client.server().path(), client.default_namespace()), ("/prefix", DEFAULT_NAMESPACE));
        Ok(())
    }

    #[test]
    fn a_missing_kubeconfig_names_the_file() {
        let e = RemoteClient::from_kubeconfig("/nonexistent/kubeconfig".as_ref()).expect_err("no such file");
        assert!(matches!(&e, Error::Kubeconfig { path, .. } if path.ends_with("kubeconfig")), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
    }
}
