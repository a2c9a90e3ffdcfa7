//! Watch semantics: what a watch delivers, from when, and in what shape.

use super::support::{
    assert_same_responses, create, delete, delete_event, delete_op, events_at, expected_puts, kv, put,
    put_event, put_op, responses_until, revision, txn, txn_of, watch, watch_now,
};
use crate::store::{KeyRange, Store, WatchRequest};

/// A watch from now (start revision 0) delivers every later change in its range, one
/// response per revision with all of a transaction's events in operation order, deletes as
/// the key with the deleting revision, and previous key-values only when asked.
pub async fn watch_from_now_sees_later_changes<S: Store>(s: &S) {
    let old1 = create(s, "w/old", "1", 0).await;
    let mut plain = watch_now(s, KeyRange::prefix("w/"), false).await;
    let mut with_prev = watch_now(s, KeyRange::prefix("w/"), true).await;
    let r = revision(s).await;
    assert_eq!(put(s, "w/old", "2").await, r + 1);
    assert_eq!(put(s, "x", "1").await, r + 2);
    assert_eq!(delete(s, KeyRange::key("w/old"), false).await.deleted, 1);
    txn(s, txn_of(vec![put_op("w/b", "1"), put_op("w/a", "1")])).await;

    let old2 = kv("w/old", "2", old1.create_revision, r + 1, 2, 0);
    let b = kv("w/b", "1", r + 4, r + 4, 1, 0);
    let a = kv("w/a", "1", r + 4, r + 4, 1, 0);
    let expected = |prev: bool| {
        let p = |kv: &crate::store::KeyValue| prev.then(|| kv.clone());
        vec![
            events_at(r + 1, vec![put_event(old2.clone(), p(&old1))]),
            events_at(r + 3, vec![delete_event("w/old", r + 3, p(&old2))]),
            events_at(r + 4, vec![put_event(b.clone(), None), put_event(a.clone(), None)]),
        ]
    };
    assert_eq!(responses_until(&mut plain, r + 4, "prefix w/ from now").await, expected(false));
    assert_eq!(responses_until(&mut with_prev, r + 4, "prefix w/ from now, prev_kv").await, expected(true));
}

/// Watches of one key, a prefix, an interval and an unbounded interval each deliver exactly
/// the changes of their keys; a transaction touching several is cut to each watch's part.
pub async fn watch_filters_by_key_prefix_and_interval<S: Store>(s: &S) {
    let ranges = [
        KeyRange::key("f/b"),
        KeyRange::prefix("f/"),
        KeyRange::range("f/b", "f/d"),
        KeyRange::range("f/c", ""),
    ];
    let mut streams = Vec::new();
    for r in &ranges {
        streams.push(watch_now(s, r.clone(), false).await);
    }
    let r = revision(s).await;
    for key in ["f/a", "f/b", "f/c", "f/d", "g", "e"] {
        put(s, key, "1").await;
    }
    txn(s, txn_of(vec![put_op("f/b", "2"), put_op("f/c", "2")])).await;
    let last = r + 7;

    let new = |key: &str, rev| put_event(kv(key, "1", rev, rev, 1, 0), None);
    let (fa, fb, fc, fd, g) =
        (new("f/a", r + 1), new("f/b", r + 2), new("f/c", r + 3), new("f/d", r + 4), new("g", r + 5));
    let fb2 = put_event(kv("f/b", "2", r + 2, last, 2, 0), None);
    let fc2 = put_event(kv("f/c", "2", r + 3, last, 2, 0), None);
    let expected = [
        vec![events_at(r + 2, vec![fb.clone()]), events_at(last, vec![fb2.clone()])],
        vec![
            events_at(r + 1, vec![fa]),
            events_at(r + 2, vec![fb.clone()]),
            events_at(r + 3, vec![fc.clone()]),
            events_at(r + 4, vec![fd.clone()]),
            events_at(last, vec![fb2.clone(), fc2.clone()]),
        ],
        vec![
            events_at(r + 2, vec![fb]),
            events_at(r + 3, vec![fc.clone()]),
            events_at(last, vec![fb2, fc2.clone()]),
        ],
        vec![
            events_at(r + 3, vec![fc]),
            events_at(r + 4, vec![fd]),
            events_at(r + 5, vec![g]),
            events_at(last, vec![fc2]),
        ],
    ];
    for ((stream, range), expected) in streams.iter_mut().zip(&ranges).zip(expected) {
        let what = format!("watch of {range:?}");
        assert_eq!(responses_until(stream, last, &what).await, expected, "{what}");
    }
}

