//! The checker on hand-made logs, and the watchers' ending rules against an endpoint nobody
//! listens on.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::history::{Call, Event, EventKind, History};

const PREFIX: &str = "p/";

fn put(revision: i64, key: &str, value: &str, create_revision: i64, version: i64) -> WatchEvent {
    WatchEvent {
        revision,
        key: format!("{PREFIX}{key}"),
        kind: WatchKind::Put,
        value: Some(value.to_string()),
        create_revision,
        version,
        header_revision: revision,
        stream: 1,
        time_ns: 0,
    }
}

/// The events of the history below: a=1 (2), b=2 (3), a: 1→3 (4), b=4 (5, an `info` write).
fn events() -> Vec<WatchEvent> {
    vec![put(2, "a", "1", 2, 1), put(3, "b", "2", 3, 1), put(4, "a", "3", 2, 2), put(5, "b", "4", 3, 2)]
}

fn log(watcher: usize, events: Vec<WatchEvent>, reached: i64) -> WatchLog {
    WatchLog {
        watcher,
        endpoint: format!("http://10.0.0.{}:2379", watcher + 1),
        prefix: PREFIX.to_string(),
        start_revision: 1,
        events,
        reached,
        final_revision: Some(FINAL),
        ..WatchLog::default()
    }
}

/// The store revision after the clients stopped (revision 6 changed a key outside the prefix).
const FINAL: i64 = 6;

fn op(process: u64, key: &str, kind: EventKind, call: Call) -> Event {
    Event { process, key: format!("{PREFIX}{key}"), kind, call, read: None, time_ns: 0, error: None }
}

/// Writes a=1 and b=2, CAS a 1→3 (all ok), write b=4 (info), write a=0 (fail), and a read.
fn history() -> History {
    let mut events = Vec::new();
    let mut both = |p, key, kind, call| {
        events.push(op(p, key, EventKind::Invoke, call));
        events.push(op(p, key, kind, call));
    };
    both(1, "a", EventKind::Ok, Call::Write { value: 1 });
    both(2, "b", EventKind::Ok, Call::Write { value: 2 });
    both(1, "a", EventKind::Ok, Call::Cas { from: 1, to: 3 });
    both(2, "b", EventKind::Info, Call::Write { value: 4 });
    both(3, "a", EventKind::Fail, Call::Write { value: 0 });
    both(4, "a", EventKind::Ok, Call::Read);
    History { events }
}

fn three(a: Vec<WatchEvent>, b: Vec<WatchEvent>, c: Vec<WatchEvent>) -> Vec<WatchLog> {
    vec![log(0, a, FINAL), log(1, b, FINAL), log(2, c, FINAL)]
}

fn kinds(v: &WatchVerdict) -> Vec<(AnomalyKind, Option<usize>)> {
    v.anomalies.iter().map(|a| (a.kind, a.watcher)).collect()
}

#[test]
fn identical_complete_streams_agreeing_with_the_history_are_valid() {
    let logs = three(events(), events(), events());
    let v = check_watches(&logs, &history(), FINAL);
    assert!(v.valid && v.complete, "{v:#?}");
    assert_eq!(v.distinct_events, 4);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
    assert!(v.watchers.iter().all(|w| w.events == 4 && w.reached_final), "{:?}", v.watchers);
}

#[test]
fn a_duplicate_event_is_reported_for_its_watcher() {
    let mut dup = events();
    dup.insert(2, put(3, "b", "2", 3, 1));
    let v = check_watches(&three(events(), dup, events()), &history(), FINAL);
    assert!(!v.valid);
    let dups: Vec<_> = v.anomalies.iter().filter(|a| a.kind == AnomalyKind::Duplicate).collect();
    assert_eq!(dups.len(), 1, "{v:#?}");
    assert_eq!((dups[0].watcher, dups[0].revisions.as_slice()), (Some(1), &[3][..]));
}

#[test]
fn a_reordered_stream_is_reported() {
    let mut swapped = events();
    swapped.swap(2, 3);
    let v = check_watches(&three(events(), events(), swapped), &history(), FINAL);
    let k = kinds(&v);
    assert!(k.contains(&(AnomalyKind::Reordered, Some(2))), "{v:#?}");
    assert!(!k.iter().any(|(_, w)| *w == Some(0) || *w == Some(1)), "{v:#?}");
}

#[test]
fn a_revision_missing_from_one_stream_is_a_gap() {
    let mut holed = events();
    holed.remove(2);
    let v = check_watches(&three(events(), holed, events()), &history(), FINAL);
    let missed: Vec<_> = v.anomalies.iter().filter(|a| a.kind == AnomalyKind::Missed).collect();
    assert_eq!(missed.len(), 1, "{v:#?}");
    assert_eq!((missed[0].watcher, missed[0].revisions.as_slice()), (Some(1), &[4][..]));
    // Its stream lacks an acknowledged write (the others' do not); its sequence differs.
    let k = kinds(&v);
    assert!(k.contains(&(AnomalyKind::LostWrite, Some(1))), "{v:#?}");
    assert!(k.contains(&(AnomalyKind::SequenceMismatch, Some(1))), "{v:#?}");
    assert_eq!(k.len(), 3, "{v:#?}");
}

