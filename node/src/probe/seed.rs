//! The results a container's probes start from: the kubelet's initial ones for a new
//! container, or what the pod's last reported status says of an adopted one.

use k8s_openapi::api::core::v1::Pod;

/// The readiness and startup results a container's probes start from, before their first
/// attempt (liveness always starts true).
///
/// [`Seed::default`] is the kubelet's start: not ready, not started. That is right for a
/// container the agent just started, but an agent that restarts and adopts a running
/// container would report it unready until its first readiness probe, taking it out of its
/// Services' endpoints for up to a probe period (the kubelet does so: kubernetes#100277).
/// [`Seed::adopted`] starts such a container from the results last reported for it instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seed {
    /// The readiness result until the readiness probe publishes one.
    pub ready: bool,
    /// Whether the startup probe already succeeded; it then does not run again.
    pub started: bool,
}

impl Seed {
    /// What `pod`'s status last reported of its container `name` (`ready`, `started`), if it
    /// reported it under the same container id (`<runtime_name>://<container_id>`, as the
    /// agent writes it): the same container, not restarted since. Otherwise (a new container,
    /// a restart, no status) the default, not ready and not started.
    pub fn adopted(pod: &Pod, runtime_name: &str, name: &str, container_id: &str) -> Seed {
        let id = format!("{runtime_name}://{container_id}");
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        statuses
            .iter()
            .find(|s| s.name == name && s.container_id.as_deref() == Some(id.as_str()))
            .map(|s| Seed { ready: s.ready, started: s.started == Some(true) })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

    use super::*;

    fn status(name: &str, id: Option<&str>, ready: bool, started: Option<bool>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: id.map(str::to_string),
            ready,
            started,
            ..Default::default()
        }
    }

    fn pod(statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            status: Some(PodStatus { container_statuses: Some(statuses), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_same_container_resumes_its_results() {
        let p = pod(vec![
            status("app", Some("docker://c1"), true, Some(true)),
            status("side", Some("docker://c2"), false, Some(true)),
            status("new", None, false, Some(false)),
        ]);
        let resumed = Seed { ready: true, started: true };
        // (container name, runtime, container id, expected seed)
        let table: &[(&str, &str, &str, Seed)] = &[
            ("app", "docker", "c1", resumed),
            // Restarted: the new container's id is not the one reported.
            ("app", "docker", "c3", Seed::default()),
            // The same id from another runtime is another container.
            ("app", "process", "c1", Seed::default()),
            // Another container's id under this name.
            ("app", "docker", "c2", Seed::default()),
            // Reported started but not ready: starts unready.
            ("side", "docker", "c2", Seed { ready: false, started: true }),
            ("new", "docker", "c4", Seed::default()),
            ("absent", "docker", "c1", Seed::default()),
        ];
        for (name, runtime, id, want) in table {
            assert_eq!(Seed::adopted(&p, runtime, name, id), *want, "{name} {runtime}://{id}");
        }
        assert_eq!(Seed::adopted(&Pod::default(), "docker", "app", "c1"), Seed::default(), "no status");
    }
}
