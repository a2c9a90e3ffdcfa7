//! The pure MVCC state machine shared by every store implementation.
//!
//! [`MvccState`] holds every retained version of every key, the revision counter, the
//! compaction point and the leases. [`MvccState::apply`] turns a [`Command`] into a result, the
//! watch events it caused and the [`Mutation`]s a durable store must persist; it does no I/O,
//! so a replicated store applies the same commands on every member and gets the same state.

mod apply;
mod read;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::types::{
    CompactResponse, Event, KeyValue, LeaseGrantResponse, LeaseId, ResponseHeader, Revision, TxnRequest,
    TxnResponse,
};

/// A write to apply to the state, as replicated through a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A transaction (puts and deletes are transactions with no compares).
    Txn(TxnRequest),
    /// Discard history below the revision.
    Compact(Revision),
    /// Create a lease; the id is chosen by the proposer so every replica agrees on it.
    LeaseGrant {
        /// The new lease's id (> 0).
        id: LeaseId,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// Revoke (or expire) a lease, deleting its keys.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
}

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Answer to [`Command::Txn`].
    Txn(TxnResponse),
    /// Answer to [`Command::Compact`].
    Compact(CompactResponse),
    /// Answer to [`Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Answer to [`Command::LeaseRevoke`].
    LeaseRevoke(ResponseHeader),
}

/// A change a durable store must persist so that [`MvccState::restore`] rebuilds the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    /// A new version of a key (a tombstone when `data` is `None`).
    PutVersion(VersionRecord),
    /// A version removed by compaction.
    DeleteVersion {
        /// Its main revision.
        main: Revision,
        /// Its position within the revision.
        sub: i64,
    },
    /// A lease created.
    PutLease {
        /// The lease.
        id: LeaseId,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// A lease removed.
    DeleteLease(LeaseId),
    /// The store revision changed.
    SetRevision(Revision),
    /// The compaction point moved.
    SetCompactRevision(Revision),
}

/// What applying one command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Watch events, in order, each with its previous key-value when there was one.
    pub events: Vec<Event>,
    /// What to persist, in order.
    pub mutations: Vec<Mutation>,
}

/// One stored version of one key: the unit of persistence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The revision of the write.
    pub main: Revision,
    /// Its position among the changes of that revision.
    pub sub: i64,
    /// The key's content; `None` for a deletion (tombstone).
    pub data: Option<VersionData>,
}

/// The content of a live version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionData {
    /// The revision that created the key.
    pub create_revision: Revision,
    /// The key's version count.
    pub version: i64,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The attached lease, or 0.
    pub lease: LeaseId,
}

/// A version in a key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) main: Revision,
    pub(crate) sub: i64,
    pub(crate) data: Option<VersionData>,
}

impl Version {
    pub(crate) fn to_kv(&self, key: &[u8]) -> Option<KeyValue> {
        self.data.as_ref().map(|d| KeyValue {
            key: key.to_vec(),
            create_revision: d.create_revision,
            mod_revision: self.main,
            version: d.version,
            value: d.value.clone(),
            lease: d.lease,
        })
    }
}

/// A lease as the state machine knows it (deadlines are the [`Lessor`](super::Lessor)'s).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaseEntry {
    pub(crate) ttl: i64,
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

/// A full, serializable copy of the state, for snapshots and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvccSnapshot {
    /// The store revision.
    pub revision: Revision,
    /// The compaction point.
    pub compact_revision: Revision,
    /// Leases and their TTLs.
    pub leases: Vec<(LeaseId, i64)>,
    /// Every retained version, in key then revision order.
    pub versions: Vec<VersionRecord>,
}

/// The revision of an empty store, as in etcd: the first write is revision 2.
pub const INITIAL_REVISION: Revision = 1;

/// The MVCC state: every retained version of every key, leases, and the revision counters.
#[derive(Clone, Debug)]
pub struct MvccState {
    revision: Revision,
    compact_revision: Revision,
    /// Each key's versions, oldest first.
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Every retained version by (main, sub) revision: the order watches replay in.
    by_revision: BTreeMap<(Revision, i64), Vec<u8>>,
    leases: BTreeMap<LeaseId, LeaseEntry>,
}

impl Default for MvccState {
    fn default() -> Self {
        MvccState {
            revision: INITIAL_REVISION,
            compact_revision: 0,
            keys: BTreeMap::new(),
            by_revision: BTreeMap::new(),
            leases: BTreeMap::new(),
        }
    }
}

