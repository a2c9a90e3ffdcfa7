//! etcd v3 request decoding: the bytes of a gRPC request message, decoded with prost as the
//! etcd endpoint's tonic services decode them, then through `flotilla-store-wire`'s
//! conversions to core's store requests, as `flotilla-raft-store`'s KV and Watch services
//! call them (`convert::check_size`, `key_range`, `range_request`, `finish_range`,
//! `put_request`, `delete_request`, `txn_request`).
//!
//! The first byte picks the message: Range, Put, DeleteRange, Txn (nested transactions
//! included), Compaction, LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive or Watch.
//! Compaction and the lease requests have no conversion (their ids and TTLs go to the store
//! as they are), so only their decoding is exercised.
//!
//! Properties: nothing panics; a decoded message encodes and decodes back to itself; a
//! request a conversion accepts passes core's own checks (`validate_command` for puts,
//! deletes and transactions, `validate_range`, `validate_key_range` for watches), so the
//! store never refuses what the conversion let through; a transaction's branches keep one
//! operation of the same kind per requested operation (the service pairs answers with
//! requests by position); refusals are `InvalidArgument` (or `Unimplemented` for a nested
//! transaction) with an `etcdserver: ` message, as etcd's clients expect; `finish_range`
//! sorts, filters and limits a page as asked.
#![no_main]

use flotilla_core::store::{
    Command, DeleteRangeRequest, KeyValue, RangeResponse, RequestOp, TxnRequest, validate_command,
    validate_key_range, validate_range,
};
use flotilla_store_wire::{convert, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};

/// Decodes `bytes` as `M`; a message that decodes re-encodes to bytes that decode to it.
fn decode<M: Message + Default + PartialEq>(bytes: &[u8]) -> Option<M> {
    let msg = M::decode(bytes).ok()?;
    let again = M::decode(msg.encode_to_vec().as_slice()).expect("an encoded message decodes");
    assert!(again == msg, "prost round trip changed {}", std::any::type_name::<M>());
    if let Err(s) = convert::check_size(&msg) {
        refused("an oversized request", &s);
        return None;
    }
    Some(msg)
}

/// A refusal is what etcd answers for a bad request, never an internal error.
fn refused(what: &str, s: &Status) {
    let nested = s.code() == Code::Unimplemented && s.message().contains("nested txn");
    assert!(s.code() == Code::InvalidArgument || nested, "{what} refused with {s:?}");
    assert!(s.message().starts_with("etcdserver: "), "{what} refused with {s:?}");
}

fn accepted_command(what: &str, txn: TxnRequest) {
    if let Err(e) = validate_command(&Command::Txn(txn)) {
        panic!("{what} was accepted by the conversion but core refuses it: {e}");
    }
}

fn range(r: &pb::RangeRequest) {
    // The service answers an empty range itself, then asks the store.
    match convert::key_range(&r.key, &r.range_end) {
        Err(s) => return refused("range", &s),
        Ok(None) => {}
        Ok(Some(range)) => {
            validate_key_range(&range, "range.key").expect("an accepted key range is valid");
        }
    }
    let req = match convert::range_request(r) {
        Ok(req) => req,
        Err(s) => return refused("range", &s),
    };
    if let Err(e) = validate_range(&req, "range") {
        panic!("range {r:?} was accepted as {req:?} but core refuses it: {e}");
    }
    finish(r, req.limit);
}

/// `finish_range` over a page made from the request's own bytes.
fn finish(r: &pb::RangeRequest, store_limit: i64) {
    let kvs: Vec<KeyValue> = r
        .key
        .iter()
        .chain(&r.range_end)
        .take(16)
        .enumerate()
        .map(|(i, &b)| KeyValue {
            key: vec![b, i as u8],
            create_revision: i64::from(b % 7),
            mod_revision: i as i64 + 1,
            version: i64::from(b % 3),
            value: vec![b ^ 0x55],
            lease: 0,
        })
        .collect();
    let n = kvs.len();
    let resp = RangeResponse { kvs, count: n as i64, more: false, ..Default::default() };
    let out = convert::finish_range(r, resp, pb::ResponseHeader::default());
    assert_eq!(out.count, n as i64, "the count is the store's");
    if store_limit == 0 && r.limit > 0 {
        assert!(out.kvs.len() as i64 <= r.limit, "a page of {} for limit {}", out.kvs.len(), r.limit);
    }
    for k in &out.kvs {
        assert!(r.min_mod_revision <= 0 || k.mod_revision >= r.min_mod_revision);
        assert!(r.max_mod_revision <= 0 || k.mod_revision <= r.max_mod_revision);
        assert!(r.min_create_revision <= 0 || k.create_revision >= r.min_create_revision);
        assert!(r.max_create_revision <= 0 || k.create_revision <= r.max_create_revision);
    }
}

