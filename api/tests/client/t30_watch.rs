//! Watches over HTTP: events from a real server, bookmarks, lines cut across chunks by a fake
//! server, and core's watcher and reflector keeping a cache in sync (relisting after 410).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use flotilla_api::server::ServerConfig;
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Cache, Event, WatcherEvent, reflector, watcher};
use flotilla_core::object::Resource;
use flotilla_core::registry::{Error, ListOptions, WatchEvent, WriteOptions};
use flotilla_core::store::{KvEngine, MvccState};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;
use tokio::sync::mpsc;

use crate::harness::{Cluster, Fake, Options, obj, pod, within};

/// The next item of `s`, failing if the stream ends.
async fn next<T>(s: &mut (impl Stream<Item = T> + Unpin), what: &str) -> Result<T> {
    s.next().await.with_context(|| format!("the watch ended before {what}"))
}

#[tokio::test]
async fn watch_delivers_every_change_in_order() -> Result<()> {
    let cluster = Cluster::start().await?;
    within("watch events from the server", async {
        let pods = Api::<Pod>::namespaced(cluster.remote.clone(), "default");
        pods.create(&pod("before", "x")).await?;
        let rv = pods.list(&ListOptions::default()).await?.resource_version;
        let mut events =
            Box::pin(pods.watch(&ListOptions { resource_version: Some(rv), ..Default::default() }).await?);
        let created = pods.create(&pod("web", "web")).await?;
        let patch = json!({"metadata": {"labels": {"v": "2"}}});
        let modified = pods.patch("web", flotilla_core::patch::PatchType::Merge, &patch).await?;
        pods.delete("web", &Default::default()).await?;
        ensure!(next(&mut events, "ADDED").await? == Event::Added(created));
        ensure!(next(&mut events, "MODIFIED").await? == Event::Modified(modified));
        let Event::Deleted(gone) = next(&mut events, "DELETED").await? else { anyhow::bail!("not DELETED") };
        ensure!(gone.metadata.name.as_deref() == Some("web"));

        // Without a resourceVersion, the watch starts with the current state.
        let mut all = Box::pin(pods.watch(&ListOptions::default()).await?);
        let Event::Added(first) = next(&mut all, "the initial ADDED").await? else {
            anyhow::bail!("not ADDED")
        };
        ensure!(first.metadata.name.as_deref() == Some("before"));
        Ok(())
    })
    .await?;
    cluster.stop().await
}

#[tokio::test]
async fn bookmarks_carry_progress() -> Result<()> {
    let engine = KvEngine::with_progress_interval(MvccState::new(), Duration::from_millis(100));
    let cluster =
        Cluster::with(Options { store: Some(MemStore::with_engine(engine)), ..Default::default() }).await?;
    within("a bookmark", async {
        let t = ConfigMap::TYPE;
        let cm = obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
        let w = cluster.remote.create(&t, Some("default"), cm, &WriteOptions::default()).await?;
        let opts = ListOptions {
            resource_version: Some(w.object.resource_version().to_string()),
            allow_watch_bookmarks: true,
            ..Default::default()
        };
        let mut events = cluster.remote.watch(&t, Some("default"), &opts).await?;
        match events.next_event().await {
            Some(WatchEvent::Bookmark { resource_version }) => {
                ensure!(resource_version.parse::<i64>()? >= w.object.resource_version().parse::<i64>()?);
                Ok(())
            }
            other => anyhow::bail!("expected a bookmark, got {other:?}"),
        }
    })
    .await?;
    cluster.stop().await
}

/// A fake watch endpoint sending whatever chunks arrive on its channel.
fn chunked_watch(chunks: mpsc::Receiver<Bytes>) -> Router {
    let chunks = Arc::new(tokio::sync::Mutex::new(Some(chunks)));
    Router::new().route(
        "/api/v1/namespaces/default/pods",
        get(move || {
            let chunks = chunks.clone();
            async move {
                let rx = chunks.lock().await.take();
                let stream = futures::stream::unfold(rx, |rx| async move {
                    let mut rx = rx?;
                    let chunk = rx.recv().await?;
                    Some((Ok::<_, std::convert::Infallible>(chunk), Some(rx)))
                });
                axum::response::Response::new(Body::from_stream(stream))
            }
        }),
    )
}

