//! `nodes/{name}/proxy/{path}` forwards GETs to the node's agent and passes its answer back.

use anyhow::Result;
use axum::extract::RawQuery;
use axum::routing::get;
use flotilla_api::server::{KubeletClient, ServerConfig};
use http::{Method, StatusCode, header};

use crate::agents::{node_with_agent, serve};
use crate::harness::{Server, within};

/// A fake agent: `/metrics` in the text format, `/echo/...` naming its path and query, and
/// a 404 for the rest.
async fn fake_agent() -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], "kubelet_running_pods 3\n")
            }),
        )
        .route(
            "/echo/{*rest}",
            get(|axum::extract::Path(rest): axum::extract::Path<String>, RawQuery(q): RawQuery| async move {
                format!("{rest}?{}", q.unwrap_or_default())
            }),
        );
    serve(app).await
}

#[tokio::test]
async fn node_proxy_reaches_the_agent_of_the_node() -> Result<()> {
    within("node proxy", async {
        let (port, agent) = fake_agent().await?;
        let s =
            Server::with_config(ServerConfig { kubelet: Some(KubeletClient::plain()), ..Default::default() })
                .await?;
        node_with_agent(&s, "n1", port).await?;

        let r = s.get("/api/v1/nodes/n1/proxy/metrics").await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(String::from_utf8_lossy(&r.body), "kubelet_running_pods 3\n");
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "text/plain; version=0.0.4",
            "the agent's type is passed on"
        );

        let r = s.get("/api/v1/nodes/n1/proxy/echo/a/b%20c?x=1&y=two").await?;
        assert_eq!(String::from_utf8_lossy(&r.body), "a/b c?x=1&y=two", "path and query are passed on");

        let r = s.get("/api/v1/nodes/n1/proxy/nothing").await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "the agent's status is passed on");

        let r = s.call(Method::POST, "/api/v1/nodes/n1/proxy/metrics", None, b"").await?;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = s.get("/api/v1/nodes/missing/proxy/metrics").await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&r.body).contains("missing"), "names the node");

        agent.abort();
        let _ = agent.await;
        let r = s.get("/api/v1/nodes/n1/proxy/metrics").await?;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&r.body));
        s.stop().await;

        let unconfigured = Server::with_config(ServerConfig::default()).await?;
        let r = unconfigured.get("/api/v1/nodes/n1/proxy/metrics").await?;
        assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", String::from_utf8_lossy(&r.body));
        unconfigured.stop().await;
        Ok(())
    })
    .await
}
