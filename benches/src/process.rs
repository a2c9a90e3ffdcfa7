//! This process's CPU time and memory, read from `/proc/self` (shared by the harnesses).

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, 100 per second on every architecture
/// Flotilla runs on (the kernel's internal HZ is hidden from this interface).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) this process has used so far; 0 if `/proc` cannot be read.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // after its closing parenthesis, where field 3 (state) is index 0.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// This process's resident set now and at its peak, in MiB (`VmRSS`, `VmHWM`).
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") as f64 / 1024.0, kib("VmHWM:") as f64 / 1024.0)
}
