//! Reading the state: ranges at a revision and history for watches.

use super::{MvccState, Version};
use crate::store::error::{Error, Result};
use crate::store::types::{
    Event, EventType, KeyRange, KeyValue, RangeRequest, RangeResponse, ResponseHeader, Revision,
};

impl MvccState {
    /// Checks that `rev` (0 or less: the current revision) can be read.
    pub fn check_read_revision(&self, rev: Revision) -> Result<()> {
        if rev > self.revision {
            return Err(Error::FutureRevision { requested: rev, current: self.revision });
        }
        if rev > 0 && rev < self.compact_revision {
            return Err(Error::Compacted { requested: rev, compact_revision: self.compact_revision });
        }
        Ok(())
    }

    /// Serves a range read from this state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.check_read_revision(req.revision)?;
        let at = if req.revision > 0 { req.revision } else { self.revision };
        let limit = if req.limit > 0 { req.limit as usize } else { usize::MAX };
        let mut kvs = Vec::new();
        let mut count = 0i64;
        for (key, versions) in self.keys_in(&req.range) {
            let Some(v) = version_at(versions, at) else { continue };
            if v.data.is_none() {
                continue;
            }
            count += 1;
            if !req.count_only && kvs.len() < limit {
                let mut kv = v.to_kv(key).expect("checked live above");
                if req.keys_only {
                    kv.value.clear();
                }
                kvs.push(kv);
            }
        }
        let more = !req.count_only && (count as usize) > kvs.len() && req.limit > 0;
        Ok(RangeResponse { header: ResponseHeader { revision: self.revision }, kvs, more, count })
    }

    /// Live key-values in `range` at revision `at`.
    pub(super) fn live_in_range(&self, range: &KeyRange, at: Revision) -> Vec<KeyValue> {
        self.keys_in(range)
            .filter_map(|(key, versions)| version_at(versions, at).and_then(|v| v.to_kv(key)))
            .collect()
    }

    fn keys_in<'a>(
        &'a self,
        range: &KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Vec<Version>)> + 'a> {
        use std::ops::Bound;
        match range {
            KeyRange::Key(k) => Box::new(self.keys.get_key_value(k).into_iter()),
            _ => {
                let (start, end) = range.bounds();
                let end = match end {
                    Some(e) => Bound::Excluded(e),
                    None => Bound::Unbounded,
                };
                Box::new(self.keys.range::<Vec<u8>, _>((Bound::Included(start.to_vec()), end)))
            }
        }
    }

    /// Events in `range` with revision in `[from, to]`, oldest first, stopping after at most
    /// `max_revisions` distinct revisions (never splitting a revision). Returns the events
    /// and the first revision not yet covered.
    ///
    /// Fails with [`Error::Compacted`] when `from` is below the compaction point.
    pub fn events_between(
        &self,
        range: &KeyRange,
        from: Revision,
        to: Revision,
        max_revisions: usize,
    ) -> Result<(Vec<Event>, Revision)> {
        if from < self.compact_revision {
            return Err(Error::Compacted { requested: from, compact_revision: self.compact_revision });
        }
        if from > to {
            // Nothing to read; and `BTreeMap::range` panics on a start past its end.
            return Ok((Vec::new(), from));
        }
        let mut events = Vec::new();
        let mut revisions = 0usize;
        let mut last_main = 0;
        for ((main, sub), key) in self.by_revision.range((from, 0)..(to.saturating_add(1), 0)) {
            if *main != last_main {
                if revisions == max_revisions {
                    return Ok((events, *main));
                }
                revisions += 1;
                last_main = *main;
            }
            if !range.contains(key) {
                continue;
            }
            if let Some(ev) = self.event_at(key, *main, *sub) {
                events.push(ev);
            }
        }
        Ok((events, to.saturating_add(1).max(from)))
    }

    fn event_at(&self, key: &[u8], main: Revision, sub: i64) -> Option<Event> {
        let versions = self.keys.get(key)?;
        let idx = versions.iter().position(|v| v.main == main && v.sub == sub)?;
        let prev_kv = idx.checked_sub(1).and_then(|i| versions[i].to_kv(key));
        let v = &versions[idx];
        Some(match v.to_kv(key) {
            Some(kv) => Event { kind: EventType::Put, kv, prev_kv },
            None => Event {
                kind: EventType::Delete,
                kv: KeyValue { key: key.to_vec(), mod_revision: main, ..Default::default() },
                prev_kv,
            },
        })
    }
}

/// The newest version at or below `at`.
fn version_at(versions: &[Version], at: Revision) -> Option<&Version> {
    let idx = versions.partition_point(|v| v.main <= at);
    idx.checked_sub(1).map(|i| &versions[i])
}