impl MvccState {
    /// An empty store at [`INITIAL_REVISION`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The current store revision.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The compaction point: revisions below it can no longer be read or watched.
    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    /// Whether a lease exists.
    pub fn has_lease(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Leases and their TTLs, in id order.
    pub fn leases(&self) -> impl Iterator<Item = (LeaseId, i64)> + '_ {
        self.leases.iter().map(|(id, l)| (*id, l.ttl))
    }

    /// A lease's granted TTL and its keys in key order.
    pub fn lease_keys(&self, id: LeaseId) -> Result<(i64, Vec<Vec<u8>>)> {
        let lease = self.leases.get(&id).ok_or(Error::LeaseNotFound(id))?;
        Ok((lease.ttl, lease.keys.iter().cloned().collect()))
    }

    /// How many versions are retained (a measure of history size).
    pub fn version_count(&self) -> usize {
        self.by_revision.len()
    }

    /// Applies a command. On error nothing changed and the outcome is empty.
    pub fn apply(&mut self, cmd: &Command) -> (Result<CommandResult>, ApplyOutcome) {
        let mut out = ApplyOutcome::default();
        let res = match cmd {
            Command::Txn(txn) => self.apply_txn(txn, &mut out).map(CommandResult::Txn),
            Command::Compact(rev) => self.apply_compact(*rev, &mut out).map(CommandResult::Compact),
            Command::LeaseGrant { id, ttl } => {
                self.apply_lease_grant(*id, *ttl, &mut out).map(CommandResult::LeaseGrant)
            }
            Command::LeaseRevoke { id } => {
                self.apply_lease_revoke(*id, &mut out).map(CommandResult::LeaseRevoke)
            }
        };
        if res.is_err() {
            out = ApplyOutcome::default();
        }
        (res, out)
    }

    /// A full copy of the state.
    pub fn snapshot(&self) -> MvccSnapshot {
        let versions = self
            .keys
            .iter()
            .flat_map(|(key, versions)| {
                versions.iter().map(move |v| VersionRecord {
                    key: key.clone(),
                    main: v.main,
                    sub: v.sub,
                    data: v.data.clone(),
                })
            })
            .collect();
        MvccSnapshot {
            revision: self.revision,
            compact_revision: self.compact_revision,
            leases: self.leases().collect(),
            versions,
        }
    }

    /// Rebuilds the state from persisted records. Fails, naming the record, when they are
    /// inconsistent (a version above the revision, a key attached to an unknown lease).
    pub fn restore(snapshot: MvccSnapshot) -> Result<Self> {
        let mut state = MvccState {
            revision: snapshot.revision,
            compact_revision: snapshot.compact_revision,
            ..Default::default()
        };
        for (id, ttl) in snapshot.leases {
            state.leases.insert(id, LeaseEntry { ttl, keys: BTreeSet::new() });
        }
        let mut records = snapshot.versions;
        records.sort_by(|a, b| (&a.key, a.main, a.sub).cmp(&(&b.key, b.main, b.sub)));
        for rec in records {
            if rec.main > state.revision || rec.main <= 0 {
                return Err(Error::Storage(format!(
                    "version of key {:?} at revision {} is outside 1..={}",
                    String::from_utf8_lossy(&rec.key),
                    rec.main,
                    state.revision
                )));
            }
            if state.by_revision.insert((rec.main, rec.sub), rec.key.clone()).is_some() {
                return Err(Error::Storage(format!("two versions share revision {}.{}", rec.main, rec.sub)));
            }
            state.keys.entry(rec.key).or_default().push(Version {
                main: rec.main,
                sub: rec.sub,
                data: rec.data,
            });
        }
        for (key, versions) in &state.keys {
            let Some(data) = versions.last().and_then(|v| v.data.as_ref()) else { continue };
            if data.lease != 0 {
                let lease = state.leases.get_mut(&data.lease).ok_or_else(|| {
                    Error::Storage(format!(
                        "key {:?} is attached to unknown lease {}",
                        String::from_utf8_lossy(key),
                        data.lease
                    ))
                })?;
                lease.keys.insert(key.clone());
            }
        }
        Ok(state)
    }

    /// The latest version of `key`, if it is live.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<(&Version, &VersionData)> {
        let v = self.keys.get(key)?.last()?;
        v.data.as_ref().map(|d| (v, d))
    }

    /// A digest-friendly summary: every retained version in revision order, for comparing
    /// replicas.
    pub fn records_in_revision_order(&self) -> impl Iterator<Item = VersionRecord> + '_ {
        self.by_revision.iter().filter_map(|((main, sub), key)| {
            let v = self.keys.get(key)?.iter().find(|v| v.main == *main && v.sub == *sub)?;
            Some(VersionRecord { key: key.clone(), main: *main, sub: *sub, data: v.data.clone() })
        })
    }
}

#[cfg(test)]
mod tests;
