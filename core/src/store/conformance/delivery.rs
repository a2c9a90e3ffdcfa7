//! Watch delivery under load: no gap and no duplicate with concurrent writes, slow consumers,
//! compaction overtaking a slow watcher, progress notifications, dropped streams.

use std::collections::BTreeMap;
use std::time::Duration;

use super::PROGRESS_INTERVAL_BOUND;
use super::support::{
    assert_same_responses, compact, events_at, expected_puts, get, kv, next_item, next_response, put,
    put_event, ready_item, responses_until, revision, watch, watch_now, within,
};
use crate::store::{Error, KeyRange, Revision, Store, WatchRequest, WatchResponse, WatchStream};

/// How long a case waits for a progress notification at a given revision: a few intervals.
const PROGRESS_WAIT: Duration = Duration::from_millis(4 * PROGRESS_INTERVAL_BOUND.as_millis() as u64);

/// Lets the store notice that a watcher stopped reading.
const SETTLE: Duration = Duration::from_millis(200);

fn numbered_writes(prefix: &str, keys: i64, n: i64) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("{prefix}{}", i % keys), i.to_string())).collect()
}

/// 500 writes while a watcher reads concurrently: it receives every revision exactly once, in
/// order; a second watcher of one key that only reads afterwards gets its part, with
/// previous key-values.
pub async fn watch_interleaved_with_writes_has_no_gap_or_duplicate<S: Store>(s: &S) {
    const WRITES: i64 = 500;
    let mut all = watch_now(s, KeyRange::prefix("i/"), false).await;
    let mut one = watch_now(s, KeyRange::key("i/3"), true).await;
    let r0 = revision(s).await;
    let writes = numbered_writes("i/", 7, WRITES);
    let expected_all = expected_puts(&mut BTreeMap::new(), r0 + 1, &writes, false);
    let expected_one: Vec<WatchResponse> = expected_puts(&mut BTreeMap::new(), r0 + 1, &writes, true)
        .into_iter()
        .filter(|r| r.events[0].kv.key == b"i/3")
        .collect();

    let writer = async {
        for (i, (key, value)) in writes.iter().enumerate() {
            assert_eq!(put(s, key, value).await, r0 + 1 + i as Revision, "write {i}");
            if i % 3 == 0 {
                // Give the reader a turn, so reads and writes interleave.
                tokio::task::yield_now().await;
            }
        }
    };
    let reader = responses_until(&mut all, r0 + WRITES, "prefix i/ read during the writes");
    let ((), got) = futures::join!(writer, reader);
    assert_same_responses(&got, &expected_all, "watcher reading during the writes");

    let last_one = expected_one.last().expect("key i/3 is written").header.revision;
    let got_one = responses_until(&mut one, last_one, "key i/3 read after the writes").await;
    assert_same_responses(&got_one, &expected_one, "watcher of i/3 reading after the writes");
}

/// A watcher that reads nothing during 500 writes (more than any reasonable channel holds)
/// then receives all of them in order, and afterwards live changes again.
pub async fn slow_watcher_receives_everything_in_order<S: Store>(s: &S) {
    const WRITES: i64 = 500;
    let mut slow = watch_now(s, KeyRange::prefix("s/"), true).await;
    let r0 = revision(s).await;
    let writes = numbered_writes("s/", 5, WRITES);
    let mut latest = BTreeMap::new();
    let expected = expected_puts(&mut latest, r0 + 1, &writes, true);
    for (key, value) in &writes {
        put(s, key, value).await;
    }
    tokio::time::sleep(SETTLE).await;
    let got = responses_until(&mut slow, r0 + WRITES, "slow watcher of prefix s/").await;
    assert_same_responses(&got, &expected, "slow watcher");

    let after = vec![("s/0".to_string(), "after".to_string())];
    let expected = expected_puts(&mut latest, r0 + WRITES + 1, &after, true);
    put(s, "s/0", "after").await;
    assert_eq!(vec![next_response(&mut slow, "slow watcher, caught up").await], expected);
}

