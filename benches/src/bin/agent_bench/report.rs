//! What a run measured, and how it is printed: a few `#` lines of context, one table per
//! window (idle, steady) with a row per process, the pod startup latencies, the teardown,
//! the targets, and a last `summary` line of `key=value` pairs for scripts (the smoke
//! test reads it). Whatever was measured is printed even when a later phase failed.

use std::fmt::Write as _;
use std::time::Duration;

use crate::measure::{self, Reading};
use crate::run::{SLICE, busiest_slice};

/// The targets for the agent at steady state with 110 pods.
pub(crate) const RSS_TARGET_MIB: f64 = 30.0;
/// CPU target, in % of one core.
pub(crate) const CPU_TARGET_PCT: f64 = 2.0;

/// Starting the agent.
#[derive(Debug)]
pub(crate) struct Startup {
    /// From starting `flotilla agent` to its summary (certificates issued).
    pub(crate) joined: Duration,
    /// From starting it to its node Ready.
    pub(crate) ready: Duration,
}

/// Readings over a window.
#[derive(Debug)]
pub(crate) struct Window {
    /// Its length.
    pub(crate) length: Duration,
    /// The agent, once a second.
    pub(crate) agent: Vec<Reading>,
    /// The server, once a second.
    pub(crate) server: Vec<Reading>,
    /// Docker's processes: name, how many, % of one core.
    pub(crate) daemons: Vec<(&'static str, usize, Option<f64>)>,
}

/// The node with no pods.
#[derive(Debug)]
pub(crate) struct Idle {
    /// Its readings.
    pub(crate) window: Window,
}

/// Creating the pods until all run.
#[derive(Debug)]
pub(crate) struct Ramp {
    /// Creating them (the API calls).
    pub(crate) created: Duration,
    /// Per pod, from its binding to it running.
    pub(crate) bind_to_running: Vec<Duration>,
    /// From the first creation to the last pod running.
    pub(crate) create_to_all_running: Duration,
    /// From the first binding to the last pod running.
    pub(crate) bind_to_all_running: Option<Duration>,
    /// CPU seconds the agent used meanwhile.
    pub(crate) agent_cpu_secs: f64,
    /// CPU seconds the server used meanwhile.
    pub(crate) server_cpu_secs: f64,
}

/// The node with every pod running, after the settle period.
#[derive(Debug)]
pub(crate) struct Steady {
    /// Its readings.
    pub(crate) window: Window,
    /// Pods running at its end.
    pub(crate) running: usize,
    /// Container restarts during it.
    pub(crate) restarts: u32,
    /// Pod watch events during it (status churn).
    pub(crate) watch_events: u64,
}

/// Deleting the pods and stopping.
#[derive(Debug, Default)]
pub(crate) struct Teardown {
    /// Pods deleted.
    pub(crate) deleted: usize,
    /// From the first deletion until the last pod was gone from the API.
    pub(crate) pods_gone: Option<Duration>,
    /// From the first deletion until Docker listed none of the node's containers.
    pub(crate) containers_gone: Option<Duration>,
    /// Containers the harness force-removed at the end (the agent left them).
    pub(crate) leftover_containers: Option<usize>,
    /// Images this run created and removed.
    pub(crate) images_removed: Vec<&'static str>,
    /// How the processes exited.
    pub(crate) exits: Vec<String>,
    /// What went wrong.
    pub(crate) errors: Vec<String>,
}

/// Everything measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) startup: Option<Startup>,
    pub(crate) idle: Option<Idle>,
    pub(crate) ramp: Option<Ramp>,
    pub(crate) steady: Option<Steady>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

fn ms(d: Option<Duration>) -> String {
    opt(d.map(|d| d.as_secs_f64() * 1000.0), 0)
}

fn secs(d: Option<Duration>) -> String {
    opt(d.map(|d| d.as_secs_f64()), 2)
}

/// One process's figures over a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcFigures {
    pub(crate) cpu_pct: Option<f64>,
    pub(crate) busiest_pct: Option<f64>,
    pub(crate) rss_mib: f64,
    pub(crate) rss_min_mib: f64,
    pub(crate) rss_max_mib: f64,
    pub(crate) hwm_mib: f64,
    pub(crate) anon_mib: f64,
    pub(crate) file_mib: f64,
    pub(crate) threads: u64,
}

