//! The watch checker: per-watcher order and revision sanity, agreement between watchers, and
//! agreement with the client history.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{WatchEvent, WatchKind, WatchLog};
use crate::history::{Call, EventKind, History};

/// How many revisions one anomaly lists at most (its explanation gives the full count).
const MAX_LISTED: usize = 20;
/// How many anomalies of one kind one watcher contributes at most (the rest are counted in
/// the verdict's notes).
const MAX_PER_KIND: usize = 10;

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A watcher received the same (revision, key) twice.
    Duplicate,
    /// A watcher received a revision lower than one it had already received.
    Reordered,
    /// A watcher received a revision below its start revision.
    BeforeStart,
    /// An event for a key outside the watched prefix.
    OutsidePrefix,
    /// A watcher that got past a revision another watcher saw did not see it (and had no
    /// compacted gap covering it).
    Missed,
    /// Two watchers saw different content (kind, value, create revision or version) for the
    /// same (revision, key).
    Diverged,
    /// Watchers that reached the final revision saw different sequences.
    SequenceMismatch,
    /// A write the history acknowledged is not in the streams.
    LostWrite,
    /// The streams hold a value (or a delete) that no write of the history could have made.
    Phantom,
    /// An event's create revision, version or header revision is inconsistent with its
    /// revision or with the key's earlier events.
    BadRevisions,
    /// An event arrived at or below a revision a progress notification had already declared
    /// complete.
    ProgressViolation,
    /// A response the watcher could not understand.
    Malformed,
}

/// One anomaly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchAnomaly {
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The watcher concerned, if one.
    pub watcher: Option<usize>,
    /// The revisions concerned (at most 20).
    pub revisions: Vec<i64>,
    /// The key concerned, if one.
    pub key: Option<String>,
    /// A short explanation.
    pub explanation: String,
}

/// Counts for one watcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatcherSummary {
    /// The watcher's index.
    pub watcher: usize,
    /// Its endpoint.
    pub endpoint: String,
    /// Events received.
    pub events: usize,
    /// Progress notifications received.
    pub progress: usize,
    /// Streams opened after the first.
    pub reconnects: u64,
    /// Connection and stream failures.
    pub failures: usize,
    /// Compacted gaps.
    pub compacted_gaps: usize,
    /// The highest revision it knows complete.
    pub reached: i64,
    /// Whether it reached the final revision.
    pub reached_final: bool,
    /// Why it stopped short, if it did.
    pub fell_short: Option<String>,
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchVerdict {
    /// No anomaly was found.
    pub valid: bool,
    /// Every watcher reached the final revision.
    pub complete: bool,
    /// The final revision checked against.
    pub final_revision: i64,
    /// Distinct (revision, key) events seen by any watcher.
    pub distinct_events: usize,
    /// Per watcher.
    pub watchers: Vec<WatcherSummary>,
    /// What is wrong.
    pub anomalies: Vec<WatchAnomaly>,
    /// Checks that could not be made, anomalies left out.
    pub notes: Vec<String>,
}

/// An event's content, compared between watchers.
type Content = (WatchKind, Option<String>, i64, i64);

fn content(e: &WatchEvent) -> Content {
    (e.kind, e.value.clone(), e.create_revision, e.version)
}

fn in_gap(log: &WatchLog, revision: i64) -> bool {
    log.compacted.iter().any(|g| g.from <= revision && revision <= g.to)
}

fn listed(revisions: impl IntoIterator<Item = i64>) -> Vec<i64> {
    revisions.into_iter().take(MAX_LISTED).collect()
}

/// Collects anomalies, at most [`MAX_PER_KIND`] per (kind, watcher).
#[derive(Default)]
struct Found {
    anomalies: Vec<WatchAnomaly>,
    counts: BTreeMap<(AnomalyKind, Option<usize>), usize>,
}

impl Found {
    fn add(
        &mut self,
        kind: AnomalyKind,
        watcher: Option<usize>,
        revisions: Vec<i64>,
        key: Option<&str>,
        explanation: String,
    ) {
        let n = self.counts.entry((kind, watcher)).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            let key = key.map(str::to_string);
            self.anomalies.push(WatchAnomaly { kind, watcher, revisions, key, explanation });
        }
    }

    fn left_out(&self) -> Vec<String> {
        self.counts
            .iter()
            .filter(|(_, n)| **n > MAX_PER_KIND)
            .map(|((kind, w), n)| format!("{kind:?} of watcher {w:?}: {} more not listed", n - MAX_PER_KIND))
            .collect()
    }
}

