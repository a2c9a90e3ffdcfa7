//! Helpers shared by the cases: store calls bounded by a timeout that names the call, and
//! builders of expected values.
//!
//! Every store call a case makes goes through [`within`], so a hung call fails the case with
//! a message naming it (rather than the case's outer timeout, which can only name the case).

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use crate::store::{
    CompactResponse, DeleteRangeRequest, DeleteRangeResponse, Error, Event, EventType, KeyRange, KeyValue,
    LeaseGrantResponse, LeaseId, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, Result, Revision, Store, TxnRequest, TxnResponse, WatchRequest,
    WatchResponse, WatchStream,
};

/// How long one store call or one watch response may take before the case reports it hung.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the case with `what` if it takes longer than [`CALL_TIMEOUT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{what} did not answer within {CALL_TIMEOUT:?}: the store (or its watch delivery) probably deadlocked"
        ),
    }
}

/// Unwraps a store result, naming the call when it failed.
pub(crate) fn ok<T>(what: &str, res: Result<T>) -> T {
    res.unwrap_or_else(|e| panic!("{what} failed: {e} ({e:?})"))
}

/// The field named by an `InvalidArgument` error; fails the case on anything else.
pub(crate) fn invalid_field<T: Debug>(what: &str, res: Result<T>) -> String {
    match res {
        Err(Error::InvalidArgument { field, reason, .. }) => {
            assert!(!reason.is_empty(), "{what}: InvalidArgument for {field} gave no reason");
            field
        }
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// The expected key-value.
pub(crate) fn kv(
    key: impl Into<Vec<u8>>,
    value: impl Into<Vec<u8>>,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    lease: LeaseId,
) -> KeyValue {
    KeyValue { key: key.into(), create_revision, mod_revision, version, value: value.into(), lease }
}

/// The expected event of a put.
pub(crate) fn put_event(kv: KeyValue, prev_kv: Option<KeyValue>) -> Event {
    Event { kind: EventType::Put, kv, prev_kv }
}

/// The expected event of a deletion at `revision`.
pub(crate) fn delete_event(key: impl Into<Vec<u8>>, revision: Revision, prev_kv: Option<KeyValue>) -> Event {
    Event {
        kind: EventType::Delete,
        kv: KeyValue { key: key.into(), mod_revision: revision, ..Default::default() },
        prev_kv,
    }
}

/// The expected watch response carrying `events`, all of `revision`.
pub(crate) fn events_at(revision: Revision, events: Vec<Event>) -> WatchResponse {
    WatchResponse { header: ResponseHeader { revision }, events, requested: false }
}

/// A header at `revision`.
pub(crate) fn header(revision: Revision) -> ResponseHeader {
    ResponseHeader { revision }
}

/// The expected answer to a range read served at store revision `revision`.
pub(crate) fn range_resp(revision: Revision, kvs: Vec<KeyValue>, more: bool, count: i64) -> RangeResponse {
    RangeResponse { header: header(revision), kvs, more, count }
}

/// A delete request.
pub(crate) fn del_req(range: KeyRange, prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest { range, prev_kv }
}

/// A transaction operation putting `value` at `key`.
pub(crate) fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(key, value))
}

/// A transaction operation reading `range` at the transaction's revision.
pub(crate) fn range_op(range: KeyRange) -> RequestOp {
    RequestOp::Range(RangeRequest::new(range))
}

/// A transaction operation deleting `range`.
pub(crate) fn delete_op(range: KeyRange, prev_kv: bool) -> RequestOp {
    RequestOp::DeleteRange(del_req(range, prev_kv))
}

/// A transaction with no compares and `ops` as its success branch.
pub(crate) fn txn_of(ops: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { success: ops, ..Default::default() }
}

pub(crate) async fn try_range<S: Store>(s: &S, req: RangeRequest) -> Result<RangeResponse> {
    let what = format!("range {:?} at revision {}", req.range, req.revision);
    within(&what, s.range(req)).await
}

pub(crate) async fn range<S: Store>(s: &S, req: RangeRequest) -> RangeResponse {
    let what = format!("range {:?} at revision {}", req.range, req.revision);
    ok(&what, try_range(s, req).await)
}

/// Every live key under `prefix`, now.
pub(crate) async fn prefix_kvs<S: Store>(s: &S, prefix: &str) -> Vec<KeyValue> {
    range(s, RangeRequest::new(KeyRange::prefix(prefix))).await.kvs
}

