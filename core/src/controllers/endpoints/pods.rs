//! What both endpoints controllers need to know about a Service and its pods: which pods are
//! endpoints at all, their addresses by IP family, and the port a service port resolves to on
//! each (Kubernetes' `ShouldPodBeInEndpoints`, `FindPort`, `ShouldSetHostname`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::util;

/// The protocol of a port that names none.
const DEFAULT_PROTOCOL: &str = "TCP";

/// An IP family, spelled as EndpointSlices spell their `addressType` (and Services their
/// `ipFamilies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressType {
    /// IPv4 addresses (IPv4-mapped IPv6 addresses count as IPv4, as in Kubernetes).
    IPv4,
    /// IPv6 addresses.
    IPv6,
}

impl AddressType {
    /// `IPv4` or `IPv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    /// The family named `IPv4` or `IPv6`; `None` for anything else (`FQDN` slices).
    pub fn parse(name: &str) -> Option<AddressType> {
        match name {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    /// The family of an IP address; `None` when `ip` is not one.
    pub fn of_ip(ip: &str) -> Option<AddressType> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(AddressType::IPv4),
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some(AddressType::IPv4),
            IpAddr::V6(_) => Some(AddressType::IPv6),
        }
    }
}

/// The Service's selector, or `None` when it has none. An empty selector counts as none:
/// Kubernetes stores an empty map as no map, so such a Service's endpoints are the user's.
pub fn selector_of(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the endpoints controllers manage this Service's endpoints: it has a selector and
/// is not of type `ExternalName`.
pub fn has_managed_endpoints(service: &Service) -> bool {
    let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    !external && selector_of(service).is_some()
}

/// Whether `selector` (a Service's equality selector) selects an object with `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service is headless (`clusterIP: None`). Flotilla allocates no cluster IPs,
/// so an empty `clusterIP` does not make a Service headless here (Kubernetes treats it so only
/// because its API server always fills one in).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether `publishNotReadyAddresses` is set.
pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// The service's ports.
pub fn service_ports(service: &Service) -> &[ServicePort] {
    service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or(&[])
}

/// The pod's IPs: `status.podIPs`, or `status.podIP` when a writer set only that.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> =
        status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).filter(|ip| !ip.is_empty()).collect();
    if !listed.is_empty() {
        return listed;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// Whether the pod has finished (`Succeeded` or `Failed`).
pub fn is_pod_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the pod is an endpoint at all: not finished, with an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_pod_terminal(pod)
        && !pod_ips(pod).is_empty()
        && (include_terminating || !util::is_deleting(&pod.metadata))
}

/// Whether the pod's `hostname` belongs in its endpoint: it has one and its `subdomain` is
/// the Service's name (in the same namespace).
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let hostname = spec.hostname.as_deref().unwrap_or("");
    !hostname.is_empty()
        && spec.subdomain.is_some()
        && spec.subdomain == service.metadata.name
        && pod.metadata.namespace == service.metadata.namespace
}

/// The pod's hostname, when [`should_set_hostname`].
pub fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    should_set_hostname(pod, service).then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone())).flatten()
}

/// A protocol, defaulted.
pub(crate) fn protocol(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PROTOCOL)
}

/// The container port `port` resolves to on `pod`: a numeric `targetPort` as is (the service
/// port when unset or zero), a named one looked up among the ports of the pod's containers
/// and sidecars with the same protocol. `None` when the name resolves to nothing.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(0)) => return Some(port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(s)) if s.is_empty() => return Some(port.port),
        Some(IntOrString::String(s)) => s,
    };
    let spec = pod.spec.as_ref()?;
    let want = protocol(port.protocol.as_deref());
    let sidecars =
        spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name.as_str()) && protocol(p.protocol.as_deref()) == want)
        .map(|p| p.container_port)
}

