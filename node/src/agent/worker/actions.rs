//! Performing a plan: each [`Action`] through the runtime, the volume manager or the API, with
//! its Events, and its failures remembered where the next plan and the status look.

use flotilla_core::client::{Api, DeleteOptions, Error as ClientError, Precondition};
use flotilla_core::controller::events::EventType;
use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use super::config::{container_config, sandbox_config};
use super::{Performed, Worker, lock};
use crate::agent::backoff::{Backoff, add};
use crate::agent::heartbeat::error_chain;
use crate::agent::plan::{
    Action, ImageFailure, KillReason, PodRuntime, ProbeKind, StartFailure, VolumeState, Waiting,
};
use crate::runtime::{Error as RuntimeError, Sandbox};

/// The pod's container (init or regular) named `name`.
fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a SpecContainer> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name)
}

fn waiting(reason: &str, message: impl Into<String>) -> Option<Waiting> {
    Some(Waiting { reason: reason.to_string(), message: message.into() })
}

impl Worker {
    /// Performs `actions` in order; consecutive kills run together (each has its own grace
    /// period). Stops at the first failure.
    pub(super) async fn perform(&mut self, actions: &[Action], runtime: &PodRuntime) -> Performed {
        let mut sandbox = runtime.running_sandbox().cloned();
        let mut i = 0;
        while i < actions.len() {
            let kills: Vec<&Action> =
                actions[i..].iter().take_while(|a| matches!(a, Action::KillContainer { .. })).collect();
            if !kills.is_empty() {
                i += kills.len();
                let results = futures::future::join_all(kills.into_iter().map(|a| self.kill(a))).await;
                if results.iter().any(|ok| !ok) {
                    return Performed::Failed;
                }
                continue;
            }
            let ok = match &actions[i] {
                Action::SetUpVolumes => self.set_up_volumes().await,
                Action::RunSandbox => match self.run_sandbox().await {
                    Some(s) => {
                        sandbox = Some(s);
                        true
                    }
                    None => false,
                },
                Action::StartContainer { name, init: _, restart_count, backoff } => {
                    if let Some(b) = backoff {
                        self.memory.entry(name.clone()).or_default().crash_backoff = Some(b.clone());
                    }
                    match &sandbox {
                        Some(s) => self.start_container(name, *restart_count, s).await,
                        None => false,
                    }
                }
                Action::KillContainer { .. } => true,
                Action::RemoveContainer { id, name } => self.remove_container(id, name).await,
                Action::RemoveSandbox { id } => self.remove_sandbox(id).await,
                Action::TearDownVolumes => self.tear_down_volumes().await,
                Action::DeletePod => {
                    if self.delete_pod().await {
                        return Performed::Finished;
                    }
                    false
                }
                Action::Finish => {
                    self.shared.probes.stop_pod(&self.pod_ref.uid);
                    return Performed::Finished;
                }
            };
            if !ok {
                return Performed::Failed;
            }
            i += 1;
        }
        Performed::All
    }

