//! The core (`v1`) kinds but Pod: metadata and the fields Flotilla's components act on.

use k8s_openapi::api::core::v1::{
    ConfigMap, DaemonEndpoint, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Event, EventSeries,
    EventSource, HostPathVolumeSource, LoadBalancerIngress, LoadBalancerStatus, LocalObjectReference,
    Namespace, NamespaceCondition, NamespaceSpec, NamespaceStatus, Node, NodeAddress, NodeCondition,
    NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimCondition, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
    PersistentVolumeSpec, PersistentVolumeStatus, ResourceQuota, ResourceQuotaSpec, ResourceQuotaStatus,
    ScopeSelector, ScopedResourceSelectorRequirement, Secret, Service, ServiceAccount, ServicePort,
    ServiceSpec, ServiceStatus, Taint, VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use proptest::prelude::*;

use super::pod::node_selector;
use super::{
    ACCESS_MODES, PROTOCOLS, bytes, condition_status, int_or_string, ip, key, label_selector, micro_time,
    name, object_meta, object_reference, one_of, opt, opt_list, opt_map, quantities, string_map, text, time,
};

/// A Namespace.
pub(crate) fn namespace() -> impl Strategy<Value = Namespace> {
    let condition = (name(), condition_status(), opt(time()), opt(text()), opt(text())).prop_map(
        |(type_, status, last_transition_time, message, reason)| NamespaceCondition {
            last_transition_time,
            message,
            reason,
            status,
            type_,
        },
    );
    let spec = opt_list(name()).prop_map(|finalizers| NamespaceSpec { finalizers });
    let status = (opt(one_of(&["Active", "Terminating"])), opt_list(condition))
        .prop_map(|(phase, conditions)| NamespaceStatus { conditions, phase });
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| Namespace {
        metadata,
        spec,
        status,
    })
}

fn node_status() -> impl Strategy<Value = NodeStatus> {
    let condition = (
        one_of(&["Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"]),
        condition_status(),
        (opt(time()), opt(time()), opt(text()), opt(text())),
    )
        .prop_map(|(type_, status, (last_heartbeat_time, last_transition_time, message, reason))| {
            NodeCondition { last_heartbeat_time, last_transition_time, message, reason, status, type_ }
        });
    let address = (one_of(&["InternalIP", "ExternalIP", "Hostname"]), prop_oneof![ip(), name()])
        .prop_map(|(type_, address)| NodeAddress { address, type_ });
    let info = proptest::array::uniform10(text()).prop_map(|[a, b, c, d, e, f, g, h, i, j]| NodeSystemInfo {
        architecture: a,
        boot_id: b,
        container_runtime_version: c,
        kernel_version: d,
        kube_proxy_version: e,
        kubelet_version: f,
        machine_id: g,
        operating_system: h,
        os_image: i,
        swap: None,
        system_uuid: j,
    });
    let endpoints = opt(any::<i32>().prop_map(|port| DaemonEndpoint { port }))
        .prop_map(|kubelet_endpoint| NodeDaemonEndpoints { kubelet_endpoint });
    (
        (quantities(), quantities(), opt_list(condition), opt_list(address)),
        (opt(endpoints), opt(info), opt(one_of(&["Pending", "Running"])), opt_list(text())),
    )
        .prop_map(
            |(
                (capacity, allocatable, conditions, addresses),
                (daemon_endpoints, node_info, phase, in_use),
            )| {
                NodeStatus {
                    addresses,
                    allocatable,
                    capacity,
                    conditions,
                    daemon_endpoints,
                    node_info,
                    phase,
                    volumes_in_use: in_use,
                    ..Default::default()
                }
            },
        )
}

/// A Node.
pub(crate) fn node() -> impl Strategy<Value = Node> {
    let taint = (one_of(&["NoSchedule", "PreferNoSchedule", "NoExecute"]), key(), opt(time()), opt(text()))
        .prop_map(|(effect, key, time_added, value)| Taint { effect, key, time_added, value });
    let spec = (opt(text()), opt_list(text()), opt(text()), opt_list(taint), opt(any::<bool>())).prop_map(
        |(pod_cidr, pod_cidrs, provider_id, taints, unschedulable)| NodeSpec {
            pod_cidr,
            pod_cidrs,
            provider_id,
            taints,
            unschedulable,
            ..Default::default()
        },
    );
    (object_meta(), opt(spec), opt(node_status())).prop_map(|(metadata, spec, status)| Node {
        metadata,
        spec,
        status,
    })
}

