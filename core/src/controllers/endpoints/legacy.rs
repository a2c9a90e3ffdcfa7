//! The decision of the Endpoints controller (Kubernetes' `pkg/controller/endpoint`): the
//! `v1` Endpoints object a Service with a selector should have, and what to write to get it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pods::{self, AddressType};
use super::subsets::{repack_subsets, truncate_subsets};
use crate::controllers::util;

/// The Endpoints controller's name, as it marks the Endpoints objects it manages.
pub const ENDPOINTS_CONTROLLER_NAME: &str = "endpoint-controller";

/// The label marking Endpoints written by this controller (Kubernetes 1.33 sets it too): only
/// such Endpoints are deleted with their Service, as any other was written by a user.
pub const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";

/// The label on the endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Set to `truncated` on Endpoints holding only the first
/// [`MAX_ENDPOINTS_ADDRESSES`](super::MAX_ENDPOINTS_ADDRESSES) addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// Kubernetes' time of the change that caused the last write. This controller does not track
/// it and removes a stale one whenever it writes.
pub const LAST_CHANGE_TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What the controller writes for one Service.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointsPlan {
    /// Nothing: the object is as it should be, or is not this controller's.
    Unchanged,
    /// Create this object.
    Create(Endpoints),
    /// Replace the object with this one (its `resourceVersion` is the one read).
    Update(Endpoints),
    /// Delete this object (the Service is gone and the object is this controller's).
    Delete(Endpoints),
}

/// Whether this controller wrote the object (it carries [`ENDPOINTS_MANAGED_BY_LABEL`]).
pub fn is_managed_endpoints(endpoints: &Endpoints) -> bool {
    let labels = endpoints.metadata.labels.as_ref();
    labels.and_then(|l| l.get(ENDPOINTS_MANAGED_BY_LABEL)).map(String::as_str)
        == Some(ENDPOINTS_CONTROLLER_NAME)
}

/// The family of the one address each pod contributes: the Service's first `ipFamilies`
/// entry, else the family of its cluster IP, else (headless, or no IP allocated) that of the
/// pod's first IP.
fn address_family(service: &Service, pod: &Pod) -> Option<AddressType> {
    let spec = service.spec.as_ref();
    let first_family = spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first());
    if let Some(family) = first_family.and_then(|f| AddressType::parse(f)) {
        return Some(family);
    }
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).filter(|ip| !ip.is_empty() && *ip != "None");
    if let Some(family) = cluster_ip.and_then(AddressType::of_ip) {
        return Some(family);
    }
    pods::pod_ips(pod).first().and_then(|ip| AddressType::of_ip(ip))
}

/// The pod's address for the Service, if it has an IP of the Service's family.
fn pod_address(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let family = address_family(service, pod)?;
    let ip = pods::pod_ips(pod).into_iter().find(|ip| AddressType::of_ip(ip) == Some(family))?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: pods::hostname_for(pod, service),
        node_name: pods::node_name(pod),
        target_ref: Some(pods::pod_reference(pod)),
    })
}

/// The subsets the Service's Endpoints should hold, repacked and sorted: every selected pod
/// that is an endpoint (see [`pods::should_pod_be_in_endpoints`]), ready ones in `addresses`
/// and the rest in `notReadyAddresses` (all ready with `publishNotReadyAddresses`), with each
/// service port its `targetPort` resolves to on the pod. A pod on which a named port does not
/// resolve is left out of that port only. Pods of other namespaces or not selected are ignored.
pub fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(selector) = pods::selector_of(service) else { return Vec::new() };
    let publish = pods::publishes_not_ready(service);
    let ports = pods::service_ports(service);
    let mut raw = Vec::new();
    for pod in pods {
        if pod.metadata.namespace != service.metadata.namespace
            || !pods::selects(selector, pod.metadata.labels.as_ref())
            || !pods::should_pod_be_in_endpoints(pod, publish)
        {
            continue;
        }
        let Some(address) = pod_address(service, pod) else { continue };
        let ready = publish || util::is_pod_ready(pod);
        let subset = |port: Option<EndpointPort>| {
            let addresses = Some(vec![address.clone()]);
            EndpointSubset {
                addresses: if ready { addresses.clone() } else { None },
                not_ready_addresses: if ready { None } else { addresses },
                ports: port.map(|p| vec![p]),
            }
        };
        if ports.is_empty() {
            // Only a headless Service may have no ports; its endpoints are bare addresses.
            if pods::is_headless(service) {
                raw.push(subset(None));
            }
            continue;
        }
        for sp in ports {
            let Some(number) = pods::find_port(pod, sp) else { continue };
            raw.push(subset(Some(EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(pods::protocol(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })));
        }
    }
    repack_subsets(&raw)
}

