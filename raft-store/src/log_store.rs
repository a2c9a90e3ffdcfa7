//! The raft log and vote in RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB at once (so they are readable when it returns, as
//! openraft requires) and hands the durability callback to a syncer thread. The syncer takes
//! every callback waiting, syncs the WAL once, then completes them all: under load one
//! `fsync` covers many appends, which is what lets throughput grow with concurrent clients.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc as std_mpsc;

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::codec;
use crate::db::{CF_LOG, CF_RAFT_META, Db, DbError, key_u64, u64_key};
use crate::typ::{Entry, IOFlushed, LogId, LogState, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";
/// The id of the member the log belongs to, recorded on its first start.
const KEY_MEMBER_ID: &[u8] = b"member_id";

/// The raft log storage of one member.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Db,
    /// The syncer thread's queue; `None` completes appends at once, unsynced (simulation).
    syncer: Option<std_mpsc::Sender<IOFlushed>>,
}

impl LogStore {
    /// The log in `db`; with `sync` false (a simulated member, see [`crate::sim`]) appends
    /// complete as soon as they are written, without `fsync` and without the syncer thread.
    pub(crate) fn new(db: Db, sync: bool) -> Self {
        if !sync {
            return LogStore { db, syncer: None };
        }
        let (tx, rx) = std_mpsc::channel::<IOFlushed>();
        let sync_db = db.clone();
        std::thread::Builder::new()
            .name("raft-wal-sync".into())
            .spawn(move || run_syncer(sync_db, rx))
            .expect("spawning the WAL sync thread");
        LogStore { db, syncer: Some(tx) }
    }

    /// Checks every log entry decodes: a corrupt log refuses to start.
    pub(crate) fn verify(&self) -> Result<(), DbError> {
        for item in self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::Start) {
            let (k, v) = item.map_err(|source| DbError::Rocks { doing: "log scan", source })?;
            let index = key_u64(CF_LOG, &k)?;
            let entry: Entry = self.db.decode(CF_LOG, &k, &v)?;
            if entry.index() != index {
                return Err(DbError::Inconsistent(format!(
                    "log entry stored at index {index} says it is index {}",
                    entry.index()
                )));
            }
        }
        let _: Option<Vote> = self.db.get(CF_RAFT_META, KEY_VOTE)?;
        let _: Option<LogId> = self.db.get(CF_RAFT_META, KEY_LAST_PURGED)?;
        Ok(())
    }

    /// Records `id` as the member this log belongs to on its first start (synced); on later
    /// starts returns the id recorded before when it differs. A log opened under another
    /// member's id would vote and acknowledge as that member.
    pub(crate) fn claim_member_id(&self, id: u64) -> Result<Option<u64>, DbError> {
        match self.db.get::<u64>(CF_RAFT_META, KEY_MEMBER_ID)? {
            Some(stored) => Ok((stored != id).then_some(stored)),
            None => {
                let bytes = codec::encode(&id).map_err(|source| DbError::Corrupt {
                    cf: CF_RAFT_META,
                    key: crate::db::hex(KEY_MEMBER_ID),
                    source,
                })?;
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                self.db
                    .db
                    .put_cf_opt(self.db.cf(CF_RAFT_META), KEY_MEMBER_ID, bytes, &opts)
                    .map_err(|source| DbError::Rocks { doing: "member id write", source })?;
                Ok(None)
            }
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, sync: bool) -> io::Result<()> {
        let bytes = codec::encode(value).map_err(io::Error::other)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.db.put_cf_opt(self.db.cf(CF_RAFT_META), key, bytes, &opts).map_err(io::Error::other)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        self.db.get(CF_RAFT_META, key).map_err(io::Error::other)
    }
}

/// Completes durability callbacks in groups: one WAL sync for everything queued.
fn run_syncer(db: Db, rx: std_mpsc::Receiver<IOFlushed>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let res = db.db.flush_wal(true);
        for cb in group {
            cb.io_completed(res.as_ref().map(|_| ()).map_err(|e| io::Error::other(e.to_string())));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let from = u64_key(start);
        let iter = self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::From(&from, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(io::Error::other)?;
            let index = key_u64(CF_LOG, &k).map_err(io::Error::other)?;
            if !range.contains(&index) {
                break;
            }
            out.push(self.db.decode::<Entry>(CF_LOG, &k, &v).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last = match self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::End).next() {
            Some(item) => {
                let (k, v) = item.map_err(io::Error::other)?;
                let entry: Entry = self.db.decode(CF_LOG, &k, &v).map_err(io::Error::other)?;
                Some(entry.log_id())
            }
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // Synced before returning: a vote must never be forgotten.
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced: losing it only means re-applying from an earlier point after a crash.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOG);
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(io::Error::other)?;
            batch.put_cf(cf, u64_key(entry.index()), bytes);
        }
        self.db.db.write(batch).map_err(io::Error::other)?;
        match &self.syncer {
            Some(syncer) => {
                syncer.send(callback).map_err(|_| io::Error::other("the WAL sync thread has stopped"))
            }
            None => {
                callback.io_completed(Ok(()));
                Ok(())
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.db
            .db
            .delete_range_cf(self.db.cf(CF_LOG), u64_key(from), u64_key(u64::MAX))
            .map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // The marker is written first: entries at or below it are ignored even if the range
        // delete is lost in a crash.
        self.put_meta(KEY_LAST_PURGED, &log_id, false)?;
        self.db
            .db
            .delete_range_cf(self.db.cf(CF_LOG), u64_key(0), u64_key(log_id.index() + 1))
            .map_err(io::Error::other)
    }
}
