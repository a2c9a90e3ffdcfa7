//! Latency histograms (hdrhistogram, microseconds) and their summary in milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// An empty, auto-resizing latency histogram (microseconds, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    h.auto(true);
    h
}

/// Records `d` in microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // An auto-resizing histogram takes any duration a run can produce; should it refuse,
    // clamp rather than lose the sample.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Create-to-bind latencies of a run, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Largest.
    pub(crate) max: f64,
}

impl Latency {
    /// The summary of `h`; `None` without samples (no samples is not a latency of zero).
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Latency> {
        let ms = |us: u64| us as f64 / 1000.0;
        (!h.is_empty()).then(|| Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_in_milliseconds_and_absent_without_samples() {
        let mut h = histogram();
        assert_eq!(Latency::of(&h), None);
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        // Far beyond the initial range: the histogram grows to take it.
        record(&mut h, Duration::from_secs(3_600));
        let l = Latency::of(&h).expect("samples were recorded");
        assert_eq!(l.count, 101);
        // 3 significant digits: within 0.1% of the exact rank.
        assert!((l.p50 - 51.0).abs() < 0.1, "p50 {}", l.p50);
        assert!((l.p99 - 100.0).abs() < 0.1, "p99 {}", l.p99);
        assert!((l.max - 3_600_000.0).abs() / 3_600_000.0 < 0.001, "max {}", l.max);
    }
}
