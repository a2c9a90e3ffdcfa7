//! `flotilla server`: a control-plane member (store, API server, scheduler, controllers; no
//! node agent) that creates a cluster, resumes one from its data directory, or joins one with
//! `--join ADDR --token T`.

use crate::control::{self, ControlPlane};

/// Flags of `flotilla server`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ServerArgs {
    /// The control plane's flags.
    #[command(flatten)]
    pub(crate) control: control::ControlArgs,
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
}

/// Runs the member until SIGTERM or Ctrl-C, then drains and stops.
pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let signals = control::StopSignals::install()?;
    let options = args.control.options(args.advertise, args.join.zip(args.token))?;
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
