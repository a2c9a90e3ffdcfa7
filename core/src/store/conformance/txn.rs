//! Transactions: compares, branches, reads inside a transaction and atomicity.

use std::cmp::Ordering;

use super::support::{
    create, delete_op, get, grant, header, kv, prefix_kvs, put_op, put_req, range_op, range_resp, revision,
    try_txn, txn, txn_of,
};
use crate::store::{
    Compare, CompareOp, CompareTarget, DeleteRangeResponse, Error, KeyRange, KeyValue, PutRequest,
    PutResponse, RangeRequest, RequestOp, ResponseOp, Store, TxnRequest, TxnResponse,
};

const OPS: [CompareOp; 4] = [CompareOp::Equal, CompareOp::NotEqual, CompareOp::Greater, CompareOp::Less];

fn holds(op: CompareOp, field_vs_target: Ordering) -> bool {
    match op {
        CompareOp::Equal => field_vs_target == Ordering::Equal,
        CompareOp::NotEqual => field_vs_target != Ordering::Equal,
        CompareOp::Greater => field_vs_target == Ordering::Greater,
        CompareOp::Less => field_vs_target == Ordering::Less,
    }
}

/// Runs a read-only transaction guarded by `cmp` and checks which branch ran.
async fn check_compare<S: Store>(s: &S, cmp: Compare, expected: bool, key_kvs: &[KeyValue], now: i64) {
    let req = TxnRequest {
        compare: vec![cmp.clone()],
        success: vec![range_op(cmp.range.clone())],
        failure: vec![range_op(KeyRange::key("branch/failure"))],
    };
    let branch = if expected {
        range_resp(now, key_kvs.to_vec(), false, key_kvs.len() as i64)
    } else {
        range_resp(now, vec![], false, 0)
    };
    let want =
        TxnResponse { header: header(now), succeeded: expected, responses: vec![ResponseOp::Range(branch)] };
    assert_eq!(txn(s, req).await, want, "compare {cmp:?} should hold: {expected}");
}

/// Every compare target (version, create and mod revision, value, lease) with every
/// operator, against a smaller, equal and larger target, on a present and an absent key. An
/// absent key compares as zeros, and fails every value compare.
pub async fn txn_compares_every_target_and_op<S: Store>(s: &S) {
    let lease = grant(s, 7001, 600).await.id;
    let first = create(s, "k", "m", lease).await;
    let r1 = first.mod_revision;
    let r2 = put_req(s, PutRequest { lease, ..PutRequest::new("k", "m") }).await.header.revision;
    let present = vec![kv("k", "m", r1, r2, 2, lease)];
    let now = revision(s).await;

    type Target = fn(i64) -> CompareTarget;
    let numeric: [(Target, i64); 4] = [
        (CompareTarget::Version, 2),
        (CompareTarget::CreateRevision, r1),
        (CompareTarget::ModRevision, r2),
        (CompareTarget::Lease, lease),
    ];
    let absent_actual = 0;
    for (target, actual) in numeric {
        for op in OPS {
            for delta in [-1, 0, 1] {
                let t = actual + delta;
                let cmp = Compare { range: KeyRange::key("k"), op, target: target(t) };
                let expected = holds(op, actual.cmp(&t));
                check_compare(s, cmp, expected, &present, now).await;
                // The absent key's field is 0.
                let t = absent_actual + delta;
                let cmp = Compare { range: KeyRange::key("absent"), op, target: target(t) };
                check_compare(s, cmp, holds(op, absent_actual.cmp(&t)), &[], now).await;
            }
        }
    }
    for op in OPS {
        for t in ["l", "m", "mm", "n", ""] {
            let cmp = Compare::value("k", op, t);
            check_compare(s, cmp, holds(op, "m".cmp(t)), &present, now).await;
            check_compare(s, Compare::value("absent", op, t), false, &[], now).await;
        }
    }
    assert_eq!(revision(s).await, now, "guarded reads wrote nothing");
}

