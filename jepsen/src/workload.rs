//! The register workload: client tasks issuing reads, writes and compare-and-sets on a set of
//! keys through the etcd API, every operation recorded in a [`Recorder`].
//!
//! Each client talks to one member (client `c` to member `c mod n`), so a partition cuts some
//! clients off from the majority the way it cuts off real applications. Operation choices
//! come from the run's seed. Keys rotate: a key takes at most `ops_per_key` invocations and is
//! then replaced by a fresh one, so each key's history stays small enough to check exhaustively.
//!
//! Outcomes: a read that errors or times out is `fail` (it changed nothing); a write or CAS
//! that errors or times out is `info` (it may have been applied, now or later), and its
//! process is retired: the client continues as a new process, as Jepsen's clients do. A CAS
//! whose comparison fails is `fail`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::history::{Call, EventKind, Recorder};

/// Errors of the workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A client could not be created for an endpoint.
    #[error("client for {endpoint}: {source}")]
    Client {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: etcd_client::Error,
    },
    /// The spec cannot run.
    #[error("workload: {0}")]
    Invalid(String),
    /// A client task panicked or was cancelled.
    #[error("client task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the clients do.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys in use at any time.
    pub keys: usize,
    /// Invocations per key before it is replaced by a fresh key.
    pub ops_per_key: u64,
    /// Values written and compared are drawn from `0..values` (small, so CAS often succeeds).
    pub values: u64,
    /// How long one operation may take before its outcome is unknown.
    pub op_timeout: Duration,
    /// Pause between a client's operations.
    pub think: Duration,
    /// Prefix of every key (one per run, so runs never share keys).
    pub prefix: String,
    /// Seeds the operation choices.
    pub seed: u64,
    /// Reads with etcd's `serializable` option: answered from the asked member's own copy,
    /// which may be stale. Not linearizable by design; for showing that the checker catches
    /// stale reads.
    pub serializable_reads: bool,
}

impl WorkloadSpec {
    /// A workload with the usual settings: 5 clients, 4 keys of at most 200 operations each,
    /// values 0..5, 1 s operation timeout, 10 ms between operations.
    pub fn new(prefix: &str, seed: u64) -> Self {
        WorkloadSpec {
            clients: 5,
            keys: 4,
            ops_per_key: 200,
            values: 5,
            op_timeout: Duration::from_secs(1),
            think: Duration::from_millis(10),
            prefix: prefix.to_string(),
            seed,
            serializable_reads: false,
        }
    }
}

/// Counts of what the clients did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadStats {
    /// Operations invoked.
    pub invoked: u64,
    /// Completed `ok`.
    pub ok: u64,
    /// Completed `fail`.
    pub fail: u64,
    /// Completed `info` (unknown outcome).
    pub info: u64,
}

/// Key slots shared by the clients: each slot holds its current key generation and how many
/// invocations that generation has had.
#[derive(Debug)]
struct Keys {
    prefix: String,
    per_key: u64,
    slots: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl Keys {
    /// The key for the next operation on `slot`, rotating the slot when its key is used up.
    fn take(&self, slot: usize) -> String {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some((generation, count)) = slots.get_mut(slot) else {
            return format!("{}/overflow", self.prefix);
        };
        if *count >= self.per_key {
            *generation += 1;
            *count = 0;
        }
        *count += 1;
        format!("{}/k{slot}-{generation}", self.prefix)
    }
}

/// Operations invoked and completed by outcome, shared by a workload's client tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) invoked: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) fail: AtomicU64,
    pub(crate) info: AtomicU64,
}

/// Runs the clients against `endpoints` until `until`, recording into `recorder`.
pub async fn run(
    endpoints: &[String],
    spec: &WorkloadSpec,
    recorder: &Recorder,
    until: Instant,
) -> Result<WorkloadStats, WorkloadError> {
    if endpoints.is_empty() || spec.clients == 0 || spec.keys == 0 || spec.values == 0 {
        return Err(WorkloadError::Invalid("needs at least one endpoint, client, key and value".to_string()));
    }
    let keys = Arc::new(Keys {
        prefix: spec.prefix.clone(),
        per_key: spec.ops_per_key.max(1),
        slots: std::sync::Mutex::new(vec![(0, 0); spec.keys]),
    });
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let options =
            ConnectOptions::new().with_timeout(spec.op_timeout).with_connect_timeout(spec.op_timeout);
        let client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|source| WorkloadError::Client { endpoint: endpoint.clone(), source })?;
        let client = ClientTask {
            client,
            first_process: c as u64,
            clients: spec.clients as u64,
            spec: spec.clone(),
            keys: keys.clone(),
            recorder: recorder.clone(),
            counters: counters.clone(),
            rng: StdRng::seed_from_u64(spec.seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        tasks.push(tokio::spawn(client.run(until)));
    }
    for t in tasks {
        t.await?;
    }
    Ok(WorkloadStats {
        invoked: counters.invoked.load(Ordering::Relaxed),
        ok: counters.ok.load(Ordering::Relaxed),
        fail: counters.fail.load(Ordering::Relaxed),
        info: counters.info.load(Ordering::Relaxed),
    })
}

