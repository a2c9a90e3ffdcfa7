//! Model-based fuzzing of the MVCC state machine (`MvccState`, the state under `MemStore` and
//! the replicated store) against a plain model: one `BTreeMap` of live keys per revision.
//!
//! Every command goes through `validate_command` first, as every store does before proposing
//! it; refused commands are skipped. After every step the state's answers are compared with the
//! model: transaction results (branch taken, puts' previous values, deletion counts, reads
//! inside the transaction), errors, range reads at the current and every retained past
//! revision, and lease key sets. A `Reopen` step rebuilds the state the way a durable store
//! does after a restart, from the `Mutation`s it was told to persist, and checks that the
//! rebuilt state equals the live one (and that `restore(snapshot())` does too).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use flotilla_core::store::{
    Command, CommandResult, Compare, CompareOp, CompareTarget, DeleteRangeRequest, Error, INITIAL_REVISION,
    KeyRange, KeyValue, Mutation, MvccSnapshot, MvccState, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, TxnRequest, VersionRecord, validate_command, validate_range,
};
use libfuzzer_sys::fuzz_target;

/// Second key bytes: includes 0x00 and 0xff to exercise prefix and range ends.
const ALPHABET: [u8; 6] = [0x00, b'a', b'b', b'c', 0xfe, 0xff];

fn key(k: u8) -> Vec<u8> {
    vec![b'k', ALPHABET[usize::from(k) % ALPHABET.len()]]
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Range {
    Key(u8),
    /// 0: every key; 1: `k`; otherwise one key's bytes as a prefix.
    Prefix(u8),
    Between(u8, Option<u8>),
}

impl Range {
    fn to_range(self) -> KeyRange {
        match self {
            Range::Key(k) => KeyRange::Key(key(k)),
            Range::Prefix(0) => KeyRange::Prefix(Vec::new()),
            Range::Prefix(1) => KeyRange::Prefix(b"k".to_vec()),
            Range::Prefix(k) => KeyRange::Prefix(key(k)),
            Range::Between(s, e) => KeyRange::Range { start: key(s), end: e.map(key).unwrap_or_default() },
        }
    }
}

/// The model's own idea of which keys a range holds (independent of `KeyRange::bounds`).
fn in_range(range: &KeyRange, k: &[u8]) -> bool {
    match range {
        KeyRange::Key(x) => x == k,
        KeyRange::Prefix(p) => k.starts_with(p),
        KeyRange::Range { start, end } => k >= start.as_slice() && (end.is_empty() || k < end.as_slice()),
    }
}

#[derive(Arbitrary, Debug)]
enum Target {
    Version(i8),
    CreateRevision(i8),
    ModRevision(i8),
    Value(u8),
    Lease(u8),
}

#[derive(Arbitrary, Debug)]
struct Cmp {
    range: Range,
    op: u8,
    target: Target,
}

#[derive(Arbitrary, Debug)]
enum TxnOp {
    Put { key: u8, value: u8, lease: u8, prev_kv: bool, ignore_value: bool, ignore_lease: bool },
    Delete { range: Range, prev_kv: bool },
    Get(Read),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Read {
    range: Range,
    /// Revisions back from the current one; `None` reads the current revision (0).
    back: Option<u8>,
    limit: u8,
    count_only: bool,
    keys_only: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Txn { compare: Vec<Cmp>, success: Vec<TxnOp>, failure: Vec<TxnOp> },
    Compact { back: u8 },
    Grant { id: u8, ttl: u8 },
    Revoke { id: u8 },
    Read(Read),
    Reopen,
}

/// The model: the live keys after every revision, the compaction point and the leases.
struct Model {
    history: BTreeMap<i64, BTreeMap<Vec<u8>, KeyValue>>,
    compact: i64,
    leases: BTreeMap<i64, i64>,
}

impl Model {
    fn rev(&self) -> i64 {
        *self.history.keys().next_back().expect("the model always has a revision")
    }

    fn live(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        self.history.values().next_back().expect("the model always has a revision")
    }

    fn read_error(&self, rev: i64) -> Option<&'static str> {
        if rev > self.rev() {
            Some("future")
        } else if rev > 0 && rev < self.compact {
            Some("compacted")
        } else {
            None
        }
    }

    /// A range read of `live` (the current or an in-transaction map) or of a past revision.
    fn range(&self, live: &BTreeMap<Vec<u8>, KeyValue>, req: &RangeRequest) -> (Vec<KeyValue>, i64, bool) {
        let at = if req.revision > 0 { &self.history[&req.revision] } else { live };
        let all: Vec<&KeyValue> = at.values().filter(|kv| in_range(&req.range, &kv.key)).collect();
        let count = all.len() as i64;
        let limit = if req.limit > 0 { req.limit as usize } else { usize::MAX };
        let kvs: Vec<KeyValue> = if req.count_only {
            Vec::new()
        } else {
            all.into_iter()
                .take(limit)
                .map(|kv| {
                    let mut kv = kv.clone();
                    if req.keys_only {
                        kv.value.clear();
                    }
                    kv
                })
                .collect()
        };
        let more = !req.count_only && count as usize > kvs.len() && req.limit > 0;
        (kvs, count, more)
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::FutureRevision { .. } => "future",
        Error::Compacted { .. } => "compacted",
        Error::LeaseNotFound(_) => "lease not found",
        Error::LeaseExists(_) => "lease exists",
        Error::KeyNotFound { .. } => "key not found",
        _ => "other",
    }
}

fn range_request(model: &Model, r: &Read) -> RangeRequest {
    let revision = match r.back {
        None => 0,
        // May point below the compaction point or at 0 and below: both are part of the test.
        Some(b) => model.rev() - i64::from(b) + 1,
    };
    RangeRequest {
        range: r.range.to_range(),
        revision,
        limit: i64::from(r.limit % 4),
        count_only: r.count_only,
        keys_only: r.keys_only,
        serializable: false,
    }
}

fn compare(cmp: &Cmp) -> Compare {
    let op = match cmp.op % 4 {
        0 => CompareOp::Equal,
        1 => CompareOp::NotEqual,
        2 => CompareOp::Greater,
        _ => CompareOp::Less,
    };
    let target = match cmp.target {
        Target::Version(v) => CompareTarget::Version(i64::from(v)),
        Target::CreateRevision(v) => CompareTarget::CreateRevision(i64::from(v)),
        Target::ModRevision(v) => CompareTarget::ModRevision(i64::from(v)),
        Target::Value(v) => CompareTarget::Value(vec![v % 4]),
        Target::Lease(v) => CompareTarget::Lease(i64::from(v % 4)),
    };
    Compare { range: cmp.range.to_range(), op, target }
}

fn model_compare(live: &BTreeMap<Vec<u8>, KeyValue>, c: &Compare) -> bool {
    let one = |kv: Option<&KeyValue>| {
        let ord = match &c.target {
            CompareTarget::Version(t) => kv.map_or(0, |k| k.version).cmp(t),
            CompareTarget::CreateRevision(t) => kv.map_or(0, |k| k.create_revision).cmp(t),
            CompareTarget::ModRevision(t) => kv.map_or(0, |k| k.mod_revision).cmp(t),
            CompareTarget::Lease(t) => kv.map_or(0, |k| k.lease).cmp(t),
            CompareTarget::Value(t) => match kv {
                Some(k) => k.value.as_slice().cmp(t.as_slice()),
                None => return false,
            },
        };
        match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        }
    };
    let matching: Vec<&KeyValue> = live.values().filter(|kv| in_range(&c.range, &kv.key)).collect();
    match (&c.range, matching.is_empty()) {
        (KeyRange::Key(_), true) => one(None),
        (_, true) => true,
        _ => matching.into_iter().all(|kv| one(Some(kv))),
    }
}

