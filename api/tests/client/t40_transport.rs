//! The transport: retries on throttling and server errors (and none for writes the server
//! may have acted on), connection failures and timeouts, HTTP/2 connection reuse, TLS trust
//! settings, and the whole client over plain HTTP.
//!
//! These tests run on the real clock: tokio's paused clock advances whenever the runtime
//! waits for socket I/O, which fires request timeouts spuriously. The retry loop's timing
//! (Retry-After, backoff) is tested on a paused clock in the library's unit tests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{StatusCode, Version};
use axum::response::IntoResponse;
use axum::routing::get;
use flotilla_api::client::{ClientConfig, RemoteClient, RetryPolicy};
use flotilla_api::pki::{ClientAuth, ClusterPki};
use flotilla_api::tls;
use flotilla_core::client::{Api, Client};
use flotilla_core::object::Resource;
use flotilla_core::registry::{Error, GetOptions, ListOptions, WatchEvent, WriteOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::harness::{Cluster, Fake, Options, obj, pod, within};

fn status(code: StatusCode, reason: &str) -> axum::response::Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code.as_u16(),
                      "reason": reason, "message": format!("{reason} (fake)")});
    if code == StatusCode::TOO_MANY_REQUESTS {
        (code, [("retry-after", "1")], axum::Json(body)).into_response()
    } else {
        (code, axum::Json(body)).into_response()
    }
}

fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"}})
}

/// Answers `fail` with `code` the first `times` calls counted by `calls`, then `ok`.
fn flaky(
    calls: Arc<AtomicUsize>,
    times: usize,
    code: StatusCode,
    ok: StatusCode,
    name: &'static str,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone {
    move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let reason =
            if code == StatusCode::TOO_MANY_REQUESTS { "TooManyRequests" } else { "ServiceUnavailable" };
        std::future::ready(if n < times {
            status(code, reason)
        } else {
            (ok, axum::Json(config_map(name))).into_response()
        })
    }
}

#[tokio::test]
async fn throttled_and_failing_requests_are_retried_as_safe() -> Result<()> {
    let counters: Vec<Arc<AtomicUsize>> = (0..5).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let [get_429, post_429, get_503, put_503, delete_503] = [0, 1, 2, 3, 4].map(|i| counters[i].clone());
    let base = "/api/v1/namespaces/default/configmaps";
    let app = Router::new()
        .route(
            &format!("{base}/x"),
            get(flaky(get_429.clone(), 2, StatusCode::TOO_MANY_REQUESTS, StatusCode::OK, "x")),
        )
        .route(
            base,
            axum::routing::post(flaky(
                post_429.clone(),
                2,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::CREATED,
                "y",
            )),
        )
        .route(
            &format!("{base}/down"),
            get(flaky(get_503.clone(), usize::MAX, StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK, "down"))
                .put(flaky(
                    put_503.clone(),
                    usize::MAX,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::OK,
                    "down",
                ))
                .delete(flaky(
                    delete_503.clone(),
                    usize::MAX,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::OK,
                    "down",
                )),
        );
    let fake = Fake::start(app).await?;
    let client = fake.client(4)?;
    within("retried requests", async {
        let t = ConfigMap::TYPE;
        let start = Instant::now();
        let x = client.get(&t, Some("default"), "x", &GetOptions::default()).await?;
        ensure!(x.name() == "x" && get_429.load(Ordering::SeqCst) == 3, "two 429s, then the answer");
        ensure!(start.elapsed() >= Duration::from_secs(2), "Retry-After: 1, twice: {:?}", start.elapsed());
        let y = client.create(&t, Some("default"), obj(config_map("y")), &WriteOptions::default()).await?;
        ensure!(
            y.object.name() == "y" && post_429.load(Ordering::SeqCst) == 3,
            "a throttled create is retried"
        );

        let down = client.get(&t, Some("default"), "down", &GetOptions::default()).await;
        ensure!(down == Err(Error::Unavailable("ServiceUnavailable (fake)".into())), "{down:?}");
        ensure!(get_503.load(Ordering::SeqCst) == 4, "reads are retried up to max_attempts");
        let w = WriteOptions::default();
        let put = client
            .replace(&t, Some("default"), "down", obj(config_map("down")), Default::default(), &w)
            .await;
        ensure!(matches!(put, Err(Error::Unavailable(_))), "{put:?}");
        ensure!(put_503.load(Ordering::SeqCst) == 1, "a write that may have been applied is not retried");
        let delete = client.delete(&t, Some("default"), "down", &Default::default()).await;
        ensure!(matches!(delete, Err(Error::Unavailable(_))) && delete_503.load(Ordering::SeqCst) == 1);
        Ok(())
    })
    .await?;
    fake.stop().await
}

