//! Failing over between servers (`ClientConfig::failover`): a client whose first server is
//! down reaches the next one and stays there; when that one goes too, it moves on; a watch
//! opened after a server stopped opens on the next. Failover URLs that cannot belong to the
//! same cluster are refused when the client is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use flotilla_api::client::{ClientConfig, RemoteClient, RetryPolicy};
use flotilla_core::client::Api;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use crate::harness::{Fake, within};

/// A server whose ConfigMap `x` carries `who` in its data, counting the requests in `calls`.
async fn server(who: &'static str, calls: Arc<AtomicUsize>) -> Result<Fake> {
    let app = Router::new().route(
        "/api/v1/namespaces/default/configmaps/x",
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "x", "namespace": "default", "resourceVersion": "1"},
                              "data": {"who": who}});
            std::future::ready(axum::Json(body))
        }),
    );
    Fake::start(app).await
}

/// An address nothing listens on (bound, then released).
fn dead() -> Result<String> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    Ok(format!("http://{addr}"))
}

async fn who(api: &Api<ConfigMap>) -> Result<String> {
    let cm = within("a get", async { Ok(api.get("x").await?) }).await?;
    cm.data.and_then(|d| d.get("who").cloned()).context("no data")
}

#[tokio::test]
async fn requests_fail_over_to_the_next_server_and_stay_there() -> Result<()> {
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = server("a", a_calls.clone()).await?;
    let b = server("b", b_calls.clone()).await?;
    let mut config = ClientConfig::new(dead()?.parse()?);
    config.failover = vec![format!("http://{}", a.addr).parse()?, format!("http://{}", b.addr).parse()?];
    config.retry = RetryPolicy { max_attempts: 4, ..RetryPolicy::default() };
    let api = Api::<ConfigMap>::namespaced(Arc::new(RemoteClient::new(config)?), "default");

    // The first server refuses connections: the request goes on to `a`, and so do the next.
    assert_eq!(who(&api).await?, "a");
    assert_eq!(who(&api).await?, "a");
    assert_eq!((a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst)), (2, 0));

    // `a` stops: the next request breaks off or cannot connect there and goes on to `b`.
    a.stop().await?;
    assert_eq!(who(&api).await?, "b");
    assert_eq!(who(&api).await?, "b");
    assert_eq!((a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst)), (2, 2));
    b.stop().await
}

#[tokio::test]
async fn with_every_server_down_the_error_names_the_request() -> Result<()> {
    let mut config = ClientConfig::new(dead()?.parse()?);
    config.failover = vec![dead()?.parse()?];
    config.retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    let api = Api::<ConfigMap>::namespaced(Arc::new(RemoteClient::new(config)?), "default");
    let err = api.get("x").await.err().context("a get with no server up")?;
    let text = err.to_string();
    assert!(text.contains("GET ") && text.contains("/configmaps/x"), "{text}");
    Ok(())
}

#[test]
fn failover_servers_must_look_like_the_first() -> Result<()> {
    let cases =
        [("http://10.0.0.2:6443", "scheme"), ("https://10.0.0.2:6443/prefix", "path"), ("https://", "host")];
    for (url, word) in cases {
        let mut config = ClientConfig::new("https://10.0.0.1:6443".parse()?);
        config.insecure = true;
        config.failover = vec![url.parse().unwrap_or_else(|_| "data:,".parse().expect("a URL"))];
        let err = RemoteClient::new(config).err().with_context(|| format!("{url} was accepted"))?;
        let text = err.to_string();
        assert!(text.contains(word), "{url}: {text}");
    }
    Ok(())
}
