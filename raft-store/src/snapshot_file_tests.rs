//! Tests of file-backed raft snapshots: an install stopped half-way is cleared at the next
//! start and done again from the kept snapshot; a damaged or mismatched snapshot is refused
//! before the state machine is touched.

use std::path::Path;
use std::time::Duration;

use flotilla_core::store::{KvEngine, VersionData, VersionRecord};
use flotilla_store_wire::codec::fixture::{log_id, membership};
use openraft::storage::RaftStateMachine as _;

use super::*;
use crate::db::{CF_SM_KV, CF_SM_LEASE, revision_key};
use crate::snapshot::{Encoder, KEY_REVISION};
use crate::state_machine::StateMachine;
use crate::typ::StoredMembership;

/// A state machine of `n` keys of `value_bytes` each (revisions 2 to n+1), a lease, and the
/// applied log id and membership, written straight into a new database under `dir`.
fn state_machine_db(dir: &Path, n: i64, value_bytes: usize, applied_index: u64) -> anyhow::Result<Db> {
    let (db, _closed) = Db::open(&dir.join("db"))?;
    for i in 0..n {
        let main = i + 2;
        let rec = VersionRecord {
            key: format!("k/{i:05}").into_bytes(),
            main,
            sub: 0,
            data: Some(VersionData {
                create_revision: main,
                version: 1,
                value: vec![(i % 251) as u8; value_bytes],
                lease: 0,
            }),
        };
        db.db.put_cf(db.cf(CF_SM_KV), revision_key(main, 0), codec::encode(&rec)?)?;
    }
    db.db.put_cf(db.cf(CF_SM_LEASE), 9u64.to_be_bytes(), codec::encode(&60i64)?)?;
    let meta = db.cf(CF_SM_META);
    db.db.put_cf(meta, KEY_REVISION, codec::encode(&(n + 1))?)?;
    db.db.put_cf(meta, KEY_APPLIED, codec::encode(&Some(log_id(2, 1, applied_index)))?)?;
    let membership = StoredMembership::new(Some(log_id(1, 1, 1)), membership());
    db.db.put_cf(meta, KEY_MEMBERSHIP, codec::encode(&membership)?)?;
    Ok(db)
}

/// The state machine's encoding, to compare two of them.
fn encoding(db: &Db) -> anyhow::Result<Vec<u8>> {
    Ok(Encoder::open(db, || Ok::<(), DbError>(()))?.to_vec()?)
}

/// `bytes` received as a member receives a snapshot, in 1 MiB chunks, into `dir`.
fn receive(dir: &Path, bytes: &[u8]) -> anyhow::Result<SnapshotFile> {
    let mut receiver = Receiver::new(dir)?;
    for chunk in bytes.chunks(1 << 20) {
        receiver.write(chunk)?;
    }
    Ok(receiver.finish()?)
}

/// Files whose names start with `.snapshot.bin.` (temporary files of received snapshots).
fn temporary_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(".snapshot.bin.") {
            names.push(name);
        }
    }
    Ok(names)
}

#[tokio::test]
async fn an_install_stopped_half_way_is_cleared_at_start_and_done_again() -> anyhow::Result<()> {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // 40 MiB of values: three batches of 16 MiB at most.
    let source = state_machine_db(a.path(), 40, 1 << 20, 500)?;
    let encoder = Encoder::open(&source, || Ok::<(), DbError>(()))?;
    let meta = encoder.meta.clone();
    let built = keep_built(a.path(), &encoder)?;
    let bytes = std::fs::read(file_path(a.path()))?;
    assert_eq!(built.len(), bytes.len() as u64);
    assert_eq!(bytes, encoding(&source)?, "the kept snapshot is the state machine's encoding");

    let target = state_machine_db(b.path(), 3, 10, 7)?;
    let received = receive(b.path(), &bytes)?;
    let stopped = install(&target, &meta, received, Some(1));
    assert!(stopped.is_err(), "the test fault stops the install");
    assert_eq!(std::fs::read(file_path(b.path()))?, bytes, "the received snapshot is kept first");
    assert!(target.get::<SnapshotMeta>(CF_SM_META, KEY_INSTALLING)?.is_some());

    // The next start: the partial state machine is cleared, so it has applied nothing, and
    // openraft installs the kept snapshot (its last log id is above nothing).
    let mut sm = StateMachine::open(target.clone(), b.path().to_path_buf(), |s| {
        KvEngine::with_progress_interval(s, Duration::from_secs(1))
    })?;
    let (applied, _) = sm.applied_state().await?;
    assert_eq!(applied, None);
    assert!(target.get::<SnapshotMeta>(CF_SM_META, KEY_INSTALLING)?.is_none());
    let kept = sm.get_current_snapshot().await?.ok_or_else(|| anyhow::anyhow!("no kept snapshot"))?;
    assert_eq!(kept.meta, meta);
    sm.install_snapshot(&kept.meta, kept.snapshot).await?;
    assert_eq!(sm.applied_state().await?.0, Some(log_id(2, 1, 500)));
    assert_eq!(encoding(&target)?, bytes, "the state machine is the snapshot's");
    assert_eq!(sm.engine().revision(), 41);
    assert!(temporary_files(b.path())?.is_empty());
    Ok(())
}

#[test]
fn a_damaged_or_mismatched_snapshot_is_refused_before_anything_changes() -> anyhow::Result<()> {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let source = state_machine_db(a.path(), 50, 100, 500)?;
    let encoder = Encoder::open(&source, || Ok::<(), DbError>(()))?;
    let meta = encoder.meta.clone();
    keep_built(a.path(), &encoder)?;
    let bytes = std::fs::read(file_path(a.path()))?;
    let target = state_machine_db(b.path(), 3, 10, 7)?;
    let before = encoding(&target)?;

    let mut trailing = bytes.clone();
    trailing.push(0);
    let mut bad_version = bytes.clone();
    bad_version[0] = 9;
    let damaged: [(&str, &[u8]); 4] = [
        ("cut short", &bytes[..bytes.len() - 10]),
        ("a byte after the last record", &trailing),
        ("an unknown format", &bad_version),
        ("empty", &[]),
    ];
    for (what, damaged) in damaged {
        let received = receive(b.path(), damaged)?;
        assert!(install(&target, &meta, received, None).is_err(), "{what}: installed");
        assert_eq!(encoding(&target)?, before, "{what}: the state machine changed");
        assert!(!file_path(b.path()).exists(), "{what}: kept as the snapshot");
        assert!(temporary_files(b.path())?.is_empty(), "{what}: temporary file left behind");
    }
    let mut other = meta.clone();
    other.last_log_id = Some(log_id(2, 1, 499));
    let received = receive(b.path(), &bytes)?;
    assert!(install(&target, &other, received, None).is_err(), "another meta: installed");
    assert_eq!(encoding(&target)?, before);

    // The intact one installs.
    install(&target, &meta, receive(b.path(), &bytes)?, None)?;
    assert_eq!(encoding(&target)?, bytes);
    Ok(())
}
