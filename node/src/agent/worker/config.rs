//! What the runtime is asked to create for a container of the pod spec.

use std::net::IpAddr;

use flotilla_core::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use crate::agent::plan::pod_ref;
use crate::runtime::{ContainerConfig, Mount, PortMapping, Protocol, SandboxConfig};

/// The value of a `fieldRef` environment variable, for the fields Kubernetes' downward API
/// offers through env; `None` for others.
fn field_value(pod: &Pod, path: &str, pod_ip: Option<IpAddr>, host_ip: Option<&str>) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" => pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "status.hostIP" => host_ip.unwrap_or_default().to_string(),
        _ => {
            let key = path.strip_prefix("metadata.labels['")?.strip_suffix("']")?;
            m.labels.as_ref()?.get(key)?.clone()
        }
    })
}

/// The container's environment: literal values and `fieldRef`s, in order (other sources,
/// ConfigMap and Secret keys among them, are not supported and left out).
pub(super) fn environment(
    pod: &Pod,
    c: &SpecContainer,
    pod_ip: Option<IpAddr>,
    host_ip: Option<&str>,
) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .filter_map(|e| match (&e.value, &e.value_from) {
            (Some(v), _) => Some((e.name.clone(), v.clone())),
            (None, Some(from)) => {
                let path = &from.field_ref.as_ref()?.field_path;
                field_value(pod, path, pod_ip, host_ip).map(|v| (e.name.clone(), v))
            }
            (None, None) => Some((e.name.clone(), String::new())),
        })
        .collect()
}

fn limit(c: &SpecContainer, name: &str) -> Option<Quantity> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get(name)?;
    Quantity::parse(&q.0).ok()
}

/// The runtime's configuration of container `c`.
pub(super) fn container_config(
    pod: &Pod,
    c: &SpecContainer,
    restart_count: u32,
    mounts: Vec<Mount>,
    pod_ip: Option<IpAddr>,
    host_ip: Option<&str>,
) -> ContainerConfig {
    ContainerConfig {
        pod: pod_ref(pod),
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env: environment(pod, c, pod_ip, host_ip),
        working_dir: c.working_dir.clone().filter(|d| !d.is_empty()),
        mounts,
        cpu_limit_millis: limit(c, "cpu").and_then(|q| u64::try_from(q.milli_value()).ok()),
        memory_limit_bytes: limit(c, "memory").and_then(|q| u64::try_from(q.value()).ok()),
        restart_count,
    }
}

/// A host port of the pod spec that cannot be published.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} of container {container:?}: {problem}")]
pub(crate) struct PortError {
    /// The field, as a path in the pod (`spec.containers[0].ports[1].hostPort`).
    pub(crate) field: String,
    /// The container's name.
    pub(crate) container: String,
    /// What is wrong with it.
    pub(crate) problem: String,
}

