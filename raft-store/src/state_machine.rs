//! The replicated state machine: core's MVCC engine, persisted in RocksDB.
//!
//! Each `apply` call (a batch of committed entries) runs the commands through the
//! [`KvEngine`], which answers them and feeds watchers, and persists every resulting
//! [`Mutation`] together with the last applied log id and membership in one atomic write
//! batch. On start the engine is rebuilt from those column families.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use flotilla_core::store::{KvEngine, Mutation, MvccSnapshot, MvccState, VersionRecord};
use futures::{Stream, TryStreamExt};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use parking_lot::Mutex;
use rocksdb::{IteratorMode, WriteBatch};

use crate::codec;
use crate::db::{CF_SM_KV, CF_SM_LEASE, CF_SM_META, Db, DbError, key_u64, revision_key, u64_key};
use crate::snapshot::{self, KEY_APPLIED, KEY_COMPACT, KEY_MEMBERSHIP, KEY_REVISION};
use crate::snapshot_file::{self, SnapshotFile};
use crate::typ::{EntryResponder, LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// What the state machine last applied.
#[derive(Clone, Debug, Default)]
struct Applied {
    log_id: Option<LogId>,
    membership: StoredMembership,
}

/// The state machine of one member. Clones share everything.
#[derive(Clone)]
pub struct StateMachine {
    db: Db,
    engine: KvEngine,
    applied: Arc<Mutex<Applied>>,
    dir: PathBuf,
    /// Held shared by every `apply`; [`ApplyPause`] holds it exclusively.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Held while a snapshot is built or installed: a build must not read a state machine an
    /// install is half-way through, nor two of them replace the kept snapshot at once.
    snapshots: Arc<tokio::sync::Mutex<()>>,
}

/// While alive, the member it came from applies nothing: entries are still appended and
/// committed, but its state machine stays where it was until this is dropped. From
/// [`RaftStore::pause_apply`](crate::RaftStore::pause_apply), for tests that need a member
/// whose state machine lags its log, as a power loss leaves one that lost unsynced applies.
#[must_use = "applying resumes when the pause is dropped"]
pub struct ApplyPause {
    _held: tokio::sync::OwnedRwLockWriteGuard<()>,
}

impl ApplyPause {
    pub(crate) fn new(held: tokio::sync::OwnedRwLockWriteGuard<()>) -> Self {
        ApplyPause { _held: held }
    }
}

impl StateMachine {
    /// Rebuilds the state machine from the database; `engine_for` wraps the restored state
    /// into the engine the store serves from.
    pub(crate) fn open(
        db: Db,
        dir: PathBuf,
        engine_for: impl FnOnce(MvccState) -> KvEngine,
    ) -> Result<Self, DbError> {
        if snapshot_file::clear_interrupted_install(&db)? {
            tracing::warn!(
                "the last snapshot install was interrupted: the state machine starts empty and the kept \
                 snapshot is installed again"
            );
        }
        let applied = Applied {
            log_id: db.get::<Option<LogId>>(CF_SM_META, KEY_APPLIED)?.flatten(),
            membership: db.get(CF_SM_META, KEY_MEMBERSHIP)?.unwrap_or_default(),
        };
        let state = load_state(&db)?;
        Ok(StateMachine {
            db,
            engine: engine_for(state),
            applied: Arc::new(Mutex::new(applied)),
            dir,
            gate: Arc::default(),
            snapshots: Arc::default(),
        })
    }

    /// The gate every `apply` passes; whoever holds it exclusively pauses applying.
    pub(crate) fn gate(&self) -> Arc<tokio::sync::RwLock<()>> {
        self.gate.clone()
    }

    /// The engine reads and watches are served from.
    pub(crate) fn engine(&self) -> &KvEngine {
        &self.engine
    }

    fn persist(&self, batch: &mut WriteBatch, mutations: &[Mutation]) -> io::Result<()> {
        let enc = |v: &dyn erased::Encode| v.encode().map_err(io::Error::other);
        for m in mutations {
            match m {
                Mutation::PutVersion(rec) => {
                    batch.put_cf(self.db.cf(CF_SM_KV), revision_key(rec.main, rec.sub), enc(rec)?)
                }
                Mutation::DeleteVersion { main, sub } => {
                    batch.delete_cf(self.db.cf(CF_SM_KV), revision_key(*main, *sub))
                }
                Mutation::PutLease { id, ttl } => {
                    batch.put_cf(self.db.cf(CF_SM_LEASE), u64_key(*id as u64), enc(ttl)?)
                }
                Mutation::DeleteLease(id) => batch.delete_cf(self.db.cf(CF_SM_LEASE), u64_key(*id as u64)),
                Mutation::SetRevision(rev) => batch.put_cf(self.db.cf(CF_SM_META), KEY_REVISION, enc(rev)?),
                Mutation::SetCompactRevision(rev) => {
                    batch.put_cf(self.db.cf(CF_SM_META), KEY_COMPACT, enc(rev)?)
                }
            }
        }
        Ok(())
    }
}

/// Encoding through a trait object, so `persist` can encode the different record types with
/// one closure.
mod erased {
    pub(super) trait Encode {
        fn encode(&self) -> Result<Vec<u8>, crate::codec::CodecError>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
            crate::codec::encode(self)
        }
    }
}

