//! Table tests of [`plan_pod`].

// Table rows are tuples.
#![allow(clippy::type_complexity)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod, PodSpec, PodStatus, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::agent::backoff::Backoff;
use crate::runtime::{Container, ContainerState, PodRef, Sandbox};

pub(crate) fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).expect("a valid second")
}

pub(crate) fn spec_container(name: &str) -> SpecContainer {
    SpecContainer { name: name.into(), image: Some(format!("img-{name}")), ..Default::default() }
}

pub(crate) fn pod(policy: &str, init: &[&str], containers: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            resource_version: Some("5".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty()).then(|| init.iter().map(|n| spec_container(n)).collect()),
            containers: containers.iter().map(|n| spec_container(n)).collect(),
            node_name: Some("n1".into()),
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn pref() -> PodRef {
    PodRef { uid: "u1".into(), namespace: "default".into(), name: "web".into() }
}

pub(crate) fn sandbox(running: bool) -> Sandbox {
    Sandbox { id: "sb".into(), pod: pref(), ip: Some("10.1.0.2".parse().expect("an IP literal")), running }
}

pub(crate) fn container(name: &str, rc: u32, state: ContainerState) -> Container {
    Container {
        id: format!("{name}-{rc}"),
        pod: pref(),
        name: name.into(),
        image: format!("img-{name}"),
        image_id: Some(format!("sha256:{name}")),
        state,
        restart_count: rc,
    }
}

pub(crate) fn running(name: &str, rc: u32) -> Container {
    container(name, rc, ContainerState::Running { started_at: Some(at(0)) })
}

pub(crate) fn exited(name: &str, rc: u32, code: i32, finished: i64) -> Container {
    let reason = if code == 0 { "Completed" } else { "Error" };
    container(
        name,
        rc,
        ContainerState::Exited {
            exit_code: code,
            reason: reason.into(),
            started_at: Some(at(finished - 1)),
            finished_at: Some(at(finished)),
        },
    )
}

fn rt(sandbox_running: Option<bool>, containers: Vec<Container>) -> PodRuntime {
    PodRuntime { sandboxes: sandbox_running.map(sandbox).into_iter().collect(), containers }
}

fn no_probes(_: &str, _: ProbeKind) -> Option<bool> {
    None
}

struct Case<'a> {
    pod: Option<&'a Pod>,
    gone: bool,
    runtime: PodRuntime,
    memory: BTreeMap<String, ContainerMemory>,
    probes: &'a dyn Fn(&str, ProbeKind) -> Option<bool>,
    volumes: VolumeState,
    now: Timestamp,
}

impl<'a> Case<'a> {
    fn new(pod: &'a Pod, runtime: PodRuntime) -> Self {
        Case {
            pod: Some(pod),
            gone: false,
            runtime,
            memory: BTreeMap::new(),
            probes: &no_probes,
            volumes: VolumeState::Ready,
            now: at(100),
        }
    }

    fn plan(&self) -> PodPlan {
        plan_pod(&PlanInput {
            pod: self.pod,
            gone: self.gone,
            runtime: &self.runtime,
            memory: &self.memory,
            probes: self.probes,
            volumes: &self.volumes,
            now: self.now,
        })
    }
}

fn start(name: &str, init: bool, rc: u32, backoff: Option<Backoff>) -> Action {
    Action::StartContainer { name: name.into(), init, restart_count: rc, backoff }
}

fn kill(name: &str, rc: u32, grace: u64, reason: KillReason) -> Action {
    Action::KillContainer {
        id: format!("{name}-{rc}"),
        name: name.into(),
        grace: Duration::from_secs(grace),
        reason,
    }
}

fn remove(name: &str, rc: u32) -> Action {
    Action::RemoveContainer { id: format!("{name}-{rc}"), name: name.into() }
}

fn backoff(delay: u64, last: i64) -> Backoff {
    Backoff { delay: Duration::from_secs(delay), last_update: at(last) }
}

