//! Smoke tests of the scheduler_perf harness: the built binary runs every workload at a tiny
//! scale (50 nodes) and the JSON it writes is checked, so a harness (or a scheduler) that stops
//! placing pods correctly fails CI.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

/// Runs `scheduler_perf` with `args` plus `--out <dir>/out.json`, killing it if it runs longer
/// than `limit`; returns its output and the parsed JSON.
async fn scheduler_perf(args: &[&str], dir: &Path, limit: Duration) -> (Output, Value) {
    let out = dir.join("out.json");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_scheduler_perf"));
    command.args(args).arg("--out").arg(&out).kill_on_drop(true);
    let output = match tokio::time::timeout(limit, command.output()).await {
        Ok(output) => output.expect("scheduler_perf starts"),
        Err(_) => panic!("scheduler_perf {args:?} ran longer than {limit:?}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json =
        std::fs::read(&out).unwrap_or_else(|e| panic!("no {}: {e}\n{stdout}\n{stderr}", out.display()));
    (output, serde_json::from_slice(&json).expect("the output is JSON"))
}

fn number(case: &Value, key: &str) -> u64 {
    case[key].as_u64().unwrap_or_else(|| panic!("{key} is not a count in {case}"))
}

/// The case of `workload` on `store`.
fn case<'a>(json: &'a Value, workload: &str, store: &str) -> &'a Value {
    json["cases"]
        .as_array()
        .expect("a list of cases")
        .iter()
        .find(|c| c["workload"] == workload && c["store"] == store)
        .unwrap_or_else(|| panic!("no {workload} on {store} in {json:#}"))
}

/// Every check of `case` held, it ran to the end, and its initial pods were all bound.
fn assert_sound(case: &Value) {
    assert_eq!(case["error"], Value::Null, "{case:#}");
    let checks = case["checks"].as_array().expect("a list of checks");
    assert!(checks.len() >= 2, "{case:#}");
    for check in checks {
        assert_eq!(check["passed"], true, "{check}\n{case:#}");
    }
    assert_eq!(number(case, "initial_bound"), number(case, "initial"), "{case:#}");
    assert!(number(case, "nodes") > 0);
}

/// Every measured pod of `case` was bound, and the figures say so.
fn assert_all_bound(case: &Value) {
    let measured = number(case, "measured");
    assert!(measured > 0);
    assert_eq!(number(case, "bound"), measured, "{case:#}");
    assert_eq!(case["ending"], "all_bound", "{case:#}");
    assert!(case["pods_per_sec"].as_f64().is_some_and(|v| v > 0.0), "{case:#}");
    let latency = &case["latency_ms"];
    assert_eq!(number(latency, "count"), measured, "{case:#}");
    let (p50, p99) = (latency["p50"].as_f64(), latency["p99"].as_f64());
    assert!(p50.zip(p99).is_some_and(|(p50, p99)| p50 >= 0.0 && p99 >= p50), "{case:#}");
    assert!(number(&case["work"], "attempts") >= measured, "{case:#}");
}

#[tokio::test]
async fn every_workload_at_a_tiny_scale_binds_its_pods_within_their_constraints() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args =
        ["--scale", "0.01", "--seed", "7", "--preemption-deadline", "5", "--stall", "30", "--timeout", "120"];
    let (output, json) = scheduler_perf(&args, dir.path(), Duration::from_secs(600)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json["cases"].as_array().map(Vec::len), Some(7), "{json:#}");
    for workload in [
        "SchedulingBasic",
        "SchedulingPodAntiAffinity",
        "SchedulingPodAffinity",
        "SchedulingNodeAffinity",
        "TopologySpreading",
        "Memory",
    ] {
        let case = case(&json, workload, "memory");
        assert_eq!(number(case, "nodes"), 50, "{case:#}");
        assert_sound(case);
        assert_all_bound(case);
    }
    // The constraint checks ran (not only the generic ones).
    let anti = case(&json, "SchedulingPodAntiAffinity", "memory");
    assert!(anti["checks"].as_array().is_some_and(|c| {
        c.iter().any(|c| c["name"].as_str().is_some_and(|n| n.starts_with("anti-affinity")))
    }));
    let spread = case(&json, "TopologySpreading", "memory");
    assert!(spread["checks"].as_array().is_some_and(|c| {
        c.iter().any(|c| c["name"].as_str().is_some_and(|n| n.starts_with("topology spread")))
    }));

    let preemption = case(&json, "PreemptionBasic", "memory");
    assert_sound(preemption);
    // 4 low-priority pods (900m each) fill every node before the high-priority ones come.
    assert_eq!((number(preemption, "initial"), number(preemption, "measured")), (200, 50));
    assert_eq!(preemption["requires_all_bound"], false);
    // Only what holds without preemption: the count is reported, and no node is overcommitted
    // (a check above). Once DefaultPreemption is in the default profile, tighten this to
    // `assert_all_bound(preemption)` and `victims_deleted >= 3 * measured` (each 3000m pod
    // needs three of its node's four 900m pods gone).
    let bound = number(preemption, "bound");
    assert!(bound <= 50, "{preemption:#}");
    assert!(stdout.contains(&format!("high-priority pods bound within 5s: {bound} of 50")), "{stdout}");
    // The summary table has a row per case.
    assert!(stdout.lines().any(|l| l.starts_with("Memory ") && l.contains(" memory ")), "{stdout}");
}

#[tokio::test]
async fn basic_binds_every_pod_on_three_raft_members() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let args =
        ["--workloads", "Basic", "--store", "raft3", "--scale", "0.01", "--seed", "7", "--timeout", "120"];
    let (output, json) = scheduler_perf(&args, dir.path(), Duration::from_secs(300)).await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let case = case(&json, "SchedulingBasic", "raft3");
    assert_eq!((number(case, "nodes"), number(case, "initial"), number(case, "measured")), (50, 10, 100));
    assert_sound(case);
    assert_all_bound(case);
}
