//! A brute-force linearizability checker for small one-key histories, written independently of
//! the checker (it parses the events itself and tries every order), for the property tests.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::history::{Call, EventKind, History};

/// One operation as the brute-force checker sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct BfOp {
    /// The index of its invocation event.
    pub(super) invoke: usize,
    /// The completion index of an `ok` operation, which must be placed; `None`: optional.
    pub(super) done: Option<usize>,
    pub(super) call: Call,
    pub(super) read: Option<u64>,
}

/// The operations of a (well-formed, one-key) history invoked before event `end`, as of event
/// `end` inclusive: failed operations are left out, an operation completing later is optional,
/// and so is one completing `info`; reads that are optional are left out.
pub(super) fn ops_upto(h: &History, end: usize) -> Vec<BfOp> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut ops = Vec::new();
    for (i, e) in h.events.iter().enumerate() {
        if e.kind == EventKind::Invoke {
            open.insert(e.process, i);
            continue;
        }
        let Some(invoke) = open.remove(&e.process).filter(|&inv| inv < end) else { continue };
        let op = match e.kind {
            EventKind::Ok if i <= end => BfOp { invoke, done: Some(i), call: e.call, read: e.read },
            EventKind::Fail => continue,
            _ if e.call == Call::Read => continue,
            _ => BfOp { invoke, done: None, call: e.call, read: None },
        };
        ops.push(op);
    }
    for (_, invoke) in open {
        let call = h.events[invoke].call;
        if call != Call::Read && invoke < end {
            ops.push(BfOp { invoke, done: None, call, read: None });
        }
    }
    ops.sort_by_key(|op| op.invoke);
    ops
}

/// All the operations of a history.
pub(super) fn all_ops(h: &History) -> Vec<BfOp> {
    ops_upto(h, h.events.len())
}

/// The register after `op` on `state`, if `op` can take effect there.
fn step(op: &BfOp, state: Option<u64>) -> Option<Option<u64>> {
    match op.call {
        Call::Read => (op.read == state).then_some(state),
        Call::Write { value } => Some(Some(value)),
        Call::Cas { from, to } => (state == Some(from)).then_some(Some(to)),
    }
}

/// Every configuration reachable by placing operations one at a time in an order that
/// respects real time (an operation can only be placed once every `ok` operation that
/// completed before its invocation is) and the register's semantics: calls `visit(placed,
/// state)` on each and stops when it returns true. Returns whether it stopped.
fn configurations(ops: &[BfOp], mut visit: impl FnMut(u64, Option<u64>) -> bool) -> bool {
    assert!(ops.len() <= 64, "too many operations for the brute-force checker");
    let mut seen: HashSet<(u64, Option<u64>)> = HashSet::new();
    let mut todo = vec![(0u64, None)];
    seen.insert((0, None));
    while let Some((placed, state)) = todo.pop() {
        if visit(placed, state) {
            return true;
        }
        for (i, op) in ops.iter().enumerate() {
            if placed >> i & 1 == 1 {
                continue;
            }
            let blocked = ops
                .iter()
                .enumerate()
                .any(|(j, o)| placed >> j & 1 == 0 && j != i && o.done.is_some_and(|d| d < op.invoke));
            if blocked {
                continue;
            }
            if let Some(after) = step(op, state)
                && seen.insert((placed | 1 << i, after))
            {
                todo.push((placed | 1 << i, after));
            }
        }
    }
    false
}

/// The mask of the operations for which `f` holds.
fn mask(ops: &[BfOp], f: impl Fn(&BfOp) -> bool) -> u64 {
    ops.iter().enumerate().filter(|(_, op)| f(op)).fold(0, |m, (i, _)| m | 1 << i)
}

/// Whether some order places every `ok` operation.
pub(super) fn linearizable(ops: &[BfOp]) -> bool {
    let must = mask(ops, |op| op.done.is_some());
    configurations(ops, |placed, _| placed & must == must)
}

/// The register values of every reachable configuration that places the operations for which
/// `required` holds.
pub(super) fn states(ops: &[BfOp], required: impl Fn(&BfOp) -> bool) -> BTreeSet<Option<u64>> {
    let must = mask(ops, required);
    let mut out = BTreeSet::new();
    configurations(ops, |placed, state| {
        if placed & must == must {
            out.insert(state);
        }
        false
    });
    out
}

pub(super) fn brute_force(h: &History) -> bool {
    linearizable(&all_ops(h))
}