/// The figures of `readings` (at least one); `None` without readings.
pub(crate) fn figures(readings: &[Reading], ticks_per_sec: u64) -> Option<ProcFigures> {
    let (first, last) = (readings.first()?, readings.last()?);
    let rss = readings.iter().map(|r| r.status.rss_kib);
    Some(ProcFigures {
        cpu_pct: measure::cpu_percent(first, last, ticks_per_sec),
        busiest_pct: busiest_slice(readings, SLICE, ticks_per_sec),
        rss_mib: mib(last.status.rss_kib),
        rss_min_mib: mib(rss.clone().min().unwrap_or(0)),
        rss_max_mib: mib(rss.max().unwrap_or(0)),
        hwm_mib: mib(last.status.hwm_kib),
        anon_mib: mib(last.status.anon_kib),
        file_mib: mib(last.status.file_kib),
        threads: last.status.threads,
    })
}

/// The table of a window.
fn window_table(title: &str, w: &Window, ticks_per_sec: u64) -> String {
    let mut out = format!("{title} ({:.1} s)\n", w.length.as_secs_f64());
    let _ = writeln!(
        out,
        "  {:<14} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "process", "cpu_%", "max10s_%", "rss_MiB", "rss_min", "rss_max", "hwm_MiB", "anon", "file", "threads"
    );
    for (name, readings) in [("agent", &w.agent), ("server (up)", &w.server)] {
        if let Some(f) = figures(readings, ticks_per_sec) {
            let _ = writeln!(
                out,
                "  {name:<14} {:>7} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7}",
                opt(f.cpu_pct, 2),
                opt(f.busiest_pct, 2),
                f.rss_mib,
                f.rss_min_mib,
                f.rss_max_mib,
                f.hwm_mib,
                f.anon_mib,
                f.file_mib,
                f.threads
            );
        }
    }
    for (name, count, pct) in &w.daemons {
        let _ = writeln!(out, "  {:<14} {:>7}   ({count} process(es), CPU only)", name, opt(*pct, 2));
    }
    out
}

