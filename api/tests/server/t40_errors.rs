use anyhow::Result;
use flotilla_api::server::ServerConfig;
use http::{Method, StatusCode};

use crate::harness::{Server, within};

/// method, path, content type, body, expected code, reason, and a phrase of the message.
type Case = (Method, String, Option<&'static str>, Vec<u8>, StatusCode, &'static str, &'static str);

#[tokio::test]
async fn every_error_path_is_a_status() -> Result<()> {
    within("errors", async {
        let s = Server::with_config(ServerConfig { max_body_bytes: 4096, ..Default::default() }).await?;
        let pods = "/api/v1/namespaces/default/pods";
        let cases: Vec<Case> = vec![
            (Method::POST, pods.into(), None, b"{\"metadata\": {\n \"name\": [}".to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "line 2"),
            (Method::POST, pods.into(), Some("application/yaml"), b"metadata: [x\n".to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "YAML"),
            (Method::POST, pods.into(), None, vec![b' '; 5000], StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "4096"),
            (Method::GET, "/api/v1/namespaces/default/widgets".into(), None, vec![], StatusCode::NOT_FOUND, "NotFound", "could not find"),
            (Method::GET, "/apis/apps/v2/deployments".into(), None, vec![], StatusCode::NOT_FOUND, "NotFound", "could not find"),
            (Method::GET, "/nowhere".into(), None, vec![], StatusCode::NOT_FOUND, "NotFound", "could not find"),
            (Method::GET, "/api/v1/namespaces/default/nodes".into(), None, vec![], StatusCode::NOT_FOUND, "NotFound", "could not find"),
            (Method::PUT, pods.into(), None, b"{}".to_vec(), StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "PUT"),
            (Method::PATCH, format!("{pods}/x"), Some("text/plain"), b"{}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", "text/plain"),
            (Method::POST, pods.into(), Some("text/plain"), b"x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", "text/plain"),
            (Method::POST, pods.into(), Some("application/vnd.kubernetes.protobuf"), b"x".to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "magic bytes"),
            (Method::POST, pods.into(), None, br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "spec.containers"),
            (Method::POST, pods.into(), None, br#"{"apiVersion":"apps/v1","kind":"Pod","metadata":{"name":"p"}}"#.to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "apps/v1"),
            (Method::POST, pods.into(), None, br#"{"kind":"Pod","metadata":{"name":"p","namespace":"other"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "namespace"),
            (Method::POST, format!("{pods}?fieldValidation=Strict"), None, br#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"bogus":1,"containers":[{"name":"c","image":"i"}]}}"#.to_vec(), StatusCode::BAD_REQUEST, "BadRequest", "spec.bogus"),
            (Method::GET, format!("{pods}?limit=abc"), None, vec![], StatusCode::BAD_REQUEST, "BadRequest", "limit"),
            (Method::GET, format!("{pods}/nope"), None, vec![], StatusCode::NOT_FOUND, "NotFound", "pods \"nope\" not found"),
            (Method::GET, format!("{pods}/nope/log"), None, vec![], StatusCode::NOT_IMPLEMENTED, "NotImplemented", "node agent"),
            (Method::POST, "/api/v1/namespaces/missing/pods".into(), None, br#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec(), StatusCode::NOT_FOUND, "NotFound", "missing"),
        ];
        for (method, path, ct, body, code, reason, needle) in cases {
            let what = format!("{method} {path}");
            let r = s.call(method, &path, ct, &body).await?;
            assert_eq!(r.status, code, "{what}: {}", String::from_utf8_lossy(&r.body));
            let status = r.json()?;
            assert_eq!(status["kind"], "Status", "{what}");
            assert_eq!(status["reason"], reason, "{what}: {status}");
            assert_eq!(status["code"], code.as_u16(), "{what}");
            let msg = status["message"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        }

        // Unknown fields are dropped with a Warning header by default.
        let r = s
            .call(Method::POST, pods, None, br#"{"kind":"Pod","metadata":{"name":"w"},"spec":{"bogus":1,"containers":[{"name":"c","image":"i"}]}}"#)
            .await?;
        assert_eq!(r.status, StatusCode::CREATED);
        let warning = r.headers.get("warning").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(warning.starts_with("299 - ") && warning.contains("spec.bogus"), "{warning}");
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn metrics_count_requests_by_verb_resource_and_code() -> Result<()> {
    within("metrics", async {
        let s = crate::harness::Server::start().await?;
        let pods = "/api/v1/namespaces/default/pods";
        s.get(&format!("{pods}/missing")).await?;
        s.get(pods).await?;
        let r = s.get("/metrics").await?;
        assert_eq!(r.status, StatusCode::OK);
        let text = String::from_utf8_lossy(&r.body);
        for want in [
            r#"apiserver_request_total{verb="get",group="",resource="pods",subresource="",code="404"} 1"#,
            r#"apiserver_request_total{verb="list",group="",resource="pods",subresource="",code="200"} 1"#,
            r#"apiserver_request_total{verb="create",group="",resource="namespaces",subresource="",code="201"} 1"#,
            r#"apiserver_request_duration_seconds_count{verb="list",group="",resource="pods",subresource=""} 1"#,
            "apiserver_registered_watchers 0",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn metrics_include_other_components_registered_at_build() -> Result<()> {
    within("extra metrics", async {
        let reconciles = prometheus_client::metrics::counter::Counter::<u64>::default();
        reconciles.inc_by(7);
        let mut config = ServerConfig::default();
        let c = reconciles.clone();
        config.extra_metrics.add(move |r| r.register("demo_reconciles", "Reconciles of a demo", c.clone()));
        let s = Server::with_config(config).await?;
        // Counted after the server was built: the registry holds the live metric, not a copy.
        reconciles.inc();
        let text = String::from_utf8_lossy(&s.get("/metrics").await?.body).into_owned();
        assert!(text.contains("demo_reconciles_total 8"), "missing the extra metric in\n{text}");
        assert!(text.contains("apiserver_registered_watchers"), "the server's own metrics are gone:\n{text}");
        s.stop().await;
        Ok(())
    })
    .await
}
