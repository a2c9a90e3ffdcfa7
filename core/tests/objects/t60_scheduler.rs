//! The scheduler's runtime over the in-memory store: pods bound to nodes that fit, an
//! unschedulable pod's condition and aggregated Event, requeueing when a node that fits
//! appears, a bind conflict rolled back, leadership, and shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::client::{
    Api, Cache, Client, DeleteOptions, Deleted, GetOptions, ListOptions, LocalClient, ObjectList,
    Subresource, WatchEvent, WatchStream, WriteOptions, Written, reflector, watcher,
};
use flotilla_core::object::{DynamicObject, KindRegistry, Resource, ResourceType};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::Registry;
use flotilla_core::scheduler::runtime::{
    QueueConfig, Scheduler, SchedulerConfig, SchedulerStats, default_profiles,
};
use flotilla_core::store::MemStore;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Event, Namespace, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any one expected change may take.
const WAIT: Duration = Duration::from_secs(20);
/// How long a whole test may take.
const TEST: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

/// What a [`Hooked`] client does to the next bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BindHook {
    /// Binds as asked.
    Pass,
    /// Binds the pod to another node first, as a concurrent scheduler would (once); with
    /// `watch_first`, fails only once the scheduler's cache has seen that binding.
    Steal { watch_first: bool },
    /// Never returns.
    Hang,
}

/// The in-process client with a hook on binds.
struct Hooked {
    inner: LocalClient,
    hook: Mutex<BindHook>,
    nodes: Vec<String>,
    /// The scheduler's stats, for `Steal { watch_first: true }`.
    stats: Mutex<Option<watch::Receiver<SchedulerStats>>>,
    /// Deletions taken so far from watches of pods without a node (the scheduler's queue
    /// watch: a bound pod leaves it).
    unassigned_gone: Arc<AtomicUsize>,
}

#[async_trait]
impl Client for Hooked {
    async fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &GetOptions,
    ) -> flotilla_core::client::Result<DynamicObject> {
        self.inner.get(t, ns, name, o).await
    }
    async fn list(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        o: &ListOptions,
    ) -> flotilla_core::client::Result<ObjectList> {
        self.inner.list(t, ns, o).await
    }
    async fn create(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        obj: DynamicObject,
        o: &WriteOptions,
    ) -> flotilla_core::client::Result<Written> {
        self.inner.create(t, ns, obj, o).await
    }
    async fn replace(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: DynamicObject,
        sub: Subresource,
        o: &WriteOptions,
    ) -> flotilla_core::client::Result<Written> {
        self.inner.replace(t, ns, name, obj, sub, o).await
    }
    async fn patch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        patch: &[u8],
        sub: Subresource,
        o: &WriteOptions,
    ) -> flotilla_core::client::Result<Written> {
        self.inner.patch(t, ns, name, pt, patch, sub, o).await
    }
    async fn delete(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> flotilla_core::client::Result<Deleted> {
        self.inner.delete(t, ns, name, o).await
    }
    async fn watch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        o: &ListOptions,
    ) -> flotilla_core::client::Result<WatchStream> {
        let stream = self.inner.watch(t, ns, o).await?;
        if !o.field_selector.as_deref().is_some_and(|f| f.starts_with("spec.nodeName=,")) {
            return Ok(stream);
        }
        let gone = self.unassigned_gone.clone();
        Ok(WatchStream::from_stream(stream.inspect(move |e| {
            if matches!(e, WatchEvent::Deleted(_)) {
                gone.fetch_add(1, Ordering::SeqCst);
            }
        })))
    }
    async fn bind(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> flotilla_core::client::Result<DynamicObject> {
        let hook = std::mem::replace(&mut *self.hook.lock(), BindHook::Pass);
        match hook {
            BindHook::Pass => {}
            BindHook::Steal { watch_first } => {
                let other = self.nodes.iter().find(|n| *n != node).expect("another node");
                self.inner.bind(ns, name, other, None).await?;
                let stats = self.stats.lock().clone();
                if let (true, Some(mut stats)) = (watch_first, stats) {
                    // The watch moved the pod from its assumed node to where it really went.
                    stats.wait_for(|s| s.assumed == 0).await.expect("the scheduler runs");
                }
            }
            BindHook::Hang => std::future::pending::<()>().await,
        }
        self.inner.bind(ns, name, node, uid).await
    }
    async fn delete_collection(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        l: &ListOptions,
        o: &DeleteOptions,
    ) -> flotilla_core::client::Result<ObjectList> {
        self.inner.delete_collection(t, ns, l, o).await
    }
}