pub(crate) async fn get<S: Store>(s: &S, key: &str) -> Option<KeyValue> {
    ok(&format!("get {key:?}"), within(&format!("get {key:?}"), s.get(key.as_bytes())).await)
}

/// The store's current revision, as a read reports it.
pub(crate) async fn revision<S: Store>(s: &S) -> Revision {
    range(s, RangeRequest::new(KeyRange::key("conformance/revision-probe"))).await.header.revision
}

pub(crate) async fn try_put<S: Store>(s: &S, req: PutRequest) -> Result<PutResponse> {
    let what = format!("put {:?}", String::from_utf8_lossy(&req.key));
    within(&what, s.put(req)).await
}

pub(crate) async fn put_req<S: Store>(s: &S, req: PutRequest) -> PutResponse {
    let what = format!("put {:?}", String::from_utf8_lossy(&req.key));
    ok(&what, try_put(s, req).await)
}

/// Puts `value` at `key` and returns the new revision.
pub(crate) async fn put<S: Store>(s: &S, key: &str, value: &str) -> Revision {
    put_req(s, PutRequest::new(key, value)).await.header.revision
}

/// Puts a new key (one that does not exist) and returns its expected key-value.
pub(crate) async fn create<S: Store>(
    s: &S,
    key: impl Into<Vec<u8>>,
    value: &str,
    lease: LeaseId,
) -> KeyValue {
    let key = key.into();
    let rev = put_req(s, PutRequest { lease, ..PutRequest::new(key.clone(), value) }).await.header.revision;
    kv(key, value, rev, rev, 1, lease)
}

pub(crate) async fn try_delete<S: Store>(s: &S, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    within(&format!("delete {:?}", req.range), s.delete_range(req)).await
}

pub(crate) async fn delete<S: Store>(s: &S, range: KeyRange, prev_kv: bool) -> DeleteRangeResponse {
    let what = format!("delete {range:?}");
    ok(&what, try_delete(s, del_req(range, prev_kv)).await)
}

pub(crate) async fn try_txn<S: Store>(s: &S, req: TxnRequest) -> Result<TxnResponse> {
    within("txn", s.txn(req)).await
}

pub(crate) async fn txn<S: Store>(s: &S, req: TxnRequest) -> TxnResponse {
    // Values can be megabytes: name the keys, not the whole request.
    let keys: Vec<String> = req
        .success
        .iter()
        .chain(&req.failure)
        .filter_map(|op| match op {
            RequestOp::Put(p) => Some(String::from_utf8_lossy(&p.key).into_owned()),
            _ => None,
        })
        .collect();
    let what = format!("txn ({} compares, puts to {keys:?})", req.compare.len());
    ok(&what, try_txn(s, req).await)
}

pub(crate) async fn try_compact<S: Store>(s: &S, rev: Revision) -> Result<CompactResponse> {
    within(&format!("compact at {rev}"), s.compact(rev)).await
}

pub(crate) async fn compact<S: Store>(s: &S, rev: Revision) -> CompactResponse {
    ok(&format!("compact at {rev}"), try_compact(s, rev).await)
}

pub(crate) async fn try_watch<S: Store>(s: &S, req: WatchRequest) -> Result<WatchStream> {
    within(&format!("watch {:?} from {}", req.range, req.start_revision), s.watch(req)).await
}

pub(crate) async fn watch<S: Store>(s: &S, req: WatchRequest) -> WatchStream {
    let what = format!("watch {:?} from {}", req.range, req.start_revision);
    ok(&what, try_watch(s, req).await)
}

/// A watch of `range` from now, with previous key-values if `prev_kv`.
pub(crate) async fn watch_now<S: Store>(s: &S, range: KeyRange, prev_kv: bool) -> WatchStream {
    watch(s, WatchRequest { prev_kv, ..WatchRequest::new(range) }).await
}

pub(crate) async fn grant<S: Store>(s: &S, id: LeaseId, ttl: i64) -> LeaseGrantResponse {
    let what = format!("lease grant {id} ttl {ttl}");
    ok(&what, within(&what, s.lease_grant(id, ttl)).await)
}

pub(crate) async fn try_time_to_live<S: Store>(
    s: &S,
    id: LeaseId,
    keys: bool,
) -> Result<LeaseTimeToLiveResponse> {
    within(&format!("lease time-to-live {id}"), s.lease_time_to_live(id, keys)).await
}

pub(crate) async fn try_revoke<S: Store>(s: &S, id: LeaseId) -> Result<ResponseHeader> {
    within(&format!("lease revoke {id}"), s.lease_revoke(id)).await
}

