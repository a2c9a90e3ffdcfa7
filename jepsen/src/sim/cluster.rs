//! The simulated cluster: members on one [`SimNet`], each with its own data directory,
//! stopped and reopened by the nemesis.
//!
//! A member's place in the cluster is its slot (`0..len`), with a fixed address on the
//! network. The raft id in a slot starts as [`id_of`] the slot and changes when the membership
//! fault brings a removed member back: like the real runs, it comes back on a fresh data
//! directory with a new id (ids are never reused), at the same address ([`SimCluster::renew`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flotilla_raft_store::{NodeId, RaftStore, RaftStoreConfig, SimNet};
use openraft::type_config::async_runtime::WatchReceiver as _;

use super::SimError;
use super::invariants::Invariants;

/// The members of one simulated cluster.
pub(crate) struct SimCluster {
    pub(crate) net: Arc<SimNet>,
    slots: Mutex<Slots>,
    invariants: Arc<Invariants>,
    dir: tempfile::TempDir,
}

/// What each slot runs, and the next raft id to hand out.
struct Slots {
    configs: Vec<RaftStoreConfig>,
    stores: Vec<Option<RaftStore>>,
    /// Per slot, how many times a member was opened in it: a watch made on one opening ends
    /// with it, as a connection to a killed process does.
    openings: Vec<u64>,
    next_id: NodeId,
}

/// The raft id slot `i` starts with (1-based).
pub(crate) fn id_of(i: usize) -> NodeId {
    i as NodeId + 1
}

/// Member `id`'s data directory under the cluster's directory.
fn data_dir(dir: &tempfile::TempDir, id: NodeId) -> PathBuf {
    dir.path().join(format!("m{id}"))
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
        let configs: Vec<RaftStoreConfig> = (0..members)
            .map(|i| {
                let listen = SocketAddr::from((Ipv4Addr::new(10, 77, 0, i as u8 + 1), 2380));
                let mut c = RaftStoreConfig::new(id_of(i), data_dir(&dir, id_of(i)), listen);
                c.sim_net = Some(net.clone());
                // Small enough that snapshots happen on their own during a run.
                c.snapshot_every = 500;
                c.keep_logs_behind_snapshot = 50;
                c.request_timeout = Duration::from_secs(3);
                c
            })
            .collect();
        let voters: BTreeMap<NodeId, String> = configs.iter().map(|c| (c.id, c.listen.to_string())).collect();
        let slots = Slots {
            configs,
            stores: vec![None; members],
            openings: vec![0; members],
            next_id: id_of(members),
        };
        let cluster = SimCluster { net, slots: Mutex::new(slots), invariants, dir };
        for i in 0..members {
            cluster.open(i).await?;
        }
        let first = cluster.store(0).ok_or(SimError::Setup("member 1 did not open".into()))?;
        first.initialize(voters).await.map_err(|e| SimError::Setup(format!("initialize: {e}")))?;
        Ok(cluster)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many members (slots) the cluster has.
    pub(crate) fn len(&self) -> usize {
        self.slots().configs.len()
    }

    /// The raft id in slot `i` now.
    pub(crate) fn id(&self, i: usize) -> NodeId {
        self.slots().configs.get(i).map_or(0, |c| c.id)
    }

    /// The raft ids of every slot, in slot order.
    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.slots().configs.iter().map(|c| c.id).collect()
    }

    /// Slot `i`'s member-transport address.
    pub(crate) fn addr(&self, i: usize) -> String {
        self.slots().configs.get(i).map(|c| c.listen.to_string()).unwrap_or_default()
    }

    /// Slot `i`'s store, while it runs.
    pub(crate) fn store(&self, i: usize) -> Option<RaftStore> {
        self.slots().stores.get(i).cloned().flatten()
    }

    /// Slot `i`'s store while it runs, with the number of its opening (see
    /// [`Slots::openings`]).
    pub(crate) fn opened(&self, i: usize) -> Option<(RaftStore, u64)> {
        let slots = self.slots();
        Some((slots.stores.get(i).cloned().flatten()?, slots.openings[i]))
    }

    /// The number of slot `i`'s current or last opening.
    pub(crate) fn opening(&self, i: usize) -> u64 {
        self.slots().openings.get(i).copied().unwrap_or(0)
    }

    /// The slots running now.
    pub(crate) fn running(&self) -> Vec<usize> {
        let slots = self.slots();
        (0..slots.stores.len()).filter(|&i| slots.stores[i].is_some()).collect()
    }

    /// The slot whose member says it leads, if one does.
    pub(crate) fn leader(&self) -> Option<usize> {
        self.running().into_iter().find(|&i| {
            self.store(i).is_some_and(|s| s.raft().metrics().borrow_watched().current_leader == Some(s.id()))
        })
    }

    /// Opens slot `i`'s member from its data directory (a start or a restart).
    pub(crate) async fn open(&self, i: usize) -> Result<(), SimError> {
        if self.store(i).is_some() {
            return Ok(());
        }
        let config = self.slots().configs[i].clone();
        let id = config.id;
        let store = RaftStore::open(config)
            .await
            .map_err(|e| SimError::Setup(format!("member {id} did not open: {e}")))?;
        self.invariants.watch_member(id, &store);
        let mut slots = self.slots();
        slots.stores[i] = Some(store);
        slots.openings[i] += 1;
        Ok(())
    }

    /// Stops slot `i`'s member (what it wrote stays on its disk).
    pub(crate) async fn stop(&self, i: usize) {
        let store = self.slots().stores[i].take();
        if let Some(store) = store {
            store.shutdown().await;
            self.invariants.stopped(store.id());
        }
    }

    /// Stops slot `i`'s member, deletes its data directory and gives the slot a new raft id
    /// (higher than any handed out) with a fresh data directory, at the same address; the
    /// slot is left stopped. The new id.
    pub(crate) async fn renew(&self, i: usize) -> Result<NodeId, SimError> {
        self.stop(i).await;
        let old = self.slots().configs[i].data_dir.clone();
        match std::fs::remove_dir_all(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SimError::Setup(format!("cannot wipe {}: {e}", old.display())));
            }
            _ => {}
        }
        let mut slots = self.slots();
        slots.next_id += 1;
        let id = slots.next_id;
        let config = &mut slots.configs[i];
        config.id = id;
        config.data_dir = data_dir(&self.dir, id);
        Ok(id)
    }

    /// Stops every member.
    pub(crate) async fn stop_all(&self) {
        for i in 0..self.len() {
            self.stop(i).await;
        }
    }
}
