//! Partitions through the in-process fault filter: the minority cannot commit, the majority
//! can, and once healed every member converges to the same state. Lease requests answered
//! only by a leader a quorum follows, once it has applied what was committed.

use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver as _;

use flotilla_core::store::{Error, PutRequest, Store};

use crate::harness::{Cluster, read_prefix, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_cannot_commit_majority_can_then_converge() -> anyhow::Result<()> {
    within("partition and heal", 90, async {
        let c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        c.member(old).put(PutRequest::new("p/before", "1")).await?;
        let majority: Vec<u64> = c.running().into_iter().filter(|id| *id != old).collect();
        c.filter.partition(&[old], &majority);

        // The isolated old leader cannot commit.
        let res = c.member(old).put(PutRequest::new("p/minority", "lost")).await;
        assert!(
            matches!(res, Err(Error::Unavailable { .. } | Error::Indeterminate { .. })),
            "a write on the minority side must not succeed: {res:?}"
        );

        // The majority elects a leader and commits.
        let new = c.wait_leader_among(&majority, Duration::from_secs(10)).await?;
        assert_ne!(new, old);
        for i in 0..20 {
            c.member(majority[0]).put(PutRequest::new(format!("p/{i:02}"), "x")).await?;
        }

        c.filter.heal();
        let digest = c.wait_converged(Duration::from_secs(20)).await?;
        let reads = read_prefix(c.member(old), "p/").await?;
        assert!(!reads.contains_key("p/minority"), "the minority write was never committed");
        assert_eq!(reads.len(), 21);
        assert_eq!(c.member(new).state_digest(), digest);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_and_delays_do_not_break_agreement() -> anyhow::Result<()> {
    within("lossy network", 90, async {
        let c = Cluster::start(3).await?;
        c.wait_leader(Duration::from_secs(10)).await?;
        c.filter.set_drop_rate(100);
        c.filter.set_delay(Duration::from_millis(5));
        let mut ok = 0;
        for i in 0..40 {
            let target = c.running()[i % 3];
            match c.member(target).put(PutRequest::new(format!("d/{i:02}"), "x")).await {
                Ok(_) => ok += 1,
                // A lost forward reply leaves the outcome unknown; that is allowed, a lie is not.
                Err(Error::Indeterminate { .. } | Error::Unavailable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        c.filter.heal();
        c.wait_converged(Duration::from_secs(20)).await?;
        let count = read_prefix(c.member(1), "d/").await?.len();
        assert!(count >= ok, "{ok} writes acknowledged but only {count} present");
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cut_off_renews_no_lease() -> anyhow::Result<()> {
    within("keep-alive on a deposed leader", 90, async {
        let c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        let lease = c.member(old).lease_grant(0, 60).await?.id;
        assert_eq!(c.member(old).lease_keep_alive(lease).await?.ttl, 60, "renewed while leading");
        let majority: Vec<u64> = c.running().into_iter().filter(|id| *id != old).collect();
        c.filter.partition(&[old], &majority);
        // The cut-off member may still believe it leads; it must not renew without a quorum,
        // since the leader the majority elects keeps the deadlines that count.
        let renewed = c.member(old).lease_keep_alive(lease).await;
        assert!(
            matches!(renewed, Err(Error::Unavailable { .. })),
            "a keep-alive on the cut-off member must fail: {renewed:?}"
        );
        let ttl = c.member(old).lease_time_to_live(lease, false).await;
        assert!(matches!(ttl, Err(Error::Unavailable { .. })), "nor answer a time-to-live: {ttl:?}");
        let new = c.wait_leader_among(&majority, Duration::from_secs(10)).await?;
        assert_eq!(c.member(new).lease_keep_alive(lease).await?.ttl, 60, "the new leader renews");
        c.filter.heal();
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_does_not_revoke_a_lease_the_new_leader_keeps() -> anyhow::Result<()> {
    within("revoke by a deposed leader", 90, async {
        let c = Cluster::start(3).await?;
        let old = c.wait_leader(Duration::from_secs(10)).await?;
        let lease = c.member(old).lease_grant(0, 2).await?.id;
        c.member(old).put(PutRequest { lease, ..PutRequest::new("l/kept", "v") }).await?;
        let majority: Vec<u64> = c.running().into_iter().filter(|id| *id != old).collect();
        c.filter.partition(&[old], &majority);
        let new = c.wait_leader_among(&majority, Duration::from_secs(10)).await?;
        // The cut-off member's lessor sees the lease expire (nobody renews it there) and
        // proposes a revoke it cannot commit; the new leader keeps the lease alive. The pause
        // is the client's keep-alive period (a fifth of the TTL), not a wait for a condition:
        // the old leader's lessor must see a TTL pass, and nothing outside it shows when.
        let cluster = &c;
        let keep = |n: usize| async move {
            for _ in 0..n {
                cluster.member(new).lease_keep_alive(lease).await?;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            anyhow::Ok(())
        };
        keep(10).await?;
        c.filter.heal();
        // Once healed, the old leader steps down; its revoke must die with its leadership.
        keep(10).await?;
        let ttl = c.member(majority[0]).lease_time_to_live(lease, true).await?;
        assert!(ttl.ttl > 0, "the lease lives on: {ttl:?}");
        let kept = read_prefix(c.member(majority[0]), "l/").await?;
        assert_eq!(kept.get("l/kept").map(String::as_str), Some("v"));
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_answers_for_leases_only_once_it_has_applied_what_was_committed() -> anyhow::Result<()> {
    within("lease requests on a leader whose state machine lags", 90, async {
        let c = Cluster::start_with(3, |cfg| cfg.request_timeout = Duration::from_secs(1)).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let m = c.member(leader).clone();
        let old = m.lease_grant(0, 60).await?.id;
        // The leader's state machine stops (as a power loss leaves one that lost its unsynced
        // applies) while a new lease's grant and the old lease's revoke are committed.
        let pause = m.pause_apply().await;
        let new = 4242;
        let grant = tokio::spawn({
            let m = m.clone();
            async move { m.lease_grant(new, 60).await }
        });
        let revoke = tokio::spawn({
            let m = m.clone();
            async move { m.lease_revoke(old).await }
        });
        let target = m.raft().metrics().borrow_watched().last_log_index.unwrap_or(0) + 2;
        m.raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |x| x.local_committed.as_ref().is_some_and(|l| l.index() >= target),
                "grant and revoke committed",
            )
            .await?;
        // Until it has applied them, the leader knows neither: it must not say the new lease
        // is gone, nor renew the revoked one.
        for (id, what) in [(new, "the granted lease"), (old, "the revoked lease")] {
            let renewed = m.lease_keep_alive(id).await;
            assert!(
                matches!(renewed, Err(Error::Unavailable { .. })),
                "a keep-alive of {what} before the leader applied it must be unavailable: {renewed:?}"
            );
            let ttl = m.lease_time_to_live(id, false).await;
            assert!(matches!(ttl, Err(Error::Unavailable { .. })), "nor a time-to-live of {what}: {ttl:?}");
        }
        drop(pause);
        // Their callers waited for the apply longer than the request timeout: they may have
        // been told the outcome is unknown, but both were committed.
        let granted = grant.await?;
        assert!(
            matches!(&granted, Ok(g) if g.id == new) || matches!(granted, Err(Error::Indeterminate { .. }))
        );
        let revoked = revoke.await?;
        assert!(matches!(revoked, Ok(_) | Err(Error::Indeterminate { .. })), "{revoked:?}");
        assert_eq!(m.lease_keep_alive(new).await?.ttl, 60, "the granted lease renews once applied");
        let gone = m.lease_keep_alive(old).await;
        assert!(matches!(gone, Err(Error::LeaseNotFound(_))), "the revoked lease is gone: {gone:?}");
        c.shutdown().await;
        Ok(())
    })
    .await
}
