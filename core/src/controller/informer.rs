//! Shared informers: one watch and one cache per resource type, however many controllers of
//! the process read that type.
//!
//! [`Informers::informer`] returns the same [`Informer`] for a type every time it is asked.
//! Each informer runs core's [`watcher`](crate::client::watcher) (list, then watch, resuming
//! and relisting on its own), keeps a [`Cache`] whose indexes controllers add as they are
//! composed, and broadcasts a [`Change`] with the old and new object for every change.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{Api, Cache, Client, IndexFn, ListOptions, WatcherEvent, object_key, watcher};
use crate::object::Resource;

/// How many changes an informer buffers per subscriber. A subscriber that falls further behind
/// is told it lagged and resynchronises from the cache instead.
pub const CHANGE_CHANNEL_CAPACITY: usize = 4096;

/// One change an informer saw.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or changed: the object before (if the cache had it) and after.
    Applied {
        /// The object as the cache held it before.
        old: Option<Arc<K>>,
        /// The object now.
        new: Arc<K>,
    },
    /// Deleted, with its last known state.
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied { old: old.clone(), new: new.clone() },
            Change::Deleted(k) => Change::Deleted(k.clone()),
        }
    }
}

impl<K> Change<K> {
    /// The object before the change, if known.
    pub fn old(&self) -> Option<&K> {
        match self {
            Change::Applied { old, .. } => old.as_deref(),
            Change::Deleted(k) => Some(k),
        }
    }

    /// The object after the change; `None` when it was deleted.
    pub fn latest(&self) -> Option<&K> {
        match self {
            Change::Applied { new, .. } => Some(new),
            Change::Deleted(_) => None,
        }
    }
}

/// A shared watch of one resource type: its cache and its change notifications.
pub struct Informer<K> {
    cache: Cache<K>,
    changes: broadcast::Sender<Change<K>>,
    synced: watch::Receiver<bool>,
    synced_tx: Arc<watch::Sender<bool>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            cache: self.cache.clone(),
            changes: self.changes.clone(),
            synced: self.synced.clone(),
            synced_tx: self.synced_tx.clone(),
        }
    }
}

impl<K: Resource> Informer<K> {
    fn new() -> Informer<K> {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (synced_tx, synced) = watch::channel(false);
        Informer { cache: Cache::default(), changes, synced, synced_tx: Arc::new(synced_tx) }
    }

    /// The cache this informer fills.
    pub fn cache(&self) -> Cache<K> {
        self.cache.clone()
    }

    /// Adds an index to the shared cache (a no-op if one of that name exists).
    pub fn add_index(&self, (name, f): (String, IndexFn<K>)) -> &Self {
        if !self.cache.has_index(&name) {
            self.cache.add_index(&name, f);
        }
        self
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.changes.subscribe()
    }

    /// Whether the first full list has been cached.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first full list has been cached.
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Feeds one watcher event to the cache and the subscribers.
    fn apply(&self, event: WatcherEvent<K>, relisted: &mut Option<BTreeSet<String>>) {
        match &event {
            WatcherEvent::Init => *relisted = Some(BTreeSet::new()),
            WatcherEvent::InitApply(k) | WatcherEvent::Apply(k) => {
                let key = object_key(k);
                if let Some(seen) = relisted.as_mut().filter(|_| matches!(event, WatcherEvent::InitApply(_)))
                {
                    seen.insert(key.clone());
                }
                let old = self.cache.get(&key);
                let unchanged = old.as_ref().is_some_and(|o| {
                    o.meta().resource_version.is_some()
                        && o.meta().resource_version == k.meta().resource_version
                });
                self.cache.apply(&event);
                if !unchanged && let Some(new) = self.cache.get(&key) {
                    let _ = self.changes.send(Change::Applied { old, new });
                }
                return;
            }
            WatcherEvent::InitDone => {
                // Objects deleted while we were not watching: the cache drops them at
                // `InitDone`; tell the subscribers first.
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<Arc<K>> = self
                    .cache
                    .list()
                    .into_iter()
                    .filter(|o| !seen.contains(&object_key(o.as_ref())))
                    .collect();
                self.cache.apply(&event);
                for k in gone {
                    let _ = self.changes.send(Change::Deleted(k));
                }
                self.synced_tx.send_replace(true);
                return;
            }
            WatcherEvent::Delete(k) => {
                let old = self.cache.get(&object_key(k));
                self.cache.apply(&event);
                let last = old.unwrap_or_else(|| Arc::new(k.clone()));
                let _ = self.changes.send(Change::Deleted(last));
                return;
            }
            WatcherEvent::Retrying(msg) => {
                tracing::debug!(kind = K::TYPE.kind, error = %msg, "informer retrying");
            }
        }
        self.cache.apply(&event);
    }