/// A Service.
pub(crate) fn service() -> impl Strategy<Value = Service> {
    let port = (
        opt(name()),
        any::<i32>(),
        opt(int_or_string()),
        opt(one_of(PROTOCOLS)),
        opt(any::<i32>()),
        opt(text()),
    )
        .prop_map(|(name, port, target_port, protocol, node_port, app_protocol)| ServicePort {
            app_protocol,
            name,
            node_port,
            port,
            protocol,
            target_port,
        });
    let spec = (
        (
            opt(one_of(&["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])),
            string_map(),
            opt_list(port),
        ),
        (opt(prop_oneof![ip(), Just("None".to_string())]), opt_list(ip()), opt(text())),
        (opt(one_of(&["None", "ClientIP"])), opt(one_of(&["Cluster", "Local"]))),
    )
        .prop_map(
            |((type_, selector, ports), (cluster_ip, cluster_ips, external_name), (affinity, traffic))| {
                ServiceSpec {
                    cluster_ip,
                    cluster_ips,
                    external_name,
                    external_traffic_policy: traffic,
                    ports,
                    selector,
                    session_affinity: affinity,
                    type_,
                    ..Default::default()
                }
            },
        );
    let ingress = (opt(ip()), opt(name())).prop_map(|(ip, hostname)| LoadBalancerIngress {
        hostname,
        ip,
        ..Default::default()
    });
    let condition = ((name(), condition_status(), time()), (text(), opt(any::<i64>()), text())).prop_map(
        |((type_, status, last_transition_time), (message, observed_generation, reason))| Condition {
            last_transition_time,
            message,
            observed_generation,
            reason,
            status,
            type_,
        },
    );
    let status =
        (opt(opt_list(ingress).prop_map(|ingress| LoadBalancerStatus { ingress })), opt_list(condition))
            .prop_map(|(load_balancer, conditions)| ServiceStatus { conditions, load_balancer });
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| Service {
        metadata,
        spec,
        status,
    })
}

fn endpoint_address() -> impl Strategy<Value = EndpointAddress> {
    (ip(), opt(name()), opt(name()), opt(object_reference())).prop_map(
        |(ip, hostname, node_name, target_ref)| EndpointAddress { hostname, ip, node_name, target_ref },
    )
}

/// Endpoints.
pub(crate) fn endpoints() -> impl Strategy<Value = Endpoints> {
    let port = (opt(name()), any::<i32>(), opt(one_of(PROTOCOLS)), opt(text()))
        .prop_map(|(name, port, protocol, app_protocol)| EndpointPort { app_protocol, name, port, protocol });
    let subset = (opt_list(endpoint_address()), opt_list(endpoint_address()), opt_list(port)).prop_map(
        |(addresses, not_ready_addresses, ports)| EndpointSubset { addresses, not_ready_addresses, ports },
    );
    (object_meta(), opt_list(subset)).prop_map(|(metadata, subsets)| Endpoints { metadata, subsets })
}

/// A PersistentVolume.
pub(crate) fn persistent_volume() -> impl Strategy<Value = PersistentVolume> {
    let host_path = (text(), opt(one_of(&["", "Directory", "DirectoryOrCreate"])))
        .prop_map(|(path, type_)| HostPathVolumeSource { path, type_ });
    let spec = (
        (
            quantities(),
            opt_list(one_of(ACCESS_MODES)),
            opt(name()),
            opt(one_of(&["Retain", "Delete", "Recycle"])),
        ),
        (opt(host_path), opt(object_reference()), opt_list(text()), opt(one_of(&["Filesystem", "Block"]))),
        opt(opt(node_selector()).prop_map(|required| VolumeNodeAffinity { required })),
    )
        .prop_map(
            |(
                (capacity, access_modes, storage_class_name, reclaim),
                (host_path, claim_ref, mount_options, volume_mode),
                node_affinity,
            )| PersistentVolumeSpec {
                access_modes,
                capacity,
                claim_ref,
                host_path,
                mount_options,
                node_affinity,
                persistent_volume_reclaim_policy: reclaim,
                storage_class_name,
                volume_mode,
                ..Default::default()
            },
        );
    let status =
        (
            opt(one_of(&["Pending", "Available", "Bound", "Released", "Failed"])),
            opt(text()),
            opt(text()),
            opt(time()),
        )
            .prop_map(|(phase, message, reason, last_phase_transition_time)| {
                PersistentVolumeStatus { last_phase_transition_time, message, phase, reason }
            });
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| PersistentVolume {
        metadata,
        spec,
        status,
    })
}

/// A PersistentVolumeClaim.
pub(crate) fn persistent_volume_claim() -> impl Strategy<Value = PersistentVolumeClaim> {
    let resources = (quantities(), quantities())
        .prop_map(|(limits, requests)| VolumeResourceRequirements { limits, requests });
    let spec = (
        (opt_list(one_of(ACCESS_MODES)), opt(resources), opt(label_selector())),
        (opt(name()), opt(name()), opt(one_of(&["Filesystem", "Block"]))),
    )
        .prop_map(
            |((access_modes, resources, selector), (storage_class_name, volume_name, volume_mode))| {
                PersistentVolumeClaimSpec {
                    access_modes,
                    resources,
                    selector,
                    storage_class_name,
                    volume_mode,
                    volume_name,
                    ..Default::default()
                }
            },
        );
    let condition = ((name(), condition_status()), (opt(time()), opt(time()), opt(text()), opt(text())))
        .prop_map(|((type_, status), (last_probe_time, last_transition_time, message, reason))| {
            PersistentVolumeClaimCondition {
                last_probe_time,
                last_transition_time,
                message,
                reason,
                status,
                type_,
            }
        });
    let status = (
        opt(one_of(&["Pending", "Bound", "Lost"])),
        opt_list(one_of(ACCESS_MODES)),
        quantities(),
        quantities(),
        opt_list(condition),
    )
        .prop_map(|(phase, access_modes, capacity, allocated_resources, conditions)| {
            PersistentVolumeClaimStatus {
                access_modes,
                allocated_resources,
                capacity,
                conditions,
                phase,
                ..Default::default()
            }
        });
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| PersistentVolumeClaim {
        metadata,
        spec,
        status,
    })
}

