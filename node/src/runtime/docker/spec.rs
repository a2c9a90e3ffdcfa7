//! What Docker is asked to create: names, labels and create bodies, as pure functions of the
//! runtime's configs (tested without a daemon).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount as DockerMount, MountType, PortBinding, PortMap,
};

use crate::runtime::{ContainerConfig, Error as RuntimeError, PodRef, PortMapping, SandboxConfig, labels};

/// The value of [`labels::ROLE`] on sandboxes.
pub(crate) const ROLE_SANDBOX: &str = "sandbox";
/// The value of [`labels::ROLE`] on containers.
pub(crate) const ROLE_CONTAINER: &str = "container";
/// Every name starts with this, so `docker ps` shows at a glance what Flotilla runs.
const NAME_PREFIX: &str = "flotilla";
/// How many characters of the pod uid go into names (enough to tell apart two pods that
/// reuse a namespace and name, short enough to read).
const UID_PREFIX_LEN: usize = 8;
/// The reason of a container whose configuration cannot be turned into a Docker request.
pub(crate) const CREATE_CONFIG_ERROR: &str = "CreateContainerConfigError";
const NANOS_PER_MILLICORE: u64 = 1_000_000;

/// Keeps the characters Docker allows in names (`[a-zA-Z0-9_.-]`), replacing others by `-`.
fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect()
}

fn uid_prefix(uid: &str) -> String {
    sanitize(&uid.chars().take(UID_PREFIX_LEN).collect::<String>())
}

/// `flotilla_<namespace>_<pod>_POD_<uid8>`: one sandbox per pod, so a second create for the
/// same pod conflicts instead of leaking a duplicate. `POD` is uppercase so that no container
/// (whose names are lowercase DNS labels) can take it.
pub(crate) fn sandbox_name(pod: &PodRef) -> String {
    format!("{NAME_PREFIX}_{}_{}_POD_{}", sanitize(&pod.namespace), sanitize(&pod.name), uid_prefix(&pod.uid))
}

/// `flotilla_<namespace>_<pod>_<container>_<restart>_<uid8>`: unique per attempt, so a retried
/// create of the same attempt conflicts instead of leaking a duplicate.
pub(crate) fn container_name(config: &ContainerConfig) -> String {
    let pod = &config.pod;
    format!(
        "{NAME_PREFIX}_{}_{}_{}_{}_{}",
        sanitize(&pod.namespace),
        sanitize(&pod.name),
        sanitize(&config.name),
        config.restart_count,
        uid_prefix(&pod.uid)
    )
}

fn pod_labels(node: &str, pod: &PodRef, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_UID.to_owned(), pod.uid.clone()),
        (labels::POD_NAMESPACE.to_owned(), pod.namespace.clone()),
        (labels::POD_NAME.to_owned(), pod.name.clone()),
        (labels::ROLE.to_owned(), role.to_owned()),
        (labels::NODE.to_owned(), node.to_owned()),
    ])
}

/// The labels of a sandbox: the config's extra labels, overridden by the agent's own.
pub(crate) fn sandbox_labels(node: &str, config: &SandboxConfig) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = config.labels.clone().into_iter().collect();
    all.extend(pod_labels(node, &config.pod, ROLE_SANDBOX));
    all
}

/// The labels of a container.
pub(crate) fn container_labels(node: &str, config: &ContainerConfig) -> HashMap<String, String> {
    let mut all = pod_labels(node, &config.pod, ROLE_CONTAINER);
    all.insert(labels::CONTAINER_NAME.to_owned(), config.name.clone());
    all.insert(labels::RESTART_COUNT.to_owned(), config.restart_count.to_string());
    all
}

