//! The list-append clients: each runs transactions of 1 to `max_ops` micro-operations (reads
//! and appends, half each) on a shared pool of `keys` active keys named `<prefix>/<n>`, with
//! elements from one counter shared by the clients (so unique across the run). A key is
//! replaced by a fresh one after `appends_per_key` appends were planned on it, so its list stays
//! short. Client `c` talks to endpoint `c mod n`; its choices come from the seed and `c`.
//!
//! A transaction is optimistic concurrency over etcd:
//! 1. one read-only etcd transaction (no compares, one range per distinct key) gives each
//!    key's list and `mod_revision` at one revision (a key is absent or a comma-separated list
//!    of decimal elements; a value that does not decode is recorded as [`Undecodable`] and the
//!    transaction fails without writing);
//! 2. the micro-operations run on those lists locally: reads return the list as it stands,
//!    appends extend it;
//! 3. a transaction with no append completes `ok` there. Otherwise one etcd transaction
//!    compares every key touched with what step 1 saw (`mod_revision` equal for a present key,
//!    `version` 0 for an absent one: an absent key's version, like its revisions, compares as
//!    0) and puts the new lists of the keys appended to. A failed comparison is `fail`.
//!
//! An error or timeout in step 1 is `fail` (nothing was written); in step 3 it is `info`, and
//! the process is retired: the client continues as a new process, as the register clients do.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::{AppendError, AppendRecorder, Completion, MicroOp, Outcome, Undecodable};
use crate::workload::Counters;

/// What the append clients do.
#[derive(Clone, Debug, Serialize)]
pub struct AppendSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys in use at any time.
    pub keys: usize,
    /// Appends planned on a key before it is replaced by a fresh one.
    pub appends_per_key: u64,
    /// The most micro-operations in one transaction.
    pub max_ops: usize,
    /// How long one step (the read, the commit) may take.
    pub op_timeout: Duration,
    /// Pause between a client's transactions.
    pub think: Duration,
    /// Prefix of every key (keys are `<prefix>/<n>`).
    pub prefix: String,
    /// Seeds the clients' choices.
    pub seed: u64,
}

impl AppendSpec {
    /// The usual settings: 4 clients, 6 keys of at most 32 appends, up to 4 micro-operations,
    /// 1 s per step, 10 ms between transactions.
    pub fn new(prefix: &str, seed: u64) -> Self {
        AppendSpec {
            clients: 4,
            keys: 6,
            appends_per_key: 32,
            max_ops: 4,
            op_timeout: Duration::from_secs(1),
            think: Duration::from_millis(10),
            prefix: prefix.to_string(),
            seed,
        }
    }
}

/// Counts of what the append clients did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppendStats {
    /// Transactions invoked.
    pub invoked: u64,
    /// Completed `ok`.
    pub ok: u64,
    /// Completed `fail`.
    pub fail: u64,
    /// Completed `info` (unknown outcome).
    pub info: u64,
    /// Keys used.
    pub keys: u64,
}

/// A list as stored: its elements in decimal, comma-separated (the empty list is never
/// written).
pub fn encode_list(list: &[u64]) -> String {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// A stored list, or `None` if the bytes are not one (an empty value is the empty list).
pub fn decode_list(bytes: &[u8]) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|e| e.parse().ok()).collect()
}

/// Mixed into the seed so the append clients' choices do not mirror the register clients'.
const SEED_SALT: u64 = 0x6170_7065_6e64_0000;

/// The active keys shared by the clients: per slot, the key number in use and the appends
/// planned on it.
#[derive(Debug)]
struct Pool {
    prefix: String,
    per_key: u64,
    state: std::sync::Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    slots: Vec<(u64, u64)>,
    next: u64,
}

impl Pool {
    fn new(prefix: &str, keys: usize, per_key: u64) -> Self {
        let state = PoolState { slots: (0..keys as u64).map(|k| (k, 0)).collect(), next: keys as u64 };
        Pool { prefix: prefix.to_string(), per_key: per_key.max(1), state: std::sync::Mutex::new(state) }
    }

    /// The key of `slot` for a read, or for an append (which counts against the key, and
    /// replaces it first if it is used up).
    fn key(&self, slot: usize, append: bool) -> String {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PoolState { slots, next } = &mut *state;
        let Some((key, appends)) = slots.get_mut(slot) else {
            return format!("{}/overflow", self.prefix);
        };
        if append {
            if *appends >= self.per_key {
                *key = *next;
                *next += 1;
                *appends = 0;
            }
            *appends += 1;
        }
        format!("{}/{key}", self.prefix)
    }

    /// Keys used so far.
    fn used(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).next
    }
}