#[test]
fn a_new_pod_gets_volumes_a_sandbox_and_its_first_containers() {
    let plain = pod("Always", &[], &["a", "b"]);
    let with_init = pod("Always", &["i1", "i2"], &["a"]);
    let cases: Vec<(&str, &Pod, VolumeState, Vec<Action>)> = vec![
        (
            "volumes first",
            &plain,
            VolumeState::NotReady,
            vec![
                Action::SetUpVolumes,
                Action::RunSandbox,
                start("a", false, 0, None),
                start("b", false, 0, None),
            ],
        ),
        (
            "volumes ready",
            &plain,
            VolumeState::Ready,
            vec![Action::RunSandbox, start("a", false, 0, None), start("b", false, 0, None)],
        ),
        (
            "only the first init container",
            &with_init,
            VolumeState::Ready,
            vec![Action::RunSandbox, start("i1", true, 0, None)],
        ),
    ];
    for (name, p, volumes, want) in cases {
        let mut c = Case::new(p, rt(None, vec![]));
        c.volumes = volumes;
        let plan = c.plan();
        assert_eq!(plan.actions, want, "{name}");
        assert_eq!(plan.wake_at, None, "{name}");
    }
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let always = pod("Always", &["i1", "i2"], &["a"]);
    let never = pod("Never", &["i1", "i2"], &["a"]);
    let cases: Vec<(&str, &Pod, Vec<Container>, Vec<Action>)> = vec![
        ("first running: wait", &always, vec![running("i1", 0)], vec![]),
        (
            "first done: second starts",
            &always,
            vec![exited("i1", 0, 0, 50)],
            vec![start("i2", true, 0, None)],
        ),
        (
            "both done: regular starts",
            &always,
            vec![exited("i1", 0, 0, 50), exited("i2", 0, 0, 60)],
            vec![start("a", false, 0, None)],
        ),
        (
            "first failed, Always: restarted with a first backoff",
            &always,
            vec![exited("i1", 0, 1, 50)],
            vec![start("i1", true, 1, Some(backoff(10, 50)))],
        ),
        ("first failed, Never: nothing more runs", &never, vec![exited("i1", 0, 1, 50)], vec![]),
        ("regular already ran: init containers are not rerun", &always, vec![running("a", 0)], vec![]),
    ];
    for (name, p, containers, want) in cases {
        let plan = Case::new(p, rt(Some(true), containers)).plan();
        assert_eq!(plan.actions, want, "{name}");
    }
}

#[test]
fn restart_policies_decide_what_restarts() {
    let cases = [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 2, true),
        ("Never", 0, false),
        ("Never", 137, false),
    ];
    for (policy, code, restarts) in cases {
        let p = pod(policy, &[], &["a"]);
        let plan = Case::new(&p, rt(Some(true), vec![exited("a", 3, code, 90)])).plan();
        let want = if restarts { vec![start("a", false, 4, Some(backoff(10, 90)))] } else { vec![] };
        assert_eq!(plan.actions, want, "{policy} exit {code}");
        assert!(plan.waiting.is_empty(), "{policy} exit {code}");
    }
}