struct Cluster {
    client: Arc<Hooked>,
    pods: Api<Pod>,
    nodes: Api<Node>,
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

/// A store with namespace `default` and nodes with the cpu given (and plenty of memory).
async fn cluster(nodes: &[(&str, &str)]) -> Cluster {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client = Arc::new(Hooked {
        inner: LocalClient::new(registry),
        hook: Mutex::new(BindHook::Pass),
        nodes: nodes.iter().map(|(n, _)| n.to_string()).collect(),
        stats: Mutex::new(None),
        unassigned_gone: Arc::default(),
    });
    let dynamic: Arc<dyn Client> = client.clone();
    Api::<Namespace>::all(dynamic.clone())
        .create(&Namespace { metadata: meta("default"), ..Default::default() })
        .await
        .expect("namespace");
    let c = Cluster { client, pods: Api::namespaced(dynamic.clone(), "default"), nodes: Api::all(dynamic) };
    for (name, cpu) in nodes {
        c.add_node(name, cpu).await;
    }
    c
}

impl Cluster {
    fn dynamic(&self) -> Arc<dyn Client> {
        self.client.clone()
    }

    async fn add_node(&self, name: &str, cpu: &str) {
        self.nodes.create(&Node { metadata: meta(name), ..Default::default() }).await.expect("node");
        self.set_cpu(name, cpu).await;
    }

    async fn set_cpu(&self, node: &str, cpu: &str) {
        let resources = json!({"cpu": cpu, "memory": "64Gi", "pods": "110"});
        let status = json!({"status": {"capacity": resources, "allocatable": resources}});
        self.nodes.patch_status(node, PatchType::Merge, &status).await.expect("node status");
    }

    async fn add_pod(&self, name: &str, cpu: &str) {
        let requests = BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))]);
        let pod = Pod {
            metadata: meta(name),
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
        self.pods.create(&pod).await.expect("pod");
    }

    /// Waits until the pod satisfies `pred`.
    async fn pod_until(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        let opts =
            ListOptions { field_selector: Some(format!("metadata.name={name}")), ..Default::default() };
        let found = until(self.pods.clone(), opts, &format!("pod {name} {what}"), |pods| {
            pods.first().is_some_and(|p| pred(p))
        })
        .await;
        (*found[0]).clone()
    }

    /// Waits until the pod is bound; returns its node.
    async fn bound(&self, name: &str) -> String {
        let pod = self.pod_until(name, "bound", |p| node_of(p).is_some()).await;
        node_of(&pod).unwrap_or_default()
    }

    /// Waits until the Events about pod `name` with `reason` satisfy `pred`.
    async fn events_until(
        &self,
        name: &str,
        reason: &str,
        pred: impl Fn(&[Arc<Event>]) -> bool,
    ) -> Vec<Arc<Event>> {
        let selector = format!("involvedObject.name={name},reason={reason}");
        let opts = ListOptions { field_selector: Some(selector), ..Default::default() };
        let api = Api::<Event>::namespaced(self.dynamic(), "default");
        until(api, opts, &format!("{reason} events of {name}"), pred).await
    }
}

