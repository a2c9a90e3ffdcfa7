use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ClientIPConfig, ServiceSpec, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP literal")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address literal")
}

fn port(name: &str, number: i32, target: &str, protocol: &str) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port: number,
        protocol: Some(protocol.to_string()),
        target_port: Some(IntOrString::String(target.to_string())),
        ..Default::default()
    }
}

fn service(name: &str, cluster_ip: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(ports),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// An endpoint with conditions `(ready, terminating)`; `None` leaves the conditions unset.
fn endpoint(address: &str, conditions: Option<(bool, bool)>) -> Endpoint {
    Endpoint {
        addresses: vec![address.into()],
        conditions: conditions.map(|(ready, terminating)| EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(terminating),
        }),
        ..Default::default()
    }
}

fn slice(name: &str, service: &str, ports: &[(&str, i32, &str)], endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints,
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), service.to_string())])),
            ..Default::default()
        },
        ports: Some(
            ports
                .iter()
                .map(|(n, p, proto)| EndpointPort {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    port: Some(*p),
                    protocol: Some(proto.to_string()),
                    app_protocol: None,
                })
                .collect(),
        ),
    }
}

fn key(name: &str, port_name: &str, protocol: Protocol) -> ServicePortKey {
    ServicePortKey { namespace: "default".into(), name: name.into(), port_name: port_name.into(), protocol }
}

fn listen(addr: &str, protocol: Protocol) -> ListenKey {
    let a = sa(addr);
    ListenKey { ip: a.ip(), port: a.port(), protocol }
}

fn table(services: Vec<Service>, slices: Vec<EndpointSlice>, nodes: &[&str]) -> (Table, Vec<Skipped>) {
    let services: Vec<_> = services.into_iter().map(Arc::new).collect();
    let slices: Vec<_> = slices.into_iter().map(Arc::new).collect();
    let nodes: Vec<IpAddr> = nodes.iter().map(|n| ip(n)).collect();
    desired_table(&services, &slices, &nodes)
}

#[test]
fn named_ports_take_their_numbers_from_the_slice() {
    let svc =
        service("web", "10.96.0.10", vec![port("http", 80, "web", "TCP"), port("dns", 53, "dns", "UDP")]);
    let s = slice(
        "web-1",
        "web",
        &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
        vec![endpoint("10.0.0.1", Some((true, false))), endpoint("10.0.0.2", Some((true, false)))],
    );
    let (t, skipped) = table(vec![svc], vec![s], &[]);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        t.services[&key("web", "http", Protocol::Tcp)].backends,
        vec![sa("10.0.0.1:8080"), sa("10.0.0.2:8080")]
    );
    assert_eq!(
        t.services[&key("web", "dns", Protocol::Udp)].backends,
        vec![sa("10.0.0.1:5353"), sa("10.0.0.2:5353")]
    );
    assert_eq!(t.listeners[&listen("10.96.0.10:80", Protocol::Tcp)], key("web", "http", Protocol::Tcp));
    assert_eq!(t.listeners[&listen("10.96.0.10:53", Protocol::Udp)], key("web", "dns", Protocol::Udp));
    assert_eq!(t.listeners.len(), 2);
    assert_eq!(t.cluster_ips, BTreeSet::from([ip("10.96.0.10")]));
}

#[test]
fn slices_of_one_service_are_merged_and_deduplicated() {
    let svc = service("web", "10.96.0.10", vec![port("", 80, "8080", "TCP")]);
    let a = slice("web-a", "web", &[("", 8080, "TCP")], vec![endpoint("10.0.0.2", None)]);
    // A pod with another port set lands in a slice of its own; a duplicate is counted once.
    let b = slice(
        "web-b",
        "web",
        &[("", 9090, "TCP")],
        vec![endpoint("10.0.0.3", None), endpoint("10.0.0.1", None)],
    );
    let c = slice("web-c", "web", &[("", 8080, "TCP")], vec![endpoint("10.0.0.2", None)]);
    let other = slice("db-a", "db", &[("", 5432, "TCP")], vec![endpoint("10.0.0.9", None)]);
    let (t, _) = table(vec![svc], vec![a, b, c, other], &[]);
    assert_eq!(
        t.services[&key("web", "", Protocol::Tcp)].backends,
        vec![sa("10.0.0.1:9090"), sa("10.0.0.2:8080"), sa("10.0.0.3:9090")]
    );
}

