//! Linearizability checking for per-key registers with read, write and compare-and-set.
//!
//! [`check_registers`] splits a [`History`] by key and checks each key on its own with the
//! Wing & Gong / Lowe search ("WGL", Knossos' `linear`/`wgl` family): operations are placed one
//! at a time in an order that respects real time (an operation that completed before another
//! was invoked comes first) and register semantics, backtracking when stuck, and remembering
//! every configuration (set of placed operations, register value) already explored so that no
//! configuration is searched twice.
//!
//! Semantics:
//! - a key starts absent (`None`); a write sets `Some(value)`; a CAS completing `ok` needs the
//!   register to hold `Some(from)` and sets `Some(to)`; a read completing `ok` must return the
//!   current value;
//! - an operation completing `fail` did not take effect and is ignored (so is a CAS whose
//!   comparison failed, which the workload records as `fail`);
//! - an operation completing `info`, or never completing, may take effect at any point after its
//!   invocation, or never; such a read constrains nothing and is ignored;
//! - real time is the order of events in the history.
//!
//! The search is bounded by [`CheckLimits::max_states_per_key`] configurations per key; a key
//! that needs more is reported as [`KeyOutcome::Unknown`]. Configurations are remembered as
//! 128-bit fingerprints (16 bytes each, so the default limit keeps the cache of one key to a few
//! hundred MB at most) rather than as full bitsets; two different configurations sharing a
//! fingerprint (odds around n²/2¹²⁹ for n configurations) could only prune a search path, never
//! invent a linearization.
//!
//! When a key is not linearizable, the anomaly (see `shrink.rs`) centres on the breaking
//! operation: the one at whose completion the key's history stops being linearizable. It
//! states the register values possible when that operation could take effect, lists it with
//! the operations running at the time and the last writes before it, and says whether those
//! operations are a self-contained witness: not linearizable by themselves, and still not with
//! any other operation invoked before the breaking one completed added back (only reads and
//! writes nobody could observe are ever left out: linearizability is not closed under removing
//! writes, so a witness cut down further could show a reason that is not the real one).

mod explain;
mod reduce;
mod register;
mod shrink;

#[cfg(test)]
mod brute;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::history::{Call, EventKind, History};

/// Bounds on the work the checker does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckLimits {
    /// The most configurations (set of placed operations, register value) the search explores
    /// for one key before giving up with [`KeyOutcome::Unknown`]. Analysing an anomaly (finding
    /// the breaking operation, the possible register values, a witness) gets a budget of the
    /// same size on top; the explanation says what it ran out for.
    pub max_states_per_key: usize,
    /// Whether to analyse a non-linearizable key's history (see [`Anomaly`]). Without it the
    /// anomaly lists all of the key's operations that the search considered.
    pub shrink: bool,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits { max_states_per_key: 5_000_000, shrink: true }
    }
}

/// A malformed history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A process invoked an operation while another of its operations was outstanding.
    #[error(
        "event {index}: process {process} invoked an operation while its operation invoked at \
         event {outstanding} is still outstanding"
    )]
    DoubleInvoke {
        /// The index of the second invocation in the history.
        index: usize,
        /// The process.
        process: u64,
        /// The index of the outstanding invocation.
        outstanding: usize,
    },
    /// A completion for a process with no outstanding operation.
    #[error("event {index}: process {process} completed an operation it had not invoked")]
    CompletionWithoutInvoke {
        /// The index of the completion in the history.
        index: usize,
        /// The process.
        process: u64,
    },
    /// A completion whose key or call differs from the process's outstanding invocation.
    #[error(
        "event {index}: process {process}'s completion does not match its invocation at event \
         {invoked_at}: {problem}"
    )]
    MismatchedCompletion {
        /// The index of the completion in the history.
        index: usize,
        /// The process.
        process: u64,
        /// The index of the invocation.
        invoked_at: usize,
        /// What differs.
        problem: String,
    },
}

/// The verdict on a whole history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// Every key is linearizable.
    Valid,
    /// Some key is not linearizable.
    Invalid,
    /// No key is known to be non-linearizable, but some key could not be decided.
    Unknown,
}

