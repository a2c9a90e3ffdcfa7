//! The printed figures: one table of phase times and pod startup latencies, one of the work
//! the components did, and a `summary` line of `key=value` pairs for scripts (the smoke test
//! parses it).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cluster::Setup;
use crate::measure::{max_ms, quantile_ms};
use crate::phases::PhaseReport;

/// Kubernetes' pod startup SLO: p99 under 5 s (for stateless pods, image pull excluded).
pub(crate) const STARTUP_SLO: Duration = Duration::from_secs(5);

/// A latency cell: milliseconds, or `-` without samples.
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

/// The rows of the phase table: name, items, seconds, status seconds, rate, the created to
/// bound p50/p99 and the created to ready p50/p90/p99/max (ms), CPU seconds.
fn phase_rows(setup: Option<&Setup>, nodes: usize, phases: &[PhaseReport]) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["phase", "items", "secs", "status_s", "per_sec", "bound_p50", "bound_p99", "ready_p50", "ready_p90"]
            .into_iter()
            .chain(["ready_p99", "ready_max", "cpu_s"])
            .map(String::from)
            .collect(),
    ];
    if let Some(s) = setup {
        let secs = s.elapsed.as_secs_f64();
        let mut row = vec!["setup".into(), nodes.to_string(), format!("{secs:.2}"), "-".into()];
        row.push(format!("{:.0}", nodes as f64 / secs.max(1e-9)));
        row.extend(std::iter::repeat_n("-".to_string(), 6));
        row.push(format!("{:.1}", s.cpu_secs));
        rows.push(row);
    }
    for p in phases {
        let secs = p.elapsed.as_secs_f64();
        let (bound, ready) = match &p.startup {
            Some(s) => (Some(&s.to_bound), Some(&s.to_ready)),
            None => (None, None),
        };
        let q = |h: Option<&Histogram<u64>>, q: f64| ms(h.and_then(|h| quantile_ms(h, q)));
        rows.push(vec![
            p.name.into(),
            p.pods.to_string(),
            format!("{secs:.2}"),
            format!("{:.2}", p.status_at.as_secs_f64()),
            format!("{:.0}", p.pods as f64 / secs.max(1e-9)),
            q(bound, 0.5),
            q(bound, 0.99),
            q(ready, 0.5),
            q(ready, 0.9),
            q(ready, 0.99),
            ms(ready.and_then(max_ms)),
            format!("{:.1}", p.cpu_secs),
        ]);
    }
    rows
}

/// The rows of the work table.
fn work_rows(phases: &[PhaseReport]) -> Vec<Vec<String>> {
    let header = [
        "phase",
        "sched_cycles",
        "sched_bound",
        "unschedulable",
        "bind_failures",
        "rs_reconciles",
        "rs_errors",
        "deploy_reconciles",
        "deploy_errors",
        "watch_retries",
        "lease_failures",
        "elections",
        "nodes_used",
    ];
    let mut rows = vec![header.into_iter().map(String::from).collect()];
    for p in phases {
        let w = &p.work;
        let cells = [
            w.sched_cycles,
            w.sched_bound,
            w.unschedulable,
            w.bind_failures,
            w.rs_reconciles.0,
            w.rs_reconciles.1,
            w.deploy_reconciles.0,
            w.deploy_reconciles.1,
            w.watch_retries,
            w.lease_failures,
            w.elections,
            p.tally.nodes as u64,
        ];
        rows.push(std::iter::once(p.name.to_string()).chain(cells.iter().map(u64::to_string)).collect());
    }
    rows
}

/// `rows` as a table: left-aligned first column, right-aligned others.
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
            let _ = if c == 0 { write!(line, "{cell:<w$}") } else { write!(line, "  {cell:>w$}") };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The summary's `key=value` pairs.
