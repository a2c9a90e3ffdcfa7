//! The watch case: `--watchers` watchers of one prefix, grouped `--watchers-per-stream` to a
//! gRPC watch stream (as etcd's own `benchmark watch` groups them) and the streams spread
//! round-robin over the pool's connections, plus closed-loop writers putting values that carry
//! their send time. Every watcher sees every put, so each put is delivered `--watchers` times;
//! the case reports deliveries per second and each delivery's latency from the put's send
//! time to the watcher's receipt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, WatchOptions, WatchStream};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::workload::{
    Case, Outcome, Pool, STALL, Settings, WATCH_PREFIX, drive, histogram, micros_since, sent_us,
};

/// After the writers stop, the watchers may catch up as long as some event arrives at least
/// this often; events still missing then count as missed.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// How often the drain looks at the delivery counter.
const DRAIN_TICK: Duration = Duration::from_millis(50);
/// How long the readers may take to stop once told to.
const READER_STOP: Duration = Duration::from_secs(10);

/// Runs the watch case with `clients` writers.
pub(crate) async fn run(
    pool: &Pool,
    clients: usize,
    settings: &Settings,
    cancel: &CancellationToken,
) -> anyhow::Result<Outcome> {
    let base = Instant::now();
    let per_stream = settings.watchers_per_stream.max(1);
    let streams = settings.watchers.div_ceil(per_stream);
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    // Dropping the set (on every early return) aborts the readers.
    let mut readers = JoinSet::new();
    for s in 0..streams {
        let n = per_stream.min(settings.watchers - s * per_stream);
        let stream = tokio::time::timeout(STALL, open_stream(pool.conn(s), n))
            .await
            .with_context(|| format!("creating {n} watchers on watch stream {s} timed out"))?
            .with_context(|| format!("creating {n} watchers on watch stream {s}"))?;
        let reader = Reader { stream, base, stop: stop.clone(), delivered: delivered.clone() };
        readers.spawn(reader.run());
    }
    let start = Instant::now();
    // The writers' watchdog counts deliveries as progress too.
    let progress = Arc::new(AtomicU64::new(0));
    let relay = relay_deliveries(&delivered, &progress, &stop);
    let writes = drive(pool, Case::Watch, clients, settings, base, &progress, cancel).await;
    relay.abort();
    let writes = writes?;
    let expected = writes.ops.saturating_mul(settings.watchers as u64);
    drain(&delivered, expected, cancel).await?;
    stop.cancel();
    let mut latency = histogram()?;
    let mut errors = writes.errors;
    let mut last_delivery = None;
    let mut first_error = None;
    let joined = async {
        while let Some(stats) = readers.join_next().await {
            let stats = stats.context("a watch reader failed")??;
            latency.add(&stats.latency).context("merging latency histograms")?;
            errors += stats.errors;
            last_delivery = last_delivery.max(stats.last_delivery);
            first_error = first_error.take().or(stats.first_error);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(READER_STOP, joined).await.context("watch readers did not stop")??;
    if let Some(e) = first_error {
        eprintln!("  watch with {clients} writers: {errors} errors, the first: {e}");
    }
    let ops = delivered.load(Ordering::Relaxed);
    Ok(Outcome {
        ops,
        elapsed: last_delivery.unwrap_or(start).saturating_duration_since(start),
        latency,
        errors,
        conflicts: 0,
        writes: writes.ops,
        missed: expected.saturating_sub(ops),
    })
}

/// Adds deliveries to `progress` while the writers run, so slow writers whose puts are still
/// being delivered do not count as stalled.
fn relay_deliveries(
    delivered: &Arc<AtomicU64>,
    progress: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (delivered, progress, stop) = (delivered.clone(), progress.clone(), stop.clone());
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(DRAIN_TICK) => {}
            }
            let now = delivered.load(Ordering::Relaxed);
            progress.fetch_add(now - last, Ordering::Relaxed);
            last = now;
        }
    })
}

/// Waits until `expected` events are delivered, or none arrives for [`DRAIN_QUIET`].
async fn drain(delivered: &AtomicU64, expected: u64, cancel: &CancellationToken) -> anyhow::Result<()> {
    let mut seen = delivered.load(Ordering::Relaxed);
    let mut moved = Instant::now();
    while seen < expected && moved.elapsed() < DRAIN_QUIET {
        tokio::select! {
            biased;
            () = cancel.cancelled() => anyhow::bail!("interrupted"),
            () = tokio::time::sleep(DRAIN_TICK) => {}
        }
        let now = delivered.load(Ordering::Relaxed);
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
    }
    Ok(())
}

/// Opens one watch stream on `client` carrying `n` watchers of [`WATCH_PREFIX`] and waits
/// until all are created.
async fn open_stream(client: &Client, n: usize) -> anyhow::Result<WatchStream> {
    let opts = WatchOptions::new().with_prefix();
    let mut stream = client.watch_client().watch(WATCH_PREFIX, Some(opts.clone())).await?;
    for _ in 1..n {
        stream.watch(WATCH_PREFIX, Some(opts.clone())).await?;
    }
    let mut created = 0;
    while created < n {
        let resp = stream.message().await?.context("watch stream ended while its watchers were created")?;
        anyhow::ensure!(!resp.canceled(), "watch creation refused: {}", resp.cancel_reason());
        created += usize::from(resp.created());
    }
    Ok(stream)
}

/// Reads one watch stream until `stop`.
struct Reader {
    stream: WatchStream,
    /// The writers' clock: send times are microseconds since this.
    base: Instant,
    stop: CancellationToken,
    /// Events delivered to all streams so far.
    delivered: Arc<AtomicU64>,
}

/// What one watch stream received.
struct ReaderStats {
    latency: Histogram<u64>,
    errors: u64,
    last_delivery: Option<Instant>,
    first_error: Option<String>,
}

impl Reader {
    /// Records each event's delivery latency until `stop` or the stream breaks (an error).
    async fn run(mut self) -> anyhow::Result<ReaderStats> {
        let mut stats =
            ReaderStats { latency: histogram()?, errors: 0, last_delivery: None, first_error: None };
        loop {
            let msg = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                m = self.stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| "watch stream ended".into());
                    break;
                }
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| format!("watch stream failed: {e}"));
                    break;
                }
            };
            let now = Instant::now();
            let received = micros_since(self.base, now);
            for event in resp.events() {
                match event.kv().and_then(|kv| sent_us(kv.value())) {
                    Some(sent) => stats.latency.saturating_record(received.saturating_sub(sent).max(1)),
                    None => stats.errors += 1,
                }
            }
            if !resp.events().is_empty() {
                self.delivered.fetch_add(resp.events().len() as u64, Ordering::Relaxed);
                stats.last_delivery = Some(now);
            }
            if resp.canceled() {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| format!("watch cancelled: {}", resp.cancel_reason()));
                break;
            }
        }
        Ok(stats)
    }
}
