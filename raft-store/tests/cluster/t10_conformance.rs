//! The store conformance suite on a one-member cluster and, through a follower (so every
//! write, linearizable read and lease call is forwarded), on a three-member cluster.

use async_trait::async_trait;
use flotilla_core::store::{
    CompactResponse, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveResponse,
    RangeRequest, RangeResponse, ResponseHeader, Result, Revision, Store, TxnRequest, TxnResponse,
    WatchRequest, WatchStream,
};
use flotilla_raft_store::{NodeId, RaftStore};

use crate::harness::Cluster;

/// A cluster served through one of its members.
pub(crate) struct Via {
    cluster: Cluster,
    id: NodeId,
}

impl Via {
    fn m(&self) -> &RaftStore {
        self.cluster.member(self.id)
    }

    pub(crate) async fn start(members: u64) -> Self {
        // The suite tests semantics, not failover: timings that tolerate a machine starved by
        // parallel test threads, so no spurious election makes a write's outcome unknown.
        let cluster = Cluster::start_with(members, |c| {
            c.heartbeat_interval = std::time::Duration::from_millis(100);
            c.election_timeout = std::time::Duration::from_millis(1500);
            // A 1.5 MB write forwarded by a follower has taken over 5 s on a loaded CI machine
            // (the suite gives each call 10 s).
            c.request_timeout = std::time::Duration::from_secs(9);
        })
        .await
        .expect("cluster starts");
        let leader = cluster.wait_leader(std::time::Duration::from_secs(10)).await.expect("leader elected");
        let id = cluster.running().into_iter().find(|id| *id != leader).unwrap_or(leader);
        Via { cluster, id }
    }
}

#[async_trait]
impl Store for Via {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.m().range(req).await
    }
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.m().txn(req).await
    }
    async fn compact(&self, revision: Revision) -> Result<CompactResponse> {
        self.m().compact(revision).await
    }
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        self.m().watch(req).await
    }
    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<LeaseGrantResponse> {
        self.m().lease_grant(id, ttl).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse> {
        self.m().lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader> {
        self.m().lease_revoke(id).await
    }
    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        self.m().lease_time_to_live(id, keys).await
    }
    async fn lease_leases(&self) -> Result<Vec<LeaseId>> {
        self.m().lease_leases().await
    }
}

pub(crate) async fn shutdown(via: Via) {
    via.cluster.shutdown().await;
}

mod one_member {
    use super::*;

    async fn new_store() -> Via {
        Via::start(1).await
    }

    flotilla_core::store_conformance_tests!(new_store, shutdown);
}

mod three_members_via_follower {
    use super::*;

    async fn new_store() -> Via {
        Via::start(3).await
    }

    flotilla_core::store_conformance_tests!(new_store, shutdown);
}
