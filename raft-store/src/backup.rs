//! Backups: a consistent copy of a member's state machine, and restoring one into the data
//! directory of a new cluster.
//!
//! A backup is the state-machine snapshot format (versioned bincode of every record of the
//! state-machine column families, see `snapshot.rs`) followed by the SHA-256 of those bytes,
//! as etcd appends one to its snapshots. It is taken from a RocksDB point-in-time snapshot
//! after a linearizable read barrier, so it holds every write acknowledged before the request.

use std::path::{Path, PathBuf};

use rocksdb::WriteBatch;
use sha2::Digest;

use crate::codec;
use crate::db::{CF_SM_META, Db, DbError};
use crate::snapshot::{self, KEY_APPLIED, KEY_MEMBERSHIP, SM_CFS, SnapshotBlob};
use crate::store::RaftStore;

/// Bytes of the checksum that ends every backup.
pub const BACKUP_CHECKSUM_BYTES: usize = 32;

/// Why a backup could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The member could not confirm it is current (no leader, no quorum).
    #[error("the store is unavailable: {0}")]
    Unavailable(#[from] flotilla_core::store::Error),
    /// The member has stopped.
    #[error("the member has stopped")]
    Stopped,
    /// Reading or writing the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The backup is shorter than its checksum or its checksum does not match.
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

/// Appends the checksum to `bytes`.
fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let sum = sha2::Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    bytes
}

/// Checks a backup's checksum and returns its contents.
pub fn verify_backup(backup: &[u8]) -> Result<&[u8], BackupError> {
    let Some(split) = backup.len().checked_sub(BACKUP_CHECKSUM_BYTES) else {
        return Err(BackupError::Damaged(format!("{} bytes is shorter than a checksum", backup.len())));
    };
    let (body, sum) = backup.split_at(split);
    if sha2::Sha256::digest(body).as_slice() != sum {
        return Err(BackupError::Damaged("checksum mismatch (truncated or altered file?)".into()));
    }
    Ok(body)
}

impl RaftStore {
    /// A consistent backup of the replicated state: every write acknowledged before the call
    /// is in it. Restore it with [`restore_backup`].
    pub async fn backup(&self) -> Result<Vec<u8>, BackupError> {
        self.read_barrier().await?;
        let db = self.db().ok_or(BackupError::Stopped)?;
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, BackupError> {
            let blob = snapshot::build(&db)?;
            Ok(seal(codec::encode(&blob)?))
        })
        .await
        .map_err(|e| BackupError::Task(e.to_string()))?
    }
}

/// Writes a backup into `data_dir` (a member's data directory, which must not hold a
/// database yet), for a new cluster: the keys, leases and revision counters come back, the
/// old cluster's membership and log position do not. Open the directory with
/// [`RaftStore::open`] and [`initialize`](RaftStore::initialize) it as a new cluster.
pub fn restore_backup(data_dir: &Path, backup: &[u8]) -> Result<RestoreSummary, BackupError> {
    let body = verify_backup(backup)?;
    let blob: SnapshotBlob = codec::decode(body)?;
    let db_path = data_dir.join("db");
    if db_path.exists() {
        return Err(BackupError::TargetExists { path: db_path });
    }
    let dir_error =
        |e: std::io::Error| DbError::Inconsistent(format!("cannot create {}: {e}", data_dir.display()));
    flotilla_core::durable_fs::create_dir_all(data_dir, 0o755).map_err(dir_error)?;
    let (db, _closed) = Db::open(&db_path)?;
    // The entry `db` itself, which RocksDB does not sync (see `RaftStore::open`).
    flotilla_core::durable_fs::sync_dir(data_dir).map_err(dir_error)?;
    let mut batch = WriteBatch::default();
    let mut counts = [0usize; 3];
    for snapshot::Record { cf: i, key, value } in &blob.records {
        let cf = SM_CFS.get(*i as usize).ok_or_else(|| {
            DbError::Inconsistent(format!("backup record {} names column family #{i}", crate::db::hex(key)))
        })?;
        // The old cluster's log position and membership stay behind: the new cluster starts
        // its own log, and its first entry (the membership) is applied on top of this state.
        if *cf == CF_SM_META && (key.as_slice() == KEY_APPLIED || key.as_slice() == KEY_MEMBERSHIP) {
            continue;
        }
        if let Some(c) = counts.get_mut(*i as usize) {
            *c += 1;
        }
        batch.put_cf(db.cf(cf), key, value);
    }
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    db.db.write_opt(batch, &opts).map_err(|source| DbError::Rocks { doing: "restore", source })?;
    let state = crate::state_machine::load_state(&db)?;
    Ok(RestoreSummary { revision: state.revision(), versions: counts[0], leases: counts[1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_catches_damage() {
        let sealed = seal(b"records".to_vec());
        assert_eq!(verify_backup(&sealed).ok(), Some(b"records".as_slice()));
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(matches!(verify_backup(&flipped), Err(BackupError::Damaged(_))));
        assert!(matches!(verify_backup(&sealed[..10]), Err(BackupError::Damaged(_))));
    }
}
