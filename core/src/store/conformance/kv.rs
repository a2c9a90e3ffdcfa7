//! Revisions, ranges, puts and deletes.

use super::support::{
    create, del_req, delete, get, header, kv, leases, prefix_kvs, put, put_op, put_req, range, range_op,
    range_resp, revision, try_delete, try_put, try_range, txn, txn_of,
};
use crate::store::{
    Compare, DeleteRangeResponse, Error, KeyRange, KeyValue, LeaseId, PutRequest, PutResponse, RangeRequest,
    ResponseOp, Store, TxnRequest, TxnResponse,
};

/// A fresh store is empty; each write transaction bumps the revision by exactly one, however
/// many keys it writes; reads, read-only transactions, failed guards with nothing to run and
/// deletes that match nothing do not bump it.
pub async fn revisions_bump_once_per_write<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let everything = RangeRequest::new(KeyRange::prefix(""));
    assert_eq!(
        range(s, everything.clone()).await,
        range_resp(r0, vec![], false, 0),
        "a fresh store has no keys"
    );
    assert_eq!(leases(s).await, Vec::<LeaseId>::new(), "a fresh store has no leases");

    assert_eq!(put(s, "a", "1").await, r0 + 1);
    assert_eq!(put(s, "b", "1").await, r0 + 2);
    let three = txn(s, txn_of(vec![put_op("c", "1"), put_op("d", "1"), put_op("a", "2")])).await;
    let put_resp = ResponseOp::Put(PutResponse { header: header(r0 + 3), prev_kv: None });
    assert_eq!(
        three,
        TxnResponse {
            header: header(r0 + 3),
            succeeded: true,
            responses: vec![put_resp.clone(), put_resp.clone(), put_resp]
        },
        "a transaction of three puts is one revision"
    );
    let a = kv("a", "2", r0 + 1, r0 + 3, 2, 0);
    let all = vec![
        a.clone(),
        kv("b", "1", r0 + 2, r0 + 2, 1, 0),
        kv("c", "1", r0 + 3, r0 + 3, 1, 0),
        kv("d", "1", r0 + 3, r0 + 3, 1, 0),
    ];
    assert_eq!(range(s, everything.clone()).await, range_resp(r0 + 3, all.clone(), false, 4));

    let nothing = DeleteRangeResponse { header: header(r0 + 3), deleted: 0, prev_kvs: vec![] };
    assert_eq!(delete(s, KeyRange::key("zz"), true).await, nothing, "deleting an absent key is no write");
    assert_eq!(
        delete(s, KeyRange::prefix("none/"), false).await,
        nothing,
        "an empty range delete is no write"
    );
    let read_only = txn(s, txn_of(vec![range_op(KeyRange::key("a"))])).await;
    assert_eq!(
        read_only,
        TxnResponse {
            header: header(r0 + 3),
            succeeded: true,
            responses: vec![ResponseOp::Range(range_resp(r0 + 3, vec![a], false, 1))],
        },
        "a read-only transaction is no write"
    );
    let empty = TxnResponse { header: header(r0 + 3), succeeded: true, responses: vec![] };
    assert_eq!(txn(s, TxnRequest::default()).await, empty, "an empty transaction is no write");
    let guarded =
        TxnRequest { compare: vec![Compare::absent("a")], success: vec![put_op("e", "1")], failure: vec![] };
    assert_eq!(
        txn(s, guarded).await,
        TxnResponse { succeeded: false, ..empty },
        "a failed guard with an empty failure branch is no write"
    );
    assert_eq!(range(s, everything).await, range_resp(r0 + 3, all, false, 4), "no-op writes changed nothing");

    let deleted = DeleteRangeResponse { header: header(r0 + 4), deleted: 1, prev_kvs: vec![] };
    assert_eq!(delete(s, KeyRange::key("b"), false).await, deleted);
    assert_eq!(revision(s).await, r0 + 4);
}