/// Runs the append clients against `endpoints` until `until`, recording into `recorder`.
pub async fn run(
    endpoints: &[String],
    spec: &AppendSpec,
    recorder: &AppendRecorder,
    until: Instant,
) -> Result<AppendStats, AppendError> {
    if endpoints.is_empty() || spec.clients == 0 || spec.keys == 0 || spec.max_ops == 0 {
        return Err(AppendError::Invalid(
            "needs at least one endpoint, client, key and micro-operation per transaction".to_string(),
        ));
    }
    let pool = Arc::new(Pool::new(&spec.prefix, spec.keys, spec.appends_per_key));
    let elements = Arc::new(AtomicU64::new(1));
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let options =
            ConnectOptions::new().with_timeout(spec.op_timeout).with_connect_timeout(spec.op_timeout);
        let client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|source| AppendError::Client { endpoint: endpoint.clone(), source })?;
        let task = ClientTask {
            client,
            first_process: c as u64,
            clients: spec.clients as u64,
            spec: spec.clone(),
            pool: pool.clone(),
            elements: elements.clone(),
            recorder: recorder.clone(),
            counters: counters.clone(),
            rng: StdRng::seed_from_u64(spec.seed.wrapping_add(c as u64) ^ SEED_SALT),
        };
        tasks.push(tokio::spawn(task.run(until)));
    }
    for t in tasks {
        t.await?;
    }
    Ok(AppendStats {
        invoked: counters.invoked.load(Ordering::Relaxed),
        ok: counters.ok.load(Ordering::Relaxed),
        fail: counters.fail.load(Ordering::Relaxed),
        info: counters.info.load(Ordering::Relaxed),
        keys: pool.used(),
    })
}

/// One client's loop.
struct ClientTask {
    client: Client,
    first_process: u64,
    clients: u64,
    spec: AppendSpec,
    pool: Arc<Pool>,
    elements: Arc<AtomicU64>,
    recorder: AppendRecorder,
    counters: Arc<Counters>,
    rng: StdRng,
}

impl ClientTask {
    async fn run(mut self, until: Instant) {
        let mut process = self.first_process;
        while Instant::now() < until {
            let ops = plan(&mut self.rng, &self.spec, &self.pool, &self.elements);
            let id = self.recorder.invoke(process, ops.clone());
            self.counters.invoked.fetch_add(1, Ordering::Relaxed);
            let completion = self.execute(ops).await;
            let counter = match completion.outcome {
                Outcome::Ok => &self.counters.ok,
                Outcome::Fail => &self.counters.fail,
                Outcome::Info => &self.counters.info,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let (outcome, erred) = (completion.outcome, completion.error.is_some());
            self.recorder.complete(id, completion);
            if outcome == Outcome::Info {
                // The commit may still be in flight: this process never issues another.
                process += self.clients;
            }
            let pause = if erred { self.spec.think.max(Duration::from_millis(100)) } else { self.spec.think };
            tokio::time::sleep(pause).await;
        }
    }

    /// Runs one transaction (see the module documentation).
    async fn execute(&mut self, mut ops: Vec<MicroOp>) -> Completion {
        let timeout = self.spec.op_timeout;
        let mut keys: Vec<String> = Vec::new();
        for op in &ops {
            if !keys.iter().any(|k| k == op.key()) {
                keys.push(op.key().to_string());
            }
        }
        let read = Txn::new().and_then(keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect::<Vec<_>>());
        let resp = match tokio::time::timeout(timeout, self.client.txn(read)).await {
            Err(_) => return Completion::fail(format!("read step timed out after {timeout:?}")),
            Ok(Err(e)) => return Completion::fail(format!("read step: {e}")),
            Ok(Ok(resp)) => resp,
        };
        let seen = match read_state(&keys, &resp) {
            Ok(seen) => seen,
            Err(completion) => return completion,
        };
        let mut lists: HashMap<String, Vec<u64>> =
            seen.iter().map(|s| (s.key.clone(), s.list.clone())).collect();
        let mut appended: Vec<String> = Vec::new();
        for op in &mut ops {
            match op {
                MicroOp::Read { key, value } => {
                    *value = Some(lists.get(key.as_str()).cloned().unwrap_or_default())
                }
                MicroOp::Append { key, element } => {
                    lists.entry(key.clone()).or_default().push(*element);
                    if !appended.contains(key) {
                        appended.push(key.clone());
                    }
                }
            }
        }
        if appended.is_empty() {
            return Completion::ok(ops);
        }
        let compares: Vec<Compare> = seen
            .iter()
            .map(|s| match s.mod_revision {
                Some(r) => Compare::mod_revision(s.key.as_str(), CompareOp::Equal, r),
                None => Compare::version(s.key.as_str(), CompareOp::Equal, 0),
            })
            .collect();
        let puts: Vec<TxnOp> = appended
            .iter()
            .filter_map(|k| lists.get(k).map(|l| TxnOp::put(k.as_str(), encode_list(l), None)))
            .collect();
        let commit = Txn::new().when(compares).and_then(puts);
        match tokio::time::timeout(timeout, self.client.txn(commit)).await {
            Err(_) => Completion::info(format!("commit timed out after {timeout:?}")),
            Ok(Err(e)) => Completion::info(format!("commit: {e}")),
            Ok(Ok(resp)) if resp.succeeded() => Completion::ok(ops),
            Ok(Ok(_)) => Completion::fail("compare failed: a key changed since the read step"),
        }
    }
}

/// One key as the read step saw it.
struct Seen {
    key: String,
    /// The list (empty for an absent key).
    list: Vec<u64>,
    /// `None` for an absent key.
    mod_revision: Option<i64>,
}

/// Each key as the read step's response shows it, in the order of `keys`, or the failed
/// completion to record.
fn read_state(keys: &[String], resp: &TxnResponse) -> Result<Vec<Seen>, Completion> {
    // etcd-client panics on a response operation without a body; that is input from the
    // network, so it becomes a failed read rather than a dead client task.
    let responses = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resp.op_responses()))
        .map_err(|_| Completion::fail("read step: a response operation has no body"))?;
    if responses.len() != keys.len() {
        return Err(Completion::fail(format!(
            "read step: {} responses for {} ranges",
            responses.len(),
            keys.len()
        )));
    }
    let mut seen = Vec::with_capacity(keys.len());
    let mut undecodable = Vec::new();
    for (key, r) in keys.iter().zip(responses) {
        let TxnOpResponse::Get(get) = r else {
            return Err(Completion::fail(format!("read step: the response for {key} is not a range")));
        };
        match get.kvs().first() {
            None => seen.push(Seen { key: key.clone(), list: Vec::new(), mod_revision: None }),
            Some(kv) => match decode_list(kv.value()) {
                Some(list) => {
                    seen.push(Seen { key: key.clone(), list, mod_revision: Some(kv.mod_revision()) })
                }
                None => undecodable.push(Undecodable {
                    key: key.clone(),
                    value: String::from_utf8_lossy(kv.value()).into_owned(),
                }),
            },
        }
    }
    if undecodable.is_empty() {
        return Ok(seen);
    }
    let names: Vec<&str> = undecodable.iter().map(|u| u.key.as_str()).collect();
    let mut failed = Completion::fail(format!("{} hold values that are not lists", names.join(", ")));
    failed.undecodable = undecodable;
    Err(failed)
}

