//! The resource endpoints of the API server: every verb of every kind the registry serves,
//! at Kubernetes' URLs, with its subresources and Table output.
//!
//! [`ApiServer::router`] gives an axum `Router` answering `/api/v1/...` and
//! `/apis/<group>/<version>/...`, the discovery and OpenAPI documents, and the health
//! endpoints. Serve it with [`crate::tls::serve`] (HTTPS) or [`crate::tls::serve_plain`].
//!
//! | request | verb |
//! |---|---|
//! | `GET` a collection | list; with `watch=true` a watch (one JSON event per line) |
//! | `GET` an object, `/status`, `/scale` | get |
//! | `POST` a collection | create (201) |
//! | `PUT` an object, `/status`, `/scale`, `namespaces/<n>/finalize` | update |
//! | `PATCH` an object, `/status`, `/scale` | json, merge, strategic-merge and apply patches |
//! | `DELETE` an object | delete (200 when gone, 202 while finalizers or a grace period hold it) |
//! | `DELETE` a collection | deletecollection |
//! | `POST pods/<name>/binding`, `pods/<name>/eviction` | bind, evict |
//! | `POST serviceaccounts/<name>/token` | a ServiceAccount token (with [`ServerConfig::service_account_tokens`]) |
//!
//! Errors are `Status` objects with Kubernetes' reasons and codes.

mod body;
mod csr;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod logs;
mod metrics;
mod node_proxy;
mod path;
mod protobuf;
mod query;
mod resources;
mod respond;
mod security;
mod subresources;
mod table;
mod token;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
pub use error::{Error, Result};
use flotilla_core::registry::Registry;
pub use logs::{DEFAULT_KUBELET_PORT, KubeletClient};
pub use security::Security;
pub use token::ServiceAccountTokens;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::discovery::{self, Discovery};
use crate::openapi::OpenApi;

/// Limits and timeouts of the API server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted (bigger ones get 413). Kubernetes' limit is 3 MiB.
    pub max_body_bytes: usize,
    /// Requests served at once, watches excepted; beyond it requests get 429 with
    /// `Retry-After`.
    pub max_in_flight: usize,
    /// A watch without `timeoutSeconds` ends after a random time between this and twice
    /// this (clients then resume it), so watches spread over restarts and members.
    pub min_watch_timeout: Duration,
    /// Metrics of other components of the process (controllers, scheduler), served at
    /// `/metrics` beside the API server's own.
    pub extra_metrics: ExtraMetrics,
    /// How `pods/log` reaches node agents; `None` answers it with 501.
    pub kubelet: Option<KubeletClient>,
    /// How `serviceaccounts/<name>/token` signs tokens; `None` answers it with 501.
    /// [`SecureApi`](crate::secure::SecureApi) sets it to its ServiceAccount key.
    pub service_account_tokens: Option<ServiceAccountTokens>,
}

/// A function registering a component's metrics.
type Register = Arc<dyn Fn(&mut prometheus_client::registry::Registry) + Send + Sync>;

/// Functions that register other components' metrics in the registry `/metrics` serves.
#[derive(Clone, Default)]
pub struct ExtraMetrics(Vec<Register>);

impl ExtraMetrics {
    /// Adds a function called once, when the server is built, with the metrics registry.
    pub fn add(
        &mut self,
        register: impl Fn(&mut prometheus_client::registry::Registry) + Send + Sync + 'static,
    ) {
        self.0.push(Arc::new(register));
    }
}

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraMetrics({} registrations)", self.0.len())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 3 * 1024 * 1024,
            max_in_flight: 400,
            min_watch_timeout: Duration::from_secs(1800),
            extra_metrics: ExtraMetrics::default(),
            kubelet: None,
            service_account_tokens: None,
        }
    }
}

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) config: ServerConfig,
    /// Ends every watch when the server stops.
    pub(crate) shutdown: CancellationToken,
    /// Authentication and authorization; `None` serves everyone as an administrator
    /// (in-process and test servers).
    pub(crate) security: Option<Security>,
    pub(crate) metrics: metrics::Metrics,
    in_flight: Arc<Semaphore>,
}

