//! The scheduler's later extension points over the in-memory store: reserve and unreserve
//! around a failing pre-bind, a permit plugin's refusal, and preemption (a high-priority pod
//! evicting a low-priority one, nominated while the victim terminates, then bound).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::client::{Api, Client, ListOptions, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::patch::PatchType;
use flotilla_core::registry::Registry;
use flotilla_core::scheduler::plugins::{DEFAULT_SCHEDULER_NAME, default_profile};
use flotilla_core::scheduler::runtime::{QueueConfig, Scheduler, SchedulerConfig, SchedulerStats};
use flotilla_core::scheduler::{CycleState, PermitPlugin, PreBindPlugin, Profile, ReservePlugin, Status};
use flotilla_core::store::MemStore;
use k8s_openapi::api::core::v1::{Container, Event, Namespace, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long any one expected change may take.
const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("{what}: timed out"))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

struct Cluster {
    client: Arc<dyn Client>,
    pods: Api<Pod>,
}

/// A store with namespace `default` and one node per name, each with the cpu given.
async fn cluster(nodes: &[(&str, &str)]) -> Cluster {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    Api::<Namespace>::all(client.clone())
        .create(&Namespace { metadata: meta("default"), ..Default::default() })
        .await
        .expect("namespace");
    let c = Cluster { pods: Api::namespaced(client.clone(), "default"), client };
    for (name, cpu) in nodes {
        c.add_node(name, cpu).await;
    }
    c
}

impl Cluster {
    /// A node with the cpu given.
    async fn add_node(&self, name: &str, cpu: &str) {
        let node_api = Api::<Node>::all(self.client.clone());
        node_api.create(&Node { metadata: meta(name), ..Default::default() }).await.expect("node");
        let resources = json!({"cpu": cpu, "memory": "64Gi", "pods": "110"});
        let status = json!({"status": {"capacity": resources, "allocatable": resources}});
        node_api.patch_status(name, PatchType::Merge, &status).await.expect("node status");
    }

