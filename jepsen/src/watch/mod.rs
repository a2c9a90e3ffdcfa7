//! The watch workload: one etcd watch per member on the run's key prefix, each through its own
//! member's endpoint, recording every event it delivers, and a checker that compares the
//! streams with one another and with the client history.
//!
//! [`watch`] runs the watchers. Each opens a prefix watch from the caller's start revision with
//! progress notifications, records events, progress notifications, errors and compaction
//! gaps in a [`WatchLog`], and when its stream errors, ends or stalls (no message for a while,
//! and no answer to a progress request either) opens a new one on the same endpoint, with
//! backoff, from the last event's revision + 1. A watch cancelled because its start revision
//! was compacted is recorded as a [`CompactedGap`] and resumed at the compaction revision (the
//! compacted start revision is never asked for again).
//!
//! Ending: the caller passes the run's final revision through a `tokio::sync::watch` channel
//! once the clients have stopped (see [`current_revision`]). A watcher runs at least until
//! `until`; after that it stops as soon as it has seen the final revision (an event at or
//! after it, or a progress notification saying so) and at the latest `tail` after `until`,
//! when its log says how far it fell short. A channel closed without a final revision stops
//! the watchers at `until`.
//!
//! [`check_watches`] (in `check.rs`) then checks per watcher that revisions only increase,
//! across watchers that none missed a revision another saw (outside its compaction gaps) and
//! that they agree on every revision's content, that the watchers that reached the final
//! revision saw the same sequence, and against the history that every acknowledged write is in
//! the stream and no value appears that no write could have produced.

mod check;
mod watcher;

#[cfg(test)]
mod live;
#[cfg(test)]
mod tests;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use check::{AnomalyKind, WatchAnomaly, WatchVerdict, WatcherSummary, check_watches};

/// Errors of the watch workload.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The arguments cannot be used.
    #[error("watch workload: {0}")]
    Invalid(String),
    /// A watcher task panicked or was cancelled.
    #[error("watcher task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No member answered a linearizable range on the prefix in time.
    #[error("no member answered a linearizable range on {prefix:?} by the deadline; last error: {last}")]
    NoRevision {
        /// The prefix.
        prefix: String,
        /// The last error seen.
        last: String,
    },
}

/// What an event did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One event a watch delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The revision of the change: the event's `kv.mod_revision` (for a delete, the revision of
    /// the deletion).
    pub revision: i64,
    /// The key (lossily decoded as UTF-8).
    pub key: String,
    /// Put or delete.
    pub kind: WatchKind,
    /// The value a put wrote (lossily decoded as UTF-8); `None` for a delete.
    pub value: Option<String>,
    /// The key's create revision as the event reports it (0 for a delete).
    pub create_revision: i64,
    /// The key's version as the event reports it (0 for a delete).
    pub version: i64,
    /// The header revision of the response that carried the event.
    pub header_revision: i64,
    /// Which of the watcher's streams delivered it (1 for the first, +1 per reconnect).
    pub stream: u64,
    /// Nanoseconds since [`watch`] was called.
    pub time_ns: u64,
}

/// A response without events saying the stream is complete up to `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The header revision.
    pub revision: i64,
    /// Whether it answered a progress request (watch id -1) rather than being a periodic
    /// notification of this watch.
    pub requested: bool,
    /// How many events the watcher had recorded before it.
    pub after_events: usize,
    /// Which stream delivered it.
    pub stream: u64,
    /// Nanoseconds since [`watch`] was called.
    pub time_ns: u64,
}

/// Revisions a watcher could not receive because they were compacted: `from..=to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedGap {
    /// The first revision asked for and not received.
    pub from: i64,
    /// The last revision not received (the compaction revision - 1).
    pub to: i64,
    /// Nanoseconds since [`watch`] was called.
    pub time_ns: u64,
}

/// A failed connection, stream error, stream end, stall or cancellation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchFailure {
    /// What happened.
    pub error: String,
    /// Nanoseconds since [`watch`] was called.
    pub time_ns: u64,
}

