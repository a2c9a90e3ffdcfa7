//! Leases: grant, keep-alive, time-to-live with keys, revoke deleting keys, and expiry
//! deleting keys with a delete event.

use etcd_client::{EventType, LeaseTimeToLiveOptions, PutOptions, WatchOptions};

use crate::harness::{Cluster, grpc_status, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_lifecycle() -> anyhow::Result<()> {
    within("lease lifecycle", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(2).await?;
        let lease = cl.lease_grant(30, None).await?;
        assert_eq!(lease.ttl(), 30);
        let id = lease.id();
        assert!(id > 0);
        cl.put("l/a", "1", Some(PutOptions::new().with_lease(id))).await?;
        cl.put("l/b", "2", Some(PutOptions::new().with_lease(id))).await?;

        let (mut keeper, mut responses) = cl.lease_keep_alive(id).await?;
        keeper.keep_alive().await?;
        let ka = responses.message().await?.expect("keep-alive answer");
        assert_eq!((ka.id(), ka.ttl()), (id, 30));

        let ttl = cl.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await?;
        assert_eq!(ttl.granted_ttl(), 30);
        assert!(ttl.ttl() > 0 && ttl.ttl() <= 30);
        assert_eq!(ttl.keys(), &[b"l/a".to_vec(), b"l/b".to_vec()]);
        assert!(cl.leases().await?.leases().iter().any(|l| l.id() == id));

        cl.lease_revoke(id).await?;
        assert!(cl.get("l/a", None).await?.kvs().is_empty());
        assert_eq!(cl.lease_time_to_live(id, None).await?.ttl(), -1);
        let err = cl.lease_revoke(id).await.expect_err("revoked twice");
        assert_eq!(
            grpc_status(&err),
            Some((tonic::Code::NotFound, "etcdserver: requested lease not found".into()))
        );
        keeper.keep_alive().await?;
        let gone = responses.message().await?.expect("keep-alive answer");
        assert_eq!(gone.ttl(), 0);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_lease_deletes_its_keys_with_an_event() -> anyhow::Result<()> {
    within("lease expiry", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(3).await?;
        let id = cl.lease_grant(1, None).await?.id();
        cl.put("exp", "v", Some(PutOptions::new().with_lease(id))).await?;
        let mut stream = cl.watch("exp", Some(WatchOptions::new().with_prev_key())).await?;
        assert!(stream.message().await?.expect("created").created());
        let resp = stream.message().await?.expect("delete event");
        let ev = &resp.events()[0];
        assert_eq!(ev.event_type(), EventType::Delete);
        assert_eq!(ev.prev_kv().map(|kv| kv.lease()), Some(id));
        assert!(cl.get("exp", None).await?.kvs().is_empty());
        c.shutdown().await;
        Ok(())
    })
    .await
}
