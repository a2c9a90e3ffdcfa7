//! `pods/log` streams from the node agent of the pod's node.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::{Path, RawQuery};
use axum::routing::get;
use flotilla_api::server::{KubeletClient, ServerConfig};
use http::{Method, StatusCode};
use serde_json::json;

use crate::agents::{node_with_agent, serve};
use crate::harness::{Server, within};

/// What the fake agent was asked: the path's parts and the raw query.
type Asked = Arc<Mutex<Vec<(String, String)>>>;

/// A fake node agent on loopback answering `containerLogs` with a line naming what it was
/// asked for.
async fn fake_agent(asked: Asked) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/containerLogs/{ns}/{pod}/{container}",
        get(move |Path((ns, pod, c)): Path<(String, String, String)>, RawQuery(q): RawQuery| {
            let asked = asked.clone();
            async move {
                asked.lock().expect("not poisoned").push((format!("{ns}/{pod}/{c}"), q.unwrap_or_default()));
                (StatusCode::OK, format!("log of {ns}/{pod}/{c}\n"))
            }
        }),
    );
    serve(app).await
}

#[tokio::test]
async fn logs_come_from_the_agent_of_the_pods_node() -> Result<()> {
    within("pod logs through the agent", async {
        let asked = Asked::default();
        let (port, agent) = fake_agent(asked.clone()).await?;
        let s =
            Server::with_config(ServerConfig { kubelet: Some(KubeletClient::plain()), ..Default::default() })
                .await?;
        node_with_agent(&s, "n1", port).await?;
        let pod = |name: &str, node: Option<&str>, containers: &[&str]| {
            let cs: Vec<_> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": node, "containers": cs}})
            .to_string()
        };
        let pods = "/api/v1/namespaces/default/pods";
        for body in [
            pod("web", Some("n1"), &["app"]),
            pod("two", Some("n1"), &["a", "b"]),
            pod("loose", None, &["app"]),
        ] {
            let r = s.call(Method::POST, pods, None, body.as_bytes()).await?;
            assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        }

        let r = s.get(&format!("{pods}/web/log?tailLines=5&follow=true&pretty=true")).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(String::from_utf8_lossy(&r.body), "log of default/web/app\n");
        let (path, query) = asked.lock().expect("not poisoned")[0].clone();
        assert_eq!(path, "default/web/app");
        assert_eq!(query, "follow=true&tailLines=5", "only the agent's parameters are passed on");

        let r = s.get(&format!("{pods}/two/log?container=b")).await?;
        assert_eq!(String::from_utf8_lossy(&r.body), "log of default/two/b\n");
        for (path, code, phrase) in [
            (format!("{pods}/two/log"), StatusCode::BAD_REQUEST, "choose one of: [a b]"),
            (format!("{pods}/two/log?container=c"), StatusCode::BAD_REQUEST, "container c is not valid"),
            (format!("{pods}/loose/log"), StatusCode::BAD_REQUEST, "does not have a host assigned"),
            (format!("{pods}/missing/log"), StatusCode::NOT_FOUND, "missing"),
        ] {
            let r = s.get(&path).await?;
            assert_eq!(r.status, code, "{path}: {}", String::from_utf8_lossy(&r.body));
            let status = r.json()?;
            assert!(status["message"].as_str().unwrap_or_default().contains(phrase), "{path}: {status}");
        }
        let asked_before = asked.lock().expect("not poisoned").len();
        assert_eq!(asked_before, 2, "refused requests never reach the agent");

        agent.abort();
        let _ = agent.await;
        let r = s.get(&format!("{pods}/web/log")).await?;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains("node n1"), "names the node");
        s.stop().await;
        Ok(())
    })
    .await
}
