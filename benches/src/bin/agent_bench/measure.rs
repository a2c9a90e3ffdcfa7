//! What is measured of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`, and the
//! arithmetic on it (CPU share of one core, nearest-rank percentiles). The parsers are plain
//! functions of the files' text, tested below on captured examples.

use std::time::Duration;

use anyhow::Context;
use nix::unistd::{SysconfVar, sysconf};
use tokio::time::Instant;

/// `utime` and `stime` come in clock ticks; how many make a second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn clock_ticks_per_sec() -> anyhow::Result<u64> {
    let ticks = sysconf(SysconfVar::CLK_TCK).context("sysconf(_SC_CLK_TCK)")?;
    ticks
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .with_context(|| format!("sysconf(_SC_CLK_TCK) gave {ticks:?}, not a positive tick rate"))
}

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    /// When it was read.
    pub(crate) at: Option<Instant>,
    /// `utime + stime`, in clock ticks, all threads.
    pub(crate) cpu_ticks: u64,
    /// The `/proc/<pid>/status` fields.
    pub(crate) status: Status,
}

/// The fields of `/proc/<pid>/status` the report uses (KiB, except `threads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// `VmRSS`: resident now.
    pub(crate) rss_kib: u64,
    /// `VmHWM`: the resident peak since the process started.
    pub(crate) hwm_kib: u64,
    /// `RssAnon`: the heap, stacks and other private memory in `VmRSS`.
    pub(crate) anon_kib: u64,
    /// `RssFile`: mapped files (the binary's own pages, mostly) in `VmRSS`.
    pub(crate) file_kib: u64,
    /// `Threads`.
    pub(crate) threads: u64,
}

/// Reads process `pid` now.
pub(crate) fn read(pid: u32) -> anyhow::Result<Reading> {
    let at = Instant::now();
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let cpu_ticks = stat_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}: {stat:?}"))?;
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let status = parse_status(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))?;
    Ok(Reading { at: Some(at), cpu_ticks, status })
}

/// `utime + stime` (fields 14 and 15) from the text of `/proc/<pid>/stat`.
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces and ')':
    // fields are counted after the last ')', where field 3 (state) is index 0.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// The command name (field 2) from the text of `/proc/<pid>/stat`.
pub(crate) fn stat_comm(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    Some(rest.rsplit_once(')')?.0)
}

/// The fields of [`Status`] from the text of `/proc/<pid>/status`; `None` without `VmRSS`
/// and `VmHWM` (a kernel thread, or a process that is exiting). The breakdown and thread
/// count are 0 where the kernel does not report them.
pub(crate) fn parse_status(text: &str) -> Option<Status> {
    let field = |key: &str| -> Option<u64> {
        let value = text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
        value.split_whitespace().next()?.parse().ok()
    };
    Some(Status {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
        anon_kib: field("RssAnon").unwrap_or(0),
        file_kib: field("RssFile").unwrap_or(0),
        threads: field("Threads").unwrap_or(0),
    })
}

/// CPU used between two readings as a percentage of one core (100 = one core busy).
pub(crate) fn cpu_percent(from: &Reading, to: &Reading, ticks_per_sec: u64) -> Option<f64> {
    let wall = to.at?.checked_duration_since(from.at?)?;
    let ticks = to.cpu_ticks.checked_sub(from.cpu_ticks)?;
    percent_of_core(ticks, ticks_per_sec, wall)
}

/// `ticks` of CPU over `wall` as a percentage of one core; `None` over no time.
pub(crate) fn percent_of_core(ticks: u64, ticks_per_sec: u64, wall: Duration) -> Option<f64> {
    let wall = wall.as_secs_f64();
    (wall > 0.0 && ticks_per_sec > 0).then(|| ticks as f64 / ticks_per_sec as f64 / wall * 100.0)
}

/// CPU seconds between two readings.
pub(crate) fn cpu_secs(from: &Reading, to: &Reading, ticks_per_sec: u64) -> f64 {
    to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / ticks_per_sec.max(1) as f64
}

/// The `q` quantile (0..=1) of `samples` by nearest rank: the smallest sample with at least
/// `q` of all samples at or below it. `samples` need not be sorted; `None` when empty.
pub(crate) fn percentile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// The pids of every process whose command name (as `/proc/<pid>/stat` shows it, at most 15
/// bytes) satisfies `wanted`; the host's Docker daemons, for context.
pub(crate) fn pids_named(wanted: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|stat| stat_comm(&stat).is_some_and(&wanted))
        })
        .collect()
}

