//! Restarts keep everything acknowledged; corrupt or unknown-format data, or another member's,
//! refuses to start.

use std::time::Duration;

use flotilla_core::store::{KeyRange, PutRequest, RangeRequest, Store, WatchRequest};
use flotilla_raft_store::{DbError, OpenError, RaftStore};

use crate::harness::{Cluster, fast_config, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_history_and_leases() -> anyhow::Result<()> {
    within("restart durability", 60, async {
        let mut c = Cluster::start(1).await?;
        let lease = c.member(1).lease_grant(0, 600).await?.id;
        let first = c.member(1).put(PutRequest::new("r/a", "1")).await?.header.revision;
        c.member(1).put(PutRequest { lease, ..PutRequest::new("r/b", "2") }).await?;
        c.member(1).put(PutRequest::new("r/a", "3")).await?;
        let digest = c.member(1).state_digest();
        c.stop(1).await;
        c.restart(1).await?;
        c.wait_leader(Duration::from_secs(10)).await?;
        let m = c.member(1);
        assert_eq!(m.state_digest(), digest, "state after restart equals state before");
        let old = m.range(RangeRequest::new(KeyRange::key("r/a")).at(first)).await?;
        assert_eq!(old.kvs[0].value, b"1");
        let ttl = m.lease_time_to_live(lease, true).await?;
        assert_eq!(ttl.keys, vec![b"r/b".to_vec()]);
        // History survives too: a watch from the first revision replays all three writes.
        let mut w = m.watch(WatchRequest::new(KeyRange::prefix("r/")).from_revision(first)).await?;
        let mut n = 0;
        while n < 3 {
            n += w.next_response().await.expect("watch open")?.events.len();
        }
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// Opens a member that must refuse to start. A stopped member has released the directory
/// (`shutdown` waits for RocksDB to close), and so has a refused open.
async fn open_fails(dir: &std::path::Path) -> OpenError {
    let cfg = fast_config(1, dir, "127.0.0.1:0".parse().expect("valid"), Default::default());
    match RaftStore::open(cfg).await {
        Ok(s) => {
            s.shutdown().await;
            panic!("a member with bad data must refuse to start")
        }
        Err(e) => e,
    }
}

/// Opens the database directly, which needs the lock no member may still hold.
fn open_raw(path: &std::path::Path, cfs: [&str; 5]) -> anyhow::Result<rocksdb::DB> {
    Ok(rocksdb::DB::open_cf(&rocksdb::Options::default(), path, cfs)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_format_and_corrupt_records_refuse_to_start() -> anyhow::Result<()> {
    within("refusing bad data", 60, async {
        let mut c = Cluster::start(1).await?;
        c.member(1).put(PutRequest::new("x", "1")).await?;
        c.stop(1).await;
        let db_path = c.dir.path().join("member-1").join("db");
        let cfs = ["raft_log", "raft_meta", "sm_kv", "sm_lease", "sm_meta"];

        // A record with an unknown format version.
        {
            let db = open_raw(&db_path, cfs)?;
            let kv = db.cf_handle("sm_kv").expect("exists");
            let (k, mut v) = db.iterator_cf(kv, rocksdb::IteratorMode::Start).next().expect("one version")?;
            v[0] = 77;
            db.put_cf(kv, &k, &v)?;
        }
        let err = open_fails(c.dir.path()).await;
        assert!(matches!(err, OpenError::Db(DbError::Corrupt { cf: "sm_kv", .. })), "{err}");
        let msg =
            format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
        assert!(msg.contains("sm_kv"), "names the column family: {msg}");

        // A database from a future layout.
        {
            let db = open_raw(&db_path, cfs)?;
            let meta = db.cf_handle("raft_meta").expect("exists");
            let mut v = vec![1u8];
            v.extend_from_slice(&9u32.to_le_bytes());
            db.put_cf(meta, b"format", v)?;
        }
        let err = open_fails(c.dir.path()).await;
        assert!(matches!(err, OpenError::Db(DbError::UnknownFormat { found: 9, .. })), "{err}");
        assert!(err.to_string().contains(&db_path.display().to_string()), "names the path: {err}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_opens_only_as_the_member_it_belongs_to() -> anyhow::Result<()> {
    within("member id check", 60, async {
        let mut c = Cluster::start(1).await?;
        c.member(1).put(PutRequest::new("x", "1")).await?;
        c.stop(1).await;
        // Member 1's directory, opened as member 2 (say, a server that lost its member record).
        let dir = c.dir.path().join("member-1");
        let mut cfg = fast_config(2, c.dir.path(), "127.0.0.1:0".parse()?, Default::default());
        cfg.data_dir = dir.clone();
        let err = match RaftStore::open(cfg).await {
            Ok(s) => {
                s.shutdown().await;
                anyhow::bail!("member 1's data opened as member 2")
            }
            Err(e) => e,
        };
        assert!(matches!(err, OpenError::WrongMember { stored: 1, configured: 2, .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.display().to_string()) && msg.contains("member 1"), "{msg}");
        // As itself it still opens, with its data.
        c.restart(1).await?;
        c.wait_leader(Duration::from_secs(10)).await?;
        let got = c.member(1).range(RangeRequest::new(KeyRange::key("x"))).await?;
        assert_eq!(got.kvs[0].value, b"1");
        c.shutdown().await;
        Ok(())
    })
    .await
}
