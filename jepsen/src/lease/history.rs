//! Lease histories: one record per request with its invocation and completion times, written
//! as JSON lines after a first line holding the settings the checker needs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{LeaseError, LeaseSpec};

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseCall {
    /// Grants a lease (the key names the lease attempt; the id comes with the answer).
    Grant,
    /// Puts the key attached to the lease.
    Put,
    /// Renews the lease once.
    KeepAlive,
    /// A linearizable get of the key.
    Read,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseOutcome {
    /// It was answered (a keep-alive answered with TTL 0 is `Ok`: the lease is gone).
    Ok,
    /// It certainly had no effect (a read that failed, a refused grant or put).
    Fail,
    /// Its outcome is unknown (a timeout, a dropped connection): it may have taken effect.
    Info,
}

/// One request, from invocation to completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOp {
    /// The client that sent it.
    pub client: u64,
    /// The key of the lease attempt (`<prefix>/lease/<client>/<n>`), one per grant.
    pub key: String,
    /// What it did.
    #[serde(rename = "f")]
    pub call: LeaseCall,
    /// How it ended.
    pub outcome: LeaseOutcome,
    /// The lease id: from a grant's answer, and on the put and keep-alives of that lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<i64>,
    /// Seconds: the TTL granted, or the TTL a keep-alive answered (0: the lease is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Whether an answered read found the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Whether the read belongs to the final phase, after the clients stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_phase: bool,
    /// Nanoseconds since the run started when the request was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started when the answer (or the timeout) came.
    pub complete_ns: u64,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The settings a history is checked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHistoryConfig {
    /// The request timeout, in nanoseconds: an unanswered keep-alive may take effect up to
    /// this long after it was sent.
    pub op_timeout_ns: u64,
    /// How long after its latest possible expiry a key may still be present, in nanoseconds.
    pub expiry_slack_ns: u64,
    /// The TTL the clients asked for, in seconds (for the report; the checker uses the TTL
    /// each grant answered).
    pub ttl_secs: i64,
}

impl LeaseHistoryConfig {
    /// The settings of `spec`.
    pub fn of(spec: &LeaseSpec) -> Self {
        LeaseHistoryConfig {
            op_timeout_ns: nanos(spec.op_timeout),
            expiry_slack_ns: nanos(spec.expiry_slack),
            ttl_secs: spec.ttl_secs,
        }
    }
}

/// A lease history: the settings and the requests in the order they completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHistory {
    /// The settings.
    pub config: LeaseHistoryConfig,
    /// The requests.
    pub ops: Vec<LeaseOp>,
}

/// One line of a history file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Config(LeaseHistoryConfig),
    Op(LeaseOp),
}

impl LeaseHistory {
    /// Writes the history as JSON lines: `{"config":…}` first, then one `{"op":…}` a line.
    pub fn save(&self, path: &Path) -> Result<(), LeaseError> {
        let config = std::iter::once(Line::Config(self.config));
        Ok(crate::jsonl::save(path, config.chain(self.ops.iter().cloned().map(Line::Op)))?)
    }

    /// Reads a history written by [`LeaseHistory::save`].
    pub fn load(path: &Path) -> Result<LeaseHistory, LeaseError> {
        let name = || path.display().to_string();
        let mut config = None;
        let mut ops = Vec::new();
        for (line, parsed) in crate::jsonl::load(path)? {
            match parsed {
                Line::Op(op) => ops.push(op),
                Line::Config(c) if config.is_none() => config = Some(c),
                Line::Config(_) => {
                    return Err(LeaseError::Config {
                        path: name(),
                        why: format!("line {line} is a second settings line"),
                    });
                }
            }
        }
        let config =
            config.ok_or_else(|| LeaseError::Config { path: name(), why: "no settings line".into() })?;
        Ok(LeaseHistory { config, ops })
    }
}

/// Records requests from many client tasks into one history, stamped with the time since the
/// run's start.
#[derive(Clone, Debug)]
pub struct LeaseRecorder {
    start: Instant,
    config: LeaseHistoryConfig,
    ops: Arc<std::sync::Mutex<Vec<LeaseOp>>>,
}

/// A request sent and not yet recorded.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) client: u64,
    pub(crate) key: String,
    pub(crate) call: LeaseCall,
    pub(crate) lease: Option<i64>,
    pub(crate) final_phase: bool,
    pub(crate) invoke_ns: u64,
}

