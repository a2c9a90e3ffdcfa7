//! Dispatch of resource requests to the verbs, and the verbs on objects and collections.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flotilla_core::object::{DynamicObject, KindStrategy, ResourceType};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::Subresource;
use http::{HeaderMap, Method, StatusCode, Uri};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use super::body::{self, Format};
use super::path::{self, Target};
use super::query::Query;
use super::respond::{self, Output};
use super::table::{self, ListMeta};
use super::{Error, Result, Shared, csr, logs, security, subresources, token, watch};
use crate::auth::Attributes;

/// One resource request, resolved.
pub(crate) struct Request {
    pub(crate) strategy: Arc<dyn KindStrategy>,
    pub(crate) t: ResourceType,
    pub(crate) target: Target,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    /// The whole body (read up front, within the size limit).
    pub(crate) body: bytes::Bytes,
    /// Who asks, and for what (set by the security middleware).
    pub(crate) attrs: Option<Attributes>,
}

impl Request {
    /// The namespace the operation addresses (`None` for cluster-scoped kinds or across all
    /// namespaces).
    pub(crate) fn namespace(&self) -> Option<&str> {
        if self.t.namespaced { self.target.namespace.as_deref() } else { None }
    }

    /// The object's name (the caller checked there is one).
    pub(crate) fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    /// Decodes the body as an object of this kind.
    pub(crate) fn object(&self) -> Result<DynamicObject> {
        let format = body::format(&self.headers)?;
        let mut obj = body::object(&self.body, format)?;
        let want = self.t.api_version();
        if obj.api_version.is_empty() {
            obj.api_version = want.clone();
        } else if obj.api_version != want {
            return Err(Error::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({want})",
                obj.api_version
            )));
        }
        if obj.kind.is_empty() {
            obj.kind = self.t.kind.to_string();
        } else if obj.kind != self.t.kind {
            return Err(Error::BadRequest(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                obj.kind, self.t.kind
            )));
        }
        if let Some(ns) = self.namespace() {
            match obj.metadata.namespace.as_deref() {
                None | Some("") => obj.metadata.namespace = Some(ns.to_string()),
                Some(n) if n == ns => {}
                Some(_) => {
                    return Err(Error::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request"
                            .into(),
                    ));
                }
            }
        }
        Ok(obj)
    }

    /// The body's media type.
    pub(crate) fn format(&self) -> Result<Format> {
        body::format(&self.headers)
    }
}

