//! A running API server over an in-memory store, served over TLS (or plain HTTP) with a
//! fresh cluster PKI, and a `RemoteClient` loaded from its admin kubeconfig; plus small
//! helpers for fake servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use flotilla_api::client::{ClientConfig, RemoteClient, RetryPolicy};
use flotilla_api::kubeconfig::Kubeconfig;
use flotilla_api::pki::{ClientAuth, ClusterPki};
use flotilla_api::server::{ApiServer, Security, ServerConfig};
use flotilla_api::tls;
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::{DynamicObject, KindRegistry};
use flotilla_core::registry::Registry;
use flotilla_core::store::Store;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `fut`, failing with "timed out: {what}" after a minute: `what` names what probably hung.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(60), fut).await.with_context(|| format!("timed out: {what}"))?
}

/// How a test cluster is set up.
#[derive(Default)]
pub(crate) struct Options {
    /// The server's limits.
    pub(crate) config: ServerConfig,
    /// The store (a fresh `MemStore` if `None`).
    pub(crate) store: Option<MemStore>,
    /// Authentication and authorization (`None`: everyone is an administrator).
    pub(crate) security: Option<Security>,
    /// Serve plain HTTP instead of HTTPS.
    pub(crate) plain: bool,
}

/// A server, the remote client of it, and the in-process client of the same registry.
pub(crate) struct Cluster {
    pub(crate) registry: Registry,
    /// The client under test.
    pub(crate) client: RemoteClient,
    /// The same client, as components hold it.
    pub(crate) remote: Arc<dyn Client>,
    /// The in-process client of the server's registry, to compare with.
    pub(crate) local: Arc<dyn Client>,
    pub(crate) addr: SocketAddr,
    pub(crate) pki: ClusterPki,
    api: ApiServer,
    store: Arc<MemStore>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// An HTTPS server with default settings and namespace `default`.
    pub(crate) async fn start() -> Result<Cluster> {
        Self::with(Options::default()).await
    }

    pub(crate) async fn with(opts: Options) -> Result<Cluster> {
        let store = Arc::new(opts.store.unwrap_or_default());
        let registry = Registry::new(store.clone() as Arc<dyn Store>, KindRegistry::builtin());
        let local: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let ns = Namespace {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(local.clone()).create(&ns).await.context("creating namespace default")?;
        let api = match opts.security {
            Some(s) => ApiServer::with_security(registry.clone(), opts.config, s),
            None => ApiServer::new(registry.clone(), opts.config),
        };
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::load_or_create(&dir.path().join("pki"), &[])?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let (task, scheme) = if opts.plain {
            (tokio::spawn(tls::serve_plain(listener, api.router(), shutdown.clone())), "http")
        } else {
            let config = pki.server_config(ClientAuth::Optional)?;
            (tokio::spawn(tls::serve(listener, config, api.router(), shutdown.clone())), "https")
        };
        let kubeconfig = dir.path().join("admin.kubeconfig");
        Kubeconfig::for_admin("test", &format!("{scheme}://{addr}"), &pki).write(&kubeconfig)?;
        let client = RemoteClient::from_kubeconfig(&kubeconfig)?;
        let remote: Arc<dyn Client> = Arc::new(client.clone());
        Ok(Cluster { registry, client, remote, local, addr, pki, api, store, shutdown, task, _dir: dir })
    }

    /// A client configuration for this server, trusting its CA, without credentials.
    pub(crate) fn anonymous_config(&self) -> Result<ClientConfig> {
        let mut c = ClientConfig::new(format!("https://{}", self.addr).parse()?);
        c.ca_pem = Some(self.pki.ca_pem().as_bytes().to_vec());
        Ok(c)
    }

    /// Stops the server and the store.
    pub(crate) async fn stop(self) -> Result<()> {
        self.api.shutdown();
        self.shutdown.cancel();
        within("the server stopping", async { Ok(self.task.await??) }).await?;
        self.registry.shutdown().await;
        self.store.shutdown().await;
        Ok(())
    }
}

/// A fake server: `app` over plain HTTP on 127.0.0.1, stopped when dropped.
pub(crate) struct Fake {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Fake {
    pub(crate) async fn start(app: Router) -> Result<Fake> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tls::serve_plain(listener, app, shutdown.clone()));
        Ok(Fake { addr, shutdown, task })
    }

    /// A client of this server retrying up to `attempts` times.
    pub(crate) fn client(&self, attempts: u32) -> Result<Arc<dyn Client>> {
        let mut c = ClientConfig::new(format!("http://{}", self.addr).parse()?);
        c.retry = RetryPolicy { max_attempts: attempts, ..RetryPolicy::default() };
        Ok(Arc::new(RemoteClient::new(c)?))
    }

    pub(crate) async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        within("the fake server stopping", async { Ok(self.task.await??) }).await
    }
}

/// A dynamic object from JSON.
pub(crate) fn obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).expect("a valid object")
}

/// A pod named `name` with labels `app=<app>` and one container.
pub(crate) fn pod(name: &str, app: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
    }))
    .expect("a valid pod")
}