/// Rebuilds the MVCC state from the state-machine column families.
pub(crate) fn load_state(db: &Db) -> Result<MvccState, DbError> {
    let mut snap = MvccSnapshot {
        // A store that never wrote is at the initial revision, as etcd's is.
        revision: db.get(CF_SM_META, KEY_REVISION)?.unwrap_or(flotilla_core::store::INITIAL_REVISION),
        compact_revision: db.get(CF_SM_META, KEY_COMPACT)?.unwrap_or(0),
        ..Default::default()
    };
    for item in db.db.iterator_cf(db.cf(CF_SM_LEASE), IteratorMode::Start) {
        let (k, v) = item.map_err(|source| DbError::Rocks { doing: "lease scan", source })?;
        let id = key_u64(CF_SM_LEASE, &k)? as i64;
        snap.leases.push((id, db.decode(CF_SM_LEASE, &k, &v)?));
    }
    for item in db.db.iterator_cf(db.cf(CF_SM_KV), IteratorMode::Start) {
        let (k, v) = item.map_err(|source| DbError::Rocks { doing: "key scan", source })?;
        let rec: VersionRecord = db.decode(CF_SM_KV, &k, &v)?;
        if revision_key(rec.main, rec.sub).as_slice() != k.as_ref() {
            return Err(DbError::Inconsistent(format!(
                "version stored under key {} says it is revision {}.{}",
                crate::db::hex(&k),
                rec.main,
                rec.sub
            )));
        }
        snap.versions.push(rec);
    }
    MvccState::restore(snap).map_err(|e| DbError::Inconsistent(e.to_string()))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let _alone = self.snapshots.clone().lock_owned().await;
        let db = self.db.clone();
        let dir = self.dir.clone();
        let (file, meta) =
            tokio::task::spawn_blocking(move || -> io::Result<(SnapshotFile, SnapshotMeta)> {
                let encoder =
                    snapshot::Encoder::open(&db, || Ok::<(), DbError>(())).map_err(io::Error::other)?;
                let file = snapshot_file::keep_built(&dir, &encoder)?;
                Ok((file, encoder.meta.clone()))
            })
            .await
            .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = file.len(), "built snapshot");
        Ok(Snapshot { meta, snapshot: file })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let a = self.applied.lock();
        Ok((a.log_id, a.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder>> + Unpin + OptionalSend,
    {
        let _open = self.gate.read().await;
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        let mut applied = self.applied.lock().clone();
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = match entry.payload {
                EntryPayload::Blank => Response { result: None },
                EntryPayload::Normal(req) => {
                    let (result, outcome) = self.engine.apply(&req.cmd);
                    self.persist(&mut batch, &outcome.mutations)?;
                    Response { result: Some(result) }
                }
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response { result: None }
                }
            };
            applied.log_id = Some(entry.log_id);
            if let Some(r) = responder {
                replies.push((r, response));
            }
        }
        let meta = self.db.cf(CF_SM_META);
        batch.put_cf(meta, KEY_APPLIED, codec::encode(&applied.log_id).map_err(io::Error::other)?);
        batch.put_cf(meta, KEY_MEMBERSHIP, codec::encode(&applied.membership).map_err(io::Error::other)?);
        self.db.db.write(batch).map_err(io::Error::other)?;
        *self.applied.lock() = applied;
        for (r, resp) in replies {
            r.send(resp);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> io::Result<()> {
        let _alone = self.snapshots.clone().lock_owned().await;
        let db = self.db.clone();
        let target = meta.clone();
        let state = tokio::task::spawn_blocking(move || -> io::Result<MvccState> {
            snapshot_file::install(&db, &target, snapshot, None).map_err(invalid_data)?;
            load_state(&db).map_err(io::Error::other)
        })
        .await
        .map_err(io::Error::other)??;
        self.engine.replace(state);
        *self.applied.lock() = Applied { log_id: meta.last_log_id, membership: meta.last_membership.clone() };
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<Option<Snapshot>> {
            let Some(mut file) = SnapshotFile::open_kept(&dir)? else { return Ok(None) };
            // Every record is checked, so a damaged file is found here, not by the member it
            // would be sent to.
            let meta = file.read(|_| Ok(())).map_err(|e| {
                let path = snapshot::file_path(&dir);
                invalid_data(DbError::Inconsistent(format!(
                    "snapshot file {} is corrupt: {e}",
                    path.display()
                )))
            })?;
            Ok(Some(Snapshot { meta, snapshot: file }))
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// A snapshot that does not decode or does not fit its meta, as an I/O error.
fn invalid_data(e: DbError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