/// `/api/v1/...`
pub(crate) async fn core_group(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    attrs: Option<Extension<Attributes>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let attrs = attrs.map(|a| a.0);
    let call = Call { group: "", version: "v1", rest: &rest, method, uri: &uri, headers, attrs };
    serve(&shared, call, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// `/apis/<group>/<version>/...`
pub(crate) async fn named_group(
    State(shared): State<Arc<Shared>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    attrs: Option<Extension<Attributes>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let call = Call {
        group: &group,
        version: &version,
        rest: &rest,
        method,
        uri: &uri,
        headers,
        attrs: attrs.map(|a| a.0),
    };
    serve(&shared, call, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// A resource request as routed.
struct Call<'a> {
    group: &'a str,
    version: &'a str,
    rest: &'a str,
    method: Method,
    uri: &'a Uri,
    headers: HeaderMap,
    attrs: Option<Attributes>,
}

async fn serve(shared: &Shared, call: Call<'_>, body: Body) -> Result<Response> {
    let Call { group, version, rest, method, uri, headers, attrs } = call;
    let not_found = || Error::NotFound("the server could not find the requested resource".into());
    let body = match method {
        Method::GET | Method::HEAD => bytes::Bytes::new(),
        _ => body::read(body, shared.config.max_body_bytes).await?,
    };
    match (group, version, rest, &method) {
        ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", &Method::POST) => {
            return security::self_subject_access_review(shared, attrs.as_ref(), &body, &headers);
        }
        ("authentication.k8s.io", "v1", "selfsubjectreviews", &Method::POST) => {
            return security::self_subject_review(attrs.as_ref());
        }
        _ => {}
    }
    let target = path::parse(rest).ok_or_else(not_found)?;
    let strategy = shared.registry.kinds().get(group, &target.resource).cloned().ok_or_else(not_found)?;
    let t = strategy.resource_type();
    if t.version != version {
        return Err(not_found());
    }
    let in_namespace_path = target.namespace.is_some() && target.resource != "namespaces";
    if in_namespace_path && !t.namespaced {
        return Err(not_found());
    }
    if t.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(not_found());
    }
    let query = Query::parse(uri.query());
    let req = Request { strategy, t, target, query, headers, body, attrs };
    let sub = req.target.subresource.clone();
    match (method, req.target.name.is_some(), sub.as_deref()) {
        (Method::GET, false, None) if req.query.is_watch()? => watch::serve(shared, &req).await,
        (Method::GET, false, None) => list(shared, &req).await,
        (Method::POST, false, None) => create(shared, &req).await,
        (Method::DELETE, false, None) => delete_collection(shared, &req).await,
        (Method::GET, true, None | Some("status")) => get(shared, &req).await,
        (Method::PUT, true, None) => update(shared, &req, Subresource::Main).await,
        (Method::PATCH, true, None) => patch(shared, &req, Subresource::Main).await,
        (Method::DELETE, true, None) => delete(shared, &req).await,
        (m, true, Some(s)) => match (subresource(&req.t, s), m) {
            (Some(Sub::Status), Method::PUT) => update(shared, &req, Subresource::Status).await,
            (Some(Sub::Status), Method::PATCH) => patch(shared, &req, Subresource::Status).await,
            (Some(Sub::Approval), Method::GET) => get(shared, &req).await,
            (Some(Sub::Approval), Method::PUT) => update(shared, &req, Subresource::Status).await,
            (Some(Sub::Approval), Method::PATCH) => patch(shared, &req, Subresource::Status).await,
            (Some(Sub::Finalize), Method::PUT) => update(shared, &req, Subresource::Finalize).await,
            (Some(Sub::Scale), Method::GET) => subresources::get_scale(shared, &req).await,
            (Some(Sub::Scale), Method::PUT) => subresources::update_scale(shared, &req).await,
            (Some(Sub::Scale), Method::PATCH) => subresources::patch_scale(shared, &req).await,
            (Some(Sub::Binding), Method::POST) => subresources::bind(shared, &req).await,
            (Some(Sub::Eviction), Method::POST) => subresources::evict(shared, &req).await,
            (Some(Sub::Log), Method::GET) => logs::pod_log(shared, &req).await,
            (Some(Sub::Token), Method::POST) => token::create(shared, &req).await,
            (None, _) => Err(not_found()),
            (Some(_), m) => Err(method_not_allowed(&m, &req)),
        },
        (m, _, _) => Err(method_not_allowed(&m, &req)),
    }
}

fn method_not_allowed(m: &Method, req: &Request) -> Error {
    let what = match &req.target.subresource {
        Some(s) => format!("{}/{s}", req.t.plural),
        None if req.target.name.is_some() => format!("{} (an object)", req.t.plural),
        None => format!("{} (the collection)", req.t.plural),
    };
    Error::MethodNotAllowed(format!(
        "the server does not allow this method on the requested resource: {m} {what}"
    ))
}

/// The subresources served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Status,
    /// `certificatesigningrequests/approval`, written as the status.
    Approval,
    Finalize,
    Scale,
    Binding,
    Eviction,
    Log,
    /// `serviceaccounts/token`: a TokenRequest.
    Token,
}

fn subresource(t: &ResourceType, s: &str) -> Option<Sub> {
    match (t.group, t.plural, s) {
        (_, _, "status") if t.has_status => Some(Sub::Status),
        ("", "namespaces", "finalize") => Some(Sub::Finalize),
        _ if csr::is_csr(t) && s == "approval" => Some(Sub::Approval),
        ("apps", "deployments" | "replicasets", "scale") => Some(Sub::Scale),
        ("", "pods", "binding") => Some(Sub::Binding),
        ("", "pods", "eviction") => Some(Sub::Eviction),
        ("", "pods", "log") => Some(Sub::Log),
        ("", "serviceaccounts", "token") => Some(Sub::Token),
        _ => None,
    }
}

/// Now, for Table ages.
pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// An object, or its one-row Table.
pub(crate) fn object_response(
    req: &Request,
    code: StatusCode,
    obj: &DynamicObject,
    warnings: &[String],
) -> Result<Response> {
    match respond::negotiate(&req.headers, &req.query)? {
        Output::Object => Ok(respond::json(code, obj, warnings)),
        Output::Table(include) => {
            let meta =
                ListMeta { resource_version: obj.resource_version().to_string(), ..Default::default() };
            let t = table::table(req.strategy.as_ref(), [obj], &meta, include, &now());
            Ok(respond::json(code, &t, warnings))
        }
    }
}

async fn get(shared: &Shared, req: &Request) -> Result<Response> {
    let obj = shared.registry.get(&req.t, req.namespace(), req.name(), &req.query.get_options()).await?;
    object_response(req, StatusCode::OK, &obj, &[])
}