/// CPU ticks used by `pids` together (those that can still be read).
pub(crate) fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| stat_cpu_ticks(&stat))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `/proc/<pid>/stat` line of `flotilla agent`, its name changed to hold `) (`.
    const STAT: &str = "31337 (flo tilla) (x) S 31300 31337 31300 0 -1 4194560 5301 0 3 0 \
                        1234 567 0 0 20 0 9 0 11873 1345011712 6120 18446744073709551615 1 1 0 0 \
                        0 0 0 4096 17990 0 0 0 17 1 0 0 0 0 0";

    const STATUS: &str = "Name:\tflotilla\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1313488 kB\n\
                          VmSize:\t 1313476 kB\nVmHWM:\t   31744 kB\nVmRSS:\t   24480 kB\n\
                          RssAnon:\t   10240 kB\nRssFile:\t   14240 kB\nRssShmem:\t       0 kB\n\
                          VmSwap:\t       0 kB\nThreads:\t9\n";

    #[test]
    fn cpu_ticks_are_user_plus_system_after_an_awkward_name() {
        assert_eq!(stat_cpu_ticks(STAT), Some(1234 + 567));
        assert_eq!(stat_comm(STAT), Some("flo tilla) (x"));
        assert_eq!(stat_cpu_ticks("1 (init) S 0 1"), None, "a truncated line has no times");
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn status_fields_are_read_by_exact_key() {
        let status = parse_status(STATUS).expect("VmRSS and VmHWM are present");
        assert_eq!(
            status,
            Status { rss_kib: 24480, hwm_kib: 31744, anon_kib: 10240, file_kib: 14240, threads: 9 }
        );
        // `RssShmem` must not be taken for `RssAnon`'s neighbours, nor `VmPeak` for `VmHWM`.
        assert_eq!(parse_status("Name:\tkthreadd\nThreads:\t1\n"), None, "kernel threads have no VmRSS");
        let partial = parse_status("VmHWM:\t 2 kB\nVmRSS:\t 1 kB\n").expect("the two required fields");
        assert_eq!((partial.rss_kib, partial.hwm_kib, partial.anon_kib, partial.threads), (1, 2, 0, 0));
    }

    #[test]
    fn cpu_percent_is_of_one_core() {
        let start = Instant::now();
        let from = Reading { at: Some(start), cpu_ticks: 1_000, status: Status::default() };
        let to = Reading { at: Some(start + Duration::from_secs(60)), cpu_ticks: 1_090, ..from };
        // 90 ticks at 100 per second is 0.9 s of CPU in 60 s: 1.5% of a core.
        let pct = cpu_percent(&from, &to, 100).expect("a positive interval");
        assert!((pct - 1.5).abs() < 1e-9, "{pct}");
        assert!((cpu_secs(&from, &to, 100) - 0.9).abs() < 1e-9);
        assert_eq!(cpu_percent(&to, &from, 100), None, "readings out of order give no figure");
        assert_eq!(percent_of_core(10, 100, Duration::ZERO), None);
        let two_cores = percent_of_core(400, 100, Duration::from_secs(2)).expect("a positive interval");
        assert!((two_cores - 200.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(percentile(&[], 0.5), None);
        // Unsorted on purpose.
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&samples, 0.5), Some(ms(50)));
        assert_eq!(percentile(&samples, 0.99), Some(ms(99)));
        assert_eq!(percentile(&samples, 1.0), Some(ms(100)));
        assert_eq!(percentile(&samples, 0.0), Some(ms(1)));
        // 110 samples: p99 is rank ceil(108.9) = 109, one below the maximum.
        let samples: Vec<Duration> = (1..=110).map(ms).collect();
        assert_eq!(percentile(&samples, 0.99), Some(ms(109)));
        assert_eq!(percentile(&samples, 0.5), Some(ms(55)));
        assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
    }

    #[test]
    fn this_process_reads_and_the_tick_rate_is_known() {
        let tck = clock_ticks_per_sec().expect("sysconf answers on Linux");
        assert!((1..=10_000).contains(&tck), "{tck}");
        let reading = read(std::process::id()).expect("our own /proc entry is readable");
        assert!(reading.status.rss_kib > 0 && reading.status.hwm_kib >= reading.status.rss_kib);
        assert!(reading.status.threads >= 1);
        assert!(read(u32::MAX).is_err(), "no process has pid u32::MAX");
        let ours = pids_named(|_| true);
        assert!(ours.contains(&std::process::id()), "a scan of /proc finds this process");
    }
}
