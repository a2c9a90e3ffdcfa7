//! Watch replay: watches opened at the end of a case must deliver exactly the model's changes.
//!
//! Rather than waiting out a timeout per watch to see that nothing more comes, every watch is
//! opened first, then one sentinel object per kind (labelled `app=a`, in `ns-a`, so every watch
//! of the kind selects it) is created: each watch must deliver its expected events and then the
//! sentinel's ADDED, and since a watch is ordered, anything extra would have come before it.
//! One short pause at the end catches events after the sentinel.
//!
//! A watch from `"0"` may start from any recent state (Kubernetes serves it from its watch
//! cache): it must deliver the objects of some revision since the case began, then every change
//! after that revision. Without a resourceVersion it must start from the current state.

use std::time::Duration;

use flotilla_core::registry::{ListOptions, Registry, WatchEvent, WatchStream, WriteOptions};
use futures::FutureExt;
use proptest::prelude::*;

use super::ops::{Kind, NAMESPACES, within};
use super::state::{Ev, Labels, Model, Selection, Snap};

/// The sentinel's name: after every model name in key order.
const SENTINEL: &str = "zz-end";
/// How long the watches get to show an event after the sentinel.
const QUIET: Duration = Duration::from_millis(10);

/// A watch opened at the end of a case.
#[derive(Clone, Debug)]
pub(crate) struct WatchSpec {
    kind: Kind,
    /// 0: everything; 1: `app=a`; 2: namespace `ns-a`; 3: without resourceVersion (or `"0"`).
    mode: u8,
    /// Picks the starting resourceVersion (and the selector in mode 3).
    at: u16,
}

pub(crate) fn watch_spec() -> impl Strategy<Value = WatchSpec> {
    (proptest::sample::select(Kind::ALL.to_vec()), 0..4u8, any::<u16>())
        .prop_map(|(kind, mode, at)| WatchSpec { kind, mode, at })
}

struct Open {
    what: String,
    kind: Kind,
    stream: WatchStream,
    /// The event sequences the watch may deliver before the sentinel (one, but for `"0"`).
    want: Vec<Vec<Ev>>,
}

fn ev(kind: Kind, e: &WatchEvent) -> Result<Ev, String> {
    let object = e.object().ok_or_else(|| format!("unexpected event {e:?}"))?;
    Ok(Ev { kind: e.type_name(), object: Snap::of(kind, object) })
}

/// Opens a watch from every revision in `specs` (plus a full replay per kind), creates the
/// sentinels, and checks what each watch delivers against the model.
pub(crate) async fn check_watches(
    r: &Registry,
    model: &Model,
    first: i64,
    specs: &[WatchSpec],
) -> Result<(), String> {
    let all = Selection { namespace: None, app_a: false };
    // (kind, selection, the model's starting revision, the resourceVersion sent)
    let mut plans: Vec<(Kind, Selection, Option<i64>, Option<String>)> =
        Kind::ALL.iter().map(|k| (*k, all, Some(first), Some(first.to_string()))).collect();
    for s in specs {
        let from = first + i64::from(s.at) % (model.revision - first + 1);
        let (sel, from) = match s.mode {
            0 => (all, Some(from)),
            1 => (Selection { app_a: true, ..all }, Some(from)),
            2 => (Selection { namespace: Some(NAMESPACES[0]), ..all }, Some(from)),
            _ => (Selection { app_a: s.at % 2 == 1, ..all }, None),
        };
        // Without a resourceVersion, or with "0": the same (the current state, then changes).
        let sent = from.map(|f| f.to_string()).or_else(|| (s.at % 4 >= 2).then(|| "0".to_string()));
        plans.push((s.kind, sel, from, sent));
    }
    let mut open = Vec::new();
    for (kind, sel, from, sent) in plans {
        let what = format!("watch of {kind:?} {sel:?} from resourceVersion {sent:?}");
        let opts = ListOptions {
            label_selector: sel.app_a.then(|| "app=a".to_string()),
            resource_version: sent.clone(),
            ..Default::default()
        };
        let stream = within(&what, r.watch(&kind.resource_type(), sel.namespace, &opts))
            .await?
            .map_err(|e| format!("{what}: {e}"))?;
        let want = match (from, sent.is_some()) {
            (None, true) => model.expected_from_any_state(kind, sel, first),
            _ => vec![model.expected_events(kind, sel, from)],
        };
        open.push(Open { what, kind, stream, want });
    }
    let app_a: Labels = [("app".to_string(), "a".to_string())].into();
    for kind in Kind::ALL {
        let o = kind.body(SENTINEL, &app_a, 1, &[]);
        within(
            "create sentinel",
            r.create(&kind.resource_type(), Some(NAMESPACES[0]), o, &WriteOptions::default()),
        )
        .await?
        .map_err(|e| format!("creating the {kind:?} sentinel: {e}"))?;
    }
    for w in &mut open {
        let longest = w.want.iter().map(Vec::len).max().unwrap_or(0);
        let mut got = Vec::new();
        loop {
            let e =
                within(&w.what, w.stream.next_event()).await?.ok_or_else(|| format!("{} ended", w.what))?;
            let e = ev(w.kind, &e)?;
            if (e.kind, e.object.name.as_str()) == ("ADDED", SENTINEL) {
                break;
            }
            got.push(e);
            if got.len() > longest {
                break;
            }
        }
        if !w.want.contains(&got) {
            let want = w.want.last().cloned().unwrap_or_default();
            return Err(format!("{}:\n  registry: {got:#?}\n  model:    {want:#?}", w.what));
        }
    }
    tokio::time::sleep(QUIET).await;
    for w in &mut open {
        if let Some(extra) = w.stream.next_event().now_or_never() {
            return Err(format!("{}: after the sentinel, {extra:?}", w.what));
        }
    }
    Ok(())
}