    fn fail_containers(&mut self, reason: &str, message: &str) {
        let Some(pod) = self.pod.as_ref() else { return };
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            self.memory.entry(name).or_default().reason = waiting(reason, message);
        }
    }

    async fn set_up_volumes(&mut self) -> bool {
        let Some(pod) = self.pod.clone() else { return false };
        match self.shared.volumes.setup(&pod).await {
            Ok(()) => {
                self.volumes = VolumeState::Ready;
                self.volume_backoff = None;
                true
            }
            Err(message) => {
                let now = self.shared.now();
                let backoff = Backoff::next(self.volume_backoff.as_ref(), now);
                tracing::warn!(pod = %self.key(), error = %message, retry_in = ?backoff.delay, "volume setup failed");
                self.event(EventType::Warning, "FailedMount", format!("MountVolume.SetUp failed: {message}"));
                self.volumes =
                    VolumeState::Failed { message: message.clone(), retry_at: add(now, backoff.delay) };
                self.volume_backoff = Some(backoff);
                self.fail_containers("CreateContainerConfigError", &message);
                false
            }
        }
    }

    async fn run_sandbox(&mut self) -> Option<Sandbox> {
        let pod = self.pod.clone()?;
        let config = match sandbox_config(&pod) {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "cannot create the pod sandbox: invalid host port");
                let message = error.to_string();
                self.event(
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {message}"),
                );
                self.fail_containers("CreateContainerConfigError", &message);
                return None;
            }
        };
        match self.shared.runtime.run_sandbox(&config).await {
            Ok(s) => {
                tracing::debug!(pod = %self.key(), sandbox = %s.id, ip = ?s.ip, "sandbox running");
                Some(s)
            }
            Err(error) => {
                tracing::warn!(pod = %self.key(), error = %error_chain(&error), "cannot create the pod sandbox");
                self.event(
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {error}"),
                );
                None
            }
        }
    }

    /// Records a failed start of `name` (attempt `restart_count`).
    fn start_failed(&mut self, name: &str, restart_count: u32, error: &RuntimeError) {
        let now = self.shared.now();
        let reason = error.reason().to_string();
        let message = error.to_string();
        tracing::info!(pod = %self.key(), container = name, %reason, error = %message, "container failed to start");
        self.event(EventType::Warning, "Failed", format!("Error: {message}"));
        let m = self.memory.entry(name.to_string()).or_default();
        m.reason = waiting(&reason, message.clone());
        m.start_failure = Some(StartFailure { reason, message, restart_count, at: now });
    }

    async fn ensure_image(&mut self, name: &str, image: &str) -> bool {
        let error = match self.shared.runtime.ensure_image(image).await {
            Ok(()) => {
                self.event(
                    EventType::Normal,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                self.memory.entry(name.to_string()).or_default().image_failure = None;
                return true;
            }
            Err(e) => e,
        };
        let now = self.shared.now();
        let invalid = matches!(error, RuntimeError::InvalidImageName { .. });
        let reason = if invalid { "InvalidImageName" } else { "ErrImagePull" };
        let message = error.to_string();
        if invalid {
            self.event(
                EventType::Warning,
                "InspectFailed",
                format!("Failed to apply default image tag {image:?}: {message}"),
            );
        } else {
            self.event(EventType::Warning, "Failed", format!("Failed to pull image {image:?}: {message}"));
        }
        self.event(EventType::Warning, "Failed", format!("Error: {reason}"));
        tracing::info!(pod = %self.key(), container = name, image, %reason, "image not available");
        let m = self.memory.entry(name.to_string()).or_default();
        let prev = m.image_failure.as_ref().filter(|f| f.image == image).map(|f| &f.backoff);
        let backoff = Backoff::next(prev, now);
        m.image_failure =
            Some(ImageFailure { image: image.to_string(), invalid, message: message.clone(), backoff });
        m.reason = waiting(reason, message);
        false
    }

    async fn start_container(&mut self, name: &str, restart_count: u32, sandbox: &Sandbox) -> bool {
        let Some(pod) = self.pod.clone() else { return false };
        let Some(spec) = spec_container(&pod, name).cloned() else { return false };
        let image = spec.image.clone().unwrap_or_default();
        if !self.ensure_image(name, &image).await {
            return false;
        }
        let mounts = match self.shared.volumes.mounts(&pod, &spec) {
            Ok(m) => m,
            Err(message) => {
                self.event(EventType::Warning, "Failed", format!("Error: {message}"));
                self.memory.entry(name.to_string()).or_default().reason =
                    waiting("CreateContainerConfigError", message);
                return false;
            }
        };
        let host_ip = self.shared.host_ips.first().map(String::as_str);
        let config = container_config(&pod, &spec, restart_count, mounts, sandbox.ip, host_ip);
        let id = match self.shared.runtime.create_container(&sandbox.id, &config).await {
            Ok(id) => id,
            Err(error) => {
                self.start_failed(name, restart_count, &error);
                return false;
            }
        };
        self.event(EventType::Normal, "Created", format!("Created container {name}"));
        if let Err(error) = self.shared.runtime.start_container(&id).await {
            self.start_failed(name, restart_count, &error);
            // Best effort: a leftover is removed by a later plan.
            if let Err(e) = self.shared.runtime.remove_container(&id).await {
                tracing::debug!(pod = %self.key(), container = name, error = %e, "cannot remove a container that failed to start");
            }
            return false;
        }
        self.event(EventType::Normal, "Started", format!("Started container {name}"));
        tracing::debug!(pod = %self.key(), container = name, id = %id, restart_count, "container started");
        let m = self.memory.entry(name.to_string()).or_default();
        m.start_failure = None;
        m.reason = None;
        true
    }

    async fn kill(&self, action: &Action) -> bool {
        let Action::KillContainer { id, name, grace, reason } = action else { return true };
        let uid = &self.pod_ref.uid;
        let probe = match reason {
            KillReason::LivenessFailed => Some(ProbeKind::Liveness),
            KillReason::StartupFailed => Some(ProbeKind::Startup),
            _ => None,
        };
        if let Some(kind) = probe {
            let detail = self.shared.probes.message(uid, name, kind).unwrap_or_default();
            self.event(EventType::Warning, "Unhealthy", format!("{kind} probe failed: {detail}"));
        }
        lock(&self.probe_failures).retain(|(n, _)| n != name);
        self.shared.probes.stop_container(uid, name);
        self.event(EventType::Normal, "Killing", reason.message(name));
        tracing::info!(pod = %self.key(), container = %name, ?reason, ?grace, "killing container");
        match self.shared.runtime.stop_container(id, *grace).await {
            Ok(()) | Err(RuntimeError::NotFound { .. }) => true,
            Err(error) => {
                tracing::warn!(pod = %self.key(), container = %name, error = %error_chain(&error), "cannot stop container");
                false
            }
        }
    }

    async fn remove_container(&mut self, id: &str, name: &str) -> bool {
        match self.shared.runtime.remove_container(id).await {
            Ok(()) | Err(RuntimeError::NotFound { .. }) => true,
            Err(error) => {
                tracing::warn!(pod = %self.key(), container = name, id, error = %error_chain(&error), "cannot remove container");
                false
            }
        }
    }

    async fn remove_sandbox(&mut self, id: &str) -> bool {
        match self.shared.runtime.remove_sandbox(id).await {
            Ok(()) | Err(RuntimeError::NotFound { .. }) => true,
            Err(error) => {
                tracing::warn!(pod = %self.key(), sandbox = id, error = %error_chain(&error), "cannot remove sandbox");
                false
            }
        }
    }

    async fn tear_down_volumes(&mut self) -> bool {
        match self.shared.volumes.teardown(&self.pod_ref.uid).await {
            Ok(()) => {
                self.volumes = VolumeState::TornDown;
                true
            }
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "volume teardown failed");
                false
            }
        }
    }

    /// Finishes the pod's graceful deletion; false when it must be tried again.
    async fn delete_pod(&mut self) -> bool {
        self.shared.probes.stop_pod(&self.pod_ref.uid);
        let api = Api::<Pod>::namespaced(self.shared.client.clone(), &self.pod_ref.namespace);
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Precondition { uid: Some(self.pod_ref.uid.clone()), resource_version: None },
            ..Default::default()
        };
        match api.delete(&self.pod_ref.name, &opts).await {
            Ok(_) => {
                tracing::info!(pod = %self.key(), uid = %self.pod_ref.uid, "pod deleted");
                true
            }
            // Gone already, or replaced by a pod of the same name.
            Err(ClientError::NotFound { .. } | ClientError::Conflict { .. }) => true,
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "cannot finish pod deletion");
                false
            }
        }
    }
}
