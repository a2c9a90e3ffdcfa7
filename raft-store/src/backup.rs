//! Backups: a consistent copy of a member's state machine, and restoring one into the data
//! directory of a new cluster.
//!
//! A backup is the state-machine snapshot format (versioned bincode of every record of the
//! state-machine column families, see `snapshot.rs`), padded with zeros to a multiple of 512
//! bytes, followed by the SHA-256 of those bytes, as etcd appends one to its snapshots (and
//! as `etcdctl snapshot save` expects of a stream's length). It is taken from a RocksDB point-in-time snapshot
//! after a linearizable read barrier, so it holds every write acknowledged before the request.
//!
//! Neither direction holds a backup in memory: [`RaftStore::backup_stream`] encodes it a chunk
//! at a time while it is sent, and [`restore_backup_file`] checks the file's checksum in one
//! pass and writes its records in batches in a second, into a directory that takes the
//! database's name only once it is complete.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use rocksdb::WriteBatch;
use sha2::Digest;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::codec;
use crate::db::{CF_SM_KV, CF_SM_LEASE, CF_SM_META, Db, DbError, key_u64, revision_key};
use crate::snapshot::{self, KEY_APPLIED, KEY_COMPACT, KEY_MEMBERSHIP, KEY_REVISION, Record, SM_CFS};
use crate::store::RaftStore;
use crate::typ::SnapshotMeta;
use flotilla_core::store::VersionRecord;

/// Bytes of the checksum that ends every backup.
pub const BACKUP_CHECKSUM_BYTES: usize = 32;

/// The contents of a backup are padded with zeros to a multiple of this, as etcd's bbolt
/// files are: `etcdctl snapshot save` refuses a stream whose length is not a multiple of
/// 512 plus the checksum ("sha256 checksum not found").
const BACKUP_ALIGN: u64 = 512;

/// Chunks a backup stream holds ready for a slow reader (each about the requested size).
const CHUNKS_AHEAD: usize = 2;

/// A restore writes its records to RocksDB in batches of about this many bytes.
const RESTORE_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Why a backup could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The member could not confirm it is current (no leader, no quorum).
    #[error("the store is unavailable: {0}")]
    Unavailable(#[from] flotilla_core::store::Error),
    /// The member has stopped (before or while the backup was read).
    #[error("the member has stopped")]
    Stopped,
    /// The reader of a backup stream went away before its end.
    #[error("the backup's reader went away")]
    Abandoned,
    /// Reading or writing the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The backup is shorter than its checksum, its checksum does not match, or its length
    /// does not match its contents.
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    /// The backup's contents do not decode.
    #[error("the backup does not decode: {0}")]
    Decode(#[from] codec::CodecError),
    /// The target data directory already holds a database.
    #[error("{path} already exists; restore into a new data directory")]
    TargetExists {
        /// The database directory found.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed.
    #[error("backup task failed: {0}")]
    Task(String),
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The store revision of the restored data.
    pub revision: i64,
    /// Key versions restored (every retained version of every key).
    pub versions: usize,
    /// Leases restored.
    pub leases: usize,
}

/// Checks a backup's checksum and returns its contents.
pub fn verify_backup(backup: &[u8]) -> Result<&[u8], BackupError> {
    let Some(split) = backup.len().checked_sub(BACKUP_CHECKSUM_BYTES) else {
        return Err(short(backup.len() as u64));
    };
    let (body, sum) = backup.split_at(split);
    if sha2::Sha256::digest(body).as_slice() != sum {
        return Err(mismatch());
    }
    Ok(body)
}

/// Checks the checksum of the backup in file `path`, reading it once in pieces, and returns
/// the length of its contents (the file's length without the checksum).
pub fn verify_backup_file(path: &Path) -> Result<u64, BackupError> {
    let io = |source| BackupError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let body_len = len.checked_sub(BACKUP_CHECKSUM_BYTES as u64).ok_or_else(|| short(len))?;
    let mut hasher = sha2::Sha256::new();
    let mut body = BufReader::with_capacity(256 * 1024, (&mut file).take(body_len));
    let hashed = std::io::copy(&mut body, &mut hasher).map_err(io)?;
    if hashed != body_len {
        return Err(BackupError::Damaged(format!("{} changed while it was read", path.display())));
    }
    let mut sum = [0u8; BACKUP_CHECKSUM_BYTES];
    file.read_exact(&mut sum).map_err(io)?;
    if hasher.finalize().as_slice() != sum {
        return Err(mismatch());
    }
    Ok(body_len)
}

fn short(len: u64) -> BackupError {
    BackupError::Damaged(format!("{len} bytes is shorter than a checksum"))
}

fn mismatch() -> BackupError {
    BackupError::Damaged("checksum mismatch (truncated or altered file?)".into())
}

/// A backup being read from a member: [`total_bytes`](Self::total_bytes) is known at once,
/// the bytes come as a stream of chunks, the last of which ends with the checksum. Dropping
/// it stops the member's reading.
#[derive(Debug)]
pub struct BackupStream {
    total: u64,
    delivered: u64,
    chunks: mpsc::Receiver<Result<Vec<u8>, BackupError>>,
    done: bool,
}

impl BackupStream {
    /// The backup's length in bytes, checksum included.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }
}

impl Stream for BackupStream {
    type Item = Result<Vec<u8>, BackupError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = match self.chunks.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.delivered += chunk.len() as u64;
                Some(Ok(chunk))
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            // The producer ended early without saying why: the member stopped under it.
            None if self.delivered < self.total => {
                self.done = true;
                Some(Err(BackupError::Stopped))
            }
            None => None,
        })
    }
}

