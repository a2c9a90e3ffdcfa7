//! What plans are made of: the runtime's view of a pod, what a worker remembers, the actions.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::ProbeKind;
use crate::agent::backoff::Backoff;
use crate::runtime::{Container, ContainerState, Sandbox};

/// The exit code a container that could not be started reports (as Docker's `StartError`).
pub const START_FAILURE_EXIT_CODE: i32 = 128;

/// What the runtime holds for one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodRuntime {
    /// Its sandboxes (normally one).
    pub sandboxes: Vec<Sandbox>,
    /// Its containers, every instance (running and exited).
    pub containers: Vec<Container>,
}

impl PodRuntime {
    /// The running sandbox, if any.
    pub fn running_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.iter().find(|s| s.running)
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

/// A waiting container's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// `CrashLoopBackOff`, `ErrImagePull`, ...
    pub reason: String,
    /// Details.
    pub message: String,
}

/// An image that could not be found (or named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFailure {
    /// The image reference.
    pub image: String,
    /// The name is invalid: retrying will not help.
    pub invalid: bool,
    /// What the runtime said.
    pub message: String,
    /// The pull backoff.
    pub backoff: Backoff,
}

/// A container that could not be created or started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFailure {
    /// `CreateContainerError`, `RunContainerError`, `CreateContainerConfigError`.
    pub reason: String,
    /// What failed.
    pub message: String,
    /// The restart count of the attempt.
    pub restart_count: u32,
    /// When it failed.
    pub at: Timestamp,
}

/// What a pod worker remembers of one container between decisions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerMemory {
    /// The crash-loop backoff.
    pub crash_backoff: Option<Backoff>,
    /// The last image failure.
    pub image_failure: Option<ImageFailure>,
    /// The last failed start, if no start succeeded since.
    pub start_failure: Option<StartFailure>,
    /// Why the container last waited (kubelet's reason cache); cleared when it starts.
    pub reason: Option<Waiting>,
}

/// The state of a pod's volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeState {
    /// Not set up (yet).
    NotReady,
    /// Set up.
    Ready,
    /// Setup failed with `message`; retry at `retry_at`.
    Failed {
        /// What failed (names the volume).
        message: String,
        /// When to try again.
        retry_at: Timestamp,
    },
    /// Torn down.
    TornDown,
}

/// Why a container is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// The pod is being deleted or is gone.
    Terminating,
    /// Its liveness probe failed.
    LivenessFailed,
    /// Its startup probe failed.
    StartupFailed,
    /// Its spec (image) changed.
    SpecChanged,
    /// Its name is not in the pod spec any more.
    NotInSpec,
    /// The pod reached a terminal phase.
    PodTerminal,
    /// Its sandbox is gone; it is restarted in a new one.
    SandboxGone,
    /// A newer instance of it runs.
    Duplicate,
}

impl KillReason {
    /// The `Killing` Event's message.
    pub fn message(self, container: &str) -> String {
        match self {
            KillReason::Terminating | KillReason::PodTerminal | KillReason::Duplicate => {
                format!("Stopping container {container}")
            }
            KillReason::LivenessFailed => {
                format!("Container {container} failed liveness probe, will be restarted")
            }
            KillReason::StartupFailed => {
                format!("Container {container} failed startup probe, will be restarted")
            }
            KillReason::SpecChanged => format!("Container {container} definition changed, will be restarted"),
            KillReason::NotInSpec => format!("Container {container} is not in the pod spec"),
            KillReason::SandboxGone => format!("Container {container}'s sandbox is gone, will be restarted"),
        }
    }
}