/// How operations in the whole history ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Operations invoked.
    pub invoked: usize,
    /// Operations that completed `ok`.
    pub ok: usize,
    /// Operations that completed `fail`.
    pub fail: usize,
    /// Operations that completed `info` (outcome unknown).
    pub info: usize,
    /// Operations invoked but never completed in the history (treated like `info`).
    pub incomplete: usize,
}

/// The checker's verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `invalid` if any key is not linearizable, else `unknown` if any key could not be
    /// decided, else `valid`.
    pub valid: Validity,
    /// One verdict per key, in key order.
    pub keys: Vec<KeyVerdict>,
    /// How the history's operations ended.
    pub ops: OpCounts,
}

/// The verdict on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyVerdict {
    /// The key.
    pub key: String,
    /// The key's operations the checker considered: everything except operations that failed
    /// and reads whose outcome is unknown.
    pub ops: usize,
    /// Of those, the writes and compare-and-sets of unknown outcome whose value no read
    /// returned and no compare-and-set expected: the search leaves them out, which cannot
    /// change its answer.
    pub unobservable: usize,
    /// The result.
    pub outcome: KeyOutcome,
    /// Configurations the search explored for this key (not counting shrinking).
    pub configurations: u64,
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum KeyOutcome {
    /// Some order of the operations respects real time and register semantics.
    Linearizable,
    /// No order does.
    NotLinearizable(Anomaly),
    /// The search ran out of budget.
    Unknown {
        /// Why the key could not be decided.
        reason: String,
    },
}

/// Why a key's history is not linearizable, with the operations that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// What is wrong, in words.
    pub explanation: String,
    /// The operations, in invocation order: the breaking operation, the operations running
    /// when it was invoked (or invoked while it ran, or with an unknown outcome still
    /// outstanding then), earlier writes of the value it needed with an unknown outcome (a few),
    /// the last writes that completed before it was invoked (up to five), and, when `complete`,
    /// a self-contained witness. All of them when shrinking was off or ran out of budget early.
    pub ops: Vec<ReportedOp>,
    /// The index in `ops` of the breaking operation: the history is linearizable up to its
    /// completion and not after. `None` when shrinking was off or ran out of budget before
    /// finding it.
    pub breaking_op: Option<usize>,
    /// Whether `ops` alone are a self-contained witness: they are not linearizable, and stay so
    /// with any other operations of the key invoked before the breaking one completed added
    /// back (so they show a real reason, not one created by leaving writes out). When false,
    /// `ops` are an excerpt to be read with the explanation, which says how large the
    /// smallest witness found is.
    pub complete: bool,
    /// The register values (`None` inside: absent) possible when the breaking operation could
    /// take effect: those left by some order, respecting real time and the register's
    /// semantics, of every operation that completed before it was invoked and any of the others
    /// invoked before it completed. `None` when not computed (shrinking off, or out of budget).
    pub possible_states: Option<Vec<Option<u64>>>,
}

/// How an operation ended, as far as the checker is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Completed `ok`: it took effect.
    Ok,
    /// Completed `info`: it may or may not have taken effect.
    Info,
    /// Never completed in the history: it may or may not have taken effect.
    Incomplete,
    /// Completed `ok` after the anomaly's breaking operation completed: up to that point it
    /// may or may not have taken effect.
    Running,
}

/// One operation, as reported in an [`Anomaly`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedOp {
    /// The client process.
    pub process: u64,
    /// The operation.
    #[serde(flatten)]
    pub call: Call,
    /// How it ended.
    pub completion: Completion,
    /// What a read completing `ok` returned (`None`: the key was absent).
    pub read: Option<u64>,
    /// When it was invoked (ns since the run started).
    pub invoke_time_ns: u64,
    /// When it completed, if it did.
    pub complete_time_ns: Option<u64>,
    /// The index of its invocation event in the history.
    pub invoke_index: usize,
    /// The index of its completion event in the history, if any.
    pub complete_index: Option<usize>,
}

impl ReportedOp {
    /// The value this operation writes if it takes effect.
    fn written(&self) -> Option<u64> {
        match self.call {
            Call::Read => None,
            Call::Write { value } => Some(value),
            Call::Cas { to, .. } => Some(to),
        }
    }

