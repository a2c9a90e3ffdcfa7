//! [`RaftStore`]: one member of a replicated store, implementing core's [`Store`].

use openraft::type_config::async_runtime::WatchReceiver as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::store::{
    Command, CommandResult, CompactResponse, Error, KvEngine, LeaseGrantResponse, LeaseId,
    LeaseKeepAliveResponse, LeaseTimeToLiveResponse, Lessor, MvccState, RangeRequest, RangeResponse,
    ResponseHeader, Result, Revision, Store, TxnRequest, TxnResponse, WatchRequest, WatchStream,
    new_lease_id, validate_command, validate_key_range, validate_range,
};
use openraft::BasicNode;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RaftStoreConfig;
use crate::db::Db;
use crate::error::OpenError;
use crate::forward::{ForwardRequest, ForwardResponse};
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, Transport};
use crate::state_machine::{ApplyPause, StateMachine};
use crate::typ::{NodeId, Raft};

/// How long `shutdown` waits for the database to close.
const DB_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `RaftStore::assemble` hands to `open`.
type Assembled = (Arc<Inner>, Option<TcpListener>, SocketAddr, Option<(TcpListener, SocketAddr)>);

/// Waits (up to [`DB_CLOSE_TIMEOUT`]) until member `id`'s database is closed.
async fn wait_closed(id: NodeId, closed: crate::db::Closed) {
    if tokio::time::timeout(DB_CLOSE_TIMEOUT, closed).await.is_err() {
        tracing::warn!(id, "database still open {DB_CLOSE_TIMEOUT:?} after the member stopped");
    }
}

/// State shared by a member's handle, its server and its background tasks.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) engine: KvEngine,
    pub(crate) transport: Transport,
    pub(crate) lessor: Mutex<Lessor>,
    pub(crate) request_timeout: Duration,
    /// Whether this member's lessor holds a leader's deadlines.
    lessor_promoted: Mutex<bool>,
    /// The key join requests must be signed with; `None` refuses joins.
    pub(crate) join_key: Option<crate::join::JoinKey>,
    /// Serializes the join steps this member performs as leader.
    pub(crate) join_lock: tokio::sync::Mutex<()>,
    /// The database, for backups. Weak: raft's handles alone keep it open, so it closes
    /// when raft stops.
    db: std::sync::Weak<crate::db::Handle>,
    db_path: std::path::PathBuf,
    /// The member's data directory (where its kept snapshot is, and received ones go).
    pub(crate) data_dir: std::path::PathBuf,
    /// Where this member serves the etcd API, if it does.
    pub(crate) etcd_addr: Option<SocketAddr>,
    /// The state machine's apply gate, for [`RaftStore::pause_apply`].
    apply_gate: Arc<tokio::sync::RwLock<()>>,
    /// Messages refused because they were addressed to another member.
    pub(crate) misaddressed: std::sync::atomic::AtomicU64,
}

impl Inner {
    pub(crate) fn leading(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    /// Waits until this member has applied the log up to `index`, at most the request
    /// timeout.
    pub(crate) async fn wait_applied(&self, index: u64) -> Result<()> {
        if self.raft.metrics().borrow_watched().last_applied.as_ref().is_some_and(|l| l.index() >= index) {
            return Ok(());
        }
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(Some(index), "read your writes")
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable { reason: format!("waiting to apply index {index}: {e}") })
    }

    /// Brings the lessor's lease set in line with the state machine's: new leases get a full
    /// TTL from now, vanished ones are dropped.
    pub(crate) fn sync_lessor(&self, lessor: &mut Lessor) {
        let now = tokio::time::Instant::now();
        let leases: Vec<(LeaseId, i64)> = self.engine.read(|s| s.leases().collect());
        lessor.sync(leases, now);
    }
}

