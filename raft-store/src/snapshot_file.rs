//! Raft snapshots as files: built, kept, sent, received and installed a chunk at a time.
//!
//! openraft hands a snapshot's data around as an opaque value ([`SnapshotFile`]): here it is
//! an open file holding the snapshot format (`snapshot.rs`), never the bytes. A built
//! snapshot is encoded straight into the member's kept snapshot file; a lagging member is sent
//! that file in chunks as they are read; a member receiving one writes the chunks into a
//! temporary file beside its kept snapshot. Installing it checks every record in a first
//! pass, makes it the kept snapshot, then replaces the state machine in batches: a marker
//! written with the first batch (which also clears the state machine) and removed with the
//! last says an install is under way. A member that finds the marker at start (it stopped
//! mid-install) clears the partial state machine, and openraft installs the kept snapshot
//! again since the state machine then has applied nothing. So a snapshot of any size costs a
//! batch of memory to send, receive or install, not its size, and a crash at any point
//! leaves either the old state or a snapshot that is installed again.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flotilla_core::durable_fs::AtomicFile;
use rocksdb::WriteBatch;

use crate::codec;
use crate::db::{CF_SM_META, Db, DbError};
use crate::snapshot::{KEY_APPLIED, KEY_MEMBERSHIP, Record, SM_CFS, file_path};
use crate::typ::SnapshotMeta;

/// The state-machine metadata key present while a snapshot install is under way.
pub(crate) const KEY_INSTALLING: &[u8] = b"installing";

/// An install writes the records to RocksDB in batches of about this many bytes.
const INSTALL_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Bytes read at a time from a snapshot file.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The data of a raft snapshot: an open file holding the snapshot format, read from its
/// start. A received snapshot stays a temporary file until it is installed, which makes it
/// the member's kept snapshot; dropped before that, the temporary file is removed.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    len: u64,
    /// The received snapshot's temporary file, committed over the kept snapshot on install.
    pending: Option<AtomicFile>,
}

