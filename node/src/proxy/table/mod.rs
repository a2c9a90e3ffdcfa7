//! The pure half of the proxy: from Services and EndpointSlices to the table of what must be
//! listened on and where it forwards ([`desired_table`]), and from the table in force and the
//! desired one to the actions that turn one into the other ([`plan`]). No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

#[cfg(test)]
mod tests;

/// The label linking an EndpointSlice to its Service (the same one the EndpointSlice
/// controller writes; user-managed slices of selector-less Services carry it too).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset: three hours, as in Kubernetes.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// A transport protocol the proxy forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP: connections are accepted and spliced to a backend.
    Tcp,
    /// UDP: datagrams are relayed per client session.
    Udp,
}

impl Protocol {
    /// Kubernetes' spelling of a protocol field: `None` means TCP; `Err` holds what is not
    /// supported (SCTP, or anything else).
    fn parse(field: Option<&str>) -> Result<Protocol, String> {
        match field.unwrap_or("TCP") {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            other => Err(other.to_string()),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// An address the proxy listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenKey {
    /// A ClusterIP, or a node address for a NodePort.
    pub ip: IpAddr,
    /// The Service port, or the node port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl ListenKey {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl fmt::Display for ListenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.protocol)
    }
}

/// One port of one Service: what a balancer is kept for (its ClusterIP listener and its
/// NodePort listeners share it, so affinity and round robin span both).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (`""` for a single unnamed port).
    pub port_name: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}/{}", self.namespace, self.name, self.port_name, self.protocol)
    }
}

/// How a Service port spreads clients over its backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// Round robin, connection by connection (`sessionAffinity: None`).
    None,
    /// A client IP keeps its backend until it has not been seen for `timeout`
    /// (`sessionAffinity: ClientIP`).
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
        timeout: Duration,
    },
}

/// Where a Service port forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTarget {
    /// The ready endpoints with the port resolved from their slice, sorted and deduplicated.
    pub backends: Vec<SocketAddr>,
    /// The Service's session affinity.
    pub affinity: Affinity,
}

/// What is listened on and where it goes: desired (from [`desired_table`]) or in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Every Service port with a listener, and its target.
    pub services: BTreeMap<ServicePortKey, ServiceTarget>,
    /// Every listener and the Service port it serves.
    pub listeners: BTreeMap<ListenKey, ServicePortKey>,
    /// The ClusterIPs that must be local addresses of the node.
    pub cluster_ips: BTreeSet<IpAddr>,
}

/// Something of a Service or slice the proxy cannot serve, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// `Service ns/name` or `EndpointSlice ns/name`, with the field concerned.
    pub object: String,
    /// Why it was left out.
    pub reason: String,
}

/// A Service's key as its slices name it.
type ServiceRef = (String, String);

/// The ready backends each slice offers, per (namespace, service name), per (port name,
/// protocol): the port numbers come from the slice, not the Service.
type SliceBackends = BTreeMap<ServiceRef, BTreeMap<(String, Protocol), BTreeSet<SocketAddr>>>;

/// Whether the proxy sends new traffic to an endpoint: ready (a missing condition means
/// ready, as the API documents) and not terminating.
fn is_usable(endpoint: &Endpoint) -> bool {
    let c = endpoint.conditions.as_ref();
    c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
}

