//! Pods, their specs and statuses, and pod templates (shared with ReplicaSet and Deployment):
//! the fields the scheduler, the kubelet and the workload controllers act on.

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, ContainerState,
    ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, HTTPHeader, HostPathVolumeSource,
    KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodCondition, PodIP, PodSpec, PodStatus, PodTemplateSpec,
    PreferredSchedulingTerm, Probe, ResourceFieldSelector, ResourceRequirements, SecretKeySelector,
    SecretVolumeSource, TCPSocketAction, Toleration, Volume, VolumeMount,
};
use proptest::prelude::*;

use super::{
    condition_status, int_or_string, ip, key, list, name, object_meta, one_of, opt, opt_list, quantities,
    quantity, string_map, text, time,
};

fn env_var_source() -> impl Strategy<Value = EnvVarSource> {
    prop_oneof![
        (name(), key(), opt(any::<bool>())).prop_map(|(name, key, optional)| EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector { key, name, optional }),
            ..Default::default()
        }),
        (name(), key(), opt(any::<bool>())).prop_map(|(name, key, optional)| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { key, name, optional }),
            ..Default::default()
        }),
        (opt(Just("v1".to_string())), one_of(&["metadata.name", "status.podIP", "spec.nodeName"])).prop_map(
            |(api_version, field_path)| EnvVarSource {
                field_ref: Some(ObjectFieldSelector { api_version, field_path }),
                ..Default::default()
            }
        ),
        (opt(name()), opt(quantity()), one_of(&["limits.cpu", "requests.memory"])).prop_map(
            |(container_name, divisor, resource)| EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector { container_name, divisor, resource }),
                ..Default::default()
            }
        ),
    ]
}

fn env_var() -> impl Strategy<Value = EnvVar> {
    ("[A-Z_][A-Z0-9_]{0,8}", opt(text()), opt(env_var_source()))
        .prop_map(|(name, value, value_from)| EnvVar { name, value, value_from })
}

fn container_port() -> impl Strategy<Value = ContainerPort> {
    (any::<i32>(), opt(ip()), opt(any::<i32>()), opt(name()), opt(one_of(&["TCP", "UDP", "SCTP"]))).prop_map(
        |(container_port, host_ip, host_port, name, protocol)| ContainerPort {
            container_port,
            host_ip,
            host_port,
            name,
            protocol,
        },
    )
}

fn resources() -> impl Strategy<Value = ResourceRequirements> {
    (quantities(), quantities()).prop_map(|(limits, requests)| ResourceRequirements {
        claims: None,
        limits,
        requests,
    })
}

/// A probe with one handler (exec, httpGet or tcpSocket) and its timing fields.
fn probe() -> BoxedStrategy<Probe> {
    let header = (text(), text()).prop_map(|(name, value)| HTTPHeader { name, value });
    let handler = prop_oneof![
        opt_list(text())
            .prop_map(|command| Probe { exec: Some(ExecAction { command }), ..Default::default() }),
        (opt(text()), opt_list(header), opt(text()), int_or_string(), opt(one_of(&["HTTP", "HTTPS"])))
            .prop_map(|(host, http_headers, path, port, scheme)| Probe {
                http_get: Some(HTTPGetAction { host, http_headers, path, port, scheme }),
                ..Default::default()
            }),
        (opt(text()), int_or_string()).prop_map(|(host, port)| Probe {
            tcp_socket: Some(TCPSocketAction { host, port }),
            ..Default::default()
        }),
    ];
    let timing = (
        opt(any::<i32>()),
        opt(any::<i32>()),
        opt(any::<i32>()),
        opt(any::<i32>()),
        opt(any::<i32>()),
        opt(any::<i64>()),
    );
    (handler, timing)
        .prop_map(|(probe, (initial, period, timeout, success, failure, grace))| Probe {
            initial_delay_seconds: initial,
            period_seconds: period,
            timeout_seconds: timeout,
            success_threshold: success,
            failure_threshold: failure,
            termination_grace_period_seconds: grace,
            ..probe
        })
        .boxed()
}

fn volume_mount() -> impl Strategy<Value = VolumeMount> {
    (
        text(),
        name(),
        opt(any::<bool>()),
        opt(text()),
        opt(one_of(&["None", "HostToContainer", "Bidirectional"])),
    )
        .prop_map(|(mount_path, name, read_only, sub_path, mount_propagation)| VolumeMount {
            mount_path,
            mount_propagation,
            name,
            read_only,
            sub_path,
            ..Default::default()
        })
}

