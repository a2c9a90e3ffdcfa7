//! Snapshot contents: a consistent copy of the state-machine column families.
//!
//! A snapshot is built from a RocksDB point-in-time snapshot, so applies continue while it
//! is read; installing one replaces the state-machine column families in one write batch.
//! The built snapshot is also kept in a file so it can be sent to lagging members and
//! survives restarts.

use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::{CF_SM_KV, CF_SM_LEASE, CF_SM_META, Db, DbError, hex};
use crate::typ::{LogId, SnapshotMeta, StoredMembership};

/// The state-machine column families, in the order a snapshot lists them.
pub(crate) const SM_CFS: [&str; 3] = [CF_SM_KV, CF_SM_LEASE, CF_SM_META];
/// Where the last snapshot is kept, relative to the data directory.
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Keys in the state-machine metadata column family.
pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const KEY_REVISION: &[u8] = b"revision";
pub(crate) const KEY_COMPACT: &[u8] = b"compact_revision";

/// A snapshot: its meta and every record of the state-machine column families.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotBlob {
    pub(crate) meta: SnapshotMeta,
    /// Every record, column family by column family in key order.
    pub(crate) records: Vec<Record>,
}

/// One record of a state-machine column family. Encoded like the tuple
/// `(cf, key, value)` it replaced: bincode writes struct fields in order, and byte strings
/// as a length and the bytes either way (as bytes they are copied whole, not byte by byte).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The column family's index in [`SM_CFS`].
    pub(crate) cf: u8,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub(crate) key: Vec<u8>,
    /// The encoded value.
    #[serde(with = "serde_bytes")]
    pub(crate) value: Vec<u8>,
}

/// Reads a consistent copy of the state machine (applies may continue meanwhile).
pub(crate) fn build(db: &Db) -> Result<SnapshotBlob, DbError> {
    let snap = db.db.snapshot();
    let read_meta = |key: &[u8]| -> Result<Option<Vec<u8>>, DbError> {
        snap.get_cf(db.cf(CF_SM_META), key)
            .map_err(|source| DbError::Rocks { doing: "snapshot read", source })
    };
    let applied: Option<LogId> = match read_meta(KEY_APPLIED)? {
        Some(b) => db.decode(CF_SM_META, KEY_APPLIED, &b)?,
        None => None,
    };
    let membership: StoredMembership = match read_meta(KEY_MEMBERSHIP)? {
        Some(b) => db.decode(CF_SM_META, KEY_MEMBERSHIP, &b)?,
        None => StoredMembership::default(),
    };
    let mut records = Vec::new();
    for (i, cf) in SM_CFS.iter().enumerate() {
        for item in snap.iterator_cf(db.cf(cf), IteratorMode::Start) {
            let (k, v) = item.map_err(|source| DbError::Rocks { doing: "snapshot scan", source })?;
            records.push(Record { cf: i as u8, key: k.to_vec(), value: v.to_vec() });
        }
    }
    Ok(SnapshotBlob { meta: SnapshotMeta { last_log_id: applied, last_membership: membership }, records })
}

/// Replaces the state-machine column families with the snapshot's records, atomically.
pub(crate) fn install(db: &Db, blob: &SnapshotBlob) -> Result<(), DbError> {
    let mut batch = WriteBatch::default();
    for cf in SM_CFS {
        // Every key is shorter than this bound (keys are at most 16 bytes or short names).
        batch.delete_range_cf(db.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice());
        batch.delete_cf(db.cf(cf), []);
    }
    for Record { cf: i, key, value } in &blob.records {
        let cf = SM_CFS.get(*i as usize).ok_or_else(|| {
            DbError::Inconsistent(format!("snapshot record {} names column family #{i}", hex(key)))
        })?;
        batch.put_cf(db.cf(cf), key, value);
    }
    db.db.write(batch).map_err(|source| DbError::Rocks { doing: "snapshot install", source })
}

/// The path of the kept snapshot.
pub(crate) fn file_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Keeps `bytes` (an encoded blob) as the current snapshot, whole or not at all after a crash
/// or power loss ([`flotilla_core::durable_fs::write_atomic`]).
pub(crate) fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    flotilla_core::durable_fs::write_atomic(&file_path(dir), bytes, 0o600)
}

/// Loads the kept snapshot's bytes and meta, if there is one.
pub(crate) fn load(dir: &Path) -> Result<Option<(Vec<u8>, SnapshotMeta)>, DbError> {
    let path = file_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DbError::Inconsistent(format!("cannot read {}: {e}", path.display()))),
    };
    let blob: SnapshotBlob = codec::decode(&bytes)
        .map_err(|e| DbError::Inconsistent(format!("snapshot file {} is corrupt: {e}", path.display())))?;
    Ok(Some((bytes, blob.meta)))
}
