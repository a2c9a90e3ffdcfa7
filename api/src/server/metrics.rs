//! Prometheus metrics of the API server, served at `/metrics` in the text format:
//! `apiserver_request_total{verb,group,resource,subresource,code}`,
//! `apiserver_request_duration_seconds{verb,group,resource,subresource}` (watches excepted, as
//! Kubernetes does), `apiserver_current_inflight_requests` and
//! `apiserver_registered_watchers`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Shared;
use crate::auth::RequestInfo;

/// What a request is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    code: String,
}

/// What a request's latency is recorded under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
}

/// The API server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    in_flight: Gauge,
    pub(crate) watchers: Gauge,
}

/// Counts one open watch until dropped (with the watch's stream).
pub(crate) struct WatcherGuard(Gauge);

impl WatcherGuard {
    pub(crate) fn new(g: &Gauge) -> Self {
        g.inc();
        WatcherGuard(g.clone())
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub(crate) fn new(extra: &super::ExtraMetrics) -> Self {
        let mut registry = Registry::default();
        for register in &extra.0 {
            register(&mut registry);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms doubling to about 65 s.
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        let in_flight = Gauge::default();
        let watchers = Gauge::default();
        registry.register("apiserver_request", "Requests by verb, resource and HTTP code", requests.clone());
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches excepted)",
            latency.clone(),
        );
        registry.register("apiserver_current_inflight_requests", "Requests being served", in_flight.clone());
        registry.register("apiserver_registered_watchers", "Open watches", watchers.clone());
        Metrics { registry, requests, latency, in_flight, watchers }
    }

    /// The metrics in Prometheus' text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts and times every request.
pub(crate) async fn record(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let info = RequestInfo::parse(req.method(), req.uri().path(), req.uri().query().unwrap_or_default());
    // The security check (inside this layer) reads it from here instead of parsing again.
    req.extensions_mut().insert(info.clone());
    let (verb, group, resource, subresource) = if info.is_resource_request {
        (info.verb.clone(), info.api_group.clone(), info.resource.clone(), info.subresource.clone())
    } else {
        (info.verb.clone(), String::new(), String::new(), String::new())
    };
    let m = &shared.metrics;
    let watch = verb == "watch";
    let started = tokio::time::Instant::now();
    // Watches are counted by `WatcherGuard` for as long as their stream is open.
    if !watch {
        m.in_flight.inc();
    }
    let response = next.run(req).await;
    if !watch {
        m.in_flight.dec();
    }
    let code = response.status().as_u16().to_string();
    m.requests
        .get_or_create(&RequestLabels {
            verb: verb.clone(),
            group: group.clone(),
            resource: resource.clone(),
            subresource: subresource.clone(),
            code,
        })
        .inc();
    if !watch {
        m.latency
            .get_or_create(&LatencyLabels { verb, group, resource, subresource })
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

/// `GET /metrics`
pub(crate) async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    let mut r = (StatusCode::OK, shared.metrics.encode()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
