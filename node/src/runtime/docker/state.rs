//! What Docker reports, read back into the runtime's types (pure, tested without a daemon).

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{
    ContainerInspectResponse, ContainerState as DockerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EndpointSettings,
};
use k8s_openapi::jiff::Timestamp;
use tracing::warn;

use crate::runtime::{Container, ContainerState, PodRef, Sandbox, labels};

/// The reason of a container that Docker created but could not start (its state keeps the
/// error, e.g. a command that does not exist); dockershim reported the same.
pub(crate) const CANNOT_RUN: &str = "ContainerCannotRun";
/// The exit code reported for a container that never ran when Docker gives none.
const CANNOT_RUN_EXIT_CODE: i32 = 128;

/// Docker's timestamps, with its zero time (`0001-01-01T00:00:00Z`) meaning "never".
pub(crate) fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    let time: Timestamp = text?.parse().ok()?;
    (time.as_second() > 0).then_some(time)
}

/// A container's state from `inspect`: running, created, or exited with a reason
/// (`Completed` for 0, `OOMKilled`, `Error`, or [`CANNOT_RUN`] when it failed to start).
pub(crate) fn container_state(state: Option<&DockerState>) -> ContainerState {
    let Some(state) = state else { return ContainerState::Unknown };
    let finished_at = parse_time(state.finished_at.as_deref());
    // Docker stamps the start and the exit in different components: a container that exits at
    // once can show a start a fraction of a millisecond after its end. Report a coherent pair.
    let started_at = match (parse_time(state.started_at.as_deref()), finished_at) {
        (Some(started), Some(finished)) => Some(started.min(finished)),
        (started, _) => started,
    };
    let exit_code = state.exit_code.and_then(|code| i32::try_from(code).ok());
    let start_error = state.error.as_deref().filter(|e| !e.is_empty());
    match state.status {
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED) => {
            ContainerState::Running { started_at }
        }
        Some(ContainerStateStatusEnum::CREATED) if start_error.is_some() => ContainerState::Exited {
            exit_code: exit_code.filter(|code| *code != 0).unwrap_or(CANNOT_RUN_EXIT_CODE),
            reason: CANNOT_RUN.to_owned(),
            started_at,
            finished_at,
        },
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
            let exit_code = exit_code.unwrap_or(-1);
            let reason = if state.oom_killed == Some(true) {
                "OOMKilled"
            } else if start_error.is_some() {
                CANNOT_RUN
            } else if exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            ContainerState::Exited { exit_code, reason: reason.to_owned(), started_at, finished_at }
        }
        // Flotilla sets no restart policy, so `restarting` is not ours to interpret; `removing`
        // is on its way out.
        _ => ContainerState::Unknown,
    }
}

/// The pod a runtime object belongs to, from its labels. Missing labels give empty fields
/// (logged) rather than hiding the object: the agent must still see it to remove it.
pub(crate) fn pod_from_labels(id: &str, labels: &HashMap<String, String>) -> PodRef {
    let get = |key: &str| {
        labels.get(key).cloned().unwrap_or_else(|| {
            warn!(id, label = key, "runtime object lacks a label");
            String::new()
        })
    };
    PodRef { uid: get(labels::POD_UID), namespace: get(labels::POD_NAMESPACE), name: get(labels::POD_NAME) }
}

/// A container from `inspect`, or `None` when Docker omitted its id.
pub(crate) fn container_from_inspect(inspect: &ContainerInspectResponse) -> Option<Container> {
    let id = inspect.id.clone()?;
    let empty = HashMap::new();
    let config = inspect.config.as_ref();
    let labels = config.and_then(|c| c.labels.as_ref()).unwrap_or(&empty);
    let restart_count =
        labels.get(labels::RESTART_COUNT).and_then(|count| count.parse().ok()).unwrap_or_else(|| {
            warn!(id, label = labels::RESTART_COUNT, "container lacks a valid label");
            0
        });
    Some(Container {
        pod: pod_from_labels(&id, labels),
        name: labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default(),
        image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
        image_id: inspect.image.clone().filter(|i| !i.is_empty()),
        state: container_state(inspect.state.as_ref()),
        restart_count,
        id,
    })
}

/// The IP address of a container on `network`.
pub(crate) fn ip_on(networks: Option<&HashMap<String, EndpointSettings>>, network: &str) -> Option<IpAddr> {
    networks?.get(network)?.ip_address.as_deref()?.parse().ok()
}

