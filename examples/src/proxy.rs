//! The service proxy of `flotilla up` (`--proxy auto|on|off`): ClusterIPs made local
//! addresses of the machine (a dummy `flotilla0`, or `lo` where the kernel has no dummy
//! interfaces), which needs root or `CAP_NET_ADMIN`, and NodePorts on the node's address.
//!
//! [`decide`] is the choice, without I/O; [`start`] runs the proxy on the node's task tracker,
//! so that shutdown waits for it to close its listeners and release the addresses it added.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use clap::ValueEnum;
use flotilla_core::client::Client;
use flotilla_node::proxy::address::Device;
use flotilla_node::proxy::{InterfaceAddresses, ProxyConfig, ProxyMetrics, ServiceProxy};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Whether `flotilla up` runs the service proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProxyChoice {
    /// On when a node agent runs and the process may add addresses (root, or
    /// `CAP_NET_ADMIN`); off otherwise, saying why.
    Auto,
    /// Always; without the privilege ClusterIPs fail (logged) and NodePorts still answer.
    On,
    /// Never.
    Off,
}

/// The bit of `CAP_NET_ADMIN` in a capability set.
const CAP_NET_ADMIN: u32 = 12;

/// Why `--proxy auto` leaves the proxy off for an unprivileged process.
pub(crate) const NEEDS_PRIVILEGE: &str = "ClusterIPs must become local addresses of this machine, which needs \
     root (CAP_NET_ADMIN); run as root, or pass --proxy on to serve NodePorts only";

/// Why `--proxy auto` leaves the proxy off without a node agent.
pub(crate) const NO_AGENT: &str =
    "no node agent runs pods here (--runtime none); --proxy on starts it anyway";

/// Whether the `CapEff` line of `/proc/self/status` text holds `CAP_NET_ADMIN`; `false` when
/// the line is missing or unreadable.
pub(crate) fn has_net_admin(proc_status: &str) -> bool {
    proc_status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Whether this process may add addresses to interfaces.
fn may_add_addresses() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| has_net_admin(&s))
}

/// What [`decide`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the proxy.
    Run,
    /// Leave it off, for this reason.
    Off(&'static str),
}

/// Whether to run the proxy: `choice`, given whether a node agent runs (`agent`) and
/// whether the process may add addresses (`privileged`).
pub(crate) fn decide(choice: ProxyChoice, agent: bool, privileged: bool) -> Decision {
    match choice {
        ProxyChoice::On => Decision::Run,
        ProxyChoice::Off => Decision::Off("--proxy off"),
        ProxyChoice::Auto if !agent => Decision::Off(NO_AGENT),
        ProxyChoice::Auto if !privileged => Decision::Off(NEEDS_PRIVILEGE),
        ProxyChoice::Auto => Decision::Run,
    }
}

/// The proxy's state, for the startup summary.
#[derive(Debug)]
pub(crate) enum ProxyState {
    /// Running: where ClusterIPs go (or why they cannot), and the NodePorts' addresses.
    On { cluster_ips: String, node_addresses: Vec<IpAddr> },
    /// Not running, and why.
    Off(&'static str),
}

impl fmt::Display for ProxyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyState::On { cluster_ips, node_addresses } => {
                let nodes: Vec<String> = node_addresses.iter().map(ToString::to_string).collect();
                write!(f, "on (ClusterIPs {cluster_ips}, NodePorts on {})", nodes.join(", "))
            }
            ProxyState::Off(why) => write!(f, "off: {why}"),
        }
    }
}

/// Starts the service proxy on `tasks` if [`decide`] says so (the privilege read from
/// `/proc/self/status`); it stops when `shutdown` is cancelled, releasing its addresses.
/// Returns its state and, when it runs, its metrics (for the node agent's `/metrics`).
pub(crate) async fn start(
    client: Arc<dyn Client>,
    choice: ProxyChoice,
    agent: bool,
    node_addresses: Vec<IpAddr>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> (ProxyState, Option<ProxyMetrics>) {
    if let Decision::Off(why) = decide(choice, agent, may_add_addresses()) {
        if why == NEEDS_PRIVILEGE {
            tracing::warn!("service proxy off: {why}");
        }
        return (ProxyState::Off(why), None);
    }
    let addresses = Arc::new(InterfaceAddresses::new());
    // Found (and the dummy interface created) now, so that the summary says where, or why not.
    let cluster_ips = match addresses.device().await {
        Ok(Device::Dummy(name)) => format!("on {name}"),
        Ok(Device::Loopback) => "on lo".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "ClusterIPs cannot be made local; NodePorts only");
            format!("unavailable: {e}")
        }
    };
    let proxy = ServiceProxy::new(client, ProxyConfig::new(node_addresses.clone(), addresses));
    let metrics = proxy.metrics();
    tasks.spawn(proxy.run(shutdown));
    (ProxyState::On { cluster_ips, node_addresses }, Some(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_admin_is_read_from_the_effective_set() {
        let root = "Name:\tflotilla\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(has_net_admin(root));
        // A container's default set: no CAP_NET_ADMIN (bit 12) although the user is root.
        assert!(!has_net_admin("CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"));
        assert!(!has_net_admin("CapEff:\t0000000000000000\n"));
        assert!(!has_net_admin("CapEff:\tnot-hex\n"));
        assert!(!has_net_admin("Name:\tno capabilities line\n"));
    }

    #[test]
    fn auto_runs_only_with_an_agent_and_the_privilege() {
        assert_eq!(decide(ProxyChoice::Auto, true, true), Decision::Run);
        assert_eq!(decide(ProxyChoice::Auto, true, false), Decision::Off(NEEDS_PRIVILEGE));
        assert_eq!(decide(ProxyChoice::Auto, false, true), Decision::Off(NO_AGENT));
        assert_eq!(decide(ProxyChoice::On, false, false), Decision::Run);
        assert_eq!(decide(ProxyChoice::Off, true, true), Decision::Off("--proxy off"));
    }

    #[test]
    fn the_summary_names_addresses_or_the_reason() {
        let on = ProxyState::On { cluster_ips: "on lo".into(), node_addresses: vec![[127, 0, 0, 1].into()] };
        assert_eq!(on.to_string(), "on (ClusterIPs on lo, NodePorts on 127.0.0.1)");
        assert!(ProxyState::Off(NEEDS_PRIVILEGE).to_string().starts_with("off: ClusterIPs must become"));
    }
}