fn slice_name(slice: &EndpointSlice) -> String {
    let m = &slice.metadata;
    format!("EndpointSlice {}/{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
}

fn collect_slices(slices: &[Arc<EndpointSlice>], skipped: &mut Vec<Skipped>) -> SliceBackends {
    let mut out = SliceBackends::new();
    for slice in slices {
        let m = &slice.metadata;
        let Some(service) = m.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        if m.deletion_timestamp.is_some() {
            continue;
        }
        // FQDN slices name hosts, not addresses; the proxy forwards to addresses only.
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let ns = m.namespace.clone().unwrap_or_default();
        let per_port = out.entry((ns, service.clone())).or_default();
        for (i, p) in slice.ports.iter().flatten().enumerate() {
            let protocol = match Protocol::parse(p.protocol.as_deref()) {
                Ok(p) => p,
                Err(other) => {
                    skipped.push(Skipped {
                        object: format!("{} ports[{i}].protocol", slice_name(slice)),
                        reason: format!("protocol {other:?} is not supported"),
                    });
                    continue;
                }
            };
            let Some(port) = p.port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) else {
                skipped.push(Skipped {
                    object: format!("{} ports[{i}].port", slice_name(slice)),
                    reason: format!("{:?} is not a port number", p.port),
                });
                continue;
            };
            let set = per_port.entry((p.name.clone().unwrap_or_default(), protocol)).or_default();
            for (j, e) in slice.endpoints.iter().enumerate() {
                if !is_usable(e) {
                    continue;
                }
                // Only the first address counts: the API defines no meaning for the others.
                let Some(first) = e.addresses.first() else { continue };
                match first.parse::<IpAddr>() {
                    Ok(ip) => {
                        set.insert(SocketAddr::new(ip, port));
                    }
                    Err(_) => skipped.push(Skipped {
                        object: format!("{} endpoints[{j}].addresses[0]", slice_name(slice)),
                        reason: format!("{first:?} is not an IP address"),
                    }),
                }
            }
        }
    }
    out
}

fn affinity_of(service: &Service) -> Affinity {
    let Some(spec) = service.spec.as_ref() else { return Affinity::None };
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return Affinity::None;
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0);
    Affinity::ClientIp { timeout: seconds.map_or(DEFAULT_AFFINITY_TIMEOUT, Duration::from_secs) }
}

/// The ClusterIPs of a Service (`clusterIP` and `clusterIPs`), or `None` when it has none
/// to proxy (headless, or not yet given one).
fn cluster_ips(service: &Service, what: &str, skipped: &mut Vec<Skipped>) -> Option<Vec<IpAddr>> {
    let spec = service.spec.as_ref()?;
    let mut raw: Vec<&str> = spec.cluster_ip.as_deref().into_iter().collect();
    raw.extend(spec.cluster_ips.iter().flatten().map(String::as_str));
    raw.retain(|s| !s.is_empty());
    // `clusterIPs[0]` repeats `clusterIP`.
    raw.dedup();
    if raw.is_empty() || raw.contains(&"None") {
        return None;
    }
    let mut ips = Vec::new();
    for s in raw {
        match s.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => skipped.push(Skipped {
                object: format!("{what} spec.clusterIP"),
                reason: format!("{s:?} is not an IP address"),
            }),
        }
    }
    (!ips.is_empty()).then_some(ips)
}

/// Adds `key -> service` unless another Service port holds the address already.
fn claim(table: &mut Table, key: ListenKey, service: &ServicePortKey, skipped: &mut Vec<Skipped>) {
    match table.listeners.get(&key) {
        Some(holder) if holder != service => skipped.push(Skipped {
            object: format!("Service {}/{} port {:?}", service.namespace, service.name, service.port_name),
            reason: format!("{key} is already served for {holder}"),
        }),
        Some(_) => {}
        None => {
            table.listeners.insert(key, service.clone());
        }
    }
}

