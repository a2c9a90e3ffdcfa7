//! From a history to what the checker reasons with: who appended each element, each key's
//! version order, the anomalies visible without a graph, and the dependency graph's edges.
//!
//! Version order: elements are unique, and every committed state of a key is a prefix of the
//! next, so every `ok` read of a key must be a prefix of the longest one; the longest read is
//! taken as the key's version order (known up to its last element). An append committed `ok`
//! whose element no read saw comes after all of it, in an unknown order among such appends.
//!
//! Edges (between transactions in the graph: `ok` ones, and `info` ones whose appends some
//! read saw, since those certainly committed; failed ones never are):
//! - ww: `T1` appended the element right before `T2`'s in the version order (and the writer
//!   of the last observed element precedes every `ok` append never observed);
//! - wr: `T2`'s external read (a read before the transaction's own appends to the key) ends
//!   with `T1`'s element;
//! - rw: `T1`'s external read ends at element `i` (or is empty) and `T2` appended the element
//!   after it (or, when the read is the whole known order, an `ok` append never observed);
//! - realtime: `T1` completed `ok` before `T2` was invoked. Only the edges not implied by
//!   others are added (see [`Inference::realtime`]), so there are O(n · concurrency) of them.

use std::collections::{HashMap, HashSet};

use super::graph::{RT, RW, WR, WW};
use super::report::{AnomalyKind, AppendAnomaly, ReportedTxn, Sink, show_list};
use super::{AppendHistory, AppendTxn, MicroOp, Outcome};

/// Who appended an element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appender {
    /// The transaction.
    pub(crate) txn: u32,
    /// Whether it was that transaction's last append to the key.
    pub(crate) last: bool,
}

/// One key's inferred order.
#[derive(Debug, Default)]
pub(crate) struct KeyOrder {
    /// The longest read without duplicates.
    pub(crate) order: Vec<u64>,
    /// Each element's position in `order`.
    pub(crate) pos: HashMap<u64, usize>,
    /// `ok` transactions with an append to the key that is not in `order`.
    pub(crate) unobserved: Vec<u32>,
}

/// The facts inferred from a history.
#[derive(Debug)]
pub(crate) struct Inference<'a> {
    pub(crate) txns: &'a [AppendTxn],
    key_ids: HashMap<&'a str, u32>,
    pub(crate) keys: Vec<KeyOrder>,
    appenders: HashMap<(u32, u64), Appender>,
    observed: HashSet<(u32, u64)>,
    /// Whether each transaction is in the dependency graph.
    pub(crate) in_graph: Vec<bool>,
}

/// Whether `read` is a prefix of `order`.
pub(crate) fn is_prefix(read: &[u64], order: &[u64]) -> bool {
    order.starts_with(read)
}

/// A transaction's external reads: per key, its first read if it comes before the
/// transaction's own appends to the key, as (key, value), when filled in.
pub(crate) fn external_reads(txn: &AppendTxn) -> Vec<(&str, &[u64])> {
    let mut touched: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for op in &txn.ops {
        let key = op.key();
        if touched.contains(&key) {
            continue;
        }
        touched.push(key);
        if let MicroOp::Read { value: Some(v), .. } = op {
            out.push((key, v.as_slice()));
        }
    }
    out
}

impl<'a> Inference<'a> {
    /// Infers what `history` shows, reporting the anomalies visible without a graph to `sink`.
    pub(crate) fn new(history: &'a AppendHistory, sink: &mut Sink) -> Self {
        let txns = history.txns.as_slice();
        let mut inf = Inference {
            txns,
            key_ids: HashMap::new(),
            keys: Vec::new(),
            appenders: HashMap::new(),
            observed: HashSet::new(),
            in_graph: vec![false; txns.len()],
        };
        inf.index_appends(sink);
        inf.infer_orders(sink);
        inf.check_intermediate_reads(sink);
        inf.check_internal(sink);
        inf.place();
        inf
    }

    fn key_id(&mut self, key: &'a str) -> u32 {
        let next = self.keys.len() as u32;
        let id = *self.key_ids.entry(key).or_insert(next);
        if id == next {
            self.keys.push(KeyOrder::default());
        }
        id
    }

    /// The order inferred for `key`.
    pub(crate) fn key(&self, key: &str) -> Option<&KeyOrder> {
        self.key_ids.get(key).and_then(|&k| self.keys.get(k as usize))
    }

    /// Who appended `element` to `key`.
    pub(crate) fn appender(&self, key: &str, element: u64) -> Option<Appender> {
        let k = *self.key_ids.get(key)?;
        self.appenders.get(&(k, element)).copied()
    }