impl SnapshotFile {
    /// The member's kept snapshot in `dir`, if it has one.
    pub(crate) fn open_kept(dir: &Path) -> io::Result<Option<Self>> {
        match File::open(file_path(dir)) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some(SnapshotFile { file, len, pending: None }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The snapshot's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The file, for reading from its start (a sender streams it).
    pub(crate) fn into_file(self) -> io::Result<File> {
        let mut file = self.file;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Reads the whole snapshot: its meta, after calling `each` with every record in order.
    /// Fails on a record that does not decode, a column family that does not exist, a record
    /// count that does not match, or bytes after the last record.
    pub(crate) fn read(
        &mut self,
        mut each: impl FnMut(Record) -> Result<(), DbError>,
    ) -> Result<SnapshotMeta, DbError> {
        let corrupt = |what: String| DbError::Inconsistent(format!("snapshot data: {what}"));
        self.file.seek(SeekFrom::Start(0)).map_err(|e| corrupt(e.to_string()))?;
        let mut body = BufReader::with_capacity(READ_BUFFER_BYTES, &mut self.file).take(self.len);
        let mut version = [0u8; 1];
        body.read_exact(&mut version).map_err(|_| corrupt("empty".into()))?;
        let decode_err = |e: codec::CodecError| corrupt(e.to_string());
        codec::check_version(version[0]).map_err(decode_err)?;
        let meta: SnapshotMeta = codec::decode_item_from(&mut body, self.len).map_err(decode_err)?;
        let records: u64 = codec::decode_item_from(&mut body, self.len).map_err(decode_err)?;
        for n in 0..records {
            let limit = body.limit();
            let record: Record = codec::decode_item_from(&mut body, limit)
                .map_err(|e| corrupt(format!("record {n} of {records}: {e}")))?;
            if SM_CFS.get(record.cf as usize).is_none() {
                return Err(corrupt(format!("record {n} names column family #{}", record.cf)));
            }
            each(record)?;
        }
        if body.limit() != 0 {
            return Err(corrupt(format!("{} bytes follow the last of {records} records", body.limit())));
        }
        Ok(meta)
    }
}

/// A snapshot being received from the leader, written into a temporary file beside the kept
/// snapshot of the member's data directory.
pub(crate) struct Receiver {
    file: AtomicFile,
    len: u64,
}

impl Receiver {
    /// Starts receiving a snapshot into `dir`.
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        Ok(Receiver { file: AtomicFile::create(&file_path(dir), 0o600)?, len: 0 })
    }

    /// Appends a chunk.
    pub(crate) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// The received snapshot, for openraft to install.
    pub(crate) fn finish(mut self) -> io::Result<SnapshotFile> {
        self.file.flush()?;
        let file = File::open(self.file.temp_path())?;
        Ok(SnapshotFile { file, len: self.len, pending: Some(self.file) })
    }
}

/// Writes the encoding `encoder` makes as the kept snapshot in `dir` and opens it.
pub(crate) fn keep_built(dir: &Path, encoder: &crate::snapshot::Encoder<'_>) -> io::Result<SnapshotFile> {
    let mut out = AtomicFile::create(&file_path(dir), 0o600)?;
    encoder
        .write(crate::network::SNAPSHOT_CHUNK_BYTES, |chunk| -> Result<(), Kept> {
            out.write_all(&chunk).map_err(Kept::Io)
        })
        .map_err(Kept::into_io)?;
    out.commit()?;
    SnapshotFile::open_kept(dir)?.ok_or_else(|| io::Error::other("the snapshot just kept is gone"))
}

/// Why keeping a built snapshot failed: the encoder's database or the file's I/O.
enum Kept {
    Db(DbError),
    Io(io::Error),
}

impl From<DbError> for Kept {
    fn from(e: DbError) -> Self {
        Kept::Db(e)
    }
}

impl Kept {
    fn into_io(self) -> io::Error {
        match self {
            Kept::Db(e) => io::Error::other(e),
            Kept::Io(e) => e,
        }
    }
}

/// Replaces the state machine in `db` with `snapshot`, whose meta must be `meta`. A received
/// snapshot first becomes the kept one; any other is the kept one already (openraft installs
/// it at start). The module's description has the steps and why a crash between them loses
/// nothing. `fail_after_batches` stops the install after that many record batches, as a
/// crash would (tests only).
pub(crate) fn install(
    db: &Db,
    meta: &SnapshotMeta,
    mut snapshot: SnapshotFile,
    fail_after_batches: Option<usize>,
) -> Result<(), DbError> {
    let found = snapshot.read(|_| Ok(()))?;
    if &found != meta {
        return Err(DbError::Inconsistent("snapshot data does not match its meta".into()));
    }
    if let Some(pending) = snapshot.pending.take() {
        pending
            .commit()
            .map_err(|e| DbError::Inconsistent(format!("cannot keep the received snapshot: {e}")))?;
    }
    let write = |batch: WriteBatch, sync: bool| -> Result<(), DbError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        db.db.write_opt(batch, &opts).map_err(|source| DbError::Rocks { doing: "snapshot install", source })
    };
    let encode = |e: codec::CodecError| DbError::Inconsistent(format!("snapshot meta does not encode: {e}"));
    let mut batch = clear_batch(db);
    batch.put_cf(db.cf(CF_SM_META), KEY_INSTALLING, codec::encode(meta).map_err(encode)?);
    write(batch, true)?;

    let mut batch = WriteBatch::default();
    let mut batches = 0;
    snapshot.read(|Record { cf, key, value }| {
        let Some(&cf) = SM_CFS.get(cf as usize) else {
            return Err(DbError::Inconsistent(format!("snapshot record names column family #{cf}")));
        };
        // The applied log id and membership are the meta's, written with the last batch: until
        // then the state machine has applied nothing.
        if cf == CF_SM_META && (key.as_slice() == KEY_APPLIED || key.as_slice() == KEY_MEMBERSHIP) {
            return Ok(());
        }
        batch.put_cf(db.cf(cf), key, value);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            write(std::mem::take(&mut batch), false)?;
            batches += 1;
            if fail_after_batches.is_some_and(|n| batches >= n) {
                return Err(DbError::Inconsistent("install stopped (test fault)".into()));
            }
        }
        Ok(())
    })?;
    let meta_cf = db.cf(CF_SM_META);
    batch.put_cf(meta_cf, KEY_APPLIED, codec::encode(&meta.last_log_id).map_err(encode)?);
    batch.put_cf(meta_cf, KEY_MEMBERSHIP, codec::encode(&meta.last_membership).map_err(encode)?);
    batch.delete_cf(meta_cf, KEY_INSTALLING);
    // A synced write syncs the write-ahead log, and with it every unsynced batch before it.
    write(batch, true)
}

/// Clears a state machine left half-installed by a member that stopped mid-install: it then
/// has applied nothing, and openraft installs the kept snapshot again at start. Returns
/// whether there was one.
pub(crate) fn clear_interrupted_install(db: &Db) -> Result<bool, DbError> {
    if db.get::<SnapshotMeta>(CF_SM_META, KEY_INSTALLING)?.is_none() {
        return Ok(false);
    }
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.db
        .write_opt(clear_batch(db), &opts)
        .map_err(|source| DbError::Rocks { doing: "clearing an interrupted install", source })?;
    Ok(true)
}

/// A batch deleting every record of the state-machine column families.
fn clear_batch(db: &Db) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for cf in SM_CFS {
        // Every key is shorter than this bound (keys are at most 16 bytes or short names).
        batch.delete_range_cf(db.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice());
        batch.delete_cf(db.cf(cf), []);
    }
    batch
}

#[cfg(test)]
#[path = "snapshot_file_tests.rs"]
mod tests;
