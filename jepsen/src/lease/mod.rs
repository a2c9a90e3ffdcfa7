//! The lease workload and its checker.
//!
//! Each client grants a short lease, puts a fresh key attached to it, keeps the lease alive
//! for a random while, then lets it go and starts the next one; a reader beside it polls the
//! client's keys with linearizable gets. After the run, a final phase polls every key still
//! present until it is gone or its deadline passes. Every request is recorded with its
//! invocation and completion times ([`LeaseHistory`], saved as JSON lines).
//!
//! [`check`] then holds the history to two properties:
//!
//! - **never before expiry** (safety): a lease cannot disappear before
//!   `max(grant invoke + TTL, invoke of each keep-alive answered with TTL > 0 + its TTL)`, since
//!   the leader starts a lease's clock when it applies the grant and restarts it on each
//!   keep-alive, both after the client sent them. A read that finds the key absent, or a
//!   keep-alive answered with TTL 0, completing before that bound is an anomaly;
//! - **gone after expiry** (liveness): once keep-alives stop, the key must be gone by
//!   `max(grant invoke, last keep-alive invoke) + request timeout + TTL + expiry slack`; a read
//!   invoked after that deadline that still finds the key is an anomaly. A new leader gives
//!   every lease a full TTL from its takeover, so leader changes delay expiry: the slack
//!   (30 s by default) covers that.

mod check;
mod history;
mod workload;

#[cfg(test)]
mod live;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Serialize;

pub use check::{LeaseAnomaly, LeaseAnomalyKind, LeaseVerdict, MAX_ANOMALIES, check};
pub use history::{LeaseCall, LeaseHistory, LeaseHistoryConfig, LeaseOp, LeaseOutcome, LeaseRecorder};
pub(crate) use workload::{ApiError, LeaseApi, run_with};
pub use workload::{LeaseStats, run};

/// Errors of the lease workload and of its history files.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A client could not be created for an endpoint.
    #[error("lease client for {endpoint}: {source}")]
    Client {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: etcd_client::Error,
    },
    /// The spec cannot run.
    #[error("lease workload: {0}")]
    Invalid(String),
    /// A client task panicked or was cancelled.
    #[error("lease client task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A history file could not be read or written.
    #[error("lease history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a history file is not a valid record.
    #[error("lease history file {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A history file lacks its settings line, or has two.
    #[error("lease history file {path}: {why}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

crate::jsonl::from_jsonl_error!(LeaseError);

/// What the lease clients do.
#[derive(Clone, Debug, Serialize)]
pub struct LeaseSpec {
    /// Concurrent clients; client `c` talks to endpoint `c mod n`.
    pub clients: usize,
    /// The TTL each lease is granted with, in seconds (etcd TTLs are whole seconds).
    pub ttl_secs: i64,
    /// A lease is kept alive for a time drawn uniformly from zero to this many TTLs.
    pub max_hold_ttls: u32,
    /// Pause between a reader's rounds of gets of its client's keys.
    pub read_every: Duration,
    /// How long one request may take before its outcome is unknown.
    pub op_timeout: Duration,
    /// How long after its latest possible expiry a key may still be present.
    pub expiry_slack: Duration,
    /// Keys are `<prefix>/lease/<client>/<n>`.
    pub prefix: String,
    /// Seeds each client's keep-alive durations.
    pub seed: u64,
}

impl LeaseSpec {
    /// A workload with the usual settings: 3 clients, 3 s TTL, kept alive for up to 3 TTLs,
    /// reads every 200 ms, 1 s request timeout, 30 s expiry slack.
    pub fn new(prefix: &str, seed: u64) -> Self {
        LeaseSpec {
            clients: 3,
            ttl_secs: 3,
            max_hold_ttls: 3,
            read_every: Duration::from_millis(200),
            op_timeout: Duration::from_secs(1),
            expiry_slack: Duration::from_secs(30),
            prefix: prefix.to_string(),
            seed,
        }
    }

    /// Why the spec cannot run, if it cannot.
    pub(crate) fn problem(&self, endpoints: usize) -> Option<String> {
        if endpoints == 0 || self.clients == 0 {
            Some("needs at least one endpoint and one client".to_string())
        } else if self.ttl_secs < 1 {
            Some(format!("a lease TTL of {} s is not positive", self.ttl_secs))
        } else if self.read_every.is_zero() || self.op_timeout.is_zero() {
            Some("the read interval and the request timeout must be positive".to_string())
        } else {
            None
        }
    }
}
