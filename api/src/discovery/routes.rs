//! The HTTP side: GET handlers for the discovery and OpenAPI documents, and the `Status`
//! answers for what is not there.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, VARY};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::Discovery;
use crate::openapi::OpenApi;

/// Why a discovery or OpenAPI request has no document to answer with. Each is answered as a
/// Kubernetes `Status`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server has no such group-version (`/apis/<group>/<version>`).
    #[error("the server could not find the requested resource (group version {group_version:?})")]
    GroupVersionNotFound {
        /// `group/version` as requested.
        group_version: String,
    },
    /// No OpenAPI v3 document has that path (`/openapi/v3/<path>`).
    #[error("the server could not find the requested resource (OpenAPI document {path:?})")]
    DocumentNotFound {
        /// The path after `/openapi/v3/`.
        path: String,
    },
    /// The client accepts none of the media types the document is served in.
    #[error("only application/json is served here; the request accepts {accept:?}")]
    NotAcceptable {
        /// The request's `Accept` header.
        accept: String,
    },
}

/// The result of the handlers here.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn code(&self) -> StatusCode {
        match self {
            Error::GroupVersionNotFound { .. } | Error::DocumentNotFound { .. } => StatusCode::NOT_FOUND,
            Error::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::GroupVersionNotFound { .. } | Error::DocumentNotFound { .. } => "NotFound",
            Error::NotAcceptable { .. } => "NotAcceptable",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "details": {},
            "code": code.as_u16(),
        });
        (code, [(CONTENT_TYPE, HeaderValue::from_static(JSON))], body.to_string()).into_response()
    }
}

const JSON: &str = "application/json";
/// The media type `/openapi/v2` is answered in as protobuf. client-go asks for the deprecated
/// spelling `...spec.v2@v1.0+protobuf`, which Go's `mime.ParseMediaType` cannot parse in a
/// response, so kube-openapi answers with this one (kube-openapi `pkg/handler/handler.go`).
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// A document fetched by its content hash never changes; a year is kube-openapi's lifetime.
const IMMUTABLE: &str = "public, immutable, max-age=31536000";

#[derive(Clone)]
struct Shared {
    discovery: Arc<Discovery>,
    openapi: Arc<OpenApi>,
}

/// The discovery and OpenAPI routes: `GET` (and `HEAD`) of `/api`, `/api/v1`, `/apis`,
/// `/apis/{group}/{version}`, `/version`, `/openapi/v2`, `/openapi/v3` and
/// `/openapi/v3/{*path}`. Nothing else is matched, so the router merges with resource routes
/// under `/api/v1/...` and `/apis/{group}/{version}/...`.
///
/// ```
/// use std::sync::Arc;
///
/// use flotilla_api::discovery::{Discovery, routes};
/// use flotilla_api::openapi::OpenApi;
/// use flotilla_core::object::KindRegistry;
///
/// let discovery = Arc::new(Discovery::new(&KindRegistry::builtin()));
/// let openapi = Arc::new(OpenApi::new(&discovery));
/// let app: axum::Router = routes(discovery, openapi);
/// ```
pub fn routes(discovery: Arc<Discovery>, openapi: Arc<OpenApi>) -> Router {
    Router::new()
        .route("/api", get(core_versions))
        .route("/api/v1", get(core_v1))
        .route("/apis", get(groups))
        .route("/apis/{group}/{version}", get(group_version))
        .route("/version", get(version))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .with_state(Shared { discovery, openapi })
}

/// The media types of an `Accept` header, without parameters, lower case.
fn accepted(headers: &HeaderMap) -> Vec<String> {
    let accept = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty())
        .collect()
}

fn accept_header(headers: &HeaderMap) -> String {
    headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Whether JSON may be sent: no `Accept`, or one naming JSON or a wildcard. Any
/// `application/json` qualifies, parameters included: the aggregated-discovery form kubectl
/// asks for first is read by the response's content type, and plain JSON is read as legacy.
fn check_json(headers: &HeaderMap) -> Result<()> {
    let types = accepted(headers);
    if types.is_empty() || types.iter().any(|t| matches!(t.as_str(), JSON | "application/*" | "*/*")) {
        Ok(())
    } else {
        Err(Error::NotAcceptable { accept: accept_header(headers) })
    }
}

fn json(body: &Bytes) -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static(JSON))], body.clone()).into_response()
}

async fn core_versions(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    check_json(&headers)?;
    Ok(json(s.discovery.core_versions_json()))
}

async fn core_v1(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    check_json(&headers)?;
    let list = s
        .discovery
        .resources_json("", "v1")
        .ok_or(Error::GroupVersionNotFound { group_version: "v1".into() })?;
    Ok(json(list))
}

async fn groups(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    check_json(&headers)?;
    Ok(json(s.discovery.groups_json()))
}

async fn group_version(
    State(s): State<Shared>,
    Path((group, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    check_json(&headers)?;
    // The core group lives at /api only, as in kube-apiserver.
    let list = (!group.is_empty()).then(|| s.discovery.resources_json(&group, &version)).flatten();
    Ok(json(list.ok_or(Error::GroupVersionNotFound { group_version: format!("{group}/{version}") })?))
}

async fn version(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    check_json(&headers)?;
    Ok(json(s.discovery.version_json()))
}

async fn openapi_v2(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    if accepted(&headers).iter().any(|t| t.starts_with("application/com.github.proto-openapi.spec.v2")) {
        let body = s.openapi.v2_protobuf().clone();
        return Ok(([(CONTENT_TYPE, HeaderValue::from_static(OPENAPI_V2_PROTOBUF))], body).into_response());
    }
    check_json(&headers)?;
    Ok(json(s.openapi.v2_json()))
}

async fn openapi_index(State(s): State<Shared>, headers: HeaderMap) -> Result<Response> {
    check_json(&headers)?;
    Ok(json(s.openapi.index()))
}

/// One group-version's document, as kube-openapi's `handler3` serves it: an `ETag` of the
/// content hash; cacheable forever when fetched by its hash; a stale hash is redirected.
async fn openapi_document(
    State(s): State<Shared>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let doc = s.openapi.document(&path).ok_or_else(|| Error::DocumentNotFound { path: path.clone() })?;
    check_json(&headers)?;
    let hash = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "hash")
        .map(|(_, v)| v.into_owned());
    if let Some(h) = &hash
        && h != doc.hash()
    {
        let location = HeaderValue::try_from(doc.server_relative_url())
            .expect("a path and a hex hash are a valid header");
        return Ok((StatusCode::MOVED_PERMANENTLY, [(LOCATION, location)]).into_response());
    }
    let etag =
        HeaderValue::try_from(format!("\"{}\"", doc.hash())).expect("a quoted hex hash is a valid header");
    let mut headers_out = HeaderMap::new();
    headers_out.insert(VARY, HeaderValue::from_static("Accept"));
    if hash.is_some() {
        headers_out.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    }
    let fresh = headers.get_all(IF_NONE_MATCH).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag))
    });
    headers_out.insert(ETAG, etag);
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, headers_out).into_response());
    }
    headers_out.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    Ok((headers_out, doc.json().clone()).into_response())
}

#[cfg(test)]
mod tests;