/// `create_revision`, `mod_revision` and `version` follow a key's writes; deleting and
/// recreating a key starts it over at version 1; a negative or zero read revision reads now.
pub async fn key_fields_follow_history<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let (r1, r2, r4, r5) = (r0 + 1, r0 + 2, r0 + 4, r0 + 5);
    assert_eq!(put(s, "a", "v1").await, r1);
    let v1 = kv("a", "v1", r1, r1, 1, 0);
    assert_eq!(get(s, "a").await, Some(v1.clone()));
    assert_eq!(put(s, "a", "v2").await, r2);
    let v2 = kv("a", "v2", r1, r2, 2, 0);
    assert_eq!(get(s, "a").await, Some(v2.clone()));
    assert_eq!(delete(s, KeyRange::key("a"), false).await.deleted, 1);
    assert_eq!(get(s, "a").await, None);
    assert_eq!(put(s, "a", "v3").await, r4);
    let v3 = kv("a", "v3", r4, r4, 1, 0);
    assert_eq!(get(s, "a").await, Some(v3.clone()), "a recreated key starts over at version 1");
    assert_eq!(put(s, "a", "v4").await, r5);
    let v4 = kv("a", "v4", r4, r5, 2, 0);

    let expected: [(i64, Vec<KeyValue>); 7] = [
        (r1, vec![v1]),
        (r2, vec![v2]),
        (r0 + 3, vec![]),
        (r4, vec![v3]),
        (r5, vec![v4.clone()]),
        (0, vec![v4.clone()]),
        (-1, vec![v4]),
    ];
    for (at, kvs) in expected {
        let n = kvs.len() as i64;
        let got = range(s, RangeRequest::new(KeyRange::key("a")).at(at)).await;
        assert_eq!(got, range_resp(r5, kvs, false, n), "key a read at revision {at}");
    }
}

/// Single keys, prefixes (including the empty prefix and one of `0xff` bytes, which has no
/// upper bound) and `[start, end)` intervals with and without an end.
pub async fn range_selects_keys_prefixes_and_intervals<S: Store>(s: &S) {
    let mut all = Vec::new();
    for key in [&b"a"[..], b"a/1", b"a/2", b"a0", b"b", b"b/1", b"c", b"\xff", b"\xff\x00", b"\xff\xff"] {
        all.push(create(s, key, "v", 0).await);
    }
    let now = revision(s).await;
    let pick = |idx: &[usize]| idx.iter().map(|i| all[*i].clone()).collect::<Vec<_>>();
    let cases: Vec<(KeyRange, Vec<KeyValue>)> = vec![
        (KeyRange::key("a/1"), pick(&[1])),
        (KeyRange::key("a/"), vec![]),
        (KeyRange::prefix("a/"), pick(&[1, 2])),
        (KeyRange::prefix("a"), pick(&[0, 1, 2, 3])),
        (KeyRange::range("a/", "b"), pick(&[1, 2, 3])),
        (KeyRange::range("a0", "b/1"), pick(&[3, 4])),
        (KeyRange::range("b", ""), pick(&[4, 5, 6, 7, 8, 9])),
        (KeyRange::range(&b"\x00"[..], &b"\xff"[..]), pick(&[0, 1, 2, 3, 4, 5, 6])),
        (KeyRange::prefix(""), all.clone()),
        (KeyRange::prefix(&b"\xff"[..]), pick(&[7, 8, 9])),
        (KeyRange::prefix(&b"\xff\xff"[..]), pick(&[9])),
        (KeyRange::prefix("d"), vec![]),
    ];
    for (r, kvs) in cases {
        let n = kvs.len() as i64;
        let got = range(s, RangeRequest::new(r.clone())).await;
        assert_eq!(got, range_resp(now, kvs, false, n), "range {r:?}");
    }
}