#[test]
fn not_ready_and_terminating_endpoints_get_no_traffic() {
    let svc = service("web", "10.96.0.10", vec![port("", 80, "8080", "TCP")]);
    let s = slice(
        "web-1",
        "web",
        &[("", 8080, "TCP")],
        vec![
            endpoint("10.0.0.1", Some((true, false))),
            endpoint("10.0.0.2", Some((false, false))),
            // Ready and terminating: what a Service publishing not-ready addresses reports.
            endpoint("10.0.0.3", Some((true, true))),
            endpoint("10.0.0.4", None),
        ],
    );
    let (t, _) = table(vec![svc], vec![s], &[]);
    assert_eq!(
        t.services[&key("web", "", Protocol::Tcp)].backends,
        vec![sa("10.0.0.1:8080"), sa("10.0.0.4:8080")]
    );
}

#[test]
fn headless_and_external_name_services_are_not_proxied() {
    let headless = service("headless", "None", vec![port("", 80, "8080", "TCP")]);
    let mut external = service("ext", "", vec![port("", 80, "8080", "TCP")]);
    if let Some(spec) = external.spec.as_mut() {
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("example.com".into());
        spec.cluster_ips = None;
    }
    let s = slice("headless-1", "headless", &[("", 8080, "TCP")], vec![endpoint("10.0.0.1", None)]);
    let (t, skipped) = table(vec![headless, external], vec![s], &["192.168.1.5"]);
    assert_eq!(t, Table::default());
    assert!(skipped.is_empty(), "{skipped:?}");
}

#[test]
fn a_service_without_selector_uses_its_user_managed_slices() {
    let mut svc = service("legacy", "10.96.0.20", vec![port("db", 5432, "db", "TCP")]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.selector = None;
    }
    let mut s =
        slice("legacy-manual", "legacy", &[("db", 15432, "TCP")], vec![endpoint("192.168.7.7", None)]);
    s.metadata
        .labels
        .get_or_insert_default()
        .insert("endpointslice.kubernetes.io/managed-by".into(), "me".into());
    let (t, _) = table(vec![svc], vec![s], &[]);
    assert_eq!(t.services[&key("legacy", "db", Protocol::Tcp)].backends, vec![sa("192.168.7.7:15432")]);
}

#[test]
fn node_ports_listen_on_every_node_address() {
    let mut p = port("http", 80, "http", "TCP");
    p.node_port = Some(30080);
    let mut svc = service("web", "10.96.0.10", vec![p]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.type_ = Some("NodePort".into());
    }
    let (t, _) = table(vec![svc], vec![], &["192.168.1.5", "10.1.0.5"]);
    let k = key("web", "http", Protocol::Tcp);
    let expected: BTreeMap<ListenKey, ServicePortKey> = [
        (listen("10.96.0.10:80", Protocol::Tcp), k.clone()),
        (listen("192.168.1.5:30080", Protocol::Tcp), k.clone()),
        (listen("10.1.0.5:30080", Protocol::Tcp), k.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(t.listeners, expected);
    // Node addresses are local already: only the ClusterIP is to be added.
    assert_eq!(t.cluster_ips, BTreeSet::from([ip("10.96.0.10")]));
    // A ClusterIP Service keeps a stale nodePort field to itself.
    let mut q = port("http", 80, "http", "TCP");
    q.node_port = Some(30081);
    let (t, _) = table(vec![service("plain", "10.96.0.11", vec![q])], vec![], &["192.168.1.5"]);
    assert_eq!(t.listeners.len(), 1);
}

#[test]
fn client_ip_affinity_defaults_to_three_hours() {
    let mut a = service("a", "10.96.0.1", vec![port("", 80, "80", "TCP")]);
    let mut b = service("b", "10.96.0.2", vec![port("", 80, "80", "TCP")]);
    let c = service("c", "10.96.0.3", vec![port("", 80, "80", "TCP")]);
    if let Some(spec) = a.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    if let Some(spec) = b.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
    }
    let (t, _) = table(vec![a, b, c], vec![], &[]);
    assert_eq!(
        t.services[&key("a", "", Protocol::Tcp)].affinity,
        Affinity::ClientIp { timeout: DEFAULT_AFFINITY_TIMEOUT }
    );
    assert_eq!(
        t.services[&key("b", "", Protocol::Tcp)].affinity,
        Affinity::ClientIp { timeout: Duration::from_secs(60) }
    );
    assert_eq!(t.services[&key("c", "", Protocol::Tcp)].affinity, Affinity::None);
}

#[test]
fn what_cannot_be_served_is_reported_with_its_field() {
    let svc = service("web", "10.96.0.10", vec![port("s", 80, "80", "SCTP"), port("t", 81, "81", "TCP")]);
    let bad_ip = service("broken", "10.96.0.300", vec![port("", 80, "80", "TCP")]);
    let mut fqdn = slice("web-fqdn", "web", &[("t", 81, "TCP")], vec![endpoint("example.com", None)]);
    fqdn.address_type = "FQDN".into();
    let garbage = slice("web-bad", "web", &[("t", 81, "TCP")], vec![endpoint("not-an-ip", None)]);
    let (t, skipped) = table(vec![svc, bad_ip], vec![fqdn, garbage], &[]);
    assert_eq!(t.listeners.len(), 1, "only web's TCP port: {:?}", t.listeners);
    assert!(t.services[&key("web", "t", Protocol::Tcp)].backends.is_empty());
    let objects: Vec<&str> = skipped.iter().map(|s| s.object.as_str()).collect();
    assert_eq!(
        objects,
        vec![
            "EndpointSlice default/web-bad endpoints[0].addresses[0]",
            "Service default/broken spec.clusterIP",
            "Service default/web spec.ports[0].protocol",
        ]
    );
}

#[test]
fn a_listener_claimed_twice_goes_to_the_first_service() {
    let a = service("a", "10.96.0.10", vec![port("", 80, "80", "TCP")]);
    let b = service("b", "10.96.0.10", vec![port("", 80, "80", "TCP")]);
    let (t, skipped) = table(vec![b, a], vec![], &[]);
    assert_eq!(t.listeners[&listen("10.96.0.10:80", Protocol::Tcp)], key("a", "", Protocol::Tcp));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].reason.contains("default/a"), "{skipped:?}");
}

