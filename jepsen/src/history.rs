//! Operation histories: every client operation recorded as an invocation and a completion
//! (`ok`, `fail` or `info` when its outcome is unknown), with timestamps, in the order the
//! harness observed them. A history is written as JSON lines and read back for checking, so a
//! failing run's history can be re-checked without re-running it.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Errors reading or writing a history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid event.
    #[error("history file {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

crate::jsonl::from_jsonl_error!(HistoryError);

/// What an operation does to one key's register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum Call {
    /// Reads the register (absent keys read as `None`).
    Read,
    /// Writes `value`.
    Write {
        /// The value written.
        value: u64,
    },
    /// Sets the register to `to` if it holds `from`.
    Cas {
        /// The value expected.
        from: u64,
        /// The value written when the comparison holds.
        to: u64,
    },
}

/// How an event relates to its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The client is about to send the operation.
    Invoke,
    /// The operation took effect (a CAS whose comparison failed completes as `Fail`).
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// The outcome is unknown (a timeout, a dropped connection): it may or may not have taken
    /// effect, at any time after its invocation.
    Info,
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The client process; a process has at most one operation outstanding. A process whose
    /// operation ended in `Info` is never reused.
    pub process: u64,
    /// The key the operation is on.
    pub key: String,
    /// Invocation or completion.
    pub kind: EventKind,
    /// The operation (repeated on its completion).
    #[serde(flatten)]
    pub call: Call,
    /// What a completed read returned (`None` for an absent key and for other events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<u64>,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A history in the order events were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The events.
    pub events: Vec<Event>,
}

impl History {
    /// Writes the history as JSON lines.
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        Ok(crate::jsonl::save(path, &self.events)?)
    }

    /// Reads a history written by [`History::save`].
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let events = crate::jsonl::load(path)?.into_iter().map(|(_, e)| e).collect();
        Ok(History { events })
    }
}

/// Records events from many client tasks into one history, stamped with the time since the
/// recorder was created.
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    events: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder { start: Instant::now(), events: Arc::default() }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records an invocation.
    pub fn invoke(&self, process: u64, key: &str, call: Call) {
        self.complete(process, key, EventKind::Invoke, call, None, None);
    }

    /// Records a completion (or, with [`EventKind::Invoke`], an invocation).
    pub fn complete(
        &self,
        process: u64,
        key: &str,
        kind: EventKind,
        call: Call,
        read: Option<u64>,
        error: Option<String>,
    ) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped under the lock, so times never go backwards along the history.
        let time_ns = self.now_ns();
        events.push(Event { process, key: key.to_string(), kind, call, read, time_ns, error });
    }

    /// The history recorded so far.
    pub fn history(&self) -> History {
        History { events: self.events.lock().unwrap_or_else(|p| p.into_inner()).clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_round_trips_through_json_lines() -> Result<(), Box<dyn std::error::Error>> {
        let r = Recorder::new();
        r.invoke(1, "k", Call::Cas { from: 1, to: 2 });
        r.complete(1, "k", EventKind::Fail, Call::Cas { from: 1, to: 2 }, None, Some("compare".into()));
        r.invoke(2, "k", Call::Read);
        r.complete(2, "k", EventKind::Ok, Call::Read, Some(7), None);
        let h = r.history();
        assert_eq!(h.events.len(), 4);
        assert!(h.events.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("history.jsonl");
        h.save(&path)?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.lines().next().is_some_and(|l| l.contains(r#""f":"cas""#)), "{text}");
        assert_eq!(History::load(&path)?, h);
        Ok(())
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, "{\"process\":1}\n")?;
        let err = History::load(&path).err().ok_or("a bad line parsed")?;
        assert!(err.to_string().contains("line 1"), "{err}");
        Ok(())
    }
}
