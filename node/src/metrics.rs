//! The agent's Prometheus metrics, under the kubelet's names so that dashboards made for the
//! kubelet read them:
//!
//! - `kubelet_runtime_operations_total{operation_type}`,
//!   `kubelet_runtime_operations_errors_total{operation_type}` and
//!   `kubelet_runtime_operations_duration_seconds{operation_type}`: every call the agent makes
//!   to its [`ContainerRuntime`](crate::runtime::ContainerRuntime) (`run_sandbox`,
//!   `create_container`, `list_containers`, `exec`, ...), through
//!   [`Instrumented`](crate::runtime::instrumented::Instrumented);
//! - `kubelet_pleg_relist_duration_seconds`: one relist of the runtime (the pod lifecycle
//!   event generator's job: notice containers that changed);
//! - `kubelet_pod_worker_duration_seconds`: one sync of a pod's worker;
//! - `kubelet_running_pods` (pods with a running sandbox) and
//!   `kubelet_running_containers{container_state}` (`created`, `running`, `exited`,
//!   `unknown`), as of the last relist.
//!
//! [`AgentMetrics::register`] adds them to a `prometheus_client` registry, and [`router`]
//! serves a registry at `GET /metrics` in the text format.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::{Container, ContainerState, Sandbox};

/// A runtime call's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation_type: &'static str,
}

/// A container state's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    container_state: &'static str,
}

/// Buckets from 1 ms doubling to about 65 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The agent's metrics: cheap to clone (the clones share the values).
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    operations: Family<Operation, Counter>,
    errors: Family<Operation, Counter>,
    durations: Family<Operation, Histogram, fn() -> Histogram>,
    relist: Histogram,
    pod_worker: Histogram,
    running_pods: Gauge,
    running_containers: Family<StateLabel, Gauge>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            operations: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(latency_buckets),
            relist: latency_buckets(),
            pod_worker: latency_buckets(),
            running_pods: Gauge::default(),
            running_containers: Family::default(),
        }
    }
}

impl AgentMetrics {
    /// New metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubelet_runtime_operations",
            "Container runtime calls by operation",
            self.operations.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_errors",
            "Container runtime calls that failed, by operation",
            self.errors.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_duration_seconds",
            "Container runtime call latency by operation",
            self.durations.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_duration_seconds",
            "Time to relist the runtime's sandboxes and containers",
            self.relist.clone(),
        );
        registry.register(
            "kubelet_pod_worker_duration_seconds",
            "Time of one pod worker sync",
            self.pod_worker.clone(),
        );
        registry.register("kubelet_running_pods", "Pods with a running sandbox", self.running_pods.clone());
        registry.register(
            "kubelet_running_containers",
            "Containers by state, as of the last relist",
            self.running_containers.clone(),
        );
    }

    /// Records one runtime call of `operation` that took `seconds` and failed or not.
    pub(crate) fn runtime_call(&self, operation: &'static str, seconds: f64, failed: bool) {
        let label = Operation { operation_type: operation };
        self.operations.get_or_create(&label).inc();
        if failed {
            self.errors.get_or_create(&label).inc();
        }
        self.durations.get_or_create(&label).observe(seconds);
    }

    /// Records one relist that took `seconds` and found `sandboxes` and `containers`.
    pub(crate) fn relisted(&self, seconds: f64, sandboxes: &[Sandbox], containers: &[Container]) {
        self.relist.observe(seconds);
        let running = sandboxes.iter().filter(|s| s.running).count();
        self.running_pods.set(i64::try_from(running).unwrap_or(i64::MAX));
        let mut counts = [0_i64; 4];
        for c in containers {
            counts[state_index(&c.state)] += 1;
        }
        for (index, count) in counts.into_iter().enumerate() {
            self.running_containers.get_or_create(&StateLabel { container_state: STATES[index] }).set(count);
        }
    }

    /// Records one pod worker sync that took `seconds`.
    pub(crate) fn pod_worker_synced(&self, seconds: f64) {
        self.pod_worker.observe(seconds);
    }
}

/// The `container_state` label values, in [`state_index`] order.
const STATES: [&str; 4] = ["created", "running", "exited", "unknown"];

fn state_index(state: &ContainerState) -> usize {
    match state {
        ContainerState::Created => 0,
        ContainerState::Running { .. } => 1,
        ContainerState::Exited { .. } => 2,
        ContainerState::Unknown => 3,
    }
}

/// `GET /metrics`: `registry` in Prometheus' text format. Merge it into the agent's
/// [`server::router`](crate::server::router) to serve it beside the logs.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route("/metrics", get(serve)).with_state(registry)
}

async fn serve(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::runtime::PodRef;

    fn container(state: ContainerState) -> Container {
        Container {
            id: "id".into(),
            pod: PodRef { uid: "u".into(), namespace: "ns".into(), name: "p".into() },
            name: "c".into(),
            image: "busybox".into(),
            image_id: None,
            state,
            restart_count: 0,
        }
    }

    async fn scrape(metrics: &AgentMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let request = axum::http::Request::get("/metrics").body(Body::empty()).expect("a request");
        let response = router(Arc::new(registry)).oneshot(request).await.expect("served");
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        String::from_utf8(body.to_vec()).expect("text")
    }

    #[tokio::test]
    async fn runtime_calls_relists_and_states_are_served() {
        let metrics = AgentMetrics::new();
        metrics.runtime_call("list_containers", 0.002, false);
        metrics.runtime_call("list_containers", 0.003, false);
        metrics.runtime_call("start_container", 0.1, true);
        let pod = PodRef { uid: "u".into(), namespace: "ns".into(), name: "p".into() };
        let sandboxes = [
            Sandbox { id: "s1".into(), pod: pod.clone(), ip: None, running: true },
            Sandbox { id: "s2".into(), pod, ip: None, running: false },
        ];
        let containers = [
            container(ContainerState::Running { started_at: None }),
            container(ContainerState::Running { started_at: None }),
            container(ContainerState::Created),
        ];
        metrics.relisted(0.01, &sandboxes, &containers);
        metrics.pod_worker_synced(0.05);

        let text = scrape(&metrics).await;
        for line in [
            "kubelet_runtime_operations_total{operation_type=\"list_containers\"} 2",
            "kubelet_runtime_operations_total{operation_type=\"start_container\"} 1",
            "kubelet_runtime_operations_errors_total{operation_type=\"start_container\"} 1",
            "kubelet_runtime_operations_duration_seconds_count{operation_type=\"list_containers\"} 2",
            "kubelet_pleg_relist_duration_seconds_count 1",
            "kubelet_pod_worker_duration_seconds_count 1",
            "kubelet_running_pods 1",
            "kubelet_running_containers{container_state=\"running\"} 2",
            "kubelet_running_containers{container_state=\"created\"} 1",
            "kubelet_running_containers{container_state=\"exited\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("kubelet_runtime_operations_errors_total{operation_type=\"list_containers\"}"),
            "no errors counted for calls that succeeded:\n{text}"
        );
    }
}
