//! A model test of [`MvccState`]: random sequences of puts, deletes, transactions,
//! compactions, lease grants and revokes, and restarts (`restore(snapshot())`), compared
//! after every step with a model that keeps a whole `BTreeMap` per revision.
//!
//! After each step the results must be equal, and so must reads at every revision (or the
//! error for compacted and future ones) and history replays (`events_between`) of a few
//! ranges from every retained revision, in batches of random size.

use std::collections::BTreeMap;

use flotilla_core::store::{
    Command, CommandResult, CompactResponse, Compare, CompareOp, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, Error, Event, EventType, KeyRange, KeyValue, LeaseGrantResponse, LeaseId, MvccState,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, Result,
    Revision, TxnRequest, TxnResponse, validate_command,
};
use proptest::prelude::*;

const KEYS: [&str; 6] = ["a", "a/1", "a/2", "ab", "b", "c"];
const VALUES: [&str; 3] = ["x", "y", "z"];
/// Lease ids the steps use; 3 is never granted, so puts naming it fail.
const LEASES: [LeaseId; 3] = [1, 2, 3];

type Keys = BTreeMap<Vec<u8>, KeyValue>;

/// One step of a test case.
#[derive(Clone, Debug)]
enum Step {
    Apply(Command),
    /// Replace the state by `restore(snapshot())`.
    Restart,
}

/// The model: the whole keyspace after every revision.
struct Model {
    /// `history[r]`: the live keys after revision `r` (`history[0]` is empty).
    history: Vec<Keys>,
    /// `events[r]`: the changes of revision `r`, each with the key-value it replaced.
    events: Vec<Vec<Event>>,
    compact: Revision,
    leases: BTreeMap<LeaseId, i64>,
}

fn contains(range: &KeyRange, key: &[u8]) -> bool {
    match range {
        KeyRange::Key(k) => k == key,
        KeyRange::Prefix(p) => key.starts_with(p),
        KeyRange::Range { start, end } => key >= start.as_slice() && (end.is_empty() || key < end.as_slice()),
    }
}

fn compare_one(kv: Option<&KeyValue>, cmp: &Compare) -> bool {
    let field_vs_target = match (&cmp.target, kv) {
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(t), Some(kv)) => kv.value.cmp(t),
        (CompareTarget::Version(t), kv) => kv.map_or(0, |k| k.version).cmp(t),
        (CompareTarget::CreateRevision(t), kv) => kv.map_or(0, |k| k.create_revision).cmp(t),
        (CompareTarget::ModRevision(t), kv) => kv.map_or(0, |k| k.mod_revision).cmp(t),
        (CompareTarget::Lease(t), kv) => kv.map_or(0, |k| k.lease).cmp(t),
    };
    match cmp.op {
        CompareOp::Equal => field_vs_target.is_eq(),
        CompareOp::NotEqual => field_vs_target.is_ne(),
        CompareOp::Greater => field_vs_target.is_gt(),
        CompareOp::Less => field_vs_target.is_lt(),
    }
}

fn header(revision: Revision) -> ResponseHeader {
    ResponseHeader { revision }
}

impl Model {
    fn new() -> Self {
        // A new store is at revision 1 (etcd's initial revision), with nothing in it.
        Model { history: vec![Keys::new(); 2], events: vec![vec![]; 2], compact: 0, leases: BTreeMap::new() }
    }

    fn rev(&self) -> Revision {
        self.history.len() as Revision - 1
    }

    fn current(&self) -> &Keys {
        self.history.last().expect("history starts with revision 0")
    }

    fn check_read(&self, rev: Revision) -> Result<()> {
        if rev > self.rev() {
            return Err(Error::FutureRevision { requested: rev, current: self.rev() });
        }
        if rev > 0 && rev < self.compact {
            return Err(Error::Compacted { requested: rev, compact_revision: self.compact });
        }
        Ok(())
    }

