//! The canonical layout of an Endpoints object's subsets (Kubernetes' `RepackSubsets`): every
//! address grouped with exactly the ports it serves, one subset per distinct set, each sorted,
//! so equal contents always serialize to equal bytes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

/// How many addresses an Endpoints object holds at most; beyond that it is truncated and
/// annotated `endpoints.kubernetes.io/over-capacity: truncated`.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// An address's identity: its IP and the uid of the object it points at.
type AddressKey = (String, String);

/// A port's identity, in sort order: name, number, protocol, appProtocol.
type PortKey = (String, i32, String, String);

/// One port and the readiness of each address serving it.
type PortAddresses = (Option<EndpointPort>, BTreeMap<AddressKey, bool>);

fn address_key(a: &EndpointAddress) -> AddressKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        super::pods::protocol(p.protocol.as_deref()).to_string(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// `Some(list)` for a non-empty list, as Kubernetes omits empty ones.
fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Repacks `subsets` into the canonical layout: addresses (deduplicated by IP and target uid)
/// grouped by the exact set of ports they serve, an address not ready on a port if any
/// subset says so. Addresses of a subset without ports are kept in a portless subset.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    // A `None` port stands for "no ports" so that portless addresses survive the regrouping.
    let mut by_port: BTreeMap<Option<PortKey>, PortAddresses> = BTreeMap::new();
    for subset in subsets {
        let ports: Vec<Option<&EndpointPort>> = match subset.ports.as_deref() {
            Some(ports) if !ports.is_empty() => ports.iter().map(Some).collect(),
            _ => vec![None],
        };
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (addr, is_ready) in ready.chain(not_ready) {
            let key = address_key(addr);
            addresses.entry(key.clone()).or_insert_with(|| addr.clone());
            for port in &ports {
                let entry =
                    by_port.entry(port.map(port_key)).or_insert_with(|| (port.cloned(), BTreeMap::new()));
                // Not ready on any subset means not ready on this port.
                let was_ready = entry.1.entry(key.clone()).or_insert(is_ready);
                *was_ready &= is_ready;
            }
        }
    }
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<Option<EndpointPort>>> = BTreeMap::new();
    for (port, addrs) in by_port.into_values() {
        by_addresses.entry(addrs.into_iter().collect()).or_default().push(port);
    }
    let mut packed: Vec<EndpointSubset> = by_addresses
        .into_iter()
        .map(|(addrs, ports)| {
            let pick = |ready: bool| -> Vec<EndpointAddress> {
                addrs
                    .iter()
                    .filter(|(_, r)| *r == ready)
                    .filter_map(|(k, _)| addresses.get(k).cloned())
                    .collect()
            };
            let mut ports: Vec<EndpointPort> = ports.into_iter().flatten().collect();
            ports.sort_by_key(port_key);
            EndpointSubset {
                addresses: non_empty(pick(true)),
                not_ready_addresses: non_empty(pick(false)),
                ports: non_empty(ports),
            }
        })
        .collect();
    sort_subsets(&mut packed);
    packed
}

/// Sorts addresses (by IP, then target uid), ports, and subsets (by their ports, then their
/// addresses), so the same contents always come out in the same order.
pub fn sort_subsets(subsets: &mut [EndpointSubset]) {
    for s in subsets.iter_mut() {
        for list in [&mut s.addresses, &mut s.not_ready_addresses].into_iter().flatten() {
            list.sort_by_key(address_key);
        }
        if let Some(ports) = &mut s.ports {
            ports.sort_by_key(port_key);
        }
    }
    subsets.sort_by_cached_key(|s| {
        let ports: Vec<PortKey> = s.ports.iter().flatten().map(port_key).collect();
        let addrs: Vec<AddressKey> =
            s.addresses.iter().chain(&s.not_ready_addresses).flatten().map(address_key).collect();
        (ports, addrs)
    });
}

