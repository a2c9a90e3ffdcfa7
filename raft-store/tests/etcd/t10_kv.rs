//! KV: put, get, prefix and past-revision reads, delete, txn compare-and-swap, compaction
//! and the errors clients match on.

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

use crate::harness::{Cluster, grpc_status, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_get_range_delete_through_a_follower() -> anyhow::Result<()> {
    within("kv round trip", 30, async {
        let c = Cluster::start(3).await?;
        let leader = c.member(1).leader().unwrap_or(1);
        let follower = c.running().into_iter().find(|id| *id != leader).unwrap_or(1);
        let mut cl = c.client(follower).await?;

        let first = cl.put("a/1", "one", None).await?;
        let h = first.header().expect("put has a header");
        assert_eq!(h.member_id(), follower);
        assert!(h.raft_term() > 0);
        assert_ne!(h.cluster_id(), 0);
        let rev1 = h.revision();
        cl.put("a/2", "two", None).await?;
        cl.put("b/1", "other", None).await?;
        let put = cl.put("a/1", "uno", Some(PutOptions::new().with_prev_key())).await?;
        assert_eq!(put.prev_key().map(|kv| kv.value().to_vec()), Some(b"one".to_vec()));

        let got = cl.get("a/1", None).await?;
        assert_eq!(got.kvs().len(), 1);
        assert_eq!(got.kvs()[0].value(), b"uno");
        assert_eq!(got.kvs()[0].version(), 2);
        assert_eq!(got.kvs()[0].create_revision(), rev1);

        let prefix = cl.get("a/", Some(GetOptions::new().with_prefix())).await?;
        let keys: Vec<_> = prefix.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        assert_eq!(keys, vec![b"a/1".to_vec(), b"a/2".to_vec()]);
        assert_eq!(prefix.count(), 2);

        let old = cl.get("a/1", Some(GetOptions::new().with_revision(rev1))).await?;
        assert_eq!(old.kvs()[0].value(), b"one");

        let all = cl.get("", Some(GetOptions::new().with_all_keys().with_limit(2))).await?;
        assert_eq!((all.kvs().len(), all.more(), all.count()), (2, true, 3));

        let sorted = cl
            .get(
                "a/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Descend)
                        .with_limit(1),
                ),
            )
            .await?;
        assert_eq!(sorted.kvs()[0].key(), b"a/2");
        let newest =
            cl.get("a/", Some(GetOptions::new().with_prefix().with_min_mod_revision(rev1 + 2))).await?;
        assert_eq!(newest.kvs().iter().map(|kv| kv.key()).collect::<Vec<_>>(), vec![b"a/1".as_slice()]);
        let counted = cl.get("a/", Some(GetOptions::new().with_prefix().with_count_only())).await?;
        assert_eq!((counted.kvs().len(), counted.count()), (0, 2));
        let serial = cl.get("a/2", Some(GetOptions::new().with_serializable().with_keys_only())).await?;
        assert_eq!((serial.kvs()[0].key(), serial.kvs()[0].value()), (b"a/2".as_slice(), b"".as_slice()));

        let del = cl.delete("a/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await?;
        assert_eq!(del.deleted(), 2);
        assert_eq!(del.prev_kvs().len(), 2);
        assert!(cl.get("a/1", None).await?.kvs().is_empty());

        let err = cl.put("", "v", None).await.expect_err("empty key");
        assert_eq!(
            grpc_status(&err),
            Some((tonic::Code::InvalidArgument, "etcdserver: key is not provided".into()))
        );
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn txn_compare_and_swap_takes_one_branch() -> anyhow::Result<()> {
    within("txn", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(2).await?;
        let rev = cl.put("cas", "v1", None).await?.header().expect("header").revision();

        let swap = Txn::new()
            .when([Compare::mod_revision("cas", CompareOp::Equal, rev)])
            .and_then([TxnOp::put("cas", "v2", None)])
            .or_else([TxnOp::get("cas", None)]);
        let won = cl.txn(swap.clone()).await?;
        assert!(won.succeeded());
        assert_eq!(cl.get("cas", None).await?.kvs()[0].value(), b"v2");

        let lost = cl.txn(swap).await?;
        assert!(!lost.succeeded());
        match lost.op_responses().first() {
            Some(etcd_client::TxnOpResponse::Get(g)) => assert_eq!(g.kvs()[0].value(), b"v2"),
            other => panic!("expected the failure branch's get, got {other:?}"),
        }

        let cmp = Txn::new()
            .when([
                Compare::value("cas", CompareOp::Equal, "v2"),
                Compare::version("cas", CompareOp::Greater, 1),
                Compare::create_revision("cas", CompareOp::Less, rev + 1),
                Compare::lease("cas", CompareOp::Equal, 0),
                Compare::mod_revision("ca", CompareOp::NotEqual, 0).with_prefix(),
            ])
            .and_then([TxnOp::delete("cas", None)]);
        assert!(cl.txn(cmp).await?.succeeded());

        let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
        let err = cl.txn(dup).await.expect_err("duplicate key");
        assert_eq!(
            grpc_status(&err),
            Some((tonic::Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()))
        );
        let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("m{i}"), "v", None)).collect();
        let err = cl.txn(Txn::new().and_then(many)).await.expect_err("too many ops");
        assert_eq!(
            grpc_status(&err),
            Some((tonic::Code::InvalidArgument, "etcdserver: too many operations in txn request".into()))
        );
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_makes_old_revisions_unreadable() -> anyhow::Result<()> {
    within("compaction", 30, async {
        let c = Cluster::start(3).await?;
        let mut cl = c.client(3).await?;
        let r1 = cl.put("k", "1", None).await?.header().expect("header").revision();
        cl.put("k", "2", None).await?;
        let r3 = cl.put("k", "3", None).await?.header().expect("header").revision();
        cl.compact(r3, None).await?;

        let err = cl.get("k", Some(GetOptions::new().with_revision(r1))).await.expect_err("compacted");
        assert_eq!(
            grpc_status(&err),
            Some((tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()))
        );
        let err = cl.get("k", Some(GetOptions::new().with_revision(r3 + 100))).await.expect_err("future");
        assert_eq!(
            grpc_status(&err),
            Some((
                tonic::Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision".into()
            ))
        );
        assert_eq!(cl.get("k", Some(GetOptions::new().with_revision(r3))).await?.kvs()[0].value(), b"3");
        c.shutdown().await;
        Ok(())
    })
    .await
}