fn request_op(model: &Model, op: &TxnOp) -> RequestOp {
    match op {
        TxnOp::Put { key: k, value, lease, prev_kv, ignore_value, ignore_lease } => {
            RequestOp::Put(PutRequest {
                key: key(*k),
                value: vec![value % 4],
                lease: i64::from(lease % 4),
                prev_kv: *prev_kv,
                ignore_value: *ignore_value,
                ignore_lease: *ignore_lease,
            })
        }
        TxnOp::Delete { range, prev_kv } => {
            RequestOp::DeleteRange(DeleteRangeRequest { range: range.to_range(), prev_kv: *prev_kv })
        }
        TxnOp::Get(r) => RequestOp::Range(range_request(model, r)),
    }
}

/// Applies a validated transaction to the model: its result or the error kind.
fn model_txn(model: &mut Model, txn: &TxnRequest) -> Result<(bool, Vec<ResponseOp>), &'static str> {
    let rev = model.rev();
    let succeeded = txn.compare.iter().all(|c| model_compare(model.live(), c));
    let ops = if succeeded { &txn.success } else { &txn.failure };
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                if (p.ignore_value || p.ignore_lease) && !model.live().contains_key(&p.key) {
                    return Err("key not found");
                }
                if !p.ignore_lease && p.lease != 0 && !model.leases.contains_key(&p.lease) {
                    return Err("lease not found");
                }
            }
            RequestOp::Range(r) => {
                if let Some(e) = model.read_error(r.revision) {
                    return Err(e);
                }
            }
            RequestOp::DeleteRange(_) => {}
        }
    }
    let main = rev + 1;
    let mut live = model.live().clone();
    let mut wrote = false;
    let mut responses = Vec::new();
    for op in ops {
        responses.push(match op {
            RequestOp::Put(p) => {
                let prev = live.get(&p.key).cloned();
                let kv = KeyValue {
                    key: p.key.clone(),
                    create_revision: prev.as_ref().map_or(main, |k| k.create_revision),
                    mod_revision: main,
                    version: prev.as_ref().map_or(1, |k| k.version + 1),
                    value: match (&prev, p.ignore_value) {
                        (Some(k), true) => k.value.clone(),
                        _ => p.value.clone(),
                    },
                    lease: match (&prev, p.ignore_lease) {
                        (Some(k), true) => k.lease,
                        _ => p.lease,
                    },
                };
                live.insert(p.key.clone(), kv);
                wrote = true;
                ResponseOp::Put(flotilla_core::store::PutResponse {
                    header: Default::default(),
                    prev_kv: if p.prev_kv { prev } else { None },
                })
            }
            RequestOp::DeleteRange(d) => {
                let gone: Vec<Vec<u8>> = live.keys().filter(|k| in_range(&d.range, k)).cloned().collect();
                let prev: Vec<KeyValue> = gone.iter().filter_map(|k| live.remove(k)).collect();
                wrote |= !prev.is_empty();
                ResponseOp::DeleteRange(flotilla_core::store::DeleteRangeResponse {
                    header: Default::default(),
                    deleted: prev.len() as i64,
                    prev_kvs: if d.prev_kv { prev } else { Vec::new() },
                })
            }
            RequestOp::Range(r) => {
                let (kvs, count, more) = model.range(&live, r);
                ResponseOp::Range(RangeResponse { header: Default::default(), kvs, more, count })
            }
        });
    }
    if wrote {
        model.history.insert(main, live);
    }
    Ok((succeeded, responses))
}

