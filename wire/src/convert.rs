//! Conversions between the etcd wire types and core's store types, and the one mapping from
//! store errors to etcd's gRPC statuses.
//!
//! Every request a conversion accepts passes core's own checks (`validate_command`,
//! `validate_range`, `validate_key_range`): what core would refuse is refused here first,
//! with the status etcd answers for it, so the store never sees a request etcd's clients
//! could not have had accepted (the `etcd_request` fuzz target checks this).

use flotilla_core::store::{
    Command, Compare, CompareOp, CompareTarget, DeleteRangeRequest, Error, Event, EventType, KeyRange,
    KeyValue, Problem, PutRequest, RangeRequest, RequestOp, TxnRequest, validate_command, validate_key_range,
};
use tonic::Status;

use crate::pb;
use crate::pb::mvccpb;

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// etcd's message for a read or watch of a compacted revision.
pub const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const ERR_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's message for an unknown, expired or revoked lease.
pub const ERR_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const ERR_EMPTY_KEY: &str = "etcdserver: key is not provided";
const ERR_DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
const ERR_TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const ERR_TOO_LARGE: &str = "etcdserver: request is too large";

/// The gRPC status etcd answers for a store error; clients match on these codes and messages.
pub fn status(e: Error) -> Status {
    match e {
        Error::Compacted { .. } => Status::out_of_range(ERR_COMPACTED),
        Error::FutureRevision { .. } => Status::out_of_range(ERR_FUTURE_REV),
        Error::LeaseNotFound(_) => Status::not_found(ERR_LEASE_NOT_FOUND),
        Error::LeaseExists(_) => Status::failed_precondition("etcdserver: lease already exists"),
        Error::KeyNotFound { .. } => Status::invalid_argument("etcdserver: key not found"),
        // core's validation names the field; etcd's clients match on fixed messages.
        Error::InvalidArgument { field, reason, problem } => Status::invalid_argument(match problem {
            Problem::EmptyKey => ERR_EMPTY_KEY.to_string(),
            Problem::DuplicateKey => ERR_DUPLICATE_KEY.to_string(),
            Problem::TooManyOps => ERR_TOO_MANY_OPS.to_string(),
            Problem::TooLarge => ERR_TOO_LARGE.to_string(),
            Problem::Other => format!("etcdserver: invalid {field}: {reason}"),
        }),
        Error::Unavailable { reason } if reason.contains("leader") => {
            Status::unavailable("etcdserver: leader changed")
        }
        Error::Unavailable { reason } if reason.contains("shutting down") || reason.contains("stopped") => {
            Status::unavailable("etcdserver: server stopped")
        }
        Error::Unavailable { .. } => Status::unavailable("etcdserver: no leader"),
        Error::Indeterminate { .. } => {
            Status::unavailable("etcdserver: request timed out, possibly due to previous leader failure")
        }
        Error::Storage(msg) => Status::internal(format!("etcdserver: {msg}")),
    }
}

/// Rejects a request above etcd's request size limit.
pub fn check_size(msg: &impl prost::Message) -> Result<(), Status> {
    if msg.encoded_len() > MAX_REQUEST_BYTES {
        return Err(Status::invalid_argument(ERR_TOO_LARGE));
    }
    Ok(())
}

/// etcd's `key`/`range_end` pair as a key range: an empty `range_end` is the single key,
/// `"\0"` is every key from `key` on. `None` when the range is empty (`range_end <= key`),
/// which etcd answers with no keys rather than an error. A key or range end longer than
/// core's key size limit is refused as too large.
pub fn key_range(key: &[u8], range_end: &[u8]) -> Result<Option<KeyRange>, Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument(ERR_EMPTY_KEY));
    }
    let range = match range_end {
        [] => KeyRange::Key(key.to_vec()),
        [0] => KeyRange::Range { start: key.to_vec(), end: Vec::new() },
        end if end <= key => return Ok(None),
        end => KeyRange::Range { start: key.to_vec(), end: end.to_vec() },
    };
    validate_key_range(&range, "key").map_err(status)?;
    Ok(Some(range))
}

/// A stand-in for an empty range inside a transaction (`range_end <= key`), where core
/// needs a valid range: the keys in [`0xff`×(N-1) `0xfe`, `0xff`×N) for N the key size limit,
/// which is that one 64 KiB key alone. Top-level requests answer empty ranges without it.
pub fn nothing() -> KeyRange {
    let n = flotilla_core::store::MAX_KEY_BYTES;
    let mut start = vec![0xff; n];
    start[n - 1] = 0xfe;
    KeyRange::Range { start, end: vec![0xff; n] }
}

