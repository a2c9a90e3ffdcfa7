//! Request decoding before the body: method, path, query and headers, as the API server reads
//! them (`flotilla_api::server::fuzzing`): `RequestInfo::parse` (what authentication,
//! authorization and metrics see), the resource path after axum's routing (`path::parse`),
//! every query option a handler reads, `Accept` negotiation (Table output), the body's media
//! type and the patch type from `Content-Type`.
//!
//! Input: text, `METHOD /path?query` on the first line, then `Name: value` header lines; a
//! line that is not a valid header is skipped, a request line hyper would refuse ends the run.
//!
//! Properties: nothing panics; every refusal is a 400, 406 or 415 `Status`; and what
//! authorization is asked about is what the handler then does: for every request the resource
//! handler serves (a built-in kind, a path it resolves, a method it dispatches), `RequestInfo`
//! names the same group, version, namespace, resource, name, subresource and Kubernetes verb
//! (`list` vs `watch`, `delete` vs `deletecollection`), and a list's selectors are the ones the
//! handler applies.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::routing::{any, get};
use flotilla_api::auth::RequestInfo;
use flotilla_api::server::fuzzing::{self, Output};
use flotilla_core::object::KindRegistry;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// Where the resource handler is reached: (group, version, rest) as axum extracts them.
type Route = (String, String, String);

/// The resource routes of `ApiServer::router` (`server/mod.rs`), with handlers that only
/// report what axum extracted: the real matching and percent-decoding of the path parameters.
/// Keep the patterns in step with the server's.
fn router() -> &'static Router {
    static R: OnceLock<Router> = OnceLock::new();
    R.get_or_init(|| {
        Router::new()
            .route(
                "/api/v1/{*rest}",
                any(|Path(rest): Path<String>| async move { route_json(("".into(), "v1".into(), rest)) }),
            )
            .route(
                "/apis/{group}/{version}/{*rest}",
                any(|Path(route): Path<Route>| async move { route_json(route) }),
            )
            // The node proxy's (`server/node_proxy.rs`, GET only): it acts on node `name`,
            // which authorization must have been asked about as `get nodes/proxy`.
            .route(
                "/api/v1/nodes/{name}/proxy",
                get(|Path(name): Path<String>| async move { proxy_json(&name) }),
            )
            .route(
                "/api/v1/nodes/{name}/proxy/{*path}",
                get(|Path((name, _)): Path<(String, String)>| async move { proxy_json(&name) }),
            )
    })
}

/// The node proxy's route, as the resource path it amounts to (`nodes/<name>/proxy`).
fn proxy_json(name: &str) -> String {
    route_json((String::new(), "v1".into(), format!("nodes/{name}/proxy")))
}

fn route_json(route: Route) -> String {
    serde_json::to_string(&route).expect("strings encode")
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fn kinds() -> &'static KindRegistry {
    static K: OnceLock<KindRegistry> = OnceLock::new();
    K.get_or_init(KindRegistry::builtin)
}

/// The route axum gives a request, `None` when no resource route matches or the path
/// parameters do not decode (axum answers those itself: 404 or 400).
fn route(method: &Method, uri: &Uri) -> Option<Route> {
    let req =
        Request::builder().method(method.clone()).uri(uri.clone()).body(axum::body::Body::empty()).ok()?;
    runtime().block_on(async {
        let resp = router().clone().oneshot(req).await.expect("infallible");
        if !resp.status().is_success() {
            return None;
        }
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    })
}

/// The Kubernetes verb the resource handler (`resources::serve`) performs for this request,
/// `None` where it answers 404, 405 or 400 before doing anything.
fn handler_verb(method: &Method, target: &fuzzing::Target, watch: bool) -> Option<&'static str> {
    let named = target.name.is_some();
    Some(match (method, named, target.subresource.as_deref()) {
        (&Method::GET, false, None) if watch => "watch",
        (&Method::GET, false, None) => "list",
        (&Method::POST, false, None) => "create",
        (&Method::DELETE, false, None) => "deletecollection",
        (&Method::GET, true, None | Some("status")) => "get",
        (&Method::PUT, true, None) => "update",
        (&Method::PATCH, true, None) => "patch",
        (&Method::DELETE, true, None) => "delete",
        (m, true, Some(_)) => match *m {
            Method::GET => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::POST => "create",
            _ => return None,
        },
        _ => return None,
    })
}

fn refused(what: &str, e: &flotilla_api::server::Error, allowed: &[u16]) {
    assert!(allowed.contains(&e.code()), "{what} refused with {}: {e}", e.code());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else { return };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), target.parse::<Uri>()) else {
        return;
    };
    if !uri.path().starts_with('/') || uri.authority().is_some() {
        return;
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
        {
            headers.append(n, v);
        }
    }

    let info = RequestInfo::parse(&method, uri.path(), uri.query().unwrap_or_default());
    let q = fuzzing::query_options(uri.query());
    for (what, r) in [
        ("watch", q.watch.as_ref().err()),
        ("list options", q.list.as_ref().err()),
        ("timeoutSeconds", q.timeout_seconds.as_ref().err()),
        ("write options", q.write.as_ref().err()),
        ("delete options", q.delete.as_ref().err()),
    ] {
        if let Some(e) = r {
            refused(what, e, &[400]);
        }
    }
    match fuzzing::negotiate(&headers, uri.query()) {
        Ok(Output::Object | Output::Table(_)) => {}
        Err(e) => refused("Accept", &e, &[400, 406]),
    }
    if let Err(e) = fuzzing::body_format(&headers) {
        refused("Content-Type", &e, &[415]);
    }
    if let Err(e) = fuzzing::patch_type(&headers) {
        refused("patch Content-Type", &e, &[415]);
    }

    // Authorization must be asked about what the handler does.
    let Some((group, version, rest)) = route(&method, &uri) else { return };
    let Some(target) = fuzzing::parse_path(&rest) else { return };
    // The checks `resources::serve` makes before dispatching (404 otherwise).
    let Some(strategy) = kinds().get(&group, &target.resource) else { return };
    let t = strategy.resource_type();
    let in_namespace_path = target.namespace.is_some() && target.resource != "namespaces";
    if t.version != version
        || (in_namespace_path && !t.namespaced)
        || (t.namespaced && target.name.is_some() && target.namespace.is_none())
    {
        return;
    }
    let Ok(watch) = q.watch else { return };
    let Some(verb) = handler_verb(&method, &target, watch) else { return };
    let seen = (
        info.is_resource_request,
        info.api_group.as_str(),
        info.api_version.as_str(),
        info.namespace.as_str(),
        info.resource.as_str(),
        info.name.as_str(),
        info.subresource.as_str(),
        info.verb.as_str(),
    );
    // A list may name one object by `fieldSelector=metadata.name=<name>`; the handler lists
    // with that selector, which selects nothing else.
    let list_name = matches!(verb, "list" | "watch").then_some(info.name.as_str());
    let served = (
        true,
        group.as_str(),
        version.as_str(),
        target.namespace.as_deref().unwrap_or_default(),
        target.resource.as_str(),
        target.name.as_deref().or(list_name).unwrap_or_default(),
        target.subresource.as_deref().unwrap_or_default(),
        verb,
    );
    assert_eq!(seen, served, "authorization sees {seen:?}, the handler serves {served:?} for {method} {uri}");
    if matches!(verb, "list" | "watch" | "deletecollection") {
        let Ok(list) = &q.list else { return };
        assert_eq!(info.field_selector, list.field_selector.clone().unwrap_or_default(), "field selector");
        assert_eq!(info.label_selector, list.label_selector.clone().unwrap_or_default(), "label selector");
    }
});
