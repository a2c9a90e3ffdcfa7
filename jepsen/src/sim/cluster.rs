//! The simulated cluster: members on one [`SimNet`], each with its own data directory,
//! stopped and reopened by the nemesis.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flotilla_raft_store::{NodeId, RaftStore, RaftStoreConfig, SimNet};
use openraft::type_config::async_runtime::WatchReceiver as _;

use super::SimError;
use super::invariants::Invariants;

/// The members of one simulated cluster.
pub(crate) struct SimCluster {
    pub(crate) net: Arc<SimNet>,
    configs: Vec<RaftStoreConfig>,
    stores: Mutex<Vec<Option<RaftStore>>>,
    invariants: Arc<Invariants>,
    _dir: tempfile::TempDir,
}

/// Member `i`'s raft id (1-based).
pub(crate) fn id_of(i: usize) -> NodeId {
    i as NodeId + 1
}

impl SimCluster {
    /// Opens `members` members on a network seeded with `seed` and initializes the cluster.
    pub(crate) async fn start(
        members: usize,
        seed: u64,
        invariants: Arc<Invariants>,
    ) -> Result<SimCluster, SimError> {
        let dir = tempfile::tempdir().map_err(SimError::TempDir)?;
        let net = SimNet::new(seed);
        let configs = (0..members)
            .map(|i| {
                let listen = SocketAddr::from((Ipv4Addr::new(10, 77, 0, i as u8 + 1), 2380));
                let mut c = RaftStoreConfig::new(id_of(i), dir.path().join(format!("m{}", id_of(i))), listen);
                c.sim_net = Some(net.clone());
                // Small enough that snapshots happen on their own during a run.
                c.snapshot_every = 500;
                c.keep_logs_behind_snapshot = 50;
                c.request_timeout = Duration::from_secs(3);
                c
            })
            .collect();
        let cluster =
            SimCluster { net, configs, stores: Mutex::new(vec![None; members]), invariants, _dir: dir };
        for i in 0..members {
            cluster.open(i).await?;
        }
        let voters: BTreeMap<NodeId, String> =
            cluster.configs.iter().map(|c| (c.id, c.listen.to_string())).collect();
        let first = cluster.store(0).ok_or(SimError::Setup("member 1 did not open".into()))?;
        first.initialize(voters).await.map_err(|e| SimError::Setup(format!("initialize: {e}")))?;
        Ok(cluster)
    }

    /// How many members the cluster has.
    pub(crate) fn len(&self) -> usize {
        self.configs.len()
    }

    /// Member `i`'s store, while it runs.
    pub(crate) fn store(&self, i: usize) -> Option<RaftStore> {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner).get(i).cloned().flatten()
    }

    /// The members running now.
    pub(crate) fn running(&self) -> Vec<usize> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        (0..stores.len()).filter(|&i| stores[i].is_some()).collect()
    }

    /// The member that says it leads, if one does.
    pub(crate) fn leader(&self) -> Option<usize> {
        self.running().into_iter().find(|&i| {
            self.store(i)
                .is_some_and(|s| s.raft().metrics().borrow_watched().current_leader == Some(id_of(i)))
        })
    }

    /// Opens member `i` from its data directory (a start or a restart).
    pub(crate) async fn open(&self, i: usize) -> Result<(), SimError> {
        if self.store(i).is_some() {
            return Ok(());
        }
        let store = RaftStore::open(self.configs[i].clone())
            .await
            .map_err(|e| SimError::Setup(format!("member {} did not open: {e}", id_of(i))))?;
        self.invariants.watch_member(id_of(i), &store);
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(store);
        Ok(())
    }

    /// Stops member `i` (what it wrote stays on its disk).
    pub(crate) async fn stop(&self, i: usize) {
        let store = self.stores.lock().unwrap_or_else(PoisonError::into_inner)[i].take();
        if let Some(store) = store {
            store.shutdown().await;
            self.invariants.stopped(id_of(i));
        }
    }

    /// Stops every member.
    pub(crate) async fn stop_all(&self) {
        for i in 0..self.len() {
            self.stop(i).await;
        }
    }
}
