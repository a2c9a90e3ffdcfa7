//! The workers' timing, thresholds, startup gating and adopted containers' seeded results
//! under a paused clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, ExecAction, Pod, PodStatus};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

use super::fake::{FakeRuntime, Script};
use crate::probe::{Probe, ProbeKind, ProbeUpdate, Prober, Seed};

/// Under the paused clock an hour passes instantly once every task waits on a timer only.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what} probably deadlocked"))
}

fn exec(command: &str, delay: i32, period: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec![command.to_string()]) }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

fn update(kind: ProbeKind, success: bool) -> ProbeUpdate {
    ProbeUpdate { pod_uid: "pod1".into(), container_name: "app".into(), kind, success }
}

fn drain(rx: &mut mpsc::Receiver<ProbeUpdate>) -> Vec<ProbeUpdate> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

struct Setup {
    rt: Arc<FakeRuntime>,
    prober: Prober,
    rx: mpsc::Receiver<ProbeUpdate>,
    start: Instant,
}

fn setup() -> Setup {
    let rt = Arc::new(FakeRuntime::default());
    let (tx, rx) = mpsc::channel(16);
    let prober = Prober::new(rt.clone(), tx);
    Setup { rt, prober, rx, start: Instant::now() }
}

#[tokio::test(start_paused = true)]
async fn initial_delay_and_period_are_respected() {
    within("a readiness worker", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            readiness_probe: Some(exec("ready", 5, 10, 3)),
            ..Default::default()
        };
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(false));
        assert_eq!(prober.result("pod1", "app", ProbeKind::Liveness), None, "no liveness probe");
        sleep(Duration::from_secs(36)).await;
        assert_eq!(rt.times("ready", start), vec![5, 15, 25, 35]);
        assert_eq!(drain(&mut rx), vec![update(ProbeKind::Readiness, true)]);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(true));
        assert_eq!(prober.last_message("pod1", "app", ProbeKind::Readiness), None);
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn liveness_flips_after_failure_threshold_then_holds() {
    within("a liveness worker", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            liveness_probe: Some(exec("live", 0, 1, 3)),
            ..Default::default()
        };
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        sleep(Duration::from_millis(10_500)).await;
        assert!(drain(&mut rx).is_empty(), "liveness starts true; successes change nothing");
        rt.set("live", Script::Exit(1, "sick"));
        let got = rx.recv().await.expect("the prober is alive");
        assert_eq!(got, update(ProbeKind::Liveness, false));
        assert_eq!(start.elapsed(), Duration::from_secs(13), "third consecutive failure (11, 12, 13)");
        assert!(prober.last_message("pod1", "app", ProbeKind::Liveness).is_some_and(|m| m.contains("sick")));
        sleep(Duration::from_secs(10)).await;
        assert_eq!(rt.times("live", start), (0..=13).collect::<Vec<_>>(), "on hold after the failure");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Liveness), Some(false));

        // The restarted container gets fresh workers and results.
        rt.set("live", Script::Exit(0, ""));
        prober.start_container("pod1", None, &c, "c2", Seed::default());
        assert_eq!(prober.result("pod1", "app", ProbeKind::Liveness), Some(true));
        assert_eq!(rx.recv().await, Some(update(ProbeKind::Liveness, true)), "the reset is announced");
        sleep(Duration::from_millis(2500)).await;
        let calls = rt.calls();
        assert_eq!(calls.iter().filter(|c| c.container_id == "c2").count(), 3);
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_liveness_and_readiness() {
    within("startup, liveness and readiness workers", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            startup_probe: Some(exec("startup", 0, 1, 30)),
            liveness_probe: Some(exec("live", 0, 1, 3)),
            readiness_probe: Some(exec("ready", 0, 1, 3)),
            ..Default::default()
        };
        rt.set("startup", Script::Exit(1, "still starting"));
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        sleep(Duration::from_millis(5500)).await;
        assert_eq!(rt.times("startup", start), vec![0, 1, 2, 3, 4, 5]);
        assert!(rt.times("live", start).is_empty(), "liveness waits for startup");
        assert!(rt.times("ready", start).is_empty(), "readiness waits for startup");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Startup), Some(false));
        assert!(drain(&mut rx).is_empty());

        rt.set("startup", Script::Exit(0, ""));
        sleep(Duration::from_secs(4)).await;
        assert_eq!(rt.times("startup", start), vec![0, 1, 2, 3, 4, 5, 6], "startup stops after success");
        assert_eq!(rt.times("live", start), vec![6, 7, 8, 9]);
        assert_eq!(rt.times("ready", start), vec![6, 7, 8, 9]);
        assert_eq!(
            drain(&mut rx),
            vec![update(ProbeKind::Startup, true), update(ProbeKind::Readiness, true)]
        );
        assert_eq!(prober.result("pod1", "app", ProbeKind::Startup), Some(true));
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn unknown_outcomes_do_not_count() {
    within("a readiness worker whose runtime fails", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            readiness_probe: Some(exec("ready", 0, 1, 1)),
            ..Default::default()
        };
        rt.set("ready", Script::Exit(0, ""));
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        sleep(Duration::from_millis(500)).await;
        assert_eq!(drain(&mut rx), vec![update(ProbeKind::Readiness, true)]);
        rt.set("ready", Script::Fail);
        sleep(Duration::from_secs(5)).await;
        assert_eq!(rt.times("ready", start).len(), 6);
        assert!(drain(&mut rx).is_empty(), "runtime errors are thrown away, failureThreshold 1 or not");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(true));
        assert!(prober.last_message("pod1", "app", ProbeKind::Readiness).is_some());
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn stop_container_and_stop_pod_stop_probing() {
    within("workers being stopped", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let app = Container {
            name: "app".into(),
            readiness_probe: Some(exec("ready", 0, 1, 3)),
            ..Default::default()
        };
        let side = Container {
            name: "side".into(),
            liveness_probe: Some(exec("side", 0, 1, 3)),
            ..Default::default()
        };
        prober.start_container("pod1", None, &app, "c1", Seed::default());
        prober.start_container("pod1", None, &side, "c2", Seed::default());
        sleep(Duration::from_millis(3500)).await;
        // Starting again with the same container id changes nothing.
        prober.start_container("pod1", None, &app, "c1", Seed::default());
        prober.stop_container("pod1", "app");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), None);
        assert_eq!(prober.result("pod1", "side", ProbeKind::Liveness), Some(true));
        sleep(Duration::from_secs(10)).await;
        assert_eq!(rt.times("ready", start), vec![0, 1, 2, 3]);
        assert_eq!(rt.times("side", start).len(), 14, "the other container keeps probing");
        prober.stop_pod("pod1");
        assert_eq!(prober.result("pod1", "side", ProbeKind::Liveness), None);
        sleep(Duration::from_secs(10)).await;
        assert_eq!(rt.times("side", start).len(), 14);
        assert_eq!(drain(&mut rx), vec![update(ProbeKind::Readiness, true)]);
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_workers_and_refuses_new_ones() {
    within("prober shutdown", async {
        let Setup { rt, prober, rx: _rx, start } = setup();
        rt.set("hang", Script::Hang);
        let c = Container {
            name: "app".into(),
            liveness_probe: Some(Probe { timeout_seconds: Some(600), ..exec("hang", 0, 1, 3) }),
            ..Default::default()
        };
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        sleep(Duration::from_secs(1)).await;
        // A worker stuck in an exec still stops promptly.
        prober.shutdown().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        prober.start_container("pod1", None, &c, "c2", Seed::default());
        sleep(Duration::from_secs(5)).await;
        assert_eq!(rt.calls().len(), 1);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Liveness), None);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn failed_startup_stops_every_worker_of_the_container() {
    within("a failing startup probe", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            startup_probe: Some(exec("startup", 0, 1, 2)),
            liveness_probe: Some(exec("live", 0, 1, 3)),
            ..Default::default()
        };
        rt.set("startup", Script::Exit(1, "no"));
        prober.start_container("pod1", None, &c, "c1", Seed::default());
        assert_eq!(rx.recv().await, Some(update(ProbeKind::Startup, false)), "the agent must restart it");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        sleep(Duration::from_secs(10)).await;
        assert_eq!(rt.times("startup", start), vec![0, 1], "startup is on hold after its failure");
        assert!(rt.times("live", start).is_empty(), "liveness never ran");
        prober.shutdown().await;
    })
    .await;
}