/// Checks the watchers' logs against one another and against `history` (see the module
/// documentation); `final_revision` is the store revision after the clients stopped.
pub fn check_watches(logs: &[WatchLog], history: &History, final_revision: i64) -> WatchVerdict {
    let mut found = Found::default();
    let mut notes = Vec::new();
    for log in logs {
        check_one(log, &mut found);
    }
    let distinct_events = check_agreement(logs, &mut found);
    let reached: Vec<&WatchLog> = logs.iter().filter(|l| l.reached >= final_revision).collect();
    if reached.is_empty() {
        notes.push(format!("no watcher reached the final revision {final_revision}"));
    }
    check_sequences(&reached, final_revision, &mut found);
    if !reached.iter().any(|l| l.compacted.is_empty()) {
        notes.push("lost-write check skipped: no watcher saw every revision up to the final one".to_string());
    }
    let prefix = logs.first().map(|l| l.prefix.as_str()).unwrap_or_default();
    let written = written(history, prefix);
    for log in logs {
        let complete = log.reached >= final_revision && log.compacted.is_empty();
        check_history(log, &written, complete, &mut found);
    }
    notes.extend(found.left_out());
    let watchers = logs
        .iter()
        .map(|l| WatcherSummary {
            watcher: l.watcher,
            endpoint: l.endpoint.clone(),
            events: l.events.len(),
            progress: l.progress.len(),
            reconnects: l.reconnects,
            failures: l.failures.len(),
            compacted_gaps: l.compacted.len(),
            reached: l.reached,
            reached_final: l.reached >= final_revision,
            fell_short: l.fell_short.clone(),
        })
        .collect();
    WatchVerdict {
        valid: found.anomalies.is_empty(),
        complete: !logs.is_empty() && reached.len() == logs.len(),
        final_revision,
        distinct_events,
        watchers,
        anomalies: found.anomalies,
        notes,
    }
}

/// One watcher on its own: malformed responses, order, duplicates, the start revision, the
/// prefix, create revisions and versions, and progress notifications.
fn check_one(log: &WatchLog, found: &mut Found) {
    let w = Some(log.watcher);
    for m in &log.malformed {
        found.add(AnomalyKind::Malformed, w, vec![], None, m.clone());
    }
    let mut seen = BTreeSet::new();
    let mut last_rev: Option<i64> = None;
    // Per key: the last event (revision, kind, create revision, version).
    let mut last_of: HashMap<&str, (i64, WatchKind, i64, i64)> = HashMap::new();
    for e in &log.events {
        let key = Some(e.key.as_str());
        if !e.key.starts_with(&log.prefix) {
            let why = format!("key {:?} is outside the watched prefix {:?}", e.key, log.prefix);
            found.add(AnomalyKind::OutsidePrefix, w, vec![e.revision], key, why);
        }
        if e.revision < log.start_revision {
            let why = format!("revision {} is below the start revision {}", e.revision, log.start_revision);
            found.add(AnomalyKind::BeforeStart, w, vec![e.revision], key, why);
        }
        if !seen.insert((e.revision, e.key.as_str())) {
            let why = format!(
                "revision {} of key {:?} was delivered again (stream {})",
                e.revision, e.key, e.stream
            );
            found.add(AnomalyKind::Duplicate, w, vec![e.revision], key, why);
        } else if let Some(prev) = last_rev.filter(|p| *p > e.revision) {
            let why = format!("revision {} came after revision {prev} (stream {})", e.revision, e.stream);
            found.add(AnomalyKind::Reordered, w, vec![prev, e.revision], key, why);
        }
        last_rev = Some(last_rev.map_or(e.revision, |p| p.max(e.revision)));
        if let Some(why) = revision_problem(e) {
            found.add(AnomalyKind::BadRevisions, w, vec![e.revision], key, why);
        }
        if let Some(&(prev, kind, create, version)) = last_of.get(e.key.as_str())
            && prev < e.revision
            && !log.compacted.iter().any(|g| g.from > prev && g.from <= e.revision)
            && e.kind == WatchKind::Put
        {
            let expected = match kind {
                WatchKind::Put => (create, version + 1),
                WatchKind::Delete => (e.revision, 1),
            };
            if (e.create_revision, e.version) != expected {
                let why = format!(
                    "after the key's event at revision {prev} the put at {} should have create revision {} \
                     and version {}, not {} and {}",
                    e.revision, expected.0, expected.1, e.create_revision, e.version
                );
                found.add(AnomalyKind::BadRevisions, w, vec![prev, e.revision], key, why);
            }
        }
        if last_of.get(e.key.as_str()).is_none_or(|l| l.0 < e.revision) {
            last_of.insert(&e.key, (e.revision, e.kind, e.create_revision, e.version));
        }
    }
    check_progress(log, found);
}

