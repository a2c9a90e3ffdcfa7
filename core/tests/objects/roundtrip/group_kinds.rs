//! The kinds of the named API groups: `apps`, `discovery.k8s.io`, `storage.k8s.io`,
//! `coordination.k8s.io` and `rbac.authorization.k8s.io`.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet,
    ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{TopologySelectorLabelRequirement, TopologySelectorTerm};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use proptest::prelude::*;

use super::pod::pod_template;
use super::{
    PROTOCOLS, bytes, condition_status, int_or_string, ip, key, label_selector, list, micro_time, name,
    object_meta, object_reference, one_of, opt, opt_list, opt_map, string_map, text, time,
};

/// A ReplicaSet.
pub(crate) fn replica_set() -> impl Strategy<Value = ReplicaSet> {
    let spec = (opt(any::<i32>()), opt(any::<i32>()), label_selector(), opt(pod_template())).prop_map(
        |(replicas, min_ready_seconds, selector, template)| ReplicaSetSpec {
            min_ready_seconds,
            replicas,
            selector,
            template,
        },
    );
    let condition = (name(), condition_status(), opt(time()), opt(text()), opt(text())).prop_map(
        |(type_, status, last_transition_time, message, reason)| ReplicaSetCondition {
            last_transition_time,
            message,
            reason,
            status,
            type_,
        },
    );
    let status =
        (any::<i32>(), proptest::array::uniform4(opt(any::<i32>())), opt(any::<i64>()), opt_list(condition))
            .prop_map(
                |(replicas, [ready, available, labeled, terminating], observed_generation, conditions)| {
                    ReplicaSetStatus {
                        available_replicas: available,
                        conditions,
                        fully_labeled_replicas: labeled,
                        observed_generation,
                        ready_replicas: ready,
                        replicas,
                        terminating_replicas: terminating,
                    }
                },
            );
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| ReplicaSet {
        metadata,
        spec,
        status,
    })
}

/// A Deployment.
pub(crate) fn deployment() -> impl Strategy<Value = Deployment> {
    let rolling = (opt(int_or_string()), opt(int_or_string()))
        .prop_map(|(max_surge, max_unavailable)| RollingUpdateDeployment { max_surge, max_unavailable });
    let strategy = (opt(one_of(&["RollingUpdate", "Recreate"])), opt(rolling))
        .prop_map(|(type_, rolling_update)| DeploymentStrategy { rolling_update, type_ });
    let spec = (
        (opt(any::<i32>()), label_selector(), pod_template(), opt(strategy)),
        proptest::array::uniform3(opt(any::<i32>())),
        opt(any::<bool>()),
    )
        .prop_map(
            |((replicas, selector, template, strategy), [min_ready, history, deadline], paused)| {
                DeploymentSpec {
                    min_ready_seconds: min_ready,
                    paused,
                    progress_deadline_seconds: deadline,
                    replicas,
                    revision_history_limit: history,
                    selector,
                    strategy,
                    template,
                }
            },
        );
    let condition = ((name(), condition_status()), (opt(time()), opt(time()), opt(text()), opt(text())))
        .prop_map(|((type_, status), (last_transition_time, last_update_time, message, reason))| {
            DeploymentCondition { last_transition_time, last_update_time, message, reason, status, type_ }
        });
    let status = (proptest::array::uniform7(opt(any::<i32>())), opt(any::<i64>()), opt_list(condition))
        .prop_map(
            |(
                [available, collision, ready, replicas, terminating, unavailable, updated],
                observed_generation,
                conditions,
            )| {
                DeploymentStatus {
                    available_replicas: available,
                    collision_count: collision,
                    conditions,
                    observed_generation,
                    ready_replicas: ready,
                    replicas,
                    terminating_replicas: terminating,
                    unavailable_replicas: unavailable,
                    updated_replicas: updated,
                }
            },
        );
    (object_meta(), opt(spec), opt(status)).prop_map(|(metadata, spec, status)| Deployment {
        metadata,
        spec,
        status,
    })
}