/// The host ports to publish as Docker wants them: exposed ports (`80/tcp`) and, for each,
/// its bindings (several host ports may map to one container port). `None` for no ports.
fn published_ports(ports: &[PortMapping]) -> (Option<Vec<String>>, Option<PortMap>) {
    if ports.is_empty() {
        return (None, None);
    }
    let mut bindings: PortMap = HashMap::new();
    let mut exposed = Vec::new();
    for port in ports {
        let key = format!("{}/{}", port.container_port, port.protocol.lowercase());
        let binding = PortBinding {
            host_ip: port.host_ip.map(|ip| ip.to_string()),
            host_port: Some(port.host_port.to_string()),
        };
        let entry = bindings.entry(key.clone()).or_insert_with(|| {
            exposed.push(key);
            Some(Vec::new())
        });
        entry.get_or_insert_with(Vec::new).push(binding);
    }
    (Some(exposed), Some(bindings))
}

/// The sandbox: the configured image with its own command (a pause-like process), on the
/// configured network, with a shareable IPC namespace that the containers join, and the
/// pod's host ports published (the containers share its network namespace, so a port they
/// listen on is the sandbox's).
pub(crate) fn sandbox_body(
    node: &str,
    image: &str,
    network: &str,
    config: &SandboxConfig,
) -> ContainerCreateBody {
    let (exposed_ports, port_bindings) = published_ports(&config.ports);
    ContainerCreateBody {
        image: Some(image.to_owned()),
        hostname: Some(config.hostname.clone()).filter(|h| !h.is_empty()),
        labels: Some(sandbox_labels(node, config)),
        exposed_ports,
        host_config: Some(HostConfig {
            network_mode: Some(network.to_owned()),
            ipc_mode: Some("shareable".to_owned()),
            port_bindings,
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// A container joining the sandbox's network and IPC namespaces (so it shares the pod's IP,
/// `localhost` and hostname) with the config's command, env, mounts and limits.
///
/// `command` replaces the image's entrypoint and, as in Kubernetes, drops the image's `CMD`
/// unless `args` are given too (Docker does the same when an entrypoint is set). Mounts use
/// Docker's `Mounts` API rather than `Binds`: the daemon then refuses a missing host path
/// (`bind source path does not exist`) instead of silently creating an empty directory, and
/// paths with `:` or `,` need no escaping. Swap is limited to the memory limit, as the kubelet
/// does, so a container over its limit is OOM-killed rather than swapping.
pub(crate) fn container_body(
    node: &str,
    sandbox_id: &str,
    config: &ContainerConfig,
) -> Result<ContainerCreateBody, RuntimeError> {
    let config_error = |detail: String| RuntimeError::Container { reason: CREATE_CONFIG_ERROR, detail };
    let container = &config.name;
    let mut env = Vec::with_capacity(config.env.len());
    for (name, value) in &config.env {
        if name.is_empty() || name.contains('=') {
            return Err(config_error(format!(
                "container {container}: env var name {name:?} is empty or has '='"
            )));
        }
        env.push(format!("{name}={value}"));
    }
    let mut mounts = Vec::with_capacity(config.mounts.len());
    for mount in &config.mounts {
        let path_text = |path: &std::path::Path| {
            path.to_str().map(str::to_owned).ok_or_else(|| {
                config_error(format!("container {container}: mount path {} is not UTF-8", path.display()))
            })
        };
        mounts.push(DockerMount {
            typ: Some(MountType::BIND),
            source: Some(path_text(&mount.host_path)?),
            target: Some(path_text(&mount.container_path)?),
            read_only: Some(mount.read_only),
            ..DockerMount::default()
        });
    }
    let nano_cpus = config
        .cpu_limit_millis
        .map(|millis| {
            millis.checked_mul(NANOS_PER_MILLICORE).and_then(|nanos| i64::try_from(nanos).ok()).ok_or_else(
                || {
                    config_error(format!(
                        "container {container}: cpu limit of {millis} millicores is out of range"
                    ))
                },
            )
        })
        .transpose()?;
    let memory = config
        .memory_limit_bytes
        .map(|bytes| {
            i64::try_from(bytes).map_err(|_| {
                config_error(format!("container {container}: memory limit of {bytes} bytes is out of range"))
            })
        })
        .transpose()?;
    let namespace_of_sandbox = format!("container:{sandbox_id}");
    Ok(ContainerCreateBody {
        image: Some(config.image.clone()),
        entrypoint: Some(config.command.clone()).filter(|c| !c.is_empty()),
        cmd: Some(config.args.clone()).filter(|a| !a.is_empty()),
        env: Some(env),
        working_dir: config.working_dir.clone().filter(|w| !w.is_empty()),
        labels: Some(container_labels(node, config)),
        host_config: Some(HostConfig {
            network_mode: Some(namespace_of_sandbox.clone()),
            ipc_mode: Some(namespace_of_sandbox),
            mounts: Some(mounts),
            nano_cpus,
            memory,
            memory_swap: memory,
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::{Mount, Protocol};

    fn pod() -> PodRef {
        PodRef {
            uid: "0f1e2d3c-aaaa-bbbb".to_owned(),
            namespace: "default".to_owned(),
            name: "web".to_owned(),
        }
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            pod: pod(),
            name: "app".to_owned(),
            image: "flotilla/busybox:1".to_owned(),
            command: vec!["sh".to_owned(), "-c".to_owned()],
            args: vec!["echo hi".to_owned()],
            env: vec![("A".to_owned(), "1".to_owned()), ("B".to_owned(), "x=y".to_owned())],
            working_dir: Some("/tmp".to_owned()),
            mounts: vec![Mount {
                host_path: PathBuf::from("/srv/data"),
                container_path: PathBuf::from("/data"),
                read_only: true,
            }],
            cpu_limit_millis: Some(250),
            memory_limit_bytes: Some(64 << 20),
            restart_count: 3,
        }
    }

    #[test]
    fn names_are_unique_per_pod_container_and_attempt() {
        let config = config();
        assert_eq!(container_name(&config), "flotilla_default_web_app_3_0f1e2d3c");
        assert_eq!(sandbox_name(&config.pod), "flotilla_default_web_POD_0f1e2d3c");
        let next = ContainerConfig { restart_count: 4, ..config.clone() };
        assert_ne!(container_name(&next), container_name(&config));
        let odd = PodRef { uid: "a/b c".to_owned(), namespace: "ns".to_owned(), name: "p:q".to_owned() };
        assert_eq!(sandbox_name(&odd), "flotilla_ns_p-q_POD_a-b-c");
    }

    #[test]
    fn labels_identify_pod_role_and_node() {
        let labels = container_labels("node-a", &config());
        let expected = [
            (labels::POD_UID, "0f1e2d3c-aaaa-bbbb"),
            (labels::POD_NAMESPACE, "default"),
            (labels::POD_NAME, "web"),
            (labels::CONTAINER_NAME, "app"),
            (labels::RESTART_COUNT, "3"),
            (labels::ROLE, ROLE_CONTAINER),
            (labels::NODE, "node-a"),
        ];
        for (key, value) in expected {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert_eq!(labels.len(), expected.len());
    }

    #[test]
    fn sandbox_extra_labels_cannot_override_the_agents() {
        let sandbox = SandboxConfig {
            pod: pod(),
            hostname: "web".to_owned(),
            labels: BTreeMap::from([
                ("team".to_owned(), "blue".to_owned()),
                (labels::NODE.to_owned(), "someone-else".to_owned()),
            ]),
            ports: Vec::new(),
        };
        let body = sandbox_body("node-a", "flotilla/pause:1", "bridge", &sandbox);
        let labels = body.labels.expect("sandbox has labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
        assert_eq!(labels.get(labels::NODE).map(String::as_str), Some("node-a"));
        assert_eq!(labels.get(labels::ROLE).map(String::as_str), Some(ROLE_SANDBOX));
        assert!(!labels.contains_key(labels::CONTAINER_NAME));
        assert_eq!(body.hostname.as_deref(), Some("web"));
        assert_eq!(body.cmd, None, "the sandbox image's own command runs");
        let host = body.host_config.expect("sandbox has a host config");
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!((body.exposed_ports, host.port_bindings), (None, None), "no host ports");
    }

    #[test]
    fn host_ports_are_published_on_the_sandbox() {
        let mapping = |container_port, host_port, protocol, host_ip: Option<&str>| PortMapping {
            container_port,
            host_port,
            protocol,
            host_ip: host_ip.map(|ip| ip.parse().expect("an IP literal")),
        };
        let sandbox = SandboxConfig {
            pod: pod(),
            hostname: "web".to_owned(),
            labels: BTreeMap::new(),
            ports: vec![
                mapping(80, 8080, Protocol::Tcp, None),
                mapping(80, 8081, Protocol::Tcp, Some("127.0.0.1")),
                mapping(53, 5353, Protocol::Udp, Some("::1")),
                mapping(132, 1320, Protocol::Sctp, None),
            ],
        };
        let body = sandbox_body("node-a", "flotilla/pause:1", "bridge", &sandbox);
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".to_owned(), "53/udp".to_owned(), "132/sctp".to_owned()])
        );
        let bindings = body.host_config.and_then(|h| h.port_bindings).expect("port bindings");
        let binding = |ip: Option<&str>, port: &str| PortBinding {
            host_ip: ip.map(str::to_owned),
            host_port: Some(port.to_owned()),
        };
        let expected: PortMap = HashMap::from([
            ("80/tcp".to_owned(), Some(vec![binding(None, "8080"), binding(Some("127.0.0.1"), "8081")])),
            ("53/udp".to_owned(), Some(vec![binding(Some("::1"), "5353")])),
            ("132/sctp".to_owned(), Some(vec![binding(None, "1320")])),
        ]);
        assert_eq!(bindings, expected);
        // As the daemon reads it.
        let json = serde_json::to_value(&ContainerCreateBody { host_config: None, ..body }).expect("encodes");
        assert_eq!(json["ExposedPorts"]["80/tcp"], serde_json::json!({}));
    }

    #[test]
    fn container_body_maps_every_field() {
        let body = container_body("node-a", "sandbox1", &config()).expect("valid config");
        assert_eq!(body.image.as_deref(), Some("flotilla/busybox:1"));
        assert_eq!(body.entrypoint, Some(vec!["sh".to_owned(), "-c".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["echo hi".to_owned()]));
        assert_eq!(body.env, Some(vec!["A=1".to_owned(), "B=x=y".to_owned()]));
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        let host = body.host_config.expect("container has a host config");
        assert_eq!(host.network_mode.as_deref(), Some("container:sandbox1"));
        assert_eq!(host.ipc_mode.as_deref(), Some("container:sandbox1"));
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/data"));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(mounts[0].read_only, Some(true));
    }

    #[test]
    fn empty_command_and_args_keep_the_images() {
        let config = ContainerConfig {
            command: vec![],
            args: vec![],
            working_dir: None,
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            ..config()
        };
        let body = container_body("node-a", "sandbox1", &config).expect("valid config");
        assert_eq!((body.entrypoint, body.cmd, body.working_dir), (None, None, None));
        let host = body.host_config.expect("container has a host config");
        assert_eq!((host.nano_cpus, host.memory, host.memory_swap), (None, None, None));
    }

    #[test]
    fn out_of_range_values_are_config_errors_naming_the_field() {
        let cases = [
            (ContainerConfig { cpu_limit_millis: Some(u64::MAX), ..config() }, "cpu limit"),
            (ContainerConfig { memory_limit_bytes: Some(u64::MAX), ..config() }, "memory limit"),
            (ContainerConfig { env: vec![("A=B".to_owned(), "1".to_owned())], ..config() }, "env var name"),
            (ContainerConfig { env: vec![(String::new(), "1".to_owned())], ..config() }, "env var name"),
        ];
        for (config, field) in cases {
            let error = container_body("node-a", "sandbox1", &config).expect_err(field);
            assert_eq!(error.reason(), CREATE_CONFIG_ERROR);
            assert!(error.to_string().contains(field) && error.to_string().contains("app"), "{error}");
        }
    }
}
