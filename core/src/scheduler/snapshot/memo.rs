//! What plugins derive from a snapshot and keep from one cycle to the next.
//!
//! The scheduler's cache changes its snapshot in place, a few pods per cycle, and rebuilds it
//! only when a node changes. A plugin that derives something from every pod of the cluster
//! (PodTopologySpread's matching pods per domain) keeps it in the snapshot's memos with the
//! [`Snapshot::version`](super::Snapshot::version) it was derived at, and on the next cycle
//! redoes only the nodes [`Snapshot::changed_since`](super::Snapshot::changed_since) names.
//! A rebuilt snapshot starts without memos, and so does a clone: a memo describes the one
//! snapshot it was made from.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// One memo per type, behind a lock (plugins read the snapshot through `&`).
#[derive(Default)]
pub(super) struct Memos(Mutex<HashMap<TypeId, Box<dyn Any + Send>>>);

impl Memos {
    /// Runs `f` on the memo of type `T`, made with `T::default()` on first use. A memo left
    /// by a panicking `f` is dropped and made again.
    pub(super) fn with<T: Default + Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let poisoned = self.0.is_poisoned();
        let mut memos = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if poisoned {
            memos.clear();
            self.0.clear_poison();
        }
        let slot = memos.entry(TypeId::of::<T>()).or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(memo) => f(memo),
            // Unreachable: the slot is keyed by `T`'s type id.
            None => f(&mut T::default()),
        }
    }
}

/// A clone starts without memos: they describe the snapshot they were made from.
impl Clone for Memos {
    fn clone(&self) -> Memos {
        Memos::default()
    }
}

impl fmt::Debug for Memos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Memos({n})")
    }
}

/// How many keys a [`NodeTotals`] keeps totals for, the most recently used.
const KEYS: usize = 8;

/// Totals over every node of a snapshot that a plugin keeps in it between cycles
/// ([`Snapshot::with_memo`](super::Snapshot::with_memo)), for a few keys (the kinds of
/// incoming pod whose totals differ), each with what every node adds to it (`N`).
///
/// [`NodeTotals::totals`] counts every node the first time a key is asked for; later it takes
/// the nodes whose pods changed since out of the totals (`T`) and counts them again, so a
/// cycle costs what changed since the last one rather than the whole cluster. What a node adds
/// must depend only on the node, its pods and the key: nodes' labels and taints do not change
/// within a snapshot (the cache rebuilds it).
pub struct NodeTotals<N, T> {
    entries: Vec<Entry<N, T>>,
}

/// The totals for one key.
struct Entry<N, T> {
    key: String,
    /// The snapshot's version the totals are at.
    version: u64,
    /// What each node (by index) adds.
    nodes: Vec<N>,
    totals: Arc<T>,
}

impl<N, T> Default for NodeTotals<N, T> {
    fn default() -> Self {
        NodeTotals { entries: Vec::new() }
    }
}

impl<N, T: Clone> NodeTotals<N, T> {
    /// The totals for `key` over every node of `snapshot`, brought up to date: `count` says
    /// what a node adds, `apply` adds it to the totals (`sign` 1) or takes it out (-1), and
    /// `empty` makes the totals of no node. The totals are shared with the memo: a caller
    /// that changes them (a preemption dry run) copies them first (`Arc::make_mut`).
    pub fn totals(
        &mut self,
        key: &str,
        snapshot: &super::Snapshot,
        mut count: impl FnMut(&super::NodeInfo) -> N,
        mut apply: impl FnMut(&mut T, &super::NodeInfo, &N, i64),
        empty: impl FnOnce() -> T,
    ) -> Arc<T> {
        let found = self.entries.iter().position(|e| e.key == key).map(|at| self.entries.remove(at));
        let entry = match found {
            Some(mut entry) if entry.nodes.len() == snapshot.len() => {
                if entry.version != snapshot.version() {
                    let totals = Arc::make_mut(&mut entry.totals);
                    for (i, node) in snapshot
                        .changed_since(entry.version)
                        .filter_map(|i| Some((i, snapshot.nodes().get(i)?)))
                    {
                        let part = count(node);
                        apply(totals, node, &entry.nodes[i], -1);
                        apply(totals, node, &part, 1);
                        entry.nodes[i] = part;
                    }
                    entry.version = snapshot.version();
                }
                entry
            }
            _ => {
                let mut totals = empty();
                let nodes = snapshot
                    .nodes()
                    .iter()
                    .map(|node| {
                        let part = count(node);
                        apply(&mut totals, node, &part, 1);
                        part
                    })
                    .collect();
                Entry { key: key.to_string(), version: snapshot.version(), nodes, totals: Arc::new(totals) }
            }
        };
        let totals = Arc::clone(&entry.totals);
        self.entries.insert(0, entry);
        self.entries.truncate(KEYS);
        totals
    }
}