/// A watcher replaying a long history while compaction passes it receives a gapless prefix
/// of the history and then either the rest or `Compacted` naming the first revision it
/// missed, after which the stream ends.
pub async fn compaction_overtaking_a_slow_watcher_ends_it<S: Store>(s: &S) {
    const WRITES: i64 = 600;
    let r0 = revision(s).await;
    let writes = numbered_writes("o/", 1, WRITES);
    let expected = expected_puts(&mut BTreeMap::new(), r0 + 1, &writes, false);
    for (key, value) in &writes {
        put(s, key, value).await;
    }
    let now = r0 + WRITES;
    let mut slow = watch(s, WatchRequest::new(KeyRange::prefix("o/")).from_revision(r0 + 1)).await;
    tokio::time::sleep(SETTLE).await;
    compact(s, now).await;

    let mut delivered = 0usize;
    while delivered < expected.len() {
        match next_item(&mut slow, "slow watcher overtaken by compaction").await {
            Some(Ok(resp)) => {
                assert_eq!(resp, expected[delivered], "response {delivered}");
                delivered += 1;
            }
            Some(Err(e)) => {
                let missed = r0 + 1 + delivered as Revision;
                assert_eq!(e, Error::Compacted { requested: missed, compact_revision: now });
                let end = next_item(&mut slow, "a watch ended by compaction").await;
                assert!(end.is_none(), "after Compacted the stream ends, got {end:?}");
                return;
            }
            None => panic!("the stream ended after {delivered} responses with no error"),
        }
    }
    // The store buffered the whole history: the watch goes on.
    let rev = put(s, "o/0", "after").await;
    let want = events_at(rev, vec![put_event(kv("o/0", "after", r0 + 1, rev, WRITES + 1, 0), None)]);
    assert_eq!(next_response(&mut slow, "watcher that saw the whole history").await, want);
}

/// Waits until `stream` reports progress at `rev`; every response before must be a progress
/// notification at or below `rev`.
async fn progress_at(stream: &mut WatchStream, rev: Revision) {
    let waiting = async {
        loop {
            let resp = next_response(stream, "progress notifications").await;
            assert!(resp.is_progress_notify(), "expected only progress notifications, got {resp:?}");
            assert!(
                resp.header.revision <= rev,
                "progress at {} is past the store's {rev}",
                resp.header.revision
            );
            if resp.header.revision == rev {
                return;
            }
        }
    };
    if tokio::time::timeout(PROGRESS_WAIT, waiting).await.is_err() {
        panic!(
            "no progress notification at revision {rev} within {PROGRESS_WAIT:?}: the suite expects the \
             store under test to send them at least every {PROGRESS_INTERVAL_BOUND:?}"
        );
    }
}

/// An idle watch that asked for progress notifications gets them, carrying the current
/// revision (also when writes outside its range moved it), and never ahead of an event it has
/// not delivered yet; a watch that did not ask gets none.
pub async fn progress_notifications_carry_the_current_revision<S: Store>(s: &S) {
    let noisy_req = WatchRequest { progress_notify: true, ..WatchRequest::new(KeyRange::prefix("pn/")) };
    let mut noisy = watch(s, noisy_req).await;
    let mut quiet = watch_now(s, KeyRange::prefix("pn/"), false).await;
    for i in 0..3 {
        put(s, &format!("other/{i}"), "1").await;
    }
    let now = revision(s).await;
    progress_at(&mut noisy, now).await;
    progress_at(&mut noisy, now).await;
    let early = ready_item(&mut quiet);
    assert!(early.is_none(), "a watch that did not ask for progress notifications got {early:?}");

    let rev = put(s, "pn/a", "1").await;
    let event = events_at(rev, vec![put_event(kv("pn/a", "1", rev, rev, 1, 0), None)]);
    loop {
        let resp = next_response(&mut noisy, "progress watch, waiting for an event").await;
        if resp.is_progress_notify() {
            assert!(
                resp.header.revision < rev,
                "progress at {} sent before the event at {rev}",
                resp.header.revision
            );
            continue;
        }
        assert_eq!(resp, event);
        break;
    }
    assert_eq!(next_response(&mut quiet, "watch without progress").await, event);
    progress_at(&mut noisy, rev).await;
}

