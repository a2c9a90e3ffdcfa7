//! Discovery and OpenAPI documents read by the real kubectl (v1.32): the discovery routes
//! merged with a fake resource router that records what kubectl sends.

mod t10_discovery;
mod t20_apply;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use flotilla_api::discovery::{self, Discovery};
use flotilla_api::openapi::OpenApi;
use flotilla_core::object::{KindRegistry, ResourceType, SchemalessKind};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub(crate) const KUBECTL: &str = "/usr/bin/kubectl";

/// One request the server saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// The built-in kinds plus a user kind, `games.example.com/v1` `Game` (short name `gm`).
pub(crate) fn kinds() -> Result<KindRegistry> {
    let mut kinds = KindRegistry::builtin();
    let game = ResourceType::leak(
        "games.example.com".into(),
        "v1".into(),
        "Game".into(),
        "games".into(),
        true,
        vec!["gm".into()],
        true,
    );
    kinds.register_strategy(Arc::new(SchemalessKind(game)))?;
    Ok(kinds)
}

/// Objects the fake server already has, by `<plural>/<name>` in namespace `default`.
fn existing(plural: &str, name: &str) -> Option<Value> {
    match (plural, name) {
        ("pods", "web") => Some(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "default", "uid": "u-web", "resourceVersion": "5",
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED_WEB },
            },
            "spec": { "containers": [
                { "name": "app", "image": "nginx:1" },
                { "name": "sidecar", "image": "busybox:1" },
            ] },
        })),
        ("games", "g1") => Some(json!({
            "apiVersion": "games.example.com/v1",
            "kind": "Game",
            "metadata": {
                "name": "g1", "namespace": "default", "uid": "u-g1", "resourceVersion": "6",
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED_G1 },
            },
            "spec": { "players": [ { "name": "a" }, { "name": "b" } ] },
        })),
        _ => None,
    }
}

/// What `kubectl apply` recorded when it last applied pod `web`.
pub(crate) const LAST_APPLIED_WEB: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"containers":[{"image":"nginx:1","name":"app"},{"image":"busybox:1","name":"sidecar"}]}}"#;
/// What `kubectl apply` recorded when it last applied game `g1`.
pub(crate) const LAST_APPLIED_G1: &str = r#"{"apiVersion":"games.example.com/v1","kind":"Game","metadata":{"annotations":{},"name":"g1","namespace":"default"},"spec":{"players":[{"name":"a"},{"name":"b"}]}}"#;

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

/// The fake resource routes: lists are empty, `existing` objects can be read and patched,
/// anything created is echoed back.
async fn resource(State(kinds): State<Arc<KindRegistry>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    // /api/v1/namespaces/default/<plural>[/<name>] or /apis/<g>/<v>/namespaces/default/...
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("no route {path}")),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let Some(kind) = rest.first().and_then(|p| kinds.get(group, p)).map(|k| k.resource_type()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("no resource at {path}"));
    };
    let json_ok = |code: StatusCode, v: Value| {
        (code, [("content-type", "application/json")], v.to_string()).into_response()
    };
    match (method, rest) {
        (Method::GET, [_]) => json_ok(
            StatusCode::OK,
            json!({ "kind": kind.list_kind(), "apiVersion": kind.api_version(), "metadata": { "resourceVersion": "1" }, "items": [] }),
        ),
        (Method::POST, [_]) => {
            let mut obj: Value = serde_json::from_slice(&body).unwrap_or_default();
            obj["metadata"]["uid"] = json!("u-new");
            obj["metadata"]["resourceVersion"] = json!("7");
            json_ok(StatusCode::CREATED, obj)
        }
        (Method::GET | Method::PATCH, [plural, name]) => match existing(plural, name) {
            Some(obj) => json_ok(StatusCode::OK, obj),
            None => status(StatusCode::NOT_FOUND, "NotFound", format!("{plural} \"{name}\" not found")),
        },
        (m, _) => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{m} {path}")),
    }
}

/// Records every request, discovery and OpenAPI included.
async fn record(State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let s = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    seen.lock().expect("no test thread panics holding the log").push(s);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The discovery routes and the fake resource routes on 127.0.0.1 (plain HTTP).
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start() -> Result<Server> {
        let kinds = Arc::new(kinds()?);
        let discovery = Arc::new(Discovery::new(&kinds));
        let openapi = Arc::new(OpenApi::new(&discovery));
        // The same patterns as the real resource routes, to show the routers merge.
        let resources = Router::new()
            .route("/api/v1/{*rest}", any(resource))
            .route("/apis/{group}/{version}/{*rest}", any(resource))
            .with_state(kinds);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = discovery::routes(discovery, openapi)
            .merge(resources)
            .layer(middleware::from_fn_with_state(seen.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(s.cancelled_owned()).await;
        });
        Ok(Server { addr, seen, stop, task })
    }

    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("no test thread panics holding the log").clone()
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// kubectl with its own HOME, cache directory and an empty kubeconfig, so nothing (the
/// discovery cache above all) is shared between tests or with the machine's user.
pub(crate) struct Kubectl {
    dir: tempfile::TempDir,
    server: String,
}

/// What one kubectl run printed.
pub(crate) struct Output {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Kubectl {
    /// `None` (after saying why) when kubectl is not installed.
    pub(crate) fn new(server: &Server) -> Result<Option<Kubectl>> {
        if !Path::new(KUBECTL).exists() {
            eprintln!("skipping: {KUBECTL} is not installed");
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("config"), "apiVersion: v1\nkind: Config\n")?;
        Ok(Some(Kubectl { dir, server: format!("http://{}", server.addr) }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `content` to a file in kubectl's directory and returns its path.
    pub(crate) fn file(&self, name: &str, content: &str) -> Result<String> {
        let p = self.path(name);
        std::fs::write(&p, content)?;
        Ok(p.to_string_lossy().into_owned())
    }

    /// Runs kubectl against the server, whatever its exit status.
    pub(crate) async fn output(&self, args: &[&str]) -> Result<Output> {
        let out = tokio::process::Command::new(KUBECTL)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", self.path("config"))
            .arg(format!("--server={}", self.server))
            .arg(format!("--cache-dir={}", self.path("cache").display()))
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .context("running kubectl")?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and returns its output, failing with its stderr on a non-zero exit.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<Output> {
        let out = self.output(args).await?;
        anyhow::ensure!(out.ok, "kubectl {} failed:\n{}{}", args.join(" "), out.stdout, out.stderr);
        Ok(out)
    }
}

/// Runs a test body with an outer timeout that names what probably hung.
pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(120), f).await.with_context(|| format!("timed out: {what}"))?
}