fn add_port(
    table: &mut Table,
    service: &Service,
    (index, port): (usize, &ServicePort),
    ips: &[IpAddr],
    backends: Option<&BTreeMap<(String, Protocol), BTreeSet<SocketAddr>>>,
    node_addresses: &[IpAddr],
    skipped: &mut Vec<Skipped>,
) {
    let m = &service.metadata;
    let (ns, name) = (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
    let what = format!("Service {ns}/{name} spec.ports[{index}]");
    let protocol = match Protocol::parse(port.protocol.as_deref()) {
        Ok(p) => p,
        Err(other) => {
            let reason = format!("protocol {other:?} is not supported");
            skipped.push(Skipped { object: format!("{what}.protocol"), reason });
            return;
        }
    };
    let Some(number) = u16::try_from(port.port).ok().filter(|n| *n > 0) else {
        let reason = format!("{} is not a port number", port.port);
        skipped.push(Skipped { object: format!("{what}.port"), reason });
        return;
    };
    let port_name = port.name.clone().unwrap_or_default();
    let key = ServicePortKey { namespace: ns, name, port_name: port_name.clone(), protocol };
    let found = backends.and_then(|b| b.get(&(port_name, protocol)));
    let target = ServiceTarget {
        backends: found.into_iter().flatten().copied().collect(),
        affinity: affinity_of(service),
    };
    table.services.insert(key.clone(), target);
    for ip in ips {
        claim(table, ListenKey { ip: *ip, port: number, protocol }, &key, skipped);
    }
    let spec = service.spec.as_ref();
    let wants_node_port = matches!(spec.and_then(|s| s.type_.as_deref()), Some("NodePort" | "LoadBalancer"));
    if let Some(node_port) = port.node_port.filter(|_| wants_node_port) {
        let Some(node_port) = u16::try_from(node_port).ok().filter(|n| *n > 0) else {
            let reason = format!("{node_port} is not a port number");
            skipped.push(Skipped { object: format!("{what}.nodePort"), reason });
            return;
        };
        for ip in node_addresses {
            claim(table, ListenKey { ip: *ip, port: node_port, protocol }, &key, skipped);
        }
    }
}

/// The table the proxy should have for `services` and `slices` on a node with
/// `node_addresses`, and what had to be left out.
///
/// Served: every port of every Service with a ClusterIP (types ClusterIP, NodePort and
/// LoadBalancer), on each of its ClusterIPs, and on each node address at its `nodePort` for
/// NodePort and LoadBalancer Services. Ignored: headless Services (`clusterIP: None`) and
/// ExternalName Services, which have nothing to proxy. Backends come from every slice
/// labelled with the Service's name, whatever manages it, matching the Service port by name
/// and protocol; the port number is the slice's. Endpoints not ready, or terminating, are
/// left out. A Service port without backends is still listened on (connections are refused
/// at once, as kube-proxy rejects them).
pub fn desired_table(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node_addresses: &[IpAddr],
) -> (Table, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let backends = collect_slices(slices, &mut skipped);
    let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let mut table = Table::default();
    let mut all_cluster_ips = BTreeSet::new();
    for service in sorted {
        let m = &service.metadata;
        let (ns, name) = (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
        let what = format!("Service {ns}/{name}");
        let Some(spec) = service.spec.as_ref() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(ips) = cluster_ips(service, &what, &mut skipped) else { continue };
        let slice_backends = backends.get(&(ns, name));
        for port in spec.ports.iter().flatten().enumerate() {
            add_port(&mut table, service, port, &ips, slice_backends, node_addresses, &mut skipped);
        }
        all_cluster_ips.extend(ips);
    }
    // Only the ClusterIPs something listens on need to be made local.
    table.cluster_ips =
        table.listeners.keys().map(|k| k.ip).filter(|ip| all_cluster_ips.contains(ip)).collect();
    (table, skipped)
}

/// The actions turning the table in force into the desired one, in the order they must be
/// performed (balancers before listeners that use them, addresses before binding them,
/// closing before reopening the same address for another Service).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Service ports whose balancer must be created or given new backends or affinity.
    pub upsert: Vec<(ServicePortKey, ServiceTarget)>,
    /// ClusterIPs to make local.
    pub add_addresses: Vec<IpAddr>,
    /// Listeners to close (gone, or now serving another Service port).
    pub close: Vec<ListenKey>,
    /// Listeners to open, with the Service port they serve.
    pub open: Vec<(ListenKey, ServicePortKey)>,
    /// Service ports whose balancer is no longer needed.
    pub remove: Vec<ServicePortKey>,
    /// ClusterIPs to release.
    pub remove_addresses: Vec<IpAddr>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// What to do to go from `applied` (the table in force) to `desired`.
pub fn plan(applied: &Table, desired: &Table) -> Plan {
    let upsert = desired
        .services
        .iter()
        .filter(|(k, t)| applied.services.get(*k) != Some(*t))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    let close = applied
        .listeners
        .iter()
        .filter(|(k, s)| desired.listeners.get(*k) != Some(*s))
        .map(|(k, _)| *k)
        .collect();
    let open = desired
        .listeners
        .iter()
        .filter(|(k, s)| applied.listeners.get(*k) != Some(*s))
        .map(|(k, s)| (*k, s.clone()))
        .collect();
    let remove = applied.services.keys().filter(|k| !desired.services.contains_key(*k)).cloned().collect();
    Plan {
        upsert,
        add_addresses: desired.cluster_ips.difference(&applied.cluster_ips).copied().collect(),
        close,
        open,
        remove,
        remove_addresses: applied.cluster_ips.difference(&desired.cluster_ips).copied().collect(),
    }
}
