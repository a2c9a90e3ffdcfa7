//! The list-append workload and an Elle-style checker for strict serializability.
//!
//! Clients ([`run`], in `workload.rs`) run transactions of one to a few micro-operations, each
//! a read of a key's whole list or an append of an element to it, on a small rotating pool of
//! keys. Elements are unique across the run, so every read tells which appends it saw and in
//! which order. Every transaction is recorded in an [`AppendRecorder`] with its process, its
//! invocation and completion times, its outcome and its micro-operations (reads filled in when
//! it completed `ok`), and saved as JSON lines ([`AppendHistory::save`]).
//!
//! [`check`] (in `check.rs`) infers, following Kingsbury & Alvaro's Elle, each key's version
//! order from the reads, reports anomalies visible without a graph (aborted and intermediate
//! reads, incompatible orders, duplicates, internal inconsistency, garbage) and builds a
//! dependency graph of write-write, write-read, read-write and real-time edges between the
//! committed transactions (`infer.rs`). Its cycles (`graph.rs`) are the anomalies G0, G1c,
//! G-single and G2, and their `-realtime` variants when a cycle needs real-time edges. A
//! history is strictly serializable as far as the checker can tell when it finds no anomaly.

mod check;
mod graph;
mod infer;
mod io;
mod report;
mod workload;

#[cfg(test)]
mod live;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use check::check;
pub use graph::EdgeKind;
pub use report::{
    AnomalyKind, AppendAnomaly, AppendCounts, AppendVerdict, CycleStep, EdgeCounts, MAX_PER_KIND, ReportedTxn,
};
pub use workload::{AppendSpec, AppendStats, decode_list, encode_list, run};

/// Errors of the list-append workload and its history files.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A history file could not be read or written.
    #[error("append history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a history file is not a valid transaction.
    #[error("append history file {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A client could not be created for an endpoint.
    #[error("append client for {endpoint}: {source}")]
    Client {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: etcd_client::Error,
    },
    /// The spec cannot run.
    #[error("append workload: {0}")]
    Invalid(String),
    /// A client task panicked or was cancelled.
    #[error("append client task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One micro-operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum MicroOp {
    /// Reads the key's list.
    Read {
        /// The key.
        key: String,
        /// The list read (an absent key reads as empty); filled in only when the transaction
        /// completed `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Vec<u64>>,
    },
    /// Appends `element` to the key's list.
    Append {
        /// The key.
        key: String,
        /// The element, unique among the elements appended to this key during the run.
        element: u64,
    },
}

impl MicroOp {
    /// The key the micro-operation is on.
    pub fn key(&self) -> &str {
        match self {
            MicroOp::Read { key, .. } | MicroOp::Append { key, .. } => key,
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It committed; its reads are filled in.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may have taken effect, at any time after its invocation. Also the outcome of
    /// a transaction still running when the history was taken.
    Info,
}

/// A stored value a transaction read that is not a list of elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Undecodable {
    /// The key.
    pub key: String,
    /// The value, lossily decoded as UTF-8.
    pub value: String,
}

/// One recorded transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendTxn {
    /// The client process; a process runs one transaction at a time and is never reused after
    /// an `info` outcome.
    pub process: u64,
    /// When it was invoked (ns since the recorder was created).
    pub invoke_ns: u64,
    /// When it completed; `None` while it was still running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its micro-operations, in order.
    pub ops: Vec<MicroOp>,
    /// Why it failed or its outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Values it read that did not decode (the transaction then fails without writing; the
    /// checker reports each as garbage whatever the outcome).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecodable: Vec<Undecodable>,
}

/// Transactions in invocation order; a transaction's index here is how reports name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendHistory {
    /// The transactions.
    pub txns: Vec<AppendTxn>,
}

/// How a transaction completed, as given to [`AppendRecorder::complete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The outcome.
    pub outcome: Outcome,
    /// The micro-operations with their reads filled in (`ok`), or `None` to keep those given
    /// at invocation.
    pub ops: Option<Vec<MicroOp>>,
    /// Why it failed or its outcome is unknown.
    pub error: Option<String>,
    /// Values read that did not decode.
    pub undecodable: Vec<Undecodable>,
}

impl Completion {
    /// Committed, with the reads filled in.
    pub fn ok(ops: Vec<MicroOp>) -> Self {
        Completion { outcome: Outcome::Ok, ops: Some(ops), error: None, undecodable: Vec::new() }
    }

    /// Certainly not applied.
    pub fn fail(error: impl Into<String>) -> Self {
        Completion { outcome: Outcome::Fail, ops: None, error: Some(error.into()), undecodable: Vec::new() }
    }

    /// Unknown outcome.
    pub fn info(error: impl Into<String>) -> Self {
        Completion { outcome: Outcome::Info, ops: None, error: Some(error.into()), undecodable: Vec::new() }
    }
}

/// A transaction's place in an [`AppendRecorder`], returned by [`AppendRecorder::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId(usize);

/// Records transactions from many client tasks into one history, stamped with the time since
/// the recorder was created.
#[derive(Clone, Debug)]
pub struct AppendRecorder {
    start: Instant,
    txns: Arc<std::sync::Mutex<Vec<AppendTxn>>>,
}

impl Default for AppendRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl AppendRecorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        AppendRecorder { start: Instant::now(), txns: Arc::default() }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records an invocation: the transaction is `info` (running) until completed.
    pub fn invoke(&self, process: u64, ops: Vec<MicroOp>) -> TxnId {
        let mut txns = self.txns.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped under the lock, so invocation times never go backwards along the history.
        let invoke_ns = self.now_ns();
        txns.push(AppendTxn {
            process,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Info,
            ops,
            error: None,
            undecodable: Vec::new(),
        });
        TxnId(txns.len() - 1)
    }

    /// Records the completion of `id`.
    pub fn complete(&self, id: TxnId, completion: Completion) {
        let mut txns = self.txns.lock().unwrap_or_else(|p| p.into_inner());
        let complete_ns = self.now_ns();
        let Some(txn) = txns.get_mut(id.0) else { return };
        txn.complete_ns = Some(complete_ns);
        txn.outcome = completion.outcome;
        if let Some(ops) = completion.ops {
            txn.ops = ops;
        }
        txn.error = completion.error;
        txn.undecodable = completion.undecodable;
    }

    /// The history recorded so far (running transactions as `info` without a completion).
    pub fn history(&self) -> AppendHistory {
        AppendHistory { txns: self.txns.lock().unwrap_or_else(|p| p.into_inner()).clone() }
    }
}