#[test]
fn crash_loops_wait_for_their_backoff() {
    let p = pod("Always", &[], &["a"]);
    // (backoff in memory, finished at, now) -> wait until (None: restart now with this delay)
    let cases: Vec<(Option<Backoff>, i64, i64, Result<i64, u64>)> = vec![
        (None, 95, 100, Err(10)),
        (Some(backoff(10, 80)), 95, 100, Ok(105)),
        (Some(backoff(10, 80)), 95, 105, Err(20)),
        (Some(backoff(20, 95)), 97, 100, Ok(117)),
        (Some(backoff(300, 50)), 60, 100, Ok(360)),
        // Ten minutes after the backoff last grew it is forgotten.
        (Some(backoff(300, -600)), 99, 100, Err(10)),
    ];
    for (b, finished, now, want) in cases {
        let mut c = Case::new(&p, rt(Some(true), vec![exited("a", 2, 1, finished)]));
        c.now = at(now);
        if let Some(b) = &b {
            c.memory
                .insert("a".into(), ContainerMemory { crash_backoff: Some(b.clone()), ..Default::default() });
        }
        let plan = c.plan();
        match want {
            Ok(until) => {
                assert!(plan.actions.is_empty(), "{b:?}");
                assert_eq!(plan.wake_at, Some(at(until)), "{b:?}");
                let w = &plan.waiting["a"];
                assert_eq!(w.reason, "CrashLoopBackOff");
                let delay = b.as_ref().map(|b| b.delay.as_secs()).unwrap_or_default();
                assert_eq!(
                    w.message,
                    format!("back-off {delay}s restarting failed container=a pod=web_default(u1)")
                );
            }
            Err(delay) => {
                assert_eq!(plan.actions, vec![start("a", false, 3, Some(backoff(delay, finished)))], "{b:?}");
                assert_eq!(plan.wake_at, None);
            }
        }
    }
}

#[test]
fn image_failures_back_off_and_invalid_names_stop() {
    let p = pod("Always", &[], &["a"]);
    let failure = |image: &str, invalid: bool| ImageFailure {
        image: image.into(),
        invalid,
        message: "not found".into(),
        backoff: backoff(10, 95),
    };
    let cases: Vec<(&str, ImageFailure, i64, Option<&str>, Option<i64>)> = vec![
        ("in backoff", failure("img-a", false), 100, Some("ImagePullBackOff"), Some(105)),
        ("backoff over: retry", failure("img-a", false), 106, None, None),
        ("invalid: never retried", failure("img-a", true), 1000, Some("InvalidImageName"), None),
        ("another image: retry", failure("img-old", false), 100, None, None),
    ];
    for (name, f, now, reason, wake) in cases {
        let mut c = Case::new(&p, rt(Some(true), vec![]));
        c.now = at(now);
        c.memory.insert("a".into(), ContainerMemory { image_failure: Some(f), ..Default::default() });
        let plan = c.plan();
        assert_eq!(plan.waiting.get("a").map(|w| w.reason.as_str()), reason, "{name}");
        assert_eq!(plan.wake_at, wake.map(at), "{name}");
        let want = if reason.is_none() { vec![start("a", false, 0, None)] } else { vec![] };
        assert_eq!(plan.actions, want, "{name}");
    }
    let mut c = Case::new(&p, rt(Some(true), vec![]));
    c.memory.insert(
        "a".into(),
        ContainerMemory { image_failure: Some(failure("img-a", false)), ..Default::default() },
    );
    assert_eq!(c.plan().waiting["a"].message, "Back-off pulling image \"img-a\"");
}

#[test]
fn failed_starts_count_as_exits() {
    let p = pod("Always", &[], &["a"]);
    let failed = |rc: u32, at_s: i64| ContainerMemory {
        start_failure: Some(StartFailure {
            reason: "RunContainerError".into(),
            message: "no such file".into(),
            restart_count: rc,
            at: at(at_s),
        }),
        crash_backoff: (rc > 0).then(|| backoff(10, 90)),
        ..Default::default()
    };
    let mut c = Case::new(&p, rt(Some(true), vec![]));
    c.memory.insert("a".into(), failed(0, 99));
    assert_eq!(c.plan().actions, vec![start("a", false, 1, Some(backoff(10, 99)))]);
    c.memory.insert("a".into(), failed(1, 99));
    let plan = c.plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.waiting["a"].reason, "CrashLoopBackOff");
    assert_eq!(plan.wake_at, Some(at(109)));
    // Never: a failed start is final.
    let never = pod("Never", &[], &["a"]);
    let mut c = Case::new(&never, rt(Some(true), vec![]));
    c.memory.insert("a".into(), failed(0, 99));
    assert_eq!(c.plan(), PodPlan::default());
}

