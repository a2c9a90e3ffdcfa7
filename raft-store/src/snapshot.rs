//! Snapshot contents: a consistent copy of the state-machine column families.
//!
//! A snapshot is built from a RocksDB point-in-time snapshot, so applies continue while it
//! is read. The built snapshot is kept in a file so it can be sent to lagging members and
//! survives restarts; `snapshot_file.rs` builds, sends, receives and installs those files.

use std::path::{Path, PathBuf};

use rocksdb::IteratorMode;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::{CF_SM_KV, CF_SM_LEASE, CF_SM_META, Db, DbError};
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

/// A snapshot: its meta and every record of the state-machine column families. The format's
/// definition; members never hold one whole (see [`Encoder`] and `snapshot_file.rs`).
#[cfg(test)]
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

/// A record as it is written, borrowing its bytes: encodes exactly as [`Record`].
#[derive(Serialize)]
struct RecordRef<'a> {
    cf: u8,
    #[serde(with = "serde_bytes")]
    key: &'a [u8],
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
}

/// The encoding of the state machine as one point-in-time RocksDB snapshot sees it (applies
/// may continue meanwhile): the bytes of `codec::encode` of a [`SnapshotBlob`] holding every
/// record, produced a chunk at a time without holding the records, so that a snapshot or a
/// backup of any size costs a chunk of memory, not its size. The format puts the number of
/// records first, so [`open`](Self::open) counts them in a first pass over the snapshot;
/// [`write`](Self::write) reads the same snapshot again.
pub(crate) struct Encoder<'a> {
    db: &'a Db,
    snap: rocksdb::SnapshotWithThreadMode<'a, rocksdb::DB>,
    /// The snapshot's meta.
    pub(crate) meta: SnapshotMeta,
    /// Records (of every state-machine column family).
    records: u64,
    /// The encoding's length in bytes.
    pub(crate) len: u64,
}

impl<'a> Encoder<'a> {
    /// Takes the point-in-time snapshot and measures its encoding, calling `check` before
    /// each record (to stop early, it returns an error).
    pub(crate) fn open<E: From<DbError>>(
        db: &'a Db,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<Self, E> {
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
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership };
        let mut encoder = Encoder { db, snap, meta, records: 0, len: 0 };
        let (mut records, mut len) = (0u64, 1 + codec::item_size(&encoder.meta).map_err(encoding)? + 8);
        encoder.scan(|record| -> Result<(), E> {
            check()?;
            records += 1;
            len += codec::item_size(&record).map_err(encoding)?;
            Ok(())
        })?;
        encoder.records = records;
        encoder.len = len;
        Ok(encoder)
    }

    /// Calls `each` with every record, column family by column family in key order.
    fn scan<E: From<DbError>>(&self, mut each: impl FnMut(RecordRef<'_>) -> Result<(), E>) -> Result<(), E> {
        for (i, cf) in SM_CFS.iter().enumerate() {
            for item in self.snap.iterator_cf(self.db.cf(cf), IteratorMode::Start) {
                let (key, value) =
                    item.map_err(|source| DbError::Rocks { doing: "snapshot scan", source })?;
                each(RecordRef { cf: i as u8, key: &key, value: &value })?;
            }
        }
        Ok(())
    }

    /// Hands the encoding to `sink` in chunks of at least `chunk_bytes` (the last one may be
    /// shorter), stopping at the first error `sink` returns.
    pub(crate) fn write<E: From<DbError>>(
        &self,
        chunk_bytes: usize,
        mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let capacity =
            |len: u64| usize::try_from(len).unwrap_or(usize::MAX).min(chunk_bytes.saturating_add(4096));
        let mut buf = Vec::with_capacity(capacity(self.len));
        buf.push(codec::FORMAT_VERSION);
        codec::encode_item_into(&mut buf, &self.meta).map_err(encoding)?;
        codec::encode_item_into(&mut buf, &self.records).map_err(encoding)?;
        let mut written = 0u64;
        self.scan(|record| -> Result<(), E> {
            written += 1;
            codec::encode_item_into(&mut buf, &record).map_err(encoding)?;
            if buf.len() >= chunk_bytes {
                let next = Vec::with_capacity(capacity(self.len));
                sink(std::mem::replace(&mut buf, next))?;
            }
            Ok(())
        })?;
        if written != self.records {
            // A RocksDB snapshot does not change; this would be a RocksDB bug.
            return Err(DbError::Inconsistent(format!(
                "the snapshot held {} records when counted and {written} when written",
                self.records
            ))
            .into());
        }
        if !buf.is_empty() {
            sink(buf)?;
        }
        Ok(())
    }

    /// The whole encoding in memory.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Result<Vec<u8>, DbError> {
        // One chunk: `write` hands over its buffer only at the end.
        let mut whole = Vec::new();
        self.write(usize::MAX, |chunk| -> Result<(), DbError> {
            whole = chunk;
            Ok(())
        })?;
        Ok(whole)
    }
}

/// A snapshot value that does not encode (not expected: every record is bytes).
fn encoding(e: codec::CodecError) -> DbError {
    DbError::Inconsistent(format!("snapshot does not encode: {e}"))
}

/// The path of the kept snapshot.
pub(crate) fn file_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}