/// `limit` truncates in key order and sets `more`; `count` always counts every match;
/// `count_only` returns no key-values; `keys_only` clears only the values.
pub async fn range_limit_count_and_projections<S: Store>(s: &S) {
    let mut all = Vec::new();
    for i in 1..=5 {
        all.push(create(s, format!("k/{i}"), &format!("value {i}"), 0).await);
    }
    let now = revision(s).await;
    let req = || RangeRequest::new(KeyRange::prefix("k/"));
    for (limit, kvs, more) in [
        (0, all.clone(), false),
        (1, all[..1].to_vec(), true),
        (2, all[..2].to_vec(), true),
        (4, all[..4].to_vec(), true),
        (5, all.clone(), false),
        (6, all.clone(), false),
    ] {
        assert_eq!(range(s, req().limit(limit)).await, range_resp(now, kvs, more, 5), "limit {limit}");
    }
    let count_only = RangeRequest { count_only: true, ..req() };
    assert_eq!(range(s, count_only).await, range_resp(now, vec![], false, 5), "count_only");
    let nothing = RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::prefix("none/")) };
    assert_eq!(range(s, nothing).await, range_resp(now, vec![], false, 0), "count_only of nothing");

    let keys: Vec<KeyValue> = all.iter().map(|kv| KeyValue { value: vec![], ..kv.clone() }).collect();
    assert_eq!(
        range(s, RangeRequest { keys_only: true, ..req() }).await,
        range_resp(now, keys.clone(), false, 5)
    );
    assert_eq!(
        range(s, RangeRequest { keys_only: true, ..req().limit(3) }).await,
        range_resp(now, keys[..3].to_vec(), true, 5),
        "keys_only with a limit"
    );
    assert_eq!(
        range(s, req().at(all[2].mod_revision).limit(2)).await,
        range_resp(now, all[..2].to_vec(), true, 3),
        "limit at a past revision counts the keys of then"
    );
}

/// Reads at every past revision of a history of puts, a multi-key transaction and deletes
/// see the keys exactly as they were.
pub async fn reads_at_past_revisions<S: Store>(s: &S) {
    let r0 = revision(s).await;
    let r = |n: i64| r0 + n;
    put(s, "x/a", "1").await;
    put(s, "x/b", "1").await;
    txn(s, txn_of(vec![put_op("x/a", "2"), put_op("x/c", "1")])).await;
    delete(s, KeyRange::key("x/b"), false).await;
    assert_eq!(delete(s, KeyRange::prefix("x/"), false).await.deleted, 2);
    put(s, "x/b", "2").await;

    let a1 = kv("x/a", "1", r(1), r(1), 1, 0);
    let a2 = kv("x/a", "2", r(1), r(3), 2, 0);
    let b1 = kv("x/b", "1", r(2), r(2), 1, 0);
    let c1 = kv("x/c", "1", r(3), r(3), 1, 0);
    let b2 = kv("x/b", "2", r(6), r(6), 1, 0);
    let history = [
        (r(1), vec![a1.clone()]),
        (r(2), vec![a1, b1.clone()]),
        (r(3), vec![a2.clone(), b1, c1.clone()]),
        (r(4), vec![a2.clone(), c1]),
        (r(5), vec![]),
        (r(6), vec![b2]),
    ];
    for (at, kvs) in history {
        let n = kvs.len() as i64;
        let got = range(s, RangeRequest::new(KeyRange::prefix("x/")).at(at)).await;
        assert_eq!(got, range_resp(r(6), kvs, false, n), "prefix x/ at revision {at}");
    }
    let one = range(s, RangeRequest::new(KeyRange::key("x/a")).at(r(4))).await;
    assert_eq!(one, range_resp(r(6), vec![a2], false, 1));
}

/// Reading past the current revision fails with `FutureRevision`.
pub async fn future_revision_reads_fail<S: Store>(s: &S) {
    put(s, "f", "1").await;
    let now = revision(s).await;
    for ahead in [1, 1000] {
        let req = RangeRequest::new(KeyRange::prefix("")).at(now + ahead);
        assert_eq!(
            try_range(s, req).await,
            Err(Error::FutureRevision { requested: now + ahead, current: now }),
            "read {ahead} revisions ahead"
        );
    }
    let current = range(s, RangeRequest::new(KeyRange::key("f")).at(now)).await;
    assert_eq!(current, range_resp(now, vec![kv("f", "1", now, now, 1, 0)], false, 1));
}

