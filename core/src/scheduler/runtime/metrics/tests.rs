//! The metrics alone (encoding, the atomic histogram against prometheus-client's), then a
//! scheduler on the in-memory store moving them: one pod bound, one unschedulable.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::client::{Api, Client, LocalClient};
use crate::object::KindRegistry;
use crate::patch::PatchType;
use crate::scheduler::plugins::DEFAULT_SCHEDULER_NAME;
use crate::scheduler::runtime::queue::{QueueConfig, SchedulingQueue};
use crate::scheduler::runtime::{Scheduler, SchedulerConfig, SchedulerStats, default_profiles};
use crate::store::MemStore;

/// How long one step of a test may take.
const STEP: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

fn encode(metrics: &SchedulerMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoding into a String");
    out
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.lines().any(|l| l == *line), "missing {line:?} in:\n{text}");
    }
}

/// A queued pod as the loop sees it after `attempts` pops.
fn popped(attempts: u32) -> QueuedPod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some("ns".into());
    let mut queue = SchedulingQueue::new(QueueConfig::default());
    queue.add(Arc::new(pod), Instant::now());
    let mut info = queue.pop().expect("the pod just added");
    info.attempts = attempts;
    info
}

#[test]
fn every_series_renders_under_kube_schedulers_names() {
    let m = SchedulerMetrics::new();
    let profile = m.profile("custom");
    profile.scheduled(Instant::now(), &popped(3));
    profile.unschedulable(Instant::now());
    profile.unschedulable(Instant::now());
    profile.error(Instant::now());
    m.set_pending(&QueueCounts { active: 4, backoff: 2, unschedulable: 1, in_flight: 9 });
    m.preemption_attempted();
    m.preemption_victims(3);

    let text = encode(&m);
    assert_lines(
        &text,
        &[
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="custom"} 1"#,
            r#"scheduler_schedule_attempts_total{result="unschedulable",profile="custom"} 2"#,
            r#"scheduler_schedule_attempts_total{result="error",profile="custom"} 1"#,
            r#"scheduler_scheduling_attempt_duration_seconds_count{result="unschedulable",profile="custom"} 2"#,
            r#"scheduler_pending_pods{queue="active"} 4"#,
            r#"scheduler_pending_pods{queue="backoff"} 2"#,
            r#"scheduler_pending_pods{queue="unschedulable"} 1"#,
            "scheduler_pod_scheduling_sli_duration_seconds_count 1",
            "scheduler_pod_scheduling_attempts_count 1",
            "scheduler_pod_scheduling_attempts_sum 3.0",
            // Buckets 1, 2, 4, 8, 16: three attempts fall in `le="4.0"`.
            r#"scheduler_pod_scheduling_attempts_bucket{le="2.0"} 0"#,
            r#"scheduler_pod_scheduling_attempts_bucket{le="4.0"} 1"#,
            "scheduler_preemption_attempts_total 1",
            r#"scheduler_preemption_victims_bucket{le="2.0"} 0"#,
            r#"scheduler_preemption_victims_bucket{le="4.0"} 1"#,
            "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
            "# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram",
        ],
    );
    assert!(!text.contains("in_flight"), "in-flight pods are not pending:\n{text}");
    assert_eq!(m.schedule_attempts("custom", AttemptResult::Unschedulable), 2);
    assert_eq!(m.schedule_attempts("other", AttemptResult::Scheduled), 0);
}

#[test]
fn the_atomic_histogram_encodes_as_prometheus_clients_does() {
    let bounds = || exponential_buckets(0.001, 2.0, 15);
    let ours = AtomicHistogram::new(bounds());
    let theirs = Histogram::new(bounds());
    // On a bound, between bounds, past the last one, zero and negative.
    for v in [0.001, 0.0015, 0.5, 16.384, 17.0, 1_000.0, 0.0, -1.0] {
        ours.observe(v);
        theirs.observe(v);
    }
    let text = |register: &dyn Fn(&mut Registry)| {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoding into a String");
        out
    };
    let a = text(&|r| r.register("h", "help", ours.clone()));
    let b = text(&|r| r.register("h", "help", theirs.clone()));
    assert_eq!(a, b);
    assert_eq!(ours.count(), 8);
    assert!((ours.sum() - 1032.8865).abs() < 1e-9, "{}", ours.sum());
}