/// One member of a replicated store. Cloning shares the member.
#[derive(Clone)]
pub struct RaftStore {
    inner: Arc<Inner>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    local_addr: SocketAddr,
    /// The address the etcd v3 API listens on, when served.
    etcd_addr: Option<SocketAddr>,
    /// Resolves when the database is closed; taken by the first `shutdown`.
    closed: Arc<Mutex<Option<crate::db::Closed>>>,
    /// The simulated network the member is on, if it is simulated.
    sim_net: Option<Arc<crate::sim::SimNet>>,
}

impl RaftStore {
    /// Opens (or creates) a member's data, starts raft and serves the member transport on
    /// `config.listen`. A new member is idle until [`initialize`](Self::initialize)d or
    /// added to a cluster by its leader. When it fails, the data directory is released
    /// before the error is returned, as it is when [`shutdown`](Self::shutdown) returns.
    pub async fn open(config: RaftStoreConfig) -> std::result::Result<Self, OpenError> {
        let data_dir_error = |source| OpenError::DataDir { path: config.data_dir.clone(), source };
        flotilla_core::durable_fs::create_dir_all(&config.data_dir, 0o755).map_err(data_dir_error)?;
        let db_path = config.data_dir.join("db");
        let (db, closed) = Db::open(&db_path)?;
        // RocksDB syncs what it writes inside `db`, not the entry `db` in the data directory:
        // without this, a power loss soon after the first start could take the whole store.
        if let Err(source) = flotilla_core::durable_fs::sync_dir(&config.data_dir) {
            drop(db);
            wait_closed(config.id, closed).await;
            return Err(data_dir_error(source));
        }
        let (inner, listener, local_addr, etcd_listener) = match Self::assemble(&config, db).await {
            Ok(parts) => parts,
            Err(e) => {
                // Whatever opened is dropped by now: wait until RocksDB has let go of the
                // directory, so the caller can repair it or open it again at once.
                wait_closed(config.id, closed).await;
                return Err(e);
            }
        };
        let store = RaftStore {
            inner,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            local_addr,
            etcd_addr: etcd_listener.as_ref().map(|(_, a)| *a),
            closed: Arc::new(Mutex::new(Some(closed))),
            sim_net: config.sim_net.clone(),
        };
        match (listener, &store.sim_net) {
            (Some(listener), _) => {
                let server = crate::server::serve(store.inner.clone(), listener, store.cancel.clone());
                store.tasks.spawn(server);
            }
            (None, Some(net)) => {
                net.register(local_addr.to_string(), crate::server::service(store.inner.clone()))
            }
            (None, None) => {}
        }
        if let Some((listener, _)) = etcd_listener {
            let etcd = crate::etcd::serve_etcd(store.clone(), listener, store.cancel.clone());
            store.tasks.spawn(etcd);
        }
        let leases = store.clone();
        store.tasks.spawn(async move { leases.run_lease_expiry().await });
        Ok(store)
    }