    /// The appender of `element` to key `k`, if it is in the graph.
    fn graph_appender(&self, k: u32, element: u64) -> Option<u32> {
        let a = self.appenders.get(&(k, element))?;
        self.in_graph.get(a.txn as usize).copied().unwrap_or(false).then_some(a.txn)
    }

    fn anomaly(&self, kind: AnomalyKind, key: &str, txns: &[u32], explanation: String) -> AppendAnomaly {
        AppendAnomaly {
            kind,
            key: Some(key.to_string()),
            explanation,
            txns: txns.iter().map(|&t| ReportedTxn::of(self.txns, t as usize)).collect(),
            steps: Vec::new(),
        }
    }

    /// Records every append's transaction; reports duplicate appends and undecodable values.
    fn index_appends(&mut self, sink: &mut Sink) {
        let txns = self.txns;
        for (t, txn) in txns.iter().enumerate() {
            let t = t as u32;
            let mut last_of: Vec<(u32, u64)> = Vec::new();
            for op in &txn.ops {
                let k = self.key_id(op.key());
                let MicroOp::Append { key, element } = op else { continue };
                if let Some(first) = self.appenders.get(&(k, *element)).copied() {
                    sink.add(AnomalyKind::DuplicateAppend, || {
                        let why = format!(
                            "T{} and T{t} both appended {element} to {key}; elements must be unique, \
                             so the checker attributes it to T{} only",
                            first.txn, first.txn
                        );
                        self.anomaly(AnomalyKind::DuplicateAppend, key, &[first.txn, t], why)
                    });
                    continue;
                }
                self.appenders.insert((k, *element), Appender { txn: t, last: false });
                match last_of.iter_mut().find(|(key, _)| *key == k) {
                    Some(entry) => entry.1 = *element,
                    None => last_of.push((k, *element)),
                }
            }
            for (k, e) in last_of {
                if let Some(a) = self.appenders.get_mut(&(k, e)) {
                    a.last = true;
                }
            }
            for u in &txn.undecodable {
                self.key_id(&u.key);
                sink.add(AnomalyKind::Garbage, || {
                    let why = format!(
                        "T{t} read {} = {:?}, which is not a comma-separated list of elements",
                        u.key, u.value
                    );
                    self.anomaly(AnomalyKind::Garbage, &u.key, &[t], why)
                });
            }
        }
    }

