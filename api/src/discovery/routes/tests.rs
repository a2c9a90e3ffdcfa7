use axum::body::Body;
use flotilla_core::object::KindRegistry;
use http::Request;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

fn app() -> Router {
    let discovery = Arc::new(Discovery::new(&KindRegistry::builtin()));
    let openapi = Arc::new(OpenApi::new(&discovery));
    routes(discovery, openapi)
}

async fn get(uri: &str, headers: &[(&'static str, &str)]) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app().oneshot(req.body(Body::empty())?).await?;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    Ok((parts.status, parts.headers, bytes))
}

fn content_type(h: &HeaderMap) -> &str {
    h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// What client-go sends for `/api` and `/apis` (discovery_client.go, `acceptDiscoveryFormats`).
const KUBECTL_DISCOVERY_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

#[tokio::test]
async fn aggregated_requests_get_the_legacy_form_as_plain_json() -> anyhow::Result<()> {
    for uri in ["/api", "/apis"] {
        let (status, h, body) = get(uri, &[("accept", KUBECTL_DISCOVERY_ACCEPT)]).await?;
        assert_eq!(status, StatusCode::OK);
        // client-go reads the aggregated form only if the content type names its GVK.
        assert_eq!(content_type(&h), "application/json");
        let v: Value = serde_json::from_slice(&body)?;
        assert!(v["kind"] == "APIVersions" || v["kind"] == "APIGroupList", "{v}");
    }
    let (status, _, body) = get("/apis/apps/v1", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body)?["groupVersion"], "apps/v1");
    let (status, _, body) = get("/api/v1", &[("accept", "application/json, */*")]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body)?["groupVersion"], "v1");
    let (status, _, body) = get("/version", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body)?["gitVersion"], crate::discovery::GIT_VERSION);
    Ok(())
}

#[tokio::test]
async fn unknown_group_versions_are_a_not_found_status() -> anyhow::Result<()> {
    for uri in ["/apis/nope.example.com/v1", "/apis/apps/v9", "/openapi/v3/apis/nope/v1"] {
        let (status, h, body) = get(uri, &[]).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(content_type(&h), "application/json");
        let v: Value = serde_json::from_slice(&body)?;
        assert_eq!(
            (v["kind"].as_str(), v["reason"].as_str(), v["code"].as_u64()),
            (Some("Status"), Some("NotFound"), Some(404))
        );
        assert_eq!(v["status"], "Failure");
    }
    let (status, _, body) = get("/api", &[("accept", "application/vnd.kubernetes.protobuf")]).await?;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(serde_json::from_slice::<Value>(&body)?["reason"], "NotAcceptable");
    Ok(())
}

#[tokio::test]
async fn openapi_documents_are_cacheable_by_hash() -> anyhow::Result<()> {
    let (status, _, body) = get("/openapi/v3", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    let index: Value = serde_json::from_slice(&body)?;
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap_or_default().to_string();
    let hash = url.split("hash=").nth(1).unwrap_or_default().to_string();
    assert_eq!(hash.len(), 64, "{url}");

    let (status, h, body) = get(&url, &[("accept", "application/json")]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&h), "application/json");
    assert_eq!(h.get(CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some(IMMUTABLE));
    let etag = h.get(ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(etag, format!("\"{hash}\""));
    assert!(serde_json::from_slice::<Value>(&body)?["paths"].is_object());

    let (status, h, _) = get("/openapi/v3/apis/apps/v1", &[]).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get(CACHE_CONTROL).is_none(), "without a hash the document may change");

    let (status, _, body) = get("/openapi/v3/apis/apps/v1", &[("if-none-match", &etag)]).await?;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    let (status, h, _) = get("/openapi/v3/apis/apps/v1?hash=OLD", &[]).await?;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(h.get(LOCATION).and_then(|v| v.to_str().ok()), Some(url.as_str()));

    let (status, _, _) =
        get(&url, &[("accept", "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")]).await?;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    Ok(())
}

#[tokio::test]
async fn openapi_v2_answers_protobuf_or_json() -> anyhow::Result<()> {
    let client_go = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (status, h, body) = get("/openapi/v2", &[("accept", client_go)]).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&h), OPENAPI_V2_PROTOBUF);
    assert_eq!(&body[..5], b"\x0a\x032.0");
    let (status, h, body) = get("/openapi/v2", &[]).await?;
    assert_eq!((status, content_type(&h)), (StatusCode::OK, "application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&body)?["swagger"], "2.0");
    Ok(())
}
