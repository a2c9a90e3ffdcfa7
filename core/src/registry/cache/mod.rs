//! The watch cache: one store watch per kind feeds an in-memory copy of every object and a
//! bounded window of recent changes, from which the registry serves lists at
//! resourceVersion `"0"` (or not older than a given one) and watches, without touching the
//! store.
//!
//! A watch from a resourceVersion older than the window is answered 410 Expired (the client
//! relists); a watcher that cannot keep up (its buffer of [`WatchCacheConfig::watcher_buffer`]
//! events is full) is dropped, and resumes from its last resourceVersion. Watchers that asked
//! for bookmarks get one at every store progress notification. If the store compacts past
//! the cache (it fell too far behind), the cache relists and ends every watch with 410.

mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::state::{Change, Entry, State, Watcher};
use super::encoding::{decode, prefix};
use super::list::{Filter, selectable_fields};
use super::{Error, Result, WatchEvent, WatchStream};
use crate::object::{DynamicObject, KindStrategy, ResourceType};
use crate::store::{self, EventType, KeyRange, RangeRequest, Revision, Store, WatchRequest};

/// How long a read waits for the cache to reach a requested resourceVersion before it is
/// served by the store instead.
pub const WAIT_FOR_REVISION: Duration = Duration::from_secs(3);
/// First delay before re-watching after a store watch failed.
const RETRY_START: Duration = Duration::from_millis(100);
/// Longest delay between re-watch attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Sizes of a watch cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchCacheConfig {
    /// Changes kept for watches that resume from the past.
    pub capacity: usize,
    /// Events buffered per watcher before it is dropped as too slow.
    pub watcher_buffer: usize,
}

impl Default for WatchCacheConfig {
    fn default() -> Self {
        WatchCacheConfig { capacity: 10_000, watcher_buffer: 1_000 }
    }
}

/// A store event made ready to apply: its revision, key, and (unless a deletion) the new
/// entry with the object it decoded to.
type Decoded = (Revision, String, Option<(Entry, Arc<DynamicObject>)>);

struct Shared {
    t: ResourceType,
    strategy: Arc<dyn KindStrategy>,
    store: Arc<dyn Store>,
    config: WatchCacheConfig,
    state: Mutex<State>,
    revision: watch::Sender<Revision>,
}

/// The watch cache of one kind: every object in memory and a window of recent changes; see
/// [`Registry::enable_watch_cache`](crate::registry::Registry::enable_watch_cache).
pub struct WatchCache {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache").field("kind", &self.shared.t.kind).finish_non_exhaustive()
    }
}

fn entry(s: &dyn KindStrategy, kv: &store::KeyValue, obj: &DynamicObject) -> Entry {
    Entry::new(kv, obj, selectable_fields(s, obj))
}

impl Shared {
    /// Lists the kind from the store and resets the state to it; returns the revision.
    async fn relist(&self) -> Result<Revision> {
        let resp = self.store.range(RangeRequest::new(KeyRange::prefix(prefix(&self.t, None)))).await?;
        let mut objects = BTreeMap::new();
        for kv in &resp.kvs {
            objects.insert(
                String::from_utf8_lossy(&kv.key).into_owned(),
                entry(self.strategy.as_ref(), kv, &decode(kv)?),
            );
        }
        let rev = resp.header.revision;
        self.state.lock().reset(objects, rev);
        self.revision.send_replace(rev);
        Ok(rev)
    }

    async fn open_watch(&self, from: Revision) -> store::Result<store::WatchStream> {
        self.store
            .watch(WatchRequest {
                range: KeyRange::prefix(prefix(&self.t, None)),
                start_revision: from,
                prev_kv: true,
                progress_notify: true,
            })
            .await
    }

    fn apply(&self, resp: store::WatchResponse) {
        // Decode and compute selector fields before taking the lock: readers and new
        // watchers wait on it, not on JSON.
        let changes: Vec<Decoded> = resp
            .events
            .iter()
            .filter_map(|ev| {
                let key = String::from_utf8_lossy(&ev.kv.key).into_owned();
                let new = match ev.kind {
                    EventType::Delete => None,
                    EventType::Put => match decode(&ev.kv) {
                        Ok(o) => Some((entry(self.strategy.as_ref(), &ev.kv, &o), Arc::new(o))),
                        Err(e) => {
                            tracing::error!(kind = self.t.kind, key = %key, error = %e, "undecodable object in the store");
                            return None;
                        }
                    },
                };
                Some((ev.kv.mod_revision, key, new))
            })
            .collect();
        let mut state = self.state.lock();
        if resp.events.is_empty() {
            state.progress(resp.header.revision);
        }
        for (revision, key, new) in changes {
            let old = state.objects.get(&key).cloned();
            let (new, decoded) = new.map_or((None, None), |(e, o)| (Some(e), Some(o)));
            state.apply(Change { revision, key, old, new }, decoded);
        }
        let rev = state.revision;
        drop(state);
        self.revision.send_if_modified(|r| {
            let changed = *r != rev;
            *r = rev;
            changed
        });
    }