    async fn run(self, client: Arc<dyn Client>, shutdown: CancellationToken) {
        let events = watcher(Api::<K>::all(client), ListOptions::default());
        tokio::pin!(events);
        let mut relisted = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                ev = events.next() => match ev {
                    Some(ev) => self.apply(ev, &mut relisted),
                    None => return,
                },
            }
        }
    }
}

type Starter = Box<dyn FnOnce(&TaskTracker, CancellationToken) + Send>;

#[derive(Default)]
struct State {
    informers: HashMap<String, Box<dyn Any + Send + Sync>>,
    pending: Vec<Starter>,
    running: Option<(TaskTracker, CancellationToken)>,
}

/// The informers of one process, shared by its controllers. Cheap to clone.
#[derive(Clone)]
pub struct Informers {
    client: Arc<dyn Client>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Informers")
            .field("types", &s.informers.keys().collect::<Vec<_>>())
            .field("running", &s.running.is_some())
            .finish()
    }
}

impl Informers {
    /// Informers reading through `client`. Nothing is watched until [`start`](Self::start).
    pub fn new(client: Arc<dyn Client>) -> Informers {
        Informers { client, state: Arc::new(Mutex::new(State::default())) }
    }

    /// The client the informers read through.
    pub fn client(&self) -> Arc<dyn Client> {
        self.client.clone()
    }

    /// The informer of `K`, created on first use (and started at once if the informers run).
    pub fn informer<K: Resource>(&self) -> Informer<K> {
        let t = K::TYPE;
        let type_key = format!("{}/{}/{}", t.group, t.version, t.plural);
        let mut s = self.state.lock();
        if let Some(i) = s.informers.get(&type_key) {
            return i.downcast_ref::<Informer<K>>().expect("one Rust type per resource type").clone();
        }
        let informer = Informer::<K>::new();
        s.informers.insert(type_key, Box::new(informer.clone()));
        let client = self.client.clone();
        let run = informer.clone();
        let starter: Starter = Box::new(move |tracker: &TaskTracker, token: CancellationToken| {
            tracker.spawn(run.run(client, token));
        });
        match &s.running {
            Some((tracker, token)) => starter(tracker, token.clone()),
            None => s.pending.push(starter),
        }
        informer
    }

    /// The cache of `K` (its informer's).
    pub fn cache<K: Resource>(&self) -> Cache<K> {
        self.informer::<K>().cache()
    }

    /// Starts watching every type asked for so far, and later ones as they are asked for,
    /// until `shutdown` is cancelled. Calling it again does nothing.
    pub fn start(&self, shutdown: CancellationToken) {
        let mut s = self.state.lock();
        if s.running.is_some() {
            return;
        }
        let tracker = TaskTracker::new();
        for starter in s.pending.drain(..) {
            starter(&tracker, shutdown.clone());
        }
        s.running = Some((tracker, shutdown));
    }

    /// Waits until every informer task has stopped (after the `shutdown` given to `start`).
    pub async fn stopped(&self) {
        let tracker = self.state.lock().running.as_ref().map(|(t, _)| t.clone());
        if let Some(t) = tracker {
            t.close();
            t.wait().await;
        }
    }
}
