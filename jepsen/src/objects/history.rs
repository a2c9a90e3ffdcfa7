//! What the object workload records: creates, updates and reads by the clients, the final
//! reads, and what each watcher saw; written as JSON lines (one record per line, tagged by
//! `type`) and read back for checking.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::ObjectError;

/// How a create or an update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged: the server answered 200/201.
    Ok,
    /// Certainly not applied: a 409 Conflict (or AlreadyExists), or another 4xx refusal.
    Fail,
    /// Unknown: a timeout, a 5xx or a connection error. It may have been applied, at any
    /// time after its invocation.
    Info,
}

/// A create of an object with an empty list (after a GET found it absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOp {
    /// The client process (retired after an `info` outcome, as in the register workload).
    pub process: u64,
    /// The ConfigMap's name.
    pub object: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The resourceVersion the server returned (`ok` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rv: Option<String>,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Nanoseconds since the run started, when it was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started, when its outcome was known.
    pub complete_ns: u64,
}

/// A replace (PUT) of an object with the list it read plus one fresh element, conditional on
/// the resourceVersion it read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOp {
    /// The client process.
    pub process: u64,
    /// The ConfigMap's name.
    pub object: String,
    /// The element appended (unique in the whole run).
    pub element: u64,
    /// The whole list written: the list read, then `element`.
    pub elements: Vec<u64>,
    /// The resourceVersion read, sent as the precondition.
    pub read_rv: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The resourceVersion the server returned (`ok` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rv: Option<String>,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Nanoseconds since the run started, when it was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started, when its outcome was known.
    pub complete_ns: u64,
}

/// A successful GET of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOp {
    /// The client process.
    pub process: u64,
    /// The ConfigMap's name.
    pub object: String,
    /// Whether the object existed (404 otherwise).
    pub found: bool,
    /// Its list (empty when absent).
    #[serde(default)]
    pub elements: Vec<u64>,
    /// Its resourceVersion (absent objects have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rv: Option<String>,
    /// The raw `data["elements"]` when it did not parse as a comma-separated list of numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// Nanoseconds since the run started, when it was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the run started, when it returned.
    pub complete_ns: u64,
}

/// The final GET of one object, after the clients stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// The ConfigMap's name.
    pub object: String,
    /// Whether it succeeded (before the deadline).
    pub ok: bool,
    /// Whether the object existed.
    pub found: bool,
    /// Its list.
    #[serde(default)]
    pub elements: Vec<u64>,
    /// Its resourceVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rv: Option<String>,
    /// The raw `data["elements"]` when it did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// The last error when it never succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
}

/// The type of a watch event on an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// `ADDED`: the object was created (or entered the selection).
    Added,
    /// `MODIFIED`: the object was updated.
    Modified,
    /// `DELETED`: the object was deleted (the workload never deletes).
    Deleted,
}

/// One ADDED, MODIFIED or DELETED event a watcher received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectWatchEvent {
    /// The watcher that received it.
    pub watcher: usize,
    /// Its type.
    pub kind: EventType,
    /// The object's name.
    pub object: String,
    /// The object's resourceVersion in the event.
    pub rv: String,
    /// The object's list in the event.
    #[serde(default)]
    pub elements: Vec<u64>,
    /// The raw `data["elements"]` when it did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// Which of the watcher's streams delivered it (1 for the first).
    pub stream: u64,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
}

/// Everything one watcher did; its events are [`ObjectHistory::events`] with its index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherLog {
    /// The watcher's index.
    pub watcher: usize,
    /// The member whose API server it watched through.
    pub member: usize,
    /// The resourceVersion its first watch started from.
    pub start_rv: String,
    /// Where the start resourceVersion came from (the list at the start, or an update's
    /// response).
    pub start_source: String,
    /// Nanoseconds since the run started, when it opened its first watch.
    pub started_ns: u64,
    /// Watch streams opened.
    pub streams: u64,
    /// BOOKMARK events received.
    pub bookmarks: u64,
    /// The last resourceVersion seen (from an event or a bookmark); the resume point.
    pub reached: String,
    /// Failed opens, stream errors, stream ends and stalls (each followed by a resume from
    /// `reached`).
    pub failures: Vec<String>,
    /// Why the watcher ended early with 410 Gone (its resourceVersion was compacted: legal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone: Option<String>,
    /// Why the watcher stopped before reaching the final resourceVersion (a tail that ran
    /// out, no final resourceVersion known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_short: Option<String>,
    /// The final resourceVersion it was to reach, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
}

impl WatcherLog {
    /// Whether the watcher ran to the end (not ended by 410, not short of the final
    /// resourceVersion): its last event per object must then be the final version.
    pub fn ran_to_end(&self) -> bool {
        self.gone.is_none() && self.fell_short.is_none()
    }
}

