//! [`AgentConfig`]: what a node agent is told, with Kubernetes' kubelet defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::registry::Clock;
use k8s_openapi::api::core::v1::{NodeAddress, Taint};
use k8s_openapi::jiff::Timestamp;

/// Kubelet's `--max-pods` default.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// How long a node Lease is valid (kubelet's `nodeLeaseDurationSeconds`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(40);
/// How often the Lease is renewed (a quarter of its duration, as kubelet does).
pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often machine readings are taken and the node status compared with the last one
/// posted (kubelet's `nodeStatusUpdateFrequency`).
pub const DEFAULT_STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the node status is posted even when nothing changed (kubelet's
/// `nodeStatusReportFrequency`).
pub const DEFAULT_STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// How often the runtime is listed to notice containers that exited (kubelet's PLEG relist
/// period).
pub const DEFAULT_RELIST_INTERVAL: Duration = Duration::from_secs(1);

/// What a node agent is told. Build it with [`AgentConfig::new`] and override fields.
#[derive(Clone)]
pub struct AgentConfig {
    /// The Node's name (also its `kubernetes.io/hostname` label and the Lease's name).
    pub node_name: String,
    /// Where the agent keeps per-pod data (volumes); its file system is the node's
    /// `ephemeral-storage`.
    pub root_dir: PathBuf,
    /// The node's addresses (`InternalIP`, `ExternalIP`, ...). A `Hostname` address with
    /// the node name is added when none is given. The first `InternalIP` (else the first
    /// IP) is the pods' `hostIP`. Default: none.
    pub addresses: Vec<NodeAddress>,
    /// Labels the agent owns on its Node, on top of `kubernetes.io/hostname`,
    /// `kubernetes.io/os` and `kubernetes.io/arch`. Labels others set are kept.
    pub labels: BTreeMap<String, String>,
    /// Taints the agent registers its Node with (kubelet's `--register-with-taints`).
    /// Replaces taints of the same key and effect; other taints are kept.
    pub taints: Vec<Taint>,
    /// The node's `pods` capacity. Default [`DEFAULT_MAX_PODS`].
    pub max_pods: u32,
    /// The Lease's `leaseDurationSeconds`. Default [`DEFAULT_LEASE_DURATION`].
    pub lease_duration: Duration,
    /// How often the Lease is renewed. Default [`DEFAULT_RENEW_INTERVAL`].
    pub renew_interval: Duration,
    /// How often the node status is recomputed. Default [`DEFAULT_STATUS_UPDATE_INTERVAL`].
    pub status_update_interval: Duration,
    /// How often the node status is posted when unchanged. Default
    /// [`DEFAULT_STATUS_REPORT_INTERVAL`].
    pub status_report_interval: Duration,
    /// How often the runtime is listed. Default [`DEFAULT_RELIST_INTERVAL`].
    pub relist_interval: Duration,
    /// The port of the agent's log endpoint (`status.daemonEndpoints.kubeletEndpoint`), if it
    /// serves one. Default: none.
    pub daemon_port: Option<i32>,
    /// What "now" is for timestamps (container start times, conditions, backoff). Default:
    /// the system clock; tests give [`flotilla_core::controller::testing::tokio_clock`].
    pub clock: Clock,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("node_name", &self.node_name)
            .field("root_dir", &self.root_dir)
            .field("addresses", &self.addresses)
            .field("labels", &self.labels)
            .field("taints", &self.taints)
            .field("max_pods", &self.max_pods)
            .field("lease_duration", &self.lease_duration)
            .field("renew_interval", &self.renew_interval)
            .field("status_update_interval", &self.status_update_interval)
            .field("status_report_interval", &self.status_report_interval)
            .field("relist_interval", &self.relist_interval)
            .field("daemon_port", &self.daemon_port)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// The defaults for node `node_name` keeping its data under `root_dir`.
    pub fn new(node_name: impl Into<String>, root_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            root_dir: root_dir.into(),
            addresses: Vec::new(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            max_pods: DEFAULT_MAX_PODS,
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_interval: DEFAULT_RENEW_INTERVAL,
            status_update_interval: DEFAULT_STATUS_UPDATE_INTERVAL,
            status_report_interval: DEFAULT_STATUS_REPORT_INTERVAL,
            relist_interval: DEFAULT_RELIST_INTERVAL,
            daemon_port: None,
            clock: Arc::new(Timestamp::now),
        }
    }

    /// The same configuration with `clock` as its time source.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The IP pods report as `hostIP`: the first `InternalIP`, else the first address that
    /// is an IP.
    pub fn host_ips(&self) -> Vec<String> {
        let is_ip = |a: &&NodeAddress| a.address.parse::<std::net::IpAddr>().is_ok();
        let internal: Vec<String> = self
            .addresses
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .filter(is_ip)
            .map(|a| a.address.clone())
            .collect();
        if !internal.is_empty() {
            return internal;
        }
        self.addresses.iter().filter(is_ip).take(1).map(|a| a.address.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(type_: &str, address: &str) -> NodeAddress {
        NodeAddress { type_: type_.into(), address: address.into() }
    }

    #[test]
    fn host_ips_prefer_internal_addresses() {
        let mut c = AgentConfig::new("n1", "/tmp/x");
        assert!(c.host_ips().is_empty());
        c.addresses = vec![addr("Hostname", "n1"), addr("ExternalIP", "1.2.3.4")];
        assert_eq!(c.host_ips(), vec!["1.2.3.4".to_string()]);
        c.addresses.push(addr("InternalIP", "10.0.0.5"));
        assert_eq!(c.host_ips(), vec!["10.0.0.5".to_string()]);
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.lease_duration, Duration::from_secs(40));
    }
}
