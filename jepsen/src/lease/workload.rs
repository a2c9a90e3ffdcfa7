//! The lease clients: per client, a lease loop (grant, put, keep-alives, let go, repeat) and a
//! reader polling the client's keys; after `until`, a final phase reading every key still
//! present until it is gone or its liveness deadline has passed.
//!
//! Each keep-alive is one request on a fresh keep-alive stream, so an answer can never be
//! taken for another request's. etcd-client 0.21 consumes the first answer of a new stream
//! itself and reports only whether its TTL was positive; a positive answer is recorded with
//! the TTL the lease was granted (what the leader's lessor answers), a TTL-0 answer as 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, PutOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::check::liveness_deadline_ns;
use super::history::{Answer, LeaseCall, LeaseHistory, LeaseHistoryConfig, LeaseOutcome, LeaseRecorder};
use super::{LeaseError, LeaseSpec};

/// Pause after a grant that failed, before the next attempt.
const GRANT_BACKOFF: Duration = Duration::from_millis(100);
/// Final-phase reads after a key's deadline that may fail before the key is given up on.
const LATE_ATTEMPTS: u32 = 3;
/// What etcd-client 0.21 says when a new keep-alive stream's first answer has TTL 0.
const LEASE_GONE: &str = "lease not found";

/// Counts of what the lease clients did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStats {
    /// Grants sent.
    pub grants: u64,
    /// Grants answered.
    pub grants_ok: u64,
    /// Puts acknowledged.
    pub puts_ok: u64,
    /// Keep-alives sent.
    pub keep_alives: u64,
    /// Keep-alives answered with TTL 0 (the lease was gone).
    pub keep_alives_gone: u64,
    /// Reads sent (final phase included).
    pub reads: u64,
    /// Reads that failed or timed out.
    pub reads_failed: u64,
    /// Requests whose outcome is unknown.
    pub info: u64,
}

impl LeaseStats {
    /// The counts of `history`.
    pub fn of(history: &LeaseHistory) -> Self {
        let mut s = LeaseStats::default();
        for op in &history.ops {
            let ok = op.outcome == LeaseOutcome::Ok;
            s.info += u64::from(op.outcome == LeaseOutcome::Info);
            match op.call {
                LeaseCall::Grant => (s.grants, s.grants_ok) = (s.grants + 1, s.grants_ok + u64::from(ok)),
                LeaseCall::Put => s.puts_ok += u64::from(ok),
                LeaseCall::KeepAlive => {
                    s.keep_alives += 1;
                    s.keep_alives_gone += u64::from(ok && op.ttl == Some(0));
                }
                LeaseCall::Read => (s.reads, s.reads_failed) = (s.reads + 1, s.reads_failed + u64::from(!ok)),
            }
        }
        s
    }
}

/// An error answer; `definite` when the request certainly had no effect.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) message: String,
    pub(crate) definite: bool,
}

/// The requests the workload sends (a trait so tests can stand in for a cluster).
pub(crate) trait LeaseApi: Clone + Send + Sync + 'static {
    /// Grants a lease of `ttl` seconds; answers its id and the TTL granted.
    fn grant(&mut self, ttl: i64) -> impl Future<Output = Result<(i64, i64), ApiError>> + Send;
    /// Puts `key` attached to `lease`.
    fn put(&mut self, key: &str, lease: i64) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Renews `lease` (granted with `granted` seconds) once; answers its TTL, 0 if it is gone.
    fn keep_alive(&mut self, lease: i64, granted: i64) -> impl Future<Output = Result<i64, ApiError>> + Send;
    /// A linearizable get: whether `key` exists.
    fn get(&mut self, key: &str) -> impl Future<Output = Result<bool, ApiError>> + Send;
}

/// The etcd API through etcd-client.
#[derive(Clone)]
struct EtcdApi(Client);

fn api_error(e: etcd_client::Error) -> ApiError {
    // InvalidArgument (3) and NotFound (5, e.g. the lease is gone) are refusals.
    let definite = match &e {
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 3 | 5),
        etcd_client::Error::InvalidArgs(_) => true,
        _ => false,
    };
    ApiError { message: e.to_string(), definite }
}

impl LeaseApi for EtcdApi {
    async fn grant(&mut self, ttl: i64) -> Result<(i64, i64), ApiError> {
        let r = self.0.lease_grant(ttl, None).await.map_err(api_error)?;
        Ok((r.id(), r.ttl()))
    }

    async fn put(&mut self, key: &str, lease: i64) -> Result<(), ApiError> {
        self.0.put(key, "v", Some(PutOptions::new().with_lease(lease))).await.map(drop).map_err(api_error)
    }