/// Why an event's own revisions are inconsistent, if they are.
fn revision_problem(e: &WatchEvent) -> Option<String> {
    if e.header_revision < e.revision {
        return Some(format!(
            "revision {} is above its response's header revision {}",
            e.revision, e.header_revision
        ));
    }
    if e.kind == WatchKind::Delete {
        return None;
    }
    if e.create_revision < 1 || e.create_revision > e.revision || e.version < 1 {
        return Some(format!(
            "put at revision {} has create revision {} and version {}",
            e.revision, e.create_revision, e.version
        ));
    }
    if (e.version == 1) != (e.create_revision == e.revision) {
        return Some(format!(
            "put at revision {} has version {} but create revision {} (version 1 exactly when created there)",
            e.revision, e.version, e.create_revision
        ));
    }
    None
}

/// A progress notification at revision P promises that no event at or below P follows.
fn check_progress(log: &WatchLog, found: &mut Found) {
    // min_after[i]: the lowest revision among events[i..].
    let mut min_after = vec![i64::MAX; log.events.len() + 1];
    for (i, e) in log.events.iter().enumerate().rev() {
        min_after[i] = min_after[i + 1].min(e.revision);
    }
    for p in &log.progress {
        let from = p.after_events.min(log.events.len());
        if min_after[from] > p.revision {
            continue;
        }
        let late: Vec<i64> =
            log.events[from..].iter().map(|e| e.revision).filter(|r| *r <= p.revision).collect();
        let why = format!(
            "{} progress at revision {} (stream {}) was followed by {} event(s) at or below it",
            if p.requested { "requested" } else { "periodic" },
            p.revision,
            p.stream,
            late.len()
        );
        found.add(AnomalyKind::ProgressViolation, Some(log.watcher), listed(late), None, why);
    }
}

/// Compares watchers: the same content for each (revision, key), and no watcher missing one
/// another saw inside its own range. Returns how many distinct (revision, key) events they saw.
fn check_agreement(logs: &[WatchLog], found: &mut Found) -> usize {
    let mut union: BTreeMap<(i64, &str), (&WatchEvent, usize)> = BTreeMap::new();
    for log in logs {
        for e in &log.events {
            match union.get(&(e.revision, e.key.as_str())) {
                None => {
                    union.insert((e.revision, &e.key), (e, log.watcher));
                }
                Some((first, by)) if content(first) != content(e) && *by != log.watcher => {
                    let why = format!(
                        "watcher {by} saw {:?} and watcher {} saw {:?} (kind, value, create revision, version)",
                        content(first),
                        log.watcher,
                        content(e)
                    );
                    found.add(AnomalyKind::Diverged, Some(log.watcher), vec![e.revision], Some(&e.key), why);
                }
                Some(_) => {}
            }
        }
    }
    for log in logs {
        let own: BTreeSet<(i64, &str)> = log.events.iter().map(|e| (e.revision, e.key.as_str())).collect();
        let missed: Vec<(i64, usize)> = union
            .iter()
            .filter(|((r, k), _)| {
                *r >= log.start_revision && *r <= log.reached && !in_gap(log, *r) && !own.contains(&(*r, *k))
            })
            .map(|((r, _), (_, by))| (*r, *by))
            .collect();
        if let Some((first, by)) = missed.first() {
            let why = format!(
                "reached revision {} but missed {} event(s) other watchers saw (the first, {first}, seen by \
                 watcher {by})",
                log.reached,
                missed.len()
            );
            found.add(AnomalyKind::Missed, Some(log.watcher), listed(missed.iter().map(|m| m.0)), None, why);
        }
    }
    union.len()
}

