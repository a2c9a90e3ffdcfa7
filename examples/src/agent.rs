//! `flotilla agent --server URL --token T --ca-hash H`: a node joining a cluster from another
//! machine, the way kubelet's TLS bootstrapping does it.
//!
//! The agent pins the cluster CA (the hash `flotilla token create` printed, checked against
//! what the server presents, or `--ca-file`), trades the bootstrap token for a node client
//! certificate through a CertificateSigningRequest the control plane approves and signs, asks
//! for its serving certificate with that credential, and keeps both in its data directory
//! (reused on restart; asked for again when missing or expiring). Then it runs the node agent
//! against the API server as `system:node:<name>`, its log endpoint over mutual TLS, and the
//! service proxy when it may; and rotates both certificates while it runs (each at a jittered
//! 70–90 % of its lifetime, as kubelet does), new connections presenting the new ones.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use flotilla_api::certificates::join::{JoinConfig, MIN_CERT_LIFETIME, join};
use flotilla_api::certificates::rotate_certificates;
use flotilla_api::client::RemoteClient;
use flotilla_core::client::Client;
use flotilla_node::agent::{AgentConfig, NodeAgent};
use flotilla_node::runtime::ContainerRuntime;
use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::hollow::HollowRuntime;
use flotilla_node::runtime::process::{ProcessConfig, ProcessRuntime};
use k8s_openapi::api::core::v1::NodeAddress;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::host::{StopSignals, host_name};
use crate::proxy::{self, ProxyChoice};

/// Which runtime the agent runs pods with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AgentRuntime {
    /// Docker if a daemon answers on its socket, processes otherwise.
    Auto,
    /// Docker through its Engine API.
    Docker,
    /// Each container's command as a host process.
    Process,
    /// Nothing runs; containers report running at once (for scale tests).
    Hollow,
}

/// Flags of `flotilla agent`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AgentArgs {
    /// The API server, `https://host:port`; or several servers of the cluster (repeated, or
    /// comma-separated), failed over between in order when the current one cannot be
    /// reached. The node joins through the first.
    #[arg(long, env = "FLOTILLA_SERVER", value_delimiter = ',', required = true)]
    pub(crate) server: Vec<String>,
    /// The bootstrap token from `flotilla token create` (not needed once the node has its
    /// certificates).
    #[arg(long, env = "FLOTILLA_TOKEN", default_value = "", hide_env_values = true)]
    pub(crate) token: String,
    /// The CA pin from `flotilla token create` (`sha256:<hex>`).
    #[arg(long, env = "FLOTILLA_CA_HASH")]
    pub(crate) ca_hash: Option<String>,
    /// The cluster CA certificate (PEM), instead of a pin.
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Where the agent keeps its credentials and pod state (default: the user's data
    /// directory, e.g. ~/.local/share/flotilla-agent).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// How pods run.
    #[arg(long, env = "FLOTILLA_RUNTIME", value_enum, default_value_t = AgentRuntime::Auto)]
    pub(crate) runtime: AgentRuntime,
    /// The node's name (default: the machine's host name).
    #[arg(long, env = "FLOTILLA_NODE_NAME")]
    pub(crate) node_name: Option<String>,
    /// The node's address: its InternalIP, in its serving certificate, where NodePorts listen.
    #[arg(long, env = "FLOTILLA_NODE_IP", default_value = "127.0.0.1")]
    pub(crate) node_ip: IpAddr,
    /// Address of the agent's HTTPS endpoint (container logs, for `kubectl logs`).
    #[arg(long, env = "FLOTILLA_KUBELET_LISTEN", default_value = "127.0.0.1:10250")]
    pub(crate) kubelet_listen: SocketAddr,
    /// The service proxy: `auto` runs it when the process may add ClusterIPs as local
    /// addresses (root, or CAP_NET_ADMIN); `on` regardless; `off` never.
    #[arg(long, env = "FLOTILLA_PROXY", value_enum, default_value_t = ProxyChoice::Auto)]
    pub(crate) proxy: ProxyChoice,
    /// How long to wait for each certificate to be approved and issued.
    #[arg(long, default_value = "5m", value_parser = crate::host::parse_ttl)]
    pub(crate) bootstrap_timeout: Duration,
    /// The lifetime to ask for the node's certificates (at least 10m; the signer caps it at a
    /// year, its default). They are renewed at 70–90 % of it while the agent runs.
    #[arg(long, env = "FLOTILLA_CERT_LIFETIME", value_parser = crate::host::parse_ttl)]
    pub(crate) cert_lifetime: Option<Duration>,
}

/// The data directory: the flag, or `<user data dir>/flotilla-agent`.
fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(d) => Ok(d),
        None => dirs::data_dir()
            .map(|d| d.join("flotilla-agent"))
            .ok_or_else(|| anyhow::anyhow!("no user data directory is known here; pass --data-dir")),
    }
}

