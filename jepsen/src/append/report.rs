//! What the append checker reports: the verdict, its counts and the anomalies, each with the
//! transactions involved and, for cycles, the edges explaining it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::graph::EdgeKind;
use super::{AppendTxn, MicroOp, Outcome};

/// The kinds of anomaly the checker reports. A history with none of them is strictly
/// serializable as far as the checker can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// A cycle of write-write edges (dirty write).
    G0,
    /// A cycle of write-write and write-read edges, at least one write-read (circular
    /// information flow).
    G1c,
    /// A cycle with exactly one read-write edge (read skew).
    GSingle,
    /// A cycle with more than one read-write edge (write skew and the like).
    G2,
    /// [`AnomalyKind::G0`] needing real-time edges.
    G0Realtime,
    /// [`AnomalyKind::G1c`] needing real-time edges.
    G1cRealtime,
    /// [`AnomalyKind::GSingle`] needing real-time edges (for example a stale read).
    GSingleRealtime,
    /// [`AnomalyKind::G2`] needing real-time edges.
    G2Realtime,
    /// Aborted read: a read holds an element whose transaction failed.
    G1a,
    /// Intermediate read: a read ends at an element its transaction followed with another
    /// append to the same key.
    G1b,
    /// Two reads of a key that are not prefixes of one another.
    IncompatibleOrder,
    /// A read holds an element more than once.
    DuplicateElements,
    /// A transaction's read disagrees with its own earlier reads and appends of the key.
    Internal,
    /// A read holds an element nobody appended, or a value that is not a list.
    Garbage,
    /// The same element was appended to a key twice (a malformed history: the workload
    /// appends unique elements).
    DuplicateAppend,
}

