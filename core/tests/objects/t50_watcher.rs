//! The watcher and the reflector: initial list, following changes, relisting after 410, and
//! the reflector's indexes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Cache, Client, ListOptions, LocalClient, WatcherEvent, reflector, watcher};
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{Registry, WatchCacheConfig};
use flotilla_core::store::MemStore;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pod(name: &str, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

async fn setup(cache: Option<WatchCacheConfig>) -> (Registry, Arc<dyn Client>) {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    if let Some(config) = cache {
        registry.enable_watch_cache(&Pod::TYPE, config).await.expect("cache starts");
    }
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    for ns in ["a", "b"] {
        let n = Namespace {
            metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&n).await.expect("namespace");
    }
    (registry, client)
}

async fn next<S: Stream<Item = WatcherEvent<Pod>> + Unpin>(s: &mut S) -> WatcherEvent<Pod> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event in time")
        .expect("never ends")
}

fn name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

#[tokio::test]
async fn lists_then_follows_and_indexes() {
    let (registry, client) = setup(None).await;
    let (a, b) = (Api::<Pod>::namespaced(client.clone(), "a"), Api::<Pod>::namespaced(client.clone(), "b"));
    a.create(&pod("x", "web")).await.expect("created");
    b.create(&pod("y", "db")).await.expect("created");
    let cache = Cache::with_indexes(
        [Cache::by_namespace(), Cache::by_label("app"), Cache::by_node_name()].into_iter().collect(),
    );
    let mut events =
        Box::pin(reflector(cache.clone(), watcher(Api::<Pod>::all(client.clone()), ListOptions::default())));
    assert_eq!(next(&mut events).await, WatcherEvent::Init);
    let mut listed = Vec::new();
    loop {
        match next(&mut events).await {
            WatcherEvent::InitApply(p) => listed.push(name(&p).to_string()),
            WatcherEvent::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(listed, ["x", "y"]);
    assert!(cache.is_ready());
    a.create(&pod("z", "web")).await.expect("created");
    assert!(matches!(next(&mut events).await, WatcherEvent::Apply(p) if name(&p) == "z"));
    a.bind("z", "node-1").await.expect("bound");
    assert!(matches!(next(&mut events).await, WatcherEvent::Apply(p) if name(&p) == "z"));
    b.delete("y", &Default::default()).await.expect("deleted");
    assert!(matches!(next(&mut events).await, WatcherEvent::Delete(p) if name(&p) == "y"));
    let names = |v: Vec<Arc<Pod>>| {
        let mut n: Vec<String> = v.iter().map(|p| name(p).to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(cache.indexed("namespace", "a")), ["x", "z"]);
    assert!(cache.indexed("namespace", "b").is_empty());
    assert_eq!(names(cache.indexed("label:app", "web")), ["x", "z"]);
    assert!(cache.indexed("label:app", "db").is_empty(), "deleted objects leave the indexes");
    assert!(cache.get("a/x").is_some() && cache.get("b/y").is_none());
    assert_eq!(names(cache.indexed("nodeName", "node-1")), ["z"]);
    registry.shutdown().await;
}

#[tokio::test]
async fn relists_when_its_resource_version_expired() {
    // A tiny cache window and buffer: a watcher that is not read falls out of both.
    let (registry, client) = setup(Some(WatchCacheConfig { capacity: 2, watcher_buffer: 1 })).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "a");
    for n in ["p0", "p1", "p2"] {
        pods.create(&pod(n, "web")).await.expect("created");
    }
    let cache: Cache<Pod> = Cache::default();
    let mut events =
        Box::pin(reflector(cache.clone(), watcher(Api::<Pod>::all(client.clone()), ListOptions::default())));
    while next(&mut events).await != WatcherEvent::InitDone {}
    // Let the watcher open its watch, then change more than the window holds, unread.
    assert!(tokio::time::timeout(Duration::from_millis(200), events.next()).await.is_err());
    for i in 0..10 {
        let patch = serde_json::json!({"metadata": {"labels": {"n": i.to_string()}}});
        pods.patch(&format!("p{}", i % 3), PatchType::Merge, &patch).await.expect("patched");
    }
    let (mut retried, mut relisted) = (false, false);
    while !relisted {
        match next(&mut events).await {
            WatcherEvent::Retrying(msg) => {
                assert!(msg.contains("too old resource version"), "{msg}");
                retried = true;
            }
            WatcherEvent::InitDone => relisted = true,
            _ => {}
        }
    }
    assert!(retried, "the expired resume was reported");
    let labels: BTreeMap<String, String> = cache
        .list()
        .iter()
        .map(|p| {
            (
                name(p).to_string(),
                p.metadata.labels.as_ref().and_then(|l| l.get("n")).cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        BTreeMap::from([("p0".into(), "9".into()), ("p1".into(), "7".into()), ("p2".into(), "8".into())])
    );
    registry.shutdown().await;
}
