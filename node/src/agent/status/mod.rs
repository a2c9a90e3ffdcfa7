//! The pod status a worker reports, as a pure function of the pod, what the runtime holds,
//! what the worker remembers and the probe results ([`pod_status`]), with the phase computed
//! as kubelet's `getPhase` does ([`pod_phase`]).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use flotilla_core::controller::conditions;
use k8s_openapi::api::core::v1::{
    Container as SpecContainer, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::jiff::Timestamp;

use super::node_status::to_time;
use super::plan::{
    ContainerMemory, Instance, PodRuntime, ProbeKind, Waiting, instances, restart_policy, should_restart,
};
use crate::runtime::ContainerState;

/// Everything [`pod_status`] looks at.
pub struct StatusInput<'a> {
    /// The pod, with the status last reported.
    pub pod: &'a Pod,
    /// What the runtime holds for it.
    pub runtime: &'a PodRuntime,
    /// The runtime's name (the scheme of `containerID`).
    pub runtime_name: &'a str,
    /// What the worker remembers, by container name.
    pub memory: &'a BTreeMap<String, ContainerMemory>,
    /// Probe results by container name.
    pub probes: &'a dyn Fn(&str, ProbeKind) -> Option<bool>,
    /// The node's IPs (`hostIP`, `hostIPs`).
    pub host_ips: &'a [String],
    /// Now.
    pub now: Timestamp,
}

fn terminated(i: &Instance, runtime_name: &str, message: Option<String>) -> Option<ApiState> {
    let ContainerState::Exited { exit_code, reason, started_at, finished_at } = &i.state else { return None };
    Some(ApiState {
        terminated: Some(ContainerStateTerminated {
            exit_code: *exit_code,
            reason: Some(reason.clone()).filter(|r| !r.is_empty()),
            message,
            started_at: started_at.map(to_time),
            finished_at: finished_at.map(to_time),
            container_id: i.id.as_ref().map(|id| format!("{runtime_name}://{id}")),
            signal: None,
        }),
        ..Default::default()
    })
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.to_string()), message }),
        ..Default::default()
    }
}

/// Whether init container `c`'s newest instance exited 0.
fn init_done(input: &StatusInput<'_>, c: &SpecContainer) -> bool {
    let all = instances(input.runtime, input.memory.get(&c.name), &c.name);
    all.first().is_some_and(|i| i.exit_code() == Some(0))
}

/// Whether the pod's init containers are done (or a regular container already ran).
pub fn initialized(pod: &Pod, runtime: &PodRuntime, memory: &BTreeMap<String, ContainerMemory>) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    let ran = spec.containers.iter().any(|c| !instances(runtime, None, &c.name).is_empty());
    ran || spec.init_containers.iter().flatten().all(|c| {
        instances(runtime, memory.get(&c.name), &c.name).first().is_some_and(|i| i.exit_code() == Some(0))
    })
}

fn container_status(
    input: &StatusInput<'_>,
    c: &SpecContainer,
    init: bool,
    pod_initialized: bool,
) -> ContainerStatus {
    let memory = input.memory.get(&c.name);
    let all = instances(input.runtime, memory, &c.name);
    let latest = all.first();
    let policy = restart_policy(input.pod);
    let reason = memory.and_then(|m| m.reason.clone());
    let failure_message = |i: &Instance| {
        if i.id.is_none() {
            memory.and_then(|m| m.start_failure.as_ref()).map(|f| f.message.clone())
        } else {
            None
        }
    };
    let older_exited = |skip: usize| {
        all.iter()
            .skip(skip)
            .find(|i| i.exit_code().is_some())
            .and_then(|i| terminated(i, input.runtime_name, failure_message(i)))
    };
    let probe = |kind| (input.probes)(&c.name, kind);
    let mut running = false;
    let (state, last_state) = match latest {
        Some(i) if i.is_running() => {
            running = true;
            let started_at = match &i.state {
                ContainerState::Running { started_at } => started_at.map(to_time),
                _ => None,
            };
            (
                ApiState { running: Some(ContainerStateRunning { started_at }), ..Default::default() },
                older_exited(1),
            )
        }
        Some(i) if i.exit_code().is_some() => {
            let code = i.exit_code().unwrap_or_default();
            let restarts = if init { policy != "Never" && code != 0 } else { should_restart(policy, code) };
            match reason.as_ref().filter(|_| restarts) {
                Some(Waiting { reason, message }) => (
                    waiting(reason, Some(message.clone())),
                    terminated(i, input.runtime_name, failure_message(i)),
                ),
                None => (
                    terminated(i, input.runtime_name, failure_message(i)).unwrap_or_default(),
                    older_exited(1),
                ),
            }
        }
        Some(i) => {
            let r = match (&i.state, &reason) {
                (ContainerState::Unknown, _) => waiting("ContainerStatusUnknown", None),
                (_, Some(w)) => waiting(&w.reason, Some(w.message.clone())),
                _ => waiting("ContainerCreating", None),
            };
            (r, older_exited(1))
        }
        None => {
            let r = match &reason {
                Some(w) => waiting(&w.reason, Some(w.message.clone())),
                None if init || !pod_initialized => waiting("PodInitializing", None),
                None => waiting("ContainerCreating", None),
            };
            (r, None)
        }
    };
    let started = running && (c.startup_probe.is_none() || probe(ProbeKind::Startup) == Some(true));
    let ready = if init {
        latest.is_some_and(|i| i.exit_code() == Some(0))
    } else {
        started && (c.readiness_probe.is_none() || probe(ProbeKind::Readiness) == Some(true))
    };
    let real = all.iter().find(|i| i.id.is_some());
    ContainerStatus {
        name: c.name.clone(),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready,
        started: Some(started),
        restart_count: i32::try_from(latest.map(|i| i.restart_count).unwrap_or(0)).unwrap_or(i32::MAX),
        image: c.image.clone().unwrap_or_default(),
        image_id: real.and_then(|i| i.image_id.clone()).unwrap_or_default(),
        container_id: real.and_then(|i| i.id.as_ref()).map(|id| format!("{}://{id}", input.runtime_name)),
        ..Default::default()
    }
}

