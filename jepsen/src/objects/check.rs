//! The object checker: a pure function of an [`ObjectHistory`] (what it checks is on
//! [`check`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::history::{CreateOp, FinalRead, ObjectHistory, ObjectWatchEvent, Outcome, ReadOp, UpdateOp};

/// How many anomalies a verdict lists (all are counted).
pub const MAX_ANOMALIES: usize = 100;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// An acknowledged update's element is not in the final list.
    LostUpdate,
    /// An acknowledged update's list is not a prefix of the final list, though its element
    /// is there.
    NotPrefix,
    /// A refused update's element is in the final list.
    FailedApplied,
    /// The final list holds an element no update of the object wrote.
    UnknownElement,
    /// The final list holds an element twice.
    DuplicateElement,
    /// A read's list is not a prefix of the final list.
    ReadNotPrefix,
    /// A read lacks an update acknowledged before the read was sent.
    StaleRead,
    /// The object was found absent after an acknowledged create or update.
    LostObject,
    /// The object has no successful final read, so it could not be checked.
    NoFinalRead,
    /// A list or resourceVersion that does not parse.
    Malformed,
    /// One version of an object observed with two resourceVersions.
    RvConflict,
    /// resourceVersions that do not strictly increase with the version.
    RvOrder,
    /// A watch event whose list is not a committed version.
    EventNotCommitted,
    /// A watch event at or before the watcher's start resourceVersion.
    EventBeforeStart,
    /// A watcher missed versions.
    WatchGap,
    /// A watcher saw a version again, or an older one after a newer one.
    WatchDuplicate,
    /// ADDED for an update, MODIFIED for a creation, or DELETED.
    WrongEventType,
}

/// One violation, with the operations involved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectAnomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The object.
    pub object: String,
    /// The watcher, for watch anomalies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher: Option<usize>,
    /// What is wrong, in a sentence.
    pub explanation: String,
    /// The operations and events involved, described.
    pub ops: Vec<String>,
}

/// What the history held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectCounts {
    /// Updates acknowledged.
    pub ok: usize,
    /// Updates refused.
    pub fail: usize,
    /// Updates with an unknown outcome.
    pub info: usize,
    /// Creates sent.
    pub creates: usize,
    /// Successful reads (final reads excluded).
    pub reads: usize,
    /// Watch events checked against a final list.
    pub watch_events_checked: usize,
    /// Watchers.
    pub watchers: usize,
    /// Objects.
    pub objects: usize,
}

/// One watcher in the verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatcherSummary {
    /// Its index.
    pub watcher: usize,
    /// The member it watched through.
    pub member: usize,
    /// Its start resourceVersion.
    pub start_rv: String,
    /// Events it received.
    pub events: usize,
    /// Streams it opened.
    pub streams: u64,
    /// Bookmarks it received.
    pub bookmarks: u64,
    /// Why it ended with 410 Gone (legal), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone: Option<String>,
    /// Why it stopped short of the final resourceVersion, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fell_short: Option<String>,
}

/// The checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectVerdict {
    /// No anomaly.
    pub valid: bool,
    /// Every watcher either reached the final resourceVersion or ended with 410 Gone (a
    /// watcher that fell short was checked only as far as it got).
    pub complete: bool,
    /// What was checked.
    pub counts: ObjectCounts,
    /// All anomalies found.
    pub anomaly_count: usize,
    /// Anomalies per kind.
    pub by_kind: BTreeMap<AnomalyKind, usize>,
    /// The first [`MAX_ANOMALIES`] anomalies.
    pub anomalies: Vec<ObjectAnomaly>,
    /// The watchers.
    pub watchers: Vec<WatcherSummary>,
}

/// Whether `a` is a prefix of `f`.
pub(crate) fn is_prefix(a: &[u64], f: &[u64]) -> bool {
    a.len() <= f.len() && f[..a.len()] == *a
}

fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// A list in a few words: its length and last elements.
fn list(elements: &[u64]) -> String {
    let tail = &elements[elements.len().saturating_sub(3)..];
    let tail: Vec<String> = tail.iter().map(u64::to_string).collect();
    let dots = if elements.len() > 3 { "..., " } else { "" };
    format!("{} elements [{dots}{}]", elements.len(), tail.join(", "))
}

fn describe_update(u: &UpdateOp) -> String {
    format!(
        "update by process {} appending {} ({} to {}): {:?}{}, precondition rv {}, writing {}{}",
        u.process,
        u.element,
        secs(u.invoke_ns),
        secs(u.complete_ns),
        u.outcome,
        u.rv.as_ref().map(|r| format!(" rv {r}")).unwrap_or_default(),
        u.read_rv,
        list(&u.elements),
        u.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    )
}

fn describe_create(c: &CreateOp) -> String {
    format!(
        "create by process {} ({} to {}): {:?}{}",
        c.process,
        secs(c.invoke_ns),
        secs(c.complete_ns),
        c.outcome,
        c.rv.as_ref().map(|r| format!(" rv {r}")).unwrap_or_default()
    )
}

fn describe_read(r: &ReadOp) -> String {
    let what = if r.found {
        format!("rv {} with {}", r.rv.as_deref().unwrap_or("?"), list(&r.elements))
    } else {
        "404".to_string()
    };
    format!("read by process {} ({} to {}): {what}", r.process, secs(r.invoke_ns), secs(r.complete_ns))
}

pub(crate) fn describe_final(f: &FinalRead) -> String {
    if !f.ok {
        return format!("final read: failed ({})", f.error.as_deref().unwrap_or("?"));
    }
    if !f.found {
        return format!("final read at {}: 404", secs(f.time_ns));
    }
    format!(
        "final read at {}: rv {} with {}",
        secs(f.time_ns),
        f.rv.as_deref().unwrap_or("?"),
        list(&f.elements)
    )
}

pub(crate) fn describe_event(e: &ObjectWatchEvent) -> String {
    format!(
        "watcher {} stream {} {:?} at {}: rv {} with {}",
        e.watcher,
        e.stream,
        e.kind,
        secs(e.time_ns),
        e.rv,
        list(&e.elements)
    )
}

/// Collects anomalies.
#[derive(Default)]
pub(crate) struct Found {
    all: Vec<ObjectAnomaly>,
}

impl Found {
    pub(crate) fn add(
        &mut self,
        kind: AnomalyKind,
        object: &str,
        watcher: Option<usize>,
        explanation: String,
        ops: Vec<String>,
    ) {
        self.all.push(ObjectAnomaly { kind, object: object.to_string(), watcher, explanation, ops });
    }
}

/// Everything the history says about one object.
#[derive(Default)]
struct Object<'a> {
    creates: Vec<&'a CreateOp>,
    updates: Vec<&'a UpdateOp>,
    reads: Vec<&'a ReadOp>,
    finals: Vec<&'a FinalRead>,
}

