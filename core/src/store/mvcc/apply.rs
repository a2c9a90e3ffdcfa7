//! Applying commands: transactions, compaction and leases.

use std::collections::BTreeSet;

use super::{ApplyOutcome, LeaseEntry, Mutation, MvccState, Version, VersionData, VersionRecord};
use crate::store::error::{Error, Result};
use crate::store::types::{
    CompactResponse, Compare, CompareOp, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventType, KeyValue, LeaseGrantResponse, LeaseId, PutRequest, PutResponse, RequestOp, ResponseHeader,
    ResponseOp, Revision, TxnRequest, TxnResponse,
};

/// Writes of one transaction in progress: they all share the next revision.
struct WriteCtx<'a> {
    main: Revision,
    sub: i64,
    out: &'a mut ApplyOutcome,
}

impl MvccState {
    pub(super) fn apply_txn(&mut self, txn: &TxnRequest, out: &mut ApplyOutcome) -> Result<TxnResponse> {
        let succeeded = txn.compare.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { &txn.success } else { &txn.failure };
        self.check_ops(ops)?;

        let mut ctx = WriteCtx { main: self.revision + 1, sub: 0, out };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(self.apply_op(op, &mut ctx)?);
        }
        if ctx.sub > 0 {
            self.revision = ctx.main;
            ctx.out.mutations.push(Mutation::SetRevision(self.revision));
        }
        // Every response in a transaction carries the revision after the transaction.
        let header = ResponseHeader { revision: self.revision };
        for resp in &mut responses {
            match resp {
                ResponseOp::Range(r) => r.header = header,
                ResponseOp::Put(r) => r.header = header,
                ResponseOp::DeleteRange(r) => r.header = header,
            }
        }
        Ok(TxnResponse { header, succeeded, responses })
    }

    /// Checks everything that could make an operation fail, before any of them runs, so a
    /// failing transaction changes nothing.
    fn check_ops(&self, ops: &[RequestOp]) -> Result<()> {
        for op in ops {
            match op {
                RequestOp::Put(put) => {
                    let needs_key = put.ignore_value || put.ignore_lease;
                    let current = self.latest(&put.key);
                    if needs_key && current.is_none() {
                        return Err(Error::KeyNotFound { key: String::from_utf8_lossy(&put.key).into() });
                    }
                    if !put.ignore_lease && put.lease != 0 && !self.leases.contains_key(&put.lease) {
                        return Err(Error::LeaseNotFound(put.lease));
                    }
                }
                RequestOp::Range(range) => {
                    self.check_read_revision(range.revision)?;
                }
                RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn apply_op(&mut self, op: &RequestOp, ctx: &mut WriteCtx<'_>) -> Result<ResponseOp> {
        Ok(match op {
            RequestOp::Range(req) => {
                // A read inside a transaction sees the transaction's earlier writes.
                let saved = self.revision;
                if ctx.sub > 0 {
                    self.revision = ctx.main;
                }
                let resp = self.range(req);
                self.revision = saved;
                ResponseOp::Range(resp?)
            }
            RequestOp::Put(req) => ResponseOp::Put(self.apply_put(req, ctx)),
            RequestOp::DeleteRange(req) => ResponseOp::DeleteRange(self.apply_delete(req, ctx)),
        })
    }

    fn apply_put(&mut self, req: &PutRequest, ctx: &mut WriteCtx<'_>) -> PutResponse {
        let prev = self.latest(&req.key).map(|(v, _)| v.clone());
        let prev_kv = prev.as_ref().and_then(|v| v.to_kv(&req.key));
        let prev_data = prev.and_then(|v| v.data);
        let (create_revision, version) = match &prev_data {
            Some(d) => (d.create_revision, d.version + 1),
            None => (ctx.main, 1),
        };
        let value = match (&prev_data, req.ignore_value) {
            (Some(d), true) => d.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev_data, req.ignore_lease) {
            (Some(d), true) => d.lease,
            _ => req.lease,
        };
        let old_lease = prev_data.as_ref().map_or(0, |d| d.lease);
        if old_lease != lease {
            self.detach(old_lease, &req.key);
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(req.key.clone());
            }
        }
        let data = VersionData { create_revision, version, value, lease };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: ctx.main,
            version,
            value: data.value.clone(),
            lease,
        };
        self.push_version(&req.key, Some(data), ctx);
        ctx.out.events.push(Event { kind: EventType::Put, kv, prev_kv: prev_kv.clone() });
        PutResponse { header: ResponseHeader::default(), prev_kv: if req.prev_kv { prev_kv } else { None } }
    }

    fn apply_delete(&mut self, req: &DeleteRangeRequest, ctx: &mut WriteCtx<'_>) -> DeleteRangeResponse {
        let live: Vec<KeyValue> = self.live_in_range(&req.range, self.revision_for_ctx(ctx));
        for prev in &live {
            self.detach(prev.lease, &prev.key);
            self.push_version(&prev.key, None, ctx);
            ctx.out.events.push(Event {
                kind: EventType::Delete,
                kv: KeyValue { key: prev.key.clone(), mod_revision: ctx.main, ..Default::default() },
                prev_kv: Some(prev.clone()),
            });
        }
        DeleteRangeResponse {
            header: ResponseHeader::default(),
            deleted: live.len() as i64,
            prev_kvs: if req.prev_kv { live } else { Vec::new() },
        }
    }

    fn revision_for_ctx(&self, ctx: &WriteCtx<'_>) -> Revision {
        if ctx.sub > 0 { ctx.main } else { self.revision }
    }

    fn detach(&mut self, lease: LeaseId, key: &[u8]) {
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease)
        {
            l.keys.remove(key);
        }
    }

    fn push_version(&mut self, key: &[u8], data: Option<VersionData>, ctx: &mut WriteCtx<'_>) {
        let version = Version { main: ctx.main, sub: ctx.sub, data };
        ctx.out.mutations.push(Mutation::PutVersion(VersionRecord {
            key: key.to_vec(),
            main: version.main,
            sub: version.sub,
            data: version.data.clone(),
        }));
        self.by_revision.insert((ctx.main, ctx.sub), key.to_vec());
        self.keys.entry(key.to_vec()).or_default().push(version);
        ctx.sub += 1;
    }

    /// Whether every key the compare covers satisfies it. A compare on a single absent key
    /// sees zeros (and no value); a compare on a range with no keys holds.
    fn compare_holds(&self, cmp: &Compare) -> bool {
        let live = self.live_in_range(&cmp.range, self.revision);
        if live.is_empty() {
            if let crate::store::types::KeyRange::Key(_) = cmp.range {
                return compare_one(None, cmp);
            }
            return true;
        }
        live.iter().all(|kv| compare_one(Some(kv), cmp))
    }

    pub(super) fn apply_compact(&mut self, rev: Revision, out: &mut ApplyOutcome) -> Result<CompactResponse> {
        if rev <= self.compact_revision {
            return Err(Error::Compacted { requested: rev, compact_revision: self.compact_revision });
        }
        if rev > self.revision {
            return Err(Error::FutureRevision { requested: rev, current: self.revision });
        }
        let mut emptied = Vec::new();
        for (key, versions) in self.keys.iter_mut() {
            // Keep the newest version at or below `rev` and all later ones. That newest
            // version may be dropped if it is a tombstone below `rev`, but not one *at* `rev`:
            // a watch may start at the compaction point and must see that delete (etcd#18089).
            let keep_from = versions.iter().rposition(|v| v.main <= rev).unwrap_or(0);
            let drop_upto = match versions.get(keep_from) {
                Some(v) if v.main < rev && v.data.is_none() => keep_from + 1,
                _ => keep_from,
            };
            for v in versions.drain(..drop_upto) {
                self.by_revision.remove(&(v.main, v.sub));
                out.mutations.push(Mutation::DeleteVersion { main: v.main, sub: v.sub });
            }
            if versions.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        self.compact_revision = rev;
        out.mutations.push(Mutation::SetCompactRevision(rev));
        Ok(CompactResponse { header: ResponseHeader { revision: self.revision } })
    }

    pub(super) fn apply_lease_grant(
        &mut self,
        id: LeaseId,
        ttl: i64,
        out: &mut ApplyOutcome,
    ) -> Result<LeaseGrantResponse> {
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists(id));
        }
        self.leases.insert(id, LeaseEntry { ttl, keys: BTreeSet::new() });
        out.mutations.push(Mutation::PutLease { id, ttl });
        Ok(LeaseGrantResponse { header: ResponseHeader { revision: self.revision }, id, ttl })
    }

    pub(super) fn apply_lease_revoke(
        &mut self,
        id: LeaseId,
        out: &mut ApplyOutcome,
    ) -> Result<ResponseHeader> {
        let lease = self.leases.get(&id).ok_or(Error::LeaseNotFound(id))?;
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut ctx = WriteCtx { main: self.revision + 1, sub: 0, out };
        for key in keys {
            let Some(prev) = self.latest(&key).and_then(|(v, _)| v.to_kv(&key)) else { continue };
            self.push_version(&key, None, &mut ctx);
            ctx.out.events.push(Event {
                kind: EventType::Delete,
                kv: KeyValue { key: key.clone(), mod_revision: ctx.main, ..Default::default() },
                prev_kv: Some(prev),
            });
        }
        if ctx.sub > 0 {
            self.revision = ctx.main;
            ctx.out.mutations.push(Mutation::SetRevision(self.revision));
        }
        self.leases.remove(&id);
        out.mutations.push(Mutation::DeleteLease(id));
        Ok(ResponseHeader { revision: self.revision })
    }
}

fn compare_one(kv: Option<&KeyValue>, cmp: &Compare) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &cmp.target {
        CompareTarget::Version(t) => kv.map_or(0, |k| k.version).cmp(t),
        CompareTarget::CreateRevision(t) => kv.map_or(0, |k| k.create_revision).cmp(t),
        CompareTarget::ModRevision(t) => kv.map_or(0, |k| k.mod_revision).cmp(t),
        CompareTarget::Lease(t) => kv.map_or(0, |k| k.lease).cmp(t),
        CompareTarget::Value(t) => match kv {
            Some(k) => k.value.as_slice().cmp(t.as_slice()),
            None => return false,
        },
    };
    match cmp.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}
