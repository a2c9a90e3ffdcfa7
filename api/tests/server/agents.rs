//! A fake node agent on loopback and a node that points at it, for the tests of what the API
//! server forwards to agents (`pods/log`, `nodes/proxy`).

use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

/// Serves `app` on a free loopback port; returns the port and the serving task.
pub(crate) async fn serve(app: axum::Router) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, task))
}

/// Creates node `name` whose status publishes an agent on 127.0.0.1:`port`.
pub(crate) async fn node_with_agent(s: &Server, name: &str, port: u16) -> Result<()> {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let r = s.call(Method::POST, "/api/v1/nodes", None, node.to_string().as_bytes()).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let status = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {
        "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    let path = format!("/api/v1/nodes/{name}/status");
    let r = s.call(Method::PUT, &path, None, status.to_string().as_bytes()).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    Ok(())
}
