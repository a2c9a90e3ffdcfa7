//! The collector against the in-memory store, under a paused clock: each propagation policy,
//! dangling and half-dangling owners, a user kind, recreated owners and dependents, invalid
//! references, start-up before every kind is listed, and leadership.

mod hooked;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Event, Namespace, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::hooked::Hooked;
use super::{FOREGROUND_FINALIZER, GarbageCollector, GcConfig, INVALID_OWNER_REASON};
use crate::client::{Api, Client, DeleteOptions, LocalClient};
use crate::controllers::util::controller_reference;
use crate::object::{KindRegistry, Resource, ResourceType};
use crate::patch::PatchType;
use crate::registry::conformance::Game;
use crate::registry::{PropagationPolicy, Registry};
use crate::store::MemStore;

/// How long (tokio time) any one expected change may take.
const WAIT: Duration = Duration::from_secs(60);
/// How long (tokio time) a whole test may take.
const TEST: Duration = Duration::from_secs(300);
/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);

async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

/// A store, a registry of the built-in kinds and `Game`, namespaces `a`, `b` and `default`,
/// and the collector running over every kind.
struct Cluster {
    registry: Registry,
    client: Arc<dyn Client>,
    hooks: Arc<Hooked>,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
    gc: Option<JoinHandle<()>>,
}

impl Cluster {
    async fn new() -> Cluster {
        let mut kinds = KindRegistry::builtin();
        kinds.register::<Game>().expect("Game is not built in");
        let registry = Registry::new(Arc::new(MemStore::new()), kinds);
        let hooks = Arc::new(Hooked {
            inner: LocalClient::new(registry.clone()),
            slow_first_list: Mutex::new(None),
            replace_before_delete: Mutex::new(None),
        });
        let client: Arc<dyn Client> = hooks.clone();
        for ns in ["a", "b", "default"] {
            let n = Namespace { metadata: meta(ns, &[], &[]), ..Default::default() };
            Api::<Namespace>::all(client.clone()).create(&n).await.expect("namespace created");
        }
        let (leader, _) = watch::channel(true);
        Cluster { registry, client, hooks, leader, shutdown: CancellationToken::new(), gc: None }
    }

    /// Starts the collector over every served kind, leading or not.
    fn start(&mut self, leading: bool) {
        let types: Vec<ResourceType> = self.registry.kinds().types().collect();
        self.start_with(leading, types, GcConfig { workers: 4, ..Default::default() });
    }

    fn start_with(&mut self, leading: bool, types: Vec<ResourceType>, config: GcConfig) {
        self.leader.send_replace(leading);
        let gc = GarbageCollector::new(self.client.clone(), types, config);
        self.gc = Some(tokio::spawn(gc.run(self.leader.subscribe(), self.shutdown.clone())));
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(gc) = self.gc.take() {
            within("the collector shuts down", WAIT, gc).await.expect("the collector does not panic");
        }
        self.registry.shutdown().await;
    }

