//! Service address allocation: cluster IPs from a configured range and node ports from
//! 30000-32767 (by default), allocated when a Service is written, unique across the cluster,
//! and released when it goes.
//!
//! Every allocation is a key of its own (`/registry/_allocations/serviceips/<ip>`,
//! `/registry/_allocations/servicenodeports/<port>`) holding `namespace/name`. It is created
//! (with an "absent" compare) in the same transaction that writes the Service, and deleted in
//! the same transaction that removes it. Two Services can therefore never get the same
//! address, and no crash leaves an address taken without its Service.
//!
//! Only IPv4 single-stack is served: `ipFamilies` becomes `["IPv4"]`. The range's first
//! address is reserved for the API server's own `kubernetes` Service, as Kubernetes does.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde_json::{Value, json};

use super::{Error, Registry, Result};
use crate::object::DynamicObject;
use crate::store::{Compare, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest, RequestOp};
use crate::validation::{ErrorList, FieldError, FieldPath};

const IP_PREFIX: &str = "/registry/_allocations/serviceips/";
const PORT_PREFIX: &str = "/registry/_allocations/servicenodeports/";

/// The address ranges Services are given addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// The network of the cluster-IP range.
    pub network: Ipv4Addr,
    /// Its prefix length (8 to 30).
    pub prefix_len: u8,
    /// Node ports.
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    /// `10.96.0.0/12` and `30000-32767`, as kubeadm configures Kubernetes.
    fn default() -> Self {
        ServiceRanges { network: Ipv4Addr::new(10, 96, 0, 0), prefix_len: 12, node_ports: 30000..=32767 }
    }
}

impl ServiceRanges {
    /// Ranges from a CIDR such as `10.96.0.0/12` and a node-port range; the error says which
    /// part is wrong.
    pub fn new(cidr: &str, node_ports: RangeInclusive<u16>) -> std::result::Result<Self, String> {
        let (ip, len) =
            cidr.split_once('/').ok_or_else(|| format!("service CIDR {cidr:?}: expected a.b.c.d/len"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("service CIDR {cidr:?}: {e}"))?;
        let prefix_len: u8 = len.parse().map_err(|e| format!("service CIDR {cidr:?}: prefix length: {e}"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(format!("service CIDR {cidr:?}: prefix length must be 8 to 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        if u32::from(ip) & !mask != 0 {
            return Err(format!("service CIDR {cidr:?}: host bits are set"));
        }
        if node_ports.is_empty() || *node_ports.start() == 0 {
            return Err(format!(
                "node port range {node_ports:?}: must be a non-empty range of ports above 0"
            ));
        }
        Ok(ServiceRanges { network: ip, prefix_len, node_ports })
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix_len)
    }

    /// The allocatable addresses: the range without its network, broadcast and first
    /// (reserved) address.
    fn ip_offsets(&self) -> RangeInclusive<u32> {
        let size = 1u32 << (32 - self.prefix_len);
        2..=size - 2
    }

    fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix_len);
        u32::from(ip) & mask == u32::from(self.network)
            && self.ip_offsets().contains(&(u32::from(ip) - u32::from(self.network)))
    }

    /// The range's first address, reserved for the `kubernetes` Service.
    pub fn api_server_ip(&self) -> Ipv4Addr {
        self.ip_at(1)
    }
}

/// What a Service write must add to its transaction.
#[derive(Debug, Default)]
pub(crate) struct Allocation {
    /// Keys that must be absent (the addresses newly taken).
    pub(crate) compares: Vec<Compare>,
    /// Puts of the new keys and deletes of released ones.
    pub(crate) ops: Vec<RequestOp>,
    /// Whether the user asked for a specific address (a clash is then their error, not a
    /// reason to pick another).
    pub(crate) explicit: bool,
}

fn service_type(obj: &DynamicObject) -> &str {
    obj.data.get("spec").and_then(|s| s.get("type")).and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn cluster_ip(obj: &DynamicObject) -> Option<String> {
    let spec = obj.data.get("spec")?;
    let ip = spec.get("clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty());
    let first = || spec.get("clusterIPs")?.get(0)?.as_str().filter(|s| !s.is_empty());
    ip.or_else(first).map(str::to_string)
}

fn wants_node_ports(t: &str) -> bool {
    t == "NodePort" || t == "LoadBalancer"
}

/// `(index, port, protocol, nodePort)` of each service port.
fn ports(obj: &DynamicObject) -> Vec<(usize, i64, String, Option<i64>)> {
    let list = obj.data.get("spec").and_then(|s| s.get("ports")).and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
            let node = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0);
            (i, port, proto, node)
        })
        .collect()
}