/// A store key-value in etcd's form.
pub fn kv(k: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        value: k.value,
        lease: k.lease,
    }
}

/// A store watch event in etcd's form.
pub fn event(e: Event) -> mvccpb::Event {
    let kind = match e.kind {
        EventType::Put => mvccpb::event::EventType::Put,
        EventType::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv(e.kv)), prev_kv: e.prev_kv.map(kv) }
}

/// The core read for an etcd range request. Sorting and the revision filters are applied
/// afterwards to the result ([`finish_range`]), so they need every matching key.
pub fn range_request(r: &pb::RangeRequest) -> Result<RangeRequest, Status> {
    let range = key_range(&r.key, &r.range_end)?.unwrap_or_else(nothing);
    if r.limit < 0 {
        return Err(Status::invalid_argument("etcdserver: invalid range.limit: must not be negative"));
    }
    let post = needs_post_processing(r);
    Ok(RangeRequest {
        range,
        revision: r.revision,
        limit: if post { 0 } else { r.limit },
        count_only: r.count_only && !post,
        keys_only: r.keys_only,
        serializable: r.serializable,
    })
}

fn sort_order(r: &pb::RangeRequest) -> pb::range_request::SortOrder {
    use pb::range_request::{SortOrder, SortTarget};
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    match (order, target) {
        // etcd sorts ascending when only a target other than the key is given.
        (SortOrder::None, t) if t != SortTarget::Key => SortOrder::Ascend,
        // Keys come in ascending key order already.
        (SortOrder::Ascend, SortTarget::Key) => SortOrder::None,
        (o, _) => o,
    }
}

fn has_filters(r: &pb::RangeRequest) -> bool {
    r.min_mod_revision > 0 || r.max_mod_revision > 0 || r.min_create_revision > 0 || r.max_create_revision > 0
}

fn needs_post_processing(r: &pb::RangeRequest) -> bool {
    sort_order(r) != pb::range_request::SortOrder::None || has_filters(r)
}

/// Applies sorting, the revision filters, `limit` and `count_only` of `r` to a core result
/// fetched by [`range_request`].
pub fn finish_range(
    r: &pb::RangeRequest,
    resp: flotilla_core::store::RangeResponse,
    header: pb::ResponseHeader,
) -> pb::RangeResponse {
    use pb::range_request::{SortOrder, SortTarget};
    let mut kvs = resp.kvs;
    let mut more = resp.more;
    if needs_post_processing(r) {
        let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
        match sort_order(r) {
            SortOrder::None => {}
            order => {
                kvs.sort_by(|a, b| {
                    let ord = match target {
                        SortTarget::Key => a.key.cmp(&b.key),
                        SortTarget::Version => a.version.cmp(&b.version),
                        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                        SortTarget::Value => a.value.cmp(&b.value),
                    };
                    if order == SortOrder::Descend { ord.reverse() } else { ord }
                });
            }
        }
        kvs.retain(|k| {
            (r.min_mod_revision <= 0 || k.mod_revision >= r.min_mod_revision)
                && (r.max_mod_revision <= 0 || k.mod_revision <= r.max_mod_revision)
                && (r.min_create_revision <= 0 || k.create_revision >= r.min_create_revision)
                && (r.max_create_revision <= 0 || k.create_revision <= r.max_create_revision)
        });
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.count_only {
            kvs.clear();
        }
    }
    pb::RangeResponse {
        header: Some(header),
        kvs: kvs.into_iter().map(kv).collect(),
        more,
        count: resp.count,
    }
}

/// The core put for an etcd one, after core's checks (key and value sizes, lease).
pub fn put_request(p: pb::PutRequest) -> Result<PutRequest, Status> {
    // The store runs a put as a transaction of one put; check it as that.
    let txn = validated(TxnRequest { success: vec![RequestOp::Put(put(p)?)], ..Default::default() })?;
    match txn.success.into_iter().next() {
        Some(RequestOp::Put(put)) => Ok(put),
        _ => unreachable!("the transaction holds the one put built above"),
    }
}

/// An etcd put as core's, before core's checks.
fn put(p: pb::PutRequest) -> Result<PutRequest, Status> {
    if p.key.is_empty() {
        return Err(Status::invalid_argument(ERR_EMPTY_KEY));
    }
    Ok(PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    })
}