/// Checks an object history; a pure function of it.
///
/// Every update appends one element, unique in the run, so an object's committed versions
/// are the prefixes of its final list: version `k` is the list of its first `k` elements
/// (version 0 is the empty list it was created with). Per object, with `F` its final list:
///
/// - **No lost update.** Every `ok` update's list is a prefix of `F` (so its element is in
///   `F`); no `fail` update's element is in `F`; every element of `F` was written by an
///   update of that object (an `info` update's element may or may not be there); `F` has no
///   duplicate. Every read's list is a prefix of `F`, and a read includes every `ok` update
///   that completed before the read was sent (a GET without a resourceVersion is
///   linearizable, docs/objects.md). An object that a GET or the final read finds absent
///   after an acknowledged create or update was lost.
/// - **resourceVersions.** Every observation of a version (an `ok` create or update's
///   response, a read, the final read, a watch event) gives the same resourceVersion for it,
///   and resourceVersions strictly increase with the version: in particular the `ok` updates
///   ordered by list length have strictly increasing resourceVersions. Kubernetes treats
///   resourceVersions as opaque strings; Flotilla documents them as store revisions
///   (docs/architecture.md, "The object layer": resourceVersion = the key's `mod_revision`;
///   one store-wide revision bumped once per write transaction), so they are compared as
///   integers. A resourceVersion that is not an integer is an anomaly.
/// - **Watches.** For each watcher and object, its ADDED / MODIFIED events must be exactly
///   the object's versions after the watcher's start resourceVersion `s`, in order: each
///   event's list is a version (a prefix of `F`), each extends the previous one by exactly
///   one element (no gap, no duplicate), the first is the first version after `s` (the one
///   before it, when its resourceVersion is known, is at or before `s`), no event is at or
///   before `s`, creations are ADDED and updates MODIFIED (nothing is ever DELETED), and a
///   watcher that ran to the end (not ended by 410 Gone, not short of the final
///   resourceVersion) ends with the final version. Along each watcher's whole stream (all
///   objects, across resumed streams) resourceVersions strictly increase.
///
/// [`ObjectVerdict::complete`] is false when a watcher fell short of the final
/// resourceVersion; it was then checked only as far as it got.
pub fn check(history: &ObjectHistory) -> ObjectVerdict {
    let mut objects: BTreeMap<&str, Object<'_>> = BTreeMap::new();
    for c in &history.creates {
        objects.entry(&c.object).or_default().creates.push(c);
    }
    for u in &history.updates {
        objects.entry(&u.object).or_default().updates.push(u);
    }
    for r in &history.reads {
        objects.entry(&r.object).or_default().reads.push(r);
    }
    for f in &history.finals {
        objects.entry(&f.object).or_default().finals.push(f);
    }
    for e in &history.events {
        objects.entry(&e.object).or_default();
    }
    let mut found = Found::default();
    super::check_watch::check_watchers(history, &mut found);
    let mut checked_events = 0;
    for (name, o) in &objects {
        let seen_by_watch = history.events.iter().any(|e| e.object == *name);
        let Some(f) = usable_final(name, o, seen_by_watch, &mut found) else { continue };
        check_updates(name, o, f, &mut found);
        check_reads(name, o, f, &mut found);
        let versions = versions(name, o, f, history, &mut found);
        checked_events += super::check_watch::check_watches(name, f, &versions, history, &mut found);
    }
    let count = |o: Outcome| history.updates.iter().filter(|u| u.outcome == o).count();
    let counts = ObjectCounts {
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        creates: history.creates.len(),
        reads: history.reads.iter().filter(|r| r.found).count(),
        watch_events_checked: checked_events,
        watchers: history.watchers.len(),
        objects: objects.len(),
    };
    let watchers: Vec<WatcherSummary> = history
        .watchers
        .iter()
        .map(|w| WatcherSummary {
            watcher: w.watcher,
            member: w.member,
            start_rv: w.start_rv.clone(),
            events: history.events.iter().filter(|e| e.watcher == w.watcher).count(),
            streams: w.streams,
            bookmarks: w.bookmarks,
            gone: w.gone.clone(),
            fell_short: w.fell_short.clone(),
        })
        .collect();
    let mut by_kind = BTreeMap::new();
    for a in &found.all {
        *by_kind.entry(a.kind).or_insert(0) += 1;
    }
    let anomaly_count = found.all.len();
    found.all.truncate(MAX_ANOMALIES);
    ObjectVerdict {
        valid: anomaly_count == 0,
        complete: history.watchers.iter().all(|w| w.fell_short.is_none()),
        counts,
        anomaly_count,
        by_kind,
        anomalies: found.all,
        watchers,
    }
}