impl AnomalyKind {
    /// The name used in reports ("G-single-realtime", "G1a", "incompatible-order", ...).
    pub const fn name(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2 => "G2",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2Realtime => "G2-realtime",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::DuplicateElements => "duplicate-elements",
            AnomalyKind::Internal => "internal",
            AnomalyKind::Garbage => "garbage",
            AnomalyKind::DuplicateAppend => "duplicate-append",
        }
    }

    /// The cycle kind for a cycle with `rw` read-write steps, with or without a write-read
    /// step and a real-time step.
    pub(crate) fn of_cycle(rw: usize, wr: bool, realtime: bool) -> AnomalyKind {
        match (rw, wr, realtime) {
            (0, false, false) => AnomalyKind::G0,
            (0, true, false) => AnomalyKind::G1c,
            (1, _, false) => AnomalyKind::GSingle,
            (_, _, false) => AnomalyKind::G2,
            (0, false, true) => AnomalyKind::G0Realtime,
            (0, true, true) => AnomalyKind::G1cRealtime,
            (1, _, true) => AnomalyKind::GSingleRealtime,
            (_, _, true) => AnomalyKind::G2Realtime,
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for AnomalyKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A transaction as shown in an anomaly. Explanations call it `T<index>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedTxn {
    /// Its index in the history.
    pub index: usize,
    /// Its process.
    pub process: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked (ns since the run started).
    pub invoke_ns: u64,
    /// When it completed, if it did.
    pub complete_ns: Option<u64>,
    /// Its micro-operations.
    pub ops: Vec<MicroOp>,
}

impl ReportedTxn {
    /// Transaction `index` of `txns` (an empty stand-in if out of range).
    pub(crate) fn of(txns: &[AppendTxn], index: usize) -> ReportedTxn {
        let t = txns.get(index);
        ReportedTxn {
            index,
            process: t.map_or(0, |t| t.process),
            outcome: t.map_or(Outcome::Info, |t| t.outcome),
            invoke_ns: t.map_or(0, |t| t.invoke_ns),
            complete_ns: t.and_then(|t| t.complete_ns),
            ops: t.map(|t| t.ops.clone()).unwrap_or_default(),
        }
    }
}

/// One edge of a cycle, with the reason it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CycleStep {
    /// The earlier transaction's index in the history.
    pub from: usize,
    /// The later transaction's index.
    pub to: usize,
    /// The kind of dependency.
    pub kind: EdgeKind,
    /// Why, in words.
    pub why: String,
}

/// One anomaly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppendAnomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The key concerned, for anomalies about one key.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub explanation: String,
    /// The transactions involved (for a cycle, in cycle order).
    pub txns: Vec<ReportedTxn>,
    /// For a cycle, its edges in order, the last one back to the first transaction.
    pub steps: Vec<CycleStep>,
}

/// Dependency edges by kind (distinct ordered pairs of transactions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EdgeCounts {
    /// Write-write.
    pub ww: usize,
    /// Write-read.
    pub wr: usize,
    /// Read-write.
    pub rw: usize,
    /// Real time (after the reduction to the edges not implied by others).
    pub realtime: usize,
}

/// What the history holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppendCounts {
    /// Transactions.
    pub txns: usize,
    /// Completed `ok`.
    pub ok: usize,
    /// Completed `fail`.
    pub fail: usize,
    /// Outcome unknown (including transactions that never completed).
    pub info: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Transactions in the dependency graph: `ok` ones and `info` ones whose appends a read saw.
    pub graph_txns: usize,
    /// The graph's edges.
    pub edges: EdgeCounts,
}

/// The checker's verdict on an append history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppendVerdict {
    /// No anomaly found.
    pub valid: bool,
    /// What the history holds.
    pub counts: AppendCounts,
    /// Every kind of anomaly found, including those whose examples were cut.
    pub anomaly_kinds: Vec<AnomalyKind>,
    /// Anomalies found, per kind.
    pub anomaly_counts: BTreeMap<AnomalyKind, usize>,
    /// Examples: at most [`MAX_PER_KIND`] per kind.
    pub anomalies: Vec<AppendAnomaly>,
    /// Anomalies found but not listed.
    pub anomalies_cut: usize,
}

impl AppendVerdict {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let found = if self.valid {
            "no anomalies".to_string()
        } else {
            let kinds: Vec<String> = self.anomaly_counts.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            format!("anomalies: {}", kinds.join(", "))
        };
        format!(
            "{}: {} txns ({} ok, {} fail, {} info) on {} keys; edges ww {} wr {} rw {} realtime {}; {found}",
            if self.valid { "valid" } else { "INVALID" },
            c.txns,
            c.ok,
            c.fail,
            c.info,
            c.keys,
            c.edges.ww,
            c.edges.wr,
            c.edges.rw,
            c.edges.realtime,
        )
    }
}

/// How many anomalies of one kind are listed in a verdict.
pub const MAX_PER_KIND: usize = 8;

/// Collects anomalies, building only those that will be listed.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    counts: BTreeMap<AnomalyKind, usize>,
    listed: Vec<AppendAnomaly>,
}

impl Sink {
    /// Counts an anomaly of `kind`, and lists the one `build` makes if the kind has room.
    pub(crate) fn add(&mut self, kind: AnomalyKind, build: impl FnOnce() -> AppendAnomaly) {
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            self.listed.push(build());
        }
    }

    /// The verdict with `counts`.
    pub(crate) fn verdict(self, counts: AppendCounts) -> AppendVerdict {
        let total: usize = self.counts.values().sum();
        AppendVerdict {
            valid: total == 0,
            counts,
            anomaly_kinds: self.counts.keys().copied().collect(),
            anomalies_cut: total - self.listed.len(),
            anomaly_counts: self.counts,
            anomalies: self.listed,
        }
    }
}

/// A list for explanations: whole when short, else its ends around a count of the middle.
pub(crate) fn show_list(list: &[u64]) -> String {
    const SHORT: usize = 12;
    let join = |xs: &[u64]| xs.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    if list.len() <= SHORT {
        return format!("[{}]", join(list));
    }
    let (head, rest) = list.split_at(3);
    let tail = &rest[rest.len() - 4..];
    format!("[{}, …{} more…, {}]", join(head), rest.len() - tail.len(), join(tail))
}

/// Nanoseconds as seconds with millisecond precision: "1.200 s".
pub(crate) fn secs(ns: u64) -> String {
    format!("{}.{:03} s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_by_their_report_names() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&AnomalyKind::GSingleRealtime)?, "\"G-single-realtime\"");
        assert_eq!(AnomalyKind::of_cycle(2, true, false), AnomalyKind::G2);
        assert_eq!(AnomalyKind::of_cycle(0, true, true), AnomalyKind::G1cRealtime);
        Ok(())
    }

    #[test]
    fn long_lists_are_shortened_in_explanations() {
        assert_eq!(show_list(&[1, 2]), "[1, 2]");
        let long: Vec<u64> = (1..=20).collect();
        assert_eq!(show_list(&long), "[1, 2, 3, …13 more…, 17, 18, 19, 20]");
    }

    #[test]
    fn the_sink_lists_a_few_per_kind_and_counts_the_rest() {
        let mut sink = Sink::default();
        let make =
            |kind| AppendAnomaly { kind, key: None, explanation: String::new(), txns: vec![], steps: vec![] };
        for _ in 0..MAX_PER_KIND + 3 {
            sink.add(AnomalyKind::G1a, || make(AnomalyKind::G1a));
        }
        sink.add(AnomalyKind::G0, || make(AnomalyKind::G0));
        let v = sink.verdict(AppendCounts::default());
        assert!(!v.valid);
        assert_eq!(v.anomalies.len(), MAX_PER_KIND + 1);
        assert_eq!(v.anomalies_cut, 3);
        assert_eq!(v.anomaly_kinds, vec![AnomalyKind::G0, AnomalyKind::G1a]);
        assert_eq!(v.anomaly_counts.get(&AnomalyKind::G1a), Some(&(MAX_PER_KIND + 3)));
    }
}