/// The pod's phase from its container statuses (kubelet's `getPhase`); a terminal
/// `old_phase` stays.
pub fn pod_phase(
    policy: &str,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    regular_started: bool,
    old_phase: Option<&str>,
) -> &'static str {
    match old_phase {
        Some("Succeeded") => return "Succeeded",
        Some("Failed") => return "Failed",
        _ => {}
    }
    let terminated_exit =
        |s: &Option<ApiState>| s.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    let (mut pending_init, mut failed_init) = (0, 0);
    for s in init {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            pending_init += 1;
        } else if let Some(code) = terminated_exit(&s.state) {
            if code != 0 {
                failed_init += 1;
            }
        } else if let Some(code) = terminated_exit(&s.last_state) {
            if code != 0 {
                failed_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in regular {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(code) = terminated_exit(&s.state) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if terminated_exit(&s.last_state).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !regular_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

fn names(list: &[&str]) -> String {
    format!("[{}]", list.join(" "))
}

/// The status to report: the old one, with the fields the agent owns recomputed.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let now = to_time(input.now);
    let mut status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let is_init = initialized(pod, input.runtime, input.memory);
    let init: Vec<ContainerStatus> =
        init_specs.iter().map(|c| container_status(input, c, true, is_init)).collect();
    let regular: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| container_status(input, c, false, is_init)).collect();
    let regular_started = spec.containers.iter().any(|c| !instances(input.runtime, None, &c.name).is_empty());
    let phase = pod_phase(restart_policy(pod), &init, &regular, regular_started, status.phase.as_deref());

    let mut conds = status.conditions.take().unwrap_or_default();
    let sandbox_ready = input.runtime.running_sandbox().is_some();
    conditions::set(&mut conds, condition("PodReadyToStartContainers", sandbox_ready, None, None), &now);
    let incomplete: Vec<&str> =
        init_specs.iter().filter(|c| !is_init && !init_done(input, c)).map(|c| c.name.as_str()).collect();
    conditions::set(
        &mut conds,
        condition(
            "Initialized",
            incomplete.is_empty(),
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: {}", names(&incomplete))),
        ),
        &now,
    );
    let unready: Vec<&str> = regular.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let (containers_ready, ready_reason, ready_message) = if phase == "Succeeded" {
        (false, "PodCompleted", String::new())
    } else {
        (
            unready.is_empty(),
            "ContainersNotReady",
            format!("containers with unready status: {}", names(&unready)),
        )
    };
    let message = (!ready_message.is_empty()).then_some(ready_message);
    let gates_missing: Vec<String> = spec
        .readiness_gates
        .iter()
        .flatten()
        .filter(|g| !conditions::is_true(&conds, &g.condition_type))
        .map(|g| g.condition_type.clone())
        .collect();
    let cr = condition("ContainersReady", containers_ready, Some(ready_reason), message.clone());
    let ready = if !containers_ready || gates_missing.is_empty() {
        condition("Ready", containers_ready, Some(ready_reason), message)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gates_missing[0]
            )),
        )
    };
    conditions::set(&mut conds, ready, &now);
    conditions::set(&mut conds, cr, &now);
    if conditions::find(&conds, "PodScheduled").is_none() {
        conditions::set(&mut conds, condition("PodScheduled", true, None, None), &now);
    }
    status.conditions = Some(conds);
    status.phase = Some(phase.to_string());
    status.init_container_statuses = (!init.is_empty()).then_some(init);
    status.container_statuses = Some(regular);
    if let Some(ip) = input.runtime.running_sandbox().and_then(|s| s.ip) {
        status.pod_ip = Some(ip.to_string());
        status.pod_ips = Some(vec![PodIP { ip: ip.to_string() }]);
    }
    if let Some(first) = input.host_ips.first() {
        status.host_ip = Some(first.clone());
        status.host_ips = Some(input.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect());
    }
    if status.start_time.is_none() {
        status.start_time = Some(now);
    }
    status
}