/// Everything one watcher saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    /// The watcher's index (the member index of its endpoint).
    pub watcher: usize,
    /// The endpoint it watched through.
    pub endpoint: String,
    /// The key prefix watched.
    pub prefix: String,
    /// The revision its first watch started at.
    pub start_revision: i64,
    /// Events in the order received.
    pub events: Vec<WatchEvent>,
    /// Progress notifications and answers to progress requests, in the order received.
    pub progress: Vec<Progress>,
    /// Compacted ranges it skipped.
    pub compacted: Vec<CompactedGap>,
    /// Watch streams opened after the first.
    pub reconnects: u64,
    /// Connection and stream failures.
    pub failures: Vec<WatchFailure>,
    /// Responses that could not be understood (an unknown event type, an event without a
    /// key-value); the checker reports each as an anomaly.
    pub malformed: Vec<String>,
    /// The highest revision the watcher knows it has complete: the largest event or progress
    /// revision (`start_revision - 1` before any).
    pub reached: i64,
    /// The final revision the caller passed, if any.
    pub final_revision: Option<i64>,
    /// Why the watcher stopped before reaching the final revision (`None` when it reached it).
    pub fell_short: Option<String>,
}

/// Runs one watcher per endpoint on `prefix` from `start_revision` (≥ 1) until `until`, then
/// until each has seen the final revision `final_revision` announces, for at most `tail`
/// longer (see the module documentation). `op_timeout` bounds each connection attempt; a
/// stream with no message for `max(2 × op_timeout, 2 s)` is asked for progress, and
/// reconnected when that goes unanswered as long again. The logs are in endpoint order.
pub async fn watch(
    endpoints: &[String],
    prefix: &str,
    start_revision: i64,
    until: Instant,
    op_timeout: Duration,
    tail: Duration,
    final_revision: tokio::sync::watch::Receiver<Option<i64>>,
) -> Result<Vec<WatchLog>, WatchError> {
    if endpoints.is_empty() || prefix.is_empty() {
        return Err(WatchError::Invalid("needs at least one endpoint and a non-empty prefix".to_string()));
    }
    if start_revision < 1 {
        return Err(WatchError::Invalid(format!("start revision {start_revision} is not at least 1")));
    }
    if op_timeout.is_zero() {
        return Err(WatchError::Invalid("the operation timeout is zero".to_string()));
    }
    let clock = Instant::now();
    let mut tasks = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let w = watcher::Watcher {
            log: WatchLog {
                watcher: i,
                endpoint: endpoint.clone(),
                prefix: prefix.to_string(),
                start_revision,
                reached: start_revision - 1,
                ..WatchLog::default()
            },
            clock,
            until,
            deadline: until + tail,
            op_timeout,
            stall: (op_timeout * 2).max(Duration::from_secs(2)),
            final_revision: final_revision.clone(),
        };
        tasks.push(tokio::spawn(w.run()));
    }
    let mut logs = Vec::with_capacity(tasks.len());
    for t in tasks {
        logs.push(t.await?);
    }
    Ok(logs)
}

/// The store's revision by a linearizable (count-only) range on `prefix`, asking the members
/// of `endpoints` in turn, each within `op_timeout`, until one answers or `deadline` passes.
/// Before the clients start, the answer + 1 is the watchers' start revision; after they
/// stop, it is the final revision.
pub async fn current_revision(
    endpoints: &[String],
    prefix: &str,
    op_timeout: Duration,
    deadline: Instant,
) -> Result<i64, WatchError> {
    if endpoints.is_empty() {
        return Err(WatchError::Invalid("no endpoints to ask for the revision".to_string()));
    }
    let mut last = String::from("no attempt before the deadline");
    for endpoint in endpoints.iter().cycle() {
        if Instant::now() >= deadline {
            break;
        }
        let ask = async {
            let options = ConnectOptions::new().with_connect_timeout(op_timeout).with_timeout(op_timeout);
            let mut client = Client::connect([endpoint.as_str()], Some(options)).await?;
            let resp = client.get(prefix, Some(GetOptions::new().with_prefix().with_count_only())).await?;
            Ok::<_, etcd_client::Error>(resp.header().map(|h| h.revision()))
        };
        match tokio::time::timeout_at((Instant::now() + op_timeout).min(deadline), ask).await {
            Ok(Ok(Some(revision))) if revision > 0 => return Ok(revision),
            Ok(Ok(other)) => last = format!("{endpoint}: a range answer with header revision {other:?}"),
            Ok(Err(e)) => last = format!("{endpoint}: {e}"),
            Err(_) => last = format!("{endpoint}: no answer within {op_timeout:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(WatchError::NoRevision { prefix: prefix.to_string(), last })
}