/// A reference to the pod, as endpoints carry it.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The node the pod runs on, if it is bound.
pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders of services and pods for the endpoints tests.

    use serde_json::{Value, json};

    use super::*;

    /// A service in namespace `ns` selecting `app=<app>`, with the given ports (JSON).
    pub(crate) fn service(name: &str, app: &str, ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "labels": {"team": "a"}},
            "spec": {"selector": {"app": app}, "ports": ports},
        }))
        .expect("test service")
    }

    /// A running pod `name` labelled `app=<app>` with IP `ip` on node `n1`, ready or not, with
    /// one container exposing `http` on 8080/TCP and `dns` on 53/UDP.
    pub(crate) fn pod(name: &str, app: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("test pod")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::*;
    use super::*;

    fn port(v: serde_json::Value) -> ServicePort {
        serde_json::from_value(v).expect("test port")
    }

    #[test]
    fn address_types_follow_ip_syntax() {
        assert_eq!(AddressType::of_ip("10.0.0.1"), Some(AddressType::IPv4));
        assert_eq!(AddressType::of_ip("fd00::1"), Some(AddressType::IPv6));
        assert_eq!(AddressType::of_ip("::ffff:10.0.0.1"), Some(AddressType::IPv4));
        assert_eq!(AddressType::of_ip("not-an-ip"), None);
        assert_eq!(AddressType::parse("FQDN"), None);
        assert_eq!(AddressType::parse(AddressType::IPv6.as_str()), Some(AddressType::IPv6));
    }

    #[test]
    fn target_ports_resolve_by_number_or_by_name_and_protocol() {
        let p = pod("a", "web", "10.0.0.1", true);
        assert_eq!(find_port(&p, &port(json!({"port": 80}))), Some(80));
        assert_eq!(find_port(&p, &port(json!({"port": 80, "targetPort": 9000}))), Some(9000));
        assert_eq!(find_port(&p, &port(json!({"port": 80, "targetPort": "http"}))), Some(8080));
        assert_eq!(
            find_port(&p, &port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))),
            Some(53)
        );
        // The name exists, but for another protocol.
        assert_eq!(find_port(&p, &port(json!({"port": 53, "targetPort": "dns"}))), None);
        assert_eq!(find_port(&p, &port(json!({"port": 80, "targetPort": "nope"}))), None);
    }

    #[test]
    fn sidecars_expose_named_ports_but_plain_init_containers_do_not() {
        let mut p = pod("a", "web", "10.0.0.1", true);
        let spec = p.spec.as_mut().expect("spec");
        spec.init_containers = Some(vec![
            serde_json::from_value(json!({"name": "init", "ports": [{"name": "setup", "containerPort": 1}]}))
                .expect("init"),
            serde_json::from_value(json!({"name": "proxy", "restartPolicy": "Always",
                "ports": [{"name": "proxy", "containerPort": 15001}]}))
            .expect("sidecar"),
        ]);
        assert_eq!(find_port(&p, &port(json!({"port": 80, "targetPort": "proxy"}))), Some(15001));
        assert_eq!(find_port(&p, &port(json!({"port": 80, "targetPort": "setup"}))), None);
    }

    #[test]
    fn finished_unaddressed_and_deleting_pods_are_not_endpoints() {
        let running = pod("a", "web", "10.0.0.1", false);
        assert!(should_pod_be_in_endpoints(&running, false));
        let mut done = running.clone();
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        assert!(!should_pod_be_in_endpoints(&done, true));
        let mut no_ip = running.clone();
        let status = no_ip.status.as_mut().expect("status");
        (status.pod_ip, status.pod_ips) = (None, None);
        assert!(!should_pod_be_in_endpoints(&no_ip, true));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().expect("time"),
        ));
        assert!(!should_pod_be_in_endpoints(&deleting, false));
        assert!(should_pod_be_in_endpoints(&deleting, true));
    }

    #[test]
    fn pod_ip_stands_in_for_missing_pod_ips() {
        let mut p = pod("a", "web", "10.0.0.1", true);
        p.status.as_mut().expect("status").pod_ips = None;
        assert_eq!(pod_ips(&p), ["10.0.0.1"]);
    }

    #[test]
    fn hostname_needs_the_service_as_subdomain() {
        let svc = service("web", "web", json!([{"port": 80}]));
        let mut p = pod("a", "web", "10.0.0.1", true);
        let spec = p.spec.as_mut().expect("spec");
        spec.hostname = Some("a".into());
        assert_eq!(hostname_for(&p, &svc), None);
        p.spec.as_mut().expect("spec").subdomain = Some("web".into());
        assert_eq!(hostname_for(&p, &svc).as_deref(), Some("a"));
        p.spec.as_mut().expect("spec").subdomain = Some("other".into());
        assert_eq!(hostname_for(&p, &svc), None);
    }

    #[test]
    fn empty_selectors_and_external_names_are_left_to_users() {
        let mut svc = service("web", "web", json!([{"port": 80}]));
        assert!(has_managed_endpoints(&svc));
        svc.spec.as_mut().expect("spec").selector = Some(BTreeMap::new());
        assert!(!has_managed_endpoints(&svc));
        let mut ext = service("web", "web", json!([{"port": 80}]));
        ext.spec.as_mut().expect("spec").type_ = Some("ExternalName".into());
        assert!(!has_managed_endpoints(&ext));
    }

    #[test]
    fn selectors_need_every_label() {
        let sel = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let labels =
            BTreeMap::from([("app".to_string(), "web".to_string()), ("x".to_string(), "y".to_string())]);
        assert!(selects(&sel, Some(&labels)));
        assert!(!selects(&sel, None));
        let other = BTreeMap::from([("app".to_string(), "db".to_string())]);
        assert!(!selects(&sel, Some(&other)));
    }
}
