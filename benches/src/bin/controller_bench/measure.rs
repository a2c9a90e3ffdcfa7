//! Latency histograms and this process's CPU time and memory, read from `/proc/self`.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, 100 per second on every architecture
/// Flotilla runs on (the kernel's internal HZ is hidden from this interface).
const USER_HZ: f64 = 100.0;

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

/// CPU seconds (user + system) this process has used so far; 0 if `/proc` cannot be read.
pub(crate) fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // after its closing parenthesis, where field 3 (state) is index 0.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// This process's resident set now and at its peak, in MiB (`VmRSS`, `VmHWM`).
pub(crate) fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") as f64 / 1024.0, kib("VmHWM:") as f64 / 1024.0)
}

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
