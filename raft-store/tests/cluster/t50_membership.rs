//! Membership changes while writes continue: add learners, promote them, remove a member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flotilla_core::store::{PutRequest, Store};
use openraft::type_config::async_runtime::WatchReceiver as _;

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

/// A member replaced at its address by a new one (a fresh data directory, a new id) while its
/// old id is still a voter: the newcomer must refuse what the leader sends to the old id. Were
/// it to take those appends, the leader would count its acknowledgements as the old member's,
/// as if that member had kept its log, and could commit with a quorum that lost writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_at_a_replaced_members_address_refuses_the_old_members_messages() -> anyhow::Result<()> {
    within("a replaced member's address", 60, async {
        let mut c = Cluster::start(3).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        c.member(leader).put(PutRequest::new("r/before", "x")).await?;
        let gone = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap_or(3);
        c.wait_converged(Duration::from_secs(10)).await?;
        let matched_before = replicated_to(&c, leader, gone);
        c.stop(gone).await;
        c.launch(4, c.addrs[&gone]).await?;
        for i in 0..5 {
            c.member(leader).put(PutRequest::new(format!("r/{i}"), "y")).await?;
        }

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while c.member(4).misaddressed_messages() < 3 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "member 4 refused no messages for {gone}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let newcomer = c.member(4).raft().metrics().borrow_watched().clone();
        assert_eq!(newcomer.last_log_index, None, "member 4 took entries sent to member {gone}");
        assert_eq!(replicated_to(&c, leader, gone), matched_before, "the leader's view of member {gone}");

        // Member `gone` back on its own data: it catches up as before.
        c.stop(4).await;
        c.restart(gone).await?;
        c.wait_converged(Duration::from_secs(15)).await?;
        assert_eq!(read_prefix(c.member(gone), "r/").await?.len(), 6);
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// The last log index the leader `leader` knows member `id` to hold.
fn replicated_to(c: &Cluster, leader: u64, id: u64) -> Option<u64> {
    let metrics = c.member(leader).raft().metrics().borrow_watched().clone();
    metrics.replication.and_then(|r| r.get(&id).cloned().flatten()).map(|log_id| log_id.index())
}
