//! The Node object the agent registers and the status it posts, built by pure functions from
//! the configuration, machine readings and the Node as it is in the API.

use std::collections::BTreeMap;

use flotilla_core::controller::conditions;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::config::AgentConfig;
use super::machine::{ConditionReading, MachineReadings};

/// The label naming the node's host.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The label naming the node's operating system.
pub const LABEL_OS: &str = "kubernetes.io/os";
/// The label naming the node's CPU architecture (Go's names: `amd64`, `arm64`).
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

/// What `kubeletVersion` says.
pub fn agent_version() -> String {
    format!("flotilla/{}", env!("CARGO_PKG_VERSION"))
}

/// Rust's architecture name as Kubernetes (Go) spells it.
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The labels the agent owns on its Node.
pub fn node_labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_HOSTNAME.to_string(), config.node_name.clone()),
        (LABEL_OS.to_string(), std::env::consts::OS.to_string()),
        (LABEL_ARCH.to_string(), go_arch(std::env::consts::ARCH).to_string()),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// `existing` with each of `mine` in place of a taint of the same key and effect.
pub fn merge_taints(existing: &[Taint], mine: &[Taint]) -> Vec<Taint> {
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut out: Vec<Taint> = existing.iter().filter(|t| !mine.iter().any(|m| same(t, m))).cloned().collect();
    out.extend(mine.iter().cloned());
    out
}

/// The node's capacity (`allocatable` is the same: Flotilla reserves nothing for the system).
pub fn capacity(readings: &MachineReadings, max_pods: u32) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(readings.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", readings.memory_total / 1024))),
        ("ephemeral-storage".to_string(), Quantity(format!("{}Ki", readings.disk_total / 1024))),
        ("pods".to_string(), Quantity(max_pods.to_string())),
    ])
}

/// The node's addresses: the configured ones, plus a `Hostname` one when none is given.
pub fn addresses(config: &AgentConfig) -> Vec<NodeAddress> {
    let mut out = config.addresses.clone();
    if !out.iter().any(|a| a.type_ == "Hostname") {
        out.push(NodeAddress { type_: "Hostname".into(), address: config.node_name.clone() });
    }
    out
}

/// Now, at the precision the API stores `Time` (seconds).
pub fn to_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The status to post: `existing` (kept for fields the agent does not own) with capacity,
/// allocatable, conditions (transition times kept when unchanged, heartbeat `now`), addresses,
/// node info and daemon endpoints.
pub fn node_status(
    config: &AgentConfig,
    existing: Option<&NodeStatus>,
    readings: &MachineReadings,
    readings_conditions: &[ConditionReading],
    info: &NodeSystemInfo,
    now: Timestamp,
) -> NodeStatus {
    let now = to_time(now);
    let mut status = existing.cloned().unwrap_or_default();
    let cap = capacity(readings, config.max_pods);
    status.capacity = Some(cap.clone());
    status.allocatable = Some(cap);
    let mut conds = status.conditions.take().unwrap_or_default();
    for c in readings_conditions {
        let new = NodeCondition {
            type_: c.type_.to_string(),
            status: c.status.to_string(),
            reason: Some(c.reason.to_string()),
            message: Some(c.message.clone()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: None,
        };
        conditions::set(&mut conds, new, &now);
    }
    status.conditions = Some(conds);
    status.addresses = Some(addresses(config));
    status.node_info = Some(info.clone());
    status.daemon_endpoints = config
        .daemon_port
        .map(|port| NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port }) });
    status
}

/// Whether `new` says something `old` did not, heartbeat times aside.
pub fn status_changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    old.is_none_or(|old| strip(old) != strip(new))
}