    /// The value this operation needs to see if it takes effect (`None` inside: absent), or
    /// `None` when it takes effect whatever the register holds.
    fn observed(&self) -> Option<Option<u64>> {
        match (self.call, self.completion) {
            (Call::Read, Completion::Ok) => Some(self.read),
            (Call::Cas { from, .. }, Completion::Ok) => Some(Some(from)),
            _ => None,
        }
    }

    /// "process 3's read of 5", "process 1's write of 2", "process 2's cas from 1 to 4".
    fn describe(&self) -> String {
        let what = match (self.call, self.read) {
            (Call::Read, Some(v)) => format!("read of {v}"),
            (Call::Read, None) => "read of an absent key".to_string(),
            (Call::Write { value }, _) => format!("write of {value}"),
            (Call::Cas { from, to }, _) => format!("cas from {from} to {to}"),
        };
        format!("process {}'s {what}", self.process)
    }

    /// "(invoked at 1.200 s, completed ok at 1.300 s)".
    fn timing(&self) -> String {
        let end = match (self.completion, self.complete_time_ns) {
            (Completion::Ok, Some(t)) => format!("completed ok at {}", secs(t)),
            (Completion::Info, Some(t)) => format!("outcome unknown (info) at {}", secs(t)),
            (Completion::Running, Some(t)) => format!("running; completed ok later, at {}", secs(t)),
            _ => "never completed".to_string(),
        };
        format!("(invoked at {}, {end})", secs(self.invoke_time_ns))
    }
}

impl fmt::Display for ReportedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.complete_index.map_or_else(|| "-".to_string(), |i| i.to_string());
        write!(f, "{} {} [events {}..{}]", self.describe(), self.timing(), self.invoke_index, end)
    }
}

#[cfg(test)]
impl ReportedOp {
    /// For tests: an operation by process `inv`, invoked at event (and nanosecond) `inv` and
    /// completed at `done`, if it did.
    fn at(
        call: Call,
        completion: Completion,
        read: Option<u64>,
        inv: usize,
        done: Option<usize>,
    ) -> ReportedOp {
        ReportedOp {
            process: inv as u64,
            call,
            completion,
            read,
            invoke_time_ns: inv as u64,
            complete_time_ns: done.map(|d| d as u64),
            invoke_index: inv,
            complete_index: done,
        }
    }
}

