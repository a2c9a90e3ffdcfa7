//! List, pagination, selectors and watch.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::support::{call, create_pod, namespace, next, pod, rv};
use crate::object::Resource;
use crate::patch::PatchType;
use crate::registry::{
    DeleteOptions, Error, ListOptions, Registry, ResourceVersionMatch, Subresource, WatchEvent, WriteOptions,
};

fn names(items: &[crate::object::DynamicObject]) -> Vec<String> {
    items.iter().map(|o| format!("{}/{}", o.namespace(), o.name())).collect()
}

/// Label and field selectors, in one namespace and across all; unsupported fields refused.
pub async fn list_filters_by_label_and_field(r: Registry) {
    namespace(&r, "a").await;
    namespace(&r, "b").await;
    create_pod(&r, "a", pod("web-1", json!({"app": "web", "tier": "front"}), &["c"])).await.expect("created");
    create_pod(&r, "a", pod("db-1", json!({"app": "db"}), &["c"])).await.expect("created");
    let mut bound = pod("web-2", json!({"app": "web"}), &["c"]);
    bound.data.get_mut("spec").expect("spec")["nodeName"] = json!("n1");
    create_pod(&r, "b", bound).await.expect("created");
    let list = |ns: Option<&'static str>, labels: &str, fields: &str| {
        let opts = ListOptions {
            label_selector: Some(labels.to_string()),
            field_selector: Some(fields.to_string()),
            ..Default::default()
        };
        let r = r.clone();
        async move { r.list(&Pod::TYPE, ns, &opts).await }
    };
    let all = call("list", list(None, "", "")).await.expect("lists");
    assert_eq!(names(&all.items), ["a/db-1", "a/web-1", "b/web-2"]);
    assert_eq!(
        names(&call("list", list(None, "app=web", "")).await.expect("l").items),
        ["a/web-1", "b/web-2"]
    );
    assert_eq!(
        names(&call("list", list(Some("a"), "app in (web,db),!tier", "")).await.expect("l").items),
        ["a/db-1"]
    );
    assert_eq!(names(&call("list", list(None, "", "spec.nodeName=n1")).await.expect("l").items), ["b/web-2"]);
    assert_eq!(
        names(
            &call("list", list(None, "", "metadata.namespace!=b,metadata.name=web-1"))
                .await
                .expect("l")
                .items
        ),
        ["a/web-1"]
    );
    let e = call("list", list(None, "", "spec.bogus=1")).await.expect_err("unsupported field");
    assert_eq!(e.code(), 400, "{e}");
    let e = call("list", list(None, "app in (web", "")).await.expect_err("bad selector");
    assert_eq!(e.code(), 400, "{e}");
}

/// Pages read at the first page's revision: writes between pages do not show.
pub async fn list_pages_form_one_snapshot(r: Registry) {
    namespace(&r, "pg").await;
    for i in 0..7 {
        create_pod(&r, "pg", pod(&format!("p{i}"), json!({}), &["c"])).await.expect("created");
    }
    let mut opts = ListOptions { limit: Some(3), ..Default::default() };
    let first = call("list", r.list(&Pod::TYPE, Some("pg"), &opts)).await.expect("page 1");
    assert_eq!(names(&first.items), ["pg/p0", "pg/p1", "pg/p2"]);
    assert_eq!(first.remaining_item_count, Some(4));
    create_pod(&r, "pg", pod("p3a", json!({}), &["c"])).await.expect("created between pages");
    let mut seen = names(&first.items);
    opts.continue_token = first.continue_token.clone();
    while opts.continue_token.is_some() {
        let page = call("list", r.list(&Pod::TYPE, Some("pg"), &opts)).await.expect("next page");
        assert_eq!(page.resource_version, first.resource_version, "every page at one revision");
        seen.extend(names(&page.items));
        opts.continue_token = page.continue_token;
    }
    assert_eq!(seen, (0..7).map(|i| format!("pg/p{i}")).collect::<Vec<_>>());
    let bad = ListOptions { continue_token: Some("garbage!".into()), ..Default::default() };
    assert_eq!(call("list", r.list(&Pod::TYPE, Some("pg"), &bad)).await.expect_err("bad token").code(), 400);
}

/// resourceVersionMatch=Exact reads the past; without a resourceVersion it is refused.
pub async fn list_at_exact_resource_version(r: Registry) {
    namespace(&r, "ex").await;
    let p = create_pod(&r, "ex", pod("a", json!({}), &["c"])).await.expect("created");
    create_pod(&r, "ex", pod("b", json!({}), &["c"])).await.expect("created");
    let exact = ListOptions {
        resource_version: Some(p.resource_version().to_string()),
        resource_version_match: Some(ResourceVersionMatch::Exact),
        ..Default::default()
    };
    let l = call("list", r.list(&Pod::TYPE, Some("ex"), &exact)).await.expect("past list");
    assert_eq!(names(&l.items), ["ex/a"]);
    assert_eq!(l.resource_version, p.resource_version());
    let bad = ListOptions { resource_version_match: Some(ResourceVersionMatch::Exact), ..Default::default() };
    assert_eq!(call("list", r.list(&Pod::TYPE, Some("ex"), &bad)).await.expect_err("no rv").code(), 400);
}

