//! Table tests of [`pod_status`] and [`pod_phase`].

// Table rows are tuples.
#![allow(clippy::type_complexity)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
    PodReadinessGate, Probe,
};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::agent::node_status::to_time;
use crate::agent::plan::tests::{at, exited, pod, running};
use crate::agent::plan::{ContainerMemory, PodRuntime, ProbeKind, StartFailure, Waiting};
use crate::runtime::Sandbox;

fn rt(containers: Vec<crate::runtime::Container>) -> PodRuntime {
    PodRuntime { sandboxes: vec![crate::agent::plan::tests::sandbox(true)], containers }
}

fn no_probes(_: &str, _: ProbeKind) -> Option<bool> {
    None
}

fn status_with(
    pod: &Pod,
    runtime: &PodRuntime,
    memory: &BTreeMap<String, ContainerMemory>,
    probes: &dyn Fn(&str, ProbeKind) -> Option<bool>,
    now: Timestamp,
) -> PodStatus {
    let hosts = vec!["192.168.1.10".to_string()];
    pod_status(&StatusInput { pod, runtime, runtime_name: "fake", memory, probes, host_ips: &hosts, now })
}

fn status(pod: &Pod, runtime: &PodRuntime, memory: &BTreeMap<String, ContainerMemory>) -> PodStatus {
    status_with(pod, runtime, memory, &no_probes, at(100))
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions.iter().flatten().find(|c| c.type_ == t).unwrap_or_else(|| panic!("condition {t} missing"))
}

fn state_name(s: &ContainerStatus) -> String {
    let st = s.state.clone().unwrap_or_default();
    match (st.waiting, st.running, st.terminated) {
        (Some(w), _, _) => format!("waiting:{}", w.reason.unwrap_or_default()),
        (_, Some(_), _) => "running".into(),
        (_, _, Some(t)) => format!("terminated:{}:{}", t.reason.unwrap_or_default(), t.exit_code),
        _ => "none".into(),
    }
}

fn reason_memory(name: &str, reason: &str) -> BTreeMap<String, ContainerMemory> {
    BTreeMap::from([(
        name.to_string(),
        ContainerMemory {
            reason: Some(Waiting { reason: reason.into(), message: format!("{reason} details") }),
            ..Default::default()
        },
    )])
}