/// What a request's answer says.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: LeaseOutcome,
    pub(crate) lease: Option<i64>,
    pub(crate) ttl: Option<i64>,
    pub(crate) present: Option<bool>,
    pub(crate) error: Option<String>,
}

impl Answer {
    /// An answer carrying nothing but its outcome.
    pub(crate) fn bare(outcome: LeaseOutcome, error: Option<String>) -> Self {
        Answer { outcome, lease: None, ttl: None, present: None, error }
    }
}

impl LeaseRecorder {
    /// A recorder for `spec`'s settings whose clock starts at `start` (pass the instant the
    /// other workloads and the nemesis count from, so the timelines line up).
    pub fn new(spec: &LeaseSpec, start: Instant) -> Self {
        LeaseRecorder { start, config: LeaseHistoryConfig::of(spec), ops: Arc::default() }
    }

    /// Nanoseconds since the start (0 before it).
    pub fn now_ns(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.start))
    }

    /// The instant `ns` nanoseconds after the start.
    pub(crate) fn at(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }

    /// Notes that a request is being sent.
    pub(crate) fn begin(&self, client: u64, key: &str, call: LeaseCall, lease: Option<i64>) -> Pending {
        let invoke_ns = self.now_ns();
        Pending { client, key: key.to_string(), call, lease, final_phase: false, invoke_ns }
    }

    /// Records a request with its answer; returns the record.
    pub(crate) fn finish(&self, p: Pending, a: Answer) -> LeaseOp {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        // Stamped under the lock, so completion times never go backwards along the history.
        let complete_ns = self.now_ns().max(p.invoke_ns);
        let op = LeaseOp {
            client: p.client,
            key: p.key,
            call: p.call,
            outcome: a.outcome,
            lease: a.lease.or(p.lease),
            ttl: a.ttl,
            present: a.present,
            final_phase: p.final_phase,
            invoke_ns: p.invoke_ns,
            complete_ns,
            error: a.error,
        };
        ops.push(op.clone());
        op
    }

    /// The history recorded so far.
    pub fn history(&self) -> LeaseHistory {
        LeaseHistory { config: self.config, ops: self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone() }
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_history_round_trips_through_json_lines() -> Result<(), Box<dyn std::error::Error>> {
        let spec = LeaseSpec::new("p", 1);
        let r = LeaseRecorder::new(&spec, Instant::now());
        let p = r.begin(0, "p/lease/0/0", LeaseCall::Grant, None);
        tokio::time::advance(Duration::from_millis(3)).await;
        let g = Answer { lease: Some(7), ttl: Some(3), ..Answer::bare(LeaseOutcome::Ok, None) };
        let op = r.finish(p, g);
        assert_eq!((op.invoke_ns, op.complete_ns, op.lease), (0, 3_000_000, Some(7)));
        let mut p = r.begin(0, "p/lease/0/0", LeaseCall::Read, Some(7));
        p.final_phase = true;
        r.finish(p, Answer::bare(LeaseOutcome::Fail, Some("unavailable".into())));
        let h = r.history();
        assert_eq!(h.config.op_timeout_ns, 1_000_000_000);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leases.jsonl");
        h.save(&path)?;
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(r#"{"config":"#), "{text}");
        assert!(lines[2].contains(r#""f":"read""#) && lines[2].contains(r#""final_phase":true"#), "{text}");
        assert!(!lines[1].contains("final_phase"), "{text}");
        assert_eq!(LeaseHistory::load(&path)?, h);
        Ok(())
    }

    #[test]
    fn bad_files_are_reported_with_the_file_and_line() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.jsonl");
        let config = r#"{"config":{"op_timeout_ns":1,"expiry_slack_ns":2,"ttl_secs":3}}"#;
        std::fs::write(&path, format!("{config}\n\n{{\"op\":{{\"client\":1}}}}\n"))?;
        let err = LeaseHistory::load(&path).err().ok_or("a bad line parsed")?;
        assert!(err.to_string().contains("line 3") && err.to_string().contains("h.jsonl"), "{err}");
        std::fs::write(&path, "")?;
        let err = LeaseHistory::load(&path).err().ok_or("a file without settings loaded")?;
        assert!(err.to_string().contains("no settings line"), "{err}");
        std::fs::write(&path, format!("{config}\n{config}\n"))?;
        let err = LeaseHistory::load(&path).err().ok_or("two settings lines loaded")?;
        assert!(err.to_string().contains("line 2"), "{err}");
        Ok(())
    }
}