/// The core delete for an etcd one; `None` for a delete of an empty range (nothing to do).
pub fn delete_request(d: &pb::DeleteRangeRequest) -> Result<Option<DeleteRangeRequest>, Status> {
    Ok(key_range(&d.key, &d.range_end)?.map(|range| DeleteRangeRequest { range, prev_kv: d.prev_kv }))
}

fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget as T, TargetUnion as U};
    let range = key_range(&c.key, &c.range_end)?.unwrap_or_else(nothing);
    let op = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => CompareOp::Equal,
        Ok(CompareResult::Greater) => CompareOp::Greater,
        Ok(CompareResult::Less) => CompareOp::Less,
        Ok(CompareResult::NotEqual) => CompareOp::NotEqual,
        Err(_) => return Err(Status::invalid_argument("etcdserver: unknown compare result")),
    };
    let int = |u: &Option<U>| match u {
        Some(U::Version(v) | U::CreateRevision(v) | U::ModRevision(v) | U::Lease(v)) => *v,
        _ => 0,
    };
    let target = match T::try_from(c.target) {
        Ok(T::Version) => CompareTarget::Version(int(&c.target_union)),
        Ok(T::Create) => CompareTarget::CreateRevision(int(&c.target_union)),
        Ok(T::Mod) => CompareTarget::ModRevision(int(&c.target_union)),
        Ok(T::Lease) => CompareTarget::Lease(int(&c.target_union)),
        Ok(T::Value) => CompareTarget::Value(match c.target_union {
            Some(U::Value(v)) => v,
            _ => Vec::new(),
        }),
        Err(_) => return Err(Status::invalid_argument("etcdserver: unknown compare target")),
    };
    Ok(Compare { range, op, target })
}

fn request_op(op: &pb::RequestOp) -> Result<RequestOp, Status> {
    use pb::request_op::Request as R;
    match &op.request {
        Some(R::RequestRange(r)) => Ok(RequestOp::Range(range_request(r)?)),
        Some(R::RequestPut(p)) => Ok(RequestOp::Put(put(p.clone())?)),
        Some(R::RequestDeleteRange(d)) => Ok(RequestOp::DeleteRange(
            delete_request(d)?.unwrap_or(DeleteRangeRequest { range: nothing(), prev_kv: false }),
        )),
        Some(R::RequestTxn(_)) => Err(Status::unimplemented("etcdserver: nested txn is not supported")),
        None => Err(Status::invalid_argument("etcdserver: empty request operation")),
    }
}

/// The core transaction for an etcd one, after etcd's own checks (operation count per list)
/// and core's (operation count in all, keys put twice or put and deleted in one branch,
/// sizes). Its branches hold one operation per operation of `t`, in order.
pub fn txn_request(t: &pb::TxnRequest) -> Result<TxnRequest, Status> {
    if t.compare.len() > MAX_TXN_OPS || t.success.len() > MAX_TXN_OPS || t.failure.len() > MAX_TXN_OPS {
        return Err(Status::invalid_argument(ERR_TOO_MANY_OPS));
    }
    let compare = t.compare.iter().cloned().map(compare).collect::<Result<_, _>>()?;
    let success = t.success.iter().map(request_op).collect::<Result<_, _>>()?;
    let failure = t.failure.iter().map(request_op).collect::<Result<_, _>>()?;
    validated(TxnRequest { compare, success, failure })
}

