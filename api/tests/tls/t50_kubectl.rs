//! The real kubectl against `tls::serve`: it must trust the serving certificate, present the
//! admin client certificate from the written kubeconfig, and read the answer.

use std::path::Path;
use std::process::Output;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use flotilla_api::kubeconfig::{Kubeconfig, User};
use flotilla_api::pki::{ADMIN_COMMON_NAME, ADMIN_GROUP, ClientAuth};
use flotilla_api::tls::{PeerCertificate, ServeOptions};
use http::{StatusCode, Version};

use crate::support::{TestPki, TestServer, within};

const KUBECTL: &str = "/usr/bin/kubectl";

/// `/hello` greets the admin and refuses everyone else with a Kubernetes `Status`.
fn hello_router() -> Router {
    Router::new().route(
        "/hello",
        get(|certificate: Option<Extension<PeerCertificate>>, version: Version| async move {
            match certificate {
                Some(Extension(c))
                    if c.common_name == ADMIN_COMMON_NAME && c.organizations.iter().any(|o| o == ADMIN_GROUP) =>
                {
                    (StatusCode::OK, format!("hello {} over {version:?}", c.common_name))
                }
                _ => (
                    StatusCode::UNAUTHORIZED,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
                        .to_string(),
                ),
            }
        }),
    )
}

async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        // kubectl caches discovery under $HOME; keep it out of the real one.
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_accepts_the_pki_and_presents_the_admin_certificate() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("kubectl get --raw /hello (kubectl or the server hung)", 60, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, hello_router(), ServeOptions::default()).await?;
        let dir = tempfile::tempdir()?;
        let url = format!("https://127.0.0.1:{}", server.addr.port());

        let admin = dir.path().join("admin.kubeconfig");
        Kubeconfig::for_admin("flotilla", &url, &t.pki).write(&admin)?;
        let out = kubectl(&admin, dir.path(), &["get", "--raw", "/hello"]).await?;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl failed: {}\nstdout: {stdout}\nstderr: {stderr}", out.status);
        assert_eq!(stdout.trim_end(), "hello flotilla-admin over HTTP/2.0", "stderr: {stderr}");

        // The same kubeconfig with a token instead of the client certificate is refused: the
        // greeting above really came from the certificate. (A user with no credentials at all
        // would make kubectl prompt for a basic-auth password on stdin.)
        let mut token = Kubeconfig::for_admin("flotilla", &url, &t.pki);
        token.users[0].user = User { token: Some("not-a-credential".into()), ..User::default() };
        let token_path = dir.path().join("token.kubeconfig");
        token.write(&token_path)?;
        let out = kubectl(&token_path, dir.path(), &["get", "--raw", "/hello"]).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kubectl without the certificate succeeded");
        assert!(stderr.contains("You must be logged in to the server"), "stderr: {stderr}");

        server.stop().await
    })
    .await
}
