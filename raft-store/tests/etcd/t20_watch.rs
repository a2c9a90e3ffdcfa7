//! Watches: replay from a past revision with previous values, cancel, and a watch on a
//! follower that keeps going, with no gap and no duplicate, while the leader is replaced.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, WatchFilterType, WatchOptions};

use crate::harness::{Cluster, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_replays_history_and_cancels() -> anyhow::Result<()> {
    within("watch replay", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(1).await?;
        let start = cl.put("w/a", "1", None).await?.header().expect("header").revision();
        cl.put("w/a", "2", None).await?;
        cl.delete("w/a", None).await?;
        cl.put("other", "x", None).await?;

        let mut stream = cl
            .watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(start).with_prev_key()))
            .await?;
        let created = stream.message().await?.expect("created response");
        assert!(created.created());
        let id = created.watch_id();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let resp = stream.message().await?.expect("events");
            assert_eq!(resp.watch_id(), id);
            for ev in resp.events() {
                let kv = ev.kv().expect("event kv");
                let prev = ev.prev_kv().map(|p| p.value().to_vec());
                seen.push((ev.event_type(), kv.mod_revision(), kv.value().to_vec(), prev));
            }
        }
        assert_eq!(
            seen,
            vec![
                (EventType::Put, start, b"1".to_vec(), None),
                (EventType::Put, start + 1, b"2".to_vec(), Some(b"1".to_vec())),
                (EventType::Delete, start + 2, Vec::new(), Some(b"2".to_vec())),
            ]
        );

        stream.cancel(id).await?;
        let canceled = stream.message().await?.expect("canceled response");
        assert!(canceled.canceled());
        assert_eq!(canceled.watch_id(), id);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_of_a_compacted_revision_is_canceled() -> anyhow::Result<()> {
    within("compacted watch", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(2).await?;
        let r1 = cl.put("k", "1", None).await?.header().expect("header").revision();
        let r2 = cl.put("k", "2", None).await?.header().expect("header").revision();
        cl.compact(r2, None).await?;
        let mut stream = cl.watch("k", Some(WatchOptions::new().with_start_revision(r1))).await?;
        assert!(stream.message().await?.expect("created").created());
        let resp = stream.message().await?.expect("canceled");
        assert!(resp.canceled());
        assert_eq!(resp.compact_revision(), r2);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_filters_and_progress_requests() -> anyhow::Result<()> {
    within("watch filters and progress", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(3).await?;
        let opts = WatchOptions::new().with_filters([WatchFilterType::NoPut]).with_watch_id(7);
        let mut stream = cl.watch("f", Some(opts)).await?;
        let created = stream.message().await?.expect("created");
        assert!(created.created());
        assert_eq!(created.watch_id(), 7);
        cl.put("f", "1", None).await?;
        let del = cl.delete("f", None).await?.header().expect("header").revision();
        let resp = stream.message().await?.expect("delete event");
        assert_eq!(resp.events().len(), 1);
        assert_eq!(resp.events()[0].event_type(), EventType::Delete);
        assert_eq!(resp.events()[0].kv().map(|kv| kv.mod_revision()), Some(del));

        stream.request_progress().await?;
        let progress = stream.message().await?.expect("progress");
        assert!(progress.events().is_empty());
        assert_eq!(progress.watch_id(), -1);
        assert!(progress.header().map(|h| h.revision()) >= Some(del));
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// A progress request on a stream whose watch is still replaying 400 revisions of history is
/// answered only after every event up to the answer's revision (etcd answers for synced
/// watchers only; Kubernetes' watch cache relies on it). An idle second watch on the same
/// stream does not hold the answer back, and a later request is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_requests_wait_for_replaying_watches() -> anyhow::Result<()> {
    within("progress after replay", 60, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(2).await?;
        let first = cl.put("pr/0", "0", None).await?.header().expect("header").revision();
        let mut last = first;
        for i in 1..400 {
            last = cl
                .put(format!("pr/{}", i % 10), i.to_string(), None)
                .await?
                .header()
                .expect("header")
                .revision();
        }
        let mut stream = cl.watch("idle/", Some(WatchOptions::new().with_prefix().with_watch_id(1))).await?;
        stream
            .watch("pr/", Some(WatchOptions::new().with_prefix().with_start_revision(first).with_watch_id(2)))
            .await?;
        stream.request_progress().await?;
        let mut seen = first - 1;
        let progress = loop {
            let resp = stream.message().await?.expect("the stream is open");
            if resp.watch_id() == -1 {
                break resp.header().expect("header").revision();
            }
            for ev in resp.events() {
                let rev = ev.kv().expect("event kv").mod_revision();
                assert_eq!(resp.watch_id(), 2, "an event on the idle watch");
                assert_eq!(rev, seen + 1, "replayed events out of order");
                seen = rev;
            }
        };
        assert!(progress >= last, "progress at {progress} is below the last write {last}");
        assert_eq!(seen, last, "progress at {progress} arrived before the events after {seen}");

        stream.request_progress().await?;
        let again = stream.message().await?.expect("a second progress answer");
        assert_eq!(again.watch_id(), -1);
        assert!(again.events().is_empty());
        assert!(again.header().map(|h| h.revision()) >= Some(progress));
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// Puts `key` once: a retry after an unknown outcome only writes if the key is still absent.
async fn put_once(cl: &mut etcd_client::Client, key: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, "v", None)]);
        match cl.txn(txn).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(key, error = %e, "put failed during the leader change; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_watch_survives_a_leader_change() -> anyhow::Result<()> {
    within("watch across leader change", 50, async {
        let mut c = Cluster::start(3).await?;
        let leader = c.wait_leader(Duration::from_secs(5)).await?;
        let others: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
        let (watcher, writer) = (others[0], others[1]);
        let mut wcl = c.client(watcher).await?;
        let mut stream = wcl.watch("lc/", Some(WatchOptions::new().with_prefix())).await?;
        assert!(stream.message().await?.expect("created").created());

        let mut cl = c.client(writer).await?;
        const KEYS: usize = 30;
        for i in 0..KEYS {
            if i == 10 {
                c.stop(leader).await;
            }
            put_once(&mut cl, &format!("lc/{i:02}")).await?;
        }

        let mut seen: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut last_rev = 0;
        while seen.len() < KEYS {
            let resp = stream.message().await?.expect("the watch ended");
            for ev in resp.events() {
                let kv = ev.kv().expect("event kv");
                assert!(kv.mod_revision() > last_rev, "events out of order");
                last_rev = kv.mod_revision();
                let dup = seen.insert(kv.key().to_vec(), kv.mod_revision());
                assert!(dup.is_none(), "duplicate event for {:?}", String::from_utf8_lossy(kv.key()));
            }
        }
        let expected: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("lc/{i:02}").into_bytes()).collect();
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected);
        assert_ne!(c.wait_leader(Duration::from_secs(5)).await?, leader);
        c.shutdown().await;
        Ok(())
    })
    .await
}
