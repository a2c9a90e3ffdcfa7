//! Running a phase over concurrent client tasks, and the figures printed for it: latency
//! percentiles, throughput, and this process's CPU time and memory from `/proc/self`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::Api;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

/// The header of the lines [`report`] prints.
pub(crate) const HEADER: &str = "phase,ops,tasks,secs,ops_per_sec,p50_us,p99_us,max_us,cpu_s";

/// An empty latency histogram (microseconds, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant digits is a valid precision")
}

/// Records `d` in microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // An auto-resizing histogram grows to take any duration a run can produce; should it
    // refuse, clamp rather than lose the sample (`saturating_record` alone clamps to the
    // current, unresized range).
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

pub(crate) use flotilla_benches::process::{cpu_secs, memory_mib};

/// Prints the process's memory, saying when it was taken.
pub(crate) fn print_memory(when: &str) {
    let (rss, hwm) = memory_mib();
    println!(
        "# memory {when}: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB \
         (server, store and clients share this process)"
    );
}

/// Prints one phase's line (see [`HEADER`]).
pub(crate) fn report(name: &str, tasks: usize, elapsed: Duration, h: &Histogram<u64>, cpu: f64) {
    let secs = elapsed.as_secs_f64();
    let rate = h.len() as f64 / secs.max(1e-9);
    // Slow phases (lists of every pod) would round to 0 ops/s.
    let precision = if rate < 100.0 { 2 } else { 0 };
    println!(
        "{name},{},{tasks},{secs:.2},{rate:.precision$},{},{},{},{cpu:.2}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

/// Runs `op(api, i)` for every i in `0..n`, spread over one task per entry of `apis` (task c
/// takes c, c + tasks, ...); prints the phase's line.
pub(crate) async fn phase<F, Fut>(
    name: &'static str,
    n: usize,
    apis: &[Api<Pod>],
    op: F,
) -> anyhow::Result<()>
where
    F: Fn(Api<Pod>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let tasks = apis.len().clamp(1, n.max(1));
    let cpu = cpu_secs();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for (c, api) in apis.iter().take(tasks).enumerate() {
        let (op, api) = (op.clone(), api.clone());
        handles.push(tokio::spawn(async move {
            let mut h = histogram();
            for i in (c..n).step_by(tasks) {
                let t = Instant::now();
                op(api.clone(), i).await.map_err(|e| e.context(format!("{name} #{i}")))?;
                record(&mut h, t.elapsed());
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = histogram();
    for handle in handles {
        all.add(&handle.await??)?;
    }
    report(name, tasks, start.elapsed(), &all, cpu_secs() - cpu);
    Ok(())
}
