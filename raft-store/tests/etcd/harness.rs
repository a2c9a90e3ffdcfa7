//! Three members on loopback, each serving the etcd API, and etcd clients for them: the
//! cluster tests' harness with the etcd endpoint switched on.

use std::ops::{Deref, DerefMut};

use anyhow::Context;
use flotilla_raft_store::{JoinKey, NodeId};

#[path = "../cluster/harness.rs"]
#[allow(dead_code)]
mod members;

pub(crate) use members::within;

/// Members on loopback serving the etcd API.
pub(crate) struct Cluster(members::Cluster);

impl Deref for Cluster {
    type Target = members::Cluster;

    fn deref(&self) -> &members::Cluster {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut members::Cluster {
        &mut self.0
    }
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) with fast timings, each serving the etcd API on a free
    /// loopback port, and bootstraps them as one cluster.
    pub(crate) async fn start(n: u64) -> anyhow::Result<Self> {
        let c = members::Cluster::start_with(n, |cfg| cfg.etcd_listen = "127.0.0.1:0".parse().ok()).await?;
        Ok(Cluster(c))
    }

    /// Like [`start`](Self::start), every member also holding one join key, so that members
    /// that do not lead forward the Cluster service's membership changes to the leader.
    /// Members [`launch`](members::Cluster::launch)ed later hold it too.
    pub(crate) async fn start_with_join_key(n: u64) -> anyhow::Result<Self> {
        let c = members::Cluster::start_with(n, |cfg| {
            cfg.etcd_listen = "127.0.0.1:0".parse().ok();
            cfg.join_key = Some(JoinKey::new(b"the etcd tests' join key, 32+ bytes"));
        })
        .await?;
        Ok(Cluster(c))
    }

    /// An etcd client talking to member `id` only.
    pub(crate) async fn client(&self, id: NodeId) -> anyhow::Result<etcd_client::Client> {
        let addr = self.member(id).etcd_addr().context("member serves no etcd endpoint")?;
        Ok(etcd_client::Client::connect([format!("http://{addr}")], None).await?)
    }

    /// Stops every member.
    pub(crate) async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

/// The gRPC status of an etcd client error, if it is one.
pub(crate) fn grpc_status(e: &etcd_client::Error) -> Option<(tonic::Code, String)> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some((s.code(), s.message().to_string())),
        _ => None,
    }
}
