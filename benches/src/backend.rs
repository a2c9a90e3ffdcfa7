//! The store a harness's in-process cluster runs on: `MemStore`, or three raft members on
//! loopback with the production defaults (every append fsynced), bootstrapped and led.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use flotilla_core::MemStore;
use flotilla_core::store::Store;
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How long the raft members may take to elect a leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the election wait looks for a leader.
const ELECTION_POLL: Duration = Duration::from_millis(10);

/// Which store the registry runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// `MemStore`.
    Memory,
    /// Three raft members on loopback (fsync on); the registry uses the leader.
    Raft3,
}

impl StoreKind {
    /// The name `--store` takes.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Raft3 => "raft3",
        }
    }
}

/// The store under a registry, kept to shut it down.
pub enum Backend {
    /// The in-memory store.
    Memory(MemStore),
    /// The raft members.
    Raft(Vec<RaftStore>),
}

impl Backend {
    /// Starts the store (raft members under `dir`) and returns it with the store the
    /// registry should use (the raft leader).
    pub async fn start(kind: StoreKind, dir: &Path) -> anyhow::Result<(Backend, Arc<dyn Store>)> {
        match kind {
            StoreKind::Memory => {
                let store = MemStore::new();
                Ok((Backend::Memory(store.clone()), Arc::new(store)))
            }
            StoreKind::Raft3 => {
                let mut members = Vec::new();
                for id in 1..=3u64 {
                    let cfg = RaftStoreConfig::new(id, dir.join(format!("m{id}")), "127.0.0.1:0".parse()?);
                    match RaftStore::open(cfg).await {
                        Ok(member) => members.push(member),
                        Err(e) => {
                            Backend::Raft(members).shutdown().await;
                            return Err(e).with_context(|| format!("opening raft member {id}"));
                        }
                    }
                }
                let backend = Backend::Raft(members);
                match backend.elect().await {
                    Ok(store) => Ok((backend, store)),
                    Err(e) => {
                        backend.shutdown().await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// The raft members (none for the memory store).
    pub fn members(&self) -> &[RaftStore] {
        match self {
            Backend::Memory(_) => &[],
            Backend::Raft(members) => members,
        }
    }

    /// Bootstraps the raft members and returns the leader.
    async fn elect(&self) -> anyhow::Result<Arc<dyn Store>> {
        let members = self.members();
        anyhow::ensure!(!members.is_empty(), "only raft members elect a leader");
        let voters = members.iter().map(|m| (m.id(), m.local_addr().to_string())).collect();
        members[0].initialize(voters).await.context("initializing the raft members")?;
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        let leader = loop {
            if let Some(leader) = members[0].leader() {
                break leader;
            }
            anyhow::ensure!(Instant::now() < deadline, "no raft leader within {ELECTION_TIMEOUT:?}");
            tokio::time::sleep(ELECTION_POLL).await;
        };
        let store = members.iter().find(|m| m.id() == leader).context("the leader is a member")?;
        Ok(Arc::new(store.clone()))
    }

    /// Stops the store.
    pub async fn shutdown(self) {
        match self {
            Backend::Memory(s) => s.shutdown().await,
            Backend::Raft(members) => {
                for m in members {
                    m.shutdown().await;
                }
            }
        }
    }
}