async fn runtime(
    choice: AgentRuntime,
    node_name: &str,
    node_ip: IpAddr,
    dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn ContainerRuntime>> {
    let process = || -> anyhow::Result<Arc<dyn ContainerRuntime>> {
        let config = ProcessConfig {
            node_name: node_name.to_string(),
            root_dir: dir.join("node").join("process"),
            host_ip: node_ip,
        };
        Ok(Arc::new(ProcessRuntime::new(config).context("starting the process runtime")?))
    };
    match choice {
        AgentRuntime::Process => process(),
        AgentRuntime::Hollow => Ok(Arc::new(HollowRuntime::new(node_name))),
        AgentRuntime::Docker => {
            let docker = DockerRuntime::connect(DockerConfig::new(node_name.to_string())).await?;
            docker.ping().await.context("the Docker daemon does not answer")?;
            Ok(Arc::new(docker))
        }
        AgentRuntime::Auto => match DockerRuntime::connect(DockerConfig::new(node_name.to_string())).await {
            Ok(docker) if docker.ping().await.is_ok() => Ok(Arc::new(docker)),
            Ok(_) | Err(_) => process(),
        },
    }
}

/// Joins, then runs the node until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let signals = StopSignals::install()?;
    let dir = data_dir(args.data_dir.clone())?;
    flotilla_core::durable_fs::create_dir_all(&dir, 0o755)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut servers = Vec::with_capacity(args.server.len());
    for s in &args.server {
        let url = url::Url::parse(s).with_context(|| format!("--server {s:?} is not a URL"))?;
        anyhow::ensure!(url.scheme() == "https", "--server {s:?} must be an https:// URL");
        servers.push(url);
    }
    let (server, failover) = servers.split_first().context("--server is required")?;
    let server = server.clone();
    let node_name = args.node_name.clone().unwrap_or_else(host_name);
    if let Some(lifetime) = args.cert_lifetime {
        anyhow::ensure!(
            lifetime >= MIN_CERT_LIFETIME,
            "--cert-lifetime must be at least {}m (the API refuses shorter certificate requests)",
            MIN_CERT_LIFETIME.as_secs() / 60
        );
    }
    let ca_pem = match &args.ca_file {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading --ca-file {}", p.display()))?),
        None => None,
    };
    let config = JoinConfig {
        server: server.clone(),
        failover: failover.to_vec(),
        token: args.token.clone(),
        ca_hash: args.ca_hash.clone(),
        ca_pem,
        node_name: node_name.clone(),
        node_ips: vec![args.node_ip],
        dir: dir.join("pki"),
        timeout: args.bootstrap_timeout,
        cert_lifetime: args.cert_lifetime,
    };
    let creds = join(&config).await.context("joining the cluster")?;

    let mut client_config = creds.client_config(server.clone());
    client_config.failover = failover.to_vec();
    let client: Arc<dyn Client> =
        Arc::new(RemoteClient::new(client_config).context("building the API client")?);
    let runtime = runtime(args.runtime, &node_name, args.node_ip, &dir).await?;
    let runtime_name = runtime.name();
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    let listener = tokio::net::TcpListener::bind(args.kubelet_listen)
        .await
        .with_context(|| format!("listening for the node agent's endpoint on {}", args.kubelet_listen))?;
    let port = listener.local_addr()?.port();
    let tls = creds.serving_config()?;
    let mut agent_config = AgentConfig::new(node_name.clone(), dir.join("node"));
    agent_config.addresses = vec![
        NodeAddress { type_: "InternalIP".into(), address: args.node_ip.to_string() },
        NodeAddress { type_: "Hostname".into(), address: node_name.clone() },
    ];
    agent_config.daemon_port = Some(i32::from(port));
    // The proxy first: the agent's endpoint serves its metrics.
    let (proxy, proxy_metrics) =
        proxy::start(client.clone(), args.proxy, true, vec![args.node_ip], &tasks, stop.clone()).await;
    let agent = NodeAgent::new(client, runtime.clone(), agent_config);
    let router = crate::node::agent_router(runtime, &agent, proxy_metrics.as_ref());
    let s = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = flotilla_api::tls::serve(listener, tls, router, s).await {
            tracing::error!(error = %e, "node agent endpoint stopped");
        }
    });

    // New certificates before the current ones expire; the client and the endpoint present
    // them from their next connection and handshake on.
    tasks.spawn(rotate_certificates(config.clone(), creds.clone(), stop.clone()));

    let s = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = agent.run(s).await {
            tracing::error!(error = %e, "node agent stopped");
        }
    });
    tasks.close();

    println!("flotilla: node {node_name} joined {}", server.as_str().trim_end_matches('/'));
    println!(
        "  credentials: {} ({})",
        config.dir.display(),
        if creds.issued { "issued now" } else { "reused" }
    );
    println!("  runtime:     {runtime_name}");
    println!("  endpoint:    https://{}:{port}", args.node_ip);
    println!("  proxy:       {proxy}");
    signals.wait().await;
    tracing::info!("stopping");
    stop.cancel();
    tasks.wait().await;
    println!("flotilla: agent stopped");
    Ok(())
}
