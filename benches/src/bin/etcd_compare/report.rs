//! Results: one line per finished case, then per case and client count the medians over the
//! repeats for each system and the Flotilla/etcd ratios of those medians, the members' CPU
//! time per case and their peak memory; and the raw results as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::cluster::System;
use crate::workload::{Case, Outcome};

/// One case at one client count on one system in one repeat.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CaseResult {
    pub(crate) system: System,
    pub(crate) repeat: usize,
    pub(crate) case: Case,
    pub(crate) clients: usize,
    pub(crate) conns: usize,
    /// Seconds measured (first request to last completion; watch: to the last delivery).
    pub(crate) secs: f64,
    pub(crate) ops: u64,
    pub(crate) ops_per_s: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) errors: u64,
    /// CAS transactions whose compare failed (counted as ops).
    pub(crate) conflicts: u64,
    /// Watch: puts the writers completed.
    pub(crate) writes: u64,
    /// Watch: events expected but not delivered.
    pub(crate) missed: u64,
    /// CPU seconds the three members used during the case.
    pub(crate) cpu_s: f64,
    /// CPU seconds this harness (the clients) used during the case.
    pub(crate) client_cpu_s: f64,
}

impl CaseResult {
    /// The result of `outcome`, which ran with `clients` tasks over `conns` connections.
    pub(crate) fn new(
        (system, repeat, case): (System, usize, Case),
        (clients, conns): (usize, usize),
        outcome: &Outcome,
        (cpu_s, client_cpu_s): (f64, f64),
    ) -> CaseResult {
        let secs = outcome.elapsed.as_secs_f64();
        let q = |q: f64| if outcome.latency.is_empty() { 0 } else { outcome.latency.value_at_quantile(q) };
        CaseResult {
            system,
            repeat,
            case,
            clients,
            conns,
            secs,
            ops: outcome.ops,
            ops_per_s: if secs > 0.0 { outcome.ops as f64 / secs } else { 0.0 },
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: if outcome.latency.is_empty() { 0 } else { outcome.latency.max() },
            errors: outcome.errors,
            conflicts: outcome.conflicts,
            writes: outcome.writes,
            missed: outcome.missed,
            cpu_s,
            client_cpu_s,
        }
    }
}

/// One system's cluster in one repeat.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SystemRun {
    pub(crate) system: System,
    pub(crate) repeat: usize,
    /// Sum of the three members' peak resident sets (`VmHWM`) at the end of the run.
    pub(crate) peak_rss_mib: f64,
    /// Seconds until every member answered and a leader existed.
    pub(crate) ready_secs: f64,
    /// Seconds the key load took.
    pub(crate) load_secs: f64,
}

/// The column names of [`line`].
pub(crate) const HEADER: &str = "system,repeat,case,clients,ops_per_s,p50_us,p99_us,errors,cpu_s,\
                                 conns,max_us,conflicts,writes,missed,client_cpu_s";

