//! A case's result (also the JSON a case's child process hands back), its printed block, and
//! the summary table of a run.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cluster::StoreKind;
use crate::measure::Latency;
use crate::verify::Check;
use crate::workloads::{Shape, Workload};

/// The process's peak memory the Memory workload aims under, in MiB.
pub(crate) const MEMORY_TARGET_MIB: f64 = 1024.0;

/// Why the wait for a phase's pods ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ending {
    /// Not run.
    #[default]
    NotRun,
    /// Every created pod was seen bound.
    AllBound,
    /// No pod was bound for the stall time after all were created.
    Stalled,
    /// The phase's deadline passed.
    Deadline,
}

/// The scheduler's counters over the measured phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Work {
    /// Scheduling cycles.
    pub(crate) attempts: u64,
    /// Binds that succeeded.
    pub(crate) bound: u64,
    /// Cycles that found no node.
    pub(crate) unschedulable: u64,
    /// Binds that failed.
    pub(crate) bind_failures: u64,
}

/// Everything measured and checked in one case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct CaseResult {
    /// The upstream test case's name.
    pub(crate) workload: String,
    /// `memory` or `raft3`.
    pub(crate) store: String,
    /// The upstream case reproduced.
    pub(crate) upstream: String,
    /// Upstream's CI threshold in pods/s, if any.
    pub(crate) threshold: Option<f64>,
    /// Whether every measured pod must be bound (not for PreemptionBasic).
    pub(crate) requires_all_bound: bool,
    /// Simulated nodes.
    pub(crate) nodes: usize,
    /// Initial pods.
    pub(crate) initial: usize,
    /// Measured pods.
    pub(crate) measured: usize,
    /// Seconds to register the nodes until the scheduler had them all.
    pub(crate) setup_secs: f64,
    /// Seconds to create and bind the initial pods.
    pub(crate) initial_secs: f64,
    /// Initial pods seen bound.
    pub(crate) initial_bound: usize,
    /// Measured pods created.
    pub(crate) created: usize,
    /// Measured creates that failed.
    pub(crate) create_errors: usize,
    /// The first failure.
    pub(crate) first_create_error: Option<String>,
    /// Seconds from the first measured create call until the last one returned.
    pub(crate) create_secs: f64,
    /// Measured pods seen bound.
    pub(crate) bound: usize,
    /// Seconds from the first measured create call to the last binding seen.
    pub(crate) wall_secs: f64,
    /// `bound / wall_secs`.
    pub(crate) pods_per_sec: f64,
    /// `pods_per_sec / threshold`.
    pub(crate) ratio: Option<f64>,
    /// Create-to-bind latencies of the measured pods.
    pub(crate) latency_ms: Option<Latency>,
    /// How long the measured pods had.
    pub(crate) deadline_secs: f64,
    /// Why the wait for them ended.
    pub(crate) ending: Ending,
    /// The scheduler's counters over the measured phase.
    pub(crate) work: Work,
    /// CPU seconds of this process over the measured phase.
    pub(crate) cpu_secs: f64,
    /// Initial pods seen deleted (preemption victims).
    pub(crate) victims_deleted: usize,
    /// Times the harness's pod watch had to retry.
    pub(crate) watch_retries: u64,
    /// The process's resident set when the measured pods were bound, MiB.
    pub(crate) rss_end_mib: f64,
    /// The process's peak resident set (`VmHWM`) until the measured pods were bound, MiB.
    pub(crate) peak_rss_mib: f64,
    /// The peak at the end, the harness's lists of every pod and node for the checks included.
    pub(crate) peak_rss_with_checks_mib: f64,
    /// Why the measured pods not bound are not, with counts.
    pub(crate) not_bound: Vec<(String, usize)>,
    /// The checks of the result.
    pub(crate) checks: Vec<Check>,
    /// What stopped the case, if anything did.
    pub(crate) error: Option<String>,
}