/// Drops the header (checked separately) so responses compare by content.
fn strip(mut r: ResponseOp) -> ResponseOp {
    match &mut r {
        ResponseOp::Range(x) => x.header = Default::default(),
        ResponseOp::Put(x) => x.header = Default::default(),
        ResponseOp::DeleteRange(x) => x.header = Default::default(),
    }
    r
}

/// What a durable store persisted, rebuilt from the mutations it was given.
#[derive(Default)]
struct Disk {
    revision: i64,
    compact: i64,
    leases: BTreeMap<i64, i64>,
    versions: BTreeMap<(i64, i64), VersionRecord>,
}

impl Disk {
    fn persist(&mut self, mutations: &[Mutation]) {
        for m in mutations {
            match m {
                Mutation::PutVersion(v) => {
                    self.versions.insert((v.main, v.sub), v.clone());
                }
                Mutation::DeleteVersion { main, sub } => {
                    assert!(
                        self.versions.remove(&(*main, *sub)).is_some(),
                        "deleting unknown version {main}.{sub}"
                    );
                }
                Mutation::PutLease { id, ttl } => {
                    self.leases.insert(*id, *ttl);
                }
                Mutation::DeleteLease(id) => {
                    assert!(self.leases.remove(id).is_some(), "deleting unknown lease {id}");
                }
                Mutation::SetRevision(r) => self.revision = *r,
                Mutation::SetCompactRevision(r) => self.compact = *r,
            }
        }
    }

    fn snapshot(&self) -> MvccSnapshot {
        MvccSnapshot {
            revision: self.revision,
            compact_revision: self.compact,
            leases: self.leases.iter().map(|(i, t)| (*i, *t)).collect(),
            versions: self.versions.values().cloned().collect(),
        }
    }
}

