//! What goes into which cgroup file, and where groups live: pure functions, tested without
//! a cgroup filesystem.

use std::path::{Path, PathBuf};

use super::CgroupVersion;

/// The CFS period every limited container gets, in microseconds (the kubelet's default).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts, in microseconds (the kubelet's `MinQuotaPeriod`).
pub(crate) const MIN_CPU_QUOTA_US: u64 = 1_000;
/// The largest quota the kernel accepts, in microseconds (its `MAX_BW`).
const MAX_CPU_QUOTA_US: u64 = (1 << 44) - 1;
/// The folder under a hierarchy's mount point that holds Flotilla's groups.
pub(crate) const BASE_DIR: &str = "flotilla";
/// How much of the node name goes into a runtime's group name.
const NODE_PART_LEN: usize = 64;

/// A CPU limit as CFS bandwidth: `quota_us` of CPU time per `period_us` of wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuQuota {
    pub(crate) quota_us: u64,
    pub(crate) period_us: u64,
}

/// The kubelet's conversion of millicores to a CFS quota over [`CPU_PERIOD_US`]: one core is
/// a whole period, and no quota is below [`MIN_CPU_QUOTA_US`]. A limit of zero is no limit,
/// as in Kubernetes; `None` also means the product does not fit.
pub(crate) fn cpu_quota(millis: u64) -> Option<CpuQuota> {
    if millis == 0 {
        return None;
    }
    let quota_us = millis.checked_mul(CPU_PERIOD_US)? / 1000;
    if quota_us > MAX_CPU_QUOTA_US {
        return None;
    }
    Some(CpuQuota { quota_us: quota_us.max(MIN_CPU_QUOTA_US), period_us: CPU_PERIOD_US })
}

/// The files (in write order) and values that set a CPU quota.
pub(crate) fn cpu_files(version: CgroupVersion, quota: CpuQuota) -> Vec<(&'static str, String)> {
    match version {
        CgroupVersion::V2 => vec![("cpu.max", format!("{} {}", quota.quota_us, quota.period_us))],
        // The period first: a quota is checked against the period in place.
        CgroupVersion::V1 => vec![
            ("cpu.cfs_period_us", quota.period_us.to_string()),
            ("cpu.cfs_quota_us", quota.quota_us.to_string()),
        ],
    }
}

/// The file that sets a memory limit, and the optional one that caps swap (present only with
/// swap accounting) with its value: none for v2, the same limit for memory plus swap in v1.
pub(crate) fn memory_files(version: CgroupVersion, bytes: u64) -> (&'static str, &'static str, String) {
    match version {
        CgroupVersion::V2 => ("memory.max", "memory.swap.max", "0".to_string()),
        // Must follow `memory.limit_in_bytes`, which it may not be below.
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", bytes.to_string()),
    }
}

/// The file holding the count of OOM kills in a memory group.
pub(crate) fn oom_file(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V2 => "memory.events",
        CgroupVersion::V1 => "memory.oom_control",
    }
}

/// The `oom_kill` count in the content of [`oom_file`] (both versions use `key value` lines).
pub(crate) fn parse_oom_kills(content: &str) -> Option<u64> {
    content.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// The name of a runtime's group: the node name (for people looking at the tree) and a hash
/// of the runtime's root directory, so that runtimes with other roots never share a group
/// and a restarted runtime on the same root finds its groups again.
pub(crate) fn runtime_group_name(node_name: &str, root_dir: &Path) -> String {
    let node: String = node_name
        .chars()
        .take(NODE_PART_LEN)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    format!("{node}-{:016x}", fnv1a(root_dir.as_os_str().as_encoded_bytes()))
}

/// The runtime's group in a hierarchy mounted at `mount_point`.
pub(crate) fn runtime_dir(mount_point: &Path, runtime_group: &str) -> PathBuf {
    mount_point.join(BASE_DIR).join(runtime_group)
}

/// FNV-1a, 64 bits: stable across Rust releases, unlike std's hashers.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millicores_become_the_kubelets_quota() {
        let q = |millis| cpu_quota(millis).map(|q| (q.quota_us, q.period_us));
        assert_eq!(q(100), Some((10_000, 100_000)));
        assert_eq!(q(1000), Some((100_000, 100_000)));
        assert_eq!(q(2500), Some((250_000, 100_000)));
        assert_eq!(q(5), Some((1_000, 100_000)), "below the minimum quota");
        assert_eq!(q(1), Some((1_000, 100_000)));
        assert_eq!(q(0), None, "zero is no limit");
        assert_eq!(q(u64::MAX), None, "overflow");
        assert_eq!(q(u64::MAX / 100_000), None, "beyond what the kernel stores");
    }

    #[test]
    fn quota_files_per_version() {
        let quota = CpuQuota { quota_us: 10_000, period_us: 100_000 };
        assert_eq!(cpu_files(CgroupVersion::V2, quota), vec![("cpu.max", "10000 100000".to_string())]);
        assert_eq!(
            cpu_files(CgroupVersion::V1, quota),
            vec![("cpu.cfs_period_us", "100000".to_string()), ("cpu.cfs_quota_us", "10000".to_string())]
        );
        assert_eq!(
            memory_files(CgroupVersion::V1, 4096),
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "4096".to_string())
        );
        assert_eq!(memory_files(CgroupVersion::V2, 4096).0, "memory.max");
    }

    #[test]
    fn oom_kills_from_either_version() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v1), Some(2));
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn runtime_groups_are_stable_per_root_and_safe_names() {
        let a = runtime_group_name("node-a", Path::new("/var/lib/flotilla/node"));
        assert_eq!(a, runtime_group_name("node-a", Path::new("/var/lib/flotilla/node")));
        assert!(a.starts_with("node-a-") && a.len() == "node-a-".len() + 16, "{a}");
        assert_ne!(a, runtime_group_name("node-a", Path::new("/tmp/other")));
        let odd = runtime_group_name("a/b c", Path::new("/r"));
        assert!(odd.starts_with("a_b_c-"), "{odd}");
        assert!(runtime_group_name(&"n".repeat(300), Path::new("/r")).len() < 100);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a test vector");
        assert_eq!(
            runtime_dir(Path::new("/sys/fs/cgroup/cpu"), "n-1"),
            PathBuf::from("/sys/fs/cgroup/cpu/flotilla/n-1")
        );
    }
}
