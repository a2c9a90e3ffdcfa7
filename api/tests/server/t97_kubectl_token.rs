//! ServiceAccount tokens through the real kubectl: `kubectl create token` (a protobuf
//! TokenRequest) returns a JWT that authenticates as the ServiceAccount, RBAC decides what it
//! may do, and `--bound-object-kind Pod` binds it to a pod; deleting the pod or the
//! ServiceAccount revokes the tokens that name it. Reloaded signing keys sign new tokens while
//! the old key's tokens last as long as `sa.pub` lists its public key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_api::pki::sa_keys::{
    SA_PUBLIC_KEYS, SA_SIGNING_KEY, generate_signing_key_pem, public_keys_pem, signing_public_key,
};
use flotilla_api::secure::{SERVICE_ACCOUNT_ISSUER, SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::{Value, json};

use crate::harness::{KUBECTL, kubectl, kubectl_ok as ok, within};

const PROTOBUF: &str = "Content-Type: application/vnd.kubernetes.protobuf";
const SA_USER: &str = "system:serviceaccount:team:builder";

/// Runs kubectl with `kubeconfig` and `--token <token>`.
async fn with_token(kubeconfig: &Path, token: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    kubectl(kubeconfig, &all).await
}

/// The claims of a JWT (not verified: the server does that).
fn claims(token: &str) -> Result<Value> {
    let parts: Vec<&str> = token.split('.').collect();
    anyhow::ensure!(parts.len() == 3, "not a JWT: {token:?}");
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?)
}

/// A secured server on the in-memory store, with kubeconfigs written in `dir`: `admin`
/// (the admin's certificate) and `bare` (the server and its CA only: a token comes on the
/// command line), and an in-process client.
struct Secured {
    api: SecureApi,
    admin: PathBuf,
    bare: PathBuf,
    client: Arc<dyn Client>,
}

async fn start(dir: &Path) -> Result<Secured> {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let opts = SecureOptions::new(dir.join("pki"), "127.0.0.1:0".parse()?);
    let api = SecureApi::start(registry.clone(), opts).await?;
    let admin = dir.join("admin");
    api.admin_kubeconfig("test").write(&admin)?;
    let bare = dir.join("bare");
    let mut k = api.admin_kubeconfig("test");
    for u in &mut k.users {
        u.user.client_certificate_data = None;
        u.user.client_key_data = None;
        u.user.token = None;
    }
    k.write(&bare)?;
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    Ok(Secured { api, admin, bare, client })
}

