//! Latency histograms and this process's CPU time and memory, read from `/proc/self`.

use std::time::Duration;

use hdrhistogram::Histogram;

/// An empty latency histogram (microseconds, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant digits is a valid precision")
}

/// Records `d` in microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // An auto-resizing histogram grows to take any duration a run can produce; should it
    // refuse, clamp rather than lose the sample.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// The `q` quantile of `h` in milliseconds; `None` for an empty histogram (no samples is not
/// a latency of zero).
pub(crate) fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// The largest sample of `h` in milliseconds; `None` for an empty histogram.
pub(crate) fn max_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| h.max() as f64 / 1000.0)
}

pub(crate) use flotilla_benches::process::{cpu_secs, memory_mib};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_in_milliseconds_and_absent_without_samples() {
        let mut h = histogram();
        assert_eq!(quantile_ms(&h, 0.5), None);
        assert_eq!(max_ms(&h), None);
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let p50 = quantile_ms(&h, 0.5).expect("samples were recorded");
        let p99 = quantile_ms(&h, 0.99).expect("samples were recorded");
        // 3 significant digits: within 0.1% of the exact rank.
        assert!((p50 - 50.0).abs() < 0.1, "p50 {p50}");
        assert!((p99 - 99.0).abs() < 0.1, "p99 {p99}");
        assert!((max_ms(&h).expect("samples were recorded") - 100.0).abs() < 0.1);
    }

    #[test]
    fn cpu_time_and_memory_are_read_from_proc() {
        // Burn CPU until the kernel has counted at least one tick (10 ms), giving up after
        // far more work than that takes.
        let mut x = 0u64;
        for round in 0..100_000u64 {
            if cpu_secs() > 0.0 {
                break;
            }
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(round);
            }
        }
        assert!(cpu_secs() > 0.0, "no CPU time counted ({x})");
        let (rss, hwm) = memory_mib();
        assert!(rss > 0.0 && hwm >= rss, "rss {rss} hwm {hwm}");
    }
}
