//! Cluster and Maintenance: member list and status.

use crate::harness::{Cluster, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_list_and_status() -> anyhow::Result<()> {
    within("member list and status", 30, async {
        let c = Cluster::start(3).await?;
        let leader = c.member(1).leader().expect("a leader");
        let mut cl = c.client(2).await?;
        let list = cl.member_list().await?;
        let mut ids: Vec<u64> = list.members().iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3]);
        for m in list.members() {
            assert!(!m.is_learner());
            assert_eq!(m.name(), format!("member-{}", m.id()));
            assert_eq!(m.peer_urls(), &[format!("http://{}", c.member(m.id()).local_addr())]);
        }
        let me = list.members().iter().find(|m| m.id() == 2).expect("member 2 listed");
        let etcd = c.member(2).etcd_addr().expect("etcd endpoint");
        assert_eq!(me.client_urls(), &[format!("http://{etcd}")]);

        cl.put("s", "1", None).await?;
        let status = cl.status().await?;
        assert!(status.version().starts_with("3.4"));
        assert_eq!(status.leader(), leader);
        assert!(status.raft_term() > 0);
        assert!(status.raft_index() >= status.raft_applied_index());
        assert!(status.raft_applied_index() > 0);
        assert_eq!(status.header().map(|h| h.member_id()), Some(2));
        let err = cl.member_remove(3).await.expect_err("member remove is not served yet");
        assert!(matches!(err, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unimplemented));
        c.shutdown().await;
        Ok(())
    })
    .await
}
