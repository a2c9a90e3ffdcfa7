//! Tests of backups: the streamed encoding is the snapshot format, restores are all or
//! nothing, and a stream stops with its member.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use flotilla_core::store::{KeyRange, PutRequest, RangeRequest, Store};
use futures::StreamExt as _;

use super::*;
use crate::RaftStoreConfig;
use crate::db::{CF_SM_KV, CF_SM_LEASE};
use crate::snapshot::SnapshotBlob;

#[test]
fn the_checksum_catches_damage() {
    let mut sealed = b"records".to_vec();
    sealed.extend_from_slice(&sha2::Sha256::digest(b"records"));
    assert_eq!(verify_backup(&sealed).ok(), Some(b"records".as_slice()));
    let mut flipped = sealed.clone();
    flipped[0] ^= 1;
    assert!(matches!(verify_backup(&flipped), Err(BackupError::Damaged(_))));
    assert!(matches!(verify_backup(&sealed[..10]), Err(BackupError::Damaged(_))));
}

#[test]
fn the_file_check_reads_what_the_in_memory_check_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("backup.db");
    let mut sealed = vec![7u8; 300_000];
    sealed.extend_from_slice(&sha2::Sha256::digest(&sealed));
    std::fs::write(&path, &sealed)?;
    assert_eq!(verify_backup_file(&path)?, 300_000);
    sealed[123_456] ^= 1;
    std::fs::write(&path, &sealed)?;
    assert!(matches!(verify_backup_file(&path), Err(BackupError::Damaged(_))));
    std::fs::write(&path, b"short")?;
    assert!(matches!(verify_backup_file(&path), Err(BackupError::Damaged(_))));
    let missing = verify_backup_file(&dir.path().join("nothing-here"));
    assert!(matches!(missing, Err(BackupError::Io { ref path, .. }) if path.ends_with("nothing-here")));
    Ok(())
}

#[test]
fn encoded_in_chunks_or_whole_a_snapshot_is_the_encoding_of_the_whole_blob() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (db, _closed) = Db::open(&dir.path().join("db"))?;
    for i in 0..300u32 {
        db.db.put_cf(db.cf(CF_SM_KV), i.to_be_bytes(), vec![i as u8; (i % 37) as usize])?;
    }
    db.db.put_cf(db.cf(CF_SM_LEASE), 9u64.to_be_bytes(), b"lease")?;
    db.db.put_cf(db.cf(CF_SM_META), b"revision", codec::encode(&300i64)?)?;
    let encoder = snapshot::Encoder::open(&db, || Ok::<(), DbError>(()))?;
    let whole = encoder.to_vec()?;
    assert_eq!(whole.len() as u64, encoder.len);

    // The blob as the format defines it: the meta and every record in column family order.
    let mut records = Vec::new();
    for (i, cf) in SM_CFS.iter().enumerate() {
        for item in db.db.iterator_cf(db.cf(cf), rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            records.push(Record { cf: i as u8, key: key.to_vec(), value: value.to_vec() });
        }
    }
    assert_eq!(records.len(), 302);
    let blob = SnapshotBlob { meta: encoder.meta.clone(), records };
    assert_eq!(whole, codec::encode(&blob)?, "the streamed encoding is the whole blob's");

    let mut chunks = Vec::new();
    encoder.write(100, |chunk| -> Result<(), DbError> {
        chunks.push(chunk);
        Ok(())
    })?;
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    let (last, full) = chunks.split_last().expect("chunks");
    assert!(full.iter().all(|c| c.len() >= 100) && !last.is_empty());
    assert_eq!(chunks.concat(), whole);
    Ok(())
}

/// A one-member store in `dir` with `n` keys of `value_bytes` each and a lease with a key.
async fn one_member(dir: &Path, n: usize, value_bytes: usize) -> anyhow::Result<RaftStore> {
    let store = RaftStore::open(RaftStoreConfig::new(1, dir, "127.0.0.1:0".parse()?)).await?;
    store.initialize(BTreeMap::from([(1, store.local_addr().to_string())])).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.leader() != Some(1) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..n {
        store.put(PutRequest::new(format!("k/{i:05}"), vec![(i % 251) as u8; value_bytes])).await?;
    }
    store.lease_grant(4242, 600).await?;
    let mut put = PutRequest::new("leased", "yes");
    put.lease = 4242;
    store.put(put).await?;
    Ok(store)
}

