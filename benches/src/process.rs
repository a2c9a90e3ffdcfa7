//! CPU time and memory of a process, read from `/proc` (shared by the harnesses): this
//! process's own, or another's by pid (the members a harness started).

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, 100 per second on every architecture
/// Flotilla runs on (the kernel's internal HZ is hidden from this interface).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) this process has used so far; 0 if `/proc` cannot be read.
pub fn cpu_secs() -> f64 {
    cpu_secs_at("/proc/self/stat").unwrap_or(0.0)
}

/// CPU seconds (user + system) process `pid` has used so far; `None` if it cannot be read
/// (for example because it has exited).
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    cpu_secs_at(&format!("/proc/{pid}/stat"))
}

/// This process's resident set now and at its peak, in MiB (`VmRSS`, `VmHWM`); 0 for what
/// cannot be read.
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |key: &str| status_kib(&status, key).unwrap_or(0) as f64 / 1024.0;
    (mib("VmRSS:"), mib("VmHWM:"))
}

/// Resets this process's peak resident set (`VmHWM`) to its current one (Linux 4.0 and
/// later: `5` written to `/proc/self/clear_refs`), so the next peak is a step's own.
pub fn reset_peak_rss() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", b"5")
}

/// Process `pid`'s peak resident set (`VmHWM`) in KiB; `None` if it cannot be read.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, "VmHWM:")
}

fn cpu_secs_at(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    stat_cpu_ticks(&stat).map(|t| t as f64 / USER_HZ)
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces and ')': count
    // fields after its last closing parenthesis, where field 3 (state) is index 0, so
    // utime (field 14) is index 11 and stime (field 15) index 12.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value in KiB of field `key` (with its colon) in the text of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_sums_user_and_system_ticks_after_an_awkward_command_name() {
        // Fields from a real /proc/<pid>/stat, with a command name holding ") (" and spaces.
        let stat = "4242 (etcd ) (x) S 1 4242 4242 0 -1 4194560 2711 0 0 0 123 45 0 0 20 0 12 0 \
                    983 1234567 8901 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(168));
        assert_eq!(stat_cpu_ticks("4242 (etcd) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis at all"), None);
    }

    #[test]
    fn own_figures_parse_and_cpu_grows_monotonically() {
        let pid = std::process::id();
        let a = cpu_secs_of(pid).expect("this process's /proc/<pid>/stat is readable");
        let b = cpu_secs_of(pid).expect("this process's /proc/<pid>/stat is readable");
        assert!(a >= 0.0 && b >= a, "{a} then {b}");
        assert!(peak_rss_kib_of(pid).is_some_and(|k| k > 0));
        let (rss, peak) = memory_mib();
        assert!(rss > 0.0 && peak >= rss, "rss {rss} MiB, peak {peak} MiB");
        assert!(cpu_secs_of(u32::MAX).is_none(), "no process has pid u32::MAX");
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tetcd\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(51200));
        assert_eq!(status_kib(status, "VmRSS:"), Some(40960));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