/// A sandbox from the container list, or `None` when Docker omitted its id.
pub(crate) fn sandbox_from_summary(summary: &ContainerSummary, network: &str) -> Option<Sandbox> {
    let id = summary.id.clone()?;
    let empty = HashMap::new();
    let labels = summary.labels.as_ref().unwrap_or(&empty);
    let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
    Some(Sandbox {
        pod: pod_from_labels(&id, labels),
        // A stopped container keeps a stale address in the list; only a running sandbox has one.
        ip: ip_on(summary.network_settings.as_ref().and_then(|n| n.networks.as_ref()), network)
            .filter(|_| running),
        running,
        id,
    })
}

/// A sandbox from `inspect`, or `None` when Docker omitted its id.
pub(crate) fn sandbox_from_inspect(inspect: &ContainerInspectResponse, network: &str) -> Option<Sandbox> {
    let id = inspect.id.clone()?;
    let empty = HashMap::new();
    let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref()).unwrap_or(&empty);
    let running = inspect.state.as_ref().and_then(|s| s.running) == Some(true);
    Some(Sandbox {
        pod: pod_from_labels(&id, labels),
        ip: ip_on(inspect.network_settings.as_ref().and_then(|n| n.networks.as_ref()), network)
            .filter(|_| running),
        running,
        id,
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ContainerConfig as DockerConfig, ContainerSummaryNetworkSettings, NetworkSettings,
    };

    use super::*;

    const ZERO: &str = "0001-01-01T00:00:00Z";

    fn state(status: ContainerStateStatusEnum, exit_code: i64) -> DockerState {
        DockerState {
            status: Some(status),
            exit_code: Some(exit_code),
            started_at: Some("2025-01-02T03:04:05.123456789Z".to_owned()),
            finished_at: Some(ZERO.to_owned()),
            oom_killed: Some(false),
            error: Some(String::new()),
            ..DockerState::default()
        }
    }

    fn time(text: &str) -> Timestamp {
        text.parse().expect("test timestamp")
    }

    #[test]
    fn zero_and_garbage_times_are_none() {
        assert_eq!(parse_time(Some(ZERO)), None);
        assert_eq!(parse_time(Some("yesterday")), None);
        assert_eq!(parse_time(None), None);
        assert_eq!(parse_time(Some("2025-01-02T03:04:05Z")), Some(time("2025-01-02T03:04:05Z")));
    }

    #[test]
    fn running_and_created() {
        let running = container_state(Some(&state(ContainerStateStatusEnum::RUNNING, 0)));
        assert_eq!(
            running,
            ContainerState::Running { started_at: Some(time("2025-01-02T03:04:05.123456789Z")) }
        );
        let created =
            DockerState { started_at: Some(ZERO.to_owned()), ..state(ContainerStateStatusEnum::CREATED, 0) };
        assert_eq!(container_state(Some(&created)), ContainerState::Created);
        assert_eq!(container_state(None), ContainerState::Unknown);
        let removing = state(ContainerStateStatusEnum::REMOVING, 0);
        assert_eq!(container_state(Some(&removing)), ContainerState::Unknown);
    }

    #[test]
    fn exit_reasons() {
        let finished = "2025-01-02T03:05:00Z";
        let exited = |code, oom| DockerState {
            finished_at: Some(finished.to_owned()),
            oom_killed: Some(oom),
            ..state(ContainerStateStatusEnum::EXITED, code)
        };
        let reason_of = |s: &DockerState| match container_state(Some(s)) {
            ContainerState::Exited { exit_code, reason, finished_at, .. } => {
                assert_eq!(finished_at, Some(time(finished)));
                (exit_code, reason)
            }
            other => panic!("expected exited, got {other:?}"),
        };
        assert_eq!(reason_of(&exited(0, false)), (0, "Completed".to_owned()));
        assert_eq!(reason_of(&exited(3, false)), (3, "Error".to_owned()));
        assert_eq!(reason_of(&exited(137, true)), (137, "OOMKilled".to_owned()));
    }

    #[test]
    fn a_start_stamped_after_the_exit_is_reported_at_the_exit() {
        let (started, finished) = ("2026-12-05T09:30:42.274206389Z", "2026-12-05T09:30:42.273713308Z");
        let exited = DockerState {
            started_at: Some(started.to_owned()),
            finished_at: Some(finished.to_owned()),
            ..state(ContainerStateStatusEnum::EXITED, 0)
        };
        match container_state(Some(&exited)) {
            ContainerState::Exited { started_at, finished_at, .. } => {
                assert_eq!((started_at, finished_at), (Some(time(finished)), Some(time(finished))));
            }
            other => panic!("expected exited, got {other:?}"),
        }
    }

    #[test]
    fn a_container_that_could_not_start_reports_why() {
        let failed = DockerState {
            error: Some("exec: \"nosuch\": executable file not found in $PATH".to_owned()),
            ..state(ContainerStateStatusEnum::CREATED, 127)
        };
        assert!(matches!(
            container_state(Some(&failed)),
            ContainerState::Exited { exit_code: 127, ref reason, .. } if reason == CANNOT_RUN
        ));
        let no_code = DockerState { exit_code: Some(0), ..failed };
        assert!(matches!(container_state(Some(&no_code)), ContainerState::Exited { exit_code: 128, .. }));
    }

    #[test]
    fn containers_read_their_labels() {
        let labels = HashMap::from([
            (labels::POD_UID.to_owned(), "uid-1".to_owned()),
            (labels::POD_NAMESPACE.to_owned(), "ns".to_owned()),
            (labels::POD_NAME.to_owned(), "web".to_owned()),
            (labels::CONTAINER_NAME.to_owned(), "app".to_owned()),
            (labels::RESTART_COUNT.to_owned(), "2".to_owned()),
        ]);
        let inspect = ContainerInspectResponse {
            id: Some("c1".to_owned()),
            image: Some("sha256:abc".to_owned()),
            config: Some(DockerConfig {
                image: Some("flotilla/busybox:1".to_owned()),
                labels: Some(labels),
                ..DockerConfig::default()
            }),
            state: Some(state(ContainerStateStatusEnum::RUNNING, 0)),
            ..ContainerInspectResponse::default()
        };
        let container = container_from_inspect(&inspect).expect("has an id");
        assert_eq!(container.pod, PodRef { uid: "uid-1".into(), namespace: "ns".into(), name: "web".into() });
        assert_eq!((container.name.as_str(), container.restart_count), ("app", 2));
        assert_eq!(container.image, "flotilla/busybox:1");
        assert_eq!(container.image_id.as_deref(), Some("sha256:abc"));
        assert!(matches!(container.state, ContainerState::Running { .. }));

        let unlabelled = ContainerInspectResponse { config: None, ..inspect };
        let container = container_from_inspect(&unlabelled).expect("has an id");
        assert_eq!((container.pod.uid.as_str(), container.restart_count), ("", 0));
        assert_eq!(container_from_inspect(&ContainerInspectResponse::default()), None);
    }

    #[test]
    fn sandboxes_have_an_ip_only_while_running() {
        let networks = HashMap::from([(
            "bridge".to_owned(),
            EndpointSettings { ip_address: Some("172.17.0.5".to_owned()), ..EndpointSettings::default() },
        )]);
        let summary = ContainerSummary {
            id: Some("s1".to_owned()),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            network_settings: Some(ContainerSummaryNetworkSettings { networks: Some(networks) }),
            ..ContainerSummary::default()
        };
        let running = sandbox_from_summary(&summary, "bridge").expect("has an id");
        assert_eq!(running.ip, Some("172.17.0.5".parse().expect("test ip")));
        assert!(running.running);
        assert_eq!(sandbox_from_summary(&summary, "other").and_then(|s| s.ip), None);
        let exited = ContainerSummary { state: Some(ContainerSummaryStateEnum::EXITED), ..summary.clone() };
        let sandbox = sandbox_from_summary(&exited, "bridge").expect("has an id");
        assert_eq!((sandbox.running, sandbox.ip), (false, None));

        let inspect = ContainerInspectResponse {
            id: summary.id.clone(),
            state: Some(DockerState { running: Some(true), ..DockerState::default() }),
            network_settings: Some(NetworkSettings {
                networks: summary.network_settings.and_then(|n| n.networks),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let from_inspect = sandbox_from_inspect(&inspect, "bridge").expect("has an id");
        assert_eq!(from_inspect, running);
    }
}