/// The object's final read when it can be checked against; otherwise the anomaly saying why
/// not (an object never acknowledged that ended absent has nothing to check).
fn usable_final<'a>(
    name: &str,
    o: &Object<'a>,
    seen_by_watch: bool,
    found: &mut Found,
) -> Option<&'a FinalRead> {
    let acked = o.creates.iter().any(|c| c.outcome == Outcome::Ok)
        || o.updates.iter().any(|u| u.outcome == Outcome::Ok)
        || o.reads.iter().any(|r| r.found);
    let Some(f) = o.finals.iter().rev().find(|f| f.ok).copied() else {
        if !acked && !seen_by_watch {
            // Nothing acknowledged, nothing observed: nothing to lose.
            return None;
        }
        let ops = o.finals.iter().map(|f| describe_final(f)).collect();
        let why = if o.finals.is_empty() { "has no final read" } else { "has no successful final read" };
        found.add(
            AnomalyKind::NoFinalRead,
            name,
            None,
            format!("object {name} {why}; it is not checked"),
            ops,
        );
        return None;
    };
    if !f.found {
        if acked {
            let mut ops = vec![describe_final(f)];
            ops.extend(o.creates.iter().filter(|c| c.outcome == Outcome::Ok).map(|c| describe_create(c)));
            ops.extend(o.reads.iter().filter(|r| r.found).take(1).map(|r| describe_read(r)));
            let why = format!("object {name} is absent at the end though it was created and seen");
            found.add(AnomalyKind::LostObject, name, None, why, ops);
        }
        return None;
    }
    if let Some(raw) = &f.malformed {
        let why = format!("object {name}'s final list does not parse: {raw:?}");
        found.add(AnomalyKind::Malformed, name, None, why, vec![describe_final(f)]);
        return None;
    }
    Some(f)
}

/// No lost, reordered or phantom update.
fn check_updates(name: &str, o: &Object<'_>, f: &FinalRead, found: &mut Found) {
    let fin = &f.elements;
    let mut seen = HashSet::new();
    for e in fin {
        if !seen.insert(*e) {
            let why = format!("element {e} appears twice in object {name}'s final list");
            found.add(AnomalyKind::DuplicateElement, name, None, why, vec![describe_final(f)]);
        }
    }
    let mut writers: HashMap<u64, &UpdateOp> = HashMap::new();
    for u in &o.updates {
        writers.insert(u.element, u);
        let present = seen.contains(&u.element);
        match u.outcome {
            Outcome::Ok if !present => {
                let why =
                    format!("acknowledged update appending {} is missing from the final list", u.element);
                found.add(
                    AnomalyKind::LostUpdate,
                    name,
                    None,
                    why,
                    vec![describe_update(u), describe_final(f)],
                );
            }
            Outcome::Ok if !is_prefix(&u.elements, fin) => {
                let why = format!(
                    "acknowledged update appending {} wrote a list that is not a prefix of the final list",
                    u.element
                );
                found.add(
                    AnomalyKind::NotPrefix,
                    name,
                    None,
                    why,
                    vec![describe_update(u), describe_final(f)],
                );
            }
            Outcome::Fail if present => {
                let why = format!("refused update's element {} is in the final list", u.element);
                found.add(
                    AnomalyKind::FailedApplied,
                    name,
                    None,
                    why,
                    vec![describe_update(u), describe_final(f)],
                );
            }
            _ => {}
        }
    }
    for e in fin {
        if !writers.contains_key(e) {
            let why = format!("element {e} in the final list was written by no update of {name}");
            found.add(AnomalyKind::UnknownElement, name, None, why, vec![describe_final(f)]);
        }
    }
}

