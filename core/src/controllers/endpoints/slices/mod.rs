//! The decision of the EndpointSlice controller (Kubernetes' `pkg/controller/endpointslice`
//! and `k8s.io/endpointslice`): the `discovery.k8s.io/v1` EndpointSlices a Service with a
//! selector should have, per address type and set of ports, at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, reached with as few writes as possible.

mod placement;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::legacy::HEADLESS_LABEL;
use super::pods::{self, AddressType};
use crate::controllers::util;

/// The EndpointSlice controller's name, the value of [`SLICE_MANAGED_BY_LABEL`] on the slices
/// it manages (slices with another value are someone else's and never touched).
pub const ENDPOINTSLICE_CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// The label naming the manager of an EndpointSlice.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How many endpoints one slice holds at most (kube-controller-manager's default
/// `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The writes that bring a Service's EndpointSlices in line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// New slices (named by `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Slices replaced in place; each carries the `resourceVersion` it was read at.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub delete: Vec<EndpointSlice>,
}

impl SlicePlan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    fn extend(&mut self, other: SlicePlan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }
}

/// Whether this controller manages the slice.
pub fn is_managed_slice(slice: &EndpointSlice) -> bool {
    label(slice, SLICE_MANAGED_BY_LABEL) == Some(ENDPOINTSLICE_CONTROLLER_NAME)
}

/// The Service a slice belongs to (its [`SERVICE_NAME_LABEL`]).
pub fn service_name_of(slice: &EndpointSlice) -> Option<&str> {
    label(slice, SERVICE_NAME_LABEL).filter(|n| !n.is_empty())
}

fn label<'a>(slice: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    slice.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether the slice names the Service (by uid) as an owner.
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or("");
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.kind == "Service" && r.api_version == "v1")
}

/// The address types a Service's slices are kept for: its `ipFamilies`, else the family of
/// its cluster IPs. Flotilla's API server fills in neither, so for a Service with neither the
/// families of the selected pods' IPs are used, or IPv4 while no pod has an IP.
pub fn address_types(service: &Service, pods: &[&Pod]) -> BTreeSet<AddressType> {
    let spec = service.spec.as_ref();
    let families: BTreeSet<AddressType> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| AddressType::parse(f))
        .collect();
    if !families.is_empty() {
        return families;
    }
    let cluster_ips = spec.and_then(|s| s.cluster_ips.as_ref()).into_iter().flatten();
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_ref());
    let from_ips: BTreeSet<AddressType> =
        cluster_ips.chain(cluster_ip).filter_map(|ip| AddressType::of_ip(ip)).collect();
    if !from_ips.is_empty() {
        return from_ips;
    }
    let mut seen: BTreeSet<AddressType> = selected(service, pods)
        .flat_map(|p| pods::pod_ips(p).into_iter().filter_map(AddressType::of_ip).collect::<Vec<_>>())
        .collect();
    if seen.is_empty() {
        seen.insert(AddressType::IPv4);
    }
    seen
}

/// The pods of the Service's namespace it selects that are endpoints (terminating ones
/// included: slices report them with `terminating: true`).
fn selected<'a>(service: &'a Service, pods: &'a [&'a Pod]) -> impl Iterator<Item = &'a Pod> + 'a {
    let selector = pods::selector_of(service);
    pods.iter().copied().filter(move |p| {
        selector.is_some_and(|s| pods::selects(s, p.metadata.labels.as_ref()))
            && p.metadata.namespace == service.metadata.namespace
            && pods::should_pod_be_in_endpoints(p, true)
    })
}

/// The labels of the Service's slices: the Service's own (without the reserved ones), the
/// headless marker, the Service's name and this controller's.
pub fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if pods::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(SLICE_MANAGED_BY_LABEL.into(), ENDPOINTSLICE_CONTROLLER_NAME.into());
    labels
}

/// A set of ports as compared: sorted (name, number, protocol, appProtocol).
type PortsKey = Vec<(String, i32, String, String)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                pods::protocol(p.protocol.as_deref()).to_string(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// An endpoint's identity (Kubernetes' endpoint hash): its addresses, hostname and target.
/// Two endpoints with the same identity are one endpoint, possibly in two states.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EndpointKey {
    target: (String, String),
    hostname: String,
    addresses: Vec<String>,
}

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut addresses = e.addresses.clone();
    addresses.sort();
    let r = e.target_ref.as_ref();
    EndpointKey {
        target: (
            r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
            r.and_then(|r| r.name.clone()).unwrap_or_default(),
        ),
        hostname: e.hostname.clone().unwrap_or_default(),
        addresses,
    }
}

