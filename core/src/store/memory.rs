//! [`MemStore`]: the in-memory [`Store`], for tests and single-process embedding.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Store;
use super::engine::{KvEngine, WatchStream};
use super::error::{Error, Result};
use super::lessor::Lessor;
use super::mvcc::{Command, CommandResult, MvccState};
use super::types::{
    CompactResponse, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveResponse,
    RangeRequest, RangeResponse, ResponseHeader, Revision, TxnRequest, TxnResponse, WatchRequest,
};
use super::validate::{validate_command, validate_key_range, validate_range, validate_ttl};

/// How often the store looks for expired leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// An in-memory store: the full contract, no durability.
///
/// Create it inside a tokio runtime (it runs a lease-expiry task) and call
/// [`shutdown`](Self::shutdown) to stop that task and every watch.
#[derive(Clone)]
pub struct MemStore {
    engine: KvEngine,
    lessor: Arc<Mutex<Lessor>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl MemStore {
    /// An empty store. Call it within a tokio runtime: it starts the lease-expiry task.
    pub fn new() -> Self {
        Self::with_engine(KvEngine::new(MvccState::new()))
    }

    /// A store over an existing engine (for example one with a short progress interval).
    /// Call it within a tokio runtime: it starts the lease-expiry task.
    pub fn with_engine(engine: KvEngine) -> Self {
        let store = MemStore {
            engine,
            lessor: Arc::new(Mutex::new(Lessor::new())),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let expiry = store.clone();
        store.tasks.spawn(async move { expiry.expire_leases().await });
        store
    }

    /// The engine, for reading the state directly.
    pub fn engine(&self) -> &KvEngine {
        &self.engine
    }

    /// Stops the lease-expiry task and every watch.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.engine.shutdown().await;
    }

    fn apply(&self, cmd: Command) -> Result<CommandResult> {
        validate_command(&cmd)?;
        self.engine.apply(&cmd).0
    }

    async fn expire_leases(&self) {
        let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired = self.lessor.lock().expired(Instant::now());
            for id in expired {
                self.lessor.lock().revoke(id);
                if let Err(e) = self.apply(Command::LeaseRevoke { id }) {
                    tracing::debug!(lease = id, error = %e, "lease expired concurrently with revoke");
                }
            }
        }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        validate_range(&req, "range")?;
        self.engine.read(|s| s.range(&req))
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.apply(Command::Txn(req))? {
            CommandResult::Txn(t) => Ok(t),
            other => Err(unexpected("txn", &other)),
        }
    }

    async fn compact(&self, revision: Revision) -> Result<CompactResponse> {
        match self.apply(Command::Compact(revision))? {
            CommandResult::Compact(c) => Ok(c),
            other => Err(unexpected("compact", &other)),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        validate_key_range(&req.range, "watch.key")?;
        self.engine.watch(req)
    }

    async fn lease_grant(&self, id: LeaseId, ttl: i64) -> Result<LeaseGrantResponse> {
        validate_ttl(ttl)?;
        let id = if id == 0 { new_lease_id(|id| self.engine.read(|s| s.has_lease(id))) } else { id };
        match self.apply(Command::LeaseGrant { id, ttl })? {
            CommandResult::LeaseGrant(g) => {
                self.lessor.lock().grant(id, ttl, Instant::now());
                Ok(g)
            }
            other => Err(unexpected("lease grant", &other)),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse> {
        let ttl = self.lessor.lock().keep_alive(id, Instant::now()).ok_or(Error::LeaseNotFound(id))?;
        Ok(LeaseKeepAliveResponse { header: ResponseHeader { revision: self.engine.revision() }, id, ttl })
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<ResponseHeader> {
        let res = self.apply(Command::LeaseRevoke { id });
        self.lessor.lock().revoke(id);
        match res? {
            CommandResult::LeaseRevoke(h) => Ok(h),
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let (granted_ttl, lease_keys, revision) =
            self.engine.read(|s| s.lease_keys(id).map(|(t, k)| (t, k, s.revision())))?;
        let ttl = self.lessor.lock().remaining_secs(id, Instant::now()).unwrap_or(0);
        Ok(LeaseTimeToLiveResponse {
            header: ResponseHeader { revision },
            id,
            ttl,
            granted_ttl,
            keys: if keys { lease_keys } else { Vec::new() },
        })
    }

    async fn lease_leases(&self) -> Result<Vec<LeaseId>> {
        Ok(self.engine.read(|s| s.leases().map(|(id, _)| id).collect()))
    }
}

/// A random positive lease id that `taken` says is free.
pub fn new_lease_id(taken: impl Fn(LeaseId) -> bool) -> LeaseId {
    loop {
        let id = (rand_u64() >> 1) as LeaseId;
        if id > 0 && !taken(id) {
            return id;
        }
    }
}

fn rand_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn unexpected(what: &str, got: &CommandResult) -> Error {
    Error::Storage(format!("{what} answered with {got:?}"))
}