/// The success branch runs when every compare holds, the failure branch otherwise; all
/// writes of a branch share one revision; responses come in operation order, each with the
/// transaction's revision; a stale compare-and-swap fails.
pub async fn txn_success_and_failure_branches<S: Store>(s: &S) {
    let c = create(s, "t/c", "1", 0).await;
    let x = create(s, "t/x", "1", 0).await;
    let r3 = revision(s).await + 1;
    let guarded = TxnRequest {
        compare: vec![Compare::exists("t/c"), Compare::value("t/c", CompareOp::Equal, "1")],
        success: vec![
            put_op("t/a", "1"),
            RequestOp::Put(PutRequest { prev_kv: true, ..PutRequest::new("t/x", "2") }),
            delete_op(KeyRange::key("t/c"), true),
            range_op(KeyRange::prefix("t/")),
        ],
        failure: vec![put_op("t/f", "1")],
    };
    let h3 = header(r3);
    let a = kv("t/a", "1", r3, r3, 1, 0);
    let x2 = kv("t/x", "2", x.create_revision, r3, 2, 0);
    let want = TxnResponse {
        header: h3,
        succeeded: true,
        responses: vec![
            ResponseOp::Put(PutResponse { header: h3, prev_kv: None }),
            ResponseOp::Put(PutResponse { header: h3, prev_kv: Some(x) }),
            ResponseOp::DeleteRange(DeleteRangeResponse { header: h3, deleted: 1, prev_kvs: vec![c] }),
            ResponseOp::Range(range_resp(r3, vec![a.clone(), x2.clone()], false, 2)),
        ],
    };
    assert_eq!(txn(s, guarded.clone()).await, want, "guards hold");

    let h4 = header(r3 + 1);
    let want = TxnResponse {
        header: h4,
        succeeded: false,
        responses: vec![ResponseOp::Put(PutResponse { header: h4, prev_kv: None })],
    };
    assert_eq!(txn(s, guarded).await, want, "t/c is gone, so the failure branch runs");
    let f = kv("t/f", "1", r3 + 1, r3 + 1, 1, 0);
    assert_eq!(prefix_kvs(s, "t/").await, vec![a, f, x2.clone()]);

    // Compare-and-swap on the mod revision: the first swap wins, a stale one fails.
    let cas = |value: &str| TxnRequest {
        compare: vec![Compare::mod_revision("t/x", CompareOp::Equal, r3)],
        success: vec![put_op("t/x", value)],
        failure: vec![],
    };
    let h5 = header(r3 + 2);
    let won = TxnResponse {
        header: h5,
        succeeded: true,
        responses: vec![ResponseOp::Put(PutResponse { header: h5, prev_kv: None })],
    };
    assert_eq!(txn(s, cas("3")).await, won);
    assert_eq!(txn(s, cas("4")).await, TxnResponse { header: h5, succeeded: false, responses: vec![] });
    assert_eq!(get(s, "t/x").await, Some(kv("t/x", "3", x2.create_revision, r3 + 2, 3, 0)));
}

/// Reads inside a transaction see the transaction's earlier writes and not its later ones,
/// and may read a past revision; every response carries the transaction's revision.
pub async fn txn_reads_see_earlier_writes<S: Store>(s: &S) {
    let a1 = create(s, "r/a", "1", 0).await;
    let r1 = a1.mod_revision;
    let r2 = r1 + 1;
    let req = txn_of(vec![
        range_op(KeyRange::key("r/a")),
        put_op("r/a", "2"),
        range_op(KeyRange::key("r/a")),
        RequestOp::Range(RangeRequest::new(KeyRange::key("r/a")).at(r1)),
        RequestOp::Range(RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::prefix("r/")) }),
    ]);
    let a2 = kv("r/a", "2", r1, r2, 2, 0);
    let h2 = header(r2);
    let want = TxnResponse {
        header: h2,
        succeeded: true,
        responses: vec![
            ResponseOp::Range(range_resp(r2, vec![a1.clone()], false, 1)),
            ResponseOp::Put(PutResponse { header: h2, prev_kv: None }),
            ResponseOp::Range(range_resp(r2, vec![a2.clone()], false, 1)),
            ResponseOp::Range(range_resp(r2, vec![a1], false, 1)),
            ResponseOp::Range(range_resp(r2, vec![], false, 1)),
        ],
    };
    assert_eq!(txn(s, req).await, want);
    assert_eq!(get(s, "r/a").await, Some(a2));
}

