//! Writes whose outcome the member cannot know are reported as indeterminate, never as
//! unavailable: "unavailable" promises nothing was done, and clients retry it. Both cases
//! were found by the deterministic simulation (`flotilla-jepsen sim`).

use std::time::Duration;

use flotilla_core::store::{Error, PutRequest, Store};
use openraft::type_config::async_runtime::WatchReceiver as _;

use crate::harness::{Cluster, read_prefix, within};

/// The leader's last log index.
fn last_log(c: &Cluster, id: u64) -> u64 {
    c.member(id).raft().metrics().borrow_watched().last_log_index.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_when_its_leader_stops_has_an_unknown_outcome() -> anyhow::Result<()> {
    within("a write cut short by shutdown", 90, async {
        let mut c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        c.member(old).put(PutRequest::new("o/before", "1")).await?;
        let others: Vec<u64> = c.running().into_iter().filter(|id| *id != old).collect();
        c.filter.partition(&[old], &others);
        // The cut-off leader appends the write to its log but cannot commit it.
        let before = last_log(&c, old);
        let leader = c.member(old).clone();
        let write = tokio::spawn(async move { leader.put(PutRequest::new("o/in-flight", "1")).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while last_log(&c, old) == before {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the write never reached the log");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The member shuts down with the entry in its log: a restarted leader or the next
        // one may still commit it, so the client must not be told nothing happened.
        c.stop(old).await;
        let result = write.await?;
        assert!(
            matches!(result, Err(Error::Indeterminate { .. })),
            "a write in the log of a stopped leader has an unknown outcome: {result:?}"
        );
        c.filter.heal();
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_write_the_asked_member_cannot_apply_in_time_is_not_unavailable() -> anyhow::Result<()> {
    within("a committed write not applied on the asked member", 90, async {
        // Elections far slower than requests: the follower cut off from the leader's appends
        // stays a follower while its client waits.
        let c = Cluster::start_with(3, |cfg| {
            cfg.election_timeout = Duration::from_secs(5);
            cfg.request_timeout = Duration::from_secs(1);
        })
        .await?;
        let leader = c.wait_leader(Duration::from_secs(20)).await?;
        let follower = c.running().into_iter().find(|id| *id != leader).expect("three members");
        c.member(follower).put(PutRequest::new("o/before", "1")).await?;
        // The follower still reaches the leader (it forwards the write), but the leader's
        // appends no longer reach the follower: the write commits with the third member.
        c.filter.block_one_way(leader, follower);
        let result = c.member(follower).put(PutRequest::new("o/committed", "1")).await;
        assert!(
            matches!(result, Err(Error::Indeterminate { .. })),
            "a write the leader committed is not 'unavailable' on the member that waited: {result:?}"
        );
        let on_leader = read_prefix(c.member(leader), "o/committed").await?;
        assert_eq!(on_leader.get("o/committed").map(String::as_str), Some("1"), "the write was committed");
        c.filter.heal();
        c.shutdown().await;
        Ok(())
    })
    .await
}