#[test]
fn a_watcher_that_stopped_early_missed_nothing_after_its_reach() {
    let mut short = events();
    short.truncate(2);
    let logs = vec![log(0, events(), FINAL), log(1, short, 3)];
    let v = check_watches(&logs, &history(), FINAL);
    assert!(v.valid && !v.complete, "{v:#?}");
    assert!(!v.watchers[1].reached_final);
}

#[test]
fn different_values_at_one_revision_diverge() {
    let mut other = events();
    other[3].value = Some("9".into());
    let v = check_watches(&three(events(), events(), other), &history(), FINAL);
    let k = kinds(&v);
    assert!(k.contains(&(AnomalyKind::Diverged, Some(2))), "{v:#?}");
    assert!(k.contains(&(AnomalyKind::SequenceMismatch, Some(2))), "{v:#?}");
    assert!(k.contains(&(AnomalyKind::Phantom, Some(2))), "nobody wrote 9: {v:#?}");
    assert_eq!(k.iter().filter(|(k, _)| *k == AnomalyKind::Phantom).count(), 1, "{v:#?}");
}

#[test]
fn an_acknowledged_write_missing_from_every_stream_is_lost() {
    let mut lost = events();
    lost.remove(2);
    let v = check_watches(&three(lost.clone(), lost.clone(), lost), &history(), FINAL);
    let lost = AnomalyKind::LostWrite;
    assert_eq!(kinds(&v), [(lost, Some(0)), (lost, Some(1)), (lost, Some(2))], "{v:#?}");
    assert_eq!(v.anomalies[0].key.as_deref(), Some("p/a"));
    assert!(v.anomalies[0].explanation.contains("\"3\""), "{}", v.anomalies[0].explanation);
}

#[test]
fn a_value_no_write_could_produce_is_a_phantom() {
    let mut extra = events();
    extra.push(put(6, "a", "7", 2, 3));
    let v = check_watches(&[log(0, extra.clone(), FINAL), log(1, extra, FINAL)], &history(), FINAL);
    assert_eq!(kinds(&v), [(AnomalyKind::Phantom, Some(0)), (AnomalyKind::Phantom, Some(1))], "{v:#?}");
    assert_eq!(v.anomalies[0].revisions, [6]);
    // The `info` write of b=4 may have happened once, not twice.
    let mut twice = events();
    twice.push(put(6, "b", "4", 3, 3));
    let v = check_watches(&[log(0, twice, FINAL)], &history(), FINAL);
    assert_eq!(kinds(&v), [(AnomalyKind::Phantom, Some(0))], "{v:#?}");
    assert_eq!(v.anomalies[0].revisions, [5, 6]);
}

#[test]
fn a_compacted_gap_excuses_the_revisions_it_covers() {
    let mut gapped = log(1, events()[2..].to_vec(), FINAL);
    gapped.compacted.push(CompactedGap { from: 1, to: 3, time_ns: 0 });
    let logs = vec![log(0, events(), FINAL), gapped.clone(), log(2, events(), FINAL)];
    let v = check_watches(&logs, &history(), FINAL);
    assert!(v.valid && v.complete, "{v:#?}");
    assert_eq!(v.watchers[1].compacted_gaps, 1);
    // Without the gap the same log missed revisions 2 and 3.
    gapped.compacted.clear();
    let v = check_watches(&[log(0, events(), FINAL), gapped], &history(), FINAL);
    let w1 = Some(1);
    let (missed, seq, lost) = (AnomalyKind::Missed, AnomalyKind::SequenceMismatch, AnomalyKind::LostWrite);
    assert_eq!(kinds(&v), [(missed, w1), (seq, w1), (lost, w1), (lost, w1)], "{v:#?}");
    assert_eq!(v.anomalies[0].revisions, [2, 3]);
}

#[test]
fn with_every_watcher_gapped_lost_writes_are_not_judged() {
    let mut gapped = log(0, events()[3..].to_vec(), FINAL);
    gapped.compacted.push(CompactedGap { from: 1, to: 4, time_ns: 0 });
    let v = check_watches(&[gapped], &history(), FINAL);
    assert!(v.valid, "{v:#?}");
    assert!(v.notes.iter().any(|n| n.contains("lost-write check skipped")), "{:?}", v.notes);
}

#[test]
fn an_event_below_a_progress_revision_violates_it() {
    let mut l = log(0, events(), FINAL);
    l.progress.push(Progress { revision: 4, requested: true, after_events: 2, stream: 1, time_ns: 0 });
    let v = check_watches(&[l.clone()], &history(), FINAL);
    assert_eq!(kinds(&v), [(AnomalyKind::ProgressViolation, Some(0))], "{v:#?}");
    assert_eq!(v.anomalies[0].revisions, [4]);
    l.progress[0].revision = 3;
    assert!(check_watches(&[l], &history(), FINAL).valid);
}

