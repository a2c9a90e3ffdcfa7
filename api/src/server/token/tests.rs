//! The TokenRequest subresource through the router: defaults, limits, bindings and errors.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::auth::authn::ServiceAccountVerifier;
use crate::server::{ApiServer, ServerConfig};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const ISSUER: &str = "https://flotilla.test";
const AUDIENCE: &str = "https://flotilla.test";
const PATH: &str = "/api/v1/namespaces/team/serviceaccounts/builder/token";

struct Fixture {
    app: Router,
    issuer: Arc<TokenIssuer>,
    client: Arc<dyn Client>,
}

impl Fixture {
    /// A server that issues tokens, with namespace `team` and ServiceAccount `builder`.
    async fn new() -> std::result::Result<Fixture, Box<dyn std::error::Error>> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|e| format!("generating a key: {e}"))?;
        let issuer = Arc::new(TokenIssuer::from_pkcs8(ISSUER, pkcs8.as_ref())?);
        let tokens = ServiceAccountTokens { issuer: issuer.clone(), audiences: vec![AUDIENCE.into()] };
        let config = ServerConfig { service_account_tokens: Some(tokens), ..Default::default() };
        let fixture = Self::with_config(config, issuer).await?;
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "builder"}}))?;
        Api::<ServiceAccount>::namespaced(fixture.client.clone(), "team").create(&sa).await?;
        Ok(fixture)
    }

    async fn with_config(
        config: ServerConfig,
        issuer: Arc<TokenIssuer>,
    ) -> std::result::Result<Fixture, Box<dyn std::error::Error>> {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}}))?;
        Api::<Namespace>::all(client.clone()).create(&ns).await?;
        let app = ApiServer::new(registry, config).router();
        Ok(Fixture { app, issuer, client })
    }

    /// Creates an object of kind `K` from JSON.
    async fn create<K: Resource>(
        &self,
        ns: Option<&str>,
        v: Value,
    ) -> std::result::Result<K, Box<dyn std::error::Error>> {
        let obj: K = serde_json::from_value(v)?;
        let api = match ns {
            Some(ns) => Api::<K>::namespaced(self.client.clone(), ns),
            None => Api::<K>::all(self.client.clone()),
        };
        Ok(api.create(&obj).await?)
    }

    /// POSTs `body` (JSON unless `content_type` says otherwise) to `path`; (status, body).
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> std::result::Result<(u16, Value), Box<dyn std::error::Error>> {
        let req = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_string()))?;
        let resp = self.app.clone().oneshot(req).await?;
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
        Ok((status, serde_json::from_slice(&bytes)?))
    }

    async fn request(&self, spec: Value) -> std::result::Result<(u16, Value), Box<dyn std::error::Error>> {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        self.post(PATH, "application/json", &body.to_string()).await
    }

    /// The user the server's verifier finds in `token`.
    fn verify(&self, token: &str) -> std::result::Result<crate::auth::UserInfo, Box<dyn std::error::Error>> {
        let v = ServiceAccountVerifier::new(
            vec![ISSUER.into()],
            vec![AUDIENCE.into()],
            vec![self.issuer.public_key()],
        );
        Ok(v.verify(token)?.ok_or("not one of our tokens")?)
    }
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> std::result::Result<Value, Box<dyn std::error::Error>> {
    let payload = token.split('.').nth(1).ok_or("a JWT has three parts")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

fn timestamp(v: &Value) -> std::result::Result<Timestamp, Box<dyn std::error::Error>> {
    Ok(v.as_str().ok_or("a timestamp string")?.parse()?)
}

#[tokio::test]
async fn defaults_are_filled_and_the_token_authenticates() -> TestResult {
    let f = Fixture::new().await?;
    let sa_uid = Api::<ServiceAccount>::namespaced(f.client.clone(), "team")
        .get("builder")
        .await?
        .metadata
        .uid
        .ok_or("a uid")?;
    let (code, tr) = f.request(json!({})).await?;
    assert_eq!(code, 201, "{tr}");
    assert_eq!((tr["kind"].as_str(), tr["apiVersion"].as_str()), (Some("TokenRequest"), Some(API_VERSION)));
    assert_eq!(tr["spec"]["audiences"], json!([AUDIENCE]), "the server's own audiences");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(tr["metadata"]["name"], "builder");
    assert_eq!(tr["metadata"]["namespace"], "team");
    assert_eq!(tr["metadata"]["uid"].as_str(), Some(sa_uid.as_str()));
    let created = timestamp(&tr["metadata"]["creationTimestamp"])?;
    let expires = timestamp(&tr["status"]["expirationTimestamp"])?;
    assert_eq!(expires.as_second() - created.as_second(), 3600, "{tr}");

    let token = tr["status"]["token"].as_str().ok_or("a token")?;
    let c = claims(token)?;
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["exp"].as_i64(), c["iat"].as_i64().map(|i| i + 3600));
    assert_eq!(c["exp"].as_i64(), Some(expires.as_second()), "the status says when the token expires");
    let user = f.verify(token)?;
    assert_eq!(user.name, "system:serviceaccount:team:builder");
    assert_eq!(user.uid, sa_uid);

    // Audiences asked for are kept; a dry run still answers with a token, as Kubernetes does.
    let (code, tr) = f.request(json!({"audiences": ["vault"], "expirationSeconds": 600})).await?;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["spec"]["audiences"], json!(["vault"]));
    assert_eq!(claims(tr["status"]["token"].as_str().ok_or("a token")?)?["aud"], "vault");
    let body = r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{}}"#;
    let (code, tr) = f.post(&format!("{PATH}?dryRun=All"), "application/json", body).await?;
    assert_eq!(code, 201, "{tr}");
    assert!(tr["status"]["token"].as_str().is_some_and(|t| !t.is_empty()), "{tr}");
    let (code, st) = f.post(&format!("{PATH}?dryRun=Some"), "application/json", body).await?;
    assert_eq!(code, 400, "{st}");
    Ok(())
}