#[test]
fn probes_and_spec_changes_restart_running_containers() {
    let mut p = pod("Always", &[], &["a"]);
    let probe = Some(Probe::default());
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].liveness_probe = probe.clone();
        spec.containers[0].startup_probe = probe.clone();
        spec.containers[0].termination_message_path = None;
        spec.termination_grace_period_seconds = Some(7);
    }
    let live_failed = |_: &str, k: ProbeKind| match k {
        ProbeKind::Liveness => Some(false),
        _ => Some(true),
    };
    let startup_failed = |_: &str, k: ProbeKind| match k {
        ProbeKind::Startup => Some(false),
        _ => None,
    };
    let healthy = |_: &str, _: ProbeKind| Some(true);
    let unknown = |_: &str, _: ProbeKind| None;
    let cases: Vec<(&str, &str, &dyn Fn(&str, ProbeKind) -> Option<bool>, Vec<Action>)> = vec![
        (
            "liveness failed",
            "Always",
            &live_failed,
            vec![kill("a", 2, 7, KillReason::LivenessFailed), start("a", false, 3, None)],
        ),
        ("liveness failed, Never", "Never", &live_failed, vec![kill("a", 2, 7, KillReason::LivenessFailed)]),
        (
            "startup failed",
            "OnFailure",
            &startup_failed,
            vec![kill("a", 2, 7, KillReason::StartupFailed), start("a", false, 3, None)],
        ),
        ("healthy", "Always", &healthy, vec![]),
        ("no results yet", "Always", &unknown, vec![]),
    ];
    for (name, policy, probes, want) in cases {
        if let Some(spec) = p.spec.as_mut() {
            spec.restart_policy = Some(policy.into());
        }
        let mut c = Case::new(&p, rt(Some(true), vec![running("a", 2)]));
        c.probes = probes;
        assert_eq!(c.plan().actions, want, "{name}");
    }
    // A new image restarts the container, whatever the policy.
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].image = Some("img-a:v2".into());
        spec.restart_policy = Some("Never".into());
    }
    let mut c = Case::new(&p, rt(Some(true), vec![running("a", 2)]));
    c.probes = &healthy;
    assert_eq!(c.plan().actions, vec![kill("a", 2, 7, KillReason::SpecChanged), start("a", false, 3, None)]);
}

#[test]
fn adopted_containers_are_kept() {
    let p = pod("Always", &["i"], &["a", "b"]);
    let containers = vec![exited("i", 0, 0, 10), running("a", 4), running("b", 0)];
    let mut c = Case::new(&p, rt(Some(true), containers));
    c.volumes = VolumeState::NotReady;
    assert_eq!(c.plan().actions, vec![Action::SetUpVolumes]);
    c.volumes = VolumeState::Ready;
    assert_eq!(c.plan(), PodPlan::default());
}

#[test]
fn old_instances_and_unknown_containers_are_removed() {
    let p = pod("Always", &[], &["a"]);
    let containers = vec![
        running("a", 3),
        exited("a", 2, 1, 50),
        exited("a", 1, 1, 40),
        exited("a", 0, 1, 30),
        running("stray", 0),
        exited("old", 0, 0, 10),
    ];
    let plan = Case::new(&p, rt(Some(true), containers)).plan();
    assert_eq!(
        plan.actions,
        vec![
            kill("stray", 0, 30, KillReason::NotInSpec),
            remove("stray", 0),
            remove("old", 0),
            remove("a", 1),
            remove("a", 0),
        ]
    );
    // The newest instance exited: it is the one kept for the status.
    let plan = Case::new(&p, rt(Some(true), vec![exited("a", 1, 0, 60), exited("a", 0, 1, 30)])).plan();
    assert_eq!(plan.actions[0], remove("a", 0));
}