/// The API server's request handling over one registry.
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl ApiServer {
    /// A server of `registry`'s kinds with `config`.
    pub fn new(registry: Registry, config: ServerConfig) -> Self {
        Self::build(registry, config, None)
    }

    /// A server that authenticates and authorizes every request with `security`.
    pub fn with_security(registry: Registry, config: ServerConfig, security: Security) -> Self {
        Self::build(registry, config, Some(security))
    }

    fn build(registry: Registry, config: ServerConfig, security: Option<Security>) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        let shutdown = CancellationToken::new();
        let metrics = metrics::Metrics::new(&config.extra_metrics);
        ApiServer { shared: Arc::new(Shared { registry, config, shutdown, security, metrics, in_flight }) }
    }

    /// The registry served.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Ends every open watch (their clients resume elsewhere); call when the server stops.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// The router: resources, discovery, OpenAPI and health endpoints.
    pub fn router(&self) -> Router {
        let kinds = self.shared.registry.kinds();
        let discovery = Discovery::new(kinds);
        let openapi = OpenApi::new(&discovery);
        let disco = discovery::routes(Arc::new(discovery), Arc::new(openapi));
        let resources = Router::new()
            .route("/api/v1/nodes/{name}/proxy", any(node_proxy::root))
            .route("/api/v1/nodes/{name}/proxy/{*path}", any(node_proxy::with_path))
            .route("/api/v1/{*rest}", any(resources::core_group))
            .route("/apis/{group}/{version}/{*rest}", any(resources::named_group))
            .route("/healthz", get(health))
            .route("/livez", get(health))
            .route("/readyz", get(health))
            .route("/metrics", get(metrics::serve))
            .layer(middleware::from_fn_with_state(self.shared.clone(), limit_in_flight))
            .with_state(self.shared.clone());
        resources
            .merge(disco)
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.shared.clone(), security::check))
            .layer(middleware::from_fn_with_state(self.shared.clone(), metrics::record))
            // Bodies are read with our own limit (413 as a Status); lift axum's default.
            .layer(DefaultBodyLimit::disable())
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    Error::NotFound("the server could not find the requested resource".into()).into_response()
}

/// Refuses requests beyond `max_in_flight` with 429; watches are long-running and exempt.
async fn limit_in_flight(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let query = query::Query::parse(req.uri().query());
    if query.is_watch().unwrap_or(false) {
        return next.run(req).await;
    }
    match shared.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => Error::TooManyRequests { retry_after_seconds: 1 }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use flotilla_core::MemStore;
    use flotilla_core::object::KindRegistry;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_limit_get_429_and_watches_are_exempt() {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let server = ApiServer::new(registry, ServerConfig { max_in_flight: 1, ..Default::default() });
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (e, r) = (entered.clone(), release.clone());
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let (e, r) = (e.clone(), r.clone());
                    async move {
                        e.notify_one();
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .layer(middleware::from_fn_with_state(server.shared.clone(), limit_in_flight));
        let req = |uri: &str| http::Request::get(uri).body(Body::empty()).expect("a request");
        let slow = tokio::spawn(app.clone().oneshot(req("/slow")));
        tokio::time::timeout(Duration::from_secs(10), entered.notified())
            .await
            .expect("slow request started");
        let refused = app.clone().oneshot(req("/fast")).await.expect("infallible");
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
        let watch = app.clone().oneshot(req("/fast?watch=true")).await.expect("infallible");
        assert_eq!(watch.status(), http::StatusCode::OK);
        release.notify_one();
        let done = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("slow finished")
            .expect("joined");
        assert_eq!(done.expect("infallible").status(), http::StatusCode::OK);
        let fast = app.oneshot(req("/fast")).await.expect("infallible");
        assert_eq!(fast.status(), http::StatusCode::OK);
    }
}
