//! A member's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::network::NetworkFilter;
use crate::typ::NodeId;

/// How a member runs.
#[derive(Clone, Debug)]
pub struct RaftStoreConfig {
    /// The member's id, unique in the cluster and never reused.
    pub id: NodeId,
    /// Where the member keeps its database and snapshot.
    pub data_dir: PathBuf,
    /// Where the member transport listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Election timeout lower bound (the upper bound is twice this).
    pub election_timeout: Duration,
    /// Applied entries after which a snapshot is built and the log behind it purged.
    ///
    /// A snapshot copies the whole state machine, so its cost grows with the store while
    /// the log it saves grows only with the writes: the default, 100 000, is etcd's
    /// `--snapshot-count` (see `docs/raft-store.md`, "Side by side with etcd 3.4", for what 10 000 cost).
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, for members that lag only a little.
    pub keep_logs_behind_snapshot: u64,
    /// How long a request may wait for a leader, a read index or a forwarded reply.
    pub request_timeout: Duration,
    /// Watch progress-notification interval.
    pub progress_interval: Duration,
    /// Faults to inject into outgoing member traffic (tests only; empty by default).
    pub filter: Arc<NetworkFilter>,
    /// Where to serve the etcd v3 gRPC API (port 0 picks a free port); `None`, the default,
    /// serves no etcd endpoint.
    pub etcd_listen: Option<SocketAddr>,
    /// The key join requests must be signed with ([`crate::register_member`]); `None`, the
    /// default, refuses every join request.
    pub join_key: Option<crate::JoinKey>,
    /// The simulated network to join instead of serving on `listen` (deterministic
    /// simulation only, see [`crate::SimNet`]): `listen` is then only this member's address
    /// on that network, no socket is bound, and the log completes appends without `fsync`.
    /// `None`, the default, is a real member.
    pub sim_net: Option<Arc<crate::SimNet>>,
}

impl RaftStoreConfig {
    /// Defaults for a member on a LAN: 100 ms heartbeats, 500–1000 ms elections, a snapshot
    /// every 100 000 entries.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        RaftStoreConfig {
            id,
            data_dir: data_dir.into(),
            listen,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_every: 100_000,
            keep_logs_behind_snapshot: 1_000,
            request_timeout: Duration::from_secs(5),
            progress_interval: flotilla_core::store::DEFAULT_PROGRESS_INTERVAL,
            filter: Arc::default(),
            etcd_listen: None,
            join_key: None,
            sim_net: None,
        }
    }

    pub(crate) fn raft_config(&self) -> openraft::Config {
        let election = self.election_timeout.as_millis() as u64;
        openraft::Config {
            cluster_name: "flotilla".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs_behind_snapshot,
            ..Default::default()
        }
    }
}