/// Reads are versions, and are not stale; no 404 after an acknowledged write.
fn check_reads(name: &str, o: &Object<'_>, f: &FinalRead, found: &mut Found) {
    let mut oks: Vec<&UpdateOp> = o.updates.iter().copied().filter(|u| u.outcome == Outcome::Ok).collect();
    oks.sort_by_key(|u| u.complete_ns);
    // The longest list acknowledged by each completion time.
    let mut longest: Vec<(u64, usize, &UpdateOp)> = Vec::with_capacity(oks.len());
    for u in oks {
        let best = match longest.last() {
            Some(&(_, len, w)) if len >= u.elements.len() => (u.complete_ns, len, w),
            _ => (u.complete_ns, u.elements.len(), u),
        };
        longest.push(best);
    }
    let first_ack = o
        .creates
        .iter()
        .filter(|c| c.outcome == Outcome::Ok)
        .map(|c| (c.complete_ns, describe_create(c)))
        .chain(longest.first().map(|&(t, _, u)| (t, describe_update(u))))
        .min_by_key(|(t, _)| *t);
    for r in &o.reads {
        if !r.found {
            if let Some((t, op)) = first_ack.as_ref().filter(|(t, _)| *t < r.invoke_ns) {
                let why = format!(
                    "a GET sent at {} found no object, acknowledged at {}",
                    secs(r.invoke_ns),
                    secs(*t)
                );
                found.add(AnomalyKind::LostObject, name, None, why, vec![describe_read(r), op.clone()]);
            }
            continue;
        }
        if let Some(raw) = &r.malformed {
            let why = format!("a read's list does not parse: {raw:?}");
            found.add(AnomalyKind::Malformed, name, None, why, vec![describe_read(r)]);
            continue;
        }
        if !is_prefix(&r.elements, &f.elements) {
            let why = "a read's list is not a prefix of the final list".to_string();
            found.add(AnomalyKind::ReadNotPrefix, name, None, why, vec![describe_read(r), describe_final(f)]);
            continue;
        }
        let before = longest.partition_point(|(t, _, _)| *t < r.invoke_ns);
        if let Some(&(_, len, u)) = before.checked_sub(1).and_then(|i| longest.get(i))
            && r.elements.len() < len
        {
            let why = format!(
                "a read sent at {} has {} elements, but an update acknowledged before it wrote {len}",
                secs(r.invoke_ns),
                r.elements.len()
            );
            found.add(AnomalyKind::StaleRead, name, None, why, vec![describe_read(r), describe_update(u)]);
        }
    }
}

/// The known resourceVersion of each version (list length) of the object, from every
/// observation; conflicts, unparseable and non-increasing resourceVersions are anomalies.
pub(crate) type Versions = BTreeMap<usize, (u64, String)>;

fn versions(name: &str, o: &Object<'_>, f: &FinalRead, h: &ObjectHistory, found: &mut Found) -> Versions {
    let mut seen: Vec<(usize, &str, String)> = Vec::new();
    for c in o.creates.iter().filter(|c| c.outcome == Outcome::Ok) {
        seen.extend(c.rv.as_deref().map(|rv| (0, rv, describe_create(c))));
    }
    let committed = |l: &[u64]| is_prefix(l, &f.elements);
    for u in o.updates.iter().filter(|u| u.outcome == Outcome::Ok && committed(&u.elements)) {
        seen.extend(u.rv.as_deref().map(|rv| (u.elements.len(), rv, describe_update(u))));
    }
    for r in o.reads.iter().filter(|r| r.found && r.malformed.is_none() && committed(&r.elements)) {
        seen.extend(r.rv.as_deref().map(|rv| (r.elements.len(), rv, describe_read(r))));
    }
    seen.extend(f.rv.as_deref().map(|rv| (f.elements.len(), rv, describe_final(f))));
    for e in h.events.iter().filter(|e| e.object == name && e.malformed.is_none() && committed(&e.elements)) {
        seen.push((e.elements.len(), &e.rv, describe_event(e)));
    }
    let mut versions = Versions::new();
    for (k, rv, op) in seen {
        let Ok(n) = rv.parse::<u64>() else {
            let why = format!("resourceVersion {rv:?} is not an integer (Flotilla's are store revisions)");
            found.add(AnomalyKind::Malformed, name, None, why, vec![op]);
            continue;
        };
        match versions.get(&k) {
            Some((m, first)) if *m != n => {
                let why = format!("version {k} of {name} has resourceVersion {m} and also {n}");
                found.add(AnomalyKind::RvConflict, name, None, why, vec![first.clone(), op]);
            }
            Some(_) => {}
            None => {
                versions.insert(k, (n, op));
            }
        }
    }
    for ((k1, (r1, op1)), (k2, (r2, op2))) in versions.iter().zip(versions.iter().skip(1)) {
        if r1 >= r2 {
            let why =
                format!("version {k1} of {name} has resourceVersion {r1}, not below version {k2}'s {r2}");
            found.add(AnomalyKind::RvOrder, name, None, why, vec![op1.clone(), op2.clone()]);
        }
    }
    versions
}
