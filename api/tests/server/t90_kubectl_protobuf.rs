//! kubectl's typed clients send `application/vnd.kubernetes.protobuf` bodies: `kubectl create
//! namespace|deployment|configmap|rolebinding` and `kubectl certificate approve` against the
//! secured server, checking the objects they made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use serde_json::json;

use crate::harness::within;

const KUBECTL: &str = "/usr/bin/kubectl";
const PROTOBUF: &str = "Content-Type: application/vnd.kubernetes.protobuf";

/// Runs kubectl at `-v=8` (which logs request headers); returns stdout and the log.
async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Result<(String, String)> {
    let out = tokio::process::Command::new(KUBECTL)
        .args(args)
        .arg("-v=8")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await
        .context("running kubectl")?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('I')).collect();
    anyhow::ensure!(out.status.success(), "kubectl {} failed: {}", args.join(" "), errors.join("\n"));
    // Responses stay JSON: whatever offers protobuf must also take JSON.
    for accept in stderr.lines().filter_map(|l| l.split_once("Accept: ")).map(|(_, a)| a) {
        let takes_json = accept.contains("application/json") || accept.contains("*/*");
        anyhow::ensure!(takes_json, "kubectl {} insists on {accept}", args.join(" "));
    }
    Ok((stdout.into_owned(), stderr.into_owned()))
}

/// A PEM certificate request for `cn`.
fn certificate_request(cn: &str) -> Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    Ok(params.serialize_request(&key)?.pem()?)
}

#[tokio::test]
async fn kubectl_typed_clients_send_protobuf() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("kubectl with protobuf bodies", async {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?);
        let api = SecureApi::start(registry.clone(), opts).await?;
        let kubeconfig: PathBuf = dir.path().join("admin");
        api.admin_kubeconfig("test").write(&kubeconfig)?;
        let home = dir.path();
        let client: Arc<dyn flotilla_core::client::Client> = Arc::new(LocalClient::new(registry.clone()));

        let (out, log) = kubectl(&kubeconfig, home, &["create", "namespace", "team"]).await?;
        assert!(out.contains("namespace/team created"), "{out}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let ns = Api::<Namespace>::all(client.clone()).get("team").await?;
        assert!(ns.metadata.creation_timestamp.is_some(), "{ns:?}");

        let args = [
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=8080",
            "-n",
            "team",
        ];
        let (out, log) = kubectl(&kubeconfig, home, &args).await?;
        assert!(out.contains("deployment.apps/web created"), "{out}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let d = Api::<Deployment>::namespaced(client.clone(), "team").get("web").await?;
        let spec = d.spec.context("deployment spec")?;
        assert_eq!(spec.replicas, Some(2));
        let labels = spec.selector.match_labels.unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let pod = spec.template.spec.context("pod template spec")?;
        let c = pod.containers.first().context("a container")?;
        assert_eq!((c.name.as_str(), c.image.as_deref()), ("nginx", Some("nginx:1.27")));
        let port = c.ports.as_ref().and_then(|p| p.first()).map(|p| p.container_port);
        assert_eq!(port, Some(8080));

        let args =
            ["create", "configmap", "conf", "--from-literal=a=1", "--from-literal=b=two", "-n", "team"];
        let (out, log) = kubectl(&kubeconfig, home, &args).await?;
        assert!(out.contains("configmap/conf created"), "{out}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let cm = Api::<ConfigMap>::namespaced(client.clone(), "team").get("conf").await?;
        let data = cm.data.unwrap_or_default();
        assert_eq!(
            (data.get("a").map(String::as_str), data.get("b").map(String::as_str)),
            (Some("1"), Some("two"))
        );

        let args = ["create", "rolebinding", "view", "--clusterrole=view", "--user=jane", "-n", "team"];
        let (out, log) = kubectl(&kubeconfig, home, &args).await?;
        assert!(out.contains("rolebinding.rbac.authorization.k8s.io/view created"), "{out}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let rb = Api::<RoleBinding>::namespaced(client.clone(), "team").get("view").await?;
        assert_eq!((rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()), ("ClusterRole", "view"));
        let subject = rb.subjects.as_ref().and_then(|s| s.first()).context("a subject")?;
        assert_eq!((subject.kind.as_str(), subject.name.as_str()), ("User", "jane"));

        let csrs = Api::<CertificateSigningRequest>::all(client.clone());
        let csr: CertificateSigningRequest = serde_json::from_value(json!({
            "metadata": {"name": "jane-csr"},
            "spec": {
                "request": k8s_openapi::ByteString(certificate_request("jane")?.into_bytes()),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
            },
        }))?;
        csrs.create(&csr).await?;
        let (out, log) = kubectl(&kubeconfig, home, &["certificate", "approve", "jane-csr"]).await?;
        assert!(out.contains("approved"), "{out}");
        assert!(log.contains(PROTOBUF), "kubectl did not send protobuf:\n{log}");
        let csr = csrs.get("jane-csr").await?;
        let conditions = csr.status.and_then(|s| s.conditions).unwrap_or_default();
        let approved = conditions.iter().find(|c| c.type_ == "Approved").context("an Approved condition")?;
        assert_eq!(approved.status, "True");
        assert!(approved.last_update_time.is_some(), "{approved:?}");

        api.stop().await;
        Ok(())
    })
    .await
}