    /// Everything `open` builds on the database: raft with its log and state machine, and
    /// the bound listeners (member transport, etcd API).
    async fn assemble(config: &RaftStoreConfig, db: Db) -> std::result::Result<Assembled, OpenError> {
        let db_handle = Arc::downgrade(&db.db);
        let db_path = db.path.clone();
        let log_store = LogStore::new(db.clone(), config.sim_net.is_none());
        log_store.verify()?;
        if let Some(stored) = log_store.claim_member_id(config.id)? {
            return Err(OpenError::WrongMember {
                path: config.data_dir.clone(),
                stored,
                configured: config.id,
            });
        }
        let progress = config.progress_interval;
        let sm = StateMachine::open(db, config.data_dir.clone(), |state: MvccState| {
            KvEngine::with_progress_interval(state, progress)
        })?;
        let engine = sm.engine().clone();
        let apply_gate = sm.gate();
        let (listener, local_addr) = if config.sim_net.is_some() {
            (None, config.listen)
        } else {
            let listener = TcpListener::bind(config.listen)
                .await
                .map_err(|source| OpenError::Listen { addr: config.listen, source })?;
            let local_addr =
                listener.local_addr().map_err(|source| OpenError::Listen { addr: config.listen, source })?;
            (Some(listener), local_addr)
        };
        let etcd_listener = match config.etcd_listen {
            Some(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|source| OpenError::Listen { addr, source })?;
                let bound = l.local_addr().map_err(|source| OpenError::Listen { addr, source })?;
                Some((l, bound))
            }
            None => None,
        };
        let transport = Transport::new(config.id, config.filter.clone(), config.sim_net.clone());
        let raft_config =
            Arc::new(config.raft_config().validate().map_err(|e| OpenError::Config(e.to_string()))?);
        let network = NetworkFactory { transport: transport.clone() };
        let raft = Raft::new(config.id, raft_config, network, log_store, sm)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let inner = Arc::new(Inner {
            id: config.id,
            raft,
            engine,
            transport,
            lessor: Mutex::new(Lessor::new()),
            request_timeout: config.request_timeout,
            lessor_promoted: Mutex::new(false),
            join_key: config.join_key.clone(),
            join_lock: tokio::sync::Mutex::new(()),
            db: db_handle,
            db_path,
            data_dir: config.data_dir.clone(),
            etcd_addr: etcd_listener.as_ref().map(|(_, addr)| *addr),
            apply_gate,
            misaddressed: Default::default(),
        });
        Ok((inner, listener, local_addr, etcd_listener))
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the member transport listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the etcd v3 API listens on, when
    /// [`etcd_listen`](RaftStoreConfig::etcd_listen) was set.
    pub fn etcd_addr(&self) -> Option<SocketAddr> {
        self.etcd_addr
    }

    /// The state shared with the member's server and tasks.
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Pauses this member's state machine (once the batch it is applying is done) until the
    /// returned [`ApplyPause`] is dropped. For tests and fault injection: the member keeps
    /// voting, appending and committing, but serves reads and answers lease requests as a
    /// member whose state machine lags its log (as after a power loss) would.
    #[doc(hidden)]
    pub async fn pause_apply(&self) -> ApplyPause {
        ApplyPause::new(self.inner.apply_gate.clone().write_owned().await)
    }

    /// How many messages this member refused because another member's id was on them: a
    /// member still sending to a member replaced at this address (for example one restarted
    /// on a fresh data directory under a new id while the old id is still a member).
    pub fn misaddressed_messages(&self) -> u64 {
        self.inner.misaddressed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The raft handle, for metrics and membership operations not wrapped here.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The engine serving this member's reads and watches.
    pub fn engine(&self) -> &KvEngine {
        &self.inner.engine
    }

    /// The current leader's id, as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow_watched().current_leader
    }

