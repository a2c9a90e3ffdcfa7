//! Certificates a running secured server renews without a restart: the admin certificate and
//! the admin kubeconfig it keeps.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use flotilla_api::client::RemoteClient;
use flotilla_api::kubeconfig::Kubeconfig;
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, ListOptions};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use k8s_openapi::api::core::v1::Namespace;

use crate::harness::within;

/// The client certificate (PEM) the kubeconfig at `path` holds.
fn kubeconfig_cert(path: &Path) -> Result<String> {
    let current = Kubeconfig::load(path)?.current()?;
    let identity = current.client_certificate.context("the admin kubeconfig has no client certificate")?;
    Ok(String::from_utf8(identity.cert_pem)?)
}

/// The namespaces listed with a client of the kubeconfig at `path`.
async fn namespaces(path: &Path) -> Result<Vec<String>> {
    let client: Arc<dyn Client> = Arc::new(RemoteClient::from_kubeconfig(path)?);
    let list = Api::<Namespace>::all(client).list(&ListOptions::default()).await?;
    Ok(list.items.into_iter().filter_map(|ns| ns.metadata.name).collect())
}

#[tokio::test]
async fn a_kept_admin_kubeconfig_carries_the_renewed_certificate_and_works() -> Result<()> {
    within("the admin kubeconfig after a renewal", async {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?);
        let api = SecureApi::start(registry, opts).await?;
        let path = dir.path().join("kubeconfig");
        api.keep_admin_kubeconfig("test", &path)?;
        let original = kubeconfig_cert(&path)?;
        assert!(namespaces(&path).await?.contains(&"kube-system".to_string()));

        // Eleven months and more later the admin certificate is due; the server keeps running.
        let later = SystemTime::now() + Duration::from_secs(340 * 24 * 60 * 60);
        assert!(api.pki().renew_admin_if_due(later)?);
        let renewed = kubeconfig_cert(&path)?;
        assert_ne!(renewed, original, "the kubeconfig was not rewritten");
        assert_eq!(renewed, api.pki().admin_cert_pem());
        assert_eq!(std::fs::read_to_string(dir.path().join("pki/admin.crt"))?, renewed);
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        // The running server accepts the renewed certificate as the admin's.
        assert!(namespaces(&path).await?.contains(&"kube-system".to_string()));
        api.stop().await;
        Ok(())
    })
    .await
}