/// A store with namespace `default` and node `n1` with 2 CPUs.
async fn cluster() -> Arc<dyn Client> {
    let registry = crate::registry::Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let meta = |name: &str| ObjectMeta { name: Some(name.into()), ..Default::default() };
    let ns = Namespace { metadata: meta("default"), ..Default::default() };
    within("namespace", Api::<Namespace>::all(client.clone()).create(&ns)).await.expect("namespace");
    let nodes = Api::<Node>::all(client.clone());
    within("node", nodes.create(&Node { metadata: meta("n1"), ..Default::default() })).await.expect("node");
    let resources = json!({"cpu": "2", "memory": "64Gi", "pods": "110"});
    let status = json!({"status": {"capacity": resources, "allocatable": resources}});
    within("node status", nodes.patch_status("n1", PatchType::Merge, &status)).await.expect("node status");
    client
}

async fn add_pod(client: &Arc<dyn Client>, name: &str, cpu: &str) {
    let requests = BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))]);
    let pod = Pod {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("app:1".into()),
                resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    within(&format!("creating pod {name}"), pods.create(&pod)).await.expect("pod");
}

async fn wait(
    stats: &mut watch::Receiver<SchedulerStats>,
    what: &str,
    pred: impl FnMut(&SchedulerStats) -> bool,
) -> SchedulerStats {
    *within(what, stats.wait_for(pred)).await.expect("the scheduler publishes stats")
}

#[tokio::test]
async fn a_bound_pod_and_an_unschedulable_one_move_the_metrics() {
    let client = cluster().await;
    let mut config = SchedulerConfig::always_leader();
    config.shutdown_grace = Duration::from_millis(300);
    let scheduler = Scheduler::new(client.clone(), default_profiles(), config).expect("a scheduler");
    let metrics = scheduler.metrics();
    let mut stats = scheduler.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));

    // Before any pod: every series of the profile, at zero.
    wait(&mut stats, "the cache filled", |s| s.ready).await;
    let text = encode(&metrics);
    assert_lines(
        &text,
        &[
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 0"#,
            r#"scheduler_pending_pods{queue="active"} 0"#,
        ],
    );

    add_pod(&client, "fits", "1").await;
    // Bound, and the watch has shown it bound (so its event cannot move the next pod).
    wait(&mut stats, "the pod bound", |s| s.bound == 1 && s.binding == 0 && s.pods == 1 && s.assumed == 0)
        .await;
    add_pod(&client, "too-big", "4").await;
    let s = wait(&mut stats, "the big pod unschedulable", |s| s.queue.unschedulable == 1).await;
    assert_eq!(s.unschedulable, 1, "{s:?}");

    let profile = DEFAULT_SCHEDULER_NAME;
    assert_eq!(metrics.schedule_attempts(profile, AttemptResult::Scheduled), 1);
    assert_eq!(metrics.schedule_attempts(profile, AttemptResult::Unschedulable), 1);
    assert_eq!(metrics.schedule_attempts(profile, AttemptResult::Error), 0);
    let text = encode(&metrics);
    assert_lines(
        &text,
        &[
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 1"#,
            r#"scheduler_schedule_attempts_total{result="unschedulable",profile="default-scheduler"} 1"#,
            r#"scheduler_scheduling_attempt_duration_seconds_count{result="scheduled",profile="default-scheduler"} 1"#,
            r#"scheduler_scheduling_attempt_duration_seconds_count{result="unschedulable",profile="default-scheduler"} 1"#,
            r#"scheduler_pending_pods{queue="active"} 0"#,
            r#"scheduler_pending_pods{queue="backoff"} 0"#,
            r#"scheduler_pending_pods{queue="unschedulable"} 1"#,
            "scheduler_pod_scheduling_sli_duration_seconds_count 1",
            "scheduler_pod_scheduling_attempts_count 1",
            // The default profile preempts: its post-filter ran, and found no victims.
            "scheduler_preemption_attempts_total 1",
            "scheduler_preemption_victims_count 0",
        ],
    );

    shutdown.cancel();
    within("scheduler shutdown", task).await.expect("the run loop ends cleanly");
}