pub(crate) async fn leases<S: Store>(s: &S) -> Vec<LeaseId> {
    ok("lease listing", within("lease listing", s.lease_leases()).await)
}

/// The next item of a watch stream (`None`: it ended), failing if none comes in time.
pub(crate) async fn next_item(stream: &mut WatchStream, what: &str) -> Option<Result<WatchResponse>> {
    within(&format!("watch stream ({what})"), stream.next_response()).await
}

/// The next response of a watch stream, which must be neither an error nor the end.
pub(crate) async fn next_response(stream: &mut WatchStream, what: &str) -> WatchResponse {
    match next_item(stream, what).await {
        Some(Ok(resp)) => resp,
        Some(Err(e)) => panic!("watch stream ({what}) failed: {e} ({e:?})"),
        None => panic!("watch stream ({what}) ended unexpectedly"),
    }
}

/// Responses of a watch stream up to and including the first at or after `revision`.
pub(crate) async fn responses_until(
    stream: &mut WatchStream,
    revision: Revision,
    what: &str,
) -> Vec<WatchResponse> {
    let mut got: Vec<WatchResponse> = Vec::new();
    loop {
        let Ok(item) = tokio::time::timeout(CALL_TIMEOUT, stream.next_response()).await else {
            panic!(
                "watch stream ({what}) gave nothing for {CALL_TIMEOUT:?} while waiting for revision {revision}, \
                 after {} responses, the last at revision {:?}: events were lost or delivery deadlocked",
                got.len(),
                got.last().map(|r| r.header.revision)
            );
        };
        let resp = match item {
            Some(Ok(resp)) => resp,
            Some(Err(e)) => panic!("watch stream ({what}) failed after {} responses: {e} ({e:?})", got.len()),
            None => panic!("watch stream ({what}) ended after {} responses", got.len()),
        };
        let done = resp.header.revision >= revision;
        got.push(resp);
        if done {
            return got;
        }
    }
}

/// The item the stream has ready right now, if any, without waiting.
pub(crate) fn ready_item(stream: &mut WatchStream) -> Option<Option<Result<WatchResponse>>> {
    use futures::FutureExt;
    stream.next_response().now_or_never()
}

/// Checks two lists of watch responses are equal, naming the first difference (the lists
/// can be long, so the whole of both is not printed).
pub(crate) fn assert_same_responses(got: &[WatchResponse], expected: &[WatchResponse], what: &str) {
    if let Some(i) = got.iter().zip(expected).position(|(g, e)| g != e) {
        panic!("{what}: response {i} differs:\n   got {:?}\nexpected {:?}", got[i], expected[i]);
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: got {} responses, expected {}; the first extra or missing one: {:?}",
        got.len(),
        expected.len(),
        got.get(expected.len()).or(expected.get(got.len()))
    );
}

/// The expected watch responses of puts of `(key, value)` at consecutive revisions from
/// `first_rev`, each in its own response, given each key's key-value before them.
pub(crate) fn expected_puts(
    before: &mut std::collections::BTreeMap<Vec<u8>, KeyValue>,
    first_rev: Revision,
    writes: &[(String, String)],
    prev_kv: bool,
) -> Vec<WatchResponse> {
    let mut out = Vec::with_capacity(writes.len());
    for (i, (key, value)) in writes.iter().enumerate() {
        let rev = first_rev + i as Revision;
        let prev = before.get(key.as_bytes()).cloned();
        let new = match &prev {
            Some(p) => kv(key.as_str(), value.as_str(), p.create_revision, rev, p.version + 1, 0),
            None => kv(key.as_str(), value.as_str(), rev, rev, 1, 0),
        };
        before.insert(key.as_bytes().to_vec(), new.clone());
        out.push(events_at(rev, vec![put_event(new, if prev_kv { prev } else { None })]));
    }
    out
}

/// The error a watch fails with: either at once, or as the only item of its stream, which
/// then ends.
pub(crate) async fn watch_error<S: Store>(s: &S, req: WatchRequest) -> Error {
    let what = format!("watch {:?} from {}", req.range, req.start_revision);
    match try_watch(s, req).await {
        Err(e) => e,
        Ok(mut stream) => match next_item(&mut stream, &what).await {
            Some(Err(e)) => {
                let end = next_item(&mut stream, &what).await;
                assert!(end.is_none(), "{what}: after {e:?} the stream must end, got {end:?}");
                e
            }
            other => panic!("{what}: expected an error, got {other:?}"),
        },
    }
}