    /// Whether this member leads, kept current: `true` while raft says this member is the
    /// leader. Components that must act on one member only (scheduler, controllers) take
    /// this, so their leadership follows the store's and no lease can race it. The watch
    /// ends (keeping its last value, `false` after shutdown) when the raft core stops.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        let (tx, rx) = tokio::sync::watch::channel(self.inner.leading());
        let mut metrics = self.inner.raft.metrics();
        let id = self.inner.id;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            tx.send_replace(false);
                            return;
                        }
                        let leading = metrics.borrow_watched().current_leader == Some(id);
                        tx.send_if_modified(|l| std::mem::replace(l, leading) != leading);
                    }
                }
            }
        });
        rx
    }

    /// Bootstraps a new cluster with the given voters (id to transport address). Call once,
    /// on one member.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<()> {
        let nodes: BTreeMap<NodeId, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        self.inner.raft.initialize(nodes).await.map_err(|e| Error::Unavailable { reason: e.to_string() })
    }

    /// Adds a member as a learner (it receives the log but does not vote) and waits until it
    /// has caught up. Call on the leader.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<()> {
        self.inner
            .raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable { reason: e.to_string() })
    }

    /// Makes exactly `voters` the voting members (promoting learners, demoting or removing
    /// others; removed voters are kept as learners when `keep_removed_as_learners`). Call on
    /// the leader.
    pub async fn change_voters(
        &self,
        voters: impl IntoIterator<Item = NodeId>,
        keep_removed_as_learners: bool,
    ) -> Result<()> {
        let voters: std::collections::BTreeSet<NodeId> = voters.into_iter().collect();
        self.inner
            .raft
            .change_membership(voters, keep_removed_as_learners)
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable { reason: e.to_string() })
    }

    /// A digest of the replicated state (every retained version, the leases and the
    /// revision counters): equal on members that applied the same log.
    pub fn state_digest(&self) -> [u8; 32] {
        use sha2::Digest;
        self.inner.engine.read(|s| {
            let mut h = sha2::Sha256::new();
            h.update(s.revision().to_be_bytes());
            h.update(s.compact_revision().to_be_bytes());
            for (id, ttl) in s.leases() {
                h.update(id.to_be_bytes());
                h.update(ttl.to_be_bytes());
            }
            for rec in s.records_in_revision_order() {
                h.update(crate::codec::encode(&rec).expect("in-memory records always encode"));
            }
            h.finalize().into()
        })
    }

    /// Stops serving, stops raft and every watch, and waits for all of it.
    pub async fn shutdown(&self) {
        if let Some(net) = &self.sim_net {
            net.unregister(&self.local_addr.to_string());
        }
        self.cancel.cancel();
        self.tasks.close();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(id = self.inner.id, error = %e, "raft shutdown failed");
        }
        self.tasks.wait().await;
        self.inner.engine.shutdown().await;
        // RocksDB closes when raft's last handle on it goes (the WAL syncer thread ends with
        // it): wait for that, so a stopped member's files are released and no RocksDB thread
        // outlives the store (one still running at process exit aborts the process).
        let closed = self.closed.lock().take();
        if let Some(closed) = closed {
            wait_closed(self.inner.id, closed).await;
        }
    }

    async fn write(&self, cmd: Command) -> Result<CommandResult> {
        validate_command(&cmd)?;
        match self.inner.execute(ForwardRequest::Write(cmd)).await? {
            ForwardResponse::Write(r, index) => {
                // Read-your-writes on this member: reads and watches here see the write once
                // it returns, wherever it was applied first. The write is committed whatever
                // happens here, so failing to wait is no "unavailable" (which promises that
                // nothing was done and invites a retry).
                if let Err(e) = self.inner.wait_applied(index).await {
                    return Err(Error::Indeterminate {
                        reason: format!("the write was committed at index {index}, but {e}"),
                    });
                }
                r
            }
            ForwardResponse::Failed(e) => Err(e),
            other => Err(Error::Storage(format!("write answered with {other:?}"))),
        }
    }

    /// Cancelled when the member shuts down.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The database, while the member runs.
    pub(crate) fn db(&self) -> Option<Db> {
        self.inner.db.upgrade().map(|db| Db { db, path: self.inner.db_path.clone() })
    }

    /// Waits until this member has applied everything committed before the call (a
    /// linearizable read barrier).
    pub(crate) async fn read_barrier(&self) -> Result<()> {
        self.linearize().await
    }

    /// Waits until this member has applied everything the leader had committed when asked.
    async fn linearize(&self) -> Result<()> {
        let index = match self.inner.execute(ForwardRequest::ReadIndex).await? {
            ForwardResponse::ReadIndex(i) => i,
            ForwardResponse::Failed(e) => return Err(e),
            other => return Err(Error::Storage(format!("read index answered with {other:?}"))),
        };
        self.inner.wait_applied(index).await
    }

    /// The leader's lease loop: keeps the lessor's deadlines while leading (extending every
    /// lease on taking over) and proposes revokes for expired leases.
    async fn run_lease_expiry(&self) {
        let mut tick = tokio::time::interval(flotilla_core::store::LEASE_CHECK_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leading = self.inner.leading();
            let expired = {
                let mut promoted = self.inner.lessor_promoted.lock();
                let mut lessor = self.inner.lessor.lock();
                let now = tokio::time::Instant::now();
                if leading && !*promoted {
                    // A new leader gives every lease a full TTL from now (deadlines it set
                    // itself since winning stay): nobody could renew them during the election.
                    let leases: Vec<(LeaseId, i64)> = self.inner.engine.read(|s| s.leases().collect());
                    lessor.sync(leases, now);
                    *promoted = true;
                } else if !leading && *promoted {
                    lessor.demote();
                    *promoted = false;
                }
                if !leading {
                    continue;
                }
                self.inner.sync_lessor(&mut lessor);
                lessor.expired(now)
            };
            for id in expired {
                // Proposed here and never forwarded: only the leader whose lessor saw the
                // lease expire may revoke it. Forwarded, a revoke this member decided while
                // cut off, believing it still led, reached the next leader, which had been
                // renewing the lease all along (found by the Jepsen lease workload).
                let revoke = ForwardRequest::Write(Command::LeaseRevoke { id });
                match self.inner.serve_as_leader_within(revoke, self.inner.request_timeout).await {
                    ForwardResponse::Write(Ok(_) | Err(Error::LeaseNotFound(_)), _) => {
                        self.inner.lessor.lock().revoke(id)
                    }
                    ForwardResponse::NotLeader => {
                        tracing::info!(lease = id, "no longer leading; leaving the lease to the next leader");
                        break;
                    }
                    other => {
                        tracing::warn!(lease = id, outcome = ?other, "revoking expired lease failed; will retry")
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Store for RaftStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        validate_range(&req, "range")?;
        if !req.serializable {
            self.linearize().await?;
        }
        self.inner.engine.read(|s| s.range(&req))
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.write(Command::Txn(req)).await? {
            CommandResult::Txn(t) => Ok(t),
            other => Err(Error::Storage(format!("txn answered with {other:?}"))),
        }
    }

    async fn compact(&self, revision: Revision) -> Result<CompactResponse> {
        match self.write(Command::Compact(revision)).await? {
            CommandResult::Compact(c) => Ok(c),
            other => Err(Error::Storage(format!("compact answered with {other:?}"))),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        validate_key_range(&req.range, "watch.key")?;
        self.inner.engine.watch(req)
    }

    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<LeaseGrantResponse> {
        let id = if id == 0 { new_lease_id(|id| self.inner.engine.read(|s| s.has_lease(id))) } else { id };
        match self.write(Command::LeaseGrant { id, ttl }).await? {
            CommandResult::LeaseGrant(g) => Ok(g),
            other => Err(Error::Storage(format!("lease grant answered with {other:?}"))),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse> {
        match self.inner.execute(ForwardRequest::LeaseKeepAlive(id)).await? {
            ForwardResponse::Lease(ttl) => Ok(LeaseKeepAliveResponse {
                header: ResponseHeader { revision: self.inner.engine.revision() },
                id,
                ttl,
            }),
            ForwardResponse::Failed(e) => Err(e),
            other => Err(Error::Storage(format!("keep-alive answered with {other:?}"))),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader> {
        match self.write(Command::LeaseRevoke { id }).await? {
            CommandResult::LeaseRevoke(h) => Ok(h),
            other => Err(Error::Storage(format!("lease revoke answered with {other:?}"))),
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let remaining = match self.inner.execute(ForwardRequest::LeaseTimeToLive(id)).await? {
            ForwardResponse::Lease(ttl) => ttl,
            ForwardResponse::Failed(e) => return Err(e),
            other => return Err(Error::Storage(format!("time-to-live answered with {other:?}"))),
        };
        self.linearize().await?;
        let (granted_ttl, lease_keys, revision) =
            self.inner.engine.read(|s| s.lease_keys(id).map(|(t, k)| (t, k, s.revision())))?;
        Ok(LeaseTimeToLiveResponse {
            header: ResponseHeader { revision },
            id,
            ttl: remaining,
            granted_ttl,
            keys: if keys { lease_keys } else { Vec::new() },
        })
    }

    async fn lease_leases(&self) -> Result<Vec<LeaseId>> {
        self.linearize().await?;
        Ok(self.inner.engine.read(|s| s.leases().map(|(id, _)| id).collect()))
    }
}
