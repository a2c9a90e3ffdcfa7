//! Smoke tests of the harness binaries: each runs a built harness with small, seeded settings
//! and checks the figures it prints, so a harness that stops working fails CI.

mod t10_controller_quick;
mod t20_controller_raft3;
mod t30_controller_timeout;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

/// Runs `controller_bench` with `args`, killing it if it runs longer than `limit`.
async fn controller_bench(args: &[&str], limit: Duration) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_controller_bench"));
    command.args(args).kill_on_drop(true);
    match tokio::time::timeout(limit, command.output()).await {
        Ok(output) => output.expect("controller_bench starts"),
        Err(_) => {
            panic!("controller_bench {args:?} ran longer than {limit:?}: a phase or its shutdown hangs")
        }
    }
}

/// The `key=value` pairs of the `summary` line.
fn summary(stdout: &str) -> BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("summary "))
        .unwrap_or_else(|| panic!("no summary in\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{pair:?} is not key=value"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The cells of the first table row of `phase`.
fn row(stdout: &str, phase: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(phase))
        .unwrap_or_else(|| panic!("no {phase} row in\n{stdout}"));
    line.split_whitespace().map(String::from).collect()
}

/// A figure parsed as a number.
fn number(v: &str) -> f64 {
    v.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{v:?} is not a number"))
}

/// Checks a successful run of `replicas` pods: the exit status, the summary's counts (measured
/// from lists of the pods) and every phase's row.
fn check_run(output: &Output, store: &str, replicas: usize) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "controller_bench failed: {}\n{stdout}\n{stderr}", output.status);
    let s = summary(&stdout);
    let n = replicas.to_string();
    assert_eq!(s["store"], store);
    assert_eq!(s["replicas"], n);
    assert_eq!(s["available"], n, "pods available after create\n{stdout}");
    assert_eq!(s["updated"], n, "pods of the new template after the rollout\n{stdout}");
    assert_eq!(s["remaining"], "0", "pods left after scaling to zero\n{stdout}");
    for phase in ["create", "rollout", "scale_to_zero"] {
        let cells = row(&stdout, phase);
        assert_eq!(cells[1], n, "{phase} handled every pod\n{stdout}");
        assert!(number(&cells[2]) > 0.0, "{phase} took time\n{stdout}");
        assert!(number(&s[phase]) > 0.0);
    }
    // Startup latencies were measured: positive, p99 at least p50.
    for (p50, p99) in
        [("startup_p50_ms", "startup_p99_ms"), ("rollout_startup_p50_ms", "rollout_startup_p99_ms")]
    {
        let (p50, p99) = (number(&s[p50]), number(&s[p99]));
        assert!(p50 > 0.0 && p99 >= p50, "{p50} {p99}\n{stdout}");
    }
    let setup = row(&stdout, "setup");
    assert!(number(&setup[2]) > 0.0, "setup took time\n{stdout}");
}
