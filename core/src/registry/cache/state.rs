//! The watch cache's state, with no I/O: the current objects, a bounded window of recent
//! changes, and the watchers to notify.
//!
//! Objects are kept as their JSON (with what selectors need beside it, computed once): a
//! decoded object takes about seven times the memory. They are decoded when a list or a
//! watch needs them, once per change however many watchers receive it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use crate::object::DynamicObject;
use crate::registry::encoding::decode_value;
use crate::registry::list::Filter;
use crate::registry::{Error, WatchEvent};
use crate::store::{KeyValue, Revision};

/// One cached object version.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The value as stored (format byte and JSON, without resourceVersion).
    stored: Arc<[u8]>,
    mod_revision: Revision,
    namespace: Arc<str>,
    labels: Arc<BTreeMap<String, String>>,
    pub(crate) fields: Arc<BTreeMap<String, String>>,
}

impl Entry {
    /// An entry for the stored key-value `kv`, already decoded as `obj`, with its selectable
    /// `fields`.
    pub(crate) fn new(kv: &KeyValue, obj: &DynamicObject, fields: BTreeMap<String, String>) -> Self {
        Entry {
            stored: kv.value.as_slice().into(),
            mod_revision: kv.mod_revision,
            namespace: obj.namespace().into(),
            labels: Arc::new(obj.metadata.labels.clone().unwrap_or_default()),
            fields: Arc::new(fields),
        }
    }

    /// The object, decoded (it decoded when the entry was made, so this does not fail but for
    /// memory corruption; then an empty object is logged and returned).
    pub(crate) fn object(&self) -> DynamicObject {
        decode_value("in the watch cache", &self.stored, self.mod_revision).unwrap_or_else(|e| {
            tracing::error!(error = %e, "watch cache entry does not decode");
            DynamicObject::default()
        })
    }

    /// Whether `filter` (and the namespace, if any) selects this entry.
    pub(crate) fn selected(&self, namespace: Option<&str>, filter: &Filter) -> bool {
        namespace.is_none_or(|ns| &*self.namespace == ns)
            && filter.matches_label_map(&self.labels)
            && filter.matches_fields(&self.fields)
    }
}

/// One change in the window.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) revision: Revision,
    pub(crate) key: String,
    pub(crate) old: Option<Entry>,
    /// `None` for a deletion.
    pub(crate) new: Option<Entry>,
}

/// The decoded objects of one change, made at most once however many watchers need them.
pub(crate) struct Views<'a> {
    c: &'a Change,
    new: OnceLock<Arc<DynamicObject>>,
    gone: OnceLock<Arc<DynamicObject>>,
}

impl<'a> Views<'a> {
    pub(crate) fn of(c: &'a Change) -> Self {
        Views { c, new: OnceLock::new(), gone: OnceLock::new() }
    }

    /// With the new object already decoded.
    pub(crate) fn with_new(c: &'a Change, new: Arc<DynamicObject>) -> Self {
        let v = Self::of(c);
        let _ = v.new.set(new);
        v
    }

    fn new_obj(&self, e: &Entry) -> Arc<DynamicObject> {
        self.new.get_or_init(|| Arc::new(e.object())).clone()
    }

    /// The old object at this change's revision: what a watcher losing sight of it gets.
    fn gone_obj(&self, e: &Entry) -> Arc<DynamicObject> {
        self.gone
            .get_or_init(|| {
                let mut obj = e.object();
                obj.metadata.resource_version = Some(self.c.revision.to_string());
                Arc::new(obj)
            })
            .clone()
    }
}

/// A registered watcher.
pub(crate) struct Watcher {
    pub(crate) namespace: Option<String>,
    pub(crate) filter: Arc<Filter>,
    pub(crate) bookmarks: bool,
    /// Changes at or below this revision were already delivered (or predate the watch).
    pub(crate) after: Revision,
    pub(crate) tx: mpsc::Sender<WatchEvent>,
}

impl Watcher {
    fn selects(&self, e: &Entry) -> bool {
        e.selected(self.namespace.as_deref(), &self.filter)
    }