/// The whole report; `header` lines come first.
pub(crate) fn render(
    header: &[String],
    r: &Results,
    t: &Teardown,
    ticks_per_sec: u64,
    pods: usize,
) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    if let Some(s) = &r.startup {
        let _ = writeln!(
            out,
            "startup: agent joined (certificates issued) in {:.2} s, node Ready {:.2} s after the agent started",
            s.joined.as_secs_f64(),
            s.ready.as_secs_f64()
        );
    }
    if let Some(idle) = &r.idle {
        out.push_str(&window_table("idle, no pods", &idle.window, ticks_per_sec));
    }
    let mut summary = vec![format!("pods={pods}")];
    if let Some(ramp) = &r.ramp {
        let q = |q: f64| measure::percentile(&ramp.bind_to_running, q);
        let max = ramp.bind_to_running.iter().max().copied();
        let _ = writeln!(
            out,
            "ramp: {} pods created in {:.2} s; bind->Running ms p50 {} p99 {} max {} (n={}); \
             first create->all Running {:.2} s; first bind->all Running {} s; \
             CPU during ramp: agent {:.2} s, server {:.2} s",
            pods,
            ramp.created.as_secs_f64(),
            ms(q(0.5)),
            ms(q(0.99)),
            ms(max),
            ramp.bind_to_running.len(),
            ramp.create_to_all_running.as_secs_f64(),
            secs(ramp.bind_to_all_running),
            ramp.agent_cpu_secs,
            ramp.server_cpu_secs
        );
        summary.push(format!("running={}", ramp.bind_to_running.len()));
        summary.push(format!("bind_running_p50_ms={}", ms(q(0.5))));
        summary.push(format!("bind_running_p99_ms={}", ms(q(0.99))));
        summary.push(format!("bind_running_max_ms={}", ms(max)));
        summary.push(format!("all_running_s={:.2}", ramp.create_to_all_running.as_secs_f64()));
    }
    if let Some(steady) = &r.steady {
        let title = format!(
            "steady, {} pods running, {} container restarts, {} pod watch events during the window",
            steady.running, steady.restarts, steady.watch_events
        );
        out.push_str(&window_table(&title, &steady.window, ticks_per_sec));
        let agent = figures(&steady.window.agent, ticks_per_sec);
        let server = figures(&steady.window.server, ticks_per_sec);
        if let Some(a) = agent {
            let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
            let _ = writeln!(
                out,
                "targets: agent RSS < {RSS_TARGET_MIB} MiB: {} (VmRSS {:.1} MiB, peak VmHWM {:.1} MiB); \
                 agent CPU < {CPU_TARGET_PCT}% of one core: {} ({}%)",
                verdict(a.rss_mib < RSS_TARGET_MIB),
                a.rss_mib,
                a.hwm_mib,
                verdict(a.cpu_pct.is_some_and(|c| c < CPU_TARGET_PCT)),
                opt(a.cpu_pct, 2)
            );
            summary.push(format!("agent_cpu_pct={}", opt(a.cpu_pct, 3)));
            summary.push(format!("agent_rss_mib={:.1}", a.rss_mib));
            summary.push(format!("agent_hwm_mib={:.1}", a.hwm_mib));
        }
        if let Some(s) = server {
            summary.push(format!("server_cpu_pct={}", opt(s.cpu_pct, 3)));
            summary.push(format!("server_rss_mib={:.1}", s.rss_mib));
        }
        summary.push(format!("restarts={}", steady.restarts));
    }
    let _ = writeln!(
        out,
        "teardown: {} pods deleted, gone from the API after {} s, containers gone after {} s, \
         leftover containers force-removed: {}, images removed: {:?}; exits: {}",
        t.deleted,
        secs(t.pods_gone),
        secs(t.containers_gone),
        t.leftover_containers.map_or_else(|| "-".to_string(), |n| n.to_string()),
        t.images_removed,
        t.exits.join(", ")
    );
    for e in &t.errors {
        let _ = writeln!(out, "teardown error: {e}");
    }
    summary.push(format!("pods_gone_s={}", secs(t.pods_gone)));
    summary.push(format!(
        "leftover_containers={}",
        t.leftover_containers.map_or_else(|| "-".to_string(), |n| n.to_string())
    ));
    summary.push(format!("teardown_errors={}", t.errors.len()));
    let _ = writeln!(out, "summary {}", summary.join(" "));
    out
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::measure::Status;

    fn reading(at: Instant, secs: u64, ticks: u64, rss_kib: u64) -> Reading {
        let status = Status { rss_kib, hwm_kib: 40 * 1024, anon_kib: 1024, file_kib: 2048, threads: 5 };
        Reading { at: Some(at + Duration::from_secs(secs)), cpu_ticks: ticks, status }
    }

    #[test]
    fn window_figures_average_and_find_the_busiest_slice() {
        let t0 = Instant::now();
        // 20 s at one reading a second: 1 tick/s for 10 s, then 5 ticks/s for 10 s.
        let mut ticks = 0;
        let readings: Vec<Reading> = (0..=20)
            .map(|s| {
                let r = reading(t0, s, ticks, 20 * 1024 + s * 10);
                ticks += if s < 10 { 1 } else { 5 };
                r
            })
            .collect();
        let f = figures(&readings, 100).expect("readings");
        // 60 ticks in 20 s at 100 per second: 3% of a core; the second half 5%.
        assert!((f.cpu_pct.expect("an interval") - 3.0).abs() < 1e-9, "{f:?}");
        assert!((f.busiest_pct.expect("two slices") - 5.0).abs() < 1e-9, "{f:?}");
        assert!((f.rss_min_mib - 20.0).abs() < 1e-9 && f.rss_max_mib > f.rss_min_mib, "{f:?}");
        assert!((f.hwm_mib - 40.0).abs() < 1e-9);
        assert_eq!(figures(&[], 100).map(|f| f.threads), None);
    }

    #[test]
    fn the_report_ends_with_a_summary_line_and_names_missed_targets() {
        let t0 = Instant::now();
        let agent = vec![reading(t0, 0, 0, 35 * 1024), reading(t0, 10, 50, 35 * 1024)];
        let window =
            Window { length: Duration::from_secs(10), agent: agent.clone(), server: agent, daemons: vec![] };
        let results = Results {
            ramp: Some(Ramp {
                created: Duration::from_millis(300),
                bind_to_running: vec![Duration::from_millis(800), Duration::from_millis(1200)],
                create_to_all_running: Duration::from_secs(2),
                bind_to_all_running: Some(Duration::from_millis(1900)),
                agent_cpu_secs: 0.5,
                server_cpu_secs: 0.4,
            }),
            steady: Some(Steady { window, running: 2, restarts: 0, watch_events: 0 }),
            ..Results::default()
        };
        let text = render(&["h".into()], &results, &Teardown::default(), 100, 2);
        assert!(text.starts_with("# h\n"), "{text}");
        // 50 ticks in 10 s: 5% of a core, over the 2% target; 35 MiB is over 30 MiB.
        assert!(text.contains("agent RSS < 30 MiB: MISSED (VmRSS 35.0 MiB"), "{text}");
        assert!(text.contains("of one core: MISSED (5.00%)"), "{text}");
        let summary = text.lines().last().expect("lines");
        assert!(
            summary.starts_with("summary pods=2 running=2 bind_running_p50_ms=800 bind_running_p99_ms=1200"),
            "{summary}"
        );
        assert!(summary.contains(" agent_cpu_pct=5.000 agent_rss_mib=35.0 "), "{summary}");
    }
}
