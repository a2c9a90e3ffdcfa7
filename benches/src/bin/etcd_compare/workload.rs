//! The cases, driven through the etcd v3 client over a pool of gRPC connections: closed-loop
//! client tasks (each sends its next request when the last one is answered) for put, get and
//! compare-and-swap, and for watch, watchers on one prefix plus writers whose values carry
//! their send time. Every case has a watchdog: no progress for [`STALL`] fails it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, KvClient, Txn, TxnOp};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A case fails when no request completes (and, for watch, no event arrives) for this long.
pub(crate) const STALL: Duration = Duration::from_secs(30);
/// How often the watchdog looks at the progress counter.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);
/// A client task pauses this long after a failed request, so a dead endpoint is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Bytes per value written (put, cas, load, watch writers).
pub(crate) const VALUE_BYTES: usize = 256;
/// Puts in flight while the keys are loaded.
const LOAD_CONCURRENCY: usize = 64;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The prefix the watch case watches and its writers write under.
pub(crate) const WATCH_PREFIX: &str = "/bench/watch/";
/// Largest latency recorded (longer ones are recorded as this), in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Case {
    /// Puts of 256-byte values to distinct keys.
    Put,
    /// Linearizable single-key gets of the loaded keys.
    Get,
    /// Get a loaded key, then a transaction putting it if its mod revision is unchanged.
    Cas,
    /// Watchers on a prefix, writers putting under it; measures event delivery.
    Watch,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Case::Put => "put",
            Case::Get => "get",
            Case::Cas => "cas",
            Case::Watch => "watch",
        })
    }
}

/// What every case needs besides its client count.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How long the clients send requests.
    pub(crate) duration: Duration,
    /// Keys loaded before the cases (`/bench/00000000` ...).
    pub(crate) keys: usize,
    /// Watchers in the watch case.
    pub(crate) watchers: usize,
    /// Watchers sharing one gRPC watch stream.
    pub(crate) watchers_per_stream: usize,
}

/// What a case measured.
pub(crate) struct Outcome {
    /// Completed operations: requests (put, get), compare-and-swap attempts (cas) or events
    /// delivered to watchers (watch).
    pub(crate) ops: u64,
    /// From the first request to the last completion (watch: to the last delivery).
    pub(crate) elapsed: Duration,
    /// Latency per operation (watch: from a put's send time to an event's receipt), in µs.
    pub(crate) latency: Histogram<u64>,
    /// Failed requests (watch: also broken streams and events without a send time).
    pub(crate) errors: u64,
    /// CAS transactions whose compare failed (counted in `ops`, not in `errors`).
    pub(crate) conflicts: u64,
    /// Watch: puts the writers completed.
    pub(crate) writes: u64,
    /// Watch: events expected (completed puts times watchers) but not delivered.
    pub(crate) missed: u64,
}

/// etcd v3 clients, each its own gRPC connection; connection `j` talks to endpoint `j % n`.
pub(crate) struct Pool {
    conns: Vec<Client>,
}

impl Pool {
    /// Connects `conns` clients round-robin over `endpoints`.
    pub(crate) async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Pool> {
        let mut clients = Vec::with_capacity(conns);
        for j in 0..conns.max(1) {
            let ep = &endpoints[j % endpoints.len()];
            let opts = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
            let client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect([ep], Some(opts)))
                .await
                .with_context(|| format!("connecting to {ep} timed out"))?
                .with_context(|| format!("connecting to {ep}"))?;
            clients.push(client);
        }
        Ok(Pool { conns: clients })
    }

    /// The connection client task (or watch stream) `i` uses.
    pub(crate) fn conn(&self, i: usize) -> &Client {
        &self.conns[i % self.conns.len()]
    }
}

/// The name of loaded key `k`.
fn key_name(k: usize) -> String {
    format!("/bench/{k:08}")
}

/// A 256-byte value.
fn value() -> Vec<u8> {
    vec![b'v'; VALUE_BYTES]
}

/// A 256-byte value starting with `sent_us` as 20 decimal digits.
fn timed_value(sent_us: u64) -> Vec<u8> {
    let mut v = format!("{sent_us:020}").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

/// The send time a [`timed_value`] carries.
pub(crate) fn sent_us(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..20)?).ok()?.parse().ok()
}

/// Microseconds from `base` to `t`.
pub(crate) fn micros_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_micros()).unwrap_or(u64::MAX)
}

/// An empty latency histogram (µs, 3 significant digits).
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