#[tokio::test]
async fn connection_failures_and_timeouts() -> Result<()> {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let mut c = ClientConfig::new(format!("http://{closed}").parse()?);
    c.retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    let refused: Arc<dyn Client> = Arc::new(RemoteClient::new(c)?);
    within("connection failures", async {
        let start = Instant::now();
        let e = refused.get(&ConfigMap::TYPE, Some("default"), "x", &GetOptions::default()).await;
        let Err(Error::Unavailable(msg)) = e else { anyhow::bail!("expected Unavailable: {e:?}") };
        ensure!(msg.contains(&closed.to_string()) && msg.to_lowercase().contains("refused"), "{msg}");
        ensure!(start.elapsed() >= Duration::from_millis(150), "two backoffs: {:?}", start.elapsed());
        let w = WriteOptions::default();
        let w = refused.create(&ConfigMap::TYPE, Some("default"), obj(config_map("y")), &w).await;
        ensure!(matches!(w, Err(Error::Unavailable(_))), "unsent writes fail the same way: {w:?}");
        Ok(())
    })
    .await?;

    let release = CancellationToken::new();
    let hold = release.clone();
    let app = Router::new().route(
        "/api/v1/namespaces/default/configmaps/slow",
        get(move || {
            let hold = hold.clone();
            async move {
                hold.cancelled().await;
                StatusCode::OK
            }
        }),
    );
    let fake = Fake::start(app).await?;
    let mut c = ClientConfig::new(format!("http://{}", fake.addr).parse()?);
    c.timeout = Some(Duration::from_millis(300));
    let slow: Arc<dyn Client> = Arc::new(RemoteClient::new(c)?);
    within("a request timing out", async {
        let e = slow.get(&ConfigMap::TYPE, Some("default"), "slow", &GetOptions::default()).await;
        ensure!(matches!(&e, Err(Error::Timeout(m)) if m.contains("300ms")), "{e:?}");
        Ok(())
    })
    .await?;
    release.cancel();
    fake.stop().await
}

#[tokio::test]
async fn requests_share_one_http2_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = ClusterPki::load_or_create(dir.path(), &[])?;
    let app = Router::new().route(
        "/api/v1/namespaces/default/configmaps/{name}",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>, version: Version| async move {
            axum::Json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conn"},
                              "data": {"peer": peer.to_string(), "version": format!("{version:?}")}}))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server =
        tokio::spawn(tls::serve(listener, pki.server_config(ClientAuth::Optional)?, app, shutdown.clone()));
    let mut c = ClientConfig::new(format!("https://{addr}").parse()?);
    c.ca_pem = Some(pki.ca_pem().as_bytes().to_vec());
    let client: Arc<dyn Client> = Arc::new(RemoteClient::new(c.clone())?);
    let result = within("requests over one connection", async {
        let t = ConfigMap::TYPE;
        let first = client.get(&t, Some("default"), "a", &GetOptions::default()).await?;
        let calls = (0..16).map(|i| {
            let client = client.clone();
            async move { client.get(&t, Some("default"), &format!("c{i}"), &GetOptions::default()).await }
        });
        let all = futures::future::try_join_all(calls).await?;
        let peers: BTreeSet<String> =
            all.iter().chain([&first]).map(|o| o.data["data"]["peer"].to_string()).collect();
        ensure!(first.data["data"]["version"] == "HTTP/2.0", "ALPN chose h2: {}", first.data["data"]);
        ensure!(peers.len() == 1, "16 concurrent requests multiplexed on the first connection: {peers:?}");

        // Trust: a foreign CA is refused; insecure, or the right server name, is accepted.
        let other = tempfile::tempdir()?;
        let other = ClusterPki::load_or_create(other.path(), &[])?;
        let mut wrong = c.clone();
        wrong.ca_pem = Some(other.ca_pem().as_bytes().to_vec());
        wrong.retry.max_attempts = 1;
        let e = RemoteClient::new(wrong.clone())?.get(&t, Some("default"), "a", &GetOptions::default()).await;
        ensure!(matches!(&e, Err(Error::Unavailable(m)) if m.contains("certificate")), "{e:?}");
        wrong.insecure = true;
        RemoteClient::new(wrong)?.get(&t, Some("default"), "a", &GetOptions::default()).await?;
        let mut named = c.clone();
        named.tls_server_name = Some("localhost".into());
        RemoteClient::new(named.clone())?.get(&t, Some("default"), "a", &GetOptions::default()).await?;
        named.tls_server_name = Some("elsewhere.example".into());
        named.retry.max_attempts = 1;
        let e = RemoteClient::new(named)?.get(&t, Some("default"), "a", &GetOptions::default()).await;
        ensure!(matches!(&e, Err(Error::Unavailable(_))), "{e:?}");
        Ok(())
    })
    .await;
    drop(client);
    shutdown.cancel();
    within("the TLS server stopping", async { Ok(server.await??) }).await?;
    result
}

#[tokio::test]
async fn the_client_works_over_plain_http() -> Result<()> {
    let cluster = Cluster::with(Options { plain: true, ..Default::default() }).await?;
    ensure!(cluster.client.server().scheme() == "http");
    within("calls over plain http", async {
        let pods = Api::<Pod>::namespaced(cluster.remote.clone(), "default");
        let rv = pods.list(&ListOptions::default()).await?.resource_version;
        let mut events = cluster
            .remote
            .watch(
                &Pod::TYPE,
                Some("default"),
                &ListOptions { resource_version: Some(rv), ..Default::default() },
            )
            .await?;
        let created = pods.create(&pod("web", "web")).await?;
        ensure!(pods.get("web").await? == created);
        pods.bind("web", "n1").await?;
        let first = events.next_event().await.context("the watch ended")?;
        ensure!(matches!(&first, WatchEvent::Added(o) if o.name() == "web"), "{first:?}");
        let second = events.next_event().await.context("the watch ended")?;
        ensure!(
            matches!(&second, WatchEvent::Modified(o) if o.data["spec"]["nodeName"] == "n1"),
            "{second:?}"
        );
        let now =
            flotilla_core::registry::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        ensure!(pods.delete("web", &now).await?.is_none());
        Ok(())
    })
    .await?;
    cluster.stop().await
}
