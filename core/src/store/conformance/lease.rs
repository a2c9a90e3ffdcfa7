//! Leases: grant, listing, time-to-live, keep-alive, revoke and expiry, and keys moving
//! between leases.

use std::time::Duration;

use super::support::{
    create, delete, delete_event, events_at, get, grant, header, kv, leases, next_response, ok, prefix_kvs,
    put_req, revision, try_put, try_revoke, try_time_to_live, watch_now, within,
};
use crate::store::{
    Error, KeyRange, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, Store,
};

async fn try_grant<S: Store>(s: &S, id: LeaseId, ttl: i64) -> crate::store::Result<LeaseGrantResponse> {
    within(&format!("lease grant {id}"), s.lease_grant(id, ttl)).await
}

async fn try_keep_alive<S: Store>(s: &S, id: LeaseId) -> crate::store::Result<LeaseKeepAliveResponse> {
    within(&format!("lease keep-alive {id}"), s.lease_keep_alive(id)).await
}

async fn time_to_live<S: Store>(s: &S, id: LeaseId, keys: bool) -> LeaseTimeToLiveResponse {
    ok(&format!("lease time-to-live {id}"), try_time_to_live(s, id, keys).await)
}

/// The keys a lease holds, in key order.
async fn lease_keys<S: Store>(s: &S, id: LeaseId) -> Vec<Vec<u8>> {
    time_to_live(s, id, true).await.keys
}

/// A lease can be granted with a chosen id (once: a second grant fails with `LeaseExists`) or
/// with id 0 for a store-chosen positive id; grants are not writes; listing is in id order.
pub async fn lease_grant_with_chosen_and_generated_ids<S: Store>(s: &S) {
    let now = revision(s).await;
    assert_eq!(grant(s, 1001, 60).await, LeaseGrantResponse { header: header(now), id: 1001, ttl: 60 });
    assert_eq!(try_grant(s, 1001, 30).await, Err(Error::LeaseExists(1001)));
    let g1 = grant(s, 0, 60).await;
    assert!(g1.id > 0 && g1.id != 1001, "a store-chosen id must be positive and new, got {}", g1.id);
    assert_eq!(g1, LeaseGrantResponse { header: header(now), id: g1.id, ttl: 60 });
    let g2 = grant(s, 0, 30).await;
    assert!(
        g2.id > 0 && g2.id != 1001 && g2.id != g1.id,
        "a store-chosen id must be positive and new, got {}",
        g2.id
    );
    assert_eq!(g2, LeaseGrantResponse { header: header(now), id: g2.id, ttl: 30 });
    let mut ids = vec![1001, g1.id, g2.id];
    ids.sort_unstable();
    assert_eq!(leases(s).await, ids);
    assert_eq!(revision(s).await, now, "granting leases is not a write");
}

/// Time-to-live reports the remaining and granted TTL and, when asked, the lease's keys in
/// key order; deleting a key detaches it; an unknown lease is `LeaseNotFound`.
pub async fn lease_time_to_live_reports_ttl_and_keys<S: Store>(s: &S) {
    let id = grant(s, 2002, 60).await.id;
    create(s, "tl/b", "1", id).await;
    create(s, "tl/a", "1", id).await;
    create(s, "tl/c", "1", 0).await;
    let now = revision(s).await;
    let keys = vec![b"tl/a".to_vec(), b"tl/b".to_vec()];
    let want = LeaseTimeToLiveResponse { header: header(now), id, ttl: 60, granted_ttl: 60, keys };
    assert_eq!(time_to_live(s, id, true).await, want);
    assert_eq!(time_to_live(s, id, false).await, LeaseTimeToLiveResponse { keys: vec![], ..want });
    delete(s, KeyRange::key("tl/b"), false).await;
    assert_eq!(lease_keys(s, id).await, vec![b"tl/a".to_vec()], "a deleted key leaves its lease");
    assert_eq!(try_time_to_live(s, 999, true).await, Err(Error::LeaseNotFound(999)));
}