    /// A pod of the given PriorityClass (none: priority 0).
    async fn add_pod(&self, name: &str, cpu: &str, class: Option<&str>) {
        let requests = BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))]);
        let pod = Pod {
            metadata: meta(name),
            spec: Some(PodSpec {
                priority_class_name: class.map(Into::into),
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
        self.pods.create(&pod).await.expect("pod");
    }

    /// Polls the pod until `pred` holds (or it is gone, for `None`).
    async fn pod_until(&self, name: &str, what: &str, pred: impl Fn(Option<&Pod>) -> bool) -> Option<Pod> {
        within(&format!("pod {name} {what}"), async {
            loop {
                let pod = self.pods.get_opt(name).await.expect("get pod");
                if pred(pod.as_ref()) {
                    return pod;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    async fn bound(&self, name: &str) -> String {
        let pod = self.pod_until(name, "bound", |p| p.and_then(node_of).is_some()).await;
        pod.and_then(|p| node_of(&p)).unwrap_or_default()
    }

    async fn events(&self, reason: &str) -> Vec<Event> {
        let opts = ListOptions { field_selector: Some(format!("reason={reason}")), ..Default::default() };
        let api = Api::<Event>::namespaced(self.client.clone(), "default");
        api.list(&opts).await.expect("events").items
    }
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    stats: watch::Receiver<SchedulerStats>,
}

fn start(c: &Cluster, profile: Profile) -> Running {
    let mut config = SchedulerConfig::always_leader();
    config.queue = QueueConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..QueueConfig::default()
    };
    config.shutdown_grace = Duration::from_millis(300);
    let profiles = BTreeMap::from([(DEFAULT_SCHEDULER_NAME.to_string(), profile)]);
    let scheduler = Scheduler::new(c.client.clone(), profiles, config).expect("scheduler");
    let stats = scheduler.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    Running { shutdown, task, stats }
}

impl Running {
    async fn stats_until(&mut self, what: &str, pred: impl FnMut(&SchedulerStats) -> bool) -> SchedulerStats {
        *within(what, self.stats.wait_for(pred)).await.expect("the scheduler publishes stats")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("scheduler shutdown", self.task).await.expect("the run loop ends cleanly");
    }
}

/// Counts reservations; the count of live ones must return to zero on every failure.
#[derive(Default)]
struct Counting {
    reserved: AtomicUsize,
    unreserved: AtomicUsize,
}

impl ReservePlugin for Counting {
    fn name(&self) -> &'static str {
        "Counting"
    }

    fn reserve(&self, _state: &mut CycleState, _pod: &Pod, _node: &str) -> Status {
        self.reserved.fetch_add(1, Ordering::SeqCst);
        Status::Success
    }

    fn unreserve(&self, _state: &mut CycleState, _pod: &Pod, _node: &str) {
        self.unreserved.fetch_add(1, Ordering::SeqCst);
    }
}

/// Fails the first `failures` pre-binds.
struct Flaky {
    failures: AtomicUsize,
}

#[async_trait]
impl PreBindPlugin for Flaky {
    fn name(&self) -> &'static str {
        "Flaky"
    }

    async fn pre_bind(
        &self,
        _client: &Arc<dyn Client>,
        _state: &CycleState,
        _pod: &Pod,
        _node: &str,
    ) -> Status {
        let left = self.failures.load(Ordering::SeqCst);
        if left == 0 {
            return Status::Success;
        }
        self.failures.store(left - 1, Ordering::SeqCst);
        Status::error("volume not ready")
    }
}

/// Refuses pods whose name starts with `deny`.
struct DenyByName;

impl PermitPlugin for DenyByName {
    fn name(&self) -> &'static str {
        "DenyByName"
    }

    fn permit(&self, _state: &CycleState, pod: &Pod, _node: &str) -> Status {
        match pod.metadata.name.as_deref() {
            Some(n) if n.starts_with("deny") => Status::unschedulable("denied by name"),
            _ => Status::Success,
        }
    }
}

#[tokio::test]
async fn a_failed_pre_bind_unreserves_and_the_pod_is_bound_on_a_later_attempt() {
    let c = cluster(&[("n1", "4")]).await;
    let counting = Arc::new(Counting::default());
    let profile = default_profile()
        .with_reserve(counting.clone())
        .with_pre_bind(Arc::new(Flaky { failures: AtomicUsize::new(2) }));
    let mut running = start(&c, profile);
    c.add_pod("p", "1", None).await;
    assert_eq!(c.bound("p").await, "n1");
    let stats = running.stats_until("two failures then a bind", |s| s.bound == 1).await;
    assert_eq!(stats.bind_failures, 2);
    assert_eq!(counting.reserved.load(Ordering::SeqCst), 3, "one reservation per attempt");
    assert_eq!(counting.unreserved.load(Ordering::SeqCst), 2, "each failed attempt was unreserved");
    running.stop().await;
}

#[tokio::test]
async fn a_permit_refusal_leaves_the_pod_unschedulable_with_the_plugins_reason() {
    let c = cluster(&[("n1", "4")]).await;
    let counting = Arc::new(Counting::default());
    let profile = default_profile().with_reserve(counting.clone()).with_permit(Arc::new(DenyByName));
    let mut running = start(&c, profile);
    c.add_pod("deny-me", "1", None).await;
    c.add_pod("ok", "1", None).await;
    assert_eq!(c.bound("ok").await, "n1");
    let pod = c
        .pod_until("deny-me", "marked unschedulable", |p| {
            let conditions = p.and_then(|p| p.status.as_ref()).and_then(|s| s.conditions.as_ref());
            conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "PodScheduled" && c.status == "False"))
        })
        .await
        .expect("pod");
    let conditions = pod.status.clone().and_then(|s| s.conditions).unwrap_or_default();
    let message = conditions.iter().find_map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("DenyByName") && message.contains("denied by name"), "{message}");
    assert!(node_of(&pod).is_none());
    // The binding shows in the API before the scheduler counts its outcome: wait for both.
    let stats = running
        .stats_until("the refusal and the bind counted", |s| s.unschedulable >= 1 && s.bound >= 1)
        .await;
    assert_eq!(stats.bound, 1);
    assert_eq!(
        counting.reserved.load(Ordering::SeqCst) - counting.unreserved.load(Ordering::SeqCst),
        1,
        "only the bound pod keeps its reservation"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_low_priority_one() {
    let c = cluster(&[("n1", "2")]).await;
    let mut running = start(&c, default_profile());
    c.add_pod("low", "1500m", None).await;
    assert_eq!(c.bound("low").await, "n1");
    let high = PriorityClass { metadata: meta("high"), value: 1000, ..Default::default() };
    Api::<PriorityClass>::all(c.client.clone()).create(&high).await.expect("priority class");
    c.add_pod("high", "1500m", Some("high")).await;
    // The victim is deleted gracefully: a bound pod is only marked, and stays (holding its
    // room) until its node agent finishes it, which the test does below.
    let low = c
        .pod_until("low", "marked for deletion", |p| {
            p.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        })
        .await;
    let high = c
        .pod_until("high", "nominated", |p| {
            p.and_then(|p| p.status.as_ref()).and_then(|s| s.nominated_node_name.as_deref()) == Some("n1")
        })
        .await;
    assert!(high.and_then(|p| node_of(&p)).is_none(), "not bound while the victim is there");
    // The preemptor is held back until its victim is gone: a node too small for it, an event
    // that would otherwise send it to a 10 ms backoff and another attempt, moves it nowhere.
    // Stats seen once the node is cached show either move: the pod out of the unschedulable
    // set, or (later) one more attempt.
    let before = running.stats_until("the preemption counted", |s| s.preemptions == 1).await;
    c.add_node("small", "1").await;
    let after = running.stats_until("the small node seen", |s| s.nodes == 2).await;
    assert_eq!(after.attempts, before.attempts, "the gated preemptor was tried again");
    assert_eq!(after.queue.unschedulable, 1, "{after:?}");
    if low.is_some() {
        let opts =
            flotilla_core::client::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        c.pods.delete("low", &opts).await.expect("finish the victim");
    }
    assert_eq!(c.bound("high").await, "n1");
    let preempted = c.events("Preempted").await;
    assert_eq!(preempted.len(), 1, "{preempted:?}");
    assert_eq!(preempted[0].involved_object.name.as_deref(), Some("low"));
    let stats = running.stats_until("nomination spent", |s| s.nominated == 0 && s.bound == 2).await;
    assert_eq!(stats.preemptions, 1);
    running.stop().await;
}