/// The ports of the pod's containers that have a `hostPort`, as the kubelet gathers them
/// (init containers' ports are not published). A `hostPort` of 0 is none. A port outside
/// 1..=65535, an unknown protocol, a `hostIP` that is not an address, or a second mapping of
/// the same host port, protocol and address is an error naming the field.
pub(super) fn port_mappings(pod: &Pod) -> Result<Vec<PortMapping>, PortError> {
    let mut mappings: Vec<PortMapping> = Vec::new();
    let mut owners: Vec<String> = Vec::new();
    let containers = pod.spec.iter().flat_map(|s| &s.containers);
    for (index, c) in containers.enumerate() {
        for (port_index, port) in c.ports.iter().flatten().enumerate() {
            let at = format!("spec.containers[{index}].ports[{port_index}]");
            let error = |field: &str, problem: String| PortError {
                field: format!("{at}.{field}"),
                container: c.name.clone(),
                problem,
            };
            let in_range = |field: &str, value: i32| {
                u16::try_from(value)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| error(field, format!("{value} is outside 1..=65535")))
            };
            let host_port = match port.host_port {
                None | Some(0) => continue,
                Some(value) => in_range("hostPort", value)?,
            };
            let container_port = in_range("containerPort", port.container_port)?;
            let protocol = match port.protocol.as_deref() {
                None | Some("") | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(other) => return Err(error("protocol", format!("{other:?} is not TCP, UDP or SCTP"))),
            };
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") => None,
                Some(text) => Some(
                    text.parse().map_err(|_| error("hostIP", format!("{text:?} is not an IP address")))?,
                ),
            };
            let mapping = PortMapping { container_port, host_port, protocol, host_ip };
            let same =
                |m: &PortMapping| (m.host_port, m.protocol, m.host_ip) == (host_port, protocol, host_ip);
            if let Some(first) = mappings.iter().position(same) {
                let on = host_ip.map_or_else(|| "every address".to_string(), |ip| ip.to_string());
                return Err(error(
                    "hostPort",
                    format!(
                        "{host_port}/{} on {on} is already taken by {}",
                        protocol.lowercase(),
                        owners[first]
                    ),
                ));
            }
            mappings.push(mapping);
            owners.push(format!("{at} (container {:?})", c.name));
        }
    }
    Ok(mappings)
}

