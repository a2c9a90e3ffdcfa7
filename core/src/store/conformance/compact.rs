//! Compaction: what is discarded, what is kept, and which compaction points are refused.

use super::support::{
    compact, create, delete, delete_event, events_at, header, kv, put, put_event, put_op, range, range_resp,
    responses_until, revision, try_compact, try_range, try_txn, txn_of, watch, watch_error,
};
use crate::store::{CompactResponse, Error, KeyRange, RangeRequest, RequestOp, Store, WatchRequest};

/// After compacting at `c`, reads below `c` fail with `Compacted`, reads at `c` and later
/// see what they always saw (the latest version of every live key is kept, with its create
/// revision and version), and compaction itself is not a write.
pub async fn compaction_discards_history_below_it<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let r = |n: i64| r0 + n;
    put(s, "c/a", "1").await;
    put(s, "c/a", "2").await;
    put(s, "c/b", "1").await;
    delete(s, KeyRange::key("c/b"), false).await;
    put(s, "c/c", "1").await;
    put(s, "c/a", "3").await;
    let a2 = kv("c/a", "2", r(1), r(2), 2, 0);
    let a3 = kv("c/a", "3", r(1), r(6), 3, 0);
    let c1 = kv("c/c", "1", r(5), r(5), 1, 0);

    assert_eq!(compact(s, r(4)).await, CompactResponse { header: header(r(6)) });
    assert_eq!(revision(s).await, r(6), "compaction is not a write");
    let prefix = || RangeRequest::new(KeyRange::prefix("c/"));
    for n in 1..4 {
        let err = Error::Compacted { requested: r(n), compact_revision: r(4) };
        assert_eq!(try_range(s, prefix().at(r(n))).await, Err(err), "read at r{n}");
    }
    let kept = [(4, vec![a2.clone()]), (5, vec![a2, c1.clone()]), (6, vec![a3.clone(), c1.clone()])];
    for (n, kvs) in kept {
        let count = kvs.len() as i64;
        assert_eq!(range(s, prefix().at(r(n))).await, range_resp(r(6), kvs, false, count), "read at r{n}");
    }
    let in_txn = txn_of(vec![put_op("c/d", "1"), RequestOp::Range(prefix().at(r(2)))]);
    assert_eq!(try_txn(s, in_txn).await, Err(Error::Compacted { requested: r(2), compact_revision: r(4) }));

    // Compacting everything keeps every live key as it is.
    compact(s, r(6)).await;
    assert_eq!(range(s, prefix()).await, range_resp(r(6), vec![a3, c1], false, 2));
    let err = Error::Compacted { requested: r(5), compact_revision: r(6) };
    assert_eq!(try_range(s, prefix().at(r(5))).await, Err(err));
    assert_eq!(revision(s).await, r(6));
    let b = create(s, "c/b", "again", 0).await;
    assert_eq!(b, kv("c/b", "again", r(7), r(7), 1, 0), "a key deleted before compaction starts over");
}

/// Compacting at or below the current compaction point fails with `Compacted`; past the
/// current revision with `FutureRevision`; neither changes anything.
pub async fn compaction_refuses_stale_and_future_points<S: Store>(s: &S) {
    let r0 = revision(s).await;
    for i in 0..4 {
        put(s, "cr/k", &i.to_string()).await;
    }
    let now = r0 + 4;
    compact(s, r0 + 2).await;
    for rev in [r0 + 2, r0 + 1] {
        let err = Error::Compacted { requested: rev, compact_revision: r0 + 2 };
        assert_eq!(try_compact(s, rev).await, Err(err), "compact at {rev}");
    }
    for rev in [now + 1, now + 100] {
        assert_eq!(try_compact(s, rev).await, Err(Error::FutureRevision { requested: rev, current: now }));
    }
    let still = range(s, RangeRequest::new(KeyRange::key("cr/k")).at(r0 + 2)).await;
    assert_eq!(still, range_resp(now, vec![kv("cr/k", "1", r0 + 1, r0 + 2, 2, 0)], false, 1));
    assert_eq!(compact(s, now).await, CompactResponse { header: header(now) });
    assert_eq!(revision(s).await, now);
}

/// A watch from below the compaction point fails with `Compacted`; a watch from exactly the
/// compaction point replays every change from it, including a delete at that revision.
pub async fn watch_from_compaction_point_replays_it<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let r = |n: i64| r0 + n;
    put(s, "t/a", "1").await;
    put(s, "t/b", "1").await;
    delete(s, KeyRange::key("t/a"), false).await;
    put(s, "t/b", "2").await;
    compact(s, r(3)).await;

    for start in [r(1), r(2)] {
        let req = WatchRequest::new(KeyRange::prefix("t/")).from_revision(start);
        let err = watch_error(s, req).await;
        assert_eq!(err, Error::Compacted { requested: start, compact_revision: r(3) }, "watch from {start}");
    }
    let mut from_point = watch(s, WatchRequest::new(KeyRange::prefix("t/")).from_revision(r(3))).await;
    let mut above = watch(s, WatchRequest::new(KeyRange::prefix("t/")).from_revision(r(4))).await;
    put(s, "t/c", "1").await;
    let history = vec![
        events_at(r(3), vec![delete_event("t/a", r(3), None)]),
        events_at(r(4), vec![put_event(kv("t/b", "2", r(2), r(4), 2, 0), None)]),
        events_at(r(5), vec![put_event(kv("t/c", "1", r(5), r(5), 1, 0), None)]),
    ];
    assert_eq!(responses_until(&mut from_point, r(5), "watch from the compaction point").await, history);
    assert_eq!(
        responses_until(&mut above, r(5), "watch from above the compaction point").await,
        history[1..]
    );
}
