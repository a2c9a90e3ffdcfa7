//! A list request's query, from the string to the page: the handler's parsing
//! (`flotilla_api::server::fuzzing::query_options`) into `ListOptions`, then
//! `Registry::list` over a fixed `MemStore` (pods, configmaps and nodes in namespaces `a`,
//! `ab` and `b`, with updates, a delete and a compaction behind them). This is where the
//! untrusted `continue` token is decoded (base64 JSON of a revision and a start key), with
//! `resourceVersion`, `resourceVersionMatch`, `limit` and the selectors.
//!
//! Input: a byte choosing the collection (a namespace or all of them); with its top bit set, a
//! continue token is forged from the next bytes (8 bytes of revision, little-endian, then the
//! start key up to a newline) and added to the query; then the query string.
//!
//! Properties: nothing panics; a refusal is a 400, 410 (expired) or 504 (future revision),
//! never a 500; a page holds only objects of the collection asked for (a forged token does not
//! reach another namespace), in key order, each matching the selectors, at most `limit` of
//! them, with a resourceVersion a client can send back (a forged token with a negative
//! revision is refused: see fuzz/README.md); following the server's continue tokens
//! gives, page after page, the same objects as one exact list at the first page's revision,
//! and `remainingItemCount` counts what the later pages hold.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_api::server::fuzzing;
use flotilla_core::MemStore;
use flotilla_core::object::{DynamicObject, KindRegistry, ResourceType};
use flotilla_core::registry::{
    DeleteOptions, ListOptions, ObjectList, Registry, ResourceVersionMatch, WriteOptions,
};
use flotilla_core::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// The collections listed: (group, resource, namespace).
const COLLECTIONS: &[(&str, &str, Option<&str>)] = &[
    ("", "pods", Some("a")),
    ("", "pods", None),
    ("", "pods", Some("ab")),
    ("", "configmaps", Some("b")),
    ("", "configmaps", None),
    ("", "nodes", None),
    ("", "pods", Some("zz")),
];

/// Pages followed at most (the store holds fewer objects than this).
const MAX_PAGES: usize = 32;

struct Fixture {
    rt: tokio::runtime::Runtime,
    registry: Registry,
}

fn object(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).expect("a fixture object")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let registry = rt.block_on(async {
            let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
            let kinds = registry.kinds().clone();
            let t = |plural: &str| kinds.get("", plural).expect("built in").resource_type();
            let w = WriteOptions::default();
            for ns in ["a", "ab", "b"] {
                let obj = object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
                registry.create(&t("namespaces"), None, obj, &w).await.expect("namespace");
            }
            let pods = [
                ("a", "p1", json!({"app": "web"})),
                ("a", "p2", json!({"app": "db"})),
                ("a", "p3", json!({"app": "web", "tier": "fe"})),
                ("a", "p4", json!({})),
                ("ab", "p1", json!({"app": "web"})),
                ("b", "p1", json!({"app": "web"})),
                ("b", "p2", json!({"app": "db"})),
            ];
            for (ns, name, labels) in pods {
                let pod = object(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": format!("n{}", name.len())},
                }));
                registry.create(&t("pods"), Some(ns), pod, &w).await.expect("pod");
            }
            for (ns, name) in [("a", "c1"), ("b", "c1"), ("b", "c2")] {
                let cm = object(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns}, "data": {"k": name},
                }));
                registry.create(&t("configmaps"), Some(ns), cm, &w).await.expect("configmap");
            }
            for name in ["n1", "n2"] {
                let node = object(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}));
                registry.create(&t("nodes"), None, node, &w).await.expect("node");
            }
            // History: an early revision compacted away, a deleted object behind the latest.
            registry.store().compact(3).await.expect("compaction");
            let now = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
            registry.delete(&t("configmaps"), Some("b"), "c2", &now).await.expect("delete");
            registry
        });
        Fixture { rt, registry }
    })
}

fn list(
    f: &Fixture,
    t: &ResourceType,
    ns: Option<&str>,
    opts: &ListOptions,
) -> flotilla_core::registry::Result<ObjectList> {
    f.rt.block_on(f.registry.list(t, ns, opts))
}

/// A continue token as the registry writes one (base64url of `{"rv": .., "start": ..}`), and the
/// rest of the input: `None` when the input is too short.
fn forge(data: &[u8]) -> Option<(String, &[u8])> {
    let (rv, rest) = data.split_first_chunk::<8>()?;
    let rv = i64::from_le_bytes(*rv);
    let (start, rest) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let json = serde_json::json!({"rv": rv, "start": String::from_utf8_lossy(start)});
    Some((URL_SAFE_NO_PAD.encode(json.to_string()), rest))
}