/// The allocation keys an existing Service holds.
pub(crate) fn held_keys(obj: &DynamicObject) -> Vec<String> {
    let mut keys = Vec::new();
    if service_type(obj) != "ExternalName"
        && let Some(ip) = cluster_ip(obj).filter(|ip| ip != "None")
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    let nodes: BTreeSet<i64> = ports(obj).into_iter().filter_map(|p| p.3).collect();
    keys.extend(nodes.into_iter().map(|n| format!("{PORT_PREFIX}{n}")));
    keys
}

/// Deletes of every allocation `obj` holds: added to the transaction that removes it.
pub(crate) fn release_ops(obj: &DynamicObject) -> Vec<RequestOp> {
    held_keys(obj)
        .into_iter()
        .map(|k| RequestOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key(k), prev_kv: false }))
        .collect()
}

fn invalid(obj: &DynamicObject, errors: Vec<FieldError>) -> Error {
    Error::Invalid { kind: "Service".into(), name: obj.name().to_string(), errors: ErrorList(errors) }
}

fn spec_mut(obj: &mut DynamicObject) -> &mut serde_json::Map<String, Value> {
    let spec = obj.data.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec.as_object_mut().expect("made an object just above")
}

/// A start point for scanning a range, so concurrent allocations rarely pick the same one.
fn random_below(n: u32) -> u32 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u32
}

impl Registry {
    async fn allocated(&self, prefix: &str) -> Result<BTreeSet<String>> {
        let mut req = RangeRequest::new(KeyRange::prefix(prefix));
        req.keys_only = true;
        let resp = self.store.range(req).await?;
        Ok(resp
            .kvs
            .iter()
            .filter_map(|kv| std::str::from_utf8(&kv.key).ok()?.strip_prefix(prefix).map(str::to_string))
            .collect())
    }