#[tokio::test]
async fn kubectl_create_token_gives_a_token_that_authenticates() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("kubectl create token", async {
        let dir = tempfile::tempdir()?;
        let Secured { api, admin, bare, client } = start(dir.path()).await?;

        ok(&admin, &["create", "namespace", "team"]).await?;
        ok(&admin, &["create", "serviceaccount", "builder", "-n", "team"]).await?;
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), "team").get("builder").await?;
        let sa_uid = sa.metadata.uid.context("the ServiceAccount's uid")?;

        let (success, token, log) =
            kubectl(&admin, &["create", "token", "builder", "-n", "team", "--duration=15m", "-v=8"]).await?;
        anyhow::ensure!(success, "kubectl create token failed: {log}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let c = claims(&token)?;
        assert_eq!(c["sub"], SA_USER, "{c}");
        assert_eq!(c["aud"], SERVICE_ACCOUNT_ISSUER, "the server's own audience: {c}");
        assert_eq!(c["exp"].as_i64(), c["iat"].as_i64().map(|i| i + 900), "15 minutes: {c}");
        assert_eq!(c["kubernetes.io"]["serviceaccount"], json!({"name": "builder", "uid": sa_uid}));

        let (success, out, err) = with_token(&bare, &token, &["auth", "whoami"]).await?;
        assert!(success, "{err}");
        assert!(out.contains(SA_USER), "{out}");
        let (success, _, err) = with_token(&bare, &token, &["get", "pods", "-n", "team"]).await?;
        assert!(!success, "the ServiceAccount listed pods without a role");
        assert!(
            err.contains(&format!(
                r#"pods is forbidden: User "{SA_USER}" cannot list resource "pods" in API group "" in the namespace "team""#
            )),
            "{err}"
        );

        let args = ["create", "rolebinding", "builder-view", "--clusterrole=view", "--serviceaccount=team:builder"];
        ok(&admin, &[&args[..], &["-n", "team"]].concat()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (success, _, err) = with_token(&bare, &token, &["get", "pods", "-n", "team"]).await?;
            if success {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the RoleBinding never took effect: {err}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `view` reads only: the token cannot mint more tokens.
        let (success, _, err) = with_token(&bare, &token, &["create", "token", "builder", "-n", "team"]).await?;
        assert!(!success && err.contains("cannot create resource \"serviceaccounts/token\""), "{err}");

        // A token bound to a pod names the pod.
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "app", "image": "nginx"}]},
        }))?;
        let pod = Api::<Pod>::namespaced(client.clone(), "team").create(&pod).await?;
        let pod_uid = pod.metadata.uid.context("the pod's uid")?;
        let args = ["create", "token", "builder", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "web"];
        let bound = ok(&admin, &args).await?;
        let c = claims(&bound)?;
        assert_eq!(c["kubernetes.io"]["pod"], json!({"name": "web", "uid": pod_uid}), "{c}");
        assert_eq!(c["exp"].as_i64(), c["iat"].as_i64().map(|i| i + 3600), "an hour by default: {c}");
        let (success, out, err) = with_token(&bare, &bound, &["auth", "whoami", "-o", "json"]).await?;
        assert!(success, "{err}");
        let review: Value = serde_json::from_str(&out)?;
        assert_eq!(review["status"]["userInfo"]["username"], SA_USER, "{review}");
        assert_eq!(review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"], json!(["web"]));

        // Refusals come back with Kubernetes' messages.
        let (success, _, err) = kubectl(&admin, &["create", "token", "builder", "-n", "team", "--duration=5m"]).await?;
        assert!(!success && err.contains("may not specify a duration less than 10 minutes"), "{err}");
        let (success, _, err) = kubectl(&admin, &["create", "token", "ghost", "-n", "team"]).await?;
        assert!(!success && err.contains(r#"serviceaccounts "ghost" not found"#), "{err}");
        let args = ["create", "token", "builder", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "gone"];
        let (success, _, err) = kubectl(&admin, &args).await?;
        assert!(!success && err.contains(r#"pods "gone" not found"#), "{err}");

        api.stop().await;
        Ok(())
    })
    .await
}

/// Runs `kubectl auth whoami` with `token` until it succeeds (`true`) or is refused
/// (`false`) as `want`, within 20 s (a watcher may take a moment to see a deletion).
async fn until_whoami(kubeconfig: &Path, token: &str, want: bool) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (success, out, err) = with_token(kubeconfig, token, &["auth", "whoami"]).await?;
        if success == want {
            return Ok(format!("{out}{err}"));
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "whoami never became {want}: {out}{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deleting_the_pod_or_the_service_account_revokes_their_tokens() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("token revocation", async {
        let dir = tempfile::tempdir()?;
        let Secured { api, admin, bare, client } = start(dir.path()).await?;

        ok(&admin, &["create", "namespace", "team"]).await?;
        ok(&admin, &["create", "serviceaccount", "builder", "-n", "team"]).await?;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "app", "image": "nginx"}]},
        }))?;
        Api::<Pod>::namespaced(client.clone(), "team").create(&pod).await?;
        let plain = ok(&admin, &["create", "token", "builder", "-n", "team"]).await?;
        let args = [
            "create",
            "token",
            "builder",
            "-n",
            "team",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web",
        ];
        let bound = ok(&admin, &args).await?;
        until_whoami(&bare, &bound, true).await?;

        // The pod goes: its token stops working, the ServiceAccount's own does not.
        ok(&admin, &["delete", "pod", "web", "-n", "team", "--wait=false"]).await?;
        // (A pod with a node would wait for its agent; this one has none and goes at once.)
        let refused = until_whoami(&bare, &bound, false).await?;
        assert!(refused.contains("Unauthorized"), "{refused}");
        until_whoami(&bare, &plain, true).await?;

        // The ServiceAccount goes and comes back under the same name: a new uid, so its old
        // tokens stay refused and new ones work.
        ok(&admin, &["delete", "serviceaccount", "builder", "-n", "team"]).await?;
        until_whoami(&bare, &plain, false).await?;
        ok(&admin, &["create", "serviceaccount", "builder", "-n", "team"]).await?;
        let fresh = ok(&admin, &["create", "token", "builder", "-n", "team"]).await?;
        let out = until_whoami(&bare, &fresh, true).await?;
        assert!(out.contains(SA_USER), "{out}");
        let (success, _, err) = with_token(&bare, &plain, &["auth", "whoami"]).await?;
        assert!(!success && err.contains("Unauthorized"), "the old token works again: {err}");

        api.stop().await;
        Ok(())
    })
    .await
}

