//! `flotilla up`: store, API server, scheduler, controllers and kubeconfig in one process.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::client::{Client, LocalClient};
use flotilla_core::controllers::manager::ControllerManager;
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use flotilla_core::scheduler::runtime::{Scheduler, SchedulerConfig, default_profiles};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::UpArgs;
use crate::node::{self, NodeOptions};

/// The admin kubeconfig's file name inside the data directory.
pub(crate) const KUBECONFIG_FILE: &str = "kubeconfig";

/// Runs the cluster until SIGTERM or Ctrl-C, then drains and stops.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = crate::data_dir(args.data_dir.clone())?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config = RaftStoreConfig::new(1, dir.join("store"), args.raft_listen);
    config.etcd_listen = Some(args.etcd_listen);
    let store = Arc::new(
        RaftStore::open(config).await.with_context(|| format!("starting the store in {}", dir.display()))?,
    );
    if !store.raft().is_initialized().await? {
        store.initialize(BTreeMap::from([(1, store.local_addr().to_string())])).await?;
    }
    let registry = Registry::new(store.clone(), KindRegistry::builtin());
    let types = registry.kinds().types().collect();
    let clock: flotilla_core::registry::Clock = Arc::new(k8s_openapi::jiff::Timestamp::now);
    let controllers = ControllerManager::new(Arc::new(LocalClient::new(registry.clone())), types, clock);
    let mut opts = SecureOptions::new(dir.join("pki"), args.api_listen);
    opts.server_hosts = args.tls_san.clone();
    opts.token_file = args.token_file.clone();
    opts.allow_anonymous = args.allow_anonymous;
    let controller_metrics = controllers.metrics();
    opts.server.extra_metrics.add(move |r| controller_metrics.register(r));
    let api = match SecureApi::start(registry.clone(), opts).await {
        Ok(api) => api,
        Err(e) => {
            store.shutdown().await;
            return Err(e).context("starting the API server");
        }
    };
    // The scheduler acts only while this member leads the store (always, with one member).
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    let scheduler = Scheduler::new(client, default_profiles(), SchedulerConfig::new(store.leadership()))?;
    let stop_components = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler.run(stop_components.clone()));
    let controllers = tokio::spawn(controllers.run(store.leadership(), stop_components.clone()));
    let node_tasks = TaskTracker::new();
    let options = NodeOptions {
        runtime: args.runtime,
        node_name: args.node_name.clone().unwrap_or_else(host_name),
        node_ip: args.node_ip,
        kubelet_listen: args.kubelet_listen,
        data_dir: &dir,
    };
    let node_client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    let runtime = node::start(node_client, api.pki(), options, &node_tasks, stop_components.clone()).await;
    node_tasks.close();
    let kubeconfig = dir.join(KUBECONFIG_FILE);
    api.admin_kubeconfig("flotilla").write(&kubeconfig)?;
    println!("flotilla: cluster up");
    println!("  API server:  {}", api.url());
    if let Some(etcd) = store.etcd_addr() {
        println!("  etcd API:    http://{etcd}");
    }
    println!("  data:        {}", dir.display());
    match &runtime {
        Ok(Some(name)) => println!("  node agent:  {name} runtime"),
        Ok(None) => println!("  node agent:  none (--runtime none)"),
        Err(e) => println!("  node agent:  not started: {e:#}"),
    }
    println!("export KUBECONFIG={}", kubeconfig.display());
    wait_for_signal().await?;
    tracing::info!("stopping");
    stop_components.cancel();
    let _ = scheduler.await;
    let _ = controllers.await;
    node_tasks.wait().await;
    api.stop().await;
    registry.shutdown().await;
    store.shutdown().await;
    println!("flotilla: stopped");
    Ok(())
}

/// The machine's host name, or `flotilla` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "flotilla".to_string())
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