impl RaftStore {
    /// A consistent backup of the replicated state, streamed in chunks of about
    /// `chunk_bytes`: every write acknowledged before the call is in it. Memory stays at a
    /// few chunks whatever the store's size. Restore it with [`restore_backup_file`] (or
    /// [`restore_backup`]).
    pub async fn backup_stream(&self, chunk_bytes: usize) -> Result<BackupStream, BackupError> {
        self.read_barrier().await?;
        let db = self.db().ok_or(BackupError::Stopped)?;
        let (opened_tx, opened) = oneshot::channel();
        let (tx, chunks) = mpsc::channel(CHUNKS_AHEAD);
        let stop = self.cancel_token();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || produce(&db, chunk_bytes.max(1), &stop, &rt, opened_tx, &tx));
        let total = opened.await.map_err(|_| BackupError::Task("the backup task ended".into()))??;
        Ok(BackupStream { total, delivered: 0, chunks, done: false })
    }

    /// A consistent backup of the replicated state, whole in memory: every write acknowledged
    /// before the call is in it. [`backup_stream`](Self::backup_stream) does the same in
    /// chunks, for stores of any size.
    pub async fn backup(&self) -> Result<Vec<u8>, BackupError> {
        use futures::StreamExt as _;
        let mut stream = self.backup_stream(1024 * 1024).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(stream.total_bytes()).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }
}