/// The labels of the Service's Endpoints: the Service's, the headless marker when it is
/// headless, and [`ENDPOINTS_MANAGED_BY_LABEL`].
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if pods::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels.insert(ENDPOINTS_MANAGED_BY_LABEL.into(), ENDPOINTS_CONTROLLER_NAME.into());
    labels
}

/// Subsets as compared: a pod's resourceVersion in a target reference is not a change.
fn comparable(subsets: Option<&[EndpointSubset]>) -> Vec<EndpointSubset> {
    let mut subsets = subsets.unwrap_or(&[]).to_vec();
    for s in &mut subsets {
        for a in [&mut s.addresses, &mut s.not_ready_addresses].into_iter().flatten().flatten() {
            if let Some(r) = &mut a.target_ref {
                r.resource_version = None;
            }
        }
    }
    subsets
}

/// What to write so that the Service's Endpoints match `pods` (every pod of its namespace, or
/// only the selected ones). `current` is the Endpoints object of the Service's name, if any.
///
/// A Service without a selector, or of type `ExternalName`, is left alone. When the Service
/// is gone, the Endpoints are deleted only if this controller manages them.
pub fn plan_endpoints(
    service: Option<&Service>,
    pods: &[&Pod],
    current: Option<&Endpoints>,
) -> EndpointsPlan {
    let Some(service) = service else {
        return match current {
            Some(ep) if is_managed_endpoints(ep) => EndpointsPlan::Delete(ep.clone()),
            _ => EndpointsPlan::Unchanged,
        };
    };
    if !pods::has_managed_endpoints(service) {
        return EndpointsPlan::Unchanged;
    }
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate_subsets(&mut subsets);
    let labels = desired_labels(service);
    let over_capacity = truncated.then_some("truncated");
    if let Some(ep) = current {
        let annotations = ep.metadata.annotations.as_ref();
        let marked = annotations.and_then(|a| a.get(OVER_CAPACITY_ANNOTATION)).map(String::as_str);
        if comparable(ep.subsets.as_deref()) == comparable(Some(&subsets))
            && ep.metadata.labels.as_ref() == Some(&labels)
            && marked == over_capacity
        {
            return EndpointsPlan::Unchanged;
        }
    }
    let mut desired = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    let mut annotations = desired.metadata.annotations.take().unwrap_or_default();
    annotations.remove(LAST_CHANGE_TRIGGER_TIME_ANNOTATION);
    match over_capacity {
        Some(v) => annotations.insert(OVER_CAPACITY_ANNOTATION.into(), v.into()),
        None => annotations.remove(OVER_CAPACITY_ANNOTATION),
    };
    desired.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    desired.metadata.labels = Some(labels);
    desired.subsets = (!subsets.is_empty()).then_some(subsets);
    if current.is_some() { EndpointsPlan::Update(desired) } else { EndpointsPlan::Create(desired) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::pods::testing::{pod, service};
    use super::*;

    fn ips(l: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        l.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    fn created(plan: EndpointsPlan) -> Endpoints {
        match plan {
            EndpointsPlan::Create(ep) => ep,
            other => panic!("expected a create, got {other:?}"),
        }
    }

    #[test]
    fn ready_and_not_ready_pods_with_resolved_ports() {
        let svc = service("web", "web", json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let (a, b, c) = (
            pod("a", "web", "10.0.0.1", true),
            pod("b", "web", "10.0.0.2", false),
            pod("c", "db", "10.0.0.3", true),
        );
        let subsets = desired_subsets(&svc, &[&a, &b, &c]);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
        let port = &subsets[0].ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let addr = &subsets[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(addr.node_name.as_deref(), Some("n1"));
        let r = addr.target_ref.as_ref().expect("target");
        assert_eq!(
            (r.kind.as_deref(), r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("ns"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn a_named_port_missing_on_a_pod_leaves_it_out_of_that_port_only() {
        let svc = service(
            "web",
            "web",
            json!([{"name": "http", "port": 80, "targetPort": "http"},
                   {"name": "admin", "port": 9000, "targetPort": "admin"}]),
        );
        let a = pod("a", "web", "10.0.0.1", true);
        let mut b = pod("b", "web", "10.0.0.2", true);
        b.spec.as_mut().expect("spec").containers[0]
            .ports
            .as_mut()
            .expect("ports")
            .push(serde_json::from_value(json!({"name": "admin", "containerPort": 9090})).expect("port"));
        let subsets = desired_subsets(&svc, &[&a, &b]);
        type Ports<'a> = Vec<(Option<&'a str>, i32)>;
        let by_port: Vec<(Ports, Vec<&str>)> = subsets
            .iter()
            .map(|s| {
                (s.ports.iter().flatten().map(|p| (p.name.as_deref(), p.port)).collect(), ips(&s.addresses))
            })
            .collect();
        assert_eq!(
            by_port,
            [
                (vec![(Some("admin"), 9090)], vec!["10.0.0.2"]),
                (vec![(Some("http"), 8080)], vec!["10.0.0.1", "10.0.0.2"])
            ]
        );
    }

    #[test]
    fn publish_not_ready_makes_every_pod_ready_even_deleting_ones() {
        let mut svc = service("web", "web", json!([{"port": 80}]));
        let a = pod("a", "web", "10.0.0.1", false);
        let mut b = pod("b", "web", "10.0.0.2", true);
        b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().expect("time"),
        ));
        let plain = desired_subsets(&svc, &[&a, &b]);
        assert_eq!(
            (ips(&plain[0].addresses), ips(&plain[0].not_ready_addresses)),
            (vec![], vec!["10.0.0.1"])
        );
        svc.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
        let published = desired_subsets(&svc, &[&a, &b]);
        assert_eq!(ips(&published[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(published[0].not_ready_addresses, None);
    }

    #[test]
    fn headless_services_without_ports_list_bare_addresses_with_hostnames() {
        let mut svc = service("db", "db", json!([]));
        svc.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
        let mut a = pod("a", "db", "10.0.0.1", true);
        let spec = a.spec.as_mut().expect("spec");
        (spec.hostname, spec.subdomain) = (Some("db-0".into()), Some("db".into()));
        let ep = created(plan_endpoints(Some(&svc), &[&a], None));
        let subsets = ep.subsets.as_ref().expect("subsets");
        assert_eq!((subsets.len(), subsets[0].ports.as_ref()), (1, None));
        assert_eq!(subsets[0].addresses.as_ref().expect("addresses")[0].hostname.as_deref(), Some("db-0"));
        let labels = ep.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(is_managed_endpoints(&ep));
    }

    #[test]
    fn the_address_family_follows_the_service() {
        let mut svc = service("web", "web", json!([{"port": 80}]));
        let mut dual = pod("a", "web", "10.0.0.1", true);
        dual.status.as_mut().expect("status").pod_ips =
            Some(serde_json::from_value(json!([{"ip": "10.0.0.1"}, {"ip": "fd00::1"}])).expect("ips"));
        assert_eq!(ips(&desired_subsets(&svc, &[&dual])[0].addresses), ["10.0.0.1"]);
        svc.spec.as_mut().expect("spec").ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        assert_eq!(ips(&desired_subsets(&svc, &[&dual])[0].addresses), ["fd00::1"]);
        // A single-stack IPv4 pod has no address for an IPv6 service.
        let v4 = pod("b", "web", "10.0.0.2", true);
        assert_eq!(desired_subsets(&svc, &[&v4]), vec![]);
    }

    #[test]
    fn an_unchanged_input_plans_no_write() {
        let svc = service("web", "web", json!([{"name": "http", "port": 80, "targetPort": "http"}]));
        let (a, b) = (pod("a", "web", "10.0.0.1", true), pod("b", "web", "10.0.0.2", false));
        let mut ep = created(plan_endpoints(Some(&svc), &[&a, &b], None));
        let again = created(plan_endpoints(Some(&svc), &[&b, &a], None));
        let bytes = |e: &Endpoints| serde_json::to_vec(e).expect("json");
        assert_eq!(bytes(&ep), bytes(&again), "pod order does not matter");
        ep.metadata.resource_version = Some("7".into());
        assert_eq!(plan_endpoints(Some(&svc), &[&b, &a], Some(&ep)), EndpointsPlan::Unchanged);
        // b becomes ready: an update of the object read, resourceVersion kept as precondition.
        let b_ready = pod("b", "web", "10.0.0.2", true);
        let EndpointsPlan::Update(updated) = plan_endpoints(Some(&svc), &[&a, &b_ready], Some(&ep)) else {
            panic!("expected an update");
        };
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(ips(&updated.subsets.as_ref().expect("subsets")[0].addresses), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn label_changes_and_stale_trigger_times_are_written() {
        let mut svc = service("web", "web", json!([{"port": 80}]));
        let a = pod("a", "web", "10.0.0.1", true);
        let mut ep = created(plan_endpoints(Some(&svc), &[&a], None));
        ep.metadata.annotations =
            Some(BTreeMap::from([(LAST_CHANGE_TRIGGER_TIME_ANNOTATION.to_string(), "old".to_string())]));
        assert_eq!(
            plan_endpoints(Some(&svc), &[&a], Some(&ep)),
            EndpointsPlan::Unchanged,
            "not worth a write"
        );
        svc.metadata.labels.as_mut().expect("labels").insert("team".into(), "b".into());
        let EndpointsPlan::Update(updated) = plan_endpoints(Some(&svc), &[&a], Some(&ep)) else {
            panic!("expected an update");
        };
        assert_eq!(
            updated.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str),
            Some("b")
        );
        assert_eq!(updated.metadata.annotations, None);
    }

    #[test]
    fn services_without_selectors_are_left_alone() {
        let mut svc = service("web", "web", json!([{"port": 80}]));
        svc.spec.as_mut().expect("spec").selector = None;
        let user_ep = Endpoints {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            subsets: None,
        };
        let a = pod("a", "web", "10.0.0.1", true);
        assert_eq!(plan_endpoints(Some(&svc), &[&a], Some(&user_ep)), EndpointsPlan::Unchanged);
        assert_eq!(plan_endpoints(Some(&svc), &[&a], None), EndpointsPlan::Unchanged);
    }

    #[test]
    fn only_managed_endpoints_go_with_their_service() {
        let svc = service("web", "web", json!([{"port": 80}]));
        let managed = created(plan_endpoints(Some(&svc), &[], None));
        assert_eq!(managed.subsets, None, "no pods: no subsets");
        assert_eq!(plan_endpoints(None, &[], Some(&managed)), EndpointsPlan::Delete(managed.clone()));
        let user_ep = Endpoints {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            subsets: None,
        };
        assert_eq!(plan_endpoints(None, &[], Some(&user_ep)), EndpointsPlan::Unchanged);
        assert_eq!(plan_endpoints(None, &[], None), EndpointsPlan::Unchanged);
    }

    #[test]
    fn over_capacity_endpoints_are_truncated_and_marked() {
        let svc = service("web", "web", json!([{"port": 80}]));
        let pods: Vec<Pod> = (0..1001)
            .map(|i| pod(&format!("p{i}"), "web", &format!("10.0.{}.{}", i / 250, i % 250), true))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let ep = created(plan_endpoints(Some(&svc), &refs, None));
        assert_eq!(ep.subsets.as_ref().expect("subsets")[0].addresses.as_ref().map(Vec::len), Some(1000));
        let marked = ep.metadata.annotations.as_ref().and_then(|a| a.get(OVER_CAPACITY_ANNOTATION));
        assert_eq!(marked.map(String::as_str), Some("truncated"));
        assert_eq!(plan_endpoints(Some(&svc), &refs, Some(&ep)), EndpointsPlan::Unchanged);
        let EndpointsPlan::Update(fewer) = plan_endpoints(Some(&svc), &refs[..10], Some(&ep)) else {
            panic!("expected an update");
        };
        assert_eq!(fewer.metadata.annotations, None);
    }
}