impl CaseResult {
    /// An empty result of `workload` on `store` at `shape`.
    pub(crate) fn new(workload: Workload, store: StoreKind, shape: Shape) -> CaseResult {
        let upstream = workload.upstream();
        CaseResult {
            workload: workload.name().to_string(),
            store: store.name().to_string(),
            upstream: upstream.case.to_string(),
            threshold: upstream.threshold,
            requires_all_bound: workload.requires_all_bound(),
            nodes: shape.nodes,
            initial: shape.initial,
            measured: shape.measured,
            ..CaseResult::default()
        }
    }

    /// A case that produced no result (its process failed before writing one).
    pub(crate) fn failed(workload: Workload, store: StoreKind, shape: Shape, error: String) -> CaseResult {
        CaseResult { error: Some(error), ..CaseResult::new(workload, store, shape) }
    }

    /// Whether the case ran to the end and every check held.
    pub(crate) fn passed(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The block printed when a case ends.
pub(crate) fn case_block(r: &CaseResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} on {}: {} nodes (set up in {:.1}s), {} initial pods (bound in {:.1}s), {} measured",
        r.workload, r.store, r.nodes, r.setup_secs, r.initial, r.initial_secs, r.measured
    );
    let l = r.latency_ms;
    let _ = writeln!(
        out,
        "measured={} created={} bound={} wall_s={:.2} pods_per_s={:.1} threshold={} ratio={} \
         p50_ms={} p99_ms={} max_ms={} ending={:?}",
        r.measured,
        r.created,
        r.bound,
        r.wall_secs,
        r.pods_per_sec,
        opt(r.threshold, 0),
        opt(r.ratio, 2),
        opt(l.map(|l| l.p50), 1),
        opt(l.map(|l| l.p99), 1),
        opt(l.map(|l| l.max), 1),
        r.ending
    );
    let w = r.work;
    let _ = writeln!(
        out,
        "scheduler: attempts={} bound={} unschedulable={} bind_failures={}; cpu_s={:.1} create_s={:.2} \
         victims_deleted={} watch_retries={} rss_mib={:.0} peak_rss_mib={:.0} peak_rss_with_checks_mib={:.0}",
        w.attempts,
        w.bound,
        w.unschedulable,
        w.bind_failures,
        r.cpu_secs,
        r.create_secs,
        r.victims_deleted,
        r.watch_retries,
        r.rss_end_mib,
        r.peak_rss_mib,
        r.peak_rss_with_checks_mib
    );
    if !r.requires_all_bound {
        let _ = writeln!(
            out,
            "high-priority pods bound within {:.0}s: {} of {} (counted, not required)",
            r.deadline_secs, r.bound, r.measured
        );
    }
    if r.workload == Workload::Memory.name() {
        let met = if r.peak_rss_mib < MEMORY_TARGET_MIB { "met" } else { "NOT met" };
        let _ = writeln!(
            out,
            "memory: peak RSS {:.0} MiB, target < {MEMORY_TARGET_MIB:.0} MiB {met}",
            r.peak_rss_mib
        );
    }
    if let Some(e) = &r.first_create_error {
        let _ = writeln!(out, "create errors: {} (first: {e})", r.create_errors);
    }
    for (reason, n) in r.not_bound.iter().take(5) {
        let _ = writeln!(out, "not bound: {n} x {reason}");
    }
    for c in &r.checks {
        let _ = writeln!(out, "check {}: {} ({})", if c.passed { "ok" } else { "FAILED" }, c.name, c.detail);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

/// The summary table of every case.
pub(crate) fn summary(results: &[CaseResult]) -> String {
    let mut rows = vec![
        [
            "workload",
            "store",
            "nodes",
            "init",
            "measured",
            "bound",
            "wall_s",
            "pods/s",
            "threshold",
            "ratio",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "attempts",
            "unsched",
            "bind_fail",
            "peak_rss_mib",
            "checks",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in results {
        let l = r.latency_ms;
        let checks = if r.error.is_some() {
            "error".to_string()
        } else {
            format!("{}/{}", r.checks.iter().filter(|c| c.passed).count(), r.checks.len())
        };
        rows.push(vec![
            r.workload.clone(),
            r.store.clone(),
            r.nodes.to_string(),
            r.initial.to_string(),
            r.measured.to_string(),
            r.bound.to_string(),
            format!("{:.2}", r.wall_secs),
            format!("{:.1}", r.pods_per_sec),
            opt(r.threshold, 0),
            opt(r.ratio, 2),
            opt(l.map(|l| l.p50), 1),
            opt(l.map(|l| l.p99), 1),
            opt(l.map(|l| l.max), 1),
            r.work.attempts.to_string(),
            r.work.unschedulable.to_string(),
            r.work.bind_failures.to_string(),
            format!("{:.0}", r.peak_rss_mib),
            checks,
        ]);
    }
    table(&rows)
}

/// `rows` as a table: left-aligned first two columns, right-aligned others.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(String::len).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            let sep = if c == 0 { "" } else { "  " };
            let _ = if c < 2 { write!(line, "{sep}{cell:<w$}") } else { write!(line, "{sep}{cell:>w$}") };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> CaseResult {
        let shape = Shape { nodes: 50, initial: 10, measured: 100 };
        let mut r = CaseResult::new(Workload::Basic, StoreKind::Memory, shape);
        r.bound = 100;
        r.wall_secs = 0.5;
        r.pods_per_sec = 200.0;
        r.ratio = Some(200.0 / 680.0);
        r.latency_ms = Some(Latency { count: 100, p50: 1.25, p99: 9.5, max: 12.0 });
        r.checks = vec![Check {
            name: "every measured pod bound".into(),
            passed: true,
            detail: "100 of 100".into(),
        }];
        r
    }

    #[test]
    fn a_case_passes_only_with_checks_that_all_hold_and_no_error() {
        let mut r = result();
        assert!(r.passed());
        r.checks[0].passed = false;
        assert!(!r.passed());
        let mut r = result();
        r.error = Some("boom".into());
        assert!(!r.passed());
        let failed =
            CaseResult::failed(Workload::Memory, StoreKind::Raft3, Workload::Memory.shape(0.01), "x".into());
        assert!(!failed.passed(), "no checks ran");
        assert_eq!((failed.store.as_str(), failed.threshold), ("raft3", Some(810.0)));
    }

    #[test]
    fn the_summary_aligns_one_row_per_case_with_the_threshold_ratio() {
        let mut preemption =
            CaseResult::new(Workload::Preemption, StoreKind::Raft3, Workload::Preemption.shape(0.01));
        preemption.error = Some("timed out".into());
        let text = summary(&[result(), preemption]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("workload ") && lines[0].ends_with("checks"), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells[..10],
            ["SchedulingBasic", "memory", "50", "10", "100", "100", "0.50", "200.0", "680", "0.29"]
        );
        assert_eq!(cells[17], "1/1");
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!((cells[0], cells[8], cells[9], cells[17]), ("PreemptionBasic", "-", "-", "error"));
        // Right-aligned numbers: every line is as wide as the header.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    }

    #[test]
    fn the_case_block_says_what_preemption_and_memory_came_to() {
        let shape = Workload::Preemption.shape(0.01);
        let mut r = CaseResult::new(Workload::Preemption, StoreKind::Memory, shape);
        r.deadline_secs = 5.0;
        r.not_bound = vec![("Unschedulable: 0/50 nodes are available: 50 Insufficient cpu.".into(), 50)];
        let block = case_block(&r);
        assert!(block.contains("high-priority pods bound within 5s: 0 of 50"), "{block}");
        assert!(block.contains("not bound: 50 x Unschedulable"), "{block}");
        let mut m = CaseResult::new(Workload::Memory, StoreKind::Memory, Workload::Memory.shape(0.01));
        m.peak_rss_mib = 300.0;
        assert!(case_block(&m).contains("peak RSS 300 MiB, target < 1024 MiB met"));
    }
}
