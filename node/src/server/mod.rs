//! The agent's own HTTP endpoint (the role of the kubelet's port 10250): container logs, read
//! by the API server's `pods/log` subresource, so `kubectl logs` and `kubectl logs -f` work.
//!
//! [`router`] serves `GET /containerLogs/{namespace}/{pod}/{container}` with the kubelet's
//! query parameters (`follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`,
//! `previous`, `limitBytes`) and `GET /healthz`. It finds the container through the runtime's
//! labels, so it answers for containers adopted after a restart too. The composing binary
//! serves the router over TLS and decides who may call it: Flotilla's binaries require a
//! client certificate signed by the cluster's CA (the API server's kubelet-client
//! certificate), as Kubernetes does.

mod query;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use tracing::debug;

pub use query::{LogQuery, QueryError};

use crate::runtime::{Container, ContainerRuntime, ContainerState};

/// The port agents serve on unless configured otherwise (the kubelet's).
pub const DEFAULT_PORT: u16 = 10250;

/// The agent's endpoint over `runtime`.
pub fn router(runtime: Arc<dyn ContainerRuntime>) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(runtime)
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`
async fn container_logs(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match LogQuery::parse(raw.as_deref().unwrap_or_default()) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let all = match runtime.containers().await {
        Ok(all) => all,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("listing containers: {e}")),
    };
    let Some(target) = pick(&all, &namespace, &pod, &container, query.previous) else {
        let what = if query.previous { "previous terminated container" } else { "container" };
        return text(
            StatusCode::NOT_FOUND,
            format!("{what} {container:?} in pod \"{namespace}/{pod}\" not found"),
        );
    };
    let options = match query.options(k8s_openapi::jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    debug!(pod = %format!("{namespace}/{pod}"), container = %container, follow = options.follow, "serving logs");
    let stream = match runtime.logs(&target.id, &options).await {
        Ok(s) => s,
        Err(e) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading logs of {container:?}: {e}"));
        }
    };
    let body = match query.limit_bytes {
        Some(limit) => Body::from_stream(limit_bytes(stream, limit)),
        None => Body::from_stream(stream),
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The container the request names: the newest instance (highest restart count), or with
/// `previous` the one before it.
fn pick<'a>(
    all: &'a [Container],
    namespace: &str,
    pod: &str,
    name: &str,
    previous: bool,
) -> Option<&'a Container> {
    let mut instances: Vec<&Container> =
        all.iter().filter(|c| c.pod.namespace == namespace && c.pod.name == pod && c.name == name).collect();
    // Newest first; a pod recreated under the same name has other uids, so its restart
    // counts start again: the ids break ties deterministically.
    instances.sort_by(|a, b| b.restart_count.cmp(&a.restart_count).then_with(|| b.id.cmp(&a.id)));
    let newest = instances.first().copied()?;
    match newest.state {
        _ if !previous => Some(newest),
        // `previous` is what the pod's status shows as the last terminated state: the newest
        // instance once it has exited (in CrashLoopBackOff it is all the runtime keeps), else
        // the one before it.
        ContainerState::Exited { .. } => Some(newest),
        _ => instances.get(1).copied(),
    }
}

/// At most `limit` bytes of `stream`, cutting the last chunk.
fn limit_bytes<S, E>(stream: S, limit: u64) -> impl futures::Stream<Item = Result<bytes::Bytes, E>> + Send
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send,
    E: Send,
{
    stream.scan(limit, |left, item| {
        let out = match item {
            _ if *left == 0 => None,
            Ok(mut chunk) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(chunk.len());
                chunk.truncate(take);
                *left -= take as u64;
                Some(Ok(chunk))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

fn text(code: StatusCode, msg: String) -> Response {
    (code, msg).into_response()
}

#[cfg(test)]
mod tests;