    fn read(&self, keys: &Keys, req: &RangeRequest) -> RangeResponse {
        let matching: Vec<KeyValue> =
            keys.values().filter(|kv| contains(&req.range, &kv.key)).cloned().collect();
        let count = matching.len() as i64;
        let mut kvs = if req.count_only { vec![] } else { matching };
        let more = req.limit > 0 && !req.count_only && kvs.len() as i64 > req.limit;
        if req.limit > 0 {
            kvs.truncate(req.limit as usize);
        }
        RangeResponse { header: header(self.rev()), kvs, more, count }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.check_read(req.revision)?;
        let at = if req.revision > 0 { req.revision } else { self.rev() };
        Ok(self.read(&self.history[at as usize], req))
    }

    fn commit(&mut self, keys: Keys, events: Vec<Event>) {
        if !events.is_empty() {
            self.history.push(keys);
            self.events.push(events);
        }
    }

    fn apply(&mut self, cmd: &Command) -> Result<CommandResult> {
        match cmd {
            Command::Txn(txn) => self.txn(txn).map(CommandResult::Txn),
            Command::Compact(rev) => {
                if *rev <= self.compact {
                    return Err(Error::Compacted { requested: *rev, compact_revision: self.compact });
                }
                if *rev > self.rev() {
                    return Err(Error::FutureRevision { requested: *rev, current: self.rev() });
                }
                self.compact = *rev;
                Ok(CommandResult::Compact(CompactResponse { header: header(self.rev()) }))
            }
            Command::LeaseGrant { id, ttl } => {
                if self.leases.contains_key(id) {
                    return Err(Error::LeaseExists(*id));
                }
                self.leases.insert(*id, *ttl);
                Ok(CommandResult::LeaseGrant(LeaseGrantResponse {
                    header: header(self.rev()),
                    id: *id,
                    ttl: *ttl,
                }))
            }
            Command::LeaseRevoke { id } => {
                self.leases.remove(id).ok_or(Error::LeaseNotFound(*id))?;
                let next = self.rev() + 1;
                let mut keys = self.current().clone();
                let mut events = Vec::new();
                keys.retain(|key, kv| {
                    if kv.lease != *id {
                        return true;
                    }
                    let deleted = KeyValue { key: key.clone(), mod_revision: next, ..Default::default() };
                    events.push(Event { kind: EventType::Delete, kv: deleted, prev_kv: Some(kv.clone()) });
                    false
                });
                self.commit(keys, events);
                Ok(CommandResult::LeaseRevoke(header(self.rev())))
            }
        }
    }