/// One finished case as a CSV line (columns [`HEADER`]).
pub(crate) fn line(r: &CaseResult) -> String {
    format!(
        "{},{},{},{},{:.0},{},{},{},{:.2},{},{},{},{},{},{:.2}",
        r.system,
        r.repeat,
        r.case,
        r.clients,
        r.ops_per_s,
        r.p50_us,
        r.p99_us,
        r.errors,
        r.cpu_s,
        r.conns,
        r.max_us,
        r.conflicts,
        r.writes,
        r.missed,
        r.client_cpu_s
    )
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `a / b`, when both exist and `b` is not zero.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Medians over the repeats of one system at one case and client count.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Medians {
    ops_per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    cpu_s: Option<f64>,
    /// CPU microseconds the members spent per operation.
    cpu_us_per_op: Option<f64>,
}

fn medians<'a>(results: impl Iterator<Item = &'a CaseResult> + Clone) -> Medians {
    let of = |f: fn(&CaseResult) -> f64| median(results.clone().map(f).collect());
    Medians {
        ops_per_s: of(|r| r.ops_per_s),
        p50_ms: of(|r| r.p50_us as f64 / 1000.0),
        p99_ms: of(|r| r.p99_us as f64 / 1000.0),
        cpu_s: of(|r| r.cpu_s),
        cpu_us_per_op: median(results.filter(|r| r.ops > 0).map(|r| r.cpu_s * 1e6 / r.ops as f64).collect()),
    }
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// Prints the tables of medians and ratios over everything in `results` and `runs`.
pub(crate) fn print_summary(results: &[CaseResult], runs: &[SystemRun]) {
    if results.is_empty() {
        println!("\nno case finished");
        return;
    }
    let mut by_case: BTreeMap<(Case, usize), BTreeMap<System, Vec<&CaseResult>>> = BTreeMap::new();
    for r in results {
        by_case.entry((r.case, r.clients)).or_default().entry(r.system).or_default().push(r);
    }
    let repeats = results.iter().map(|r| r.repeat).max().unwrap_or(0) + 1;
    println!(
        "\nmedians over {repeats} repeat(s); ratio = flotilla / etcd of the medians (watch: events delivered/s and delivery latency)"
    );
    println!(
        "{:<6} {:>7} | {:>11} {:>8} {:>8} | {:>11} {:>8} {:>8} | {:>9} {:>9}",
        "case",
        "clients",
        "flo ops/s",
        "p50 ms",
        "p99 ms",
        "etcd ops/s",
        "p50 ms",
        "p99 ms",
        "ops ratio",
        "p99 ratio"
    );
    let mut cpu_rows = Vec::new();
    for ((case, clients), systems) in &by_case {
        let m = |s: System| systems.get(&s).map(|rs| medians(rs.iter().copied())).unwrap_or_default();
        let (f, e) = (m(System::Flotilla), m(System::Etcd));
        println!(
            "{:<6} {:>7} | {:>11} {:>8} {:>8} | {:>11} {:>8} {:>8} | {:>9} {:>9}",
            case.to_string(),
            clients,
            cell(f.ops_per_s, 0),
            cell(f.p50_ms, 2),
            cell(f.p99_ms, 2),
            cell(e.ops_per_s, 0),
            cell(e.p50_ms, 2),
            cell(e.p99_ms, 2),
            cell(ratio(f.ops_per_s, e.ops_per_s), 2),
            cell(ratio(f.p99_ms, e.p99_ms), 2),
        );
        cpu_rows.push((*case, *clients, f, e));
    }
    println!("\nmembers' CPU per case (sum of 3 processes; medians)");
    println!(
        "{:<6} {:>7} | {:>10} {:>12} | {:>10} {:>12}",
        "case", "clients", "flo cpu s", "flo µs/op", "etcd cpu s", "etcd µs/op"
    );
    for (case, clients, f, e) in cpu_rows {
        println!(
            "{:<6} {:>7} | {:>10} {:>12} | {:>10} {:>12}",
            case.to_string(),
            clients,
            cell(f.cpu_s, 2),
            cell(f.cpu_us_per_op, 1),
            cell(e.cpu_s, 2),
            cell(e.cpu_us_per_op, 1),
        );
    }
    println!("\npeak RSS (sum of the 3 members' VmHWM at the end of each run; median over repeats)");
    for system in [System::Flotilla, System::Etcd] {
        let rss = median(runs.iter().filter(|r| r.system == system).map(|r| r.peak_rss_mib).collect());
        if rss.is_some() {
            println!("{:<9} {:>8} MiB", system.to_string(), cell(rss, 1));
        }
    }
}

/// Everything the JSON output holds.
#[derive(Serialize)]
pub(crate) struct Raw<'a, A: Serialize> {
    /// The options the run used.
    pub(crate) settings: A,
    pub(crate) cases: &'a [CaseResult],
    pub(crate) runs: &'a [SystemRun],
}

/// Writes `raw` to `path` as pretty-printed JSON.
pub(crate) fn write_json<A: Serialize>(path: &Path, raw: &Raw<'_, A>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(raw).context("encoding the results")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![7.5]), Some(7.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn ratio_needs_both_sides_and_a_nonzero_divisor() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(3.0), None), None);
    }

    fn result(system: System, repeat: usize, ops: u64, latencies_us: &[u64], cpu_s: f64) -> CaseResult {
        let mut latency = crate::workload::histogram().expect("valid histogram bounds");
        for &l in latencies_us {
            latency.record(l).expect("within the histogram's bounds");
        }
        let outcome = Outcome {
            ops,
            elapsed: Duration::from_secs(2),
            latency,
            errors: 0,
            conflicts: 0,
            writes: 0,
            missed: 0,
        };
        CaseResult::new((system, repeat, Case::Put), (16, 8), &outcome, (cpu_s, 0.5))
    }

    #[test]
    fn results_and_medians_come_from_the_outcomes() {
        let r = result(System::Etcd, 0, 1000, &[100, 200, 300, 400, 10_000], 1.0);
        assert_eq!(r.ops_per_s, 500.0);
        assert_eq!(r.p50_us, 300);
        assert_eq!(r.p99_us, r.max_us);
        assert!(line(&r).starts_with("etcd,0,put,16,500,300,"), "{}", line(&r));
        assert_eq!(line(&r).split(',').count(), HEADER.split(',').count());

        let rs = [
            result(System::Etcd, 0, 1000, &[1000], 1.0),
            result(System::Etcd, 1, 3000, &[3000], 2.0),
            result(System::Etcd, 2, 2000, &[2000], 4.0),
        ];
        let m = medians(rs.iter());
        assert_eq!(m.ops_per_s, Some(1000.0));
        assert_eq!(m.p50_ms, Some(2.0));
        assert_eq!(m.cpu_s, Some(2.0));
        // 1000, 666.7 and 2000 CPU µs per op.
        assert_eq!(m.cpu_us_per_op, Some(1000.0));
    }
}
