//! The watch half of the object checker (what it checks is documented on `check::check`).

use std::collections::HashSet;

use super::check::{AnomalyKind, Found, Versions, describe_event, describe_final, is_prefix};
use super::history::{EventType, FinalRead, ObjectHistory, ObjectWatchEvent};

/// Whether an event type fits a version: ADDED for the creation (version 0), MODIFIED for
/// the updates.
fn fits(kind: EventType, version: usize) -> bool {
    match kind {
        EventType::Added => version == 0,
        EventType::Modified => version > 0,
        EventType::Deleted => false,
    }
}

/// The elements versions `from..=to` appended, in a few words.
fn appended(fin: &[u64], from: usize, to: usize) -> String {
    let lo = from.saturating_sub(1).min(fin.len());
    let hi = to.min(fin.len()).max(lo);
    let elements = &fin[lo..hi];
    if elements.len() <= 5 {
        format!("{elements:?}")
    } else {
        format!("{} elements from {} to {}", elements.len(), elements[0], elements[elements.len() - 1])
    }
}

/// Checks of each watcher as a whole: a start resourceVersion that parses, events only from
/// described watchers, resourceVersions strictly increasing along the watcher's events of all
/// objects (the store's revision order, across resumed streams too).
pub(crate) fn check_watchers(h: &ObjectHistory, found: &mut Found) {
    let known: HashSet<usize> = h.watchers.iter().map(|w| w.watcher).collect();
    let mut orphans = HashSet::new();
    for e in &h.events {
        if !known.contains(&e.watcher) && orphans.insert(e.watcher) {
            let why = format!("events of watcher {} whose log is missing are not checked", e.watcher);
            found.add(AnomalyKind::Malformed, &e.object, Some(e.watcher), why, vec![describe_event(e)]);
        }
    }
    for w in &h.watchers {
        if w.start_rv.parse::<u64>().is_err() {
            let why =
                format!("watcher {}'s start resourceVersion {:?} is not an integer", w.watcher, w.start_rv);
            found.add(AnomalyKind::Malformed, "", Some(w.watcher), why, Vec::new());
        }
        let mut last: Option<(u64, &ObjectWatchEvent)> = None;
        for e in h.events.iter().filter(|e| e.watcher == w.watcher) {
            let Ok(r) = e.rv.parse::<u64>() else { continue };
            if let Some((p, pe)) = last
                && r <= p
            {
                let why = format!(
                    "watcher {} delivered resourceVersion {r} after {p}: a watch delivers changes in order",
                    w.watcher
                );
                found.add(
                    AnomalyKind::WatchDuplicate,
                    &e.object,
                    Some(w.watcher),
                    why,
                    vec![describe_event(pe), describe_event(e)],
                );
            }
            if last.is_none_or(|(p, _)| r > p) {
                last = Some((r, e));
            }
        }
    }
}

/// Checks every watcher's events on object `name` against its final list `f` and its known
/// `versions`; returns how many events were checked.
pub(crate) fn check_watches(
    name: &str,
    f: &FinalRead,
    versions: &Versions,
    h: &ObjectHistory,
    found: &mut Found,
) -> usize {
    let fin = &f.elements;
    let mut checked = 0;
    for w in &h.watchers {
        let Ok(s) = w.start_rv.parse::<u64>() else { continue };
        let id = Some(w.watcher);
        // The first version after the start, when known.
        let first_after = versions.iter().find(|(_, (rv, _))| *rv > s).map(|(k, _)| *k);
        let mut prev: Option<(usize, &ObjectWatchEvent)> = None;
        for e in h.events.iter().filter(|e| e.watcher == w.watcher && e.object == name) {
            checked += 1;
            if let Some(raw) = &e.malformed {
                let why = format!("a watch event's list does not parse: {raw:?}");
                found.add(AnomalyKind::Malformed, name, id, why, vec![describe_event(e)]);
                continue;
            }
            let Ok(r) = e.rv.parse::<u64>() else {
                let why = format!("a watch event's resourceVersion {:?} is not an integer", e.rv);
                found.add(AnomalyKind::Malformed, name, id, why, vec![describe_event(e)]);
                continue;
            };
            if !is_prefix(&e.elements, fin) {
                let why = "a watch event shows a list that is not a committed version (not a prefix of the final list)";
                found.add(
                    AnomalyKind::EventNotCommitted,
                    name,
                    id,
                    why.to_string(),
                    vec![describe_event(e), describe_final(f)],
                );
                continue;
            }
            let k = e.elements.len();
            if !fits(e.kind, k) {
                let why =
                    format!("a {:?} event for version {k} (creations are ADDED, updates MODIFIED)", e.kind);
                found.add(AnomalyKind::WrongEventType, name, id, why, vec![describe_event(e)]);
            }
            if r <= s {
                let why = format!(
                    "an event at resourceVersion {r}, at or before the watch's start {s}: a watch from a \
                     resourceVersion replays only later changes"
                );
                found.add(AnomalyKind::EventBeforeStart, name, id, why, vec![describe_event(e)]);
            }
            match prev {
                None => {
                    let before = k.checked_sub(1).and_then(|j| versions.get(&j));
                    if let (Some((rv, op)), Some(j)) = (before, first_after)
                        && *rv > s
                        && j < k
                    {
                        let why = format!(
                            "the first event is version {k}, but versions {j} to {} (appending {}) came after the \
                             start {s} too",
                            k - 1,
                            appended(fin, j, k - 1)
                        );
                        found.add(AnomalyKind::WatchGap, name, id, why, vec![op.clone(), describe_event(e)]);
                    }
                }
                Some((p, pe)) if k <= p => {
                    let why = format!("version {k} delivered again after version {p}");
                    found.add(
                        AnomalyKind::WatchDuplicate,
                        name,
                        id,
                        why,
                        vec![describe_event(pe), describe_event(e)],
                    );
                }
                Some((p, pe)) if k > p + 1 => {
                    let why = format!(
                        "jumped from version {p} to {k}, missing versions {} to {} (appending {})",
                        p + 1,
                        k - 1,
                        appended(fin, p + 1, k - 1)
                    );
                    found.add(
                        AnomalyKind::WatchGap,
                        name,
                        id,
                        why,
                        vec![describe_event(pe), describe_event(e)],
                    );
                }
                Some(_) => {}
            }
            if prev.is_none_or(|(p, _)| k > p) {
                prev = Some((k, e));
            }
        }
        if !w.ran_to_end() {
            continue;
        }
        let last = fin.len();
        let Some((rf, _)) = versions.get(&last) else { continue };
        if *rf <= s {
            continue;
        }
        let missing_from = match prev {
            Some((p, _)) if p == last => continue,
            Some((p, _)) => p + 1,
            None => first_after.unwrap_or(last),
        };
        let why = format!(
            "the watcher ran to the end but its last event is {}; versions {missing_from} to {last} (the final \
             version, resourceVersion {rf}, after the start {s}) are missing (appending {})",
            prev.map(|(p, _)| format!("version {p}")).unwrap_or_else(|| "none".to_string()),
            appended(fin, missing_from, last)
        );
        let mut ops: Vec<String> = prev.map(|(_, pe)| describe_event(pe)).into_iter().collect();
        ops.push(describe_final(f));
        found.add(AnomalyKind::WatchGap, name, id, why, ops);
    }
    checked
}