#[test]
fn a_running_pod_is_ready_with_ips_and_ids() {
    let p = pod("Always", &[], &["a"]);
    let s = status(&p, &rt(vec![running("a", 2), exited("a", 1, 1, 50)]), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for t in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        assert_eq!(cond(&s, t).status, "True", "{t}");
        assert_eq!(cond(&s, t).last_transition_time, Some(to_time(at(100))), "{t}");
    }
    let c = &s.container_statuses.as_ref().expect("container statuses")[0];
    assert_eq!(state_name(c), "running");
    assert!(c.ready);
    assert_eq!(c.started, Some(true));
    assert_eq!(c.restart_count, 2);
    assert_eq!(c.container_id.as_deref(), Some("fake://a-2"));
    assert_eq!(c.image, "img-a");
    assert_eq!(c.image_id, "sha256:a");
    let last = c.last_state.clone().and_then(|l| l.terminated).expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(last.container_id.as_deref(), Some("fake://a-1"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.0.2"));
    assert_eq!(s.pod_ips.as_ref().map(|v| v[0].ip.as_str()), Some("10.1.0.2"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.start_time, Some(to_time(at(100))));
    assert!(s.init_container_statuses.is_none());
}

#[test]
fn recomputing_an_unchanged_pod_changes_nothing() {
    let mut p = pod("Always", &["i"], &["a", "b"]);
    let runtime = rt(vec![exited("i", 0, 0, 10), running("a", 0), exited("b", 3, 1, 90)]);
    let memory = reason_memory("b", "CrashLoopBackOff");
    let first = status_with(&p, &runtime, &memory, &no_probes, at(100));
    p.status = Some(first.clone());
    let again = status_with(&p, &runtime, &memory, &no_probes, at(500));
    assert_eq!(again, first);
    // Once b runs, ContainersReady flips and only its transition time moves.
    p.status = Some(first.clone());
    let healed = rt(vec![exited("i", 0, 0, 10), running("a", 0), running("b", 4)]);
    let later = status_with(&p, &healed, &BTreeMap::new(), &no_probes, at(600));
    assert_eq!(cond(&first, "ContainersReady").status, "False");
    assert_eq!(cond(&later, "ContainersReady").status, "True");
    assert_eq!(cond(&later, "ContainersReady").last_transition_time, Some(to_time(at(600))));
    assert_eq!(cond(&later, "Initialized").last_transition_time, Some(to_time(at(100))));
    assert_eq!(later.start_time, Some(to_time(at(100))));
}

#[test]
fn container_states_follow_the_runtime_and_the_reasons() {
    let cases: Vec<(
        &str,
        &str,
        Vec<crate::runtime::Container>,
        BTreeMap<String, ContainerMemory>,
        &str,
        &str,
    )> = vec![
        ("nothing yet", "Always", vec![], BTreeMap::new(), "waiting:ContainerCreating", "Pending"),
        (
            "image missing",
            "Always",
            vec![],
            reason_memory("a", "ErrImagePull"),
            "waiting:ErrImagePull",
            "Pending",
        ),
        (
            "crash looping",
            "Always",
            vec![exited("a", 2, 1, 90)],
            reason_memory("a", "CrashLoopBackOff"),
            "waiting:CrashLoopBackOff",
            "Running",
        ),
        (
            "exited, about to restart",
            "Always",
            vec![exited("a", 2, 1, 90)],
            BTreeMap::new(),
            "terminated:Error:1",
            "Running",
        ),
        (
            "done, Never",
            "Never",
            vec![exited("a", 0, 0, 90)],
            BTreeMap::new(),
            "terminated:Completed:0",
            "Succeeded",
        ),
        (
            "failed, Never",
            "Never",
            vec![exited("a", 0, 2, 90)],
            BTreeMap::new(),
            "terminated:Error:2",
            "Failed",
        ),
        (
            "failed, Never, stale reason ignored",
            "Never",
            vec![exited("a", 0, 2, 90)],
            reason_memory("a", "CrashLoopBackOff"),
            "terminated:Error:2",
            "Failed",
        ),
        (
            "done, OnFailure",
            "OnFailure",
            vec![exited("a", 0, 0, 90)],
            BTreeMap::new(),
            "terminated:Completed:0",
            "Succeeded",
        ),
        (
            "failed, OnFailure",
            "OnFailure",
            vec![exited("a", 0, 1, 90)],
            BTreeMap::new(),
            "terminated:Error:1",
            "Running",
        ),
    ];
    for (name, policy, containers, memory, want_state, want_phase) in cases {
        let p = pod(policy, &[], &["a"]);
        let s = status(&p, &rt(containers), &memory);
        let c = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(state_name(c), want_state, "{name}");
        assert_eq!(s.phase.as_deref(), Some(want_phase), "{name}");
        assert!(!c.ready, "{name}");
    }
    let p = pod("Always", &[], &["a"]);
    let s = status(&p, &rt(vec![exited("a", 2, 1, 90)]), &reason_memory("a", "CrashLoopBackOff"));
    let c = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(c.last_state.clone().and_then(|l| l.terminated).map(|t| t.exit_code), Some(1));
    assert_eq!(c.restart_count, 2);
    let done = status(&pod("Never", &[], &["a"]), &rt(vec![exited("a", 0, 0, 90)]), &BTreeMap::new());
    assert_eq!(cond(&done, "Ready").reason.as_deref(), Some("PodCompleted"));
}

#[test]
fn a_failed_start_shows_its_reason_and_counts() {
    let memory = BTreeMap::from([(
        "a".to_string(),
        ContainerMemory {
            start_failure: Some(StartFailure {
                reason: "RunContainerError".into(),
                message: "exec: \"nope\": not found".into(),
                restart_count: 1,
                at: at(95),
            }),
            reason: Some(Waiting { reason: "RunContainerError".into(), message: "exec failed".into() }),
            ..Default::default()
        },
    )]);
    let s = status(&pod("Always", &[], &["a"]), &rt(vec![exited("a", 0, 1, 90)]), &memory);
    let c = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(state_name(c), "waiting:RunContainerError");
    assert_eq!(c.restart_count, 1);
    assert_eq!(c.container_id.as_deref(), Some("fake://a-0"));
    let never = status(&pod("Never", &[], &["a"]), &rt(vec![]), &memory);
    let c = &never.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(state_name(c), "terminated:RunContainerError:128");
    let t = c.state.clone().and_then(|s| s.terminated).expect("terminated");
    assert_eq!(t.message.as_deref(), Some("exec: \"nope\": not found"));
    assert_eq!(never.phase.as_deref(), Some("Failed"));
}

#[test]
fn init_containers_gate_initialized() {
    let p = pod("Always", &["i1", "i2"], &["a"]);
    let s = status(&p, &rt(vec![exited("i1", 0, 0, 10), running("i2", 0)]), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init = cond(&s, "Initialized");
    assert_eq!((init.status.as_str(), init.reason.as_deref()), ("False", Some("ContainersNotInitialized")));
    assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [i2]"));
    let statuses = s.init_container_statuses.clone().expect("init statuses");
    assert_eq!(state_name(&statuses[0]), "terminated:Completed:0");
    assert!(statuses[0].ready);
    assert_eq!(state_name(&statuses[1]), "running");
    let regular = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(state_name(regular), "waiting:PodInitializing");
    // A failed init container under Never fails the pod.
    let never = pod("Never", &["i1"], &["a"]);
    let s = status(&never, &rt(vec![exited("i1", 0, 1, 10)]), &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    // Under Always it is retried: the pod stays Pending.
    let s = status(&p, &rt(vec![exited("i1", 1, 1, 10)]), &reason_memory("i1", "CrashLoopBackOff"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(state_name(&s.init_container_statuses.clone().expect("init")[0]), "waiting:CrashLoopBackOff");
}

#[test]
fn probes_gate_started_and_ready() {
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].readiness_probe = Some(Probe::default());
        spec.containers[0].startup_probe = Some(Probe::default());
    }
    let cases: Vec<(Option<bool>, Option<bool>, bool, bool)> = vec![
        (None, None, false, false),
        (Some(true), None, true, false),
        (Some(true), Some(false), true, false),
        (Some(true), Some(true), true, true),
        (None, Some(true), false, false),
    ];
    for (startup, readiness, started, ready) in cases {
        let probes = move |_: &str, k: ProbeKind| match k {
            ProbeKind::Startup => startup,
            ProbeKind::Readiness => readiness,
            ProbeKind::Liveness => None,
        };
        let s = status_with(&p, &rt(vec![running("a", 0)]), &BTreeMap::new(), &probes, at(100));
        let c = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!((c.started, c.ready), (Some(started), ready), "{startup:?} {readiness:?}");
        assert_eq!(cond(&s, "Ready").status == "True", ready);
        if !ready {
            assert_eq!(cond(&s, "Ready").message.as_deref(), Some("containers with unready status: [a]"));
        }
    }
}

#[test]
fn readiness_gates_and_foreign_conditions() {
    let mut p = pod("Always", &[], &["a"]);
    if let Some(spec) = p.spec.as_mut() {
        spec.readiness_gates = Some(vec![PodReadinessGate { condition_type: "example.com/lb".into() }]);
    }
    let s = status(&p, &rt(vec![running("a", 0)]), &BTreeMap::new());
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("ReadinessGatesNotReady"));
    let mut with_gate = s.clone();
    with_gate.conditions.get_or_insert_with(Vec::new).push(PodCondition {
        type_: "example.com/lb".into(),
        status: "True".into(),
        ..Default::default()
    });
    p.status = Some(with_gate);
    let s = status(&p, &rt(vec![running("a", 0)]), &BTreeMap::new());
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "example.com/lb").status, "True");
}

#[test]
fn terminal_phases_stay_and_ips_are_kept() {
    let mut p = pod("Always", &[], &["a"]);
    let first = status(&p, &rt(vec![running("a", 0)]), &BTreeMap::new());
    p.status = Some(PodStatus { phase: Some("Failed".into()), ..first });
    let no_sandbox = PodRuntime {
        sandboxes: vec![Sandbox { running: false, ..crate::agent::plan::tests::sandbox(false) }],
        containers: vec![exited("a", 0, 1, 90)],
    };
    let s = status(&p, &no_sandbox, &BTreeMap::new());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.0.2"));
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
}

#[test]
fn phase_table() {
    let st = |state: ApiState, last: Option<ApiState>| ContainerStatus {
        state: Some(state),
        last_state: last,
        ..Default::default()
    };
    let run = || ApiState { running: Some(Default::default()), ..Default::default() };
    let wait = || ApiState { waiting: Some(Default::default()), ..Default::default() };
    let term = |code| ApiState {
        terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }),
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<ContainerStatus>, Vec<ContainerStatus>, bool, Option<&str>, &str)> = vec![
        ("Always", vec![], vec![st(run(), None)], true, None, "Running"),
        ("Always", vec![], vec![st(wait(), None)], false, None, "Pending"),
        ("Always", vec![], vec![st(wait(), Some(term(1)))], true, None, "Running"),
        ("Always", vec![], vec![st(term(0), None)], true, None, "Running"),
        ("Never", vec![], vec![st(term(0), None), st(term(0), None)], true, None, "Succeeded"),
        ("Never", vec![], vec![st(term(0), None), st(term(1), None)], true, None, "Failed"),
        ("Never", vec![], vec![st(term(0), None), st(run(), None)], true, None, "Running"),
        ("OnFailure", vec![], vec![st(term(1), None)], true, None, "Running"),
        ("Never", vec![st(term(1), None)], vec![st(wait(), None)], false, None, "Failed"),
        ("Always", vec![st(run(), None)], vec![st(wait(), None)], false, None, "Pending"),
        ("Always", vec![st(wait(), Some(term(1)))], vec![st(wait(), None)], false, None, "Pending"),
        ("Always", vec![], vec![st(run(), None)], true, Some("Succeeded"), "Succeeded"),
        ("Always", vec![], vec![st(run(), None)], true, Some("Failed"), "Failed"),
    ];
    for (i, (policy, init, regular, started, old, want)) in cases.into_iter().enumerate() {
        assert_eq!(pod_phase(policy, &init, &regular, started, old), want, "case {i}");
    }
}