pub(crate) fn summary(replicas: usize, nodes: usize, store: &str, phases: &[PhaseReport]) -> String {
    let find = |name: &str| phases.iter().find(|p| p.name == name);
    let mut pairs =
        vec![("store", store.to_string()), ("replicas", replicas.to_string()), ("nodes", nodes.to_string())];
    let count =
        |name: &str, f: fn(&PhaseReport) -> usize| find(name).map_or("-".to_string(), |p| f(p).to_string());
    pairs.push(("available", count("create", |p| p.tally.ready)));
    pairs.push(("updated", count("rollout", |p| p.tally.ready)));
    pairs.push(("remaining", count("scale_to_zero", |p| p.tally.total)));
    for p in phases {
        pairs.push((p.name, format!("{:.2}s", p.elapsed.as_secs_f64())));
    }
    let total: Duration = phases.iter().map(|p| p.elapsed).sum();
    pairs.push(("total", format!("{:.2}s", total.as_secs_f64())));
    let startup = |name: &str, q: f64| {
        let h = find(name).and_then(|p| p.startup.as_ref()).map(|s| &s.to_ready);
        ms(h.and_then(|h| quantile_ms(h, q)))
    };
    pairs.push(("startup_p50_ms", startup("create", 0.5)));
    pairs.push(("startup_p99_ms", startup("create", 0.99)));
    pairs.push(("rollout_startup_p50_ms", startup("rollout", 0.5)));
    pairs.push(("rollout_startup_p99_ms", startup("rollout", 0.99)));
    let p99s: Vec<f64> = phases
        .iter()
        .filter_map(|p| p.startup.as_ref().and_then(|s| quantile_ms(&s.to_ready, 0.99)))
        .collect();
    let slo_ms = STARTUP_SLO.as_secs_f64() * 1000.0;
    let met = !p99s.is_empty() && p99s.iter().all(|&p| p < slo_ms);
    pairs.push(("startup_slo_met", met.to_string()));
    let mut out = String::from("summary");
    for (k, v) in pairs {
        let _ = write!(out, " {k}={v}");
    }
    out
}

/// Prints both tables and the summary.
pub(crate) fn print(
    setup: Option<&Setup>,
    replicas: usize,
    nodes: usize,
    store: &str,
    phases: &[PhaseReport],
) {
    println!("# times in seconds; latencies in ms from a pod's first sighting by a watcher to it seen bound");
    println!(
        "# (bound_*) and seen Ready (ready_*); per_sec is items/secs; status_s is when the Deployment's"
    );
    println!("# status reached the goal, secs when the pods (deleted ones included) had too");
    print!("{}", table(&phase_rows(setup, nodes, phases)));
    println!();
    print!("{}", table(&work_rows(phases)));
    println!();
    println!("{}", summary(replicas, nodes, store, phases));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goal::Tally;
    use crate::measure::{histogram, record};
    use crate::observe::Startup;
    use crate::phases::Work;

    fn phase(name: &'static str, pods: usize, secs: u64, ready_ms: &[u64], tally: Tally) -> PhaseReport {
        let mut to_ready = histogram();
        for &r in ready_ms {
            record(&mut to_ready, Duration::from_millis(r));
        }
        let startup = (!ready_ms.is_empty()).then(|| Startup {
            created: pods,
            ready: ready_ms.len(),
            to_ready,
            to_bound: histogram(),
        });
        PhaseReport {
            name,
            pods,
            status_at: Duration::from_secs(secs),
            elapsed: Duration::from_secs(secs),
            startup,
            cpu_secs: 1.0,
            work: Work::default(),
            tally,
        }
    }

    #[test]
    fn the_summary_reports_measured_counts_and_the_slo() {
        let ready = Tally { total: 3, ready: 3, bound: 3, ..Tally::default() };
        let phases = [
            phase("create", 3, 2, &[100, 200, 6_000], ready.clone()),
            phase("rollout", 3, 3, &[100, 100, 100], ready),
            phase("scale_to_zero", 3, 1, &[], Tally::default()),
        ];
        let line = summary(3, 2, "memory", &phases);
        for expected in [
            "available=3",
            "updated=3",
            "remaining=0",
            "create=2.00s",
            "total=6.00s",
            "startup_p99_ms=6000",
            "rollout_startup_p50_ms=100.0",
            "startup_slo_met=false",
        ] {
            assert!(line.contains(expected), "{expected} missing from {line}");
        }
        let fast = [phase("create", 1, 1, &[10], Tally::default())];
        let line = summary(1, 1, "memory", &fast);
        assert!(line.contains("startup_slo_met=true") && line.contains("updated=-"), "{line}");
    }

    #[test]
    fn tables_align_columns_and_mark_missing_latencies() {
        let phases = [phase("scale_to_zero", 10, 2, &[], Tally::default())];
        let setup = Setup { elapsed: Duration::from_secs(4), cpu_secs: 0.5 };
        let text = table(&phase_rows(Some(&setup), 8, &phases));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("setup") && lines[1].contains(" 8 ") && lines[1].contains(" 2 "),
            "{text}"
        );
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells[..5], ["scale_to_zero", "10", "2.00", "2.00", "5"]);
        assert_eq!(cells[5], "-");
        // Right-aligned: every line ends at the same column.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    }
}