    fn api<K: Resource>(&self, ns: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until `check` gives a value.
    async fn eventually<T, F: Future<Output = Option<T>>>(
        &self,
        what: &str,
        mut check: impl FnMut() -> F,
    ) -> T {
        within(what, WAIT, async {
            loop {
                if let Some(v) = check().await {
                    return v;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }

    async fn gone<K: Resource>(&self, ns: &str, name: &str) {
        let api = self.api::<K>(ns);
        let what = format!("{} {ns}/{name} is collected", K::TYPE.kind);
        self.eventually(&what, || async {
            api.get_opt(name).await.expect("readable").is_none().then_some(())
        })
        .await;
    }
}

fn meta(name: &str, owners: &[OwnerReference], finalizers: &[&str]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        owner_references: (!owners.is_empty()).then(|| owners.to_vec()),
        finalizers: (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect()),
        ..Default::default()
    }
}

fn pod(name: &str, owners: &[OwnerReference], finalizers: &[&str]) -> Pod {
    Pod {
        metadata: meta(name, owners, finalizers),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn replica_set(name: &str) -> ReplicaSet {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    ReplicaSet {
        metadata: meta(name, &[], &[]),
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: pod("t", &[], &[]).spec,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn policy(p: PropagationPolicy) -> DeleteOptions {
    DeleteOptions { propagation_policy: Some(p), ..Default::default() }
}

/// A reference to an object that never existed.
fn ghost_ref() -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "ghost".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// A ReplicaSet `web` in `a` owning pods `p0` and `p1` (each with these finalizers).
async fn replica_set_with_pods(
    c: &Cluster,
    pod_finalizers: &[&str],
) -> (ReplicaSet, Api<ReplicaSet>, Api<Pod>) {
    let (sets, pods) = (c.api::<ReplicaSet>("a"), c.api::<Pod>("a"));
    let rs = sets.create(&replica_set("web")).await.expect("rs created");
    for name in ["p0", "p1"] {
        pods.create(&pod(name, &[controller_reference(&rs)], pod_finalizers)).await.expect("pod created");
    }
    (rs, sets, pods)
}

#[tokio::test(start_paused = true)]
async fn background_deletion_collects_the_dependents() {
    within("background deletion", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let (_, sets, pods) = replica_set_with_pods(&c, &[]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pods.list(&Default::default()).await.expect("listed").items.len(), 2, "owned pods stay");
        assert!(sets.delete("web", &policy(PropagationPolicy::Background)).await.expect("deleted").is_none());
        c.gone::<Pod>("a", "p0").await;
        c.gone::<Pod>("a", "p1").await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn foreground_deletion_keeps_the_owner_until_its_dependents_are_gone() {
    within("foreground deletion", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        // The pods' own finalizer holds them (deleting) long enough to see the owner wait.
        let (_, sets, pods) = replica_set_with_pods(&c, &["example.com/hold"]).await;
        let rs = sets.delete("web", &policy(PropagationPolicy::Foreground)).await.expect("deleting");
        assert!(rs.is_some_and(|r| r.metadata.finalizers == Some(vec![FOREGROUND_FINALIZER.into()])));
        c.eventually("the pods are being deleted", || async {
            let items = pods.list(&Default::default()).await.expect("listed").items;
            items.iter().all(|p| p.metadata.deletion_timestamp.is_some()).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let waiting = sets.get("web").await.expect("the owner waits");
        assert!(waiting.metadata.deletion_timestamp.is_some());
        assert_eq!(waiting.metadata.finalizers, Some(vec![FOREGROUND_FINALIZER.into()]));
        for name in ["p0", "p1"] {
            let release = serde_json::json!({"metadata": {"finalizers": null}});
            pods.patch(name, PatchType::Merge, &release).await.expect("released");
        }
        c.gone::<ReplicaSet>("a", "web").await;
        assert!(pods.list(&Default::default()).await.expect("listed").items.is_empty());
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn foreground_deletion_goes_down_a_chain_and_back_up() {
    within("foreground chain", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let deployments = c.api::<Deployment>("a");
        let template = replica_set("web").spec.expect("a spec");
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 0, "selector": template.selector, "template": template.template},
        }))
        .expect("a deployment");
        let deployment = deployments.create(&deployment).await.expect("created");
        let mut rs = replica_set("web");
        rs.metadata.owner_references = Some(vec![controller_reference(&deployment)]);
        let rs = c.api::<ReplicaSet>("a").create(&rs).await.expect("created");
        let pods = c.api::<Pod>("a");
        pods.create(&pod("p0", &[controller_reference(&rs)], &["example.com/hold"])).await.expect("created");
        deployments.delete("web", &policy(PropagationPolicy::Foreground)).await.expect("deleting");
        // The ReplicaSet has a dependent: it goes in the foreground too, and both wait.
        let sets = c.api::<ReplicaSet>("a");
        c.eventually("the ReplicaSet waits for its pod", || async {
            let rs = sets.get("web").await.expect("the ReplicaSet stays");
            (rs.metadata.finalizers == Some(vec![FOREGROUND_FINALIZER.into()])).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(deployments.get_opt("web").await.expect("readable").is_some(), "the deployment waits");
        let release = serde_json::json!({"metadata": {"finalizers": null}});
        pods.patch("p0", PatchType::Merge, &release).await.expect("released");
        c.gone::<Pod>("a", "p0").await;
        c.gone::<ReplicaSet>("a", "web").await;
        c.gone::<Deployment>("a", "web").await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn orphan_deletion_releases_the_dependents() {
    within("orphan deletion", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let (_, sets, pods) = replica_set_with_pods(&c, &[]).await;
        sets.delete("web", &policy(PropagationPolicy::Orphan)).await.expect("deleting");
        c.gone::<ReplicaSet>("a", "web").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let items = pods.list(&Default::default()).await.expect("listed").items;
        assert_eq!(items.len(), 2, "orphans stay");
        assert!(items.iter().all(|p| p.metadata.owner_references.is_none()), "{items:?}");
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_dependent_whose_owner_never_existed_is_deleted() {
    within("never-existing owner", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        c.api::<Pod>("a").create(&pod("lost", &[ghost_ref()], &[])).await.expect("created");
        c.gone::<Pod>("a", "lost").await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_live_owner_keeps_its_dependent_and_the_dead_reference_goes() {
    within("half-dangling owners", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let rs = c.api::<ReplicaSet>("a").create(&replica_set("web")).await.expect("created");
        let live = OwnerReference { controller: None, ..controller_reference(&rs) };
        let pods = c.api::<Pod>("a");
        pods.create(&pod("shared", &[live.clone(), ghost_ref()], &[])).await.expect("created");
        let refs = c
            .eventually("the dead reference is dropped", || async {
                let p = pods.get("shared").await.expect("the pod stays");
                let refs = p.metadata.owner_references.unwrap_or_default();
                (refs.len() == 1).then_some(refs)
            })
            .await;
        assert_eq!(refs, [live]);
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_user_kind_owns_and_collects_like_a_built_in_one() {
    within("user kind", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let games = c.api::<Game>("a");
        let game: Game = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "chess"}, "spec": {"players": 2}}),
        )
        .expect("a game");
        let game = games.create(&game).await.expect("created");
        let maps = c.api::<ConfigMap>("a");
        let board =
            ConfigMap { metadata: meta("board", &[controller_reference(&game)], &[]), ..Default::default() };
        maps.create(&board).await.expect("created");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(maps.get_opt("board").await.expect("readable").is_some(), "owned by a live game");
        games.delete("chess", &policy(PropagationPolicy::Background)).await.expect("deleted");
        c.gone::<ConfigMap>("a", "board").await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_recreated_under_the_same_name_does_not_keep_old_dependents() {
    within("recreated owner", TEST, async {
        let mut c = Cluster::new().await;
        // Before the collector starts, and while it runs.
        let (_, sets, pods) = replica_set_with_pods(&c, &[]).await;
        sets.delete("web", &Default::default()).await.expect("deleted");
        let second = sets.create(&replica_set("web")).await.expect("recreated");
        c.start(true);
        c.gone::<Pod>("a", "p0").await;
        c.gone::<Pod>("a", "p1").await;

        pods.create(&pod("p2", &[controller_reference(&second)], &[])).await.expect("created");
        sets.delete("web", &Default::default()).await.expect("deleted");
        let third = sets.create(&replica_set("web")).await.expect("recreated");
        c.gone::<Pod>("a", "p2").await;
        let web = sets.get("web").await.expect("the new owner stays");
        assert_eq!(web.metadata.uid, third.metadata.uid);
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_dependent_recreated_under_the_same_name_is_not_deleted_by_mistake() {
    within("recreated dependent", TEST, async {
        let mut c = Cluster::new().await;
        *c.hooks.replace_before_delete.lock() = Some("lost".into());
        let pods = c.api::<Pod>("a");
        let old = pods.create(&pod("lost", &[ghost_ref()], &[])).await.expect("created");
        c.start(true);
        // The collector's delete reaches a new pod of that name: the uid precondition saves it.
        c.eventually("the hook ran", || async {
            c.hooks.replace_before_delete.lock().is_none().then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let now = pods.get("lost").await.expect("the new pod stays");
        assert_ne!(now.metadata.uid, old.metadata.uid);
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn invalid_owner_references_are_reported() {
    within("invalid references", TEST, async {
        let mut c = Cluster::new().await;
        c.start(true);
        let rs = c.api::<ReplicaSet>("a").create(&replica_set("web")).await.expect("created");
        // A namespaced dependent in another namespace: its owner is absent where it points.
        let across = pod("across", &[controller_reference(&rs)], &[]);
        c.api::<Pod>("b").create(&across).await.expect("created");
        c.gone::<Pod>("b", "across").await;
        // A cluster-scoped dependent of a namespaced owner: left alone, with a warning.
        let ns = Namespace { metadata: meta("odd", &[controller_reference(&rs)], &[]), ..Default::default() };
        Api::<Namespace>::all(c.client.clone()).create(&ns).await.expect("created");
        for (namespace, name) in [("b", "across"), ("default", "odd")] {
            let events = c.api::<Event>(namespace);
            c.eventually(&format!("a warning about {name}"), || async {
                let items = events.list(&Default::default()).await.expect("listed").items;
                items
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some(INVALID_OWNER_REASON)
                            && e.involved_object.name.as_deref() == Some(name)
                    })
                    .then_some(())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let odd = Api::<Namespace>::all(c.client.clone()).get("odd").await.expect("not collected");
        assert!(odd.metadata.deletion_timestamp.is_none());
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_collected_before_every_kind_is_listed() {
    within("start-up", TEST, async {
        let mut c = Cluster::new().await;
        c.api::<Pod>("a").create(&pod("lost", &[ghost_ref()], &[])).await.expect("created");
        *c.hooks.slow_first_list.lock() = Some((ReplicaSet::TYPE, Duration::from_secs(20)));
        c.start(true);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            c.api::<Pod>("a").get_opt("lost").await.expect("readable").is_some(),
            "ReplicaSets not listed yet"
        );
        c.gone::<Pod>("a", "lost").await;
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_kind_that_never_lists_delays_collection_only_until_the_sync_timeout() {
    within("sync timeout", TEST, async {
        let mut c = Cluster::new().await;
        c.api::<Pod>("a").create(&pod("lost", &[ghost_ref()], &[])).await.expect("created");
        let unserved = ResourceType { group: "example.com", kind: "Widget", plural: "widgets", ..Pod::TYPE };
        let mut types: Vec<ResourceType> = c.registry.kinds().types().collect();
        types.push(unserved);
        let timeout = Duration::from_secs(40);
        c.start_with(
            true,
            types,
            GcConfig { workers: 2, initial_sync_timeout: timeout, ..Default::default() },
        );
        let start = tokio::time::Instant::now();
        c.gone::<Pod>("a", "lost").await;
        assert!(start.elapsed() >= timeout, "collected after {:?}", start.elapsed());
        c.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_acts() {
    within("leadership", TEST, async {
        let mut c = Cluster::new().await;
        c.start(false);
        let pods = c.api::<Pod>("a");
        pods.create(&pod("lost", &[ghost_ref()], &[])).await.expect("created");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(pods.get_opt("lost").await.expect("readable").is_some(), "a follower deletes nothing");
        c.leader.send_replace(true);
        c.gone::<Pod>("a", "lost").await;
        // Leadership lost again: new garbage waits for the next leader.
        c.leader.send_replace(false);
        pods.create(&pod("later", &[ghost_ref()], &[])).await.expect("created");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(pods.get_opt("later").await.expect("readable").is_some());
        c.leader.send_replace(true);
        c.gone::<Pod>("a", "later").await;
        c.stop().await;
    })
    .await;
}