    /// Checks every `ok` read's elements (garbage, aborted, duplicates), takes each key's
    /// longest read as its order and reports reads that are not prefixes of it.
    fn infer_orders(&mut self, sink: &mut Sink) {
        let txns = self.txns;
        let mut usable: Vec<Vec<(u32, &'a [u64])>> = Vec::new();
        for (t, txn) in txns.iter().enumerate().filter(|(_, txn)| txn.outcome == Outcome::Ok) {
            let t = t as u32;
            for op in &txn.ops {
                let MicroOp::Read { key, value: Some(v) } = op else { continue };
                let k = self.key_id(key);
                let mut seen = HashSet::with_capacity(v.len());
                let duplicate = v.iter().find(|&&e| !seen.insert(e)).copied();
                let mut garbage = Vec::new();
                let mut aborted: Vec<(u32, u64)> = Vec::new();
                for &e in v {
                    self.observed.insert((k, e));
                    match self.appenders.get(&(k, e)) {
                        None => garbage.push(e),
                        Some(a) if txns.get(a.txn as usize).is_some_and(|w| w.outcome == Outcome::Fail) => {
                            if !aborted.iter().any(|(w, _)| *w == a.txn) {
                                aborted.push((a.txn, e));
                            }
                        }
                        Some(_) => {}
                    }
                }
                if let Some(e) = duplicate {
                    sink.add(AnomalyKind::DuplicateElements, || {
                        let n = v.iter().filter(|&&x| x == e).count();
                        let why = format!("T{t} read {key} = {}, which holds {e} {n} times", show_list(v));
                        self.anomaly(AnomalyKind::DuplicateElements, key, &[t], why)
                    });
                }
                if !garbage.is_empty() {
                    sink.add(AnomalyKind::Garbage, || {
                        let why = format!(
                            "T{t} read {key} = {}, which holds {:?}, appended by no transaction",
                            show_list(v),
                            garbage
                        );
                        self.anomaly(AnomalyKind::Garbage, key, &[t], why)
                    });
                }
                for (w, e) in aborted {
                    sink.add(AnomalyKind::G1a, || {
                        let why = format!(
                            "aborted read: T{t} read {key} = {}, which holds {e}, appended by T{w}, \
                             which failed",
                            show_list(v)
                        );
                        self.anomaly(AnomalyKind::G1a, key, &[t, w], why)
                    });
                }
                if duplicate.is_none() {
                    if usable.len() <= k as usize {
                        usable.resize_with(k as usize + 1, Vec::new);
                    }
                    usable[k as usize].push((t, v.as_slice()));
                }
            }
        }
        let names: HashMap<u32, &'a str> = self.key_ids.iter().map(|(&name, &k)| (k, name)).collect();
        for (k, reads) in usable.iter().enumerate() {
            let Some(&(longest_txn, longest)) = reads.iter().rev().max_by_key(|(_, v)| v.len()) else {
                continue;
            };
            let key = names.get(&(k as u32)).copied().unwrap_or_default();
            for &(t, v) in reads {
                if is_prefix(v, longest) {
                    continue;
                }
                sink.add(AnomalyKind::IncompatibleOrder, || {
                    let at = v.iter().zip(longest).position(|(a, b)| a != b).unwrap_or(v.len());
                    let why = format!(
                        "T{longest_txn} read {key} = {} and T{t} read {key} = {}: they differ at \
                         position {at}, so no single order of appends explains both",
                        show_list(longest),
                        show_list(v)
                    );
                    self.anomaly(AnomalyKind::IncompatibleOrder, key, &[longest_txn, t], why)
                });
            }
            if let Some(order) = self.keys.get_mut(k) {
                order.order = longest.to_vec();
                order.pos = longest.iter().enumerate().map(|(i, &e)| (e, i)).collect();
            }
        }
    }

    /// Reports reads ending at an element its transaction followed with another append to the
    /// same key (G1b).
    fn check_intermediate_reads(&self, sink: &mut Sink) {
        for (t, txn) in self.txns.iter().enumerate().filter(|(_, txn)| txn.outcome == Outcome::Ok) {
            let t = t as u32;
            for op in &txn.ops {
                let MicroOp::Read { key, value: Some(v) } = op else { continue };
                let Some(&e) = v.last() else { continue };
                let Some(a) = self.appender(key, e) else { continue };
                let writer = self.txns.get(a.txn as usize);
                if a.last || a.txn == t || writer.is_none_or(|w| w.outcome == Outcome::Fail) {
                    continue;
                }
                sink.add(AnomalyKind::G1b, || {
                    let appended: Vec<u64> = writer
                        .into_iter()
                        .flat_map(|w| &w.ops)
                        .filter_map(|op| match op {
                            MicroOp::Append { key: k, element } if k == key => Some(*element),
                            _ => None,
                        })
                        .collect();
                    let why = format!(
                        "intermediate read: T{t} read {key} = {}, ending with {e}, but T{} appended \
                         {} to {key} in one transaction, so no committed state ends at {e}",
                        show_list(v),
                        a.txn,
                        show_list(&appended)
                    );
                    self.anomaly(AnomalyKind::G1b, key, &[t, a.txn], why)
                });
            }
        }
    }

    /// Reports reads that disagree with the transaction's own earlier reads and appends.
    fn check_internal(&self, sink: &mut Sink) {
        enum Local {
            /// The whole list, from an earlier read.
            Known(Vec<u64>),
            /// Only the transaction's own appends: the list must end with them.
            Suffix(Vec<u64>),
        }
        for (t, txn) in self.txns.iter().enumerate().filter(|(_, txn)| txn.outcome == Outcome::Ok) {
            let mut state: HashMap<&str, Local> = HashMap::new();
            for op in &txn.ops {
                match op {
                    MicroOp::Read { key, value: Some(v) } => {
                        let expected = match state.get(key.as_str()) {
                            Some(Local::Known(s)) if s != v => Some(format!("exactly {}", show_list(s))),
                            Some(Local::Suffix(a)) if !v.ends_with(a) => {
                                Some(format!("a list ending with its own appends {}", show_list(a)))
                            }
                            _ => None,
                        };
                        if let Some(expected) = expected {
                            sink.add(AnomalyKind::Internal, || {
                                let why = format!(
                                    "T{t} read {key} = {}, but its own earlier reads and appends of \
                                     {key} say it should read {expected}",
                                    show_list(v)
                                );
                                self.anomaly(AnomalyKind::Internal, key, &[t as u32], why)
                            });
                        }
                        state.insert(key, Local::Known(v.clone()));
                    }
                    MicroOp::Read { value: None, .. } => {}
                    MicroOp::Append { key, element } => match state.get_mut(key.as_str()) {
                        Some(Local::Known(s) | Local::Suffix(s)) => s.push(*element),
                        None => {
                            state.insert(key, Local::Suffix(vec![*element]));
                        }
                    },
                }
            }
        }
    }

    /// Decides which transactions are in the graph and which `ok` appends no read saw.
    fn place(&mut self) {
        for (t, txn) in self.txns.iter().enumerate() {
            let appended = || {
                txn.ops.iter().filter_map(|op| match op {
                    MicroOp::Append { key, element } => {
                        self.key_ids.get(key.as_str()).map(|&k| (k, *element))
                    }
                    MicroOp::Read { .. } => None,
                })
            };
            self.in_graph[t] = match txn.outcome {
                Outcome::Ok => true,
                Outcome::Info => appended().any(|ke| self.observed.contains(&ke)),
                Outcome::Fail => false,
            };
            if txn.outcome != Outcome::Ok {
                continue;
            }
            let missing: Vec<u32> = appended()
                .filter(|(k, e)| self.keys.get(*k as usize).is_some_and(|o| !o.pos.contains_key(e)))
                .map(|(k, _)| k)
                .collect();
            for k in missing {
                if let Some(o) = self.keys.get_mut(k as usize)
                    && o.unobserved.last() != Some(&(t as u32))
                {
                    o.unobserved.push(t as u32);
                }
            }
        }
    }

    /// The dependency graph's edges as (from, to, kind bit).
    pub(crate) fn edges(&self) -> Vec<(u32, u32, u8)> {
        let mut edges = Vec::new();
        for (k, o) in self.keys.iter().enumerate() {
            let k = k as u32;
            for pair in o.order.windows(2) {
                if let (Some(a), Some(b)) = (self.graph_appender(k, pair[0]), self.graph_appender(k, pair[1]))
                {
                    edges.push((a, b, WW));
                }
            }
            if let Some(a) = o.order.last().and_then(|&e| self.graph_appender(k, e)) {
                edges.extend(o.unobserved.iter().map(|&u| (a, u, WW)));
            }
        }
        for (t, txn) in self.txns.iter().enumerate() {
            if !self.in_graph[t] {
                continue;
            }
            let t = t as u32;
            for (key, v) in external_reads(txn) {
                let Some(&k) = self.key_ids.get(key) else { continue };
                let Some(o) = self.keys.get(k as usize) else { continue };
                if let Some(a) = v.last().and_then(|&e| self.graph_appender(k, e)) {
                    edges.push((a, t, WR));
                }
                if !is_prefix(v, &o.order) {
                    continue;
                }
                match o.order.get(v.len()) {
                    Some(&next) => edges.extend(self.graph_appender(k, next).map(|b| (t, b, RW))),
                    None => edges.extend(o.unobserved.iter().map(|&u| (t, u, RW))),
                }
            }
        }
        self.realtime(&mut edges);
        edges
    }

    /// Real-time edges, reduced: walking invocations and completions in time order (an
    /// invocation before a completion at the same instant, since the order is strict), the
    /// frontier is the set of `ok` transactions completed so far that no other completed one
    /// follows in real time. Each invoked graph transaction gets an edge from every frontier
    /// member; when an `ok` transaction completes it joins the frontier and evicts the members
    /// it had edges from. Every real-time pair is then joined by a path (a member leaves the
    /// frontier only for a successor that was itself completed), and the frontier's members
    /// all overlap one another in time, so it never holds more transactions than ran at once.
    fn realtime(&self, edges: &mut Vec<(u32, u32, u8)>) {
        let mut events: Vec<(u64, bool, u32)> = Vec::new();
        for (t, txn) in self.txns.iter().enumerate() {
            if !self.in_graph[t] {
                continue;
            }
            events.push((txn.invoke_ns, false, t as u32));
            if let (Outcome::Ok, Some(done)) = (txn.outcome, txn.complete_ns) {
                events.push((done, true, t as u32));
            }
        }
        events.sort_unstable();
        let mut frontier: Vec<u32> = Vec::new();
        let mut preds: HashMap<u32, Vec<u32>> = HashMap::new();
        for (_, completion, t) in events {
            if completion {
                let before = preds.remove(&t).unwrap_or_default();
                frontier.retain(|f| !before.contains(f));
                frontier.push(t);
            } else {
                edges.extend(frontier.iter().map(|&f| (f, t, RT)));
                if self.txns.get(t as usize).is_some_and(|x| x.outcome == Outcome::Ok) {
                    preds.insert(t, frontier.clone());
                }
            }
        }
    }
}

/// Edge-kind bits of every kind.
pub(crate) const ALL: u8 = WW | WR | RW | RT;
