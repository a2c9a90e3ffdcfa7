//! CPU and memory limits through cgroups, on hosts that let the agent write them (root).
//! Without a writable cgroup controller these tests are skipped, unless
//! `FLOTILLA_REQUIRE_CGROUPS=1` (then they fail).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_node::runtime::ContainerRuntime;
use flotilla_node::runtime::process::{CgroupVersion, Enforcement, ProcessRuntime};
use tokio::time::Instant;

use crate::{exit_of, run, runtime, shell, within};

/// Set to `1` to make these tests fail, rather than skip, without writable cgroups.
const REQUIRE_CGROUPS_ENV: &str = "FLOTILLA_REQUIRE_CGROUPS";
/// `/proc/<pid>/stat` counts CPU time in these per second (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// How long CPU use is measured.
const MEASURE: Duration = Duration::from_secs(2);

/// The runtime's cgroup for `kind` (`cpu` or `memory`), or `None` (with the reason printed).
fn cgroup_or_skip(test: &str, enforcement: &Enforcement) -> Option<(CgroupVersion, PathBuf)> {
    match enforcement {
        Enforcement::Cgroup { version, dir } => Some((*version, dir.clone())),
        other => {
            let required = std::env::var(REQUIRE_CGROUPS_ENV).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: cgroups are required ({REQUIRE_CGROUPS_ENV}=1) but unusable: {other:?}"
            );
            eprintln!(
                "skipping {test}: no writable cgroup ({other:?}); {REQUIRE_CGROUPS_ENV}=1 fails instead"
            );
            None
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The pids in a group.
fn members(group: &Path) -> Vec<i32> {
    read(&group.join("cgroup.procs")).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Waits until the group has a member; returns the members.
async fn wait_for_members(group: &Path) -> Vec<i32> {
    loop {
        let pids = members(group);
        if !pids.is_empty() {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU seconds used so far by the processes (user plus system time from `/proc/<pid>/stat`;
/// the cgroup's own usage counter lives in the `cpuacct` hierarchy on v1 hosts, which the
/// runtime does not join).
fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = read(Path::new(&format!("/proc/{pid}/stat")));
            let (_, rest) = stat.rsplit_once(')').expect("a stat line has the name in parentheses");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
            let ticks = |i: usize| fields[i].parse::<u64>().expect("ticks are numbers");
            (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
        })
        .sum()
}

/// `nr_throttled` from a group's `cpu.stat` (both versions have it).
fn throttled_periods(group: &Path) -> u64 {
    read(&group.join("cpu.stat"))
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled ")?.trim().parse().ok())
        .expect("cpu.stat has nr_throttled")
}

/// Whether the process is gone (a zombie nobody reaped yet counts as gone).
fn is_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

async fn wait_gone(pid: i32) {
    while !is_gone(pid) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_busy_loop_gets_no_more_than_its_cpu_limit() {
    let test = "a_busy_loop_gets_no_more_than_its_cpu_limit";
    within("a cpu-limited busy loop", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let Some((version, dir)) = cgroup_or_skip(test, &rt.limit_enforcement().cpu) else { return };
        // A busy loop, plus a child that leaves the container's process group (so stopping the
        // container does not reach it): removal must still find and kill it through the group.
        let mut config = shell("setsid sleep 300 & echo $! > escaped.pid; while :; do :; done");
        config.cpu_limit_millis = Some(100);
        let id = run(&rt, &config).await;
        let group = dir.join(&id);
        match version {
            CgroupVersion::V1 => {
                assert_eq!(read(&group.join("cpu.cfs_period_us")).trim(), "100000");
                assert_eq!(read(&group.join("cpu.cfs_quota_us")).trim(), "10000");
            }
            CgroupVersion::V2 => assert_eq!(read(&group.join("cpu.max")).trim(), "10000 100000"),
        }
        let pids = wait_for_members(&group).await;

        let (start, used_before) = (Instant::now(), cpu_seconds(&pids));
        tokio::time::sleep(MEASURE).await;
        let (elapsed, used) = (start.elapsed().as_secs_f64(), cpu_seconds(&pids) - used_before);
        let share = used / elapsed;
        eprintln!(
            "{test}: {used:.3} s of CPU in {elapsed:.3} s ({:.1}% of a core; limit 10%)",
            share * 100.0
        );
        assert!(share <= 0.15, "the loop used {:.1}% of a core under a 100m limit", share * 100.0);
        assert!(throttled_periods(&group) > 0, "the loop was never throttled");

        let work = root.path().join("containers").join(&id).join("work");
        let escaped: i32 = read(&work.join("escaped.pid")).trim().parse().expect("a pid");
        assert!(members(&group).contains(&escaped), "children stay in the group");
        rt.remove_container(&id).await.expect("remove");
        assert!(!group.exists(), "the container's group is removed");
        assert!(!dir.exists(), "the runtime's group is removed once empty");
        wait_gone(escaped).await;
    })
    .await;
}

#[tokio::test]
async fn exec_joins_the_group_and_a_new_runtime_cleans_up_adopted_groups() {
    let test = "exec_joins_the_group_and_a_new_runtime_cleans_up_adopted_groups";
    within("exec in a limited container, across a runtime restart", async {
        let root = tempfile::tempdir().expect("tempdir");
        let first = runtime(root.path());
        let Some((_, dir)) = cgroup_or_skip(test, &first.limit_enforcement().cpu) else { return };
        let mut config = shell("exec sleep 300");
        config.cpu_limit_millis = Some(250);
        let id = run(&first, &config).await;
        let unlimited = run(&first, &shell("exec sleep 300")).await;
        assert!(!dir.join(&unlimited).exists(), "a container without limits gets no group");
        let group = dir.join(&id);
        wait_for_members(&group).await;
        drop(first);

        let second: ProcessRuntime = runtime(root.path());
        // `/proc/self/cgroup` names the group relative to the hierarchy's root.
        let out = second
            .exec(&id, &["cat".to_string(), "/proc/self/cgroup".to_string()], Duration::from_secs(10))
            .await
            .expect("exec runs");
        let text = String::from_utf8_lossy(&out.output);
        assert!(
            text.lines().any(|l| l.ends_with(&format!("/{id}"))),
            "exec runs in the container's group: {text}"
        );
        second.remove_container(&id).await.expect("remove");
        assert!(!group.exists(), "the adopted container's group is removed");
        second.remove_container(&unlimited).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn going_over_the_memory_limit_is_an_oom_kill() {
    let test = "going_over_the_memory_limit_is_an_oom_kill";
    within("a container growing past its memory limit", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let Some((version, dir)) = cgroup_or_skip(test, &rt.limit_enforcement().memory) else { return };
        // `tail` keeps a line that never ends in memory: it grows until the limit kills it.
        let mut config = shell("exec tail /dev/zero");
        config.memory_limit_bytes = Some(16 << 20);
        let id = run(&rt, &config).await;
        assert_eq!(exit_of(&rt, &id).await, (137, "OOMKilled".to_string()));
        let limit_file = match version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        assert_eq!(read(&dir.join(&id).join(limit_file)).trim(), (16u64 << 20).to_string());
        rt.remove_container(&id).await.expect("remove");
        assert!(!dir.join(&id).exists());
    })
    .await;
}
