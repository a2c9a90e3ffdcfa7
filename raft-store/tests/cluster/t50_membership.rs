//! Membership changes while writes continue: add learners, promote them, remove a member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flotilla_core::store::{PutRequest, Store};

use crate::harness::{Cluster, read_prefix, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_then_replace_a_member_under_writes() -> anyhow::Result<()> {
    within("membership changes", 120, async {
        let mut c = Cluster::start(1).await?;
        let writer_store = c.member(1).clone();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, written) = (stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    writer_store.put(PutRequest::new(format!("m/{i:05}"), "x")).await?;
                    i += 1;
                    written.store(i, Ordering::Relaxed);
                }
                anyhow::Ok(i)
            })
        };

        for id in [2, 3] {
            c.launch(id, "127.0.0.1:0".parse()?).await?;
            c.member(1).add_learner(id, c.addrs[&id].to_string()).await?;
        }
        c.member(1).change_voters([1, 2, 3], false).await?;
        assert!(written.load(Ordering::Relaxed) > 0, "writes continued during the change");
        let voters: Vec<u64> = c.member(1).raft().voter_ids().collect();
        assert_eq!(voters, vec![1, 2, 3]);

        stop.store(true, Ordering::Relaxed);
        let total = writer.await??;
        // Remove member 1 (the leader); 2 and 3 carry on.
        c.member(1).change_voters([2, 3], false).await?;
        c.stop(1).await;
        let leader = c.wait_leader_among(&[2, 3], Duration::from_secs(10)).await?;
        c.member(leader).put(PutRequest::new("m/after", "y")).await?;
        c.wait_converged(Duration::from_secs(15)).await?;
        let reads: BTreeMap<String, String> = read_prefix(c.member(2), "m/").await?;
        assert_eq!(reads.len() as u64, total + 1);
        c.shutdown().await;
        Ok(())
    })
    .await
}