    /// Fills in `obj`'s cluster IP and node ports (carrying over `old`'s on update) and says
    /// what its write must take and release. Errors name the field at fault.
    pub(crate) async fn allocate_service(
        &self,
        obj: &mut DynamicObject,
        old: Option<&DynamicObject>,
    ) -> Result<Allocation> {
        let ranges = self.service_ranges.clone();
        let owner = format!("{}/{}", obj.metadata.namespace.as_deref().unwrap_or(""), obj.name());
        let mut alloc = Allocation::default();
        let take = |alloc: &mut Allocation, key: String| {
            alloc.compares.push(Compare::absent(key.clone()));
            alloc.ops.push(RequestOp::Put(PutRequest::new(key, owner.clone())));
        };
        let held: BTreeSet<String> = old.map(held_keys).unwrap_or_default().into_iter().collect();
        let mut keeping: BTreeSet<String> = BTreeSet::new();
        let typ = service_type(obj).to_string();
        let ip_path = FieldPath::new("spec").child("clusterIPs").index(0);

        // Cluster IP.
        let old_ip = old.filter(|o| service_type(o) != "ExternalName").and_then(cluster_ip);
        let mut ip = cluster_ip(obj);
        if typ == "ExternalName" {
            if ip.as_deref().is_some_and(|ip| ip != "None") && ip != old_ip {
                return Err(invalid(
                    obj,
                    vec![FieldError::forbidden(ip_path, "may not be set for ExternalName services")],
                ));
            }
            let spec = spec_mut(obj);
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            ip = None;
        } else if ip.is_none() && old_ip.is_some() {
            // An update that left the field out keeps the address (as Kubernetes does).
            ip = old_ip.clone();
        } else if let (Some(new), Some(was)) = (&ip, &old_ip)
            && new != was
        {
            return Err(invalid(obj, vec![FieldError::invalid(ip_path, new.clone(), "field is immutable")]));
        }
        if typ != "ExternalName" {
            let chosen = match ip {
                Some(ip) if ip == "None" => "None".to_string(),
                Some(ip) => {
                    let key = format!("{IP_PREFIX}{ip}");
                    if held.contains(&key) {
                        keeping.insert(key);
                    } else {
                        let parsed: Option<Ipv4Addr> = ip.parse().ok();
                        if !parsed.is_some_and(|a| ranges.contains(a)) {
                            let msg = format!(
                                "provided IP is not in the valid range. The range of valid IPs is {}",
                                ranges.cidr()
                            );
                            return Err(invalid(obj, vec![FieldError::invalid(ip_path, ip.clone(), msg)]));
                        }
                        alloc.explicit = true;
                        take(&mut alloc, key);
                    }
                    ip
                }
                None => {
                    let used = self.allocated(IP_PREFIX).await?;
                    let offsets = ranges.ip_offsets();
                    let size = offsets.end() - offsets.start() + 1;
                    let start = random_below(size);
                    let free = (0..size)
                        .map(|i| ranges.ip_at(offsets.start() + (start + i) % size).to_string())
                        .find(|a| !used.contains(a))
                        .ok_or_else(|| {
                            Error::Internal(format!(
                                "failed to allocate a serviceIP: range {} is full",
                                ranges.cidr()
                            ))
                        })?;
                    take(&mut alloc, format!("{IP_PREFIX}{free}"));
                    free
                }
            };
            let spec = spec_mut(obj);
            spec.insert("clusterIP".into(), json!(chosen));
            spec.insert("clusterIPs".into(), json!([chosen]));
            if chosen != "None" {
                spec.insert("ipFamilies".into(), json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
            }
        }

        // Node ports.
        let old_ports = old.map(ports).unwrap_or_default();
        let mut mine: BTreeSet<i64> = BTreeSet::new();
        let mut assigned: Vec<(usize, i64)> = Vec::new();
        let mut missing: Vec<usize> = Vec::new();
        let mut errors = Vec::new();
        for (i, port, proto, node) in ports(obj) {
            let path = FieldPath::new("spec").child("ports").index(i).child("nodePort");
            if !wants_node_ports(&typ) {
                // Changing away from NodePort drops the ports (Kubernetes clears them too).
                if node.is_some() && old.is_none() {
                    errors
                        .push(FieldError::forbidden(path, format!("may not be used when `type` is '{typ}'")));
                }
                continue;
            }
            let carried = || old_ports.iter().find(|o| o.1 == port && o.2 == proto).and_then(|o| o.3);
            match node.or_else(carried) {
                Some(n) => {
                    let key = format!("{PORT_PREFIX}{n}");
                    if held.contains(&key) {
                        keeping.insert(key);
                    } else if !u16::try_from(n).is_ok_and(|n| ranges.node_ports.contains(&n)) {
                        let r = &ranges.node_ports;
                        let msg = format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            r.start(),
                            r.end()
                        );
                        errors.push(FieldError::invalid(path, n, msg));
                        continue;
                    } else if !mine.contains(&n) {
                        alloc.explicit = true;
                        take(&mut alloc, key);
                    }
                    mine.insert(n);
                    assigned.push((i, n));
                }
                None => missing.push(i),
            }
        }
        if !errors.is_empty() {
            return Err(invalid(obj, errors));
        }
        if !missing.is_empty() {
            let used = self.allocated(PORT_PREFIX).await?;
            let (lo, hi) = (u32::from(*ranges.node_ports.start()), u32::from(*ranges.node_ports.end()));
            let size = hi - lo + 1;
            let start = random_below(size);
            let mut candidates = (0..size).map(|i| i64::from(lo + (start + i) % size));
            for i in missing {
                let n = candidates
                    .find(|n| !used.contains(&n.to_string()) && !mine.contains(n))
                    .ok_or_else(|| Error::Internal("failed to allocate a nodePort: range is full".into()))?;
                mine.insert(n);
                take(&mut alloc, format!("{PORT_PREFIX}{n}"));
                assigned.push((i, n));
            }
        }
        if let Some(list) = spec_mut(obj).get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in list.iter_mut().enumerate() {
                if let Some(p) = p.as_object_mut() {
                    match assigned.iter().find(|a| a.0 == i) {
                        Some((_, n)) => p.insert("nodePort".into(), json!(n)),
                        None => p.remove("nodePort"),
                    };
                }
            }
        }
        for key in held.difference(&keeping) {
            alloc.ops.push(RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::key(key.clone()),
                prev_kv: false,
            }));
        }
        Ok(alloc)
    }

    /// Whether the write of `t` is a Service's.
    pub(crate) fn is_service(t: &crate::object::ResourceType) -> bool {
        t.group.is_empty() && t.plural == "services"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_bad_input() {
        let r = ServiceRanges::new("10.0.0.0/24", 30000..=30010).expect("valid");
        assert_eq!(r.ip_offsets(), 2..=254);
        assert!(r.contains("10.0.0.2".parse().expect("ip")));
        assert!(!r.contains("10.0.0.1".parse().expect("ip")), "reserved for the kubernetes service");
        assert!(!r.contains("10.0.0.255".parse().expect("ip")));
        assert!(!r.contains("10.0.1.2".parse().expect("ip")));
        assert_eq!(r.api_server_ip(), Ipv4Addr::new(10, 0, 0, 1));
        for bad in ["10.0.0.0", "10.0.0.1/24", "10.0.0.0/33", "10.0.0.0/4", "x/24"] {
            assert!(ServiceRanges::new(bad, 30000..=30010).is_err(), "{bad}");
        }
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 30010..=30000;
        assert!(ServiceRanges::new("10.0.0.0/24", empty).is_err());
    }
}
