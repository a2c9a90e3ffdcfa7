//! Request validation: bad input is refused with `InvalidArgument` naming the field, limits are
//! exact, and a refused request changes nothing.

use super::support::{
    delete_op, get, invalid_field, kv, prefix_kvs, put_op, range, range_op, revision, try_compact, try_put,
    try_range, try_revoke, try_txn, try_watch, txn, txn_of, within,
};
use crate::store::{
    Compare, CompareOp, CompareTarget, KeyRange, KeyValue, MAX_KEY_BYTES, MAX_LEASE_TTL_SECS, MAX_TXN_OPS,
    MAX_VALUE_BYTES, PutRequest, RangeRequest, RequestOp, Store, TxnRequest, WatchRequest,
};

fn put_bytes(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> RequestOp {
    RequestOp::Put(PutRequest::new(key, value))
}

/// Checks that each transaction is refused naming `field`, and that nothing changed.
async fn refused<S: Store>(s: &S, cases: Vec<(TxnRequest, &str)>) {
    let before = revision(s).await;
    let keys = prefix_kvs(s, "").await;
    for (req, field) in cases {
        let what = format!("txn expecting a bad {field}");
        assert_eq!(invalid_field(&what, try_txn(s, req).await), field);
    }
    assert_eq!(revision(s).await, before, "refused transactions wrote nothing");
    assert_eq!(prefix_kvs(s, "").await, keys, "refused transactions changed no key");
}

/// Empty keys are refused wherever a single key is named: puts, deletes, reads, compares and
/// watches.
pub async fn empty_keys_are_refused<S: Store>(s: &S) {
    refused(
        s,
        vec![
            (txn_of(vec![put_op("", "v")]), "txn.success[0].put.key"),
            (
                txn_of(vec![put_op("a", "v"), delete_op(KeyRange::key(""), false)]),
                "txn.success[1].delete.key",
            ),
            (txn_of(vec![put_op("a", "v"), range_op(KeyRange::key(""))]), "txn.success[1].range.key"),
            (TxnRequest { failure: vec![put_op("", "v")], ..Default::default() }, "txn.failure[0].put.key"),
            (
                TxnRequest {
                    compare: vec![Compare::version("", CompareOp::Equal, 0)],
                    ..txn_of(vec![put_op("a", "v")])
                },
                "txn.compare[0].key",
            ),
        ],
    )
    .await;
    let range_err = try_range(s, RangeRequest::new(KeyRange::key(""))).await;
    assert_eq!(invalid_field("range of the empty key", range_err), "range.key");
    let put_field = invalid_field("put of the empty key", try_put(s, PutRequest::new("", "v")).await);
    assert!(put_field.ends_with("put.key"), "put of the empty key named {put_field}");
    let watch_err = try_watch(s, WatchRequest::new(KeyRange::key(""))).await;
    assert_eq!(invalid_field("watch of the empty key", watch_err), "watch.key");
    assert_eq!(prefix_kvs(s, "").await, Vec::<KeyValue>::new());
}

/// A value of exactly `MAX_VALUE_BYTES` is stored and read back whole; one byte more is
/// refused, in a put and in a compare.
pub async fn value_size_limit_is_exact<S: Store>(s: &S) {
    let too_big = vec![b'x'; MAX_VALUE_BYTES + 1];
    let compare = Compare {
        range: KeyRange::key("big"),
        op: CompareOp::Equal,
        target: CompareTarget::Value(too_big.clone()),
    };
    refused(
        s,
        vec![
            (txn_of(vec![put_bytes("big", too_big)]), "txn.success[0].put.value"),
            (TxnRequest { compare: vec![compare], ..Default::default() }, "txn.compare[0].value"),
        ],
    )
    .await;
    let exact = vec![b'y'; MAX_VALUE_BYTES];
    let rev = txn(s, txn_of(vec![put_bytes("big", exact.clone())])).await.header.revision;
    assert!(
        get(s, "big").await == Some(kv("big", exact, rev, rev, 1, 0)),
        "a value of MAX_VALUE_BYTES reads back whole"
    );
}

/// A key of exactly `MAX_KEY_BYTES` is stored and read back; one byte more is refused, in
/// puts and reads.
pub async fn key_size_limit_is_exact<S: Store>(s: &S) {
    let too_long = vec![b'k'; MAX_KEY_BYTES + 1];
    refused(s, vec![(txn_of(vec![put_bytes(too_long.clone(), "v")]), "txn.success[0].put.key")]).await;
    for r in [KeyRange::Key(too_long.clone()), KeyRange::Prefix(too_long.clone())] {
        let err = try_range(s, RangeRequest::new(r)).await;
        assert_eq!(invalid_field("range of a key that is too long", err), "range.key");
    }
    let longest = vec![b'k'; MAX_KEY_BYTES];
    let rev = txn(s, txn_of(vec![put_bytes(longest.clone(), "v")])).await.header.revision;
    let got = range(s, RangeRequest::new(KeyRange::Key(longest.clone()))).await.kvs;
    assert!(got == vec![kv(longest, "v", rev, rev, 1, 0)], "a key of MAX_KEY_BYTES reads back whole");
}

/// A transaction of exactly `MAX_TXN_OPS` operations runs (as one revision); one more, counting
/// compares and both branches, is refused.
pub async fn txn_op_limit_is_exact<S: Store>(s: &S) {
    let puts =
        |n: usize, prefix: &str| (0..n).map(|i| put_op(&format!("{prefix}{i:03}"), "v")).collect::<Vec<_>>();
    let compares =
        |n: usize| (0..n).map(|i| Compare::version(format!("c/{i}"), CompareOp::Equal, 0)).collect();
    let half = MAX_TXN_OPS / 2;
    refused(
        s,
        vec![
            (txn_of(puts(MAX_TXN_OPS + 1, "op/")), "txn"),
            (
                TxnRequest {
                    compare: compares(half),
                    success: puts(MAX_TXN_OPS - half + 1, "op/"),
                    failure: vec![],
                },
                "txn",
            ),
            (
                TxnRequest {
                    compare: vec![],
                    success: puts(half, "op/"),
                    failure: puts(MAX_TXN_OPS - half + 1, "op/"),
                },
                "txn",
            ),
        ],
    )
    .await;
    let before = revision(s).await;
    let resp = txn(s, txn_of(puts(MAX_TXN_OPS, "op/"))).await;
    assert_eq!(resp.header.revision, before + 1, "MAX_TXN_OPS puts are one revision");
    assert_eq!(resp.responses.len(), MAX_TXN_OPS);
    let count =
        range(s, RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::prefix("op/")) }).await;
    assert_eq!(count.count, MAX_TXN_OPS as i64);
    let mixed =
        TxnRequest { compare: compares(half), success: puts(MAX_TXN_OPS - half, "mixed/"), failure: vec![] };
    assert!(txn(s, mixed).await.succeeded, "MAX_TXN_OPS compares and operations together run");
}