prop_compose! {
    /// A container with everything the kubelet and the scheduler read.
    fn container_unboxed()(
        (name, image, image_pull_policy, command, args, working_dir) in (
            name(),
            opt(prop_oneof![Just("nginx:1.27".to_string()), text()]),
            opt(one_of(&["Always", "IfNotPresent", "Never"])),
            opt_list(text()),
            opt_list(text()),
            opt(text()),
        ),
        (env, ports, resources, volume_mounts) in
            (opt_list(env_var()), opt_list(container_port()), opt(resources()), opt_list(volume_mount())),
        (liveness_probe, readiness_probe, startup_probe) in (opt(probe()), opt(probe()), opt(probe())),
    ) -> Container {
        Container {
            args,
            command,
            env,
            image,
            image_pull_policy,
            liveness_probe,
            name,
            ports,
            readiness_probe,
            resources,
            startup_probe,
            volume_mounts,
            working_dir,
            ..Default::default()
        }
    }
}

/// A container, boxed (see `object_meta`).
fn container() -> BoxedStrategy<Container> {
    container_unboxed().boxed()
}

fn key_to_path() -> impl Strategy<Value = KeyToPath> {
    (key(), opt(0..=0o777), text()).prop_map(|(key, mode, path)| KeyToPath { key, mode, path })
}

/// A volume of one of the kinds a node can mount without a plugin.
fn volume() -> impl Strategy<Value = Volume> {
    let source = prop_oneof![
        (opt(one_of(&["", "Memory"])), opt(quantity())).prop_map(|(medium, size_limit)| Volume {
            empty_dir: Some(EmptyDirVolumeSource { medium, size_limit }),
            ..Default::default()
        }),
        (text(), opt(one_of(&["", "Directory", "DirectoryOrCreate", "File"]))).prop_map(|(path, type_)| {
            Volume { host_path: Some(HostPathVolumeSource { path, type_ }), ..Default::default() }
        }),
        (name(), opt(any::<bool>())).prop_map(|(claim_name, read_only)| Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name, read_only }),
            ..Default::default()
        }),
        (name(), opt_list(key_to_path()), opt(0..=0o777), opt(any::<bool>())).prop_map(
            |(name, items, default_mode, optional)| Volume {
                config_map: Some(ConfigMapVolumeSource { default_mode, items, name, optional }),
                ..Default::default()
            }
        ),
        (opt(name()), opt_list(key_to_path()), opt(0..=0o777), opt(any::<bool>())).prop_map(
            |(secret_name, items, default_mode, optional)| Volume {
                secret: Some(SecretVolumeSource { default_mode, items, optional, secret_name }),
                ..Default::default()
            }
        ),
    ];
    (name(), source).prop_map(|(name, v)| Volume { name, ..v })
}

fn node_selector_requirement() -> impl Strategy<Value = NodeSelectorRequirement> {
    (key(), one_of(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]), opt_list(text()))
        .prop_map(|(key, operator, values)| NodeSelectorRequirement { key, operator, values })
}

fn node_selector_term() -> impl Strategy<Value = NodeSelectorTerm> {
    (opt_list(node_selector_requirement()), opt_list(node_selector_requirement()))
        .prop_map(|(match_expressions, match_fields)| NodeSelectorTerm { match_expressions, match_fields })
}

/// Required node terms, as a pod's node affinity and a persistent volume's use them.
pub(crate) fn node_selector() -> impl Strategy<Value = NodeSelector> {
    list(node_selector_term()).prop_map(|node_selector_terms| NodeSelector { node_selector_terms })
}

fn affinity() -> impl Strategy<Value = Affinity> {
    let preferred = (any::<i32>(), node_selector_term())
        .prop_map(|(weight, preference)| PreferredSchedulingTerm { preference, weight });
    (opt(node_selector()), opt_list(preferred)).prop_map(|(required, preferred)| Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: preferred,
            required_during_scheduling_ignored_during_execution: required,
        }),
        ..Default::default()
    })
}

fn toleration() -> impl Strategy<Value = Toleration> {
    (
        opt(one_of(&["NoSchedule", "PreferNoSchedule", "NoExecute"])),
        opt(key()),
        opt(one_of(&["Exists", "Equal"])),
        opt(any::<i64>()),
        opt(text()),
    )
        .prop_map(|(effect, key, operator, toleration_seconds, value)| Toleration {
            effect,
            key,
            operator,
            toleration_seconds,
            value,
        })
}