/// A new Node for this agent.
pub fn new_node(config: &AgentConfig, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(node_labels(config)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// What the agent knows of the machine and itself for `nodeInfo` (best effort: unreadable
/// fields are empty). Blocking file reads.
pub fn system_info(runtime_name: &str) -> NodeSystemInfo {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_image = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    NodeSystemInfo {
        architecture: go_arch(std::env::consts::ARCH).to_string(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!("{runtime_name}://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: agent_version(),
        machine_id: read("/etc/machine-id"),
        operating_system: std::env::consts::OS.to_string(),
        os_image,
        swap: None,
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::machine::node_conditions;
    use super::*;

    fn readings() -> MachineReadings {
        MachineReadings {
            cpus: 8,
            memory_total: 2048 * 1024,
            memory_available: 1 << 40,
            disk_total: 4096 * 1024,
            disk_available: 4096 * 1024,
            pids: 1,
            pid_max: 100,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("a valid second")
    }

    #[test]
    fn status_has_capacity_conditions_and_addresses() {
        let mut config = AgentConfig::new("n1", "/tmp");
        config.max_pods = 7;
        config.daemon_port = Some(10250);
        let conds = node_conditions(&readings(), Ok(()));
        let s = node_status(&config, None, &readings(), &conds, &system_info("hollow"), at(100));
        let cap = s.capacity.clone().expect("capacity");
        assert_eq!(cap["cpu"].0, "8");
        assert_eq!(cap["memory"].0, "2048Ki");
        assert_eq!(cap["ephemeral-storage"].0, "4096Ki");
        assert_eq!(cap["pods"].0, "7");
        assert_eq!(s.allocatable, s.capacity);
        let ready = s.conditions.iter().flatten().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(ready.last_heartbeat_time, Some(to_time(at(100))));
        assert_eq!(s.addresses.as_deref().map(|a| a[0].type_.as_str()), Some("Hostname"));
        assert_eq!(s.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(10250));
        let info = s.node_info.expect("node info");
        assert!(info.kubelet_version.starts_with("flotilla/"));
        assert!(info.container_runtime_version.starts_with("hollow://"));
    }

    #[test]
    fn heartbeats_alone_are_no_change_but_transitions_keep_their_time() {
        let config = AgentConfig::new("n1", "/tmp");
        let info = system_info("x");
        let ok = node_conditions(&readings(), Ok(()));
        let first = node_status(&config, None, &readings(), &ok, &info, at(100));
        let second = node_status(&config, Some(&first), &readings(), &ok, &info, at(200));
        assert!(!status_changed(Some(&first), &second));
        assert!(status_changed(None, &second));
        let ready = |s: &NodeStatus| s.conditions.iter().flatten().find(|c| c.type_ == "Ready").cloned();
        assert_eq!(ready(&second).and_then(|c| c.last_transition_time), Some(to_time(at(100))));
        assert_eq!(ready(&second).and_then(|c| c.last_heartbeat_time), Some(to_time(at(200))));
        let down = node_conditions(&readings(), Err("gone".into()));
        let third = node_status(&config, Some(&second), &readings(), &down, &info, at(300));
        assert!(status_changed(Some(&second), &third));
        assert_eq!(ready(&third).and_then(|c| c.last_transition_time), Some(to_time(at(300))));
        // A condition someone else owns survives.
        let mut other = third.clone();
        other.conditions.get_or_insert_with(Vec::new).push(NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            ..Default::default()
        });
        let fourth = node_status(&config, Some(&other), &readings(), &down, &info, at(400));
        assert!(fourth.conditions.iter().flatten().any(|c| c.type_ == "NetworkUnavailable"));
    }

    #[test]
    fn taints_and_labels_from_config_win_others_stay() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            time_added: None,
        };
        let existing = vec![taint("a", "1", "NoSchedule"), taint("b", "1", "NoExecute")];
        let merged = merge_taints(&existing, &[taint("a", "2", "NoSchedule"), taint("a", "3", "NoExecute")]);
        assert_eq!(
            merged,
            vec![taint("b", "1", "NoExecute"), taint("a", "2", "NoSchedule"), taint("a", "3", "NoExecute")]
        );
        let mut config = AgentConfig::new("n1", "/tmp");
        config.labels.insert("zone".into(), "z1".into());
        let labels = node_labels(&config);
        assert_eq!(labels[LABEL_HOSTNAME], "n1");
        assert_eq!(labels[LABEL_OS], std::env::consts::OS);
        assert_eq!(labels["zone"], "z1");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}