    /// Follows the store until cancelled, re-watching and relisting as needed.
    async fn run(self: Arc<Self>, mut stream: store::WatchStream, cancel: CancellationToken) {
        let mut delay = RETRY_START;
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                n = stream.next() => n,
            };
            let failure = match next {
                Some(Ok(resp)) => {
                    self.apply(resp);
                    delay = RETRY_START;
                    continue;
                }
                Some(Err(e)) => e.to_string(),
                None => "the store watch ended".to_string(),
            };
            tracing::warn!(kind = self.t.kind, error = %failure, "watch cache lost its store watch; resuming");
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
                let from = self.state.lock().revision + 1;
                let reopened = match self.open_watch(from).await {
                    Err(store::Error::Compacted { .. }) => match self.relist().await {
                        Ok(rev) => self.open_watch(rev + 1).await,
                        Err(e) => {
                            tracing::warn!(kind = self.t.kind, error = %e, "watch cache relist failed");
                            continue;
                        }
                    },
                    other => other,
                };
                match reopened {
                    Ok(s) => {
                        stream = s;
                        break;
                    }
                    Err(e) => tracing::warn!(kind = self.t.kind, error = %e, "watch cache cannot watch yet"),
                }
            }
        }
    }
}

impl WatchCache {
    /// Lists `t` from `store` and starts following it.
    pub async fn start(
        store: Arc<dyn Store>,
        strategy: Arc<dyn KindStrategy>,
        config: WatchCacheConfig,
    ) -> Result<Self> {
        let t = strategy.resource_type();
        let (revision, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            t,
            strategy,
            store,
            config,
            state: Mutex::new(State::new(config.capacity)),
            revision,
        });
        let rev = shared.relist().await?;
        let stream = shared.open_watch(rev + 1).await?;
        let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
        tasks.spawn(shared.clone().run(stream, cancel.clone()));
        Ok(WatchCache { shared, cancel, tasks })
    }

    /// The revision up to which the cache has applied every change.
    pub fn revision(&self) -> Revision {
        self.shared.state.lock().revision
    }

    /// How many objects, window changes and watchers the cache holds.
    pub fn stats(&self) -> (usize, usize, usize) {
        let s = self.shared.state.lock();
        (s.objects.len(), s.window_len(), s.watcher_count())
    }

    /// Waits until the cache has reached `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.shared.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }

    /// The cached object at `key`.
    pub(crate) fn get(&self, key: &str) -> Option<DynamicObject> {
        self.shared.state.lock().objects.get(key).map(Entry::object)
    }

    /// Every cached object in `namespace` (or all) that `filter` selects, in key order, and
    /// the revision they are current at.
    pub(crate) fn list(&self, namespace: Option<&str>, filter: &Filter) -> (Vec<DynamicObject>, Revision) {
        let pfx = prefix(&self.shared.t, namespace);
        let state = self.shared.state.lock();
        let items = state
            .objects
            .range(pfx.clone()..)
            .take_while(|(k, _)| k.starts_with(&pfx))
            .filter(|(_, e)| e.selected(None, filter))
            .map(|(_, e)| e.object())
            .collect();
        (items, state.revision)
    }

    /// A watch from `from` (`None`: an Added event per current object, then changes).
    pub(crate) fn watch(
        &self,
        namespace: Option<&str>,
        filter: Arc<Filter>,
        bookmarks: bool,
        from: Option<Revision>,
    ) -> Result<WatchStream> {
        let mut state = self.shared.state.lock();
        let mut w = Watcher {
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_owned),
            filter,
            bookmarks,
            after: 0,
            tx: mpsc::channel(1).0,
        };
        let first: Vec<WatchEvent> = match from {
            None => {
                w.after = state.revision;
                let pfx = prefix(&self.shared.t, namespace);
                state
                    .objects
                    .range(pfx.clone()..)
                    .take_while(|(k, _)| k.starts_with(&pfx))
                    .filter(|(_, e)| e.selected(None, &w.filter))
                    .map(|(_, e)| WatchEvent::Added(Arc::new(e.object())))
                    .collect()
            }
            Some(rev) => {
                let replay = state.replay(&w, rev)?;
                w.after = state.revision.max(rev);
                replay
            }
        };
        let (tx, rx) = mpsc::channel(first.len() + self.shared.config.watcher_buffer.max(1));
        for ev in first {
            // Cannot fail: the channel has room for the whole replay.
            let _ = tx.try_send(ev);
        }
        w.tx = tx;
        state.add_watcher(w);
        Ok(WatchStream::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Stops following the store; open watches end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.shared.state.lock().reset(BTreeMap::new(), 0);
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Watch caches keyed by (group, resource).
type CacheMap = BTreeMap<(&'static str, &'static str), Arc<WatchCache>>;

/// The watch caches of a registry, by group and resource.
#[derive(Clone, Default)]
pub(crate) struct Caches {
    by_resource: Arc<parking_lot::RwLock<CacheMap>>,
}

impl Caches {
    pub(crate) fn get(&self, t: &ResourceType) -> Option<Arc<WatchCache>> {
        self.by_resource.read().get(&(t.group, t.plural)).cloned()
    }

    pub(crate) fn insert(&self, t: &ResourceType, c: WatchCache) -> Result<()> {
        let mut map = self.by_resource.write();
        if map.contains_key(&(t.group, t.plural)) {
            return Err(Error::BadRequest(format!("{} already has a watch cache", t.plural)));
        }
        map.insert((t.group, t.plural), Arc::new(c));
        Ok(())
    }

    pub(crate) fn drain(&self) -> Vec<Arc<WatchCache>> {
        std::mem::take(&mut *self.by_resource.write()).into_values().collect()
    }
}
