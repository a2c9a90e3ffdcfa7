//! Cutting a non-linearizable key's history down to a sound anomaly.
//!
//! 1. Linearizability is prefix-closed, so a binary search over the key's `ok` completions finds
//!    the first one after which the history is no longer linearizable: the breaking operation B.
//!    The anomaly is about the prefix P: the operations invoked before B completed, with those
//!    that completed later treated as still running (they may or may not have taken effect yet;
//!    reads among them constrain nothing and are left out). P is not linearizable, P without B
//!    is. B is a read or a CAS: a write appended to a linearization of P without B would
//!    linearize P, as no operation of P is invoked after B completes.
//! 2. The register values possible when B could take effect: those of every configuration
//!    (operations placed in an order respecting real time and the register's semantics) of P
//!    without B that places every operation which completed before B was invoked, and any of the
//!    others. If B needs a value outside that set, that is the whole reason.
//! 3. A witness W ⊆ P: a set that is not linearizable and stays so whatever other operations of
//!    P are added back, so that it shows a reason for the anomaly rather than a new one created
//!    by removals (linearizability is not closed under removing writes: dropping the later
//!    writes of 3 can make a stale read of 3 look explained by an early one). Only two kinds of
//!    operation are left out; see [`witness`] for the proof.
//! 4. The operations reported: B, the operations running when it was invoked, the last few
//!    writes before it, and W when that is small; `complete` says whether W is among them.

use std::collections::BTreeSet;

use super::register::{Outcome, reachable_states, search};
use super::{Completion, ReportedOp};
use crate::history::Call;

/// At most this many operations are reported for an anomaly with a self-contained witness.
const MAX_SHOWN: usize = 20;
/// How many of the last writes completed before B was invoked are reported.
const LAST_WRITES: usize = 5;
/// How many earlier writes of the value B needs, with an unknown outcome, are reported.
const UNKNOWN_WRITERS: usize = 3;

/// What the explanation needs to know beyond the reported operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Context {
    /// Operations of P that completed `ok` before B was invoked.
    pub(super) before: usize,
    /// The other operations of P except B: running when B was invoked, invoked while it ran,
    /// or with an unknown outcome.
    pub(super) during: usize,
    /// The operations in P.
    pub(super) prefix: usize,
    /// The witness W, in invocation order.
    pub(super) witness: Vec<ReportedOp>,
    /// Whether the search for a smaller witness finished within the budget.
    pub(super) witness_finished: bool,
    /// Whether another operation of P writes the value B needs.
    pub(super) writer_of_observed: bool,
}

/// A shrunk anomaly.
#[derive(Clone, Debug)]
pub(super) struct Shrunk {
    /// The reported operations, in invocation order.
    pub(super) ops: Vec<ReportedOp>,
    /// The index in `ops` of the breaking operation, if it was found.
    pub(super) breaking: Option<usize>,
    /// Whether `ops` contain a self-contained witness (or are the key's whole history).
    pub(super) complete: bool,
    /// The register values possible when B could take effect, if they were computed.
    pub(super) states: Option<BTreeSet<Option<u64>>>,
    /// Set when B was found.
    pub(super) context: Option<Context>,
}

impl Shrunk {
    /// The key's whole history: not linearizable, but not cut down either.
    pub(super) fn whole(ops: &[ReportedOp]) -> Shrunk {
        Shrunk { ops: ops.to_vec(), breaking: None, complete: true, states: None, context: None }
    }
}

/// The searches' shared budget of configurations.
struct Budget {
    limit: u64,
    spent: u64,
}

impl Budget {
    fn remaining(&self) -> Option<u64> {
        self.limit.checked_sub(self.spent).filter(|&r| r > 0)
    }

    /// Whether `ops` are linearizable, or `None` if the budget ran out.
    fn linearizable(&mut self, ops: &[ReportedOp]) -> Option<bool> {
        let result = search(ops, self.remaining()?);
        self.spent = self.spent.saturating_add(result.configurations);
        match result.outcome {
            Outcome::Linearizable => Some(true),
            Outcome::NotLinearizable => Some(false),
            Outcome::Unknown => None,
        }
    }

    /// See [`reachable_states`].
    fn states(&mut self, ops: &[ReportedOp], required: &[bool]) -> Option<BTreeSet<Option<u64>>> {
        let (states, configurations) = reachable_states(ops, required, self.remaining()?);
        self.spent = self.spent.saturating_add(configurations);
        states
    }
}

