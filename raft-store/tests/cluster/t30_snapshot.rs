//! A member that missed more than the retained log catches up from a snapshot.

use std::time::Duration;

use flotilla_core::store::{PutRequest, Store};

use crate::harness::{Cluster, read_prefix, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_member_catches_up_from_snapshot_after_purge() -> anyhow::Result<()> {
    within("snapshot catch-up", 90, async {
        let mut c = Cluster::start_with(3, |cfg| {
            cfg.snapshot_every = 40;
            cfg.keep_logs_behind_snapshot = 5;
        })
        .await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let lagging = *c.running().iter().find(|id| **id != leader).expect("three members");
        c.stop(lagging).await;

        let mut expected = std::collections::BTreeMap::new();
        for i in 0..200 {
            let (k, v) = (format!("s/{i:03}"), format!("value-{i}"));
            c.member(leader).put(PutRequest::new(k.clone(), v.clone())).await?;
            expected.insert(k, v);
        }
        // The leader has snapshotted and purged the log the stopped member would need.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = c.member(leader).raft().metrics().borrow_watched().clone();
            if m.purged.map_or(0, |p| p.index()) > 10 {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "leader never purged its log: {:?}",
                m.purged
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        c.restart(lagging).await?;
        c.wait_converged(Duration::from_secs(20)).await?;
        let m = c.member(lagging).raft().metrics().borrow_watched().clone();
        assert!(m.snapshot.is_some(), "the lagging member installed a snapshot");
        assert_eq!(read_prefix(c.member(lagging), "s/").await?, expected);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_log_on_request_makes_a_lagging_member_install_a_snapshot() -> anyhow::Result<()> {
    within("compact_log", 90, async {
        // The default policy would not snapshot for 100 000 entries: only the request does.
        let mut c = Cluster::start(3).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let lagging = *c.running().iter().find(|id| **id != leader).expect("three members");
        c.stop(lagging).await;
        let mut expected = std::collections::BTreeMap::new();
        for i in 0..30 {
            let (k, v) = (format!("c/{i:03}"), format!("value-{i}"));
            c.member(leader).put(PutRequest::new(k.clone(), v.clone())).await?;
            expected.insert(k, v);
        }
        let applied = c.member(leader).raft().metrics().borrow_watched().last_applied.map(|l| l.index());
        let index = c.member(leader).compact_log(Duration::from_secs(10)).await?;
        assert!(index.is_some() && index >= applied, "snapshot at {index:?}, applied {applied:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let purged = c.member(leader).raft().metrics().borrow_watched().purged.map(|p| p.index());
            if purged == index {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "purged {purged:?}, want {index:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.restart(lagging).await?;
        c.wait_converged(Duration::from_secs(20)).await?;
        let m = c.member(lagging).raft().metrics().borrow_watched().clone();
        assert!(m.snapshot.is_some_and(|s| Some(s.index()) >= index), "installed {:?}", m.snapshot);
        assert_eq!(read_prefix(c.member(lagging), "c/").await?, expected);
        c.shutdown().await;
        Ok(())
    })
    .await
}

use openraft::type_config::async_runtime::WatchReceiver as _;