/// Follows `api`'s objects matching `opts` until `pred` holds for them.
async fn until<K: Resource>(
    api: Api<K>,
    opts: ListOptions,
    what: &str,
    pred: impl Fn(&[Arc<K>]) -> bool,
) -> Vec<Arc<K>> {
    let cache = Cache::default();
    let mut events = Box::pin(reflector(cache.clone(), watcher(api, opts)));
    within(what, WAIT, async {
        loop {
            if cache.is_ready() {
                let items = cache.list();
                if pred(&items) {
                    return items;
                }
            }
            events.next().await.expect("a watcher never ends");
        }
    })
    .await
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

fn scheduled_condition(pod: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    let c = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Fast backoff, so requeued pods come back quickly; a long flush, so only events move
/// unschedulable pods.
fn config(is_leader: watch::Receiver<bool>) -> SchedulerConfig {
    let mut c = SchedulerConfig::new(is_leader);
    c.queue = QueueConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..QueueConfig::default()
    };
    c.shutdown_grace = Duration::from_millis(300);
    c
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    stats: watch::Receiver<SchedulerStats>,
}

fn start(c: &Cluster, config: SchedulerConfig) -> Running {
    let scheduler = Scheduler::new(c.dynamic(), default_profiles(), config).expect("scheduler");
    let stats = scheduler.stats();
    *c.client.stats.lock() = Some(stats.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    Running { shutdown, task, stats }
}

impl Running {
    async fn stats_until(&mut self, what: &str, pred: impl FnMut(&SchedulerStats) -> bool) -> SchedulerStats {
        *within(what, WAIT, self.stats.wait_for(pred)).await.expect("the scheduler publishes stats")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("scheduler shutdown", Duration::from_secs(5), self.task)
            .await
            .expect("the run loop ends cleanly");
    }
}

#[tokio::test]
async fn pods_are_bound_to_nodes_that_fit() {
    within("binding pods", TEST, async {
        let nodes = ["n1", "n2", "n3", "n4"];
        let c = cluster(&nodes.map(|n| (n, "2"))).await;
        // Queue every pod on a standby first, so the leader places them in one burst, before
        // any bind is written: each placement must count at once (assumed), or pods pile up
        // on equally empty nodes.
        let (leader, is_leader) = watch::channel(false);
        let mut s = start(&c, config(is_leader));
        for i in 0..8 {
            c.add_pod(&format!("p{i}"), "1").await;
        }
        s.stats_until("every pod queued", |s| s.ready && s.queue.active == 8).await;
        leader.send_replace(true);
        let mut per_node = BTreeMap::<String, usize>::new();
        for i in 0..8 {
            *per_node.entry(c.bound(&format!("p{i}")).await).or_default() += 1;
        }
        assert_eq!(per_node, nodes.iter().map(|n| (n.to_string(), 2)).collect());
        s.stats_until("every bind reported", |s| s.bound == 8 && s.binding == 0).await;
        let p0 = c.pods.get("p0").await.expect("p0");
        assert_eq!(scheduled_condition(&p0).map(|c| c.0).as_deref(), Some("True"));
        let node = node_of(&p0).unwrap_or_default();
        let events = c.events_until("p0", "Scheduled", |e| !e.is_empty()).await;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            e.message.clone().unwrap_or_default(),
            format!("Successfully assigned default/p0 to {node}")
        );
        assert_eq!((e.type_.as_deref(), e.count), (Some("Normal"), Some(1)));
        assert_eq!(e.source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));
        s.stop().await;
    })
    .await;
}