fn check_reads(state: &MvccState, model: &Model) {
    assert_eq!(state.revision(), model.rev(), "revision");
    assert_eq!(state.compact_revision(), model.compact, "compact revision");
    // Every retained revision, every key, through a prefix read of everything.
    for rev in (model.compact.max(INITIAL_REVISION))..=model.rev() {
        let req = RangeRequest::new(KeyRange::Prefix(Vec::new())).at(rev);
        let got = state.range(&req).expect("a retained revision reads");
        let want: Vec<KeyValue> = model.history[&rev].values().cloned().collect();
        assert_eq!(got.kvs, want, "keys at revision {rev}");
    }
    let leases: Vec<(i64, i64)> = state.leases().collect();
    let want: Vec<(i64, i64)> = model.leases.iter().map(|(i, t)| (*i, *t)).collect();
    assert_eq!(leases, want, "leases");
    for id in model.leases.keys() {
        let (_, keys) = state.lease_keys(*id).expect("a granted lease exists");
        let want: Vec<Vec<u8>> =
            model.live().values().filter(|kv| kv.lease == *id).map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, want, "keys of lease {id}");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut state = MvccState::new();
    let mut disk = Disk { revision: INITIAL_REVISION, ..Default::default() };
    let mut model = Model {
        history: BTreeMap::from([(INITIAL_REVISION, BTreeMap::new())]),
        compact: 0,
        leases: BTreeMap::new(),
    };
    for op in ops.iter().take(64) {
        match op {
            Op::Read(r) => {
                let req = range_request(&model, r);
                if validate_range(&req, "range").is_err() {
                    continue;
                }
                let got = state.range(&req);
                match model.read_error(req.revision) {
                    Some(e) => assert_eq!(got.as_ref().err().map(error_kind), Some(e), "{req:?}: {got:?}"),
                    None => {
                        let got = got.expect("a readable revision reads");
                        let (kvs, count, more) = model.range(model.live(), &req);
                        assert_eq!((got.kvs, got.count, got.more), (kvs, count, more), "{req:?}");
                        assert_eq!(got.header.revision, model.rev());
                    }
                }
                continue;
            }
            Op::Reopen => {
                let rebuilt = MvccState::restore(disk.snapshot()).expect("persisted records restore");
                assert_eq!(rebuilt.snapshot(), state.snapshot(), "state rebuilt from its mutations");
                let copy = MvccState::restore(state.snapshot()).expect("a snapshot restores");
                assert_eq!(copy.snapshot(), state.snapshot(), "restore(snapshot())");
                state = rebuilt;
                check_reads(&state, &model);
                continue;
            }
            _ => {}
        }
        let cmd = match op {
            Op::Txn { compare: c, success, failure } => Command::Txn(TxnRequest {
                compare: c.iter().take(4).map(compare).collect(),
                success: success.iter().take(6).map(|o| request_op(&model, o)).collect(),
                failure: failure.iter().take(6).map(|o| request_op(&model, o)).collect(),
            }),
            Op::Compact { back } => Command::Compact(model.rev() - i64::from(*back % 8) + 1),
            Op::Grant { id, ttl } => Command::LeaseGrant { id: i64::from(id % 4), ttl: i64::from(*ttl) },
            Op::Revoke { id } => Command::LeaseRevoke { id: i64::from(id % 4) },
            Op::Read(_) | Op::Reopen => continue,
        };
        if validate_command(&cmd).is_err() {
            continue;
        }
        let before = state.snapshot();
        let (got, outcome) = state.apply(&cmd);
        if got.is_err() {
            assert_eq!(state.snapshot(), before, "a failed command changes nothing: {cmd:?}");
            assert!(outcome.mutations.is_empty() && outcome.events.is_empty());
        }
        disk.persist(&outcome.mutations);
        match &cmd {
            Command::Txn(txn) => match (model_txn(&mut model, txn), got) {
                (Ok((succeeded, responses)), Ok(CommandResult::Txn(resp))) => {
                    assert_eq!(resp.succeeded, succeeded, "{cmd:?}");
                    assert_eq!(resp.header.revision, model.rev(), "{cmd:?}");
                    let got: Vec<ResponseOp> = resp.responses.into_iter().map(strip).collect();
                    assert_eq!(got, responses, "{cmd:?}");
                }
                (Err(e), Err(g)) => assert_eq!(error_kind(&g), e, "{cmd:?}"),
                (want, got) => panic!("{cmd:?}: model {want:?}, state {got:?}"),
            },
            Command::Compact(rev) => {
                let want = if *rev <= model.compact {
                    Some("compacted")
                } else if *rev > model.rev() {
                    Some("future")
                } else {
                    None
                };
                assert_eq!(got.as_ref().err().map(error_kind), want, "{cmd:?}");
                if want.is_none() {
                    model.compact = *rev;
                    model.history.retain(|r, _| *r >= *rev);
                }
            }
            Command::LeaseGrant { id, ttl } => {
                let exists = model.leases.contains_key(id);
                assert_eq!(got.as_ref().err().map(error_kind), exists.then_some("lease exists"), "{cmd:?}");
                model.leases.entry(*id).or_insert(*ttl);
            }
            Command::LeaseRevoke { id } => {
                let exists = model.leases.remove(id).is_some();
                assert_eq!(
                    got.as_ref().err().map(error_kind),
                    (!exists).then_some("lease not found"),
                    "{cmd:?}"
                );
                if exists {
                    let mut live = model.live().clone();
                    live.retain(|_, kv| kv.lease != *id);
                    if live.len() != model.live().len() {
                        let next = model.rev() + 1;
                        model.history.insert(next, live);
                    }
                }
            }
        }
        check_reads(&state, &model);
    }
});
