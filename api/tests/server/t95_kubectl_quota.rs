//! ResourceQuota through the real kubectl: `kubectl create quota` (a protobuf body), the
//! `get` table and `describe`, pods refused with Kubernetes' messages, and the quota
//! controller giving back what a deleted pod held.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::controller::Informers;
use flotilla_core::controllers::resourcequota::{QuotaConfig, resource_quota_controller};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::{Clock, Registry};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use tokio_util::sync::CancellationToken;

use crate::harness::{KUBECTL, kubectl, kubectl_ok as ok, within};

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await? {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not reached in 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  containers:
  - name: app
    image: busybox
    resources:
      requests: {cpu: CPU}
      limits: {memory: 256Mi}
";

#[tokio::test]
async fn kubectl_creates_and_reads_quotas_and_sees_refusals() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("kubectl and ResourceQuota", async {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
        Api::<Namespace>::all(client.clone()).create(&ns).await?;
        let api = SecureApi::start(
            registry.clone(),
            SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?),
        )
        .await?;
        let kubeconfig = dir.path().join("admin");
        api.admin_kubeconfig("test").write(&kubeconfig)?;
        // The quota controller alone, on its own informers.
        let shutdown = CancellationToken::new();
        let informers = Informers::new(client.clone());
        let clock: Clock = Arc::new(k8s_openapi::jiff::Timestamp::now);
        let types = registry.kinds().types().collect();
        let controller = resource_quota_controller(&informers, clock, types, QuotaConfig::default());
        informers.start(shutdown.clone());
        let (_leader, is_leader) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(controller.run(is_leader, shutdown.clone()));
        let k = kubeconfig.as_path();

        let out =
            ok(k, &["create", "quota", "compute", "--hard=pods=2,requests.cpu=1,limits.memory=1Gi"]).await?;
        assert_eq!(out.trim(), "resourcequota/compute created");
        let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
        eventually("the controller counts the new quota", || async {
            Ok(quotas.get("compute").await?.status.and_then(|s| s.used).is_some_and(|u| u.len() == 3))
        })
        .await?;
        let table = ok(k, &["get", "quota"]).await?;
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["NAME", "AGE", "REQUEST", "LIMIT"], "{table}");
        assert!(lines[1].starts_with("compute"), "{table}");
        assert!(lines[1].contains("pods: 0/2, requests.cpu: 0/1"), "{table}");
        assert!(lines[1].ends_with("limits.memory: 0/1Gi"), "{table}");

        let (success, _, err) = kubectl(k, &["run", "bare", "--image=busybox", "--restart=Never"]).await?;
        assert!(!success);
        assert_eq!(
            err.trim(),
            "Error from server (Forbidden): pods \"bare\" is forbidden: failed quota: compute: must specify \
             limits.memory for: bare; requests.cpu for: bare"
        );
        let manifest = |name: &str, cpu: &str| -> Result<std::path::PathBuf> {
            let path = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&path, POD.replace("NAME", name).replace("CPU", cpu))?;
            Ok(path)
        };
        let a = manifest("a", "600m")?;
        assert_eq!(ok(k, &["create", "-f", a.to_str().context("path")?]).await?.trim(), "pod/a created");
        let b = manifest("b", "500m")?;
        let (success, _, err) = kubectl(k, &["create", "-f", b.to_str().context("path")?]).await?;
        assert!(!success);
        assert!(
            err.contains(
                "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: \
                 requests.cpu=600m, limited: requests.cpu=1"
            ),
            "{err}"
        );
        let described = ok(k, &["describe", "quota", "compute"]).await?;
        let rows: Vec<Vec<&str>> = described.lines().map(|l| l.split_whitespace().collect()).collect();
        for want in [
            vec!["Resource", "Used", "Hard"],
            vec!["limits.memory", "256Mi", "1Gi"],
            vec!["pods", "1", "2"],
            vec!["requests.cpu", "600m", "1"],
        ] {
            assert!(rows.contains(&want), "no row {want:?} in:\n{described}");
        }

        // The pod never ran on a node, so it goes at once; the controller gives its share back.
        ok(k, &["delete", "pod", "a"]).await?;
        eventually("the deleted pod's usage is released", || async {
            Ok(ok(k, &["get", "quota", "compute", "--no-headers"])
                .await?
                .contains("pods: 0/2, requests.cpu: 0/1"))
        })
        .await?;
        assert_eq!(ok(k, &["create", "-f", b.to_str().context("path")?]).await?.trim(), "pod/b created");
        shutdown.cancel();
        task.await?;
        Ok(())
    })
    .await
}
