//! Maintenance.Snapshot: a backup streamed as it is read, its `remaining_bytes` counting
//! down to 0, that restores into a new store; and `etcdctl snapshot save` receiving the same
//! bytes (skipped without `etcdctl`, as in `t50_etcdctl`).

use anyhow::{Context, ensure};
use flotilla_raft_store::{restore_backup, verify_backup};

use crate::harness::{Cluster, within};
use crate::t50_etcdctl::Etcdctl;

/// Values large enough that the backup spans several 1 MiB messages.
const VALUES: usize = 40;
const VALUE_BYTES: usize = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_streams_counting_down_and_restores() -> anyhow::Result<()> {
    within("snapshot stream and restore", 60, async {
        let c = Cluster::start(3).await?;
        let leader = c.member(1).leader().context("a leader")?;
        let follower = if leader == 2 { 3 } else { 2 };
        let mut cl = c.client(follower).await?;
        let mut last = 0;
        for i in 0..VALUES {
            let put = cl.put(format!("big/{i:03}"), vec![i as u8; VALUE_BYTES], None).await?;
            last = put.header().context("a header")?.revision();
        }

        let mut stream = cl.snapshot().await?;
        let (mut bytes, mut sizes, mut remaining, mut revisions) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        while let Some(msg) = stream.message().await? {
            revisions.push(msg.header().map(|h| h.revision()));
            sizes.push(msg.blob().len());
            remaining.push(msg.remaining_bytes());
            bytes.extend_from_slice(msg.blob());
        }
        ensure!(sizes.len() >= 4, "{} bytes came in {} messages", bytes.len(), sizes.len());
        // Each message says how much is still to come after it; the last says 0.
        let mut left = bytes.len() as u64;
        for (size, said) in sizes.iter().zip(&remaining) {
            left -= *size as u64;
            ensure!(*said == left, "a message of {size} bytes said {said} remain; {left} did");
        }
        ensure!(revisions.iter().all(|r| *r == Some(last)), "headers {revisions:?}, last write {last}");

        let dir = tempfile::tempdir()?;
        let summary = restore_backup(&dir.path().join("restored"), &bytes)?;
        assert_eq!(summary.revision, last);
        assert_eq!(summary.versions, VALUES);

        // etcdctl receives the same stream from the same member.
        let Some(_) = Etcdctl::find(Vec::new()).await? else { return Ok(()) };
        let endpoint = c.member(follower).etcd_addr().context("an etcd endpoint")?.to_string();
        let ctl = Etcdctl { endpoints: vec![endpoint] };
        let file = dir.path().join("etcdctl.db");
        let out = ctl.ok(&["snapshot", "save", file.to_str().context("a UTF-8 path")?]).await?;
        ensure!(out.contains("Snapshot saved at"), "etcdctl printed {out:?}");
        let saved = std::fs::read(&file)?;
        verify_backup(&saved)?;
        assert!(saved == bytes, "etcdctl saved {} bytes, the stream had {}", saved.len(), bytes.len());
        c.shutdown().await;
        Ok(())
    })
    .await
}