/// A recorded run of the object workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHistory {
    /// Creates, in completion order.
    pub creates: Vec<CreateOp>,
    /// Updates, in completion order.
    pub updates: Vec<UpdateOp>,
    /// Successful GETs, in completion order.
    pub reads: Vec<ReadOp>,
    /// The final GET of every object used.
    pub finals: Vec<FinalRead>,
    /// The watchers, by index.
    pub watchers: Vec<WatcherLog>,
    /// Every watcher's events, each watcher's in the order received.
    pub events: Vec<ObjectWatchEvent>,
}

/// One line of the file, written.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LineOut<'a> {
    Create(&'a CreateOp),
    Update(&'a UpdateOp),
    Read(&'a ReadOp),
    Final(&'a FinalRead),
    Watcher(&'a WatcherLog),
    WatchEvent(&'a ObjectWatchEvent),
}

/// One line of the file, read.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum LineIn {
    Create(CreateOp),
    Update(UpdateOp),
    Read(ReadOp),
    Final(FinalRead),
    Watcher(WatcherLog),
    WatchEvent(ObjectWatchEvent),
}

impl ObjectHistory {
    /// Writes the history as JSON lines: creates, updates, reads, final reads, watchers, then
    /// the watch events in the order received.
    pub fn save(&self, path: &Path) -> Result<(), ObjectError> {
        let mut lines: Vec<LineOut<'_>> = Vec::new();
        lines.extend(self.creates.iter().map(LineOut::Create));
        lines.extend(self.updates.iter().map(LineOut::Update));
        lines.extend(self.reads.iter().map(LineOut::Read));
        lines.extend(self.finals.iter().map(LineOut::Final));
        lines.extend(self.watchers.iter().map(LineOut::Watcher));
        lines.extend(self.events.iter().map(LineOut::WatchEvent));
        Ok(crate::jsonl::save(path, lines)?)
    }

    /// Reads a history written by [`ObjectHistory::save`]. Errors name the file and the
    /// 1-based line.
    pub fn load(path: &Path) -> Result<ObjectHistory, ObjectError> {
        let name = path.display().to_string();
        let mut h = ObjectHistory::default();
        let mut watcher_lines = BTreeMap::new();
        for (line, parsed) in crate::jsonl::load(path)? {
            match parsed {
                LineIn::Create(c) => h.creates.push(c),
                LineIn::Update(u) => h.updates.push(u),
                LineIn::Read(r) => h.reads.push(r),
                LineIn::Final(f) => h.finals.push(f),
                LineIn::Watcher(w) => {
                    if let Some(first) = watcher_lines.insert(w.watcher, line) {
                        return Err(ObjectError::Invalid(format!(
                            "history file {name} line {line}: watcher {} was already described on line {first}",
                            w.watcher
                        )));
                    }
                    h.watchers.push(w);
                }
                LineIn::WatchEvent(e) => h.events.push(e),
            }
        }
        Ok(h)
    }
}

/// Records the workload's operations from many tasks into one [`ObjectHistory`], stamped
/// with the time since the recorder was created.
#[derive(Clone, Debug)]
pub struct ObjectRecorder {
    start: Instant,
    history: Arc<std::sync::Mutex<ObjectHistory>>,
}

impl Default for ObjectRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectRecorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        ObjectRecorder { start: Instant::now(), history: Arc::default() }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn with<T>(&self, f: impl FnOnce(&mut ObjectHistory) -> T) -> T {
        f(&mut self.history.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records a completed create.
    pub fn create(&self, op: CreateOp) {
        self.with(|h| h.creates.push(op));
    }

    /// Records a completed update.
    pub fn update(&self, op: UpdateOp) {
        self.with(|h| h.updates.push(op));
    }

    /// Records a successful GET.
    pub fn read(&self, op: ReadOp) {
        self.with(|h| h.reads.push(op));
    }

    /// Records a final read.
    pub fn final_read(&self, op: FinalRead) {
        self.with(|h| h.finals.push(op));
    }

    /// Records a watch event.
    pub fn event(&self, event: ObjectWatchEvent) {
        self.with(|h| h.events.push(event));
    }

    /// Records a watcher's summary once it has ended.
    pub fn watcher(&self, log: WatcherLog) {
        self.with(|h| {
            h.watchers.push(log);
            h.watchers.sort_by_key(|w| w.watcher);
        });
    }

    /// The history recorded so far.
    pub fn history(&self) -> ObjectHistory {
        self.with(|h| h.clone())
    }
}

/// The list an object holds: `data["elements"]`, comma-separated u64s (empty: no elements).
pub(crate) fn parse_elements(text: &str) -> Result<Vec<u64>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|s| s.trim().parse::<u64>().map_err(|e| format!("{s:?}: {e}"))).collect()
}

/// The text of a list, as [`parse_elements`] reads it.
pub(crate) fn format_elements(elements: &[u64]) -> String {
    elements.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}
