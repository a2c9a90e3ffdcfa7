//! `flotilla`: the example cluster binary.
//!
//! `flotilla up` runs a one-machine cluster in one process: a one-member replicated store
//! (with its etcd-compatible endpoint), the scheduler, and the Kubernetes-dialect API server over HTTPS,
//! with a generated cluster CA and an admin kubeconfig that `kubectl` uses as is, the
//! controllers, and a node agent (Docker or plain processes). Restarting it on the same data
//! directory resumes the cluster; running containers are adopted.

mod agent;
mod agent_token;
mod config;
mod control;
#[cfg(test)]
mod docs_tests;
mod host;
mod member;
mod membership;
mod node;
mod proxy;
mod sa_key;
mod sa_key_cmd;
mod server;
mod snapshot;
mod status;
mod token;
mod up;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use config::WithConfig;
use host::LogFormat;

/// mimalloc rather than glibc's malloc: the object paths allocate heavily, and with it
/// scheduler_perf's Memory workload bound pods about 1.7 times as fast (docs/scheduler.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flotilla", version, about = "Flotilla example cluster")]
struct Cli {
    /// Log format (the filter is RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a one-machine cluster until SIGTERM or Ctrl-C.
    Up(Box<WithConfig<UpArgs>>),
    /// Run a control-plane member (store, API server, scheduler, controllers; no node agent)
    /// until SIGTERM or Ctrl-C; `--join ADDR --token T` joins an existing cluster.
    Server(Box<WithConfig<server::ServerArgs>>),
    /// Show the store's members, leader, raft term and applied index, and the nodes.
    Status(status::StatusArgs),
    /// List, add (as learners), remove and promote the store's members.
    Member {
        #[command(subcommand)]
        cmd: member::MemberCmd,
    },
    /// Save a consistent backup of the store, or restore one into a new cluster.
    Snapshot {
        #[command(subcommand)]
        cmd: snapshot::SnapshotCmd,
    },
    /// Join this machine to a cluster as a node (agent and service proxy), with a bootstrap
    /// token from `flotilla token create`, until SIGTERM or Ctrl-C.
    Agent(Box<WithConfig<agent::AgentArgs>>),
    /// Show and rotate the keys ServiceAccount tokens are signed with, across the cluster.
    SaKey {
        #[command(subcommand)]
        cmd: sa_key_cmd::SaKeyCmd,
    },
    /// Print cluster tokens.
    Token {
        #[command(subcommand)]
        cmd: token::TokenCmd,
    },
    /// Print the admin kubeconfig of a cluster started with `flotilla up`.
    Kubeconfig {
        /// The cluster's data directory.
        #[arg(long, env = "FLOTILLA_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Flags of `flotilla up`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct UpArgs {
    /// The control plane's flags.
    #[command(flatten)]
    pub(crate) control: control::ControlArgs,
    /// How the node agent runs pods: `auto` uses Docker when its daemon answers and plain
    /// processes otherwise; `none` runs no agent.
    #[arg(long, env = "FLOTILLA_RUNTIME", value_enum, default_value_t = node::RuntimeChoice::Auto)]
    pub(crate) runtime: node::RuntimeChoice,
    /// The node's name (default: the machine's host name).
    #[arg(long, env = "FLOTILLA_NODE_NAME")]
    pub(crate) node_name: Option<String>,
    /// The node's address, reported as its InternalIP (the process runtime's pod IP).
    #[arg(long, env = "FLOTILLA_NODE_IP", default_value = "127.0.0.1")]
    pub(crate) node_ip: std::net::IpAddr,
    /// Address of the node agent's HTTPS endpoint (container logs).
    #[arg(long, env = "FLOTILLA_KUBELET_LISTEN", default_value = "127.0.0.1:10250")]
    pub(crate) kubelet_listen: SocketAddr,
    /// The service proxy: `auto` runs it when a node agent runs and the process may add
    /// ClusterIPs as local addresses (root, or CAP_NET_ADMIN); `on` runs it regardless
    /// (without that privilege only NodePorts answer); `off` never.
    #[arg(long, env = "FLOTILLA_PROXY", value_enum, default_value_t = proxy::ProxyChoice::Auto)]
    pub(crate) proxy: proxy::ProxyChoice,
}

/// The data directory: the flag, or `<user data dir>/flotilla`.
pub(crate) fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(d) => Ok(d),
        None => dirs::data_dir()
            .map(|d| d.join("flotilla"))
            .ok_or_else(|| anyhow::anyhow!("no user data directory is known here; pass --data-dir")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = config::parse()?;
    host::init_logging(cli.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.cmd {
        Cmd::Up(args) => runtime.block_on(up::run(args.into_args())),
        Cmd::Server(args) => runtime.block_on(server::run(args.into_args())),
        Cmd::Status(args) => runtime.block_on(status::run(args)),
        Cmd::Member { cmd } => runtime.block_on(member::run(cmd)),
        Cmd::Snapshot { cmd } => runtime.block_on(snapshot::run(cmd)),
        Cmd::SaKey { cmd } => runtime.block_on(sa_key_cmd::run(cmd)),
        Cmd::Agent(args) => runtime.block_on(agent::run(args.into_args())),
        Cmd::Token { cmd: token::TokenCmd::Create(args) } => runtime.block_on(agent_token::create(*args)),
        Cmd::Token { cmd: token::TokenCmd::List(args) } => runtime.block_on(agent_token::list(args)),
        Cmd::Token { cmd } => token::run(cmd),
        Cmd::Kubeconfig { data_dir: dir } => {
            let path = data_dir(dir)?.join(up::KUBECONFIG_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("reading {}: {e} (has `flotilla up` run there?)", path.display())
            })?;
            print!("{text}");
            Ok(())
        }
    }
}