    fn txn(&mut self, txn: &TxnRequest) -> Result<TxnResponse> {
        let before = self.current().clone();
        let succeeded = txn.compare.iter().all(|cmp| {
            let kvs: Vec<&KeyValue> = before.values().filter(|kv| contains(&cmp.range, &kv.key)).collect();
            match (kvs.is_empty(), &cmp.range) {
                (true, KeyRange::Key(_)) => compare_one(None, cmp),
                (true, _) => true,
                (false, _) => kvs.iter().all(|kv| compare_one(Some(kv), cmp)),
            }
        });
        let ops = if succeeded { &txn.success } else { &txn.failure };
        for op in ops {
            match op {
                RequestOp::Put(p) => {
                    if (p.ignore_value || p.ignore_lease) && !before.contains_key(&p.key) {
                        return Err(Error::KeyNotFound { key: String::from_utf8_lossy(&p.key).into() });
                    }
                    if !p.ignore_lease && p.lease != 0 && !self.leases.contains_key(&p.lease) {
                        return Err(Error::LeaseNotFound(p.lease));
                    }
                }
                RequestOp::Range(r) => self.check_read(r.revision)?,
                RequestOp::DeleteRange(_) => {}
            }
        }
        let next = self.rev() + 1;
        let mut keys = before;
        let mut events = Vec::new();
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let at = if r.revision > 0 { &self.history[r.revision as usize] } else { &keys };
                    ResponseOp::Range(self.read(at, r))
                }
                RequestOp::Put(p) => {
                    let prev = keys.get(&p.key).cloned();
                    let kv = KeyValue {
                        key: p.key.clone(),
                        create_revision: prev.as_ref().map_or(next, |kv| kv.create_revision),
                        mod_revision: next,
                        version: prev.as_ref().map_or(1, |kv| kv.version + 1),
                        value: match &prev {
                            Some(kv) if p.ignore_value => kv.value.clone(),
                            _ => p.value.clone(),
                        },
                        lease: match &prev {
                            Some(kv) if p.ignore_lease => kv.lease,
                            _ => p.lease,
                        },
                    };
                    keys.insert(p.key.clone(), kv.clone());
                    events.push(Event { kind: EventType::Put, kv, prev_kv: prev.clone() });
                    ResponseOp::Put(PutResponse {
                        header: header(0),
                        prev_kv: if p.prev_kv { prev } else { None },
                    })
                }
                RequestOp::DeleteRange(d) => {
                    let gone: Vec<KeyValue> =
                        keys.values().filter(|kv| contains(&d.range, &kv.key)).cloned().collect();
                    for kv in &gone {
                        keys.remove(&kv.key);
                        let deleted =
                            KeyValue { key: kv.key.clone(), mod_revision: next, ..Default::default() };
                        events.push(Event {
                            kind: EventType::Delete,
                            kv: deleted,
                            prev_kv: Some(kv.clone()),
                        });
                    }
                    let deleted = gone.len() as i64;
                    let prev_kvs = if d.prev_kv { gone } else { vec![] };
                    ResponseOp::DeleteRange(DeleteRangeResponse { header: header(0), deleted, prev_kvs })
                }
            });
        }
        self.commit(keys, events);
        let h = header(self.rev());
        for resp in &mut responses {
            match resp {
                ResponseOp::Range(r) => r.header = h,
                ResponseOp::Put(r) => r.header = h,
                ResponseOp::DeleteRange(r) => r.header = h,
            }
        }
        Ok(TxnResponse { header: h, succeeded, responses })
    }

    /// The events a watch of `range` from `from` replays. History below the compaction point
    /// is gone, so an event at exactly that point has no previous key-value.
    fn replay(&self, range: &KeyRange, from: Revision) -> Vec<Event> {
        let mut out = Vec::new();
        for rev in from.max(1)..=self.rev() {
            for ev in &self.events[rev as usize] {
                if contains(range, &ev.kv.key) {
                    let mut ev = ev.clone();
                    if rev == self.compact {
                        ev.prev_kv = None;
                    }
                    out.push(ev);
                }
            }
        }
        out
    }
}

/// Compares everything observable about the state with the model.
fn check_observations(state: &MvccState, model: &Model, batch: usize) {
    let rev = model.rev();
    assert_eq!(state.revision(), rev);
    assert_eq!(state.compact_revision(), model.compact);
    let all = RangeRequest::new(KeyRange::prefix(""));
    for at in 1..=rev + 1 {
        let req = all.clone().at(at);
        assert_eq!(state.range(&req), model.range(&req), "read at revision {at}");
    }
    let leases: Vec<(LeaseId, i64)> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    assert_eq!(state.leases().collect::<Vec<_>>(), leases);
    for (id, ttl) in leases {
        let keys = model.current().values().filter(|kv| kv.lease == id).map(|kv| kv.key.clone()).collect();
        assert_eq!(state.lease_keys(id), Ok((ttl, keys)), "keys of lease {id}");
    }
    for range in
        [KeyRange::prefix(""), KeyRange::prefix("a"), KeyRange::key("b"), KeyRange::range("a/2", "c")]
    {
        for from in model.compact.max(1)..=rev + 1 {
            let mut got = Vec::new();
            let mut next = from;
            while next <= rev {
                let (events, after) = state
                    .events_between(&range, next, rev, batch)
                    .unwrap_or_else(|e| panic!("replay of {range:?} from {next}: {e}"));
                assert!(after > next, "replay of {range:?} from {next} made no progress");
                assert!(events.iter().all(|e| (next..after).contains(&e.kv.mod_revision)));
                got.extend(events);
                next = after;
            }
            assert_eq!(got, model.replay(&range, from), "replay of {range:?} from {from}");
        }
    }
    if model.compact > 1 {
        let below = model.compact - 1;
        let err = Error::Compacted { requested: below, compact_revision: model.compact };
        assert_eq!(state.events_between(&KeyRange::prefix(""), below, rev, batch), Err(err));
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(&KEYS[..]).prop_map(|k| k.as_bytes().to_vec())
}

fn range() -> impl Strategy<Value = KeyRange> {
    let bound = prop::sample::select(&["", "a", "a/", "a/2", "ab", "b", "c", "d"][..]);
    prop_oneof![
        3 => key().prop_map(KeyRange::Key),
        1 => prop::sample::select(&["", "a", "a/", "b"][..]).prop_map(KeyRange::prefix),
        1 => (bound.clone(), bound).prop_map(|(s, e)| KeyRange::range(s, e)),
    ]
}

fn put() -> impl Strategy<Value = PutRequest> {
    let lease = prop_oneof![3 => Just(0), 1 => prop::sample::select(&LEASES[..])];
    (
        key(),
        prop::sample::select(&VALUES[..]),
        lease,
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
            key,
            value: value.as_bytes().to_vec(),
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        })
}