prop_compose! {
    /// A pod spec with the fields the scheduler, the kubelet and validation act on.
    fn pod_spec_unboxed()(
        (containers, init_containers, volumes) in (list(container()), opt_list(container()), opt_list(volume())),
        (restart_policy, node_selector, affinity, tolerations, node_name, scheduler_name) in (
            opt(one_of(&["Always", "OnFailure", "Never"])),
            string_map(),
            opt(affinity()),
            opt_list(toleration()),
            opt(name()),
            opt(prop_oneof![Just("default-scheduler".to_string()), name()]),
        ),
        (priority, termination_grace_period_seconds, active_deadline_seconds) in
            (opt(any::<i32>()), opt(any::<i64>()), opt(any::<i64>())),
        (service_account_name, host_network, dns_policy, hostname) in (
            opt(name()),
            opt(any::<bool>()),
            opt(one_of(&["ClusterFirst", "Default", "None"])),
            opt(name()),
        ),
    ) -> PodSpec {
        PodSpec {
            active_deadline_seconds,
            affinity,
            containers,
            dns_policy,
            host_network,
            hostname,
            init_containers,
            node_name,
            node_selector,
            priority,
            restart_policy,
            scheduler_name,
            service_account_name,
            termination_grace_period_seconds,
            tolerations,
            volumes,
            ..Default::default()
        }
    }
}

/// A pod spec, boxed (see `object_meta`).
fn pod_spec() -> BoxedStrategy<PodSpec> {
    pod_spec_unboxed().boxed()
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        (opt(text()), opt(text())).prop_map(|(message, reason)| ContainerState {
            waiting: Some(ContainerStateWaiting { message, reason }),
            ..Default::default()
        }),
        opt(time()).prop_map(|started_at| ContainerState {
            running: Some(ContainerStateRunning { started_at }),
            ..Default::default()
        }),
        (opt(text()), any::<i32>(), opt(time()), opt(text()), opt(text()), opt(any::<i32>()), opt(time()),)
            .prop_map(|(container_id, exit_code, finished_at, message, reason, signal, started_at)| {
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        container_id,
                        exit_code,
                        finished_at,
                        message,
                        reason,
                        signal,
                        started_at,
                    }),
                    ..Default::default()
                }
            }),
    ]
}

fn container_status() -> impl Strategy<Value = ContainerStatus> {
    (
        (name(), text(), text(), any::<bool>(), any::<i32>()),
        (opt(any::<bool>()), opt(text()), opt(container_state()), opt(container_state())),
    )
        .prop_map(
            |((name, image, image_id, ready, restart_count), (started, container_id, state, last_state))| {
                ContainerStatus {
                    container_id,
                    image,
                    image_id,
                    last_state,
                    name,
                    ready,
                    restart_count,
                    started,
                    state,
                    ..Default::default()
                }
            },
        )
}

fn pod_condition() -> impl Strategy<Value = PodCondition> {
    (
        (one_of(&["PodScheduled", "Initialized", "ContainersReady", "Ready"]), condition_status()),
        (opt(time()), opt(time()), opt(text()), opt(any::<i64>()), opt(text())),
    )
        .prop_map(
            |(
                (type_, status),
                (last_probe_time, last_transition_time, message, observed_generation, reason),
            )| {
                PodCondition {
                    last_probe_time,
                    last_transition_time,
                    message,
                    observed_generation,
                    reason,
                    status,
                    type_,
                }
            },
        )
}

prop_compose! {
    /// A pod status as the kubelet reports it.
    fn pod_status_unboxed()(
        (phase, conditions, container_statuses, init_container_statuses) in (
            opt(one_of(&["Pending", "Running", "Succeeded", "Failed", "Unknown"])),
            opt_list(pod_condition()),
            opt_list(container_status()),
            opt_list(container_status()),
        ),
        (pod_ip, pod_ips, host_ip, start_time, qos_class) in (
            opt(ip()),
            opt_list(ip().prop_map(|ip| PodIP { ip })),
            opt(ip()),
            opt(time()),
            opt(one_of(&["Guaranteed", "Burstable", "BestEffort"])),
        ),
        (message, reason, nominated_node_name, observed_generation) in
            (opt(text()), opt(text()), opt(name()), opt(any::<i64>())),
    ) -> PodStatus {
        PodStatus {
            conditions,
            container_statuses,
            host_ip,
            init_container_statuses,
            message,
            nominated_node_name,
            observed_generation,
            phase,
            pod_ip,
            pod_ips,
            qos_class,
            reason,
            start_time,
            ..Default::default()
        }
    }
}

/// A pod status, boxed (see `object_meta`).
fn pod_status() -> BoxedStrategy<PodStatus> {
    pod_status_unboxed().boxed()
}

/// A pod template (ReplicaSet, Deployment).
pub(crate) fn pod_template() -> BoxedStrategy<PodTemplateSpec> {
    (opt(object_meta()), opt(pod_spec()))
        .prop_map(|(metadata, spec)| PodTemplateSpec { metadata, spec })
        .boxed()
}

/// A whole pod.
pub(crate) fn pod() -> impl Strategy<Value = Pod> {
    (object_meta(), opt(pod_spec()), opt(pod_status())).prop_map(|(metadata, spec, status)| Pod {
        metadata,
        spec,
        status,
    })
}
