//! A reflector: an in-memory copy of a watched kind, kept current from a [`watcher`], with
//! indexes (by namespace, by label, by node name, or any function of the object).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use parking_lot::RwLock;

use super::watcher::WatcherEvent;
use crate::object::Resource;

/// An index: the values an object is filed under.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// `namespace/name` (or `name` for cluster-scoped objects).
pub fn object_key<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    match m.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

struct Inner<K> {
    objects: HashMap<String, Arc<K>>,
    /// index name -> value -> object keys.
    indexes: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Objects applied since the last `Init` (to drop the rest at `InitDone`).
    relisting: Option<BTreeSet<String>>,
    ready: bool,
    /// The functions computing each index.
    index_fns: BTreeMap<String, IndexFn<K>>,
}

/// The cache a reflector fills; cheap to clone and read from any task.
pub struct Cache<K> {
    inner: Arc<RwLock<Inner<K>>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone() }
    }
}

impl<K: Resource> Default for Cache<K> {
    fn default() -> Self {
        Self::with_indexes(BTreeMap::new())
    }
}

impl<K: Resource> Cache<K> {
    /// A cache maintaining the given named indexes.
    pub fn with_indexes(index_fns: BTreeMap<String, IndexFn<K>>) -> Self {
        let indexes = index_fns.keys().map(|k| (k.clone(), BTreeMap::new())).collect();
        Cache {
            inner: Arc::new(RwLock::new(Inner {
                objects: HashMap::new(),
                indexes,
                relisting: None,
                ready: false,
                index_fns,
            })),
        }
    }

    /// Adds (or replaces) index `name`, indexing the objects already cached. Caches shared
    /// between controllers gain indexes as controllers are composed.
    pub fn add_index(&self, name: &str, f: IndexFn<K>) {
        let mut inner = self.inner.write();
        let mut idx: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, obj) in &inner.objects {
            for v in f(obj) {
                idx.entry(v).or_default().insert(key.clone());
            }
        }
        inner.indexes.insert(name.to_string(), idx);
        inner.index_fns.insert(name.to_string(), f);
    }

    /// Whether index `name` exists.
    pub fn has_index(&self, name: &str) -> bool {
        self.inner.read().index_fns.contains_key(name)
    }

    /// The namespace index (`"namespace"`).
    pub fn by_namespace() -> (String, IndexFn<K>) {
        ("namespace".into(), Arc::new(|k: &K| k.meta().namespace.clone().into_iter().collect()))
    }

    /// An index on the value of label `label` (named `label:<label>`).
    pub fn by_label(label: &str) -> (String, IndexFn<K>) {
        let l = label.to_string();
        (
            format!("label:{label}"),
            Arc::new(move |k: &K| {
                k.meta().labels.as_ref().and_then(|m| m.get(&l)).cloned().into_iter().collect()
            }),
        )
    }

    /// Whether the first full list has been applied.
    pub fn is_ready(&self) -> bool {
        self.inner.read().ready
    }

    /// The object with key `namespace/name` (or `name`).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner.read().objects.get(key).cloned()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.read().objects.values().cloned().collect()
    }

    /// Objects filed under `value` in index `index`.
    pub fn indexed(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read();
        let keys = inner.indexes.get(index).and_then(|i| i.get(value));
        keys.into_iter().flatten().filter_map(|k| inner.objects.get(k).cloned()).collect()
    }

    fn unindex(&self, inner: &mut Inner<K>, key: &str) {
        let Inner { objects, indexes, index_fns, .. } = inner;
        if let Some(old) = objects.remove(key) {
            for (name, f) in index_fns.iter() {
                let idx = indexes.entry(name.clone()).or_default();
                for v in f(&old) {
                    if let Some(set) = idx.get_mut(&v) {
                        set.remove(key);
                        if set.is_empty() {
                            idx.remove(&v);
                        }
                    }
                }
            }
        }
    }

    fn insert(&self, inner: &mut Inner<K>, obj: K) {
        let key = object_key(&obj);
        self.unindex(inner, &key);
        let Inner { indexes, index_fns, .. } = inner;
        for (name, f) in index_fns.iter() {
            let idx = indexes.entry(name.clone()).or_default();
            for v in f(&obj) {
                idx.entry(v).or_default().insert(key.clone());
            }
        }
        if let Some(r) = &mut inner.relisting {
            r.insert(key.clone());
        }
        inner.objects.insert(key, Arc::new(obj));
    }

    /// Applies one watcher event.
    pub fn apply(&self, event: &WatcherEvent<K>) {
        let mut inner = self.inner.write();
        match event {
            WatcherEvent::Init => inner.relisting = Some(BTreeSet::new()),
            WatcherEvent::InitApply(k) | WatcherEvent::Apply(k) => self.insert(&mut inner, k.clone()),
            WatcherEvent::InitDone => {
                let kept = inner.relisting.take().unwrap_or_default();
                let stale: Vec<String> =
                    inner.objects.keys().filter(|k| !kept.contains(*k)).cloned().collect();
                for k in stale {
                    self.unindex(&mut inner, &k);
                }
                inner.ready = true;
            }
            WatcherEvent::Delete(k) => {
                let key = object_key(k);
                self.unindex(&mut inner, &key);
            }
            WatcherEvent::Retrying(_) => {}
        }
    }
}

impl Cache<k8s_openapi::api::core::v1::Pod> {
    /// The pods-by-node index (`"nodeName"`): what a scheduler or node agent looks pods up by.
    pub fn by_node_name() -> (String, IndexFn<k8s_openapi::api::core::v1::Pod>) {
        (
            "nodeName".into(),
            Arc::new(|p: &k8s_openapi::api::core::v1::Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty())
                    .into_iter()
                    .collect()
            }),
        )
    }
}

/// Applies every event of `events` to `cache` and passes it on.
pub fn reflector<K: Resource>(
    cache: Cache<K>,
    events: impl Stream<Item = WatcherEvent<K>> + Send,
) -> impl Stream<Item = WatcherEvent<K>> + Send {
    events.map(move |ev| {
        cache.apply(&ev);
        ev
    })
}