fn op() -> impl Strategy<Value = RequestOp> {
    let read = (range(), 0..3i64, 0..4i64, any::<bool>()).prop_map(|(range, limit, revision, count_only)| {
        RequestOp::Range(RangeRequest { limit, revision, count_only, ..RangeRequest::new(range) })
    });
    prop_oneof![
        3 => put().prop_map(RequestOp::Put),
        1 => (range(), any::<bool>()).prop_map(|(range, prev_kv)| RequestOp::DeleteRange(DeleteRangeRequest { range, prev_kv })),
        1 => read,
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    let op = prop::sample::select(
        &[CompareOp::Equal, CompareOp::NotEqual, CompareOp::Greater, CompareOp::Less][..],
    );
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..8i64).prop_map(CompareTarget::CreateRevision),
        (0..8i64).prop_map(CompareTarget::ModRevision),
        prop::sample::select(&VALUES[..]).prop_map(|v| CompareTarget::Value(v.as_bytes().to_vec())),
        prop::sample::select(&[0, 1, 2][..]).prop_map(CompareTarget::Lease),
    ];
    (range(), op, target).prop_map(|(range, op, target)| Compare { range, op, target })
}

fn step() -> impl Strategy<Value = Step> {
    let txn = (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(compare, success, failure)| Command::Txn(TxnRequest { compare, success, failure }));
    let apply = |cmd: Command| Step::Apply(cmd);
    prop_oneof![
        6 => put().prop_map(|p| Command::Txn(TxnRequest { success: vec![RequestOp::Put(p)], ..Default::default() })).prop_map(apply),
        2 => (range(), any::<bool>()).prop_map(|(range, prev_kv)| Command::Txn(TxnRequest {
            success: vec![RequestOp::DeleteRange(DeleteRangeRequest { range, prev_kv })],
            ..Default::default()
        })).prop_map(apply),
        5 => txn.prop_map(apply),
        // Compaction points are relative to the current revision, resolved when applied.
        2 => (0..4i64).prop_map(|back| Step::Apply(Command::Compact(-back))),
        2 => (prop::sample::select(&LEASES[..2]), 1..100i64).prop_map(|(id, ttl)| Step::Apply(Command::LeaseGrant { id, ttl })),
        1 => prop::sample::select(&LEASES[..]).prop_map(|id| Step::Apply(Command::LeaseRevoke { id })),
        1 => Just(Step::Restart),
    ]
}

fn run(steps: Vec<Step>, batch: usize) {
    let mut state = MvccState::new();
    let mut model = Model::new();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Restart => {
                let snapshot = state.snapshot();
                state = MvccState::restore(snapshot.clone()).expect("a snapshot restores");
                assert_eq!(state.snapshot(), snapshot, "step {i}: restore changed the snapshot");
            }
            Step::Apply(mut cmd) => {
                if let Command::Compact(back) = cmd {
                    cmd = Command::Compact(state.revision() + back);
                }
                if validate_command(&cmd).is_err() {
                    continue;
                }
                let (res, outcome) = state.apply(&cmd);
                let before = model.rev();
                let want = model.apply(&cmd);
                assert_eq!(res, want, "step {i}: {cmd:?}");
                let want_events =
                    if model.rev() > before { model.events[model.rev() as usize].clone() } else { vec![] };
                assert_eq!(outcome.events, want_events, "step {i}: events of {cmd:?}");
            }
        }
        check_observations(&state, &model, batch);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mvcc_state_matches_the_model(steps in prop::collection::vec(step(), 1..40), batch in 1..4usize) {
        run(steps, batch);
    }
}