/// A put returns the previous key-value only when asked and only when there was one.
pub async fn put_returns_prev_kv_when_asked<S: Store>(s: &S) {
    let with_prev = |v: &str| PutRequest { prev_kv: true, ..PutRequest::new("p", v) };
    let first = put_req(s, with_prev("1")).await;
    let r1 = first.header.revision;
    assert_eq!(first, PutResponse { header: header(r1), prev_kv: None }, "new key");
    let second = put_req(s, with_prev("2")).await;
    let expected = PutResponse { header: header(r1 + 1), prev_kv: Some(kv("p", "1", r1, r1, 1, 0)) };
    assert_eq!(second, expected, "overwrite with prev_kv");
    let third = put_req(s, PutRequest::new("p", "3")).await;
    assert_eq!(third, PutResponse { header: header(r1 + 2), prev_kv: None }, "not asked");
    assert_eq!(get(s, "p").await, Some(kv("p", "3", r1, r1 + 2, 3, 0)));
}

/// `ignore_value` keeps the current value; with `ignore_value` or `ignore_lease` an absent
/// (or deleted) key fails with `KeyNotFound` and nothing changes.
pub async fn put_ignore_value_keeps_value<S: Store>(s: &S) {
    let v1 = create(s, "iv", "original", 0).await;
    let r1 = v1.mod_revision;
    let keep = PutRequest { ignore_value: true, prev_kv: true, ..PutRequest::new("iv", "") };
    let resp = put_req(s, keep).await;
    assert_eq!(resp, PutResponse { header: header(r1 + 1), prev_kv: Some(v1) });
    assert_eq!(get(s, "iv").await, Some(kv("iv", "original", r1, r1 + 1, 2, 0)));

    delete(s, KeyRange::key("iv"), false).await;
    let now = revision(s).await;
    for key in ["missing", "iv"] {
        let ignore_value = PutRequest { ignore_value: true, ..PutRequest::new(key, "") };
        let ignore_lease = PutRequest { ignore_lease: true, ..PutRequest::new(key, "x") };
        for req in [ignore_value, ignore_lease] {
            assert_eq!(try_put(s, req.clone()).await, Err(Error::KeyNotFound { key: key.into() }), "{req:?}");
        }
        assert_eq!(get(s, key).await, None);
    }
    assert_eq!(revision(s).await, now, "failed puts wrote nothing");
}

/// Deletes of one key, an interval, a prefix and an unbounded interval report how many keys
/// they deleted and, when asked, which, in key order; old revisions still show them.
pub async fn delete_single_and_ranges<S: Store>(s: &S) {
    let mut all = Vec::new();
    for key in ["d/a", "d/b", "d/c", "d/d", "e"] {
        all.push(create(s, key, "v", 0).await);
    }
    let before = revision(s).await;
    let at = |n: i64| header(before + n);
    let cases = [
        (
            del_req(KeyRange::key("d/a"), true),
            DeleteRangeResponse { header: at(1), deleted: 1, prev_kvs: vec![all[0].clone()] },
        ),
        (
            del_req(KeyRange::range("d/b", "d/d"), true),
            DeleteRangeResponse { header: at(2), deleted: 2, prev_kvs: vec![all[1].clone(), all[2].clone()] },
        ),
        (
            del_req(KeyRange::prefix("d/"), false),
            DeleteRangeResponse { header: at(3), deleted: 1, prev_kvs: vec![] },
        ),
        (
            del_req(KeyRange::prefix("d/"), true),
            DeleteRangeResponse { header: at(3), deleted: 0, prev_kvs: vec![] },
        ),
        (
            del_req(KeyRange::range("d", ""), true),
            DeleteRangeResponse { header: at(4), deleted: 1, prev_kvs: vec![all[4].clone()] },
        ),
    ];
    for (req, expected) in cases {
        let got = try_delete(s, req.clone()).await;
        assert_eq!(got, Ok(expected), "{req:?}");
    }
    assert_eq!(prefix_kvs(s, "").await, Vec::<KeyValue>::new());
    let then = range(s, RangeRequest::new(KeyRange::prefix("")).at(before)).await;
    assert_eq!(then, range_resp(before + 4, all, false, 5), "deleted keys remain readable in the past");
}