/// What a page may hold, whoever made its options.
fn check_page(f: &Fixture, t: &ResourceType, ns: Option<&str>, opts: &ListOptions, page: &ObjectList) {
    let rv = page.resource_version.parse::<i64>();
    assert!(
        rv.as_ref().is_ok_and(|rv| *rv > 0),
        "list resourceVersion {:?} for {opts:?}",
        page.resource_version
    );
    if let Some(l) = opts.limit.filter(|l| *l > 0) {
        assert!(page.items.len() as i64 <= l, "{} items over limit {l}", page.items.len());
    }
    let strategy = f.registry.kinds().get(t.group, t.plural).expect("built in");
    // A blank selector selects everything (the registry does not parse it).
    let given = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    let labels = given(&opts.label_selector).map(|l| LabelSelector::parse(&l).expect("the list parsed it"));
    let fields = given(&opts.field_selector).map(|s| FieldSelector::parse(&s).expect("the list parsed it"));
    for o in &page.items {
        assert_eq!(o.kind, t.kind, "kind in a {} list", t.plural);
        if let Some(ns) = ns.filter(|_| t.namespaced) {
            assert_eq!(o.namespace(), ns, "object {} of another namespace, options {opts:?}", o.name());
        }
        if let Some(l) = &labels {
            assert!(
                l.matches(&o.metadata.labels.clone().unwrap_or_default()),
                "{} does not match {l}",
                o.name()
            );
        }
        if let Some(s) = &fields {
            // The kind's fields, and the two every kind has.
            let mut values = strategy.selectable_fields(o);
            values.insert("metadata.name".into(), o.name().into());
            values.insert("metadata.namespace".into(), o.namespace().into());
            assert!(s.matches(&values), "{} does not match {s}", o.name());
        }
    }
    let keys: Vec<_> = page.items.iter().map(|o| (o.namespace(), o.name())).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "page out of key order: {keys:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let (group, plural, ns) = COLLECTIONS[usize::from(which & 0x7f) % COLLECTIONS.len()];
    let (forged, rest) = match which & 0x80 {
        0 => (None, rest),
        _ => match forge(rest) {
            Some((token, rest)) => (Some(token), rest),
            None => return,
        },
    };
    let Ok(query) = std::str::from_utf8(rest) else { return };
    let query = match forged {
        Some(token) => format!("continue={token}&{query}"),
        None => query.to_string(),
    };
    let opts = match fuzzing::query_options(Some(&query)).list {
        Ok(o) => o,
        Err(e) => return assert_eq!(e.code(), 400, "list options refused with {e}"),
    };
    let f = fixture();
    let t = f.registry.kinds().get(group, plural).expect("built in").resource_type();
    let first = match list(f, &t, ns, &opts) {
        Ok(page) => page,
        Err(e) => return assert!(matches!(e.code(), 400 | 410 | 504), "list refused with {}: {e}", e.code()),
    };
    check_page(f, &t, ns, &opts, &first);
    if opts.continue_token.is_some() {
        return;
    }
    // The server's own tokens page through one consistent list.
    let Some(mut token) = first.continue_token.clone() else { return };
    let remaining = first.remaining_item_count;
    let mut items = first.items.clone();
    let mut later = 0;
    for _ in 0..MAX_PAGES {
        let next = ListOptions { continue_token: Some(token.clone()), ..opts.clone() };
        let page = list(f, &t, ns, &next).expect("a server token continues the list");
        check_page(f, &t, ns, &next, &page);
        assert_eq!(page.resource_version, first.resource_version, "pages read at one revision");
        later += page.items.len() as i64;
        items.extend(page.items);
        match page.continue_token {
            Some(c) => token = c,
            None => break,
        }
    }
    if let Some(n) = remaining {
        assert_eq!(later, n, "remainingItemCount");
    }
    let exact = ListOptions {
        resource_version: Some(first.resource_version.clone()),
        resource_version_match: Some(ResourceVersionMatch::Exact),
        ..opts.selectors()
    };
    let whole = list(f, &t, ns, &exact).expect("an exact list at the pages' revision");
    assert_eq!(items, whole.items, "pages differ from one list at {}", first.resource_version);
});
