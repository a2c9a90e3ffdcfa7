//! A running API server over an in-memory store, and a small HTTP client for it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use flotilla_api::server::{ApiServer, ServerConfig};
use flotilla_core::MemStore;
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A server on 127.0.0.1 (plain HTTP) with namespace `default`.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) api: ApiServer,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One response.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!("{} body is not JSON: {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
}

impl Server {
    pub(crate) async fn start() -> Result<Server> {
        Self::with_config(ServerConfig::default()).await
    }

    pub(crate) async fn with_config(config: ServerConfig) -> Result<Server> {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let api = ApiServer::new(registry, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let router = api.router();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(s.cancelled_owned()).await;
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        let server = Server { addr, api, stop, task, client };
        let ns = server
            .call(
                Method::POST,
                "/api/v1/namespaces",
                Some("application/json"),
                br#"{"metadata":{"name":"default"}}"#,
            )
            .await?;
        anyhow::ensure!(ns.status == StatusCode::CREATED, "creating namespace default: {}", ns.status);
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A request with an optional body of `content_type`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Reply> {
        self.call_with(method, path, &[("content-type", content_type.unwrap_or("application/json"))], body)
            .await
    }

    /// A request with extra headers.
    pub(crate) async fn call_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply> {
        let mut b = Request::builder().method(method).uri(format!("{}{path}", self.url()));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self.client.request(b.body(Full::new(Bytes::copy_from_slice(body)))?).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// GET as JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Reply> {
        self.call(Method::GET, path, None, b"").await
    }

    /// A streaming GET (watches): the response with its body still open.
    pub(crate) async fn stream(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let req = Request::builder()
            .uri(format!("{}{path}", self.url()))
            .header("accept", accept)
            .body(Full::new(Bytes::new()))?;
        Ok(self.client.request(req).await?)
    }

    pub(crate) async fn stop(self) {
        self.api.shutdown();
        self.stop.cancel();
        let _ = self.task.await;
        self.api.registry().shutdown().await;
    }
}

/// Reads watch events (JSON lines) from a streaming body until `n` arrived.
pub(crate) async fn read_events(
    body: &mut hyper::body::Incoming,
    buf: &mut Vec<u8>,
    n: usize,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.push(serde_json::from_slice(&line)?);
            if out.len() == n {
                return Ok(out);
            }
        }
        let frame = body.frame().await.context("watch ended")??;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

/// Runs `f` with an outer timeout that names what probably hung.
pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .with_context(|| format!("timed out: {what}"))?
}

/// The installed kubectl the tests drive.
pub(crate) const KUBECTL: &str = "/usr/bin/kubectl";

/// Runs kubectl with `kubeconfig` (and `HOME` next to it); returns whether it succeeded and
/// its trimmed stdout and stderr.
pub(crate) async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Result<(bool, String, String)> {
    let out = tokio::process::Command::new(KUBECTL)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().context("kubeconfig dir")?)
        .kill_on_drop(true)
        .output()
        .await
        .context("running kubectl")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
}

/// Runs kubectl and requires success; returns its trimmed stdout.
pub(crate) async fn kubectl_ok(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String> {
    let (success, out, err) = kubectl(kubeconfig, args).await?;
    anyhow::ensure!(success, "kubectl {} failed: {err}", args.join(" "));
    Ok(out)
}
