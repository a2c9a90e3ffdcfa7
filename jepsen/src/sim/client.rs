//! Register clients of the simulation: reads, writes and compare-and-sets on a few keys,
//! each sent to a random member through the store API (forwarded to the leader by the member,
//! as a real client's request would be), recorded in a [`Recorder`] history.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flotilla_core::store::{
    Compare, CompareOp, Error, KeyRange, PutRequest, RangeRequest, RequestOp, Store, TxnRequest,
};
use flotilla_raft_store::RaftStore;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::cluster::SimCluster;
use crate::history::{Call, EventKind, Recorder};

/// How long a client waits for an answer before it records an unknown outcome.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(4);

/// What the clients share.
pub(crate) struct Clients {
    pub(crate) cluster: Arc<SimCluster>,
    pub(crate) recorder: Recorder,
    pub(crate) rng: Arc<Mutex<StdRng>>,
    pub(crate) keys: usize,
    pub(crate) clients: usize,
    pub(crate) serializable_reads: bool,
    /// The last value written or compared-and-set (values are unique across the run).
    pub(crate) last_value: AtomicU64,
}

/// How one operation ended.
enum Outcome {
    Ok(Option<u64>),
    Fail(String),
    Info(String),
}

impl Clients {
    /// Runs client `index` until `end`, then returns.
    pub(crate) async fn run(self: Arc<Self>, index: usize, end: Instant) {
        let mut process = index as u64;
        while Instant::now() < end {
            let (key, call, member, pause) = {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                let key = format!("sim/k{}", rng.random_range(0..self.keys));
                let call = match rng.random_range(0..10) {
                    0..=3 => Call::Read,
                    4..=6 => Call::Write { value: self.last_value.fetch_add(1, Ordering::Relaxed) + 1 },
                    _ => {
                        // One of the last few values, so that many compares can succeed.
                        let last = self.last_value.load(Ordering::Relaxed);
                        let from = last.saturating_sub(rng.random_range(0..2 * self.keys as u64));
                        Call::Cas { from, to: self.last_value.fetch_add(1, Ordering::Relaxed) + 1 }
                    }
                };
                let member = rng.random_range(0..self.cluster.len());
                (key, call, member, Duration::from_millis(rng.random_range(0..40)))
            };
            self.recorder.invoke(process, &key, call);
            let outcome = match self.cluster.store(member) {
                None => Outcome::Fail(format!("member {} is down", member + 1)),
                Some(store) => {
                    let op = perform(&store, &key, call, self.serializable_reads);
                    match tokio::time::timeout(OP_TIMEOUT, op).await {
                        Ok(outcome) => outcome,
                        Err(_) => Outcome::Info(format!("no answer within {OP_TIMEOUT:?}")),
                    }
                }
            };
            if self.record(process, &key, call, outcome) == EventKind::Info {
                // A process whose operation may still take effect is never reused.
                process += self.clients as u64;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Records how `process`'s `call` on `key` ended; answers the event kind.
    fn record(&self, process: u64, key: &str, call: Call, outcome: Outcome) -> EventKind {
        let (kind, read, error) = match outcome {
            Outcome::Ok(read) => (EventKind::Ok, read, None),
            Outcome::Fail(e) => (EventKind::Fail, None, Some(e)),
            Outcome::Info(e) => (EventKind::Info, None, Some(e)),
        };
        self.recorder.complete(process, key, kind, call, read, error);
        kind
    }

    /// Reads every key once more, through the leader, when the cluster is whole again: the
    /// last writes must be there.
    pub(crate) async fn final_reads(&self, first_process: u64) {
        for k in 0..self.keys {
            let key = format!("sim/k{k}");
            let process = first_process + k as u64;
            self.recorder.invoke(process, &key, Call::Read);
            let store = self.cluster.leader().and_then(|i| self.cluster.store(i));
            let outcome = match store {
                None => Outcome::Fail("no leader".into()),
                Some(store) => {
                    match tokio::time::timeout(OP_TIMEOUT, perform(&store, &key, Call::Read, false)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Outcome::Fail(format!("no answer within {OP_TIMEOUT:?}")),
                    }
                }
            };
            // A read changes nothing: an unknown outcome is a failure.
            let outcome = match outcome {
                Outcome::Info(e) => Outcome::Fail(e),
                other => other,
            };
            self.record(process, &key, Call::Read, outcome);
        }
    }
}

/// Sends one operation to `store`.
async fn perform(store: &RaftStore, key: &str, call: Call, serializable: bool) -> Outcome {
    match call {
        Call::Read => {
            let mut req = RangeRequest::new(KeyRange::Key(key.as_bytes().to_vec()));
            req.serializable = serializable;
            read(store, req).await
        }
        Call::Write { value } => match store.put(PutRequest::new(key, value.to_string())).await {
            Ok(_) => Outcome::Ok(None),
            Err(e) => write_error(e),
        },
        Call::Cas { from, to } => {
            let txn = TxnRequest {
                compare: vec![Compare::value(key, CompareOp::Equal, from.to_string())],
                success: vec![RequestOp::Put(PutRequest::new(key, to.to_string()))],
                failure: Vec::new(),
            };
            match store.txn(txn).await {
                Ok(r) if r.succeeded => Outcome::Ok(None),
                Ok(_) => Outcome::Fail("compare failed".into()),
                Err(e) => write_error(e),
            }
        }
    }
}

/// A read: it changes nothing, whatever happened to it, so an error is a failure.
async fn read(store: &RaftStore, req: RangeRequest) -> Outcome {
    match store.range(req).await {
        Ok(r) => match r.kvs.first().map(|kv| parse(&kv.value)).transpose() {
            Ok(value) => Outcome::Ok(value),
            Err(e) => Outcome::Fail(e),
        },
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

/// A write's error: only an unavailable store surely did nothing.
fn write_error(e: Error) -> Outcome {
    if e.is_retryable() { Outcome::Fail(e.to_string()) } else { Outcome::Info(e.to_string()) }
}

fn parse(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("garbage value {:?}", String::from_utf8_lossy(value)))
}
