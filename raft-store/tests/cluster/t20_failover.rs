//! Killing the leader: a new one serves within a few election timeouts and no acknowledged
//! write is lost; the old leader rejoins and catches up from the log.

use std::time::Duration;

use flotilla_core::store::{PutRequest, Store};
use tokio::time::Instant;

use crate::harness::{Cluster, read_prefix, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_keeps_acknowledged_writes() -> anyhow::Result<()> {
    within("leader failover", 60, async {
        let mut c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        let follower = *c.running().iter().find(|id| **id != old).expect("three members");
        let mut acked = std::collections::BTreeMap::new();
        for i in 0..50 {
            let (k, v) = (format!("k/{i:03}"), format!("v{i}"));
            c.member(follower).put(PutRequest::new(k.clone(), v.clone())).await?;
            acked.insert(k, v);
        }

        let killed_at = Instant::now();
        c.stop(old).await;
        let new = c.wait_leader(Duration::from_secs(10)).await?;
        let took = killed_at.elapsed();
        assert_ne!(new, old);
        // Election timeout is 300-600 ms; "a few" of them.
        assert!(took < Duration::from_secs(5), "new leader took {took:?}");

        for i in 50..80 {
            let (k, v) = (format!("k/{i:03}"), format!("v{i}"));
            c.member(follower).put(PutRequest::new(k.clone(), v.clone())).await?;
            acked.insert(k, v);
        }
        for id in c.running() {
            assert_eq!(read_prefix(c.member(id), "k/").await?, acked, "member {id} lost acknowledged writes");
        }

        c.restart(old).await?;
        c.wait_converged(Duration::from_secs(15)).await?;
        assert_eq!(read_prefix(c.member(old), "k/").await?, acked);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_follower_survives_leader_change() -> anyhow::Result<()> {
    use flotilla_core::store::{KeyRange, WatchRequest};
    within("watch across leader change", 60, async {
        let mut c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        let watcher_id = *c.running().iter().find(|id| **id != old).expect("three members");
        let mut watch = c.member(watcher_id).watch(WatchRequest::new(KeyRange::prefix("w/"))).await?;
        for i in 0..20 {
            c.member(watcher_id).put(PutRequest::new(format!("w/{i}"), "x")).await?;
        }
        c.stop(old).await;
        c.wait_leader(Duration::from_secs(10)).await?;
        for i in 20..40 {
            c.member(watcher_id).put(PutRequest::new(format!("w/{i}"), "x")).await?;
        }
        let mut seen = Vec::new();
        let mut last_rev = 0;
        while seen.len() < 40 {
            let resp = watch.next_response().await.expect("watch stays open")?;
            for ev in resp.events {
                assert!(
                    ev.kv.mod_revision > last_rev,
                    "revisions must increase: {} after {last_rev}",
                    ev.kv.mod_revision
                );
                last_rev = ev.kv.mod_revision;
                seen.push(String::from_utf8(ev.kv.key)?);
            }
        }
        let expected: Vec<String> = (0..40).map(|i| format!("w/{i}")).collect();
        assert_eq!(seen, expected, "no gap, no duplicate, in order");
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// `RaftStore::leadership` is true on exactly the leader, and moves with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_watch_follows_the_raft_leader() -> anyhow::Result<()> {
    within("leadership watch", 60, async {
        let mut c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        let mut watches: std::collections::BTreeMap<_, _> =
            c.running().into_iter().map(|id| (id, c.member(id).leadership())).collect();
        let mut old_watch = watches.remove(&old).expect("the leader's watch");
        old_watch.wait_for(|l| *l).await?;
        for (id, w) in &watches {
            assert!(!*w.borrow(), "member {id} must not think it leads");
        }
        c.stop(old).await;
        let new = c.wait_leader(Duration::from_secs(10)).await?;
        let mut new_watch = watches.remove(&new).expect("the new leader's watch");
        tokio::time::timeout(Duration::from_secs(10), new_watch.wait_for(|l| *l)).await??;
        assert!(!*old_watch.borrow(), "the stopped member no longer leads");
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// A leader stopping on purpose hands leadership over. The followers' own elections are turned
/// off, so only the handover can give the cluster a new leader; a follower has nothing to hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopping_on_purpose_hands_leadership_over() -> anyhow::Result<()> {
    within("leadership handover", 60, async {
        let mut c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        c.member(old).put(PutRequest::new("h/1", "x")).await?;
        for id in c.running().into_iter().filter(|id| *id != old) {
            c.member(id).raft().runtime_config().elect(false);
        }
        let follower = *c.running().iter().find(|id| **id != old).expect("three members");
        assert_eq!(c.member(follower).hand_over_leadership(Duration::from_secs(1)).await, None);

        let new = c.member(old).hand_over_leadership(Duration::from_secs(10)).await;
        let new = new.ok_or_else(|| anyhow::anyhow!("no member took leadership over"))?;
        assert_ne!(new, old);
        c.stop(old).await;
        assert_eq!(c.wait_leader(Duration::from_secs(10)).await?, new);
        c.member(follower).put(PutRequest::new("h/2", "y")).await?;
        assert_eq!(read_prefix(c.member(new), "h/").await?.len(), 2);
        c.shutdown().await;
        Ok(())
    })
    .await
}
