//! `flotilla server`: a control-plane member (store, API server, scheduler, controllers; no
//! node agent) that creates a cluster, resumes one from its data directory, or joins one with
//! `--join ADDR --token T`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::control::{self, ControlOptions, ControlPlane};

/// Flags of `flotilla server`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServerArgs {
    /// Where the member keeps its store, PKI, token and kubeconfig (default: the user's data
    /// directory, e.g. ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address of the API server (HTTPS).
    #[arg(long, env = "FLOTILLA_API_LISTEN", default_value = "127.0.0.1:6443")]
    pub(crate) api_listen: SocketAddr,
    /// Address of the etcd-compatible gRPC endpoint of the store.
    #[arg(long, env = "FLOTILLA_ETCD_LISTEN", default_value = "127.0.0.1:2379")]
    pub(crate) etcd_listen: SocketAddr,
    /// Address of the store's member transport (Raft).
    #[arg(long, env = "FLOTILLA_RAFT_LISTEN", default_value = "127.0.0.1:2380")]
    pub(crate) raft_listen: SocketAddr,
    /// The member-transport address other servers dial (default: --raft-listen; required when
    /// that is a wildcard address).
    #[arg(long, env = "FLOTILLA_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// Join the cluster of the server whose member transport (--advertise / --raft-listen) is
    /// at this address. Ignored once this data directory's member has joined.
    #[arg(long, env = "FLOTILLA_JOIN", requires = "token")]
    pub(crate) join: Option<String>,
    /// The cluster's server token (`flotilla token server` on a member prints it).
    #[arg(long, env = "FLOTILLA_TOKEN", requires = "join", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Extra host names or addresses the serving certificate covers (repeatable).
    #[arg(long = "tls-san")]
    pub(crate) tls_san: Vec<String>,
    /// A token file (`token,user,uid,"group1,group2"` per line) for bearer-token users.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve requests without credentials as `system:anonymous` (RBAC still applies).
    #[arg(long)]
    pub(crate) allow_anonymous: bool,
}

/// Runs the member until SIGTERM or Ctrl-C, then drains and stops.
pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let signals = control::StopSignals::install()?;
    let options = ControlOptions {
        data_dir: crate::data_dir(args.data_dir)?,
        api_listen: args.api_listen,
        etcd_listen: args.etcd_listen,
        raft_listen: args.raft_listen,
        advertise: args.advertise,
        tls_san: args.tls_san,
        token_file: args.token_file,
        allow_anonymous: args.allow_anonymous,
        join: args.join.zip(args.token),
    };
    let cp = ControlPlane::start(options).await?;
    cp.print_summary("server up");
    println!("  join token:  flotilla token server --data-dir {}", cp.dir().display());
    println!("export KUBECONFIG={}", cp.kubeconfig_path().display());
    signals.wait().await;
    tracing::info!("stopping");
    cp.shutdown().await;
    println!("flotilla: stopped");
    Ok(())
}
