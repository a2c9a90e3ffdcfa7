//! Three members on loopback, each serving the etcd API, and etcd clients for them.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use flotilla_raft_store::{NodeId, RaftStore, RaftStoreConfig};
use tempfile::TempDir;

/// Members on loopback serving the etcd API.
pub(crate) struct Cluster {
    _dir: TempDir,
    pub(crate) members: BTreeMap<NodeId, Option<RaftStore>>,
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) with fast timings and bootstraps them as one cluster.
    pub(crate) async fn start(n: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut members = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let listen: SocketAddr = "127.0.0.1:0".parse()?;
            let mut c = RaftStoreConfig::new(id, dir.path().join(format!("member-{id}")), listen);
            c.heartbeat_interval = Duration::from_millis(50);
            c.election_timeout = Duration::from_millis(300);
            c.progress_interval = Duration::from_millis(100);
            c.etcd_listen = Some("127.0.0.1:0".parse()?);
            let store = RaftStore::open(c).await.with_context(|| format!("opening member {id}"))?;
            addrs.insert(id, store.local_addr().to_string());
            members.insert(id, Some(store));
        }
        let c = Cluster { _dir: dir, members };
        c.member(1).initialize(addrs).await?;
        c.wait_leader(Duration::from_secs(10)).await?;
        Ok(c)
    }

    /// A running member.
    pub(crate) fn member(&self, id: NodeId) -> &RaftStore {
        self.members.get(&id).and_then(|m| m.as_ref()).unwrap_or_else(|| panic!("member {id} is not running"))
    }

    /// Ids of running members.
    pub(crate) fn running(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.is_some()).map(|(id, _)| *id).collect()
    }

    /// An etcd client talking to member `id` only.
    pub(crate) async fn client(&self, id: NodeId) -> anyhow::Result<etcd_client::Client> {
        let addr = self.member(id).etcd_addr().context("member serves no etcd endpoint")?;
        Ok(etcd_client::Client::connect([format!("http://{addr}")], None).await?)
    }

    /// Waits until the running members agree on a leader; returns it.
    pub(crate) async fn wait_leader(&self, within: Duration) -> anyhow::Result<NodeId> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let running = self.running();
            let leaders: Vec<Option<NodeId>> = running.iter().map(|id| self.member(*id).leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && running.contains(l)
                && self.member(*l).raft().is_leader()
            {
                return Ok(*l);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no agreed leader within {within:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops member `id`.
    pub(crate) async fn stop(&mut self, id: NodeId) {
        if let Some(Some(m)) = self.members.insert(id, None) {
            m.shutdown().await;
        }
    }

    /// Stops every member.
    pub(crate) async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// The gRPC status of an etcd client error, if it is one.
pub(crate) fn grpc_status(e: &etcd_client::Error) -> Option<(tonic::Code, String)> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some((s.code(), s.message().to_string())),
        _ => None,
    }
}

/// Runs `fut` with an outer timeout that names what probably hung.
pub(crate) async fn within<T>(
    what: &str,
    secs: u64,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .with_context(|| format!("timed out: {what}"))?
}