    async fn keep_alive(&mut self, lease: i64, granted: i64) -> Result<i64, ApiError> {
        match self.0.lease_keep_alive(lease).await {
            // The keeper and stream drop here, closing the stream.
            Ok(_) => Ok(granted),
            Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == LEASE_GONE => Ok(0),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn get(&mut self, key: &str) -> Result<bool, ApiError> {
        let r = self.0.get(key, None).await.map_err(api_error)?;
        Ok(!r.kvs().is_empty())
    }
}

/// Runs the lease clients against `endpoints` until `until`, then the final phase, recording
/// into `recorder`. Returns after the final phase: up to request timeout + TTL + expiry slack
/// after `until`, sooner when every key is seen gone.
pub async fn run(
    endpoints: &[String],
    spec: &LeaseSpec,
    recorder: &LeaseRecorder,
    until: Instant,
) -> Result<LeaseStats, LeaseError> {
    if let Some(why) = spec.problem(endpoints.len()) {
        return Err(LeaseError::Invalid(why));
    }
    let mut apis = Vec::new();
    for c in 0..spec.clients {
        let endpoint = &endpoints[c % endpoints.len()];
        let options =
            ConnectOptions::new().with_timeout(spec.op_timeout).with_connect_timeout(spec.op_timeout);
        let client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|source| LeaseError::Client { endpoint: endpoint.clone(), source })?;
        apis.push(EtcdApi(client));
    }
    run_with(apis, spec, recorder, until).await
}

/// [`run`] over given clients, one per client index.
pub(crate) async fn run_with<A: LeaseApi>(
    apis: Vec<A>,
    spec: &LeaseSpec,
    recorder: &LeaseRecorder,
    until: Instant,
) -> Result<LeaseStats, LeaseError> {
    if let Some(why) = spec.problem(apis.len()) {
        return Err(LeaseError::Invalid(why));
    }
    let mut tasks = Vec::new();
    for (c, api) in apis.into_iter().enumerate() {
        let worker = Worker {
            client: c as u64,
            api,
            spec: Arc::new(spec.clone()),
            recorder: recorder.clone(),
            live: Arc::default(),
        };
        let rng = StdRng::seed_from_u64(client_seed(spec.seed, c as u64));
        tasks.push(tokio::spawn(worker.run(rng, until)));
    }
    for t in tasks {
        t.await??;
    }
    Ok(LeaseStats::of(&recorder.history()))
}

/// The seed of client `c`'s random choices.
fn client_seed(seed: u64, c: u64) -> u64 {
    seed ^ 0x1ea5e ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The key of client `c`'s `n`th lease attempt.
pub(crate) fn lease_key(prefix: &str, c: u64, n: u64) -> String {
    format!("{prefix}/lease/{c}/{n}")
}

/// How often a held lease is renewed: three times per TTL.
pub(crate) fn keep_alive_every(ttl_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0)) / 3
}

/// How long to keep the next lease alive: uniform over zero to `max_hold_ttls` TTLs.
pub(crate) fn hold_time(rng: &mut StdRng, spec: &LeaseSpec) -> Duration {
    let ttl = Duration::from_secs(u64::try_from(spec.ttl_secs).unwrap_or(0));
    let max = u64::try_from((ttl * spec.max_hold_ttls).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=max))
}

/// A lease whose key may still exist.
#[derive(Clone, Debug)]
struct Live {
    key: String,
    lease: i64,
    ttl: i64,
    /// The latest invocation of its grant or of any keep-alive.
    last_renewal_ns: u64,
}

/// One client: its lease loop, its reader and its final phase.
struct Worker<A> {
    client: u64,
    api: A,
    spec: Arc<LeaseSpec>,
    recorder: LeaseRecorder,
    /// The client's leases whose keys no read has yet found gone.
    live: Arc<std::sync::Mutex<Vec<Live>>>,
}

/// A request's result, once timed.
fn timed<T>(
    r: Result<Result<T, ApiError>, tokio::time::error::Elapsed>,
    limit: Duration,
) -> Result<T, ApiError> {
    r.unwrap_or_else(|_| Err(ApiError { message: format!("timed out after {limit:?}"), definite: false }))
}

