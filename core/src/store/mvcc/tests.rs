//! Unit tests of the MVCC state machine: outcomes of `apply`, compaction, snapshots and
//! history replay, compared whole.

use super::*;
use crate::store::types::{
    DeleteRangeRequest, DeleteRangeResponse, EventType, KeyRange, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp,
};

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(key, value))
}

fn put_leased(key: &str, value: &str, lease: LeaseId) -> RequestOp {
    RequestOp::Put(PutRequest { lease, ..PutRequest::new(key, value) })
}

fn delete(range: KeyRange) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest { range, prev_kv: false })
}

fn txn(ops: Vec<RequestOp>) -> Command {
    Command::Txn(TxnRequest { success: ops, ..Default::default() })
}

fn kv(
    key: &str,
    value: &str,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    lease: LeaseId,
) -> KeyValue {
    KeyValue { key: key.into(), create_revision, mod_revision, version, value: value.into(), lease }
}

fn put_event(kv: KeyValue, prev_kv: Option<KeyValue>) -> Event {
    Event { kind: EventType::Put, kv, prev_kv }
}

fn delete_event(key: &str, revision: Revision, prev_kv: KeyValue) -> Event {
    Event {
        kind: EventType::Delete,
        kv: KeyValue { key: key.into(), mod_revision: revision, ..Default::default() },
        prev_kv: Some(prev_kv),
    }
}

fn version(
    key: &str,
    main: Revision,
    sub: i64,
    data: Option<(Revision, i64, &str, LeaseId)>,
) -> VersionRecord {
    VersionRecord {
        key: key.into(),
        main,
        sub,
        data: data.map(|(create_revision, version, value, lease)| VersionData {
            create_revision,
            version,
            value: value.into(),
            lease,
        }),
    }
}

/// An empty state at revision 0, so the cases below can name absolute revisions; what a new
/// store starts at is checked by `a_new_state_starts_at_etcds_initial_revision`.
fn zero() -> MvccState {
    MvccState::restore(MvccSnapshot::default()).expect("an empty snapshot restores")
}

#[test]
fn a_new_state_starts_at_etcds_initial_revision() {
    let mut s = MvccState::new();
    assert_eq!(s.revision(), crate::store::INITIAL_REVISION);
    let (res, _) = ok(&mut s, txn(vec![put("a", "1")]));
    let CommandResult::Txn(resp) = res else { panic!("a txn answers with Txn, got {res:?}") };
    assert_eq!(resp.header.revision, 2, "etcd's first write is revision 2");
    assert!(read(&s, KeyRange::key("a"), 1).expect("revision 1 is readable").kvs.is_empty());
}

/// Applies a command that must succeed, returning its result and outcome.
fn ok(state: &mut MvccState, cmd: Command) -> (CommandResult, ApplyOutcome) {
    let (res, out) = state.apply(&cmd);
    (res.unwrap_or_else(|e| panic!("{cmd:?} failed: {e}")), out)
}

fn header(revision: Revision) -> ResponseHeader {
    ResponseHeader { revision }
}

fn read(state: &MvccState, range: KeyRange, at: Revision) -> Result<RangeResponse> {
    state.range(&RangeRequest::new(range).at(at))
}

#[test]
fn puts_produce_events_and_versions() {
    let mut s = zero();
    let (res, out) = ok(&mut s, txn(vec![put("a", "1")]));
    let put_resp = |rev| ResponseOp::Put(PutResponse { header: header(rev), prev_kv: None });
    let want = TxnResponse { header: header(1), succeeded: true, responses: vec![put_resp(1)] };
    assert_eq!(res, CommandResult::Txn(want));
    let want = ApplyOutcome {
        events: vec![put_event(kv("a", "1", 1, 1, 1, 0), None)],
        mutations: vec![
            Mutation::PutVersion(version("a", 1, 0, Some((1, 1, "1", 0)))),
            Mutation::SetRevision(1),
        ],
    };
    assert_eq!(out, want);

    let (_, out) = ok(&mut s, txn(vec![put("a", "2")]));
    let want = ApplyOutcome {
        events: vec![put_event(kv("a", "2", 1, 2, 2, 0), Some(kv("a", "1", 1, 1, 1, 0)))],
        mutations: vec![
            Mutation::PutVersion(version("a", 2, 0, Some((1, 2, "2", 0)))),
            Mutation::SetRevision(2),
        ],
    };
    assert_eq!(out, want, "the event carries the previous version whatever the request asked");
    assert_eq!(s.revision(), 2);
}