/// One client's loop.
struct ClientTask {
    client: Client,
    first_process: u64,
    clients: u64,
    spec: WorkloadSpec,
    keys: Arc<Keys>,
    recorder: Recorder,
    counters: Arc<Counters>,
    rng: StdRng,
}

/// How one operation ended.
struct Outcome {
    kind: EventKind,
    read: Option<u64>,
    error: Option<String>,
}

impl ClientTask {
    async fn run(mut self, until: Instant) {
        let mut process = self.first_process;
        while Instant::now() < until {
            let slot = self.rng.random_range(0..self.spec.keys);
            let call = match self.rng.random_range(0..3) {
                0 => Call::Read,
                1 => Call::Write { value: self.rng.random_range(0..self.spec.values) },
                _ => Call::Cas {
                    from: self.rng.random_range(0..self.spec.values),
                    to: self.rng.random_range(0..self.spec.values),
                },
            };
            let key = self.keys.take(slot);
            self.recorder.invoke(process, &key, call);
            self.counters.invoked.fetch_add(1, Ordering::Relaxed);
            let outcome = match tokio::time::timeout(self.spec.op_timeout, self.apply(&key, call)).await {
                Ok(o) => o,
                Err(_) => Outcome {
                    kind: if call == Call::Read { EventKind::Fail } else { EventKind::Info },
                    read: None,
                    error: Some(format!("timed out after {:?}", self.spec.op_timeout)),
                },
            };
            let counter = match outcome.kind {
                EventKind::Ok => &self.counters.ok,
                EventKind::Fail => &self.counters.fail,
                EventKind::Info | EventKind::Invoke => &self.counters.info,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.recorder.complete(process, &key, outcome.kind, call, outcome.read, outcome.error.clone());
            if outcome.kind == EventKind::Info {
                // The operation may still be in flight: this process never issues another.
                process += self.clients;
            }
            let pause = if outcome.error.is_some() {
                self.spec.think.max(Duration::from_millis(100))
            } else {
                self.spec.think
            };
            tokio::time::sleep(pause).await;
        }
    }

    fn read_options(&self) -> Option<GetOptions> {
        self.spec.serializable_reads.then(|| GetOptions::new().with_serializable())
    }

    /// Sends one operation; an error's outcome depends on whether the call could have had an
    /// effect.
    async fn apply(&mut self, key: &str, call: Call) -> Outcome {
        let ok = |read| Outcome { kind: EventKind::Ok, read, error: None };
        let unknown =
            |e: etcd_client::Error| Outcome { kind: EventKind::Info, read: None, error: Some(e.to_string()) };
        match call {
            Call::Read => match self.client.get(key, self.read_options()).await {
                Ok(resp) => match resp.kvs().first().map(|kv| parse_value(kv.value())) {
                    None => ok(None),
                    Some(Some(v)) => ok(Some(v)),
                    Some(None) => Outcome {
                        kind: EventKind::Fail,
                        read: None,
                        error: Some(format!("key {key} holds a value that is not a number")),
                    },
                },
                Err(e) => Outcome { kind: EventKind::Fail, read: None, error: Some(e.to_string()) },
            },
            Call::Write { value } => match self.client.put(key, value.to_string(), None).await {
                Ok(_) => ok(None),
                Err(e) => unknown(e),
            },
            Call::Cas { from, to } => {
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, from.to_string())])
                    .and_then([TxnOp::put(key, to.to_string(), None)]);
                match self.client.txn(txn).await {
                    Ok(resp) if resp.succeeded() => ok(None),
                    Ok(_) => Outcome {
                        kind: EventKind::Fail,
                        read: None,
                        error: Some("compare failed".to_string()),
                    },
                    Err(e) => unknown(e),
                }
            }
        }
    }
}

/// A register value as the workload writes it (decimal text).
fn parse_value(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_after_their_share_of_operations() {
        let keys = Keys { prefix: "p".into(), per_key: 2, slots: std::sync::Mutex::new(vec![(0, 0); 2]) };
        let taken: Vec<String> = (0..5).map(|_| keys.take(1)).collect();
        assert_eq!(taken, ["p/k1-0", "p/k1-0", "p/k1-1", "p/k1-1", "p/k1-2"]);
        assert_eq!(keys.take(0), "p/k0-0");
        assert_eq!(keys.take(7), "p/overflow");
    }

    #[test]
    fn values_parse_as_decimal_text() {
        assert_eq!(parse_value(b"42"), Some(42));
        assert_eq!(parse_value(b"x"), None);
        assert_eq!(parse_value(&[0xff]), None);
    }

    #[tokio::test]
    async fn an_empty_spec_is_refused() {
        let spec = WorkloadSpec { clients: 0, ..WorkloadSpec::new("p", 1) };
        let until = Instant::now();
        let err = run(&["http://127.0.0.1:1".to_string()], &spec, &Recorder::new(), until).await;
        assert!(matches!(err, Err(WorkloadError::Invalid(_))), "{err:?}");
    }
}