/// A watch from a resourceVersion delivers every later change, in order.
pub async fn watch_replays_changes_after_a_resource_version(r: Registry) {
    namespace(&r, "w").await;
    let start = create_pod(&r, "w", pod("before", json!({}), &["c"])).await.expect("created");
    let a = create_pod(&r, "w", pod("a", json!({}), &["c"])).await.expect("created");
    let patch = json!({"metadata": {"labels": {"x": "1"}}}).to_string();
    let opts = WriteOptions::default();
    call(
        "patch",
        r.patch(&Pod::TYPE, Some("w"), "a", PatchType::Merge, patch.as_bytes(), Subresource::Main, &opts),
    )
    .await
    .expect("patched");
    call("delete", r.delete(&Pod::TYPE, Some("w"), "a", &DeleteOptions::default())).await.expect("deleted");
    let from = ListOptions { resource_version: Some(start.resource_version().into()), ..Default::default() };
    let mut w = call("watch", r.watch(&Pod::TYPE, Some("w"), &from)).await.expect("watching");
    let mut last = rv(&start);
    for want in ["ADDED", "MODIFIED", "DELETED"] {
        let ev = next(&mut w).await;
        assert_eq!(ev.type_name(), want, "{ev:?}");
        let o = ev.object().expect("has object");
        assert_eq!(o.name(), "a");
        assert_eq!(o.uid(), a.uid());
        assert!(rv(o) > last, "resourceVersions increase");
        last = rv(o);
    }
}

/// Without a resourceVersion a watch first reports every existing object as added.
pub async fn watch_without_resource_version_starts_with_state(r: Registry) {
    namespace(&r, "ws").await;
    for n in ["x", "y"] {
        create_pod(&r, "ws", pod(n, json!({}), &["c"])).await.expect("created");
    }
    let mut w =
        call("watch", r.watch(&Pod::TYPE, Some("ws"), &ListOptions::default())).await.expect("watching");
    for n in ["x", "y"] {
        match next(&mut w).await {
            WatchEvent::Added(o) => assert_eq!(o.name(), n),
            other => panic!("expected ADDED {n}, got {other:?}"),
        }
    }
    create_pod(&r, "ws", pod("z", json!({}), &["c"])).await.expect("created");
    assert!(matches!(next(&mut w).await, WatchEvent::Added(o) if o.name() == "z"));
}

/// With a label selector, leaving the selection is a delete and entering it an add.
pub async fn watch_follows_selector_transitions(r: Registry) {
    namespace(&r, "wt").await;
    let p = create_pod(&r, "wt", pod("a", json!({"app": "web"}), &["c"])).await.expect("created");
    let opts = ListOptions {
        label_selector: Some("app=web".into()),
        resource_version: Some(p.resource_version().into()),
        ..Default::default()
    };
    let mut w = call("watch", r.watch(&Pod::TYPE, Some("wt"), &opts)).await.expect("watching");
    let set = |app: &str| {
        let r = r.clone();
        let body = json!({"metadata": {"labels": {"app": app}}}).to_string();
        async move {
            r.patch(
                &Pod::TYPE,
                Some("wt"),
                "a",
                PatchType::Merge,
                body.as_bytes(),
                Subresource::Main,
                &WriteOptions::default(),
            )
            .await
            .expect("patched")
        }
    };
    call("patch", set("db")).await;
    call("patch", set("db2")).await;
    call("patch", set("web")).await;
    assert_eq!(next(&mut w).await.type_name(), "DELETED");
    assert_eq!(
        next(&mut w).await.type_name(),
        "ADDED",
        "the change between two unselected states is not seen"
    );
}

/// A watch from a compacted resourceVersion is 410 Expired.
pub async fn watch_from_compacted_revision_is_expired(r: Registry) {
    namespace(&r, "wc").await;
    let old = create_pod(&r, "wc", pod("a", json!({}), &["c"])).await.expect("created");
    let newer = create_pod(&r, "wc", pod("b", json!({}), &["c"])).await.expect("created");
    call("compact", r.store().compact(rv(&newer))).await.expect("compacted");
    let from = ListOptions { resource_version: Some((rv(&old) - 1).to_string()), ..Default::default() };
    let e = call("watch", r.watch(&Pod::TYPE, Some("wc"), &from)).await.expect_err("expired");
    assert!(matches!(e, Error::Expired(_)), "{e:?}");
    assert_eq!((e.code(), e.reason()), (410, "Expired"));
}