/// Revoking a lease deletes all its keys at one revision, seen by a watch as one response;
/// the lease is then gone for every lease call and for puts; revoking a lease without keys is
/// not a write.
pub async fn lease_revoke_deletes_its_keys_at_one_revision<S: Store>(s: &S) {
    let id = grant(s, 3003, 60).await.id;
    let b = create(s, "rv/b", "1", id).await;
    let a = create(s, "rv/a", "1", id).await;
    let c = create(s, "rv/c", "1", 0).await;
    let mut watcher = watch_now(s, KeyRange::prefix("rv/"), true).await;
    let now = revision(s).await;
    assert_eq!(try_revoke(s, id).await, Ok(header(now + 1)));
    let deletes = vec![delete_event("rv/a", now + 1, Some(a)), delete_event("rv/b", now + 1, Some(b))];
    assert_eq!(next_response(&mut watcher, "prefix rv/ during a revoke").await, events_at(now + 1, deletes));
    assert_eq!(prefix_kvs(s, "rv/").await, vec![c]);
    assert_eq!(leases(s).await, Vec::<LeaseId>::new());
    assert_eq!(try_time_to_live(s, id, false).await, Err(Error::LeaseNotFound(id)));
    assert_eq!(try_revoke(s, id).await, Err(Error::LeaseNotFound(id)));
    assert_eq!(try_keep_alive(s, id).await, Err(Error::LeaseNotFound(id)));
    let put = PutRequest { lease: id, ..PutRequest::new("rv/d", "1") };
    assert_eq!(try_put(s, put).await, Err(Error::LeaseNotFound(id)));

    let empty = grant(s, 3004, 60).await.id;
    assert_eq!(try_revoke(s, empty).await, Ok(header(now + 1)), "a lease without keys");
    assert_eq!(revision(s).await, now + 1);
}

/// A put naming a lease that never existed fails with `LeaseNotFound` and writes nothing.
pub async fn put_with_unknown_lease_fails<S: Store>(s: &S) {
    let now = revision(s).await;
    let put = PutRequest { lease: 5005, ..PutRequest::new("ul/k", "1") };
    assert_eq!(try_put(s, put).await, Err(Error::LeaseNotFound(5005)));
    assert_eq!(get(s, "ul/k").await, None);
    assert_eq!(revision(s).await, now);
}

/// A put with another lease (or none) moves the key: the old lease no longer holds it and
/// revoking the old leases later deletes nothing.
pub async fn keys_move_between_leases<S: Store>(s: &S) {
    let (a, b) = (grant(s, 4001, 60).await.id, grant(s, 4002, 60).await.id);
    let first = create(s, "mv/k", "1", a).await;
    let r1 = first.mod_revision;
    assert_eq!(lease_keys(s, a).await, vec![b"mv/k".to_vec()]);
    put_req(s, PutRequest { lease: b, ..PutRequest::new("mv/k", "2") }).await;
    assert_eq!(get(s, "mv/k").await, Some(kv("mv/k", "2", r1, r1 + 1, 2, b)));
    assert_eq!((lease_keys(s, a).await, lease_keys(s, b).await), (vec![], vec![b"mv/k".to_vec()]));
    put_req(s, PutRequest::new("mv/k", "3")).await;
    assert_eq!(lease_keys(s, b).await, Vec::<Vec<u8>>::new());
    assert_eq!(try_revoke(s, a).await, Ok(header(r1 + 2)));
    assert_eq!(try_revoke(s, b).await, Ok(header(r1 + 2)));
    assert_eq!(get(s, "mv/k").await, Some(kv("mv/k", "3", r1, r1 + 2, 3, 0)));
}