/// An EndpointSlice.
pub(crate) fn endpoint_slice() -> impl Strategy<Value = EndpointSlice> {
    let conditions = proptest::array::uniform3(opt(any::<bool>()))
        .prop_map(|[ready, serving, terminating]| EndpointConditions { ready, serving, terminating });
    let hints = (
        opt_list(name().prop_map(|name| ForNode { name })),
        opt_list(name().prop_map(|name| ForZone { name })),
    )
        .prop_map(|(for_nodes, for_zones)| EndpointHints { for_nodes, for_zones });
    let endpoint = (
        (list(ip()), opt(conditions), string_map(), opt(hints)),
        (opt(name()), opt(name()), opt(object_reference()), opt(name())),
    )
        .prop_map(
            |(
                (addresses, conditions, deprecated_topology, hints),
                (hostname, node_name, target_ref, zone),
            )| {
                Endpoint {
                    addresses,
                    conditions,
                    deprecated_topology,
                    hints,
                    hostname,
                    node_name,
                    target_ref,
                    zone,
                }
            },
        );
    let port = (opt(text()), opt(name()), opt(any::<i32>()), opt(one_of(PROTOCOLS)))
        .prop_map(|(app_protocol, name, port, protocol)| EndpointPort { app_protocol, name, port, protocol });
    (object_meta(), one_of(&["IPv4", "IPv6", "FQDN"]), list(endpoint), opt_list(port)).prop_map(
        |(metadata, address_type, endpoints, ports)| EndpointSlice {
            address_type,
            endpoints,
            metadata,
            ports,
        },
    )
}

/// A StorageClass.
pub(crate) fn storage_class() -> impl Strategy<Value = StorageClass> {
    let requirement =
        (key(), list(text())).prop_map(|(key, values)| TopologySelectorLabelRequirement { key, values });
    let term = opt_list(requirement)
        .prop_map(|match_label_expressions| TopologySelectorTerm { match_label_expressions });
    (
        (object_meta(), prop_oneof![Just("kubernetes.io/no-provisioner".to_string()), text()], string_map()),
        (opt(one_of(&["Delete", "Retain"])), opt(one_of(&["Immediate", "WaitForFirstConsumer"]))),
        (opt(any::<bool>()), opt_list(text()), opt_list(term)),
    )
        .prop_map(
            |(
                (metadata, provisioner, parameters),
                (reclaim_policy, volume_binding_mode),
                (allow_volume_expansion, mount_options, allowed_topologies),
            )| StorageClass {
                allow_volume_expansion,
                allowed_topologies,
                metadata,
                mount_options,
                parameters,
                provisioner,
                reclaim_policy,
                volume_binding_mode,
            },
        )
}

/// A PriorityClass, with values across the whole i32 range.
pub(crate) fn priority_class() -> impl Strategy<Value = PriorityClass> {
    (
        object_meta(),
        any::<i32>(),
        opt(any::<bool>()),
        opt(text()),
        opt(one_of(&["PreemptLowerPriority", "Never"])),
    )
        .prop_map(|(metadata, value, global_default, description, preemption_policy)| PriorityClass {
            metadata,
            value,
            global_default,
            description,
            preemption_policy,
        })
}

/// A Lease, whose times are `MicroTime`s.
pub(crate) fn lease() -> impl Strategy<Value = Lease> {
    let spec = (
        (opt(micro_time()), opt(text()), opt(any::<i32>()), opt(any::<i32>())),
        (opt(text()), opt(micro_time()), opt(text())),
    )
        .prop_map(
            |(
                (acquire_time, holder_identity, lease_duration_seconds, lease_transitions),
                (preferred_holder, renew_time, strategy),
            )| LeaseSpec {
                acquire_time,
                holder_identity,
                lease_duration_seconds,
                lease_transitions,
                preferred_holder,
                renew_time,
                strategy,
            },
        );
    (object_meta(), opt(spec)).prop_map(|(metadata, spec)| Lease { metadata, spec })
}