#[tokio::test]
async fn expiration_limits_name_the_field() -> TestResult {
    let f = Fixture::new().await?;
    for (seconds, detail) in [
        (599, "may not specify a duration less than 10 minutes"),
        ((1_i64 << 32) + 1, "may not specify a duration larger than 2^32 seconds"),
    ] {
        let (code, st) = f.request(json!({"expirationSeconds": seconds})).await?;
        assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")), "{st}");
        assert_eq!(st["details"]["causes"][0]["field"], "spec.expirationSeconds", "{st}");
        let message = st["message"].as_str().unwrap_or_default();
        assert!(message.contains(detail), "{message}");
        assert!(message.starts_with(GROUP_KIND), "{message}");
    }
    let (code, tr) = f.request(json!({"expirationSeconds": 1_i64 << 32})).await?;
    assert_eq!(code, 201, "2^32 itself is allowed: {tr}");
    Ok(())
}

#[tokio::test]
async fn requests_fail_as_kubernetes_fails_them() -> TestResult {
    let f = Fixture::new().await?;
    let ghost = "/api/v1/namespaces/team/serviceaccounts/ghost/token";
    let (code, st) = f.post(ghost, "application/json", "{}").await?;
    assert_eq!((code, st["message"].as_str()), (404, Some(r#"serviceaccounts "ghost" not found"#)), "{st}");

    let body = json!({"metadata": {"name": "other"}, "spec": {}}).to_string();
    let (code, st) = f.post(PATH, "application/json", &body).await?;
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name", "{st}");

    let body = json!({"metadata": {"uid": "not-the-sa"}, "spec": {}}).to_string();
    let (code, st) = f.post(PATH, "application/json", &body).await?;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")), "{st}");

    let body = json!({"apiVersion": "v1", "kind": "TokenRequest"}).to_string();
    let (code, st) = f.post(PATH, "application/json", &body).await?;
    assert_eq!(code, 400, "{st}");
    assert!(st["message"].as_str().unwrap_or_default().contains("API version in the data (v1)"), "{st}");

    let (code, st) = f
        .request(json!({"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "x"}}))
        .await?;
    assert_eq!(code, 400, "{st}");
    assert_eq!(st["message"], "cannot bind token to object of type apps/v1, Kind=Deployment");

    // Status sent along is ignored; YAML works too.
    let yaml = "apiVersion: authentication.k8s.io/v1\nkind: TokenRequest\nspec:\n  expirationSeconds: 900\nstatus:\n  token: forged\n";
    let (code, tr) = f.post(PATH, "application/yaml", yaml).await?;
    assert_eq!(code, 201, "{tr}");
    assert_ne!(tr["status"]["token"], "forged");
    assert_eq!(tr["spec"]["expirationSeconds"], 900);
    Ok(())
}

#[tokio::test]
async fn bound_objects_must_exist_and_match() -> TestResult {
    let f = Fixture::new().await?;
    let pod_ref = |uid: Option<&str>| json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid}});
    let (code, st) = f.request(pod_ref(None)).await?;
    assert_eq!((code, st["message"].as_str()), (404, Some(r#"pods "web" not found"#)), "{st}");

    let node: Node = f.create(None, json!({"metadata": {"name": "n1"}})).await?;
    let pod: Pod = f
        .create(
            Some("team"),
            json!({
                "metadata": {"name": "web"},
                "spec": {"serviceAccountName": "builder", "nodeName": "n1", "containers": [{"name": "app", "image": "nginx"}]},
            }),
        )
        .await?;
    let pod_uid = pod.metadata.uid.clone().ok_or("a pod uid")?;
    let (code, st) = f.request(pod_ref(Some("stale"))).await?;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")), "{st}");
    assert_eq!(st["details"]["kind"], "Pod", "{st}");
    assert!(
        st["message"].as_str().unwrap_or_default().contains("(stale) does not match the UID in record"),
        "{st}"
    );

    let (code, tr) = f.request(pod_ref(Some(&pod_uid))).await?;
    assert_eq!(code, 201, "{tr}");
    let c = claims(tr["status"]["token"].as_str().ok_or("a token")?)?;
    assert_eq!(c["kubernetes.io"]["pod"], json!({"name": "web", "uid": pod_uid}));
    assert_eq!(c["kubernetes.io"]["node"], json!({"name": "n1", "uid": node.metadata.uid}), "the pod's node");
    let user = f.verify(tr["status"]["token"].as_str().ok_or("a token")?)?;
    assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["web"]);

    // A pod of another ServiceAccount (none named: `default`) cannot carry this one's token.
    let _: Pod = f
        .create(Some("team"), json!({"metadata": {"name": "other"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}))
        .await?;
    let (code, st) = f.request(json!({"boundObjectRef": {"kind": "Pod", "name": "other"}})).await?;
    assert_eq!(code, 400, "{st}");
    assert!(st["message"].as_str().unwrap_or_default().contains("different serviceaccount name"), "{st}");

    // Secrets of the namespace and nodes.
    let secret: Secret = f.create(Some("team"), json!({"metadata": {"name": "s"}})).await?;
    let (code, tr) =
        f.request(json!({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}})).await?;
    assert_eq!(code, 201, "{tr}");
    let c = claims(tr["status"]["token"].as_str().ok_or("a token")?)?;
    assert_eq!(c["kubernetes.io"]["secret"], json!({"name": "s", "uid": secret.metadata.uid}));
    assert_eq!(
        tr["spec"]["boundObjectRef"],
        json!({"kind": "Secret", "apiVersion": "v1", "name": "s"}),
        "echoed"
    );
    let (code, tr) =
        f.request(json!({"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "n1"}})).await?;
    assert_eq!(code, 201, "{tr}");
    let c = claims(tr["status"]["token"].as_str().ok_or("a token")?)?;
    assert_eq!(c["kubernetes.io"]["node"]["uid"], json!(node.metadata.uid));
    let (code, st) = f.request(json!({"boundObjectRef": {"kind": "Node", "name": "n2"}})).await?;
    assert_eq!((code, st["message"].as_str()), (404, Some(r#"nodes "n2" not found"#)), "{st}");
    Ok(())
}

#[tokio::test]
async fn a_pod_on_a_missing_node_names_the_node_without_uid() -> TestResult {
    let f = Fixture::new().await?;
    let _: Pod = f
        .create(
            Some("team"),
            json!({"metadata": {"name": "web"}, "spec": {"serviceAccountName": "builder", "nodeName": "gone", "containers": [{"name": "app", "image": "nginx"}]}}),
        )
        .await?;
    let (code, tr) = f.request(json!({"boundObjectRef": {"kind": "Pod", "name": "web"}})).await?;
    assert_eq!(code, 201, "{tr}");
    let c = claims(tr["status"]["token"].as_str().ok_or("a token")?)?;
    assert_eq!(c["kubernetes.io"]["node"], json!({"name": "gone"}));
    Ok(())
}

#[tokio::test]
async fn without_a_signing_key_the_subresource_is_501_and_discovery_lists_it() -> TestResult {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|e| format!("generating a key: {e}"))?;
    let issuer = Arc::new(TokenIssuer::from_pkcs8(ISSUER, pkcs8.as_ref())?);
    let f = Fixture::with_config(ServerConfig::default(), issuer).await?;
    let (code, st) = f.post(PATH, "application/json", "{}").await?;
    assert_eq!((code, st["reason"].as_str()), (501, Some("NotImplemented")), "{st}");

    let req = http::Request::get("/api/v1").body(Body::empty())?;
    let resp = f.app.clone().oneshot(req).await?;
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
    let list: Value = serde_json::from_slice(&bytes)?;
    let resources = list["resources"].as_array().ok_or("resources")?;
    let entry =
        resources.iter().find(|r| r["name"] == "serviceaccounts/token").ok_or("serviceaccounts/token")?;
    assert_eq!(entry["kind"], "TokenRequest");
    assert_eq!(entry["group"], "authentication.k8s.io");
    assert_eq!(entry["version"], "v1");
    assert_eq!(entry["verbs"], json!(["create"]));
    assert_eq!(entry["namespaced"], true);
    Ok(())
}