#[test]
fn inconsistent_create_revisions_and_versions_are_reported() {
    let mut bad = events();
    bad[2].version = 3; // the second put of a is version 2
    bad[3].create_revision = 5; // a put at 5 with version 2 cannot have been created at 5
    let v = check_watches(&three(events(), events(), bad), &history(), FINAL);
    let revs: Vec<_> = v
        .anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::BadRevisions)
        .map(|a| a.revisions.clone())
        .collect();
    assert_eq!(revs, [vec![2, 4], vec![5], vec![3, 5]], "{v:#?}");
    assert!(kinds(&v).contains(&(AnomalyKind::Diverged, Some(2))));
}

#[test]
fn deletes_keys_outside_the_prefix_and_malformed_responses_are_anomalies() {
    let mut odd = events();
    odd.push(WatchEvent {
        kind: WatchKind::Delete,
        value: None,
        create_revision: 0,
        version: 0,
        ..put(6, "b", "", 0, 0)
    });
    let mut outside = put(7, "x", "1", 7, 1);
    outside.key = "q/x".into();
    odd.push(outside);
    let mut l = log(0, odd, 7);
    l.malformed.push("an event of an unknown type".into());
    let v = check_watches(&[l], &history(), FINAL);
    let k: BTreeSet<AnomalyKind> = v.anomalies.iter().map(|a| a.kind).collect();
    let want = [AnomalyKind::Malformed, AnomalyKind::OutsidePrefix, AnomalyKind::Phantom];
    assert_eq!(k, want.into_iter().collect(), "{v:#?}");
}

#[tokio::test]
async fn bad_arguments_are_refused() {
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let ep = vec!["http://127.0.0.1:1".to_string()];
    let now = Instant::now();
    let s = Duration::from_secs(1);
    assert!(matches!(watch(&[], PREFIX, 1, now, s, s, rx.clone()).await, Err(WatchError::Invalid(_))));
    assert!(matches!(watch(&ep, "", 1, now, s, s, rx.clone()).await, Err(WatchError::Invalid(_))));
    assert!(matches!(watch(&ep, PREFIX, 0, now, s, s, rx.clone()).await, Err(WatchError::Invalid(_))));
    assert!(matches!(watch(&ep, PREFIX, 1, now, Duration::ZERO, s, rx).await, Err(WatchError::Invalid(_))));
}

#[tokio::test]
async fn a_watcher_that_cannot_connect_falls_short_when_the_tail_runs_out() -> Result<(), WatchError> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let ep = vec!["http://127.0.0.1:1".to_string()];
    let began = Instant::now();
    let ms = Duration::from_millis;
    let run = watch(&ep, PREFIX, 3, began + ms(200), ms(300), ms(1500), rx);
    let send = async {
        tokio::time::sleep(ms(400)).await;
        tx.send_replace(Some(9));
    };
    let (logs, ()) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(run, send) })
        .await
        .map_err(|_| WatchError::Invalid("the watcher ran past its outer timeout".into()))?;
    let logs = logs?;
    assert!(began.elapsed() >= ms(1700), "{:?}", began.elapsed());
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!((l.reached, l.final_revision, l.reconnects), (2, Some(9), 0), "{l:#?}");
    assert!(l.fell_short.as_deref().is_some_and(|w| w.contains("short of the final revision 9")), "{l:#?}");
    assert!(l.failures.len() >= 2 && l.failures.iter().all(|f| f.error.contains("127.0.0.1:1")), "{l:#?}");
    Ok(())
}

#[tokio::test]
async fn without_a_final_revision_the_watchers_stop_at_until() -> Result<(), WatchError> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    drop(tx);
    let ep = vec!["http://127.0.0.1:1".to_string(), "http://127.0.0.1:2".to_string()];
    let began = Instant::now();
    let s = Duration::from_secs(1);
    let logs = tokio::time::timeout(Duration::from_secs(20), watch(&ep, PREFIX, 1, began, s, 10 * s, rx))
        .await
        .map_err(|_| WatchError::Invalid("the watchers ran past their outer timeout".into()))??;
    assert!(began.elapsed() < 5 * s, "{:?}", began.elapsed());
    assert_eq!(logs.iter().map(|l| l.watcher).collect::<Vec<_>>(), [0, 1]);
    assert!(logs.iter().all(|l| l.fell_short.as_deref() == Some("the caller gave no final revision")));
    Ok(())
}

#[tokio::test]
async fn the_revision_query_gives_up_at_its_deadline() {
    let ep = vec!["http://127.0.0.1:1".to_string()];
    let deadline = Instant::now() + Duration::from_millis(500);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        current_revision(&ep, PREFIX, Duration::from_millis(200), deadline),
    )
    .await;
    assert!(matches!(r, Ok(Err(WatchError::NoRevision { .. }))), "{r:?}");
}