/// One thing a pod worker does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Set up the pod's volumes.
    SetUpVolumes,
    /// Create the pod's sandbox.
    RunSandbox,
    /// Ensure the image, create and start container `name` with `restart_count`; store
    /// `backoff` as its crash backoff first (when it restarts an exited instance).
    StartContainer {
        /// The container's name.
        name: String,
        /// Whether it is an init container.
        init: bool,
        /// Its restart count.
        restart_count: u32,
        /// The crash backoff to remember.
        backoff: Option<Backoff>,
    },
    /// Stop a container (SIGTERM, SIGKILL after `grace`).
    KillContainer {
        /// The runtime's id.
        id: String,
        /// The container's name.
        name: String,
        /// The grace period.
        grace: Duration,
        /// Why.
        reason: KillReason,
    },
    /// Remove a stopped container.
    RemoveContainer {
        /// The runtime's id.
        id: String,
        /// The container's name.
        name: String,
    },
    /// Remove a sandbox.
    RemoveSandbox {
        /// The runtime's id.
        id: String,
    },
    /// Tear down the pod's volumes.
    TearDownVolumes,
    /// Delete the pod in the API with grace 0 (its containers are gone).
    DeletePod,
    /// Nothing is left of a pod gone from the API: the worker ends.
    Finish,
}

/// What [`plan_pod`] decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodPlan {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// Containers that wait, and why.
    pub waiting: BTreeMap<String, Waiting>,
    /// When to decide again even if nothing changes (a backoff ending).
    pub wake_at: Option<Timestamp>,
}

impl PodPlan {
    pub(super) fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    pub(super) fn wait(&mut self, name: &str, reason: &str, message: String) {
        self.waiting.insert(name.to_string(), Waiting { reason: reason.to_string(), message });
    }
}

/// Everything [`plan_pod`] looks at.
pub struct PlanInput<'a> {
    /// The pod (its last known state when gone; `None` for an orphan never known).
    pub pod: Option<&'a Pod>,
    /// The pod is gone from the API.
    pub gone: bool,
    /// What the runtime holds for it.
    pub runtime: &'a PodRuntime,
    /// What the worker remembers, by container name.
    pub memory: &'a BTreeMap<String, ContainerMemory>,
    /// Probe results by container name (`None`: no result yet).
    pub probes: &'a dyn Fn(&str, ProbeKind) -> Option<bool>,
    /// The volumes' state.
    pub volumes: &'a VolumeState,
    /// Now.
    pub now: Timestamp,
}

/// One instance of a container: a runtime container, or a start that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The runtime's id (`None` for a failed start).
    pub id: Option<String>,
    /// Its restart count.
    pub restart_count: u32,
    /// Its state (a failed start is `Exited` with [`START_FAILURE_EXIT_CODE`]).
    pub state: ContainerState,
    /// The image it was created from.
    pub image: String,
    /// The image's id.
    pub image_id: Option<String>,
}

impl Instance {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    /// Its exit code, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.state {
            ContainerState::Exited { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }

    /// When it finished (or its start failed).
    pub fn finished_at(&self) -> Option<Timestamp> {
        match &self.state {
            ContainerState::Exited { finished_at, .. } => *finished_at,
            _ => None,
        }
    }
}

/// Every instance of container `name`, newest first (a failed start counts as an exited
/// instance; a real container wins a tie).
pub fn instances(runtime: &PodRuntime, memory: Option<&ContainerMemory>, name: &str) -> Vec<Instance> {
    let mut out: Vec<Instance> = runtime
        .containers
        .iter()
        .filter(|c| c.name == name)
        .map(|c| Instance {
            id: Some(c.id.clone()),
            restart_count: c.restart_count,
            state: c.state.clone(),
            image: c.image.clone(),
            image_id: c.image_id.clone(),
        })
        .collect();
    if let Some(f) = memory.and_then(|m| m.start_failure.as_ref()) {
        out.push(Instance {
            id: None,
            restart_count: f.restart_count,
            state: ContainerState::Exited {
                exit_code: START_FAILURE_EXIT_CODE,
                reason: f.reason.clone(),
                started_at: None,
                finished_at: Some(f.at),
            },
            image: String::new(),
            image_id: None,
        });
    }
    // Newest first; at equal counts a running one, then a real one.
    out.sort_by_key(|i| (std::cmp::Reverse(i.restart_count), !i.is_running(), i.id.is_none()));
    out
}
