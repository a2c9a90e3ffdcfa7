//! The watch cache's state, with no I/O: the current objects, a bounded window of recent
//! changes, and the watchers to notify.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::object::DynamicObject;
use crate::registry::list::Filter;
use crate::registry::{Error, WatchEvent};
use crate::store::Revision;

/// One cached object with the field values selectors need, computed once.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) obj: Arc<DynamicObject>,
    pub(crate) fields: Arc<BTreeMap<String, String>>,
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
        self.namespace.as_deref().is_none_or(|ns| e.obj.namespace() == ns)
            && self.filter.matches_labels(&e.obj)
            && self.filter.matches_fields(&e.fields)
    }

    /// The event this watcher sees for `c`, with Kubernetes' selector transitions.
    pub(crate) fn event(&self, c: &Change) -> Option<WatchEvent> {
        let old = c.old.as_ref().filter(|e| self.selects(e));
        match (&c.new, old) {
            (Some(n), old) if self.selects(n) => Some(if old.is_some() {
                WatchEvent::Modified((*n.obj).clone())
            } else {
                WatchEvent::Added((*n.obj).clone())
            }),
            // Left the selection (or deleted): the previous state, at this change's revision.
            (Some(_), Some(o)) | (None, Some(o)) => {
                let mut obj = (*o.obj).clone();
                obj.metadata.resource_version = Some(c.revision.to_string());
                Some(WatchEvent::Deleted(obj))
            }
            _ => None,
        }
    }
}

/// The cache's state.
pub(crate) struct State {
    pub(crate) objects: BTreeMap<String, Entry>,
    changes: VecDeque<Arc<Change>>,
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

    /// Applies one change (revisions never go back) and notifies watchers; a watcher whose
    /// buffer is full is dropped (its stream ends; it resumes from its last resourceVersion).
    pub(crate) fn apply(&mut self, c: Change) {
        match &c.new {
            Some(e) => {
                self.objects.insert(c.key.clone(), e.clone());
            }
            None => {
                self.objects.remove(&c.key);
            }
        }
        self.revision = self.revision.max(c.revision);
        let c = Arc::new(c);
        self.watchers.retain(|w| {
            if c.revision <= w.after {
                return true;
            }
            match w.event(&c) {
                Some(ev) => w.tx.try_send(ev).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
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
        Ok(self.changes.iter().filter(|c| c.revision > from).filter_map(|c| w.event(c)).collect())
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