/// A pod whose last reported status shows container `app` as `fake://c1` (the fake
/// runtime's name), ready and started, as an earlier agent wrote it.
fn reported_ready() -> Pod {
    let app = ContainerStatus {
        name: "app".into(),
        container_id: Some("fake://c1".into()),
        ready: true,
        started: Some(true),
        ..Default::default()
    };
    Pod {
        status: Some(PodStatus { container_statuses: Some(vec![app]), ..Default::default() }),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn adopted_ready_container_stays_ready_until_its_probe_fails() {
    within("an adopted container's readiness worker", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            readiness_probe: Some(exec("ready", 5, 10, 2)),
            ..Default::default()
        };
        rt.set("ready", Script::Exit(1, "gone"));
        let seed = Seed::adopted(&reported_ready(), "fake", "app", "c1");
        prober.start_container("pod1", None, &c, "c1", seed);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(true), "ready before any probe");
        sleep(Duration::from_secs(14)).await;
        assert_eq!(rt.times("ready", start), vec![5], "one failure, below the threshold of 2");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(true));
        assert!(drain(&mut rx).is_empty(), "nothing flipped yet");
        assert_eq!(rx.recv().await, Some(update(ProbeKind::Readiness, false)));
        assert_eq!(start.elapsed(), Duration::from_secs(15), "the second consecutive failure");
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(false));
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_container_the_status_does_not_show_starts_unready() {
    within("readiness workers of new and restarted containers", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            readiness_probe: Some(exec("ready", 5, 10, 1)),
            ..Default::default()
        };
        let pod = reported_ready();
        // Restarted before the agent came back: a new id under the same name.
        let seed = Seed::adopted(&pod, "fake", "app", "c2");
        assert_eq!(seed, Seed::default());
        prober.start_container("pod1", None, &c, "c2", seed);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(false));
        sleep(Duration::from_secs(4)).await;
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(false), "unready until probed");
        assert_eq!(rx.recv().await, Some(update(ProbeKind::Readiness, true)));
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        // The status the earlier agent wrote still shows c1: a restart to c3 starts unready,
        // and says so.
        let seed = Seed::adopted(&pod, "fake", "app", "c3");
        prober.start_container("pod1", None, &c, "c3", seed);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(false));
        assert_eq!(rx.recv().await, Some(update(ProbeKind::Readiness, false)), "the reset is announced");
        assert_eq!(rt.times("ready", start), vec![5]);
        prober.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn adopted_started_container_skips_its_startup_probe() {
    within("an adopted container's startup, liveness and readiness workers", async {
        let Setup { rt, prober, mut rx, start } = setup();
        let c = Container {
            name: "app".into(),
            startup_probe: Some(exec("startup", 0, 1, 30)),
            liveness_probe: Some(exec("live", 0, 1, 3)),
            readiness_probe: Some(exec("ready", 0, 1, 3)),
            ..Default::default()
        };
        rt.set("startup", Script::Exit(1, "would never start"));
        let seed = Seed::adopted(&reported_ready(), "fake", "app", "c1");
        prober.start_container("pod1", None, &c, "c1", seed);
        assert_eq!(prober.result("pod1", "app", ProbeKind::Startup), Some(true));
        assert_eq!(prober.result("pod1", "app", ProbeKind::Readiness), Some(true));
        sleep(Duration::from_millis(2500)).await;
        assert!(rt.times("startup", start).is_empty(), "the startup probe succeeded before");
        assert_eq!(rt.times("live", start), vec![0, 1, 2], "liveness does not wait");
        assert_eq!(rt.times("ready", start), vec![0, 1, 2], "readiness does not wait");
        assert!(drain(&mut rx).is_empty(), "no result changed");
        prober.shutdown().await;
    })
    .await;
}
