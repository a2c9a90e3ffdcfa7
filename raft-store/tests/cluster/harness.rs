//! A cluster of members on loopback, started, stopped and restarted in-process.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use flotilla_core::store::{KeyRange, RangeRequest, Store};
use flotilla_raft_store::{NetworkFilter, NodeId, OpenError, RaftStore, RaftStoreConfig};
use tempfile::TempDir;

/// Fast timings so elections finish within a test's patience.
pub(crate) fn fast_config(
    id: NodeId,
    dir: &std::path::Path,
    listen: SocketAddr,
    filter: Arc<NetworkFilter>,
) -> RaftStoreConfig {
    let mut c = RaftStoreConfig::new(id, dir.join(format!("member-{id}")), listen);
    c.heartbeat_interval = Duration::from_millis(50);
    c.election_timeout = Duration::from_millis(300);
    c.request_timeout = Duration::from_secs(5);
    c.progress_interval = Duration::from_millis(100);
    c.filter = filter;
    c
}

/// Members on loopback sharing one fault filter.
pub(crate) struct Cluster {
    pub(crate) dir: TempDir,
    pub(crate) filter: Arc<NetworkFilter>,
    pub(crate) members: BTreeMap<NodeId, Option<RaftStore>>,
    pub(crate) addrs: BTreeMap<NodeId, SocketAddr>,
    pub(crate) tweak: fn(&mut RaftStoreConfig),
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) and bootstraps them as one cluster.
    pub(crate) async fn start(n: u64) -> anyhow::Result<Self> {
        Self::start_with(n, |_| {}).await
    }

    /// Like [`start`](Self::start), with each member's config adjusted by `tweak`.
    pub(crate) async fn start_with(n: u64, tweak: fn(&mut RaftStoreConfig)) -> anyhow::Result<Self> {
        let mut c = Cluster {
            dir: tempfile::tempdir()?,
            filter: Arc::default(),
            members: BTreeMap::new(),
            addrs: BTreeMap::new(),
            tweak,
        };
        for id in 1..=n {
            c.launch(id, "127.0.0.1:0".parse()?).await?;
        }
        let voters = c.addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
        c.member(1).initialize(voters).await?;
        c.wait_leader(Duration::from_secs(10)).await?;
        Ok(c)
    }

    /// Opens member `id` listening on `listen`, retrying while the port is not yet free. (Its
    /// previous incarnation's database is closed: `shutdown` waits for that.)
    pub(crate) async fn launch(&mut self, id: NodeId, listen: SocketAddr) -> anyhow::Result<()> {
        let mut cfg = fast_config(id, self.dir.path(), listen, self.filter.clone());
        (self.tweak)(&mut cfg);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            match RaftStore::open(cfg.clone()).await {
                Ok(s) => break s,
                Err(OpenError::Listen { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context(format!("opening member {id}")),
            }
        };
        self.addrs.insert(id, store.local_addr());
        self.members.insert(id, Some(store));
        Ok(())
    }

    /// A running member.
    pub(crate) fn member(&self, id: NodeId) -> &RaftStore {
        self.members.get(&id).and_then(|m| m.as_ref()).unwrap_or_else(|| panic!("member {id} is not running"))
    }

    /// Ids of running members.
    pub(crate) fn running(&self) -> Vec<NodeId> {
        self.members.iter().filter(|(_, m)| m.is_some()).map(|(id, _)| *id).collect()
    }

    /// Stops member `id` (its data stays).
    pub(crate) async fn stop(&mut self, id: NodeId) {
        if let Some(Some(m)) = self.members.insert(id, None) {
            m.shutdown().await;
        }
    }

    /// Restarts a stopped member on its old address.
    pub(crate) async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        let addr = self.addrs[&id];
        self.launch(id, addr).await
    }

    /// Waits until every running member that is not cut off agrees on one leader; returns it.
    pub(crate) async fn wait_leader(&self, within: Duration) -> anyhow::Result<NodeId> {
        self.wait_leader_among(&self.running(), within).await
    }

    /// Waits until the members `among` agree on a leader that is one of them.
    pub(crate) async fn wait_leader_among(
        &self,
        among: &[NodeId],
        within: Duration,
    ) -> anyhow::Result<NodeId> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let leaders: Vec<Option<NodeId>> = among.iter().map(|id| self.member(*id).leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && among.contains(l)
                && self.member(*l).raft().is_leader()
            {
                return Ok(*l);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no agreed leader among {among:?} within {within:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the running members' state digests are equal.
    pub(crate) async fn wait_converged(&self, within: Duration) -> anyhow::Result<[u8; 32]> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let digests: Vec<[u8; 32]> =
                self.running().iter().map(|id| self.member(*id).state_digest()).collect();
            let revs: Vec<i64> =
                self.running().iter().map(|id| self.member(*id).engine().revision()).collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return Ok(digests[0]);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("members did not converge within {within:?}; revisions {revs:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every member.
    pub(crate) async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// Every key under `prefix` as read (linearizably) through `store`.
pub(crate) async fn read_prefix(store: &RaftStore, prefix: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let resp = store.range(RangeRequest::new(KeyRange::prefix(prefix))).await?;
    Ok(resp
        .kvs
        .into_iter()
        .map(|kv| {
            (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned())
        })
        .collect())
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