/// Reads the backup on a blocking thread: measures it (answering `opened` with its length),
/// then sends it chunk by chunk, holding back the last chunk to append the checksum.
fn produce(
    db: &Db,
    chunk_bytes: usize,
    stop: &CancellationToken,
    rt: &tokio::runtime::Handle,
    opened: oneshot::Sender<Result<u64, BackupError>>,
    tx: &mpsc::Sender<Result<Vec<u8>, BackupError>>,
) {
    let running = || if stop.is_cancelled() { Err(BackupError::Stopped) } else { Ok(()) };
    let encoder = match snapshot::Encoder::open(db, running) {
        Ok(encoder) => encoder,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let padding = (BACKUP_ALIGN - encoder.len % BACKUP_ALIGN) % BACKUP_ALIGN;
    if opened.send(Ok(encoder.len + padding + BACKUP_CHECKSUM_BYTES as u64)).is_err() {
        return;
    }
    // Waits for room in the channel, or for the member to stop or the reader to go.
    let send = |item: Result<Vec<u8>, BackupError>| -> Result<(), BackupError> {
        rt.block_on(async {
            tokio::select! {
                sent = tx.send(item) => sent.map_err(|_| BackupError::Abandoned),
                () = stop.cancelled() => Err(BackupError::Stopped),
            }
        })
    };
    let mut hasher = sha2::Sha256::new();
    let mut held: Option<Vec<u8>> = None;
    let written = encoder.write(chunk_bytes, |chunk| -> Result<(), BackupError> {
        hasher.update(&chunk);
        match held.replace(chunk) {
            Some(ready) => send(Ok(ready)),
            None => Ok(()),
        }
    });
    let outcome = written.and_then(|()| {
        let mut last = held.take().unwrap_or_default();
        let zeros = [0u8; BACKUP_ALIGN as usize];
        let padding = zeros.get(..padding as usize).unwrap_or_default();
        hasher.update(padding);
        last.extend_from_slice(padding);
        last.extend_from_slice(&hasher.finalize());
        send(Ok(last))
    });
    match outcome {
        Ok(()) | Err(BackupError::Abandoned) => {}
        // The reader learns why, if there is room (otherwise the early end tells it).
        Err(e) => {
            let _ = tx.try_send(Err(e));
        }
    }
}

/// Writes a backup into `data_dir` (a member's data directory, which must not hold a
/// database yet), for a new cluster: the keys, leases and revision counters come back, the
/// old cluster's membership and log position do not. Open the directory with
/// [`RaftStore::open`] and [`initialize`](RaftStore::initialize) it as a new cluster.
pub fn restore_backup(data_dir: &Path, backup: &[u8]) -> Result<RestoreSummary, BackupError> {
    let body = verify_backup(backup)?;
    restore_records(data_dir, body, body.len() as u64)
}

/// [`restore_backup`] of the backup in file `path`, read in pieces: the checksum is checked
/// in a first pass, the records are written in batches in a second.
pub fn restore_backup_file(data_dir: &Path, path: &Path) -> Result<RestoreSummary, BackupError> {
    let body_len = verify_backup_file(path)?;
    let file =
        std::fs::File::open(path).map_err(|source| BackupError::Io { path: path.to_path_buf(), source })?;
    restore_records(data_dir, BufReader::with_capacity(256 * 1024, file), body_len)
}

/// Decodes the snapshot format from `body` (`body_len` bytes, checksum already checked) into
/// a new database under `data_dir`, built under a temporary name and renamed to `db` once
/// complete and synced, so an interrupted restore leaves no database that could be opened.
fn restore_records(data_dir: &Path, body: impl Read, body_len: u64) -> Result<RestoreSummary, BackupError> {
    let db_path = data_dir.join("db");
    if db_path.exists() {
        return Err(BackupError::TargetExists { path: db_path });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    flotilla_core::durable_fs::create_dir_all(data_dir, 0o755).map_err(io(data_dir))?;
    let partial = data_dir.join("db.restoring");
    if partial.exists() {
        // Left by an interrupted restore: never a database anything opened.
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    let (db, _closed) = Db::open(&partial)?;
    let mut body = body.take(body_len);
    let mut version = [0u8; 1];
    body.read_exact(&mut version).map_err(|_| BackupError::Damaged("the backup is empty".into()))?;
    codec::check_version(version[0])?;
    let _meta: SnapshotMeta = codec::decode_item_from(&mut body, body_len)?;
    let records: u64 = codec::decode_item_from(&mut body, body_len)?;
    let mut batch = WriteBatch::default();
    let mut counts = [0usize; 3];
    // A store that never wrote is at the initial revision, as etcd's is.
    let mut revision = flotilla_core::store::INITIAL_REVISION;
    let write = |batch: WriteBatch, sync: bool| -> Result<(), BackupError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        db.db.write_opt(batch, &opts).map_err(|source| DbError::Rocks { doing: "restore", source })?;
        Ok(())
    };
    for _ in 0..records {
        let limit = body.limit();
        let Record { cf: i, key, value } = codec::decode_item_from(&mut body, limit)?;
        let cf = SM_CFS.get(i as usize).ok_or_else(|| {
            DbError::Inconsistent(format!("backup record {} names column family #{i}", crate::db::hex(&key)))
        })?;
        // The old cluster's log position and membership stay behind: the new cluster starts
        // its own log, and its first entry (the membership) is applied on top of this state.
        if *cf == CF_SM_META && (key.as_slice() == KEY_APPLIED || key.as_slice() == KEY_MEMBERSHIP) {
            continue;
        }
        if let Some(c) = counts.get_mut(i as usize) {
            *c += 1;
        }
        check_record(&db, cf, &key, &value, &mut revision)?;
        batch.put_cf(db.cf(cf), key, value);
        if batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
            write(std::mem::take(&mut batch), false)?;
        }
    }
    // What follows the records is the padding: fewer than 512 zeros.
    let mut rest = Vec::new();
    (&mut body).take(BACKUP_ALIGN).read_to_end(&mut rest).map_err(|e| BackupError::Damaged(e.to_string()))?;
    if body.limit() != 0 || rest.len() as u64 == BACKUP_ALIGN || rest.iter().any(|b| *b != 0) {
        let after = rest.len() as u64 + body.limit();
        return Err(BackupError::Damaged(format!(
            "{after} bytes that are not padding follow the last of {records} records"
        )));
    }
    // A synced write syncs the write-ahead log, and with it every unsynced write before it.
    write(batch, true)?;
    db.db.flush_wal(true).map_err(|source| DbError::Rocks { doing: "restore sync", source })?;
    // The only handle: RocksDB closes (synchronously) before the rename.
    drop(db);
    std::fs::rename(&partial, &db_path).map_err(io(&db_path))?;
    flotilla_core::durable_fs::sync_dir(data_dir).map_err(io(data_dir))?;
    Ok(RestoreSummary { revision, versions: counts[0], leases: counts[1] })
}

/// Checks that a record decodes as what its column family holds (the checks a member
/// starting on the data makes of each record; how the records fit together it checks when
/// it loads them), and notes the store revision when the record holds it.
fn check_record(
    db: &Db,
    cf: &'static str,
    key: &[u8],
    value: &[u8],
    revision: &mut i64,
) -> Result<(), DbError> {
    match cf {
        CF_SM_KV => {
            let rec: VersionRecord = db.decode(cf, key, value)?;
            if revision_key(rec.main, rec.sub).as_slice() != key {
                return Err(DbError::Inconsistent(format!(
                    "version stored under key {} says it is revision {}.{}",
                    crate::db::hex(key),
                    rec.main,
                    rec.sub
                )));
            }
        }
        CF_SM_LEASE => {
            key_u64(cf, key)?;
            let _ttl: i64 = db.decode(cf, key, value)?;
        }
        CF_SM_META if key == KEY_REVISION => *revision = db.decode(cf, key, value)?,
        CF_SM_META if key == KEY_COMPACT => {
            let _compacted: i64 = db.decode(cf, key, value)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