/// Puts keys `/bench/00000000` .. with 256-byte values, [`LOAD_CONCURRENCY`] at a time.
pub(crate) async fn load_keys(pool: &Pool, keys: usize) -> anyhow::Result<()> {
    futures::stream::iter(0..keys)
        .map(|k| {
            let mut kv = pool.conn(k).kv_client();
            async move {
                let key = key_name(k);
                tokio::time::timeout(STALL, kv.put(key.as_str(), value(), None))
                    .await
                    .with_context(|| format!("loading {key} timed out"))?
                    .with_context(|| format!("loading {key}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// Runs `case` with `clients` client tasks for `settings.duration`; fails when `cancel`
/// fires or the case stalls.
pub(crate) async fn run_case(
    pool: &Pool,
    case: Case,
    clients: usize,
    settings: &Settings,
    cancel: &CancellationToken,
) -> anyhow::Result<Outcome> {
    if case == Case::Watch {
        return crate::watch::run(pool, clients, settings, cancel).await;
    }
    let progress = Arc::new(AtomicU64::new(0));
    let d = drive(pool, case, clients, settings, Instant::now(), &progress, cancel).await?;
    Ok(Outcome {
        ops: d.ops,
        elapsed: d.elapsed,
        latency: d.latency,
        errors: d.errors,
        conflicts: d.conflicts,
        writes: 0,
        missed: 0,
    })
}

/// What the client tasks of one case did, together.
pub(crate) struct Driven {
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) conflicts: u64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) elapsed: Duration,
}

/// Runs `clients` closed-loop tasks (task `i` on connection `i % conns`) doing `case` for
/// `settings.duration`, then waits for the requests in flight. Each completed request adds
/// one to `progress`; the case fails if `progress` stands still for [`STALL`], or when
/// `cancel` fires. (`Case::Watch` here means the watch case's writers.)
pub(crate) async fn drive(
    pool: &Pool,
    case: Case,
    clients: usize,
    settings: &Settings,
    base: Instant,
    progress: &Arc<AtomicU64>,
    cancel: &CancellationToken,
) -> anyhow::Result<Driven> {
    let stop = CancellationToken::new();
    // Dropping the set (on every early return) aborts the tasks.
    let mut tasks = JoinSet::new();
    for task in 0..clients {
        let ctx = TaskCtx {
            kv: pool.conn(task).kv_client(),
            case,
            task,
            keys: settings.keys,
            base,
            stop: stop.clone(),
            progress: progress.clone(),
        };
        let latency = histogram()?;
        tasks.spawn(ctx.run(latency));
    }
    let start = Instant::now();
    let end = start + settings.duration;
    let mut seen = progress.load(Ordering::Relaxed);
    let mut moved = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => anyhow::bail!("interrupted"),
            () = tokio::time::sleep_until((now + WATCHDOG_TICK).min(end)) => {}
        }
        let p = progress.load(Ordering::Relaxed);
        if p != seen {
            (seen, moved) = (p, Instant::now());
        }
        anyhow::ensure!(
            moved.elapsed() < STALL,
            "{case} with {clients} clients made no progress for {STALL:?}"
        );
    }
    stop.cancel();
    let mut total =
        Driven { ops: 0, errors: 0, conflicts: 0, latency: histogram()?, elapsed: Duration::ZERO };
    let mut first_error = None;
    let joined = async {
        while let Some(stats) = tasks.join_next().await {
            let stats = stats.context("a client task failed")?;
            total.ops += stats.ops;
            total.errors += stats.errors;
            total.conflicts += stats.conflicts;
            total.latency.add(&stats.latency).context("merging latency histograms")?;
            first_error = first_error.take().or(stats.first_error);
        }
        anyhow::Ok(())
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => anyhow::bail!("interrupted"),
        r = tokio::time::timeout(STALL, joined) => r.with_context(|| {
            format!("{case} with {clients} clients: requests still unanswered {STALL:?} after the end")
        })??,
    }
    total.elapsed = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("  {case} with {clients} clients: {} failed requests, the first: {e}", total.errors);
    }
    Ok(total)
}

/// One client task's view.
struct TaskCtx {
    kv: KvClient,
    case: Case,
    task: usize,
    keys: usize,
    base: Instant,
    stop: CancellationToken,
    progress: Arc<AtomicU64>,
}

/// What one client task did.
struct TaskStats {
    ops: u64,
    errors: u64,
    conflicts: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

impl TaskCtx {
    /// Sends requests one after another until `stop`; the request in flight then finishes.
    async fn run(mut self, latency: Histogram<u64>) -> TaskStats {
        let mut stats = TaskStats { ops: 0, errors: 0, conflicts: 0, latency, first_error: None };
        let mut rng = StdRng::seed_from_u64(self.task as u64);
        let mut seq = 0u64;
        while !self.stop.is_cancelled() {
            let t0 = Instant::now();
            match self.one(seq, &mut rng).await {
                Ok(conflict) => {
                    stats.latency.saturating_record(micros_since(t0, Instant::now()).max(1));
                    stats.ops += 1;
                    stats.conflicts += u64::from(conflict);
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| format!("{e:#}"));
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            seq += 1;
        }
        stats
    }

    /// One operation; `Ok(true)` for a compare-and-swap whose compare failed.
    async fn one(&mut self, seq: u64, rng: &mut StdRng) -> anyhow::Result<bool> {
        match self.case {
            Case::Put => {
                self.kv.put(format!("/bench/put/{}/{seq}", self.task), value(), None).await?;
                Ok(false)
            }
            Case::Get => {
                let key = key_name(rng.random_range(0..self.keys));
                let resp = self.kv.get(key.as_str(), None).await?;
                anyhow::ensure!(!resp.kvs().is_empty(), "loaded key {key} not found");
                Ok(false)
            }
            Case::Cas => {
                let key = key_name(rng.random_range(0..self.keys));
                let resp = self.kv.get(key.as_str(), None).await?;
                let seen =
                    resp.kvs().first().with_context(|| format!("loaded key {key} not found"))?.mod_revision();
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, seen)])
                    .and_then([TxnOp::put(key.as_str(), value(), None)]);
                Ok(!self.kv.txn(txn).await?.succeeded())
            }
            Case::Watch => {
                let sent = micros_since(self.base, Instant::now());
                self.kv.put(format!("{WATCH_PREFIX}{}", self.task), timed_value(sent), None).await?;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_values_are_full_size_and_carry_their_send_time() {
        let v = timed_value(1_234_567);
        assert_eq!(v.len(), VALUE_BYTES);
        assert_eq!(sent_us(&v), Some(1_234_567));
        assert_eq!(sent_us(&value()), None);
        assert_eq!(sent_us(b"12"), None);
    }
}