/// Truncates the subsets to [`MAX_ENDPOINTS_ADDRESSES`] addresses, preferring ready ones and
/// keeping each subset's share of what is cut (Kubernetes' `truncateEndpoints`). Returns
/// whether anything was cut.
pub fn truncate_subsets(subsets: &mut [EndpointSubset]) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_ADDRESSES {
        return false;
    }
    let truncate_ready = ready > MAX_ENDPOINTS_ADDRESSES;
    let (room, total) = if truncate_ready {
        (MAX_ENDPOINTS_ADDRESSES, ready)
    } else {
        (MAX_ENDPOINTS_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for s in subsets.iter_mut() {
        if truncate_ready {
            s.not_ready_addresses = None;
        }
        let list = if truncate_ready { &mut s.addresses } else { &mut s.not_ready_addresses };
        let here = count(list);
        // Each subset keeps its proportion, rounded up; the last ones get what remains.
        let share = (here * room).div_ceil(total).min(left);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        left -= count(list);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;

    use super::*;

    fn addr(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(ObjectReference { uid: Some(format!("uid-{ip}")), ..Default::default() }),
            ..Default::default()
        }
    }

    fn port(name: &str, n: i32) -> EndpointPort {
        EndpointPort { name: Some(name.into()), port: n, protocol: Some("TCP".into()), app_protocol: None }
    }

    fn subset(ready: &[&str], not_ready: &[&str], ports: &[EndpointPort]) -> EndpointSubset {
        EndpointSubset {
            addresses: non_empty(ready.iter().map(|ip| addr(ip)).collect()),
            not_ready_addresses: non_empty(not_ready.iter().map(|ip| addr(ip)).collect()),
            ports: non_empty(ports.to_vec()),
        }
    }

    fn ips(l: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        l.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn addresses_serving_the_same_ports_share_a_subset() {
        let http = port("http", 8080);
        let dns = port("dns", 53);
        let input = [
            subset(&["10.0.0.2"], &[], std::slice::from_ref(&http)),
            subset(&["10.0.0.2"], &[], std::slice::from_ref(&dns)),
            subset(&["10.0.0.1"], &[], std::slice::from_ref(&http)),
            subset(&["10.0.0.1"], &[], std::slice::from_ref(&dns)),
            subset(&["10.0.0.3"], &[], std::slice::from_ref(&http)),
        ];
        let packed = repack_subsets(&input);
        // Each port goes with exactly the addresses serving it; an address may be in several.
        let by_port: Vec<(Vec<&str>, Vec<&str>)> = packed
            .iter()
            .map(|s| {
                (s.ports.iter().flatten().filter_map(|p| p.name.as_deref()).collect(), ips(&s.addresses))
            })
            .collect();
        assert_eq!(
            by_port,
            [
                (vec!["dns"], vec!["10.0.0.1", "10.0.0.2"]),
                (vec!["http"], vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"])
            ]
        );
        // Ports served by the same addresses share one subset.
        let same = [
            subset(&["10.0.0.1"], &[], std::slice::from_ref(&http)),
            subset(&["10.0.0.1"], &[], std::slice::from_ref(&dns)),
        ];
        let packed = repack_subsets(&same);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].ports, Some(vec![dns, http]));
    }

    #[test]
    fn repacking_is_independent_of_input_order_and_idempotent() {
        let http = port("http", 8080);
        let a = [
            subset(&["10.0.0.1"], &["10.0.0.9"], std::slice::from_ref(&http)),
            subset(&["10.0.0.2"], &[], std::slice::from_ref(&http)),
        ];
        let b = [a[1].clone(), a[0].clone()];
        let packed = repack_subsets(&a);
        assert_eq!(packed, repack_subsets(&b));
        assert_eq!(packed, repack_subsets(&packed));
        assert_eq!(ips(&packed[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&packed[0].not_ready_addresses), ["10.0.0.9"]);
    }

    #[test]
    fn not_ready_on_one_subset_wins_over_ready_on_another() {
        let http = port("http", 8080);
        let packed = repack_subsets(&[
            subset(&["10.0.0.1"], &[], std::slice::from_ref(&http)),
            subset(&[], &["10.0.0.1"], std::slice::from_ref(&http)),
        ]);
        assert_eq!(packed.len(), 1);
        assert_eq!(ips(&packed[0].addresses), Vec::<&str>::new());
        assert_eq!(ips(&packed[0].not_ready_addresses), ["10.0.0.1"]);
    }

    #[test]
    fn portless_addresses_survive_repacking() {
        let packed = repack_subsets(&[subset(&["10.0.0.2"], &[], &[]), subset(&["10.0.0.1"], &[], &[])]);
        assert_eq!(packed.len(), 1);
        assert_eq!(ips(&packed[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(packed[0].ports, None);
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let http = port("http", 8080);
        let ready: Vec<String> = (0..900).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        let not_ready: Vec<String> = (0..300).map(|i| format!("10.1.{}.{}", i / 250, i % 250)).collect();
        let r: Vec<&str> = ready.iter().map(String::as_str).collect();
        let n: Vec<&str> = not_ready.iter().map(String::as_str).collect();
        let mut s = vec![subset(&r, &n, &[http])];
        assert!(truncate_subsets(&mut s));
        assert_eq!((ips(&s[0].addresses).len(), ips(&s[0].not_ready_addresses).len()), (900, 100));
        assert!(!truncate_subsets(&mut s), "within capacity now");
    }

    #[test]
    fn truncation_of_ready_addresses_drops_not_ready_ones() {
        let ready: Vec<String> = (0..1200).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        let r: Vec<&str> = ready.iter().map(String::as_str).collect();
        let (a, b) = r.split_at(600);
        let mut s = vec![subset(a, &["10.9.9.9"], &[port("a", 1)]), subset(b, &[], &[port("b", 2)])];
        assert!(truncate_subsets(&mut s));
        assert_eq!(ips(&s[0].addresses).len() + ips(&s[1].addresses).len(), MAX_ENDPOINTS_ADDRESSES);
        assert_eq!(ips(&s[0].addresses).len(), 500);
        assert_eq!(s[0].not_ready_addresses, None);
    }
}
