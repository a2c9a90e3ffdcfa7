//! The lease workload of the real runs ([`crate::lease`]) inside the simulation: client `c`
//! sends its grants, puts, keep-alives and reads to slot `c mod members` through the store API
//! (a follower forwards writes and keep-alives to the leader), and the lease checker judges
//! the history: no key gone before its lease could have expired, none left after its latest
//! expiry plus the slack.

use std::sync::Arc;

use flotilla_core::store::{Error, KeyRange, PutRequest, RangeRequest, Store as _};

use super::cluster::SimCluster;
use crate::lease::{ApiError, LeaseApi};

/// The key prefix of the lease clients, outside the register keys the watchers follow.
pub(crate) const PREFIX: &str = "simlease";

/// One lease client's way to the cluster: the member in its slot, while it runs.
#[derive(Clone)]
pub(crate) struct SimLeaseApi {
    pub(crate) cluster: Arc<SimCluster>,
    pub(crate) slot: usize,
    /// Test knob: every read finds its key gone (see [`super::SimSpec::lease_reads_miss`]).
    pub(crate) reads_miss: bool,
}

impl SimLeaseApi {
    fn store(&self) -> Result<flotilla_raft_store::RaftStore, ApiError> {
        self.cluster
            .store(self.slot)
            .ok_or_else(|| ApiError { message: format!("member {} is down", self.slot + 1), definite: true })
    }
}

/// An error answer: a refusal or an unavailable store certainly did nothing.
fn api_error(e: Error) -> ApiError {
    let definite = e.is_retryable() || matches!(e, Error::LeaseNotFound(_) | Error::InvalidArgument { .. });
    ApiError { message: e.to_string(), definite }
}

impl LeaseApi for SimLeaseApi {
    async fn grant(&mut self, ttl: i64) -> Result<(i64, i64), ApiError> {
        let r = self.store()?.lease_grant(0, ttl).await.map_err(api_error)?;
        Ok((r.id, r.ttl))
    }

    async fn put(&mut self, key: &str, lease: i64) -> Result<(), ApiError> {
        let req = PutRequest { lease, ..PutRequest::new(key, "v") };
        self.store()?.put(req).await.map(drop).map_err(api_error)
    }

    async fn keep_alive(&mut self, lease: i64, _granted: i64) -> Result<i64, ApiError> {
        match self.store()?.lease_keep_alive(lease).await {
            Ok(r) => Ok(r.ttl),
            // etcd answers a keep-alive of a lease that is gone with TTL 0.
            Err(Error::LeaseNotFound(_)) => Ok(0),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn get(&mut self, key: &str) -> Result<bool, ApiError> {
        let req = RangeRequest::new(KeyRange::Key(key.as_bytes().to_vec()));
        let r = self.store()?.range(req).await.map_err(api_error)?;
        Ok(!r.kvs.is_empty() && !self.reads_miss)
    }
}