fn put(p: pb::PutRequest) {
    match convert::put_request(p) {
        Ok(put) => {
            accepted_command("put", TxnRequest { success: vec![RequestOp::Put(put)], ..Default::default() })
        }
        Err(s) => refused("put", &s),
    }
}

fn delete(d: &pb::DeleteRangeRequest) {
    match convert::delete_request(d) {
        Ok(Some(del)) => accepted_command(
            "delete",
            TxnRequest { success: vec![RequestOp::DeleteRange(del)], ..Default::default() },
        ),
        Ok(None) => {}
        Err(s) => refused("delete", &s),
    }
}

/// Whether a converted operation is of the kind requested.
fn same_kind(req: &pb::RequestOp, op: &RequestOp) -> bool {
    use pb::request_op::Request as R;
    matches!(
        (&req.request, op),
        (Some(R::RequestRange(_)), RequestOp::Range(_))
            | (Some(R::RequestPut(_)), RequestOp::Put(_))
            | (Some(R::RequestDeleteRange(_)), RequestOp::DeleteRange(DeleteRangeRequest { .. }))
    )
}

fn txn(t: &pb::TxnRequest) {
    let core = match convert::txn_request(t) {
        Ok(core) => core,
        Err(s) => return refused("txn", &s),
    };
    assert_eq!(core.compare.len(), t.compare.len());
    for (reqs, ops) in [(&t.success, &core.success), (&t.failure, &core.failure)] {
        assert_eq!(reqs.len(), ops.len(), "one operation per requested operation");
        for (req, op) in reqs.iter().zip(ops) {
            assert!(same_kind(req, op), "{req:?} became {op:?}");
        }
    }
    for (i, r) in t.success.iter().chain(&t.failure).enumerate() {
        if let Some(pb::request_op::Request::RequestRange(r)) = &r.request {
            let req = convert::range_request(r).expect("a range in an accepted txn converts");
            validate_range(&req, &format!("txn.op[{i}].range")).expect("and is valid");
            finish(r, req.limit);
        }
    }
    accepted_command("txn", core);
}

fn watch(w: &pb::WatchRequest) {
    let Some(pb::watch_request::RequestUnion::CreateRequest(c)) = &w.request_union else { return };
    // As the Watch service starts a watch: an empty range watches the stand-in.
    match convert::key_range(&c.key, &c.range_end) {
        Ok(range) => {
            let range = range.unwrap_or_else(convert::nothing);
            if let Err(e) = validate_key_range(&range, "watch.key") {
                panic!("watch {c:?} was accepted as {range:?} but core refuses it: {e}");
            }
        }
        Err(s) => refused("watch", &s),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 10 {
        0 => {
            if let Some(r) = decode::<pb::RangeRequest>(body) {
                range(&r);
            }
        }
        1 => {
            if let Some(p) = decode::<pb::PutRequest>(body) {
                put(p);
            }
        }
        2 => {
            if let Some(d) = decode::<pb::DeleteRangeRequest>(body) {
                delete(&d);
            }
        }
        3 => {
            if let Some(t) = decode::<pb::TxnRequest>(body) {
                txn(&t);
            }
        }
        4 => {
            decode::<pb::CompactionRequest>(body);
        }
        5 => {
            decode::<pb::LeaseGrantRequest>(body);
        }
        6 => {
            decode::<pb::LeaseRevokeRequest>(body);
        }
        7 => {
            decode::<pb::LeaseKeepAliveRequest>(body);
        }
        8 => {
            decode::<pb::LeaseTimeToLiveRequest>(body);
        }
        _ => {
            if let Some(w) = decode::<pb::WatchRequest>(body) {
                watch(&w);
            }
        }
    }
});
