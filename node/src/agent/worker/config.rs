//! What the runtime is asked to create for a container of the pod spec.

use std::net::IpAddr;

use flotilla_core::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use crate::agent::plan::pod_ref;
use crate::runtime::{ContainerConfig, Mount, SandboxConfig};

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

/// The runtime's configuration of the pod's sandbox.
pub(super) fn sandbox_config(pod: &Pod) -> SandboxConfig {
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    SandboxConfig {
        pod: pod_ref(pod),
        hostname,
        labels: pod.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements,
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
        assert_eq!(sandbox_config(&pod).hostname, "web");
    }
}