fn web_table(backends: &[&str]) -> Table {
    let svc = service("web", "10.96.0.10", vec![port("", 80, "8080", "TCP")]);
    let eps = backends.iter().map(|b| endpoint(b, None)).collect();
    table(vec![svc], vec![slice("web-1", "web", &[("", 8080, "TCP")], eps)], &[]).0
}

#[test]
fn plan_from_nothing_opens_everything_in_order() {
    let desired = web_table(&["10.0.0.1"]);
    let p = plan(&Table::default(), &desired);
    let k = key("web", "", Protocol::Tcp);
    assert_eq!(p.upsert, vec![(k.clone(), desired.services[&k].clone())]);
    assert_eq!(p.add_addresses, vec![ip("10.96.0.10")]);
    assert_eq!(p.open, vec![(listen("10.96.0.10:80", Protocol::Tcp), k)]);
    assert!(p.close.is_empty() && p.remove.is_empty() && p.remove_addresses.is_empty());
    assert!(plan(&desired, &desired).is_empty());
}

#[test]
fn plan_for_new_backends_touches_only_the_balancer() {
    let before = web_table(&["10.0.0.1", "10.0.0.2"]);
    let after = web_table(&["10.0.0.2", "10.0.0.3"]);
    let p = plan(&before, &after);
    let k = key("web", "", Protocol::Tcp);
    assert_eq!(
        p,
        Plan {
            upsert: vec![(
                k,
                ServiceTarget {
                    backends: vec![sa("10.0.0.2:8080"), sa("10.0.0.3:8080")],
                    affinity: Affinity::None
                }
            )],
            ..Plan::default()
        }
    );
}

#[test]
fn plan_for_a_deleted_service_closes_and_releases() {
    let before = web_table(&["10.0.0.1"]);
    let p = plan(&before, &Table::default());
    assert_eq!(p.close, vec![listen("10.96.0.10:80", Protocol::Tcp)]);
    assert_eq!(p.remove, vec![key("web", "", Protocol::Tcp)]);
    assert_eq!(p.remove_addresses, vec![ip("10.96.0.10")]);
    assert!(p.open.is_empty() && p.upsert.is_empty() && p.add_addresses.is_empty());
}

#[test]
fn plan_reopens_an_address_taken_over_by_another_service() {
    let before = web_table(&["10.0.0.1"]);
    let svc = service("api", "10.96.0.10", vec![port("", 80, "8080", "TCP")]);
    let (after, _) = table(vec![svc], vec![], &[]);
    let p = plan(&before, &after);
    let l = listen("10.96.0.10:80", Protocol::Tcp);
    assert_eq!(p.close, vec![l]);
    assert_eq!(p.open, vec![(l, key("api", "", Protocol::Tcp))]);
    assert!(p.add_addresses.is_empty() && p.remove_addresses.is_empty(), "{p:?}");
}
