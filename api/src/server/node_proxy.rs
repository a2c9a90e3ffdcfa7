//! `GET /api/v1/nodes/{name}/proxy/{path}`: the API server forwards the request to that node's
//! agent endpoint and passes its answer back as it arrives (status, content type, body), as
//! Kubernetes' API server does for the kubelet. So `kubectl get --raw
//! /api/v1/nodes/<node>/proxy/metrics` reads an agent's metrics and `.../proxy/healthz` its
//! health, with the caller's API credentials; authorization asks for `get` on `nodes/proxy`.
//! Only GET is forwarded.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Method, Uri, header};

use super::logs::{Agent, kubelet};
use super::{Error, Result, Shared};

/// `/api/v1/nodes/{name}/proxy/{*path}`
pub(crate) async fn with_path(
    State(shared): State<Arc<Shared>>,
    Path((name, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    forward(&shared, &name, &path, &method, &uri).await.unwrap_or_else(IntoResponse::into_response)
}

/// `/api/v1/nodes/{name}/proxy`
pub(crate) async fn root(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Response {
    forward(&shared, &name, "", &method, &uri).await.unwrap_or_else(IntoResponse::into_response)
}

async fn forward(shared: &Shared, node: &str, path: &str, method: &Method, uri: &Uri) -> Result<Response> {
    if method != Method::GET {
        return Err(Error::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {method} nodes/proxy"
        )));
    }
    let kubelet = kubelet(shared, &format!("nodes \"{node}\": proxy requests"))?;
    let agent = Agent::of(shared, kubelet, node).await?;
    let mut url = agent.url.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Internal("agent URL cannot have a path".into()))?
        .clear()
        .extend(path.split('/').filter(|s| !s.is_empty()));
    if path.ends_with('/') && !path.trim_matches('/').is_empty() {
        // `.../proxy/dir/` asks for `dir/`, not `dir`.
        url.path_segments_mut()
            .map_err(|()| Error::Internal("agent URL cannot have a path".into()))?
            .push("");
    }
    url.set_query(uri.query());
    let answer = agent.get(&url).await?;
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    Ok(response)
}