#[tokio::test]
async fn events_cut_across_chunks() -> Result<()> {
    let (tx, rx) = mpsc::channel(1);
    let fake = Fake::start(chunked_watch(rx)).await?;
    let client = fake.client(1)?;
    within("a watch body cut across chunks", async {
        let pod = |name: &str, rv: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "resourceVersion": rv}});
        let line = |v: serde_json::Value| format!("{v}\n");
        let added = line(json!({"type": "ADDED", "object": pod("a", "1")}));
        let modified = line(json!({"type": "MODIFIED", "object": pod("a", "2")}));
        let bookmark = line(json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}}}));
        let expired = line(json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                               "code": 410, "reason": "Expired", "message": "too old resource version: 1 (5)"}}));
        let after = line(json!({"type": "ADDED", "object": pod("b", "10")}));
        let mut events = client.watch(&Pod::TYPE, Some("default"), &ListOptions::default()).await?;
        // Half a line, then its rest with a whole line and half of the next, then the rest.
        let (a1, a2) = added.split_at(20);
        let (b1, b2) = bookmark.split_at(bookmark.len() - 3);
        for chunk in [a1.to_string(), format!("{a2}{modified}{b1}"), format!("{b2}{expired}{after}")] {
            tx.send(Bytes::from(chunk)).await?;
        }
        let names = |ev: Option<WatchEvent>| match ev {
            Some(WatchEvent::Bookmark { resource_version }) => format!("BOOKMARK {resource_version}"),
            Some(WatchEvent::Error(e)) => format!("ERROR {e:?}"),
            Some(ev) => format!("{} {}", ev.type_name(), ev.object().map_or("", |o| o.resource_version())),
            None => "end".into(),
        };
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(names(events.next_event().await));
        }
        let want = [
            "ADDED 1".to_string(),
            "MODIFIED 2".into(),
            "BOOKMARK 9".into(),
            format!("ERROR {:?}", Error::Expired("too old resource version: 1 (5)".into())),
            "end".into(),
        ];
        ensure!(got == want, "{got:?}");
        Ok(())
    })
    .await?;
    drop(tx);
    fake.stop().await
}

#[tokio::test]
async fn watcher_and_reflector_stay_in_sync_and_relist_after_410() -> Result<()> {
    // Watches end after 200-400 ms, so the watcher resumes often.
    let config = ServerConfig { min_watch_timeout: Duration::from_millis(200), ..Default::default() };
    let cluster = Cluster::with(Options { config, ..Default::default() }).await?;
    let pods = Api::<Pod>::namespaced(cluster.remote.clone(), "default");
    let cache = Cache::<Pod>::with_indexes([Cache::by_label("app")].into_iter().collect());
    let (tx, mut seen) = mpsc::channel(1024);
    let stream = reflector(cache.clone(), watcher(pods.clone(), ListOptions::default()));
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(ev) = stream.next().await {
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    let result = within("the reflector following the server", async {
        for name in ["a", "b", "c"] {
            pods.create(&pod(name, "web")).await?;
        }
        let wait_for = |want: &'static [&'static str]| {
            let cache = cache.clone();
            async move {
                loop {
                    let mut names: Vec<String> =
                        cache.list().iter().filter_map(|p| p.metadata.name.clone()).collect();
                    names.sort();
                    if cache.is_ready() && names == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait_for(&["a", "b", "c"]).await;
        ensure!(cache.indexed("label:app", "web").len() == 3);
        pods.delete("b", &Default::default()).await?;
        pods.patch(
            "c",
            flotilla_core::patch::PatchType::Merge,
            &json!({"metadata": {"labels": {"app": "db"}}}),
        )
        .await?;
        wait_for(&["a", "c"]).await;
        ensure!(cache.indexed("label:app", "db").len() == 1);

        // Advance the store past the watcher's last resourceVersion with changes it does not
        // watch, then compact: its next resume is 410 Expired, and it relists.
        let last = pods.list(&ListOptions::default()).await?.resource_version;
        let maps = Api::<ConfigMap>::namespaced(cluster.remote.clone(), "default");
        for i in 0..3 {
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm{i}")}}))?;
            maps.create(&cm).await?;
        }
        let head = maps.list(&ListOptions::default()).await?.resource_version;
        ensure!(head.parse::<i64>()? > last.parse::<i64>()?);
        cluster.registry.store().compact(head.parse()?).await?;
        loop {
            match seen.recv().await.context("the watcher stopped")? {
                WatcherEvent::Retrying(msg) if msg.contains("too old resource version") => break,
                _ => {}
            }
        }
        loop {
            if seen.recv().await.context("the watcher stopped")? == WatcherEvent::InitDone {
                break;
            }
        }
        wait_for(&["a", "c"]).await;
        // And it watches again after the relist.
        pods.create(&pod("d", "web")).await?;
        wait_for(&["a", "c", "d"]).await;
        Ok(())
    })
    .await;
    task.abort();
    let _ = task.await;
    result?;
    cluster.stop().await
}
