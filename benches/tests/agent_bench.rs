//! Smoke tests of the agent_bench harness at CI size: three pods, a 1 s settle and a 2 s
//! window, on the process runtime (always) and on Docker (skipped without a daemon, failed
//! instead under `FLOTILLA_REQUIRE_DOCKER=1`). They run the built harness against the built
//! `flotilla` binary (`target/<profile>/flotilla`, which the workspace's test build makes),
//! with the agent as `flotilla-agent` on processes and as `flotilla agent` on Docker, and
//! check its summary line and that it left nothing behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use flotilla_node::runtime::labels;
use flotilla_node::testing::docker_or_skip;

/// A run's whole output, with the summary's fields.
struct Run {
    stdout: String,
    summary: HashMap<String, String>,
}

impl Run {
    fn field(&self, key: &str) -> &str {
        self.summary
            .get(key)
            .map_or_else(|| panic!("no {key} in the summary:\n{}", self.stdout), String::as_str)
    }

    fn number(&self, key: &str) -> f64 {
        let v = self.field(key);
        v.parse().unwrap_or_else(|_| panic!("{key}={v} is not a number:\n{}", self.stdout))
    }

    /// The node name from the `# pids:` line.
    fn node(&self) -> &str {
        let line = self.stdout.lines().find(|l| l.starts_with("# pids:")).expect("a pids line");
        line.rsplit_once("(node ").and_then(|(_, n)| n.strip_suffix(')')).expect("a node name")
    }
}

/// The binary `name` (`flotilla`, `flotilla-agent`) next to the harness.
fn built(name: &str) -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_agent_bench"));
    let path = harness.with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's tests (`cargo test --workspace --all-targets --no-run`), \
         which builds flotilla-examples' binary too",
        path.display()
    );
    path
}

/// Runs the harness at CI size with `runtime` and the agent as `flotilla agent`, or as
/// `agent_bin` (`flotilla-agent`), killed after two minutes. The images stay: other test
/// binaries running in parallel use the same busybox image.
async fn agent_bench(runtime: &str, agent_bin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent_bench"));
    command
        .args(["--runtime", runtime, "--pods", "3", "--settle-secs", "1", "--window-secs", "2"])
        .args([
            "--idle-secs",
            "0",
            "--timeout-secs",
            "60",
            "--child-log",
            "warn",
            "--keep-images",
            "--flotilla",
        ])
        .arg(built("flotilla"))
        .kill_on_drop(true);
    if let Some(bin) = agent_bin {
        command.arg("--agent-bin").arg(built(bin));
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("agent_bench finished within two minutes")
        .expect("agent_bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "agent_bench --runtime {runtime}: {}\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout.lines().find_map(|l| l.strip_prefix("summary ")).expect("a summary line");
    let summary = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run { stdout, summary }
}

/// What every run must show: three pods ran and stayed up, latencies in order, figures
/// measured, everything deleted.
fn assert_sound(run: &Run) {
    assert_eq!(run.field("running"), "3", "{}", run.stdout);
    assert_eq!(run.field("restarts"), "0", "{}", run.stdout);
    assert_eq!(run.field("teardown_errors"), "0", "{}", run.stdout);
    let (p50, p99, max) = (
        run.number("bind_running_p50_ms"),
        run.number("bind_running_p99_ms"),
        run.number("bind_running_max_ms"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{}", run.stdout);
    assert!(run.number("all_running_s") > 0.0, "{}", run.stdout);
    assert!(run.number("agent_cpu_pct") >= 0.0, "{}", run.stdout);
    assert!(run.number("agent_rss_mib") > 1.0, "a running agent has a resident set: {}", run.stdout);
    assert!(run.number("agent_hwm_mib") >= run.number("agent_rss_mib"), "{}", run.stdout);
    assert!(run.number("server_rss_mib") > 1.0, "{}", run.stdout);
    assert!(run.number("pods_gone_s") > 0.0, "the pods were deleted and went: {}", run.stdout);
    assert!(run.stdout.contains("teardown: 3 pods deleted"), "{}", run.stdout);
}

#[tokio::test]
async fn a_tiny_run_on_the_process_runtime_measures_and_cleans_up() {
    let run = agent_bench("process", Some("flotilla-agent")).await;
    assert_sound(&run);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("# agent: ") && l.ends_with("flotilla-agent")),
        "{}",
        run.stdout
    );
    assert_eq!(run.field("leftover_containers"), "-", "no Docker involved: {}", run.stdout);
}

#[tokio::test]
async fn a_tiny_run_on_docker_measures_and_leaves_no_container() {
    let Some(docker) = docker_or_skip("agent_bench on docker").await else {
        return;
    };
    let run = agent_bench("docker", None).await;
    assert_sound(&run);
    assert_eq!(run.field("leftover_containers"), "0", "the agent removed its containers: {}", run.stdout);
    let filters = HashMap::from([("label", vec![format!("{}={}", labels::NODE, run.node())])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let left = docker.list_containers(Some(options)).await.expect("the daemon lists containers");
    assert!(left.is_empty(), "containers of node {} remain: {left:?}", run.node());
}