#[test]
fn deletion_kills_with_the_grace_period_then_removes_everything() {
    let mut p = pod("Always", &[], &["a", "b"]);
    p.metadata.deletion_timestamp = Some(Time(at(90)));
    p.metadata.deletion_grace_period_seconds = Some(12);
    let containers = vec![running("a", 0), exited("b", 1, 1, 50)];
    let plan = Case::new(&p, rt(Some(true), containers.clone())).plan();
    assert_eq!(
        plan.actions,
        vec![
            kill("a", 0, 12, KillReason::Terminating),
            remove("a", 0),
            remove("b", 1),
            Action::RemoveSandbox { id: "sb".into() },
            Action::TearDownVolumes,
            Action::DeletePod,
        ]
    );
    // Nothing left: only the deletion remains.
    let mut c = Case::new(&p, rt(None, vec![]));
    c.volumes = VolumeState::TornDown;
    assert_eq!(c.plan().actions, vec![Action::DeletePod]);
    // Gone from the API: the worker finishes instead, with the pod's own grace period.
    let mut plain = pod("Always", &[], &["a"]);
    if let Some(s) = plain.spec.as_mut() {
        s.termination_grace_period_seconds = Some(3);
    }
    let mut c = Case::new(&plain, rt(Some(true), vec![running("a", 0)]));
    c.gone = true;
    assert_eq!(
        c.plan().actions,
        vec![
            kill("a", 0, 3, KillReason::Terminating),
            remove("a", 0),
            Action::RemoveSandbox { id: "sb".into() },
            Action::TearDownVolumes,
            Action::Finish,
        ]
    );
    // Never known: the orphan grace period.
    let mut c = Case::new(&plain, rt(None, vec![running("a", 0)]));
    c.pod = None;
    c.gone = true;
    c.volumes = VolumeState::TornDown;
    assert_eq!(
        c.plan().actions,
        vec![kill("a", 0, 2, KillReason::Terminating), remove("a", 0), Action::Finish]
    );
}

#[test]
fn terminal_pods_start_nothing() {
    let mut p = pod("Always", &[], &["a", "b"]);
    p.status = Some(PodStatus { phase: Some("Failed".into()), ..Default::default() });
    let plan = Case::new(&p, rt(Some(true), vec![running("a", 0), exited("b", 0, 1, 50)])).plan();
    assert_eq!(plan.actions, vec![kill("a", 0, 30, KillReason::PodTerminal)]);
    // A Never pod whose containers ran gets no new sandbox.
    let never = pod("Never", &[], &["a"]);
    assert_eq!(Case::new(&never, rt(Some(false), vec![exited("a", 0, 0, 50)])).plan(), PodPlan::default());
    // An Always pod does: its running containers are killed and it starts again.
    let always = pod("Always", &[], &["a"]);
    let plan = Case::new(&always, rt(Some(false), vec![running("a", 0)])).plan();
    assert_eq!(plan.actions, vec![kill("a", 0, 30, KillReason::SandboxGone), Action::RunSandbox]);
}

#[test]
fn failed_volumes_hold_containers_back() {
    let p = pod("Always", &[], &["a"]);
    let mut c = Case::new(&p, rt(Some(true), vec![]));
    c.volumes =
        VolumeState::Failed { message: "volume \"data\": no such host path".into(), retry_at: at(110) };
    let plan = c.plan();
    assert!(plan.actions.is_empty());
    assert_eq!(plan.waiting["a"].reason, "CreateContainerConfigError");
    assert!(plan.waiting["a"].message.contains("\"data\""));
    assert_eq!(plan.wake_at, Some(at(110)));
    c.now = at(110);
    assert_eq!(c.plan().actions, vec![Action::SetUpVolumes, start("a", false, 0, None)]);
}

#[test]
fn created_but_never_started_containers_are_replaced() {
    let p = pod("Always", &[], &["a"]);
    let plan = Case::new(&p, rt(Some(true), vec![container("a", 2, ContainerState::Created)])).plan();
    assert_eq!(plan.actions, vec![remove("a", 2), start("a", false, 2, None)]);
}