/// Nanoseconds as seconds with millisecond precision: "1.200 s".
fn secs(ns: u64) -> String {
    format!("{}.{:03} s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000_000)
}

/// One key's operations as the search sees them, plus the failed writes (for explanations).
#[derive(Debug, Default)]
struct KeyOps {
    ops: Vec<ReportedOp>,
    failed: Vec<ReportedOp>,
}

/// Checks every key's register history for linearizability.
pub fn check_registers(history: &History, limits: &CheckLimits) -> Result<Verdict, CheckError> {
    let (by_key, counts) = split_by_key(history)?;
    let keys: Vec<KeyVerdict> = by_key.into_iter().map(|(key, ops)| check_key(key, &ops, limits)).collect();
    let valid = if keys.iter().any(|k| matches!(k.outcome, KeyOutcome::NotLinearizable(_))) {
        Validity::Invalid
    } else if keys.iter().any(|k| matches!(k.outcome, KeyOutcome::Unknown { .. })) {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Ok(Verdict { valid, keys, ops: counts })
}

fn check_key(key: String, key_ops: &KeyOps, limits: &CheckLimits) -> KeyVerdict {
    let ops = &key_ops.ops;
    let budget = u64::try_from(limits.max_states_per_key).unwrap_or(u64::MAX);
    // The verdict is the same without unknown writes nobody could see (see `reduce.rs`); an
    // anomaly is still analysed over every operation, so its report shows them all.
    let searched = reduce::observable(ops);
    let result = register::search(&searched, budget);
    let outcome = match result.outcome {
        register::Outcome::Linearizable => KeyOutcome::Linearizable,
        register::Outcome::Unknown => KeyOutcome::Unknown {
            reason: format!(
                "gave up after exploring {} configurations (limit {}) without finding a \
                 linearization or ruling one out",
                result.configurations, limits.max_states_per_key
            ),
        },
        register::Outcome::NotLinearizable => {
            let shrunk = if limits.shrink { shrink::shrink(ops, budget) } else { shrink::Shrunk::whole(ops) };
            let explanation = explain::explain(&shrunk, &key_ops.failed);
            KeyOutcome::NotLinearizable(Anomaly {
                explanation,
                possible_states: shrunk.states.map(|s| s.into_iter().collect()),
                ops: shrunk.ops,
                breaking_op: shrunk.breaking,
                complete: shrunk.complete,
            })
        }
    };
    KeyVerdict {
        key,
        ops: ops.len(),
        unobservable: ops.len() - searched.len(),
        outcome,
        configurations: result.configurations,
    }
}

/// Checks well-formedness and turns the events into operations per key, in invocation order.
fn split_by_key(history: &History) -> Result<(BTreeMap<String, KeyOps>, OpCounts), CheckError> {
    let mut counts = OpCounts::default();
    let mut by_key: BTreeMap<String, KeyOps> = BTreeMap::new();
    // process -> index of its outstanding invocation
    let mut outstanding: HashMap<u64, usize> = HashMap::new();
    for (index, e) in history.events.iter().enumerate() {
        if e.kind == EventKind::Invoke {
            if let Some(&prior) = outstanding.get(&e.process) {
                return Err(CheckError::DoubleInvoke { index, process: e.process, outstanding: prior });
            }
            outstanding.insert(e.process, index);
            counts.invoked += 1;
            by_key.entry(e.key.clone()).or_default();
            continue;
        }
        let Some(invoked_at) = outstanding.remove(&e.process) else {
            return Err(CheckError::CompletionWithoutInvoke { index, process: e.process });
        };
        // `invoked_at` came from this loop, so the event exists.
        let Some(inv) = history.events.get(invoked_at) else { continue };
        let mismatch = |problem: String| CheckError::MismatchedCompletion {
            index,
            process: e.process,
            invoked_at,
            problem,
        };
        if inv.key != e.key {
            return Err(mismatch(format!("key {:?} completed, {:?} invoked", e.key, inv.key)));
        }
        if inv.call != e.call {
            return Err(mismatch(format!("{:?} completed, {:?} invoked", e.call, inv.call)));
        }
        let completion = match e.kind {
            EventKind::Ok => {
                counts.ok += 1;
                Completion::Ok
            }
            EventKind::Info => {
                counts.info += 1;
                Completion::Info
            }
            EventKind::Fail | EventKind::Invoke => {
                counts.fail += 1;
                Completion::Info // never searched: failed writes only appear in explanations
            }
        };
        let op = ReportedOp {
            process: e.process,
            call: e.call,
            completion,
            read: if e.call == Call::Read && e.kind == EventKind::Ok { e.read } else { None },
            invoke_time_ns: inv.time_ns,
            complete_time_ns: Some(e.time_ns),
            invoke_index: invoked_at,
            complete_index: Some(index),
        };
        let entry = by_key.entry(e.key.clone()).or_default();
        if e.kind == EventKind::Fail {
            if e.call != Call::Read {
                entry.failed.push(op);
            }
        } else if !(e.call == Call::Read && e.kind == EventKind::Info) {
            entry.ops.push(op);
        }
    }
    for (_, invoked_at) in outstanding {
        counts.incomplete += 1;
        let Some(inv) = history.events.get(invoked_at) else { continue };
        if inv.call == Call::Read {
            continue;
        }
        by_key.entry(inv.key.clone()).or_default().ops.push(ReportedOp {
            process: inv.process,
            call: inv.call,
            completion: Completion::Incomplete,
            read: None,
            invoke_time_ns: inv.time_ns,
            complete_time_ns: None,
            invoke_index: invoked_at,
            complete_index: None,
        });
    }
    for k in by_key.values_mut() {
        k.ops.sort_by_key(|op| op.invoke_index);
    }
    Ok((by_key, counts))
}