/// A progress notification asked of a watch replaying 300 revisions arrives after every one
/// of them, at a revision no lower than the last (etcd answers progress requests only for
/// synced watchers); asked of an idle synced watch it comes at once with the current
/// revision; asking a dropped watch is refused.
pub async fn requested_progress_follows_replayed_history<S: Store>(s: &S) {
    let r0 = revision(s).await;
    for (key, value) in numbered_writes("rp/", 5, 300) {
        put(s, &key, &value).await;
    }
    let last = r0 + 300;
    let mut replaying = watch(s, WatchRequest::new(KeyRange::prefix("rp/")).from_revision(r0 + 1)).await;
    assert!(replaying.progress_handle().request(), "a live watch refused a progress request");
    let mut next = r0 + 1;
    loop {
        let resp = next_response(&mut replaying, "a replaying watch asked for progress").await;
        if resp.requested {
            assert!(resp.events.is_empty(), "a requested progress notification carried events: {resp:?}");
            assert_eq!(
                next,
                last + 1,
                "progress at {} came before the event at {next}",
                resp.header.revision
            );
            assert!(resp.header.revision >= last, "progress at {} is below {last}", resp.header.revision);
            break;
        }
        assert!(!resp.is_progress_notify(), "a progress notification nobody asked for: {resp:?}");
        assert_eq!(resp.header.revision, next, "replayed events out of order");
        next += 1;
    }

    let mut idle = watch_now(s, KeyRange::prefix("rp-idle/"), false).await;
    put(s, "other/rp", "1").await;
    let now = revision(s).await;
    assert!(idle.progress_handle().request(), "a live idle watch refused a progress request");
    let resp = next_response(&mut idle, "an idle watch asked for progress").await;
    assert!(
        resp.requested && resp.events.is_empty(),
        "expected a requested progress notification, got {resp:?}"
    );
    assert!(resp.header.revision >= now, "progress at {} is below the store's {now}", resp.header.revision);

    // The store notices the dropped stream on its own time: poll until it refuses.
    let handle = idle.progress_handle();
    drop(idle);
    within("a dropped watch refusing progress requests", async {
        while handle.request() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Dropping streams (caught up, behind, replaying, with progress) at any point leaves the
/// store working: writes succeed and new watches see them.
pub async fn dropping_watch_streams_is_harmless<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let mut half_read = watch_now(s, KeyRange::prefix("dr/"), false).await;
    let live = watch_now(s, KeyRange::prefix("dr/"), true).await;
    let replaying = watch(s, WatchRequest::new(KeyRange::prefix("")).from_revision(r0 + 1)).await;
    let progress =
        watch(s, WatchRequest { progress_notify: true, ..WatchRequest::new(KeyRange::prefix("dr/")) }).await;
    let writes = numbered_writes("dr/", 3, 300);
    for (key, value) in &writes[..10] {
        put(s, key, value).await;
    }
    let first = next_response(&mut half_read, "a watch read once before being dropped").await;
    assert_eq!(first.header.revision, r0 + 1);
    for (key, value) in &writes[10..] {
        put(s, key, value).await;
    }
    drop((half_read, live, replaying, progress));
    let mut latest = BTreeMap::new();
    let expected = expected_puts(&mut latest, r0 + 1, &writes, false);
    let mut again = watch(s, WatchRequest::new(KeyRange::prefix("dr/")).from_revision(r0 + 1)).await;
    let rev = put(s, "dr/0", "last").await;
    assert_eq!(rev, r0 + 301);
    let got = responses_until(&mut again, r0 + 300, "a watch after others were dropped").await;
    assert_same_responses(&got, &expected, "a watch after others were dropped");
    let last = vec![("dr/0".to_string(), "last".to_string())];
    let tail = expected_puts(&mut latest, rev, &last, false);
    assert_eq!(vec![next_response(&mut again, "the write after the drops").await], tail);
    assert_eq!(get(s, "dr/0").await.map(|kv| kv.value), Some(b"last".to_vec()));
}