impl<A: LeaseApi> Worker<A> {
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self, mut rng: StdRng, until: Instant) -> Result<(), tokio::task::JoinError> {
        let worker = Arc::new(self);
        let reader = tokio::spawn({
            let w = worker.clone();
            async move { w.read_loop(until).await }
        });
        worker.lease_loop(&mut rng, until).await;
        reader.await?;
        worker.final_phase().await;
        Ok(())
    }

    async fn lease_loop(&self, rng: &mut StdRng, until: Instant) {
        let (spec, r, mut api) = (&self.spec, &self.recorder, self.api.clone());
        let every = keep_alive_every(spec.ttl_secs);
        let mut n = 0;
        while Instant::now() < until {
            let key = lease_key(&spec.prefix, self.client, n);
            n += 1;
            let p = r.begin(self.client, &key, LeaseCall::Grant, None);
            let granted_at = p.invoke_ns;
            let (lease, ttl) = match timed(
                tokio::time::timeout(spec.op_timeout, api.grant(spec.ttl_secs)).await,
                spec.op_timeout,
            ) {
                Ok((lease, ttl)) => {
                    let a =
                        Answer { lease: Some(lease), ttl: Some(ttl), ..Answer::bare(LeaseOutcome::Ok, None) };
                    r.finish(p, a);
                    (lease, ttl)
                }
                Err(e) => {
                    r.finish(p, Answer::bare(unknown_unless(e.definite), Some(e.message)));
                    tokio::time::sleep(GRANT_BACKOFF).await;
                    continue;
                }
            };
            let p = r.begin(self.client, &key, LeaseCall::Put, Some(lease));
            let outcome = match timed(
                tokio::time::timeout(spec.op_timeout, api.put(&key, lease)).await,
                spec.op_timeout,
            ) {
                Ok(()) => r.finish(p, Answer::bare(LeaseOutcome::Ok, None)).outcome,
                Err(e) => r.finish(p, Answer::bare(unknown_unless(e.definite), Some(e.message))).outcome,
            };
            if outcome != LeaseOutcome::Fail {
                self.live().push(Live { key: key.clone(), lease, ttl, last_renewal_ns: granted_at });
            }
            let release = (Instant::now() + hold_time(rng, spec)).min(until);
            let mut next = r.at(granted_at) + every;
            while next < release {
                tokio::time::sleep_until(next).await;
                let p = r.begin(self.client, &key, LeaseCall::KeepAlive, Some(lease));
                if let Some(l) = self.live().iter_mut().find(|l| l.key == key) {
                    l.last_renewal_ns = p.invoke_ns;
                }
                let sent = tokio::time::timeout(spec.op_timeout, api.keep_alive(lease, ttl)).await;
                let gone = match timed(sent, spec.op_timeout) {
                    Ok(t) => {
                        r.finish(p, Answer { ttl: Some(t), ..Answer::bare(LeaseOutcome::Ok, None) });
                        t <= 0
                    }
                    // Even a refused keep-alive may have been applied by a leader that lost
                    // its answer, so an error is never certain here.
                    Err(e) => {
                        r.finish(p, Answer::bare(LeaseOutcome::Info, Some(e.message)));
                        false
                    }
                };
                if gone {
                    break;
                }
                next = (next + every).max(Instant::now());
            }
            tokio::time::sleep_until(release).await;
        }
    }

    /// Reads the client's live keys in rounds until `until`; a key found gone is dropped.
    async fn read_loop(&self, until: Instant) {
        let mut api = self.api.clone();
        while Instant::now() < until {
            let keys: Vec<(String, i64)> = self.live().iter().map(|l| (l.key.clone(), l.lease)).collect();
            for (key, lease) in keys {
                if Instant::now() >= until {
                    break;
                }
                if self.read(&mut api, &key, lease, false).await == Some(false) {
                    self.live().retain(|l| l.key != key);
                }
            }
            tokio::time::sleep(self.spec.read_every).await;
        }
    }

    /// One recorded read: whether the key exists, `None` if the read failed.
    async fn read(&self, api: &mut A, key: &str, lease: i64, final_phase: bool) -> Option<bool> {
        let mut p = self.recorder.begin(self.client, key, LeaseCall::Read, Some(lease));
        p.final_phase = final_phase;
        let limit = self.spec.op_timeout;
        match timed(tokio::time::timeout(limit, api.get(key)).await, limit) {
            Ok(present) => {
                self.recorder
                    .finish(p, Answer { present: Some(present), ..Answer::bare(LeaseOutcome::Ok, None) });
                Some(present)
            }
            Err(e) => {
                self.recorder.finish(p, Answer::bare(LeaseOutcome::Fail, Some(e.message)));
                None
            }
        }
    }

    /// Reads each key still live until it is gone, or until a read invoked after its liveness
    /// deadline answered (or [`LATE_ATTEMPTS`] such reads failed).
    async fn final_phase(&self) {
        let config = LeaseHistoryConfig::of(&self.spec);
        let mut api = self.api.clone();
        let mut pending: Vec<(Live, u32)> =
            std::mem::take(&mut *self.live()).into_iter().map(|l| (l, 0)).collect();
        while !pending.is_empty() {
            let mut next = Vec::new();
            for (l, late) in pending {
                let deadline = liveness_deadline_ns(l.last_renewal_ns, l.ttl, &config);
                let after = self.recorder.now_ns() >= deadline;
                match self.read(&mut api, &l.key, l.lease, true).await {
                    Some(false) => {}
                    Some(true) if after => {}
                    None if after && late + 1 >= LATE_ATTEMPTS => {}
                    None if after => next.push((l, late + 1)),
                    _ => next.push((l, late)),
                }
            }
            pending = next;
            if !pending.is_empty() {
                tokio::time::sleep(self.spec.read_every).await;
            }
        }
    }
}

/// `Fail` for a definite refusal, `Info` otherwise.
fn unknown_unless(definite: bool) -> LeaseOutcome {
    if definite { LeaseOutcome::Fail } else { LeaseOutcome::Info }
}