/// The watchers that reached the final revision saw the same sequence up to it (outside any
/// of their compacted gaps and from the latest start revision among them).
fn check_sequences(reached: &[&WatchLog], final_revision: i64, found: &mut Found) {
    let Some(first) = reached.first() else { return };
    let from = reached.iter().map(|l| l.start_revision).max().unwrap_or(1);
    let usable = |r: i64| r >= from && r <= final_revision && !reached.iter().any(|l| in_gap(l, r));
    let sequence = |log: &WatchLog| -> Vec<(i64, String, WatchKind, Option<String>)> {
        log.events
            .iter()
            .filter(|e| usable(e.revision))
            .map(|e| (e.revision, e.key.clone(), e.kind, e.value.clone()))
            .collect()
    };
    let reference = sequence(first);
    for log in &reached[1..] {
        let other = sequence(log);
        let Some(i) = (0..reference.len().max(other.len())).find(|i| reference.get(*i) != other.get(*i))
        else {
            continue;
        };
        let (a, b) = (reference.get(i), other.get(i));
        let revisions = [a, b].iter().flatten().map(|x| x.0).collect();
        let why = format!(
            "up to the final revision {final_revision}, event {i} of watcher {} is {a:?} and of watcher {} is \
             {b:?} ({} against {} events)",
            first.watcher,
            log.watcher,
            reference.len(),
            other.len()
        );
        found.add(AnomalyKind::SequenceMismatch, Some(log.watcher), revisions, None, why);
    }
}

/// How many writes of each (key, value) completed `ok`, and how many may have taken effect
/// without being acknowledged (`info`, or never completed).
#[derive(Default)]
struct Written<'a> {
    ok: BTreeMap<(&'a str, String), usize>,
    maybe: BTreeMap<(&'a str, String), usize>,
}

fn written<'a>(history: &'a History, prefix: &str) -> Written<'a> {
    let mut w = Written::default();
    let mut pending: HashMap<u64, (&str, Call)> = HashMap::new();
    let value_of = |call: Call| match call {
        Call::Write { value } => Some(value.to_string()),
        Call::Cas { to, .. } => Some(to.to_string()),
        Call::Read => None,
    };
    for e in history.events.iter().filter(|e| e.key.starts_with(prefix)) {
        let Some(value) = value_of(e.call) else { continue };
        let counts = match e.kind {
            EventKind::Invoke => {
                pending.insert(e.process, (&e.key, e.call));
                continue;
            }
            EventKind::Ok => &mut w.ok,
            EventKind::Info => &mut w.maybe,
            EventKind::Fail => {
                pending.remove(&e.process);
                continue;
            }
        };
        pending.remove(&e.process);
        *counts.entry((e.key.as_str(), value)).or_default() += 1;
    }
    // An operation that never completed may have taken effect.
    for (key, call) in pending.into_values() {
        if let Some(value) = value_of(call) {
            *w.maybe.entry((key, value)).or_default() += 1;
        }
    }
    w
}

/// One stream against the history: no value appears more often than the writes that may have
/// happened could produce, nothing is deleted, and (when `check_lost`: the stream is complete
/// up to the final revision) every acknowledged write is in it.
fn check_history(log: &WatchLog, written: &Written<'_>, check_lost: bool, found: &mut Found) {
    let w = Some(log.watcher);
    let mut seen: BTreeMap<(&str, String), Vec<i64>> = BTreeMap::new();
    let mut once = BTreeSet::new();
    for e in log.events.iter().filter(|e| once.insert((e.revision, e.key.as_str()))) {
        let key = e.key.as_str();
        match &e.value {
            Some(v) => seen.entry((key, v.clone())).or_default().push(e.revision),
            None => {
                let why = format!(
                    "key {key:?} was deleted at revision {}; the history deletes nothing",
                    e.revision
                );
                found.add(AnomalyKind::Phantom, w, vec![e.revision], Some(key), why);
            }
        }
    }
    let count = |map: &BTreeMap<(&str, String), usize>, key: &str, value: &String| {
        map.get(&(key, value.clone())).copied().unwrap_or_default()
    };
    for ((key, value), revisions) in &seen {
        let acked = count(&written.ok, key, value);
        let possible = acked + count(&written.maybe, key, value);
        if revisions.len() > possible {
            let why = format!(
                "value {value:?} of key {key:?} appears in {} put(s) but at most {possible} write(s) of it may \
                 have happened ({acked} acknowledged)",
                revisions.len()
            );
            found.add(AnomalyKind::Phantom, w, listed(revisions.iter().copied()), Some(key), why);
        }
    }
    if !check_lost {
        return;
    }
    for ((key, value), acked) in &written.ok {
        let revisions = seen.get(&(*key, value.clone())).map(Vec::as_slice).unwrap_or_default();
        if revisions.len() < *acked {
            let why = format!(
                "{acked} acknowledged write(s) of value {value:?} to key {key:?} but only {} put(s) of it in \
                 the stream",
                revisions.len()
            );
            found.add(AnomalyKind::LostWrite, w, listed(revisions.iter().copied()), Some(key), why);
        }
    }
}