/// The key's history up to event `end`: operations invoked before it, those that completed `ok`
/// after it running instead (and dropped if they are reads).
fn prefix(ops: &[ReportedOp], end: usize) -> Vec<ReportedOp> {
    let mut out = Vec::new();
    for op in ops.iter().filter(|op| op.invoke_index < end) {
        match (op.completion, op.complete_index) {
            (Completion::Ok, Some(c)) if c > end => {
                if op.written().is_some() {
                    out.push(ReportedOp { completion: Completion::Running, ..*op });
                }
            }
            _ => out.push(*op),
        }
    }
    out
}

/// Whether `op` completed `ok` before event `t`.
fn done_before(op: &ReportedOp, t: usize) -> bool {
    op.completion == Completion::Ok && op.complete_index.is_some_and(|c| c < t)
}

/// A blind write that completed `ok` (the only kind of operation that can supersede another).
fn blind_ok_write(op: &ReportedOp) -> bool {
    matches!(op.call, Call::Write { .. }) && op.completion == Completion::Ok && op.complete_index.is_some()
}

/// Cuts `ops`, known not to be linearizable, down to a sound anomaly, exploring at most
/// `budget` configurations in all.
pub(super) fn shrink(ops: &[ReportedOp], budget: u64) -> Shrunk {
    let mut s = Budget { limit: budget, spent: 0 };
    let mut ends: Vec<usize> =
        ops.iter().filter(|op| op.completion == Completion::Ok).filter_map(|op| op.complete_index).collect();
    ends.sort_unstable();
    // The smallest i whose prefix is not linearizable; the whole history (the last) is not.
    let (mut lo, mut hi) = (0, ends.len().saturating_sub(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match s.linearizable(&prefix(ops, ends[mid])) {
            Some(true) => lo = mid + 1,
            Some(false) => hi = mid,
            None => return Shrunk::whole(ops),
        }
    }
    let Some(&end) = ends.get(hi) else { return Shrunk::whole(ops) };
    let p = prefix(ops, end);
    let Some(b) = p.iter().find(|op| op.complete_index == Some(end)).copied() else {
        return Shrunk::whole(ops);
    };

    let rest: Vec<ReportedOp> = p.iter().filter(|op| **op != b).copied().collect();
    let required: Vec<bool> = rest.iter().map(|op| done_before(op, b.invoke_index)).collect();
    let before = required.iter().filter(|&&r| r).count();
    let states = s.states(&rest, &required);
    let (w, witness_finished) = witness(&mut s, &p, &b);

    let excerpt = excerpt(&p, &b);
    let union: Vec<ReportedOp> =
        p.iter().filter(|op| excerpt.contains(op) || w.contains(op)).copied().collect();
    let complete = union.len() == excerpt.len() || union.len() <= MAX_SHOWN;
    let shown = if complete { union } else { excerpt };
    let observed = b.observed().flatten();
    let context = Context {
        before,
        during: rest.len() - before,
        prefix: p.len(),
        witness: w,
        witness_finished,
        writer_of_observed: observed.is_some_and(|v| rest.iter().any(|op| op.written() == Some(v))),
    };
    Shrunk {
        breaking: shown.iter().position(|op| *op == b),
        ops: shown,
        complete,
        states,
        context: Some(context),
    }
}

/// The operations of `p` reported whether or not the witness is: B; the operations running
/// when it was invoked or invoked while it ran, including those with an unknown outcome still
/// outstanding then; the last few earlier writes of the value B needs whose outcome is unknown;
/// and the last [`LAST_WRITES`] writes (or CASes) that completed before it was invoked. In
/// invocation order.
fn excerpt(p: &[ReportedOp], b: &ReportedOp) -> Vec<ReportedOp> {
    let t = b.invoke_index;
    let unknown = |op: &ReportedOp| matches!(op.completion, Completion::Info | Completion::Incomplete);
    let running =
        |op: &ReportedOp| !done_before(op, t) && (!unknown(op) || op.complete_index.is_none_or(|c| c > t));
    let needed = b.observed().flatten();
    let mut unknown_writers: Vec<&ReportedOp> = p
        .iter()
        .filter(|op| unknown(op) && !running(op) && needed.is_some() && op.written() == needed)
        .collect();
    unknown_writers.reverse();
    unknown_writers.truncate(UNKNOWN_WRITERS);
    let mut last_writes: Vec<&ReportedOp> =
        p.iter().filter(|op| done_before(op, t) && op.written().is_some()).collect();
    last_writes.sort_by_key(|op| std::cmp::Reverse(op.complete_index));
    last_writes.truncate(LAST_WRITES);
    p.iter()
        .filter(|op| *op == b || running(op) || unknown_writers.contains(op) || last_writes.contains(op))
        .copied()
        .collect()
}

/// A witness W ⊆ `p` (containing B), in invocation order, and whether shrinking finished
/// within the budget.
///
/// W is not linearizable, and neither is W ∪ X for any X ⊆ P \ W. Two kinds of operation are
/// left out:
///
/// - reads other than B, one chunk at a time, each removal kept only if the rest is still not
///   linearizable (halving chunks down to single reads; a read kept once stays needed, because
///   removing reads never makes a linearizable history non-linearizable);
/// - then blind writes o that completed `ok` and are *superseded*: another blind write w kept in
///   W (and then never removed: "pinned") completed `ok`, was invoked after o completed, and
///   every read or CAS in W (any completion; B is one) other than o either completed `ok`
///   before o was invoked or was invoked after w completed.
///
/// Proof that W ∪ X is not linearizable for X ⊆ P \ W. Suppose L linearizes W ∪ X. Dropping
/// X's reads from L leaves a linearization (a read changes no state; a subsequence of an order
/// respecting real time still does). Then drop X's writes one by one: for a superseded o with
/// its w, o precedes w in L (real time), every read or CAS of the current order is in W (X
/// holds no CAS) and so, by the rule, precedes o (it completed before o was invoked) or
/// follows w (it was invoked after w completed). So only blind writes lie between o and w,
/// whose effect does not depend on the register, and from w on the register is the same
/// without o: dropping o leaves a linearization. What remains linearizes W: a contradiction.
///
/// Removing superseded writes keeps W non-linearizable, so it needs no search: if L linearizes
/// W \ {o}, insert o just before the first operation f of L invoked after o completed (f
/// exists: w is one). Everything that completed before o was invoked precedes f, and f is the
/// first operation that must follow o, so real time holds; a read or CAS after o and before w
/// would have been invoked after o completed, hence (rule) after w completed, hence after w in
/// L; so again only blind writes see o's value, and L with o linearizes W.
fn witness(s: &mut Budget, p: &[ReportedOp], b: &ReportedOp) -> (Vec<ReportedOp>, bool) {
    let mut keep = vec![true; p.len()];
    let reads: Vec<usize> = (0..p.len()).filter(|&i| p[i].call == Call::Read && p[i] != *b).collect();
    let finished = drop_reads(s, p, &mut keep, reads);
    drop_superseded(p, &mut keep);
    let w = p.iter().zip(&keep).filter(|&(_, &k)| k).map(|(op, _)| *op).collect();
    (w, finished)
}

/// Drops the `candidates` (reads) whose removal keeps the kept operations non-linearizable;
/// returns whether it finished within the budget.
fn drop_reads(s: &mut Budget, p: &[ReportedOp], keep: &mut [bool], mut candidates: Vec<usize>) -> bool {
    let mut chunk = candidates.len();
    while chunk > 0 {
        let mut i = 0;
        while i < candidates.len() {
            let to = (i + chunk).min(candidates.len());
            for &j in &candidates[i..to] {
                keep[j] = false;
            }
            let trial: Vec<ReportedOp> =
                p.iter().zip(keep.iter()).filter(|&(_, &k)| k).map(|(op, _)| *op).collect();
            let verdict = s.linearizable(&trial);
            if verdict == Some(false) {
                candidates.drain(i..to);
                continue;
            }
            for &j in &candidates[i..to] {
                keep[j] = true;
            }
            if verdict.is_none() {
                return false;
            }
            i = to;
        }
        chunk /= 2;
    }
    true
}

/// Drops superseded blind writes (see [`witness`]), latest completion first so that every
/// possible superseder has been decided (and is kept) when a write is considered.
fn drop_superseded(p: &[ReportedOp], keep: &mut [bool]) {
    let observers: Vec<usize> =
        (0..p.len()).filter(|&i| keep[i] && matches!(p[i].call, Call::Read | Call::Cas { .. })).collect();
    let mut pinned = vec![false; p.len()];
    let mut writes: Vec<usize> = (0..p.len()).filter(|&i| keep[i] && blind_ok_write(&p[i])).collect();
    writes.sort_by_key(|&i| std::cmp::Reverse(p[i].complete_index));
    for o in writes {
        let Some(done_o) = p[o].complete_index.filter(|_| !pinned[o]) else { continue };
        // The superseder completing first leaves the fewest operations to rule out.
        let superseder = (0..p.len())
            .filter(|&j| keep[j] && blind_ok_write(&p[j]) && p[j].invoke_index > done_o)
            .min_by_key(|&j| p[j].complete_index);
        let Some((w, done_w)) = superseder.and_then(|w| Some((w, p[w].complete_index?))) else { continue };
        let unobserved =
            observers.iter().all(|&x| done_before(&p[x], p[o].invoke_index) || p[x].invoke_index > done_w);
        if unobserved {
            keep[o] = false;
            pinned[w] = true;
        }
    }
}