/// A JWT's `kid` header.
fn kid(token: &str) -> Result<String> {
    let header = token.split('.').next().context("a header")?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
    header["kid"].as_str().map(String::from).context("no kid")
}

#[tokio::test]
async fn reloaded_keys_sign_new_tokens_and_old_ones_last_until_retired() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("service-account key reload", async {
        let dir = tempfile::tempdir()?;
        let Secured { api, admin, bare, .. } = start(dir.path()).await?;
        let pki = dir.path().join("pki");
        ok(&admin, &["create", "namespace", "team"]).await?;
        ok(&admin, &["create", "serviceaccount", "builder", "-n", "team"]).await?;
        let old = ok(&admin, &["create", "token", "builder", "-n", "team"]).await?;
        let old_kid = kid(&old)?;

        // A new signing key, the old one's public key still accepted.
        let old_public =
            signing_public_key(&pki.join(SA_SIGNING_KEY), &std::fs::read(pki.join(SA_SIGNING_KEY))?)?;
        let new_pem = generate_signing_key_pem()?;
        std::fs::write(pki.join(SA_PUBLIC_KEYS), public_keys_pem(&[old_public]))?;
        std::fs::write(pki.join(SA_SIGNING_KEY), &new_pem)?;
        let accepted = api.reload_service_account_keys()?;
        let new = ok(&admin, &["create", "token", "builder", "-n", "team"]).await?;
        let new_kid = kid(&new)?;
        assert_ne!(new_kid, old_kid);
        assert_eq!(accepted, vec![new_kid.clone(), old_kid.clone()]);
        for token in [&old, &new] {
            let (success, out, err) = with_token(&bare, token, &["auth", "whoami"]).await?;
            assert!(success && out.contains(SA_USER), "{out}{err}");
        }

        // A damaged sa.pub is refused, naming it, and the keys in use stay.
        std::fs::write(
            pki.join(SA_PUBLIC_KEYS),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )?;
        let err = api.reload_service_account_keys().expect_err("a damaged sa.pub");
        assert!(err.to_string().contains("sa.pub: public key 1 is not an ECDSA P-256 key"), "{err}");
        until_whoami(&bare, &old, true).await?;

        // Without sa.pub only the signing key is accepted: the old token is refused.
        std::fs::remove_file(pki.join(SA_PUBLIC_KEYS))?;
        assert_eq!(api.reload_service_account_keys()?, vec![new_kid]);
        let (success, _, err) = with_token(&bare, &old, &["auth", "whoami"]).await?;
        assert!(!success && err.contains("Unauthorized"), "the retired key's token: {err}");
        until_whoami(&bare, &new, true).await?;
        api.stop().await;
        Ok(())
    })
    .await
}
