use anyhow::Result;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::harness::{Server, read_events, within};

fn cm(name: &str, v: &str) -> Vec<u8> {
    format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"k":"{v}"}}}}"#).into_bytes()
}

#[tokio::test]
async fn watch_streams_changes_and_resumes() -> Result<()> {
    within("watch", async {
        let s = Server::start().await?;
        let cms = "/api/v1/namespaces/default/configmaps";
        let r = s.call(Method::POST, cms, None, &cm("a", "1")).await?;
        let rv = r.json()?["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();

        // Without a resourceVersion: ADDED for what exists, then changes.
        let resp = s.stream(&format!("{cms}?watch=true"), "application/json").await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let ev = read_events(&mut body, &mut buf, 1).await?;
        assert_eq!(
            (ev[0]["type"].as_str(), ev[0]["object"]["metadata"]["name"].as_str()),
            (Some("ADDED"), Some("a"))
        );
        s.call(Method::PUT, &format!("{cms}/a"), None, &cm("a", "2")).await?;
        s.call(Method::DELETE, &format!("{cms}/a"), None, b"").await?;
        let ev = read_events(&mut body, &mut buf, 2).await?;
        assert_eq!(ev[0]["type"], "MODIFIED");
        assert_eq!(ev[0]["object"]["data"]["k"], "2");
        assert_eq!(ev[1]["type"], "DELETED");

        // From a resourceVersion: exactly what came after it, in order.
        let resp = s.stream(&format!("{cms}?watch=1&resourceVersion={rv}"), "application/json").await?;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let ev = read_events(&mut body, &mut buf, 2).await?;
        let types: Vec<&str> = ev.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(types, ["MODIFIED", "DELETED"]);

        // Table watch events (kubectl get -w).
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let resp = s.stream(&format!("{cms}?watch=true"), table).await?;
        let mut body = resp.into_body();
        s.call(Method::POST, cms, None, &cm("b", "1")).await?;
        let mut buf = Vec::new();
        let ev = read_events(&mut body, &mut buf, 1).await?;
        assert_eq!(ev[0]["object"]["kind"], "Table");
        assert_eq!(ev[0]["object"]["rows"][0]["cells"][0], "b");

        // timeoutSeconds ends the stream.
        let resp = s
            .stream(&format!("{cms}?watch=true&timeoutSeconds=1&resourceVersion={rv}"), "application/json")
            .await?;
        let all = resp.into_body().collect().await?.to_bytes();
        assert_eq!(all.iter().filter(|b| **b == b'\n').count(), 3, "{}", String::from_utf8_lossy(&all));
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_bad_selector_fails_before_streaming() -> Result<()> {
    within("watch errors", async {
        let s = Server::start().await?;
        let r = s.get("/api/v1/namespaces/default/pods?watch=true&fieldSelector=spec.bogus%3Dx").await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.json()?["message"].as_str().unwrap_or_default().contains("spec.bogus"));
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn stopping_the_server_ends_watches() -> Result<()> {
    within("watch shutdown", async {
        let s = Server::start().await?;
        let resp = s.stream("/api/v1/namespaces/default/configmaps?watch=true", "application/json").await?;
        let body = resp.into_body();
        s.api.shutdown();
        let rest = body.collect().await?.to_bytes();
        assert!(rest.is_empty());
        s.stop().await;
        Ok(())
    })
    .await
}
