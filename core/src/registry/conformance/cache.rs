//! What is particular to the watch cache: lists served from memory, the window, slow
//! watchers and bookmarks. The store must send progress notifications at least every
//! [`PROGRESS_INTERVAL_BOUND`](crate::store::conformance::PROGRESS_INTERVAL_BOUND).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;

use super::support::{call, create_pod, namespace, next, obj, pod, rv};
use crate::object::Resource;
use crate::registry::{Error, GetOptions, ListOptions, Registry, WatchCacheConfig, WatchEvent, WriteOptions};

fn cm(name: &str, v: i32) -> crate::object::DynamicObject {
    obj(json!({"metadata": {"name": name}, "data": {"v": v.to_string()}}))
}

async fn put_cm(r: &Registry, name: &str, v: i32) -> i64 {
    let opts = WriteOptions::default();
    let w = match call("create", r.create(&ConfigMap::TYPE, Some("c"), cm(name, v), &opts)).await {
        Ok(w) => w,
        Err(Error::AlreadyExists { .. }) => call(
            "update",
            r.update(&ConfigMap::TYPE, Some("c"), name, cm(name, v), Default::default(), &opts),
        )
        .await
        .expect("updated"),
        Err(e) => panic!("writing configmap {name}: {e}"),
    };
    rv(&w.object)
}

/// Lists at "0" and not-older-than from the cache equal the store's list.
pub async fn cached_list_matches_the_store(r: Registry) {
    namespace(&r, "a").await;
    namespace(&r, "b").await;
    call("cache", r.enable_watch_cache(&Pod::TYPE, WatchCacheConfig::default())).await.expect("cache");
    let mut last = 0;
    for (ns, name, app) in [("a", "p1", "web"), ("a", "p2", "db"), ("b", "p3", "web")] {
        last = rv(&create_pod(&r, ns, pod(name, json!({"app": app}), &["c"])).await.expect("created"));
    }
    for (ns, labels, fields) in
        [(None, "", ""), (Some("a"), "", ""), (None, "app=web", ""), (None, "", "metadata.name=p2")]
    {
        let base = ListOptions {
            label_selector: Some(labels.into()),
            field_selector: Some(fields.into()),
            ..Default::default()
        };
        let store = call("list", r.list(&Pod::TYPE, ns, &base)).await.expect("store list");
        let newer = ListOptions { resource_version: Some(last.to_string()), ..base.clone() };
        let cached = call("list", r.list(&Pod::TYPE, ns, &newer)).await.expect("cached list");
        assert_eq!(cached.items, store.items, "{ns:?} {labels} {fields}");
        assert!(cached.resource_version.parse::<i64>().expect("numeric") >= last);
        let any = ListOptions { resource_version: Some("0".into()), ..base };
        assert_eq!(call("list", r.list(&Pod::TYPE, ns, &any)).await.expect("rv 0").items, store.items);
    }
    let zero = GetOptions { resource_version: Some("0".into()) };
    let cached = call("get", r.get(&Pod::TYPE, Some("a"), "p1", &zero)).await.expect("cached get");
    assert_eq!(
        cached,
        call("get", r.get(&Pod::TYPE, Some("a"), "p1", &GetOptions::default())).await.expect("get")
    );
    let missing = call("get", r.get(&Pod::TYPE, Some("a"), "nope", &zero)).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })), "{missing:?}");
}

/// A watch from before the cache's window is 410 Expired; one inside it replays.
pub async fn watch_before_the_window_is_expired(r: Registry) {
    namespace(&r, "c").await;
    let config = WatchCacheConfig { capacity: 3, watcher_buffer: 16 };
    call("cache", r.enable_watch_cache(&ConfigMap::TYPE, config)).await.expect("cache");
    let mut revs = Vec::new();
    for v in 0..6 {
        revs.push(put_cm(&r, "x", v).await);
    }
    let cache = r.watch_cache(&ConfigMap::TYPE).expect("enabled");
    assert!(cache.wait_for(revs[5], Duration::from_secs(5)).await, "cache caught up");
    let old = ListOptions { resource_version: Some(revs[0].to_string()), ..Default::default() };
    let e = call("watch", r.watch(&ConfigMap::TYPE, Some("c"), &old)).await.expect_err("before the window");
    assert_eq!((e.code(), e.reason()), (410, "Expired"), "{e}");
    let inside = ListOptions { resource_version: Some(revs[3].to_string()), ..Default::default() };
    let mut w =
        call("watch", r.watch(&ConfigMap::TYPE, Some("c"), &inside)).await.expect("inside the window");
    for want in &revs[4..] {
        let ev = next(&mut w).await;
        assert_eq!(
            (ev.type_name(), ev.resource_version().map(str::to_owned)),
            ("MODIFIED", Some(want.to_string()))
        );
    }
}

/// A watcher that does not read is dropped when its buffer fills; it resumes from the last
/// resourceVersion it saw and misses nothing.
pub async fn slow_watcher_is_dropped_and_resumes(r: Registry) {
    namespace(&r, "c").await;
    let config = WatchCacheConfig { capacity: 100, watcher_buffer: 2 };
    call("cache", r.enable_watch_cache(&ConfigMap::TYPE, config)).await.expect("cache");
    let start = put_cm(&r, "x", 0).await;
    let from = ListOptions { resource_version: Some(start.to_string()), ..Default::default() };
    let mut w = call("watch", r.watch(&ConfigMap::TYPE, Some("c"), &from)).await.expect("watching");
    let mut revs = Vec::new();
    for v in 1..=6 {
        revs.push(put_cm(&r, "x", v).await);
    }
    // Every change reaches the cache (and the watcher's buffer) before the watcher reads.
    let cache = r.watch_cache(&ConfigMap::TYPE).expect("enabled");
    assert!(cache.wait_for(revs[5], Duration::from_secs(5)).await, "cache caught up");
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), w.next_event()).await {
        seen.push(ev.resource_version().expect("has rv").parse::<i64>().expect("numeric"));
    }
    assert!(seen.len() < revs.len(), "the slow watcher was dropped: saw {seen:?}");
    let resume = seen.last().copied().unwrap_or(start);
    let again = ListOptions { resource_version: Some(resume.to_string()), ..Default::default() };
    let mut w = call("watch", r.watch(&ConfigMap::TYPE, Some("c"), &again)).await.expect("resumed");
    while seen.len() < revs.len() {
        seen.push(next(&mut w).await.resource_version().expect("has rv").parse().expect("numeric"));
    }
    assert_eq!(seen, revs, "nothing lost or repeated across the resume");
}

/// Watchers that ask for bookmarks learn the store's revision while their kind is idle.
pub async fn bookmarks_carry_progress(r: Registry) {
    namespace(&r, "c").await;
    call("cache", r.enable_watch_cache(&Pod::TYPE, WatchCacheConfig::default())).await.expect("cache");
    let opts =
        ListOptions { allow_watch_bookmarks: true, resource_version: Some("0".into()), ..Default::default() };
    let mut w = call("watch", r.watch(&Pod::TYPE, None, &opts)).await.expect("watching");
    let other = put_cm(&r, "elsewhere", 1).await;
    loop {
        match next(&mut w).await {
            WatchEvent::Bookmark { resource_version }
                if resource_version.parse::<i64>().unwrap_or(0) >= other =>
            {
                break;
            }
            WatchEvent::Bookmark { .. } => continue,
            ev => panic!("only bookmarks expected, got {ev:?}"),
        }
    }
}