/// While a burst binds, a bind outcome is ready at every turn of the loop; the pod watches'
/// events must still be taken as they come (each one waiting holds a decoded pod: tens of
/// thousands of them, hundreds of MiB, in scheduler_perf's Memory workload), not after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_are_taken_while_a_burst_binds() {
    within("a burst of binds", TEST, async {
        // Enough nodes that a cycle takes longer than a bind: an outcome waits at every turn.
        const NODES: usize = 500;
        const PODS: usize = 300;
        let names: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
        let c = cluster(&names.iter().map(|n| (n.as_str(), "4")).collect::<Vec<_>>()).await;
        let (leader, is_leader) = watch::channel(false);
        let mut s = start(&c, config(is_leader));
        for i in 0..PODS {
            c.add_pod(&format!("p{i}"), "10m").await;
        }
        s.stats_until("every pod queued", |s| s.ready && s.queue.active == PODS).await;
        leader.send_replace(true);
        s.stats_until("every bind reported", |s| s.bound == PODS as u64).await;
        let taken = c.client.unassigned_gone.load(Ordering::SeqCst);
        assert!(taken >= PODS / 2, "{taken} of {PODS} bound pods' deletions taken by the end of the burst");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unschedulable_pod_is_reported_once_and_placed_when_a_node_fits() {
    within("unschedulable pod", TEST, async {
        let c = cluster(&[("small1", "1"), ("small2", "1")]).await;
        let s = start(&c, config(watch::channel(true).1));
        c.add_pod("big", "4").await;
        let message = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
                       2 No preemption victims found for incoming pod.";
        let want = Some(("False".to_string(), Some("Unschedulable".to_string()), Some(message.to_string())));
        c.pod_until("big", "unschedulable", |p| scheduled_condition(p) == want).await;
        let events = c.events_until("big", "FailedScheduling", |e| !e.is_empty()).await;
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].message.as_deref(), events[0].type_.as_deref()),
            (Some(message), Some("Warning"))
        );
        let first = events[0].count.unwrap_or(0);

        // A node change that does not help enough: tried again, same verdict, same Event.
        c.set_cpu("small1", "1500m").await;
        let events =
            c.events_until("big", "FailedScheduling", |e| e.iter().any(|e| e.count > Some(first))).await;
        assert_eq!(events.len(), 1, "repeats aggregate into one Event: {events:?}");
        let e = &events[0];
        assert!(e.last_timestamp >= e.first_timestamp);

        // A node that fits: the pod is tried again at once (the flush is minutes away).
        c.add_node("large", "8").await;
        assert_eq!(c.bound("big").await, "large");
        c.events_until("big", "Scheduled", |e| e.len() == 1).await;
        let pod = c.pods.get("big").await.expect("big");
        assert_eq!(scheduled_condition(&pod).map(|c| c.0).as_deref(), Some("True"));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_bind_conflict_is_rolled_back() {
    // The bind's failure reaches the scheduler before or after the watch shows the pod bound
    // elsewhere (the second order forced).
    for watch_first in [false, true] {
        within(&format!("bind conflict, watch first: {watch_first}"), TEST, conflict(watch_first)).await;
    }
}

async fn conflict(watch_first: bool) {
    let c = cluster(&[("a", "2"), ("b", "2")]).await;
    let mut s = start(&c, config(watch::channel(true).1));
    // While the scheduler binds p1, someone else binds it to the other node.
    *c.client.hook.lock() = BindHook::Steal { watch_first };
    c.add_pod("p1", "2").await;
    let taken = c.bound("p1").await;
    // Settled: the bind failed, and the watch showed p1 where it really went.
    s.stats_until("the failed bind", |s| {
        s.bind_failures >= 1 && s.binding == 0 && s.pods == 1 && s.assumed == 0
    })
    .await;
    // The cache holds p1 on that node, and only there: the next pod fits the other
    // node, and a third fits nowhere.
    c.add_pod("p2", "2").await;
    let free = c.bound("p2").await;
    assert_ne!(free, taken);
    c.add_pod("p3", "2").await;
    // p1 and p2 have p3's priority: none of them may be preempted.
    let want = Some(
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
         2 No preemption victims found for incoming pod."
            .to_string(),
    );
    c.pod_until("p3", "unschedulable", |p| scheduled_condition(p).and_then(|c| c.2) == want).await;
    let p1 = c.pods.get("p1").await.expect("p1");
    assert_eq!(node_of(&p1), Some(taken));
    let rejected = c.events_until("p1", "FailedScheduling", |e| !e.is_empty()).await;
    assert!(
        rejected[0].message.as_deref().is_some_and(|m| m.starts_with("Binding rejected:")),
        "{rejected:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn only_the_leader_schedules() {
    within("leadership", TEST, async {
        let c = cluster(&[("n", "4")]).await;
        let (leader, is_leader) = watch::channel(false);
        let mut s = start(&c, config(is_leader));
        c.add_pod("p1", "1").await;
        let stats = s.stats_until("p1 queued", |s| s.ready && s.queue.active == 1).await;
        assert_eq!((stats.leader, stats.attempts), (false, 0), "a standby pops nothing");
        assert_eq!(node_of(&c.pods.get("p1").await.expect("p1")), None);

        leader.send_replace(true);
        assert_eq!(c.bound("p1").await, "n");

        leader.send_replace(false);
        s.stats_until("leadership lost", |s| !s.leader).await;
        c.add_pod("p2", "1").await;
        let stats = s.stats_until("p2 queued", |s| s.queue.active == 1).await;
        assert_eq!((stats.leader, stats.attempts), (false, 1));
        assert_eq!(node_of(&c.pods.get("p2").await.expect("p2")), None);

        leader.send_replace(true);
        assert_eq!(c.bound("p2").await, "n");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_the_loop_even_with_a_bind_stuck() {
    within("shutdown", TEST, async {
        let c = cluster(&[("n", "4")]).await;
        let mut s = start(&c, config(watch::channel(true).1));
        *c.client.hook.lock() = BindHook::Hang;
        c.add_pod("p", "1").await;
        s.stats_until("the bind running", |s| s.binding == 1).await;
        // The grace is 300 ms; the stuck bind is then aborted.
        s.stop().await;
        assert_eq!(node_of(&c.pods.get("p").await.expect("p")), None);

        // A fresh scheduler stops promptly too.
        start(&c, config(watch::channel(true).1)).stop().await;
    })
    .await;
}