/// A transaction's micro-operations: 1 to `max_ops`, each a read or an append (half each) on a
/// key of the pool, appends with fresh elements.
fn plan(rng: &mut StdRng, spec: &AppendSpec, pool: &Pool, elements: &AtomicU64) -> Vec<MicroOp> {
    let n = rng.random_range(1..=spec.max_ops.max(1));
    (0..n)
        .map(|_| {
            let slot = rng.random_range(0..spec.keys.max(1));
            if rng.random_bool(0.5) {
                MicroOp::Read { key: pool.key(slot, false), value: None }
            } else {
                let key = pool.key(slot, true);
                MicroOp::Append { key, element: elements.fetch_add(1, Ordering::Relaxed) }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_bad_values_do_not_decode() {
        assert_eq!(encode_list(&[1, 22, 333]), "1,22,333");
        assert_eq!(decode_list(b"1,22,333"), Some(vec![1, 22, 333]));
        assert_eq!(decode_list(b""), Some(vec![]));
        for bad in [&b"1,,2"[..], b"1, 2", b"x", b"-1", b"1,", &[0xff, 0x31]] {
            assert_eq!(decode_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_replaced_after_their_appends() {
        let pool = Pool::new("p", 2, 2);
        let keys: Vec<String> = (0..5).map(|_| pool.key(1, true)).collect();
        assert_eq!(keys, ["p/1", "p/1", "p/2", "p/2", "p/3"]);
        assert_eq!(pool.key(1, false), "p/3", "reads do not use up a key");
        assert_eq!(pool.key(0, true), "p/0");
        assert_eq!(pool.key(9, true), "p/overflow");
        assert_eq!(pool.used(), 4);
    }

    #[test]
    fn plans_follow_the_seed_and_use_unique_elements() {
        let spec = AppendSpec::new("p", 7);
        let make = || {
            let pool = Pool::new("p", spec.keys, spec.appends_per_key);
            let elements = AtomicU64::new(1);
            let mut rng = StdRng::seed_from_u64(7);
            (0..50).map(|_| plan(&mut rng, &spec, &pool, &elements)).collect::<Vec<_>>()
        };
        let (a, b) = (make(), make());
        assert_eq!(a, b);
        assert!(a.iter().all(|ops| (1..=spec.max_ops).contains(&ops.len())));
        let appended: Vec<u64> = a
            .iter()
            .flatten()
            .filter_map(|op| match op {
                MicroOp::Append { element, .. } => Some(*element),
                MicroOp::Read { .. } => None,
            })
            .collect();
        let unique: std::collections::HashSet<_> = appended.iter().collect();
        assert_eq!(unique.len(), appended.len());
        assert!(a.iter().flatten().any(|op| matches!(op, MicroOp::Read { .. })));
    }

    #[tokio::test]
    async fn an_empty_spec_is_refused() {
        let spec = AppendSpec { clients: 0, ..AppendSpec::new("p", 1) };
        let err =
            run(&["http://127.0.0.1:1".to_string()], &spec, &AppendRecorder::new(), Instant::now()).await;
        assert!(matches!(err, Err(AppendError::Invalid(_))), "{err:?}");
    }
}