/// A watch from a past revision replays history from exactly that revision, in revision order
/// with previous key-values when asked, then continues with live changes without a gap.
pub async fn watch_replays_history_from_past_revision<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let r = |n: i64| r0 + n;
    put(s, "h/a", "1").await;
    put(s, "h/b", "1").await;
    put(s, "x", "1").await;
    put(s, "h/a", "2").await;
    delete(s, KeyRange::key("h/b"), false).await;
    txn(s, txn_of(vec![put_op("h/c", "1"), delete_op(KeyRange::key("h/a"), false)])).await;

    let a1 = kv("h/a", "1", r(1), r(1), 1, 0);
    let b1 = kv("h/b", "1", r(2), r(2), 1, 0);
    let a2 = kv("h/a", "2", r(1), r(4), 2, 0);
    let c1 = kv("h/c", "1", r(6), r(6), 1, 0);
    let d1 = kv("h/d", "1", r(7), r(7), 1, 0);
    let history = |prev: bool| {
        let p = |kv: &crate::store::KeyValue| prev.then(|| kv.clone());
        vec![
            events_at(r(1), vec![put_event(a1.clone(), None)]),
            events_at(r(2), vec![put_event(b1.clone(), None)]),
            events_at(r(4), vec![put_event(a2.clone(), p(&a1))]),
            events_at(r(5), vec![delete_event("h/b", r(5), p(&b1))]),
            events_at(r(6), vec![put_event(c1.clone(), None), delete_event("h/a", r(6), p(&a2))]),
            events_at(r(7), vec![put_event(d1.clone(), None)]),
        ]
    };
    let from = |rev: i64, prev_kv: bool| WatchRequest {
        prev_kv,
        ..WatchRequest::new(KeyRange::prefix("h/")).from_revision(rev)
    };
    let mut from_2 = watch(s, from(r(2), true)).await;
    let mut from_1 = watch(s, from(r(1), false)).await;
    let mut from_6 = watch(s, from(r(6), true)).await;
    let mut x_from_3 = watch(s, WatchRequest::new(KeyRange::key("x")).from_revision(r(3))).await;
    put(s, "h/d", "1").await;
    put(s, "x", "2").await;

    assert_eq!(responses_until(&mut from_2, r(7), "prefix h/ from r2").await, history(true)[1..].to_vec());
    assert_eq!(responses_until(&mut from_1, r(7), "prefix h/ from r1").await, history(false));
    assert_eq!(responses_until(&mut from_6, r(7), "prefix h/ from r6").await, history(true)[4..].to_vec());
    let x = vec![
        events_at(r(3), vec![put_event(kv("x", "1", r(3), r(3), 1, 0), None)]),
        events_at(r(8), vec![put_event(kv("x", "2", r(3), r(8), 2, 0), None)]),
    ];
    assert_eq!(responses_until(&mut x_from_3, r(8), "key x from r3").await, x);
}

/// A watch may start at a revision that does not exist yet; it delivers changes from that
/// revision on.
pub async fn watch_from_future_revision_waits_for_it<S: Store>(s: &S) {
    let r = revision(s).await;
    let req = WatchRequest::new(KeyRange::prefix("fu/")).from_revision(r + 3);
    let mut stream = watch(s, req).await;
    for key in ["fu/a", "fu/b", "fu/c", "fu/d"] {
        put(s, key, "1").await;
    }
    let new = |key: &str, rev| events_at(rev, vec![put_event(kv(key, "1", rev, rev, 1, 0), None)]);
    let got = responses_until(&mut stream, r + 4, "prefix fu/ from a future revision").await;
    assert_eq!(got, vec![new("fu/c", r + 3), new("fu/d", r + 4)]);
}

/// Many watchers on overlapping ranges, created at different points of a stream of writes
/// (some live, some replaying), each see exactly their changes.
pub async fn many_watchers_see_consistent_streams<S: Store>(s: &S) {
    const WRITES: i64 = 40;
    let r0 = revision(s).await;
    let writes: Vec<(String, String)> =
        (0..WRITES).map(|i| (format!("m/{}", i % 4), i.to_string())).collect();
    let expected = expected_puts(&mut Default::default(), r0 + 1, &writes, true);
    let mut streams = Vec::new();
    for (i, (key, value)) in writes.iter().enumerate() {
        if i % 10 == 0 {
            // One live watcher of everything and one replaying from the start.
            streams.push((0, watch_now(s, KeyRange::prefix("m/"), true).await, i));
            let replay = WatchRequest {
                prev_kv: true,
                ..WatchRequest::new(KeyRange::prefix("m/")).from_revision(r0 + 1)
            };
            streams.push((1, watch(s, replay).await, 0));
        }
        put(s, key, value).await;
    }
    for (n, (kind, mut stream, from)) in streams.into_iter().enumerate() {
        let what =
            format!("watcher {n} ({} from write {from})", if kind == 0 { "live" } else { "replaying" });
        let got = responses_until(&mut stream, r0 + WRITES, &what).await;
        assert_same_responses(&got, &expected[from..], &what);
    }
}
