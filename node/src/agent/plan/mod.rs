//! The pod worker's decision, as a pure function in the spirit of kubelet's
//! `computePodActions`: from the pod, what the runtime holds for it, what the worker remembers
//! (backoffs, failures), probe results, the volumes' state and the time, [`plan_pod`] says what
//! to do ([`Action`]s, performed in order), which containers wait and why, and when to look
//! again.
//!
//! Rules, as Kubernetes has them:
//! - A pod being deleted (or gone from the API) has its containers killed with its grace
//!   period, then containers, sandboxes and volumes removed, then (if still in the API) its
//!   deletion finished.
//! - A pod in a terminal phase starts nothing and keeps its exited containers; running ones
//!   are killed.
//! - Volumes are set up first; a failed setup is retried with backoff meanwhile containers
//!   wait with reason `CreateContainerConfigError`.
//! - Without a running sandbox, one is created (running containers of a dead one are
//!   killed). A `Never` pod whose containers already ran gets no new sandbox.
//! - Init containers run one at a time, in order, each to exit 0; one that fails is restarted
//!   (with backoff) unless the restart policy is `Never` (then the pod fails).
//! - Regular containers start together; an exited one restarts per the restart policy with
//!   crash-loop backoff; a failed liveness or startup probe kills and restarts it; a changed
//!   image restarts it.
//! - Per container name, the newest instance and the newest exited one before it (the
//!   status' `lastState`) are kept; older instances, and containers not in the spec, go.

mod terminate;
#[cfg(test)]
pub(crate) mod tests;
mod types;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use super::backoff::Backoff;
pub use crate::probe::ProbeKind;
use crate::runtime::{ContainerState, PodRef};

pub use terminate::{ORPHAN_GRACE, grace_period};
pub use types::{
    Action, ContainerMemory, ImageFailure, Instance, KillReason, PlanInput, PodPlan, PodRuntime,
    START_FAILURE_EXIT_CODE, StartFailure, VolumeState, Waiting, instances,
};