#[test]
fn changes_of_one_txn_share_a_revision_in_operation_order() {
    let mut s = zero();
    ok(&mut s, txn(vec![put("a", "1")]));
    let (res, out) = ok(&mut s, txn(vec![put("c", "1"), delete(KeyRange::key("a")), put("b", "1")]));
    let CommandResult::Txn(resp) = res else { panic!("a txn answers with Txn, got {res:?}") };
    assert_eq!(resp.header, header(2));
    let want = ApplyOutcome {
        events: vec![
            put_event(kv("c", "1", 2, 2, 1, 0), None),
            delete_event("a", 2, kv("a", "1", 1, 1, 1, 0)),
            put_event(kv("b", "1", 2, 2, 1, 0), None),
        ],
        mutations: vec![
            Mutation::PutVersion(version("c", 2, 0, Some((2, 1, "1", 0)))),
            Mutation::PutVersion(version("a", 2, 1, None)),
            Mutation::PutVersion(version("b", 2, 2, Some((2, 1, "1", 0)))),
            Mutation::SetRevision(2),
        ],
    };
    assert_eq!(out, want);
}

#[test]
fn no_op_and_failed_commands_produce_nothing() {
    let mut s = zero();
    ok(&mut s, txn(vec![put("a", "1")]));
    let before = s.snapshot();
    let (res, out) = ok(&mut s, txn(vec![delete(KeyRange::prefix("zz"))]));
    let del = DeleteRangeResponse { header: header(1), deleted: 0, prev_kvs: vec![] };
    let want =
        TxnResponse { header: header(1), succeeded: true, responses: vec![ResponseOp::DeleteRange(del)] };
    assert_eq!((res, out), (CommandResult::Txn(want), ApplyOutcome::default()));

    let failing = [
        (txn(vec![put("b", "1"), put_leased("c", "1", 9)]), Error::LeaseNotFound(9)),
        (Command::LeaseRevoke { id: 9 }, Error::LeaseNotFound(9)),
        (Command::Compact(2), Error::FutureRevision { requested: 2, current: 1 }),
    ];
    for (cmd, err) in failing {
        assert_eq!(s.apply(&cmd), (Err(err), ApplyOutcome::default()), "{cmd:?}");
        assert_eq!(s.snapshot(), before, "{cmd:?} changed the state");
    }
}

#[test]
fn lease_grant_and_revoke_outcomes() {
    let mut s = zero();
    let (res, out) = ok(&mut s, Command::LeaseGrant { id: 7, ttl: 30 });
    assert_eq!(res, CommandResult::LeaseGrant(LeaseGrantResponse { header: header(0), id: 7, ttl: 30 }));
    assert_eq!(out, ApplyOutcome { events: vec![], mutations: vec![Mutation::PutLease { id: 7, ttl: 30 }] });
    assert_eq!(
        s.apply(&Command::LeaseGrant { id: 7, ttl: 5 }),
        (Err(Error::LeaseExists(7)), ApplyOutcome::default())
    );

    ok(&mut s, txn(vec![put_leased("k2", "v", 7), put_leased("k1", "v", 7), put("k3", "v")]));
    assert_eq!(s.lease_keys(7), Ok((30, vec![b"k1".to_vec(), b"k2".to_vec()])));
    let (res, out) = ok(&mut s, Command::LeaseRevoke { id: 7 });
    assert_eq!(res, CommandResult::LeaseRevoke(header(2)));
    let want = ApplyOutcome {
        events: vec![
            delete_event("k1", 2, kv("k1", "v", 1, 1, 1, 7)),
            delete_event("k2", 2, kv("k2", "v", 1, 1, 1, 7)),
        ],
        mutations: vec![
            Mutation::PutVersion(version("k1", 2, 0, None)),
            Mutation::PutVersion(version("k2", 2, 1, None)),
            Mutation::SetRevision(2),
            Mutation::DeleteLease(7),
        ],
    };
    assert_eq!(out, want);
    assert!(!s.has_lease(7));
    let left = read(&s, KeyRange::prefix("k"), 0).expect("reading now succeeds");
    assert_eq!(left.kvs, vec![kv("k3", "v", 1, 1, 1, 0)]);

    // A lease without keys is revoked without a revision.
    ok(&mut s, Command::LeaseGrant { id: 8, ttl: 30 });
    let (res, out) = ok(&mut s, Command::LeaseRevoke { id: 8 });
    assert_eq!((res, out.mutations), (CommandResult::LeaseRevoke(header(2)), vec![Mutation::DeleteLease(8)]));
}