/// The runtime's configuration of the pod's sandbox; fails on host ports that cannot be
/// published.
pub(super) fn sandbox_config(pod: &Pod) -> Result<SandboxConfig, PortError> {
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    Ok(SandboxConfig {
        pod: pod_ref(pod),
        hostname,
        labels: pod.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
        ports: port_mappings(pod)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn config_carries_command_env_and_limits() {
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        };
        let c = SpecContainer {
            name: "app".into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into()]),
            args: Some(vec!["-c".into(), "true".into()]),
            env: Some(vec![
                EnvVar { name: "A".into(), value: Some("1".into()), value_from: None },
                EnvVar { name: "POD".into(), value: None, value_from: Some(field("metadata.name")) },
                EnvVar { name: "IP".into(), value: None, value_from: Some(field("status.podIP")) },
                EnvVar {
                    name: "TIER".into(),
                    value: None,
                    value_from: Some(field("metadata.labels['tier']")),
                },
                EnvVar { name: "NOPE".into(), value: None, value_from: Some(field("spec.unknown")) },
            ]),
            resources: Some(ResourceRequirements {
                limits: Some(
                    [("cpu".to_string(), Q("500m".into())), ("memory".to_string(), Q("64Mi".into()))].into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec { containers: vec![c.clone()], ..Default::default() }),
            status: None,
        };
        let ip: IpAddr = "10.1.0.2".parse().expect("an IP literal");
        let cfg = container_config(&pod, &c, 3, Vec::new(), Some(ip), Some("10.0.0.1"));
        assert_eq!(cfg.command, vec!["sh"]);
        assert_eq!(cfg.args, vec!["-c", "true"]);
        let env: Vec<(&str, &str)> = cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, vec![("A", "1"), ("POD", "web"), ("IP", "10.1.0.2"), ("TIER", "front")]);
        assert_eq!(cfg.cpu_limit_millis, Some(500));
        assert_eq!(cfg.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert_eq!(cfg.restart_count, 3);
        assert_eq!((cfg.pod.name.as_str(), cfg.pod.uid.as_str()), ("web", "u1"));
        let sandbox = sandbox_config(&pod).expect("no host ports");
        assert_eq!((sandbox.hostname.as_str(), sandbox.ports.len()), ("web", 0));
    }

    fn port(
        container_port: i32,
        host_port: Option<i32>,
        protocol: Option<&str>,
        host_ip: Option<&str>,
    ) -> ContainerPort {
        ContainerPort {
            container_port,
            host_port,
            protocol: protocol.map(str::to_string),
            host_ip: host_ip.map(str::to_string),
            name: None,
        }
    }

    fn pod_with_ports(containers: Vec<(&str, Vec<ContainerPort>)>) -> Pod {
        let containers = containers
            .into_iter()
            .map(|(name, ports)| SpecContainer {
                name: name.into(),
                ports: Some(ports),
                ..Default::default()
            })
            .collect();
        let init = SpecContainer {
            name: "init".into(),
            ports: Some(vec![port(1, Some(1), None, None)]),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            spec: Some(PodSpec { containers, init_containers: Some(vec![init]), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn host_ports_become_mappings() {
        let pod = pod_with_ports(vec![
            (
                "web",
                vec![
                    port(80, Some(8080), None, None),
                    port(9090, None, None, None),
                    port(53, Some(5353), Some("UDP"), Some("127.0.0.1")),
                ],
            ),
            (
                "side",
                vec![
                    port(80, Some(8080), Some("UDP"), None),
                    port(7, Some(0), None, None),
                    port(132, Some(8080), Some("SCTP"), Some("::1")),
                ],
            ),
        ]);
        let mapping = |container_port, host_port, protocol, host_ip: Option<&str>| PortMapping {
            container_port,
            host_port,
            protocol,
            host_ip: host_ip.map(|ip| ip.parse().expect("an IP literal")),
        };
        assert_eq!(
            sandbox_config(&pod).expect("valid ports").ports,
            vec![
                mapping(80, 8080, Protocol::Tcp, None),
                mapping(53, 5353, Protocol::Udp, Some("127.0.0.1")),
                mapping(80, 8080, Protocol::Udp, None),
                mapping(132, 8080, Protocol::Sctp, Some("::1")),
            ],
            "ports without a host port and init containers' ports are not published"
        );
        // The same host port on another address is another mapping.
        let pod = pod_with_ports(vec![(
            "a",
            vec![port(1, Some(80), None, Some("127.0.0.1")), port(2, Some(80), None, Some("127.0.0.2"))],
        )]);
        assert_eq!(port_mappings(&pod).expect("distinct addresses").len(), 2);
    }

    #[test]
    fn bad_host_ports_name_the_field_and_container() {
        let cases = [
            (
                vec![
                    ("a", vec![port(80, Some(8080), None, None)]),
                    ("b", vec![port(81, Some(70000), None, None)]),
                ],
                "spec.containers[1].ports[0].hostPort",
                "\"b\"",
                "70000 is outside 1..=65535",
            ),
            (
                vec![("a", vec![port(80, Some(1), None, None), port(81, Some(-1), None, None)])],
                "spec.containers[0].ports[1].hostPort",
                "\"a\"",
                "-1 is outside",
            ),
            (
                vec![("a", vec![port(0, Some(8080), None, None)])],
                "spec.containers[0].ports[0].containerPort",
                "\"a\"",
                "0 is outside",
            ),
            (
                vec![("a", vec![port(80, Some(8080), Some("ICMP"), None)])],
                "spec.containers[0].ports[0].protocol",
                "\"a\"",
                "\"ICMP\" is not TCP",
            ),
            (
                vec![("a", vec![port(80, Some(8080), None, Some("localhost"))])],
                "spec.containers[0].ports[0].hostIP",
                "\"a\"",
                "not an IP address",
            ),
            (
                vec![
                    ("a", vec![port(80, Some(8080), Some("TCP"), None)]),
                    ("b", vec![port(90, Some(8080), None, None)]),
                ],
                "spec.containers[1].ports[0].hostPort",
                "\"b\"",
                "8080/tcp on every address is already taken by spec.containers[0].ports[0] (container \"a\")",
            ),
        ];
        for (containers, field, container, problem) in cases {
            let error = sandbox_config(&pod_with_ports(containers)).expect_err(field);
            assert_eq!(error.field, field);
            let message = error.to_string();
            assert!(message.starts_with(&format!("{field} of container {container}: ")), "{message}");
            assert!(message.contains(problem), "{message}");
        }
    }
}
