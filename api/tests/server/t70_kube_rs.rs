//! A second real client: kube-rs (the Rust Kubernetes client) creates, lists and watches
//! over HTTPS with the admin kubeconfig, as it would against kube-apiserver.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

use crate::harness::within;

fn config_map(name: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"k": "v"},
    }))?)
}

#[tokio::test]
async fn kube_rs_creates_lists_and_watches() -> Result<()> {
    within("kube-rs", async {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let api =
            SecureApi::start(registry, SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?))
                .await?;
        let path = dir.path().join("kubeconfig");
        api.admin_kubeconfig("kube-rs").write(&path)?;
        let kubeconfig = Kubeconfig::read_from(&path)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");

        cms.create(&PostParams::default(), &config_map("first")?).await?;
        let listed = cms.list(&ListParams::default().labels("app=kube-rs")).await?;
        let names: Vec<_> = listed.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
        assert_eq!(names, ["first"]);

        let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
        let mut seen_initial = false;
        while let Some(ev) =
            tokio::time::timeout(Duration::from_secs(20), events.next()).await.context("watch stalled")?
        {
            match ev? {
                watcher::Event::InitApply(c) if c.metadata.name.as_deref() == Some("first") => {
                    seen_initial = true
                }
                watcher::Event::InitDone => {
                    assert!(seen_initial, "the initial list lacked the existing object");
                    cms.create(&PostParams::default(), &config_map("second")?).await?;
                }
                watcher::Event::Apply(c) if c.metadata.name.as_deref() == Some("second") => break,
                _ => {}
            }
        }
        cms.delete("first", &Default::default()).await?;
        assert!(cms.get_opt("first").await?.is_none());
        api.stop().await;
        Ok(())
    })
    .await
}