/// A ConfigMap with text and binary data.
pub(crate) fn config_map() -> impl Strategy<Value = ConfigMap> {
    (object_meta(), opt_map(key(), text()), opt_map(key(), bytes()), opt(any::<bool>())).prop_map(
        |(metadata, data, binary_data, immutable)| ConfigMap { binary_data, data, immutable, metadata },
    )
}

/// A Secret with base64 `data` and the write-only `stringData`.
pub(crate) fn secret() -> impl Strategy<Value = Secret> {
    let types = &[
        "Opaque",
        "kubernetes.io/tls",
        "kubernetes.io/service-account-token",
        "kubernetes.io/dockerconfigjson",
    ];
    (object_meta(), opt_map(key(), bytes()), opt(any::<bool>()), string_map(), opt(one_of(types))).prop_map(
        |(metadata, data, immutable, string_data, type_)| Secret {
            data,
            immutable,
            metadata,
            string_data,
            type_,
        },
    )
}

/// A ResourceQuota with scopes, a scope selector and both halves of its status.
pub(crate) fn resource_quota() -> impl Strategy<Value = ResourceQuota> {
    let scopes = &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort"];
    let requirement =
        (one_of(&["PriorityClass", "BestEffort"]), one_of(&["In", "NotIn", "Exists"]), opt_list(name()))
            .prop_map(|(scope_name, operator, values)| ScopedResourceSelectorRequirement {
                operator,
                scope_name,
                values,
            });
    let selector = opt_list(requirement).prop_map(|match_expressions| ScopeSelector { match_expressions });
    let spec = (quantities(), opt_list(one_of(scopes)), opt(selector))
        .prop_map(|(hard, scopes, scope_selector)| ResourceQuotaSpec { hard, scope_selector, scopes });
    let status = (quantities(), quantities()).prop_map(|(hard, used)| ResourceQuotaStatus { hard, used });
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| ResourceQuota {
        metadata,
        spec,
        status,
    })
}

/// A ServiceAccount.
pub(crate) fn service_account() -> impl Strategy<Value = ServiceAccount> {
    (
        object_meta(),
        opt(any::<bool>()),
        opt_list(name().prop_map(|name| LocalObjectReference { name })),
        opt_list(object_reference()),
    )
        .prop_map(|(metadata, automount_service_account_token, image_pull_secrets, secrets)| {
            ServiceAccount { automount_service_account_token, image_pull_secrets, metadata, secrets }
        })
}

/// A core/v1 Event, with both its seconds and microseconds times.
pub(crate) fn event() -> impl Strategy<Value = Event> {
    let source = (opt(name()), opt(name())).prop_map(|(component, host)| EventSource { component, host });
    let series = (opt(any::<i32>()), opt(micro_time()))
        .prop_map(|(count, last_observed_time)| EventSeries { count, last_observed_time });
    (
        (object_meta(), object_reference(), opt(text()), opt(text()), opt(any::<i32>())),
        (opt(one_of(&["Normal", "Warning"])), opt(time()), opt(time()), opt(micro_time())),
        (opt(source), opt(name()), opt(name()), opt(text()), opt(object_reference()), opt(series)),
    )
        .prop_map(
            |(
                (metadata, involved_object, reason, message, count),
                (type_, first_timestamp, last_timestamp, event_time),
                (source, reporting_component, reporting_instance, action, related, series),
            )| Event {
                action,
                count,
                event_time,
                first_timestamp,
                involved_object,
                last_timestamp,
                message,
                metadata,
                reason,
                related,
                reporting_component,
                reporting_instance,
                series,
                source,
                type_,
            },
        )
}