/// `ignore_lease` keeps the key's lease while the value changes; `ignore_value` with lease 0
/// keeps the value and detaches the key.
pub async fn put_ignore_lease_keeps_lease<S: Store>(s: &S) {
    let id = grant(s, 4101, 60).await.id;
    let v1 = create(s, "il/k", "v1", id).await;
    let r1 = v1.mod_revision;
    let both =
        PutRequest { ignore_value: true, ignore_lease: true, prev_kv: true, ..PutRequest::new("il/k", "") };
    assert_eq!(put_req(s, both).await, PutResponse { header: header(r1 + 1), prev_kv: Some(v1) });
    assert_eq!(get(s, "il/k").await, Some(kv("il/k", "v1", r1, r1 + 1, 2, id)));
    put_req(s, PutRequest { ignore_lease: true, ..PutRequest::new("il/k", "v3") }).await;
    assert_eq!(get(s, "il/k").await, Some(kv("il/k", "v3", r1, r1 + 2, 3, id)));
    assert_eq!(lease_keys(s, id).await, vec![b"il/k".to_vec()]);
    put_req(s, PutRequest { ignore_value: true, ..PutRequest::new("il/k", "") }).await;
    assert_eq!(get(s, "il/k").await, Some(kv("il/k", "v3", r1, r1 + 3, 4, 0)));
    assert_eq!(lease_keys(s, id).await, Vec::<Vec<u8>>::new());
}

/// A lease that is not kept alive expires after its TTL (not before), deleting its keys
/// as one revision a watch sees; then it is gone.
pub async fn lease_expiry_deletes_keys<S: Store>(s: &S) {
    let start = tokio::time::Instant::now();
    let id = grant(s, 6006, 1).await.id;
    let a = create(s, "ex/a", "1", id).await;
    let b = create(s, "ex/b", "1", id).await;
    let mut watcher = watch_now(s, KeyRange::prefix("ex/"), true).await;
    let now = revision(s).await;
    let resp = next_response(&mut watcher, "prefix ex/ waiting for a lease of 1 s to expire").await;
    let elapsed = start.elapsed();
    let deletes = vec![delete_event("ex/a", now + 1, Some(a)), delete_event("ex/b", now + 1, Some(b))];
    assert_eq!(resp, events_at(now + 1, deletes));
    assert!(elapsed >= Duration::from_secs(1), "a lease of 1 s expired after {elapsed:?}");
    assert_eq!(prefix_kvs(s, "ex/").await, vec![]);
    assert_eq!(leases(s).await, Vec::<LeaseId>::new());
    assert_eq!(try_time_to_live(s, id, false).await, Err(Error::LeaseNotFound(id)));
}

/// Keep-alive renews a lease to its full TTL (time-to-live shows it) and so postpones its
/// expiry past the original deadline; keep-alive of an unknown lease is `LeaseNotFound`.
pub async fn lease_keep_alive_postpones_expiry<S: Store>(s: &S) {
    let id = grant(s, 7007, 2).await.id;
    let k = create(s, "ka/k", "1", id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(time_to_live(s, id, false).await.ttl, 1, "1.2 s into a 2 s lease, 1 s is left (rounded up)");
    let now = revision(s).await;
    let kept = try_keep_alive(s, id).await;
    assert_eq!(kept, Ok(LeaseKeepAliveResponse { header: header(now), id, ttl: 2 }));
    assert_eq!(time_to_live(s, id, false).await.ttl, 2, "a kept-alive lease has its full TTL again");
    let mut watcher = watch_now(s, KeyRange::prefix("ka/"), false).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(s, "ka/k").await, Some(k), "the key outlived the lease's original deadline");
    let resp = next_response(&mut watcher, "prefix ka/ waiting for a kept-alive lease to expire").await;
    assert_eq!(resp, events_at(now + 1, vec![delete_event("ka/k", now + 1, None)]));
    assert_eq!(try_keep_alive(s, id).await, Err(Error::LeaseNotFound(id)));
    assert_eq!(try_keep_alive(s, 7008).await, Err(Error::LeaseNotFound(7008)));
}
