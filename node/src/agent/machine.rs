//! What the machine has and how loaded it is: readings from `/proc` and `statvfs`, and the
//! node conditions they call for (a pure function).

use std::path::Path;

/// `memory.available` below this is memory pressure (kubelet's default hard eviction
/// threshold, 100 MiB).
pub const MEMORY_AVAILABLE_MIN_BYTES: u64 = 100 * 1024 * 1024;
/// `nodefs.available` below this fraction of the file system is disk pressure (kubelet's
/// default, 10 %).
pub const DISK_AVAILABLE_MIN_PERCENT: u64 = 10;
/// Free process ids below this fraction of `pid_max` is PID pressure. Kubelet sets no default
/// `pid.available` threshold; 10 % is Flotilla's.
pub const PID_AVAILABLE_MIN_PERCENT: u64 = 10;

/// One reading of the machine. Fields that could not be read are 0 (and never signal
/// pressure).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineReadings {
    /// Logical CPUs.
    pub cpus: u64,
    /// `MemTotal` in bytes.
    pub memory_total: u64,
    /// `MemAvailable` in bytes.
    pub memory_available: u64,
    /// Size of the file system holding the agent's root directory, in bytes.
    pub disk_total: u64,
    /// Bytes available to unprivileged users on it.
    pub disk_available: u64,
    /// Processes (and threads) running.
    pub pids: u64,
    /// `/proc/sys/kernel/pid_max`.
    pub pid_max: u64,
}

/// A node condition as computed: type, whether it holds, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionReading {
    /// `Ready`, `MemoryPressure`, `DiskPressure` or `PIDPressure`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// Kubelet's reason.
    pub reason: &'static str,
    /// Kubelet's message.
    pub message: String,
}

fn condition(
    type_: &'static str,
    holds: bool,
    yes: (&'static str, &str),
    no: (&'static str, &str),
) -> ConditionReading {
    let (status, (reason, message)) = if holds { ("True", yes) } else { ("False", no) };
    ConditionReading { type_, status, reason, message: message.to_string() }
}

/// The node conditions for `readings`, with the runtime's health (`Err` says why it is down):
/// pressure conditions compare the readings with the thresholds above; `Ready` is `True`
/// (reason `KubeletReady`) unless the runtime is down.
pub fn node_conditions(readings: &MachineReadings, runtime: Result<(), String>) -> Vec<ConditionReading> {
    let memory_pressure = readings.memory_total > 0 && readings.memory_available < MEMORY_AVAILABLE_MIN_BYTES;
    let disk_pressure = readings.disk_total > 0
        && u128::from(readings.disk_available) * 100
            < u128::from(readings.disk_total) * u128::from(DISK_AVAILABLE_MIN_PERCENT);
    let pid_pressure = readings.pid_max > 0
        && u128::from(readings.pid_max.saturating_sub(readings.pids)) * 100
            < u128::from(readings.pid_max) * u128::from(PID_AVAILABLE_MIN_PERCENT);
    let ready = match &runtime {
        Ok(()) => condition("Ready", true, ("KubeletReady", "kubelet is posting ready status"), ("", "")),
        Err(why) => ConditionReading {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: format!("container runtime is down: {why}"),
        },
    };
    vec![
        condition(
            "MemoryPressure",
            memory_pressure,
            ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
            ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ),
        condition(
            "DiskPressure",
            disk_pressure,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        condition(
            "PIDPressure",
            pid_pressure,
            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ),
        ready,
    ]
}

/// The value of `key` (in kB) in `/proc/meminfo` text, in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb.saturating_mul(1024))
    })
}

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Reads the machine (blocking file system calls: run it on a blocking thread). What cannot be
/// read is left 0.
pub fn read_machine(root_dir: &Path) -> MachineReadings {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (disk_total, disk_available) = match nix::sys::statvfs::statvfs(root_dir) {
        Ok(s) => {
            // The field types are platform aliases (u32 on some 32-bit targets).
            #[allow(clippy::unnecessary_cast)]
            let (frag, blocks, available) =
                (s.fragment_size() as u64, s.blocks() as u64, s.blocks_available() as u64);
            (blocks.saturating_mul(frag), available.saturating_mul(frag))
        }
        Err(error) => {
            tracing::debug!(dir = %root_dir.display(), %error, "cannot statvfs the agent's root directory");
            (0, 0)
        }
    };
    // The fourth field of loadavg is "running/total" scheduling entities.
    let pids = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    MachineReadings {
        cpus: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(0),
        memory_total: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
        memory_available: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(0),
        disk_total,
        disk_available,
        pids,
        pid_max: read_u64("/proc/sys/kernel/pid_max"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn healthy() -> MachineReadings {
        MachineReadings {
            cpus: 4,
            memory_total: 16 * GIB,
            memory_available: 8 * GIB,
            disk_total: 100 * GIB,
            disk_available: 50 * GIB,
            pids: 500,
            pid_max: 4_194_304,
        }
    }

    fn statuses(c: &[ConditionReading]) -> Vec<(&str, &str, &str)> {
        c.iter().map(|c| (c.type_, c.status, c.reason)).collect()
    }

    #[test]
    #[allow(clippy::type_complexity)] // table rows are tuples
    fn conditions_follow_the_thresholds() {
        let cases: Vec<(&str, MachineReadings, Result<(), String>, [&str; 4])> = vec![
            ("healthy", healthy(), Ok(()), ["False", "False", "False", "True"]),
            (
                "memory below 100Mi",
                MachineReadings { memory_available: 99 * 1024 * 1024, ..healthy() },
                Ok(()),
                ["True", "False", "False", "True"],
            ),
            (
                "memory exactly 100Mi",
                MachineReadings { memory_available: MEMORY_AVAILABLE_MIN_BYTES, ..healthy() },
                Ok(()),
                ["False", "False", "False", "True"],
            ),
            (
                "disk 9% free",
                MachineReadings { disk_available: 9 * GIB, ..healthy() },
                Ok(()),
                ["False", "True", "False", "True"],
            ),
            (
                "disk 10% free",
                MachineReadings { disk_available: 10 * GIB, ..healthy() },
                Ok(()),
                ["False", "False", "False", "True"],
            ),
            (
                "pids nearly exhausted",
                MachineReadings { pids: 950, pid_max: 1000, ..healthy() },
                Ok(()),
                ["False", "False", "True", "True"],
            ),
            ("nothing readable", MachineReadings::default(), Ok(()), ["False", "False", "False", "True"]),
            ("runtime down", healthy(), Err("no daemon".into()), ["False", "False", "False", "False"]),
        ];
        for (name, readings, runtime, want) in cases {
            let got = node_conditions(&readings, runtime);
            let got: Vec<&str> = got.iter().map(|c| c.status).collect();
            assert_eq!(got, want, "{name}");
        }
        let c = node_conditions(&healthy(), Ok(()));
        assert_eq!(
            statuses(&c),
            vec![
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        let down = node_conditions(&healthy(), Err("no daemon".into()));
        assert_eq!(down[3].reason, "KubeletNotReady");
        assert!(down[3].message.contains("no daemon"), "{}", down[3].message);
    }

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       16318672 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), Some(16318672 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable"), Some(8000000 * 1024));
        assert_eq!(meminfo_bytes(text, "Mem"), None);
        assert_eq!(meminfo_bytes("garbage", "MemTotal"), None);
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let r = read_machine(Path::new("/"));
        assert!(r.cpus > 0 && r.memory_total > 0 && r.disk_total > 0, "{r:?}");
    }
}