/// `txn` once core's `validate_command` accepts it, or etcd's status for why it does not.
fn validated(txn: TxnRequest) -> Result<TxnRequest, Status> {
    let cmd = Command::Txn(txn);
    validate_command(&cmd).map_err(status)?;
    let Command::Txn(txn) = cmd else { unreachable!("built as a transaction above") };
    Ok(txn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_follows_etcd_conventions() {
        assert_eq!(key_range(b"a", b"").ok().flatten(), Some(KeyRange::key("a")));
        assert_eq!(key_range(b"a", b"\0").ok().flatten(), Some(KeyRange::range("a", "")));
        assert_eq!(key_range(b"a", b"b").ok().flatten(), Some(KeyRange::range("a", "b")));
        assert_eq!(key_range(b"b", b"a").ok().flatten(), None);
        let err = key_range(b"", b"a").err().map(|s| s.message().to_string());
        assert_eq!(err.as_deref(), Some(ERR_EMPTY_KEY));
    }

    fn put_op(key: &str) -> pb::RequestOp {
        let put = pb::PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() };
        pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, Status>) -> (tonic::Code, String) {
        let s = r.expect_err("refused");
        (s.code(), s.message().to_string())
    }

    /// What core's checks refuse is refused by the conversion, with etcd's status (the first
    /// three were found by the `etcd_request` fuzz target).
    #[test]
    fn requests_core_would_refuse_are_refused_as_etcd_does() {
        use flotilla_core::store::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
        let invalid = |m: &str| (tonic::Code::InvalidArgument, m.to_string());
        let put = pb::PutRequest { key: b"k".to_vec(), lease: -1, ..Default::default() };
        assert_eq!(
            refusal(put_request(put)),
            invalid("etcdserver: invalid txn.success[0].put.lease: must not be negative")
        );
        let dup = pb::TxnRequest { success: vec![put_op("k"), put_op("k")], ..Default::default() };
        assert_eq!(refusal(txn_request(&dup)), invalid(ERR_DUPLICATE_KEY));
        let delete = pb::DeleteRangeRequest { key: b"a".to_vec(), range_end: b"z".to_vec(), prev_kv: false };
        let delete = pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(delete)) };
        let overlap = pb::TxnRequest { failure: vec![put_op("k"), delete], ..Default::default() };
        assert_eq!(refusal(txn_request(&overlap)), invalid(ERR_DUPLICATE_KEY));
        // etcd's limit is per list; core's is on all of them together.
        let cmp = pb::Compare { key: b"c".to_vec(), ..Default::default() };
        let many = pb::TxnRequest {
            compare: vec![cmp; 65],
            success: (0..64).map(|i| put_op(&format!("k{i}"))).collect(),
            failure: Vec::new(),
        };
        assert_eq!(refusal(txn_request(&many)), invalid(ERR_TOO_MANY_OPS));
        let long = vec![b'k'; MAX_KEY_BYTES + 1];
        assert_eq!(refusal(key_range(&long, b"")), invalid(ERR_TOO_LARGE));
        assert_eq!(refusal(key_range(b"a", &long)), invalid(ERR_TOO_LARGE));
        let big =
            pb::PutRequest { key: b"k".to_vec(), value: vec![0; MAX_VALUE_BYTES + 1], ..Default::default() };
        assert_eq!(refusal(put_request(big)), invalid(ERR_TOO_LARGE));
        // What core accepts still converts, operation for operation.
        let ok = pb::TxnRequest { success: vec![put_op("a"), put_op("b")], ..Default::default() };
        assert_eq!(txn_request(&ok).map(|t| t.success.len()).ok(), Some(2));
    }

    #[test]
    fn store_errors_map_to_etcd_statuses() {
        let s = status(Error::Compacted { requested: 1, compact_revision: 5 });
        assert_eq!((s.code(), s.message()), (tonic::Code::OutOfRange, ERR_COMPACTED));
        let s = status(Error::LeaseNotFound(7));
        assert_eq!((s.code(), s.message()), (tonic::Code::NotFound, ERR_LEASE_NOT_FOUND));
        let s = status(Error::invalid_as(Problem::DuplicateKey, "txn.success[1].put.key", "duplicate key"));
        assert_eq!(s.message(), ERR_DUPLICATE_KEY);
        let s = status(Error::invalid_as(Problem::TooManyOps, "txn", "130 compares and operations"));
        assert_eq!(s.message(), ERR_TOO_MANY_OPS);
        let s = status(Error::invalid_as(Problem::TooLarge, "txn.success[0].put.value", "2000000 bytes"));
        assert_eq!(s.message(), ERR_TOO_LARGE);
        let s = status(Error::invalid_as(Problem::EmptyKey, "put.key", "key must not be empty"));
        assert_eq!(s.message(), ERR_EMPTY_KEY);
        let s = status(Error::invalid("range.limit", "must not be negative, got -1"));
        assert_eq!(s.message(), "etcdserver: invalid range.limit: must not be negative, got -1");
    }

    #[test]
    fn sort_and_filters_apply_to_the_page() {
        let r = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            limit: 1,
            sort_order: pb::range_request::SortOrder::Descend as i32,
            min_mod_revision: 2,
            ..Default::default()
        };
        assert_eq!(range_request(&r).map(|c| c.limit).ok(), Some(0));
        let kvs = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, k)| KeyValue {
                key: k.as_bytes().to_vec(),
                mod_revision: i as i64 + 1,
                ..Default::default()
            })
            .collect();
        let resp = flotilla_core::store::RangeResponse { kvs, count: 3, ..Default::default() };
        let out = finish_range(&r, resp, pb::ResponseHeader::default());
        assert_eq!(out.kvs.iter().map(|k| k.key.clone()).collect::<Vec<_>>(), vec![b"c".to_vec()]);
        assert!(out.more);
        assert_eq!(out.count, 3);
    }
}