/// History: 1 put a, 2 put a, 3 put b, 4 delete b, 5 delete a, 6 put c.
fn compaction_history() -> MvccState {
    let mut s = zero();
    for cmd in [
        txn(vec![put("a", "1")]),
        txn(vec![put("a", "2")]),
        txn(vec![put("b", "1")]),
        txn(vec![delete(KeyRange::key("b"))]),
        txn(vec![delete(KeyRange::key("a"))]),
        txn(vec![put("c", "1")]),
    ] {
        ok(&mut s, cmd);
    }
    s
}

#[test]
fn compaction_drops_superseded_versions_and_old_tombstones() {
    let mut s = compaction_history();
    let (res, out) = ok(&mut s, Command::Compact(5));
    assert_eq!(res, CommandResult::Compact(CompactResponse { header: header(6) }));
    let dropped = [(1, 0), (2, 0), (3, 0), (4, 0)].map(|(main, sub)| Mutation::DeleteVersion { main, sub });
    let mut want = dropped.to_vec();
    want.push(Mutation::SetCompactRevision(5));
    assert_eq!(out, ApplyOutcome { events: vec![], mutations: want });
    // The tombstone at the compaction point stays, so a watch from 5 still sees that delete.
    let kept = vec![version("a", 5, 0, None), version("c", 6, 0, Some((6, 1, "1", 0)))];
    assert_eq!(s.snapshot().versions, kept);
    let tombstone = Event {
        kind: EventType::Delete,
        kv: KeyValue { key: b"a".to_vec(), mod_revision: 5, ..Default::default() },
        prev_kv: None,
    };
    let replay = vec![tombstone, put_event(kv("c", "1", 6, 6, 1, 0), None)];
    assert_eq!(s.events_between(&KeyRange::prefix(""), 5, 6, 10), Ok((replay, 7)));

    let (_, out) = ok(&mut s, Command::Compact(6));
    assert_eq!(
        out.mutations,
        vec![Mutation::DeleteVersion { main: 5, sub: 0 }, Mutation::SetCompactRevision(6)]
    );
    assert_eq!(s.version_count(), 1);
    for (rev, err) in [
        (6, Error::Compacted { requested: 6, compact_revision: 6 }),
        (3, Error::Compacted { requested: 3, compact_revision: 6 }),
        (7, Error::FutureRevision { requested: 7, current: 6 }),
    ] {
        assert_eq!(s.apply(&Command::Compact(rev)), (Err(err), ApplyOutcome::default()));
    }
    assert_eq!(
        read(&s, KeyRange::prefix(""), 5),
        Err(Error::Compacted { requested: 5, compact_revision: 6 })
    );
    assert_eq!(read(&s, KeyRange::prefix(""), 6).map(|r| r.kvs), Ok(vec![kv("c", "1", 6, 6, 1, 0)]));
}

/// A state exercising everything a snapshot holds: several versions per key, tombstones,
/// leases with and without keys, and a compaction point.
fn rich_state() -> MvccState {
    let mut s = zero();
    for cmd in [
        Command::LeaseGrant { id: 3, ttl: 10 },
        Command::LeaseGrant { id: 4, ttl: 20 },
        txn(vec![put("a", "1"), put_leased("b", "1", 3)]),
        txn(vec![put("a", "2"), put("c", "1")]),
        txn(vec![delete(KeyRange::key("c")), put_leased("d", "1", 3)]),
        Command::Compact(2),
        txn(vec![put_leased("a", "3", 4)]),
        txn(vec![put("c", "2")]),
    ] {
        ok(&mut s, cmd);
    }
    s
}

/// A lease's granted TTL and keys, as `lease_keys` reports them.
type LeaseKeys = Result<(i64, Vec<Vec<u8>>)>;

/// Everything observable about a state.
#[derive(Debug, PartialEq)]
struct Observed {
    snapshot: MvccSnapshot,
    records: Vec<VersionRecord>,
    reads: Vec<Result<RangeResponse>>,
    leases: Vec<(LeaseId, LeaseKeys)>,
    replay: Result<(Vec<Event>, Revision)>,
}

fn observe(s: &MvccState) -> Observed {
    Observed {
        snapshot: s.snapshot(),
        records: s.records_in_revision_order().collect(),
        reads: (1..=s.revision()).map(|at| read(s, KeyRange::prefix(""), at)).collect(),
        leases: s.leases().map(|(id, _)| (id, s.lease_keys(id))).collect(),
        replay: s.events_between(&KeyRange::prefix(""), s.compact_revision(), s.revision(), usize::MAX),
    }
}