/// A transaction whose operation fails (unknown lease, `ignore_value` on an absent key, a
/// read in the future) fails as a whole: no key changes and the revision stays put, even when
/// earlier operations of the branch were fine.
pub async fn failed_txn_changes_nothing<S: Store>(s: &S) {
    let x = create(s, "f/x", "1", 0).await;
    let now = revision(s).await;
    let unknown_lease = RequestOp::Put(PutRequest { lease: 424_242, ..PutRequest::new("f/z", "1") });
    let cases = [
        (txn_of(vec![put_op("f/y", "1"), unknown_lease.clone()]), Error::LeaseNotFound(424_242)),
        (
            txn_of(vec![
                delete_op(KeyRange::key("f/x"), false),
                RequestOp::Put(PutRequest { ignore_value: true, ..PutRequest::new("f/w", "") }),
            ]),
            Error::KeyNotFound { key: "f/w".into() },
        ),
        (
            txn_of(vec![
                put_op("f/y", "1"),
                RequestOp::Range(RangeRequest::new(KeyRange::prefix("f/")).at(now + 5)),
            ]),
            Error::FutureRevision { requested: now + 5, current: now },
        ),
        (
            TxnRequest {
                compare: vec![Compare::absent("f/x")],
                success: vec![],
                failure: vec![put_op("f/y", "1"), unknown_lease],
            },
            Error::LeaseNotFound(424_242),
        ),
    ];
    for (req, err) in cases {
        assert_eq!(try_txn(s, req.clone()).await, Err(err), "{req:?}");
        assert_eq!(prefix_kvs(s, "f/").await, vec![x.clone()], "after {req:?}");
        assert_eq!(revision(s).await, now, "after {req:?}");
    }
}

/// A compare over a prefix or interval holds when every key in it satisfies it; over a range
/// with no keys it holds; several compares must all hold.
pub async fn txn_compare_over_ranges<S: Store>(s: &S) {
    let p1 = create(s, "p/1", "v", 0).await;
    create(s, "p/2", "v", 0).await;
    put_req(s, PutRequest::new("p/2", "v")).await;
    let p2 = get(s, "p/2").await.expect("p/2 was just written");
    let now = revision(s).await;
    let both = vec![p1.clone(), p2];
    let on = |range: KeyRange, op, target| Compare { range, op, target };
    let prefix = || KeyRange::prefix("p/");
    let cases = [
        (on(prefix(), CompareOp::Greater, CompareTarget::Version(0)), true, both.clone()),
        (on(prefix(), CompareOp::Equal, CompareTarget::Version(1)), false, both.clone()),
        (on(prefix(), CompareOp::Less, CompareTarget::Version(3)), true, both.clone()),
        (on(prefix(), CompareOp::Less, CompareTarget::ModRevision(now + 1)), true, both.clone()),
        (on(prefix(), CompareOp::Equal, CompareTarget::Value(b"v".to_vec())), true, both.clone()),
        (on(prefix(), CompareOp::NotEqual, CompareTarget::Value(b"v".to_vec())), false, both.clone()),
        (on(KeyRange::range("p/1", "p/2"), CompareOp::Equal, CompareTarget::Version(1)), true, vec![p1]),
        (on(KeyRange::prefix("q/"), CompareOp::Equal, CompareTarget::Version(5)), true, vec![]),
    ];
    for (cmp, expected, kvs) in cases {
        check_compare(s, cmp, expected, &kvs, now).await;
    }
    let all_of = |compare: Vec<Compare>| TxnRequest { compare, ..Default::default() };
    let (yes, no) = (Compare::exists("p/1"), Compare::absent("p/2"));
    for (compare, expected) in [
        (vec![yes.clone(), no.clone()], false),
        (vec![no, yes.clone()], false),
        (vec![yes.clone(), yes], true),
    ] {
        let got = txn(s, all_of(compare.clone())).await;
        assert_eq!(got.succeeded, expected, "{compare:?}");
        assert_eq!(got, TxnResponse { header: header(now), succeeded: expected, responses: vec![] });
    }
}