/// Within one branch a key may be put only once and not both put and deleted; the two
/// branches are checked separately.
pub async fn duplicate_keys_in_a_branch_are_refused<S: Store>(s: &S) {
    let prefix = || KeyRange::prefix("a/");
    refused(
        s,
        vec![
            (txn_of(vec![put_op("a", "1"), put_op("a", "2")]), "txn.success[1].put.key"),
            (
                TxnRequest { failure: vec![put_op("b", "1"), put_op("b", "2")], ..Default::default() },
                "txn.failure[1].put.key",
            ),
            (txn_of(vec![put_op("a/1", "1"), delete_op(prefix(), false)]), "txn.success[1].delete.key"),
            (txn_of(vec![delete_op(prefix(), false), put_op("a/1", "1")]), "txn.success[0].delete.key"),
        ],
    )
    .await;
    let both_branches =
        TxnRequest { compare: vec![], success: vec![put_op("a", "1")], failure: vec![put_op("a", "2")] };
    assert!(txn(s, both_branches).await.succeeded);
    let repeated_reads_and_deletes = txn_of(vec![
        delete_op(KeyRange::key("a"), false),
        delete_op(KeyRange::key("a"), false),
        range_op(KeyRange::key("a")),
        range_op(KeyRange::key("a")),
    ]);
    assert!(txn(s, repeated_reads_and_deletes).await.succeeded);
    assert_eq!(get(s, "a").await, None);
}

/// Backwards intervals, negative limits and lease ids, and out-of-range TTLs and compaction
/// points are refused, naming the field.
pub async fn malformed_requests_are_refused<S: Store>(s: &S) {
    for r in [KeyRange::range("b", "a"), KeyRange::range("b", "b")] {
        let err = try_range(s, RangeRequest::new(r.clone())).await;
        assert_eq!(invalid_field("backwards range", err), "range.key.range_end", "{r:?}");
        let err = try_watch(s, WatchRequest::new(r.clone())).await;
        assert_eq!(invalid_field("backwards watch", err), "watch.key.range_end", "{r:?}");
    }
    let err = try_range(s, RangeRequest::new(KeyRange::prefix("")).limit(-1)).await;
    assert_eq!(invalid_field("negative limit", err), "range.limit");
    refused(
        s,
        vec![
            (
                txn_of(vec![RequestOp::Range(RangeRequest::new(KeyRange::prefix("")).limit(-1))]),
                "txn.success[0].range.limit",
            ),
            (
                txn_of(vec![RequestOp::Put(PutRequest { lease: -1, ..PutRequest::new("k", "v") })]),
                "txn.success[0].put.lease",
            ),
            (
                txn_of(vec![delete_op(KeyRange::range("b", "a"), false)]),
                "txn.success[0].delete.key.range_end",
            ),
        ],
    )
    .await;
    for ttl in [0, -1, MAX_LEASE_TTL_SECS + 1] {
        let err = within("lease grant", s.lease_grant(9009, ttl)).await;
        assert_eq!(invalid_field("lease ttl", err), "lease.ttl", "ttl {ttl}");
    }
    let err = within("lease grant", s.lease_grant(-5, 10)).await;
    assert_eq!(invalid_field("negative lease id", err), "lease.id");
    assert_eq!(invalid_field("negative lease id", try_revoke(s, -5).await), "lease.id");
    for rev in [0, -1] {
        assert_eq!(invalid_field("compaction point", try_compact(s, rev).await), "compact.revision", "{rev}");
    }
    let leases = within("lease listing", s.lease_leases()).await;
    assert_eq!(leases, Ok(vec![]), "refused grants created no lease");
}