    /// The event this watcher sees for a change, with Kubernetes' selector transitions.
    pub(crate) fn event(&self, v: &Views<'_>) -> Option<WatchEvent> {
        let old = v.c.old.as_ref().filter(|e| self.selects(e));
        match (&v.c.new, old) {
            (Some(n), old) if self.selects(n) => Some(if old.is_some() {
                WatchEvent::Modified(v.new_obj(n))
            } else {
                WatchEvent::Added(v.new_obj(n))
            }),
            // Left the selection (or deleted): the previous state, at this change's revision.
            (_, Some(o)) => Some(WatchEvent::Deleted(v.gone_obj(o))),
            _ => None,
        }
    }
}

/// The cache's state.
pub(crate) struct State {
    pub(crate) objects: BTreeMap<String, Entry>,
    changes: VecDeque<Change>,
    capacity: usize,
    /// Every change up to this revision is applied.
    pub(crate) revision: Revision,
    /// The window holds every change after this revision.
    pub(crate) oldest: Revision,
    watchers: Vec<Watcher>,
}

impl State {
    pub(crate) fn new(capacity: usize) -> Self {
        State {
            objects: BTreeMap::new(),
            changes: VecDeque::new(),
            capacity: capacity.max(1),
            revision: 0,
            oldest: 0,
            watchers: Vec::new(),
        }
    }

    /// Replaces everything with a fresh list at `revision`; current watchers end with 410, as
    /// the changes between their position and the list are unknown.
    pub(crate) fn reset(&mut self, objects: BTreeMap<String, Entry>, revision: Revision) {
        self.objects = objects;
        self.changes.clear();
        self.revision = revision;
        self.oldest = revision;
        for w in self.watchers.drain(..) {
            let _ = w.tx.try_send(WatchEvent::Error(Error::Expired(format!(
                "the watch cache was rebuilt at resource version {revision}; relist"
            ))));
        }
    }

    /// Applies one change (revisions never go back) and notifies watchers; `decoded` is the
    /// new object when the caller has it. A watcher whose buffer is full is dropped (its
    /// stream ends; it resumes from its last resourceVersion).
    pub(crate) fn apply(&mut self, c: Change, decoded: Option<Arc<DynamicObject>>) {
        match &c.new {
            Some(e) => {
                self.objects.insert(c.key.clone(), e.clone());
            }
            None => {
                self.objects.remove(&c.key);
            }
        }
        self.revision = self.revision.max(c.revision);
        {
            let views = match decoded {
                Some(d) => Views::with_new(&c, d),
                None => Views::of(&c),
            };
            self.watchers.retain(|w| {
                if c.revision <= w.after {
                    return true;
                }
                match w.event(&views) {
                    Some(ev) => w.tx.try_send(ev).is_ok(),
                    None => !w.tx.is_closed(),
                }
            });
        }
        self.changes.push_back(c);
        while self.changes.len() > self.capacity {
            if let Some(old) = self.changes.pop_front() {
                self.oldest = self.oldest.max(old.revision);
            }
        }
    }

    /// Nothing changed up to `revision`: advance, and send bookmarks to watchers that asked.
    pub(crate) fn progress(&mut self, revision: Revision) {
        if revision <= self.revision {
            return;
        }
        self.revision = revision;
        self.watchers.retain(|w| {
            if w.bookmarks {
                let ev = WatchEvent::Bookmark { resource_version: revision.to_string() };
                // A full buffer only delays the bookmark; the watcher keeps its place.
                matches!(w.tx.try_send(ev), Ok(()) | Err(mpsc::error::TrySendError::Full(_)))
            } else {
                !w.tx.is_closed()
            }
        });
    }

    /// The changes after `from` a new watcher must first receive, or Expired if the window
    /// no longer reaches back that far.
    pub(crate) fn replay(&self, w: &Watcher, from: Revision) -> Result<Vec<WatchEvent>, Error> {
        if from < self.oldest {
            return Err(Error::Expired(format!("too old resource version: {from} ({})", self.oldest)));
        }
        Ok(self.changes.iter().filter(|c| c.revision > from).filter_map(|c| w.event(&Views::of(c))).collect())
    }

    /// Registers a watcher (after its replay was sent).
    pub(crate) fn add_watcher(&mut self, w: Watcher) {
        self.watchers.push(w);
    }

    /// Number of registered watchers.
    pub(crate) fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Number of changes in the window.
    pub(crate) fn window_len(&self) -> usize {
        self.changes.len()
    }
}
