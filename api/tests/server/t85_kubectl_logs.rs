//! `kubectl logs` through the secured server to a node agent that accepts only clients with
//! a certificate from the cluster CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, RawQuery};
use axum::routing::get;
use flotilla_api::pki::ClientAuth;
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::harness::within;

const KUBECTL: &str = "/usr/bin/kubectl";

#[tokio::test]
async fn kubectl_logs_reach_the_agent_over_mutual_tls() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("kubectl logs over mutual TLS", async {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?);
        let api = SecureApi::start(registry.clone(), opts).await?;

        // The agent: the cluster's serving certificate, client certificates required.
        let agent = axum::Router::new().route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(
                |UrlPath((ns, pod, c)): UrlPath<(String, String, String)>, RawQuery(q): RawQuery| async move {
                    format!("{ns}/{pod}/{c} asked {}\n", q.unwrap_or_default())
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let tls = api.pki().server_config(ClientAuth::Required)?;
        let served = tokio::spawn(flotilla_api::tls::serve(listener, tls, agent, stop.clone()));

        let client: Arc<dyn flotilla_core::client::Client> = Arc::new(LocalClient::new(registry.clone()));
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}}))?;
        nodes.create(&node).await?;
        let mut node = nodes.get("n1").await?;
        node.status = Some(serde_json::from_value(json!({
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }))?);
        nodes.replace_status("n1", &node).await?;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox"}]}}))?;
        pods.create(&pod).await?;

        let kubeconfig = dir.path().join("admin");
        api.admin_kubeconfig("test").write(&kubeconfig)?;
        let out = tokio::process::Command::new(KUBECTL)
            .args(["logs", "web", "--tail=3"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .context("running kubectl")?;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl logs failed: {stderr}");
        assert_eq!(stdout.trim(), "default/web/app asked tailLines=3", "{stderr}");

        // A client that trusts the CA but has no client certificate gets nothing.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(api.pki().ca_der().clone())?;
        let config = rustls::ClientConfig::builder_with_provider(flotilla_api::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let refused = match tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
            Err(_) => true,
            Ok(mut tls) => {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let req =
                    "GET /containerLogs/default/web/app HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
                let _ = tls.write_all(req.as_bytes()).await;
                let mut answer = Vec::new();
                // TLS 1.3 reports the missing certificate after the client's handshake is done.
                tls.read_to_end(&mut answer).await.is_err() || answer.is_empty()
            }
        };
        assert!(refused, "the agent served a client without a certificate");

        stop.cancel();
        served.await??;
        api.stop().await;
        Ok(())
    })
    .await
}
