//! The RocksDB database of one member: column families, key layout and the format check.
//!
//! One database (and so one write-ahead log) holds the raft log, the vote and the state
//! machine, so their writes are ordered against each other and one `fsync` of the WAL makes
//! everything before it durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options};

use crate::codec::{self, CodecError};

/// Raft log entries, keyed by big-endian index.
pub(crate) const CF_LOG: &str = "raft_log";
/// Vote, last purged log id, committed log id, database format.
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// Key versions, keyed by big-endian (main, sub) revision.
pub(crate) const CF_SM_KV: &str = "sm_kv";
/// Leases, keyed by big-endian id.
pub(crate) const CF_SM_LEASE: &str = "sm_lease";
/// State-machine metadata: revision, compaction point, last applied log id, membership.
pub(crate) const CF_SM_META: &str = "sm_meta";

const ALL_CFS: [&str; 5] = [CF_LOG, CF_RAFT_META, CF_SM_KV, CF_SM_LEASE, CF_SM_META];

/// The database layout version; bumped when the key layout or a record type changes.
pub(crate) const DB_FORMAT: u32 = 1;
const KEY_FORMAT: &[u8] = b"format";

/// Why a member's database could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// RocksDB refused to open the database.
    #[error("cannot open database at {path}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// The database was written by an unknown layout version.
    #[error("database at {path} has format {found}; this build reads format {DB_FORMAT}")]
    UnknownFormat {
        /// The database directory.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// A record could not be decoded.
    #[error("corrupt record in column family {cf}, key {key}")]
    Corrupt {
        /// The column family.
        cf: &'static str,
        /// The key, hex-encoded.
        key: String,
        /// What was wrong.
        #[source]
        source: CodecError,
    },
    /// The records are individually valid but inconsistent.
    #[error("inconsistent state in database: {0}")]
    Inconsistent(String),
    /// A RocksDB read or write failed.
    #[error("database {doing} failed")]
    Rocks {
        /// What was being done.
        doing: &'static str,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
}

/// An open member database.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) db: Arc<Handle>,
    pub(crate) path: PathBuf,
}

/// The RocksDB instance, and a signal sent once it is closed (fields drop in order, so the
/// signal goes after RocksDB's own shutdown has finished).
#[derive(Debug)]
pub(crate) struct Handle {
    db: DB,
    _closed: CloseSignal,
}

impl std::ops::Deref for Handle {
    type Target = DB;

    fn deref(&self) -> &DB {
        &self.db
    }
}

/// Sends on drop.
#[derive(Debug)]
struct CloseSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for CloseSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Resolves once a database opened by [`Db::open`] is closed (every handle dropped).
pub(crate) type Closed = tokio::sync::oneshot::Receiver<()>;

impl Db {
    /// Opens (or creates) the database at `path` and checks its format; the receiver
    /// resolves when the database has been closed.
    pub(crate) fn open(path: &Path) -> Result<(Self, Closed), DbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        opts.increase_parallelism(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|source| DbError::Open { path: path.to_path_buf(), source })?;
        let (tx, closed) = tokio::sync::oneshot::channel();
        let db = Db { db: Arc::new(Handle { db, _closed: CloseSignal(Some(tx)) }), path: path.to_path_buf() };
        db.check_format()?;
        Ok((db, closed))
    }

    fn check_format(&self) -> Result<(), DbError> {
        let cf = self.cf(CF_RAFT_META);
        match self
            .db
            .get_cf(cf, KEY_FORMAT)
            .map_err(|source| DbError::Rocks { doing: "format read", source })?
        {
            Some(bytes) => {
                let found: u32 = self.decode(CF_RAFT_META, KEY_FORMAT, &bytes)?;
                if found != DB_FORMAT {
                    return Err(DbError::UnknownFormat { path: self.path.clone(), found });
                }
                Ok(())
            }
            None => {
                let bytes = codec::encode(&DB_FORMAT).map_err(|source| DbError::Corrupt {
                    cf: CF_RAFT_META,
                    key: hex(KEY_FORMAT),
                    source,
                })?;
                self.db
                    .put_cf(cf, KEY_FORMAT, bytes)
                    .map_err(|source| DbError::Rocks { doing: "format write", source })
            }
        }
    }

    /// A column family handle; every one is created at open.
    pub(crate) fn cf(&self, name: &'static str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("every column family is created when the database opens")
    }

    /// Decodes a record, naming where it came from on failure.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, DbError> {
        codec::decode(bytes).map_err(|source| DbError::Corrupt { cf, key: hex(key), source })
    }

    /// Reads and decodes one record.
    pub(crate) fn get<T: serde::de::DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, DbError> {
        let bytes =
            self.db.get_cf(self.cf(cf), key).map_err(|source| DbError::Rocks { doing: "read", source })?;
        bytes.map(|b| self.decode(cf, key, &b)).transpose()
    }
}

/// A big-endian key that sorts like the number.
pub(crate) fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The number in a key written by [`u64_key`].
pub(crate) fn key_u64(cf: &'static str, key: &[u8]) -> Result<u64, DbError> {
    let arr: [u8; 8] = key.try_into().map_err(|_| {
        DbError::Inconsistent(format!("key {} in column family {cf} is not 8 bytes", hex(key)))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// The key of a version: big-endian main then sub revision.
pub(crate) fn revision_key(main: i64, sub: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(main as u64).to_be_bytes());
    k[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    k
}

/// Lower-case hex of a key, for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