async fn read_all(store: &RaftStore) -> anyhow::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let got = store.range(RangeRequest::new(KeyRange::prefix(""))).await?;
    Ok(got.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_restores_nothing_and_the_good_one_then_restores_everything() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = one_member(&dir.path().join("old"), 200, 300).await?;
    let expected = read_all(&store).await?;
    let backup = store.backup().await?;
    store.shutdown().await;

    // A valid checksum over contents that claim more records than they hold (more than the
    // padding could pass for).
    let body = verify_backup(&backup)?;
    let count_at = 1 + codec::item_size(&codec::decode::<SnapshotBlob>(body)?.meta)? as usize;
    let mut lying = body.to_vec();
    let count = u64::from_le_bytes(lying[count_at..count_at + 8].try_into()?);
    lying[count_at..count_at + 8].copy_from_slice(&(count + 1000).to_le_bytes());
    lying.extend_from_slice(&sha2::Sha256::digest(&lying));
    let new = dir.path().join("new");
    let file = dir.path().join("lying.db");
    std::fs::write(&file, &lying)?;
    // (The padding's zeros are read as records, which do not decode as versions.)
    let refused = restore_backup_file(&new, &file);
    assert!(
        matches!(refused, Err(BackupError::Decode(_) | BackupError::Db(DbError::Corrupt { .. }))),
        "{refused:?}"
    );
    assert!(!new.join("db").exists(), "a failed restore leaves no database to open");

    // Padding that is not zeros is damage, and so is a whole block of zeros; none at all
    // (a backup taken before padding) restores.
    let unpadded_len = codec::encode(&codec::decode::<SnapshotBlob>(body)?)?.len();
    for bad in [vec![1u8], vec![0u8; 512]] {
        let mut padded = body[..unpadded_len].to_vec();
        padded.extend_from_slice(&bad);
        padded.extend_from_slice(&sha2::Sha256::digest(&padded));
        assert!(matches!(restore_backup(&new, &padded), Err(BackupError::Damaged(_))), "{} bytes", bad.len());
        assert!(!new.join("db").exists());
    }
    // A version filed under another revision than its own is refused as the member would.
    let mut misfiled = codec::decode::<SnapshotBlob>(body)?;
    misfiled.records[0].key = crate::db::revision_key(999_999, 0).to_vec();
    let mut misfiled = codec::encode(&misfiled)?;
    misfiled.extend_from_slice(&sha2::Sha256::digest(&misfiled));
    let refused = restore_backup(&new, &misfiled);
    assert!(matches!(refused, Err(BackupError::Db(DbError::Inconsistent(_)))), "{refused:?}");
    assert!(!new.join("db").exists());
    let mut unpadded = body[..unpadded_len].to_vec();
    unpadded.extend_from_slice(&sha2::Sha256::digest(&unpadded));
    let old_format = dir.path().join("unpadded");
    assert_eq!(restore_backup(&old_format, &unpadded)?.versions, 201);

    std::fs::write(&file, &backup)?;
    let summary = restore_backup_file(&new, &file)?;
    assert_eq!((summary.versions, summary.leases), (201, 1));
    assert!(!new.join("db.restoring").exists());
    assert!(matches!(restore_backup_file(&new, &file), Err(BackupError::TargetExists { .. })));

    let restored = RaftStore::open(RaftStoreConfig::new(1, &new, "127.0.0.1:0".parse()?)).await?;
    restored.initialize(BTreeMap::from([(1, restored.local_addr().to_string())])).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        match read_all(&restored).await {
            Ok(got) => break got,
            Err(e) if tokio::time::Instant::now() < deadline => tracing::debug!("not yet: {e}"),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(got, expected);
    restored.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stream_stops_with_its_member_and_says_so() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = one_member(dir.path(), 100, 1000).await?;
    let mut stream = store.backup_stream(1000).await?;
    assert!(stream.total_bytes() > 100_000, "{}", stream.total_bytes());
    assert_eq!(stream.total_bytes() % 512, 32, "padded to 512 bytes, then the checksum");
    let first = stream.next().await.context("a first chunk")??;
    assert!(first.len() >= 1000);
    // The producer now waits for room; the member's shutdown must not wait for this reader
    // (it would wait `DB_CLOSE_TIMEOUT`, 10 s, for the database to close).
    tokio::time::timeout(Duration::from_secs(5), store.shutdown())
        .await
        .context("shutdown waited for the reader")?;
    let mut received = first.len() as u64;
    let end = loop {
        match stream.next().await {
            Some(Ok(chunk)) => received += chunk.len() as u64,
            Some(Err(e)) => break e,
            None => anyhow::bail!("the stream ended after {received} bytes without an error"),
        }
    };
    assert!(matches!(end, BackupError::Stopped), "{end}");
    assert!(received < stream.total_bytes());
    assert!(stream.next().await.is_none());
    Ok(())
}