/// The ports the Service's ports resolve to on the pod, in the Service's order. A named port
/// the pod lacks is left out, so such a pod lands in a slice of its own port set.
fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    pods::service_ports(service)
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(pods::find_port(pod, sp)?),
                protocol: Some(pods::protocol(sp.protocol.as_deref()).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The pod as an endpoint of `address_type` (without addresses if it has no IP of that type).
fn pod_endpoint(pod: &Pod, service: &Service, address_type: AddressType) -> Endpoint {
    let serving = util::is_pod_ready(pod);
    let terminating = util::is_deleting(&pod.metadata);
    // A terminating pod is never ready, unless the Service publishes not-ready addresses.
    let ready = pods::publishes_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: pods::pod_ips(pod)
            .into_iter()
            .filter(|ip| AddressType::of_ip(ip) == Some(address_type))
            .map(str::to_string)
            .collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pods::hostname_for(pod, service),
        node_name: pods::node_name(pod),
        target_ref: Some(pods::pod_reference(pod)),
        ..Default::default()
    }
}

/// The endpoints of one address type that share one set of ports.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

fn desired_groups(service: &Service, pods: &[&Pod], address_type: AddressType) -> BTreeMap<PortsKey, Group> {
    let mut groups: BTreeMap<PortsKey, Group> = BTreeMap::new();
    for pod in selected(service, pods) {
        let ports = endpoint_ports(service, pod);
        let group =
            groups.entry(ports_key(&ports)).or_insert_with(|| Group { ports, endpoints: BTreeMap::new() });
        let endpoint = pod_endpoint(pod, service, address_type);
        if !endpoint.addresses.is_empty() {
            group.endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    groups
}

/// A new, empty slice of the Service (named `<service>-<random>` by the registry).
fn new_slice(service: &Service, ports: &[EndpointPort], address_type: AddressType) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", service.metadata.name.as_deref().unwrap_or(""))),
            namespace: service.metadata.namespace.clone(),
            labels: Some(desired_labels(service)),
            owner_references: Some(vec![util::controller_reference(service)]),
            ..Default::default()
        },
        address_type: address_type.as_str().to_string(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// What to write so that the Service's slices hold exactly its endpoints. `pods` are the pods
/// of the Service's namespace (or only the selected ones); `existing` are the slices this
/// controller manages for the Service's name.
///
/// A Service without a selector, or of type `ExternalName`, is left alone. When the Service
/// is gone its slices are deleted (the garbage collector would too, through their owner
/// reference; doing it here does not depend on it running). A Service being deleted gets no
/// new slices. Slices of an address type the Service no longer has, or owned by an earlier
/// Service of the same name, are deleted or reused.
pub fn plan_slices(
    service: Option<&Service>,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    max_per_slice: usize,
) -> SlicePlan {
    let max_per_slice = max_per_slice.max(1);
    let mut existing: Vec<&EndpointSlice> =
        existing.iter().copied().filter(|s| is_managed_slice(s)).collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let Some(service) = service else {
        return SlicePlan { delete: existing.into_iter().cloned().collect(), ..Default::default() };
    };
    if !pods::has_managed_endpoints(service) {
        return SlicePlan::default();
    }
    let types = address_types(service, pods);
    let mut plan = SlicePlan::default();
    let mut by_type: BTreeMap<AddressType, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        match AddressType::parse(&slice.address_type).filter(|t| types.contains(t)) {
            Some(t) => by_type.entry(t).or_default().push(slice),
            None => plan.delete.push(slice.clone()),
        }
    }
    for t in types {
        let slices = by_type.remove(&t).unwrap_or_default();
        plan.extend(placement::plan_address_type(
            service,
            desired_groups(service, pods, t),
            &slices,
            t,
            max_per_slice,
        ));
    }
    if util::is_deleting(&service.metadata) {
        // New slices would race the garbage collector deleting the Service's slices.
        plan.create.clear();
    }
    plan
}