fn policy_rule() -> impl Strategy<Value = PolicyRule> {
    let verbs = &["get", "list", "watch", "create", "update", "patch", "delete", "*"];
    (
        opt_list(prop_oneof![one_of(&["", "apps", "*"]), text()]),
        opt_list(text()),
        opt_list(name()),
        opt_list(text()),
        list(one_of(verbs)),
    )
        .prop_map(|(api_groups, non_resource_urls, resource_names, resources, verbs)| PolicyRule {
            api_groups,
            non_resource_urls,
            resource_names,
            resources,
            verbs,
        })
}

fn subject() -> impl Strategy<Value = Subject> {
    (
        opt(one_of(&["", "rbac.authorization.k8s.io"])),
        one_of(&["User", "Group", "ServiceAccount"]),
        text(),
        opt(name()),
    )
        .prop_map(|(api_group, kind, name, namespace)| Subject { api_group, kind, name, namespace })
}

fn role_ref() -> impl Strategy<Value = RoleRef> {
    (Just("rbac.authorization.k8s.io".to_string()), one_of(&["Role", "ClusterRole"]), name())
        .prop_map(|(api_group, kind, name)| RoleRef { api_group, kind, name })
}

/// A Role.
pub(crate) fn role() -> impl Strategy<Value = Role> {
    (object_meta(), opt_list(policy_rule())).prop_map(|(metadata, rules)| Role { metadata, rules })
}

/// A ClusterRole, possibly aggregated.
pub(crate) fn cluster_role() -> impl Strategy<Value = ClusterRole> {
    let aggregation = opt_list(label_selector())
        .prop_map(|cluster_role_selectors| AggregationRule { cluster_role_selectors });
    (object_meta(), opt(aggregation), opt_list(policy_rule()))
        .prop_map(|(metadata, aggregation_rule, rules)| ClusterRole { aggregation_rule, metadata, rules })
}

/// A RoleBinding.
pub(crate) fn role_binding() -> impl Strategy<Value = RoleBinding> {
    (object_meta(), role_ref(), opt_list(subject())).prop_map(|(metadata, role_ref, subjects)| RoleBinding {
        metadata,
        role_ref,
        subjects,
    })
}

/// A ClusterRoleBinding.
pub(crate) fn cluster_role_binding() -> impl Strategy<Value = ClusterRoleBinding> {
    (object_meta(), role_ref(), opt_list(subject()))
        .prop_map(|(metadata, role_ref, subjects)| ClusterRoleBinding { metadata, role_ref, subjects })
}

/// A CertificateSigningRequest.
pub(crate) fn certificate_signing_request() -> impl Strategy<Value = CertificateSigningRequest> {
    let condition = (
        one_of(&["Approved", "Denied", "Failed"]),
        condition_status(),
        opt(text()),
        opt(text()),
        opt(time()),
        opt(time()),
    )
        .prop_map(|(type_, status, reason, message, last_transition_time, last_update_time)| {
            CertificateSigningRequestCondition {
                type_,
                status,
                reason,
                message,
                last_transition_time,
                last_update_time,
            }
        });
    let spec = (
        (bytes(), text(), opt_list(one_of(&["client auth", "digital signature", "server auth"]))),
        (opt(name()), opt(text()), opt_list(text()), opt_map(text(), list(text())), opt(600..100_000i32)),
    )
        .prop_map(
            |((request, signer_name, usages), (username, uid, groups, extra, expiration_seconds))| {
                CertificateSigningRequestSpec {
                    request,
                    signer_name,
                    usages,
                    username,
                    uid,
                    groups,
                    extra,
                    expiration_seconds,
                }
            },
        );
    let status = (opt(bytes()), opt_list(condition))
        .prop_map(|(certificate, conditions)| CertificateSigningRequestStatus { certificate, conditions });
    (object_meta(), spec, opt(status)).prop_map(|(metadata, spec, status)| CertificateSigningRequest {
        metadata,
        spec,
        status,
    })
}
