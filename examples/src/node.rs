//! The node half of `flotilla up`: a node agent on Docker (when a daemon answers) or on plain
//! processes, with its log endpoint served over mutual TLS with the cluster's certificates.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use flotilla_api::pki::{ClientAuth, ClusterPki};
use flotilla_core::client::Client;
use flotilla_node::agent::{AgentConfig, NodeAgent};
use flotilla_node::proxy::ProxyMetrics;
use flotilla_node::runtime::ContainerRuntime;
use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::process::{ProcessConfig, ProcessRuntime};
use k8s_openapi::api::core::v1::NodeAddress;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which runtime the node agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuntimeChoice {
    /// Docker if a daemon answers on its socket, processes otherwise.
    Auto,
    /// Docker through its Engine API.
    Docker,
    /// Each container's command as a host process.
    Process,
    /// No node agent: pods are scheduled but never run.
    None,
}

/// How the node of `flotilla up` runs.
pub(crate) struct NodeOptions<'a> {
    pub(crate) runtime: RuntimeChoice,
    pub(crate) node_name: String,
    pub(crate) node_ip: IpAddr,
    pub(crate) kubelet_listen: SocketAddr,
    pub(crate) data_dir: &'a Path,
    /// The service proxy's metrics, when it runs: served at the agent's `/metrics` too.
    pub(crate) proxy_metrics: Option<ProxyMetrics>,
}

/// The runtime `choice` names.
async fn runtime(choice: RuntimeChoice, o: &NodeOptions<'_>) -> anyhow::Result<Arc<dyn ContainerRuntime>> {
    let process = || -> anyhow::Result<Arc<dyn ContainerRuntime>> {
        let root = o.data_dir.join("node").join("process");
        let config = ProcessConfig { node_name: o.node_name.clone(), root_dir: root, host_ip: o.node_ip };
        Ok(Arc::new(ProcessRuntime::new(config).context("starting the process runtime")?))
    };
    match choice {
        RuntimeChoice::Process => process(),
        RuntimeChoice::Docker => {
            let docker = DockerRuntime::connect(DockerConfig::new(o.node_name.clone())).await?;
            docker.ping().await.context("the Docker daemon does not answer")?;
            Ok(Arc::new(docker))
        }
        RuntimeChoice::Auto | RuntimeChoice::None => {
            match DockerRuntime::connect(DockerConfig::new(o.node_name.clone())).await {
                Ok(docker) if docker.ping().await.is_ok() => Ok(Arc::new(docker)),
                Ok(_) | Err(_) => process(),
            }
        }
    }
}

/// Starts the node agent and its log endpoint on `tasks`; returns the runtime's name, or
/// `None` when the options ask for no agent.
pub(crate) async fn start(
    client: Arc<dyn Client>,
    pki: &ClusterPki,
    o: NodeOptions<'_>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<&'static str>> {
    if o.runtime == RuntimeChoice::None {
        return Ok(None);
    }
    let runtime = runtime(o.runtime, &o).await?;
    let name = runtime.name();
    let listener = tokio::net::TcpListener::bind(o.kubelet_listen)
        .await
        .with_context(|| format!("listening for the node agent's endpoint on {}", o.kubelet_listen))?;
    let port = listener.local_addr()?.port();
    let tls = pki.server_config(ClientAuth::Required)?;
    let mut config = AgentConfig::new(o.node_name.clone(), o.data_dir.join("node"));
    config.addresses = vec![
        NodeAddress { type_: "InternalIP".into(), address: o.node_ip.to_string() },
        NodeAddress { type_: "Hostname".into(), address: o.node_name.clone() },
    ];
    config.daemon_port = Some(i32::from(port));
    let agent = NodeAgent::new(client, runtime.clone(), config);
    let router = agent_router(runtime, &agent, o.proxy_metrics.as_ref());
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = flotilla_api::tls::serve(listener, tls, router, stop).await {
            tracing::error!(error = %e, "node agent endpoint stopped");
        }
    });
    tasks.spawn(async move {
        if let Err(e) = agent.run(shutdown).await {
            tracing::error!(error = %e, "node agent stopped");
        }
    });
    Ok(Some(name))
}

/// The agent's endpoint: container logs (`/containerLogs/...`), `/healthz`, and at `/metrics`
/// the agent's metrics with the service proxy's (`proxy`), when it runs.
pub(crate) fn agent_router(
    runtime: Arc<dyn ContainerRuntime>,
    agent: &NodeAgent,
    proxy: Option<&ProxyMetrics>,
) -> axum::Router {
    let mut registry = prometheus_client::registry::Registry::default();
    agent.metrics().register(&mut registry);
    if let Some(proxy) = proxy {
        proxy.register(&mut registry);
    }
    flotilla_node::server::router(runtime).merge(flotilla_node::metrics::router(Arc::new(registry)))
}