async fn list(shared: &Shared, req: &Request) -> Result<Response> {
    let output = respond::negotiate(&req.headers, &req.query)?;
    let list = shared.registry.list(&req.t, req.namespace(), &req.query.list_options()?).await?;
    let meta = ListMeta {
        resource_version: list.resource_version,
        continue_token: list.continue_token,
        remaining_item_count: list.remaining_item_count,
    };
    match output {
        Output::Object => Ok(list_response(&req.t, &meta, &list.items)),
        Output::Table(include) => {
            let t = table::table(req.strategy.as_ref(), &list.items, &meta, include, &now());
            Ok(respond::json(StatusCode::OK, &t, &[]))
        }
    }
}

/// A `<Kind>List` of `items`.
pub(crate) fn list_response(t: &ResourceType, meta: &ListMeta, items: &[DynamicObject]) -> Response {
    #[derive(serde::Serialize)]
    struct ListBody<'a> {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
        metadata: Value,
        items: &'a [DynamicObject],
    }
    let body =
        ListBody { kind: t.list_kind(), api_version: t.api_version(), metadata: meta.to_json(), items };
    respond::json(StatusCode::OK, &body, &[])
}

async fn create(shared: &Shared, req: &Request) -> Result<Response> {
    let opts = req.query.write_options()?;
    let mut obj = req.object()?;
    security::admit_create(req.attrs.as_ref(), obj.name())?;
    csr::prepare_create(&req.t, req.attrs.as_ref(), &mut obj);
    let ns = req.namespace().map(str::to_string);
    let w = shared.registry.create(&req.t, ns.as_deref(), obj, &opts).await?;
    object_response(req, StatusCode::CREATED, &w.object, &w.warnings)
}

async fn update(shared: &Shared, req: &Request, sub: Subresource) -> Result<Response> {
    let opts = req.query.write_options()?;
    let obj = req.object()?;
    let name = req.name().to_string();
    match obj.metadata.name.as_deref() {
        Some(n) if n == name => {}
        Some(n) if !n.is_empty() => {
            return Err(Error::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    let mut obj = obj;
    obj.metadata.name = Some(name.clone());
    let ns = req.namespace().map(str::to_string);
    let w = shared.registry.update(&req.t, ns.as_deref(), &name, obj, sub, &opts).await?;
    object_response(req, StatusCode::OK, &w.object, &w.warnings)
}

async fn patch(shared: &Shared, req: &Request, sub: Subresource) -> Result<Response> {
    let opts = req.query.write_options()?;
    let patch_type = patch_type(&req.headers)?;
    let bytes = &req.body;
    let ns = req.namespace().map(str::to_string);
    let name = req.name().to_string();
    let w = shared.registry.patch(&req.t, ns.as_deref(), &name, patch_type, bytes, sub, &opts).await?;
    object_response(req, StatusCode::OK, &w.object, &w.warnings)
}

/// The patch type of a PATCH request's `Content-Type` (415 for any other).
pub(crate) fn patch_type(headers: &HeaderMap) -> Result<PatchType> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    PatchType::from_content_type(ct).ok_or_else(|| Error::UnsupportedMediaType(ct.to_string()))
}

async fn delete(shared: &Shared, req: &Request) -> Result<Response> {
    let query_opts = req.query.delete_options()?;
    let opts = body::delete_options(&req.body, req.format()?, query_opts)?;
    let ns = req.namespace().map(str::to_string);
    let d = shared.registry.delete(&req.t, ns.as_deref(), req.name(), &opts).await?;
    let code = if d.gone { StatusCode::OK } else { StatusCode::ACCEPTED };
    object_response(req, code, &d.object, &[])
}

async fn delete_collection(shared: &Shared, req: &Request) -> Result<Response> {
    let list_opts = req.query.list_options()?;
    let query_opts = req.query.delete_options()?;
    let opts = body::delete_options(&req.body, req.format()?, query_opts)?;
    let ns = req.namespace().map(str::to_string);
    let list = shared.registry.delete_collection(&req.t, ns.as_deref(), &list_opts, &opts).await?;
    let meta = ListMeta { resource_version: list.resource_version, ..Default::default() };
    Ok(list_response(&req.t, &meta, &list.items))
}

/// A `Status` of success (what bindings and evictions answer).
pub(crate) fn success(code: StatusCode) -> Response {
    let mut m = Map::new();
    m.insert("kind".into(), "Status".into());
    m.insert("apiVersion".into(), "v1".into());
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), "Success".into());
    m.insert("code".into(), code.as_u16().into());
    respond::json(code, &Value::Object(m), &[])
}

#[cfg(test)]
fn _futures_are_send(shared: &'static Shared, m: Method, u: &'static Uri, h: HeaderMap) {
    fn is_send<T: Send>(_: T) {}
    let call = Call { group: "", version: "v1", rest: "pods", method: m, uri: u, headers: h, attrs: None };
    is_send(serve(shared, call, Body::empty()));
}
