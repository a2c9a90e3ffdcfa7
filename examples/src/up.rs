//! `flotilla up`: store, API server, scheduler, controllers, node agent, service proxy and
//! kubeconfig in one process.

use std::sync::Arc;

use flotilla_core::client::{Client, LocalClient};
use tokio_util::task::TaskTracker;

use crate::UpArgs;
use crate::control::{ControlPlane, StopSignals};
use crate::node::{self, NodeOptions, RuntimeChoice};
use crate::proxy;

/// The admin kubeconfig's file name inside the data directory.
pub(crate) use crate::control::KUBECONFIG_FILE;

/// Runs the cluster until SIGTERM or Ctrl-C, then drains and stops.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let signals = StopSignals::install()?;
    let cp = ControlPlane::start(args.control.clone().options(None, None)?).await?;
    let (dir, registry, api) = (cp.dir().to_path_buf(), cp.registry().clone(), cp.api());
    let stop_components = cp.stop_token();
    let node_tasks = TaskTracker::new();
    // The proxy first: the agent's endpoint serves its metrics.
    let proxy_client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    let agent = args.runtime != RuntimeChoice::None;
    let nodes = vec![args.node_ip];
    let (proxy, proxy_metrics) =
        proxy::start(proxy_client, args.proxy, agent, nodes, &node_tasks, stop_components.clone()).await;
    let options = NodeOptions {
        runtime: args.runtime,
        node_name: args.node_name.clone().unwrap_or_else(crate::control::host_name),
        node_ip: args.node_ip,
        kubelet_listen: args.kubelet_listen,
        data_dir: &dir,
        proxy_metrics,
    };
    let node_client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    let runtime = node::start(node_client, api.pki(), options, &node_tasks, stop_components.clone()).await;
    node_tasks.close();
    let kubeconfig = cp.kubeconfig_path();
    cp.print_summary("cluster up");
    match &runtime {
        Ok(Some(name)) => println!("  node agent:  {name} runtime"),
        Ok(None) => println!("  node agent:  none (--runtime none)"),
        Err(e) => println!("  node agent:  not started: {e:#}"),
    }
    println!("  proxy:       {proxy}");
    println!("export KUBECONFIG={}", kubeconfig.display());
    signals.wait().await;
    tracing::info!("stopping");
    stop_components.cancel();
    node_tasks.wait().await;
    cp.shutdown().await;
    println!("flotilla: stopped");
    Ok(())
}