#[test]
fn snapshot_then_restore_is_the_same_state() {
    let original = rich_state();
    let restored = MvccState::restore(original.snapshot()).expect("a snapshot restores");
    assert_eq!(observe(&restored), observe(&original));
    assert_eq!(restored.lease_keys(3), Ok((10, vec![b"b".to_vec(), b"d".to_vec()])));

    // Both go on identically, including revoking a lease whose keys were rebuilt by restore.
    let (mut a, mut b) = (original, restored);
    for cmd in [Command::LeaseRevoke { id: 3 }, txn(vec![put("e", "1")]), Command::Compact(5)] {
        assert_eq!(a.apply(&cmd), b.apply(&cmd), "{cmd:?}");
    }
    assert_eq!(observe(&a), observe(&b));

    // Records may come in any order.
    let mut shuffled = a.snapshot();
    shuffled.versions.reverse();
    assert_eq!(observe(&MvccState::restore(shuffled).expect("reversed records restore")), observe(&a));
}

#[test]
fn restore_rejects_inconsistent_records() {
    let good = rich_state().snapshot();
    let storage = |msg: &str| Err(Error::Storage(msg.to_string()));
    let mut above = good.clone();
    above.versions.push(version("z", 6, 0, Some((6, 1, "1", 0))));
    assert_eq!(
        MvccState::restore(above).map(|_| ()),
        storage("version of key \"z\" at revision 6 is outside 1..=5")
    );
    let mut zero = good.clone();
    zero.versions.push(version("z", 0, 0, Some((0, 1, "1", 0))));
    assert_eq!(
        MvccState::restore(zero).map(|_| ()),
        storage("version of key \"z\" at revision 0 is outside 1..=5")
    );
    let mut shared = good.clone();
    shared.versions.push(version("z", 5, 0, Some((5, 1, "1", 0))));
    assert_eq!(MvccState::restore(shared).map(|_| ()), storage("two versions share revision 5.0"));
    let mut orphan = good;
    orphan.leases.retain(|(id, _)| *id != 4);
    assert_eq!(MvccState::restore(orphan).map(|_| ()), storage("key \"a\" is attached to unknown lease 4"));
}

/// History: 1 put a, 2 txn(put a, put b, put x), 3 put x, 4 delete a, 5 put b.
fn replay_history() -> MvccState {
    let mut s = zero();
    for cmd in [
        txn(vec![put("a", "1")]),
        txn(vec![put("a", "2"), put("b", "1"), put("x", "1")]),
        txn(vec![put("x", "2")]),
        txn(vec![delete(KeyRange::key("a"))]),
        txn(vec![put("b", "2")]),
    ] {
        ok(&mut s, cmd);
    }
    s
}

#[test]
fn events_between_batches_whole_revisions() {
    let s = replay_history();
    let ab = KeyRange::range("a", "c");
    let a1 = kv("a", "1", 1, 1, 1, 0);
    let a2 = kv("a", "2", 1, 2, 2, 0);
    let b1 = kv("b", "1", 2, 2, 1, 0);
    let (r1, r2) =
        (put_event(a1.clone(), None), vec![put_event(a2.clone(), Some(a1)), put_event(b1.clone(), None)]);
    let r4 = delete_event("a", 4, a2);
    let r5 = put_event(kv("b", "2", 2, 5, 2, 0), Some(b1));

    let mut first = vec![r1.clone()];
    first.extend(r2.clone());
    assert_eq!(s.events_between(&ab, 1, 5, 2), Ok((first.clone(), 3)), "two revisions; revision 2 whole");
    // Revision 3 only touches x, outside the range, but still counts as a revision read.
    assert_eq!(s.events_between(&ab, 3, 5, 2), Ok((vec![r4.clone()], 5)));
    assert_eq!(s.events_between(&ab, 5, 5, 2), Ok((vec![r5.clone()], 6)));
    assert_eq!(s.events_between(&ab, 2, 3, 10), Ok((r2, 4)), "stops at `to`");
    let mut all = first;
    all.extend([r4, r5]);
    assert_eq!(s.events_between(&ab, 1, 100, usize::MAX), Ok((all, 101)));
    assert_eq!(s.events_between(&ab, 7, 5, 10), Ok((vec![], 7)), "an empty interval");

    let mut s = s;
    ok(&mut s, Command::Compact(3));
    assert_eq!(s.events_between(&ab, 2, 5, 10), Err(Error::Compacted { requested: 2, compact_revision: 3 }));
}