/// The pod's restart policy (`Always` when unset).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether the pod's phase (as last reported) is terminal.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The pod's `namespace/name`, as messages name it: `name_namespace(uid)`.
pub fn pod_label(pod: &PodRef) -> String {
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

/// The reference of `pod` (empty strings for missing metadata).
pub fn pod_ref(pod: &Pod) -> PodRef {
    let m = &pod.metadata;
    PodRef {
        uid: m.uid.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
    }
}

/// What to do for a pod: see the [module docs](self).
pub fn plan_pod(input: &PlanInput<'_>) -> PodPlan {
    let mut plan = PodPlan::default();
    let pod = match input.pod {
        Some(pod) if !input.gone && pod.metadata.deletion_timestamp.is_none() => pod,
        _ => {
            terminate::terminate(input, &mut plan);
            return plan;
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let regular = spec.containers.clone();
    let grace = grace_period(Some(pod), false);
    prune(input, &init, &regular, grace, &mut plan);
    if is_terminal(pod) {
        for c in init.iter().chain(&regular) {
            for i in instances(input.runtime, None, &c.name).iter().filter(|i| !is_exited(i)) {
                kill(&mut plan, i, &c.name, grace, KillReason::PodTerminal);
            }
        }
        return plan;
    }
    match input.volumes {
        VolumeState::Ready | VolumeState::TornDown => {}
        VolumeState::NotReady => plan.actions.push(Action::SetUpVolumes),
        VolumeState::Failed { message, retry_at } if input.now < *retry_at => {
            for c in init.iter().chain(&regular) {
                let running =
                    instances(input.runtime, None, &c.name).first().is_some_and(Instance::is_running);
                if !running {
                    plan.wait(&c.name, "CreateContainerConfigError", message.clone());
                }
            }
            plan.wake(*retry_at);
            return plan;
        }
        VolumeState::Failed { .. } => plan.actions.push(Action::SetUpVolumes),
    }
    let policy = restart_policy(pod);
    let pod_label = pod_label(&pod_ref(pod));
    if input.runtime.running_sandbox().is_none() {
        let ran_before =
            init.iter().chain(&regular).any(|c| !instances(input.runtime, None, &c.name).is_empty());
        if policy == "Never" && ran_before {
            return plan;
        }
        for c in init.iter().chain(&regular) {
            for i in instances(input.runtime, None, &c.name).iter().filter(|i| i.is_running()) {
                kill(&mut plan, i, &c.name, grace, KillReason::SandboxGone);
            }
        }
        plan.actions.push(Action::RunSandbox);
    }
    let ctx = Ctx { input, policy, pod_label: &pod_label, grace };
    // Once a regular container ran, the pod is initialized (its init containers may be gone).
    let regular_started = regular.iter().any(|c| !instances(input.runtime, None, &c.name).is_empty());
    if !regular_started {
        for c in &init {
            match ctx.init_step(c, &mut plan) {
                InitStep::Done => continue,
                InitStep::Blocked => return plan,
            }
        }
    }
    for c in &regular {
        ctx.regular_step(c, &mut plan);
    }
    plan
}

struct Ctx<'a, 'b> {
    input: &'a PlanInput<'b>,
    policy: &'a str,
    pod_label: &'a str,
    grace: Duration,
}

enum InitStep {
    /// Exited 0: the next one may run.
    Done,
    /// Running, waiting, failed or just started: nothing after it runs.
    Blocked,
}

impl Ctx<'_, '_> {
    fn memory(&self, name: &str) -> Option<&ContainerMemory> {
        self.input.memory.get(name)
    }

    /// Whether container `c` may be (re)started now given its image's pull backoff; records
    /// the waiting reason when not.
    fn image_allows(&self, c: &SpecContainer, plan: &mut PodPlan) -> bool {
        let image = c.image.clone().unwrap_or_default();
        let Some(f) =
            self.memory(&c.name).and_then(|m| m.image_failure.as_ref()).filter(|f| f.image == image)
        else {
            return true;
        };
        if f.invalid {
            plan.wait(&c.name, "InvalidImageName", f.message.clone());
            return false;
        }
        match Backoff::wait_until(Some(&f.backoff), f.backoff.last_update, self.input.now) {
            Some(until) => {
                plan.wait(&c.name, "ImagePullBackOff", format!("Back-off pulling image {image:?}"));
                plan.wake(until);
                false
            }
            None => true,
        }
    }

    fn start(
        &self,
        c: &SpecContainer,
        init: bool,
        restart_count: u32,
        backoff: Option<Backoff>,
        plan: &mut PodPlan,
    ) {
        if self.image_allows(c, plan) {
            plan.actions.push(Action::StartContainer { name: c.name.clone(), init, restart_count, backoff });
        }
    }

    /// Restarts exited instance `latest` unless its crash backoff says wait.
    fn restart_exited(&self, c: &SpecContainer, init: bool, latest: &Instance, plan: &mut PodPlan) {
        let finished = latest.finished_at().unwrap_or(self.input.now);
        let prev = self.memory(&c.name).and_then(|m| m.crash_backoff.as_ref());
        match Backoff::wait_until(prev, finished, self.input.now) {
            Some(until) => {
                let delay = prev.map(|b| b.delay.as_secs()).unwrap_or_default();
                plan.wait(
                    &c.name,
                    "CrashLoopBackOff",
                    format!(
                        "back-off {delay}s restarting failed container={} pod={}",
                        c.name, self.pod_label
                    ),
                );
                plan.wake(until);
            }
            None => {
                let next = Backoff::next(prev, finished);
                self.start(c, init, latest.restart_count.saturating_add(1), Some(next), plan);
            }
        }
    }

    fn init_step(&self, c: &SpecContainer, plan: &mut PodPlan) -> InitStep {
        let all = instances(self.input.runtime, self.memory(&c.name), &c.name);
        let Some(latest) = all.first() else {
            self.start(c, true, 0, None, plan);
            return InitStep::Blocked;
        };
        match &latest.state {
            ContainerState::Exited { exit_code: 0, .. } => InitStep::Done,
            ContainerState::Exited { .. } => {
                if self.policy != "Never" {
                    self.restart_exited(c, true, latest, plan);
                }
                InitStep::Blocked
            }
            ContainerState::Created => {
                self.replace_created(c, true, latest, plan);
                InitStep::Blocked
            }
            ContainerState::Running { .. } | ContainerState::Unknown => InitStep::Blocked,
        }
    }

    fn replace_created(&self, c: &SpecContainer, init: bool, latest: &Instance, plan: &mut PodPlan) {
        if let Some(id) = &latest.id {
            plan.actions.push(Action::RemoveContainer { id: id.clone(), name: c.name.clone() });
        }
        self.start(c, init, latest.restart_count, None, plan);
    }

    fn regular_step(&self, c: &SpecContainer, plan: &mut PodPlan) {
        let all = instances(self.input.runtime, self.memory(&c.name), &c.name);
        let Some(latest) = all.first() else {
            self.start(c, false, 0, None, plan);
            return;
        };
        match &latest.state {
            ContainerState::Running { .. } => {
                let probe = |kind| (self.input.probes)(&c.name, kind);
                let kill_reason = if c.startup_probe.is_some() && probe(ProbeKind::Startup) == Some(false) {
                    Some(KillReason::StartupFailed)
                } else if c.liveness_probe.is_some() && probe(ProbeKind::Liveness) == Some(false) {
                    Some(KillReason::LivenessFailed)
                } else if c.image.as_deref().is_some_and(|image| image != latest.image) {
                    Some(KillReason::SpecChanged)
                } else {
                    None
                };
                let Some(reason) = kill_reason else { return };
                kill(plan, latest, &c.name, self.grace, reason);
                // A killed container exits non-zero: restart unless the policy is Never (a
                // changed spec always restarts).
                if self.policy != "Never" || reason == KillReason::SpecChanged {
                    self.start(c, false, latest.restart_count.saturating_add(1), None, plan);
                }
            }
            ContainerState::Exited { exit_code, .. } => {
                if should_restart(self.policy, *exit_code) {
                    self.restart_exited(c, false, latest, plan);
                }
            }
            ContainerState::Created => self.replace_created(c, false, latest, plan),
            ContainerState::Unknown => {}
        }
    }
}

fn is_exited(i: &Instance) -> bool {
    matches!(i.state, ContainerState::Exited { .. })
}

fn kill(plan: &mut PodPlan, i: &Instance, name: &str, grace: Duration, reason: KillReason) {
    if let Some(id) = &i.id {
        plan.actions.push(Action::KillContainer { id: id.clone(), name: name.to_string(), grace, reason });
    }
}

/// Removes what is not needed: containers not in the spec, and per name every instance but
/// the newest and the newest exited one before it.
fn prune(
    input: &PlanInput<'_>,
    init: &[SpecContainer],
    regular: &[SpecContainer],
    grace: Duration,
    plan: &mut PodPlan,
) {
    let known = |name: &str| init.iter().chain(regular).any(|c| c.name == name);
    for c in input.runtime.containers.iter().filter(|c| !known(&c.name)) {
        if !matches!(c.state, ContainerState::Exited { .. }) {
            plan.actions.push(Action::KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                grace,
                reason: KillReason::NotInSpec,
            });
        }
        plan.actions.push(Action::RemoveContainer { id: c.id.clone(), name: c.name.clone() });
    }
    for c in init.iter().chain(regular) {
        let all = instances(input.runtime, None, &c.name);
        let Some((latest, older)) = all.split_first() else { continue };
        let mut kept_exited = is_exited(latest);
        for i in older {
            if !kept_exited && is_exited(i) {
                kept_exited = true;
                continue;
            }
            let Some(id) = &i.id else { continue };
            if !is_exited(i) {
                kill(plan, i, &c.name, grace, KillReason::Duplicate);
            }
            plan.actions.push(Action::RemoveContainer { id: id.clone(), name: c.name.clone() });
        }
    }
}
