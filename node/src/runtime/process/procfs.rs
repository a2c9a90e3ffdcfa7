//! Reading `/proc/<pid>/stat`: whether a recorded process is still the one this runtime
//! started. A pid alone is not enough because pids are reused; the pair (pid, start time in
//! clock ticks since boot) identifies a process for the lifetime of the machine.

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The one-letter state (`R`, `S`, `Z`, ...).
    pub(crate) state: char,
    /// When it started, in clock ticks since boot (field 22).
    pub(crate) start_ticks: u64,
}

/// Parses the content of `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(content: &str) -> Option<ProcStat> {
    let (_, rest) = content.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22 is the start time, 19 fields further on.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Reads a process's stat; `None` when there is no such process (or it cannot be read).
pub(crate) fn read_stat(pid: i32) -> Option<ProcStat> {
    let content = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&content)
}

/// Whether the process `pid` that started at `start_ticks` still runs. A zombie has finished:
/// it only waits for its parent to collect its exit status.
pub(crate) fn is_alive(pid: i32, start_ticks: u64) -> bool {
    is_alive_given(read_stat(pid), start_ticks)
}

/// The decision of [`is_alive`], given what was read.
pub(crate) fn is_alive_given(stat: Option<ProcStat>, start_ticks: u64) -> bool {
    matches!(stat, Some(s) if s.start_ticks == start_ticks && s.state != 'Z' && s.state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                        987654 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn parses_state_and_start_time_past_a_name_with_parentheses() {
        assert_eq!(parse_stat(STAT), Some(ProcStat { state: 'S', start_ticks: 987654 }));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("4242 (sh) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn alive_only_with_same_start_time_and_not_zombie() {
        let running = ProcStat { state: 'S', start_ticks: 10 };
        assert!(is_alive_given(Some(running), 10));
        assert!(!is_alive_given(Some(running), 11), "a reused pid is another process");
        assert!(!is_alive_given(Some(ProcStat { state: 'Z', start_ticks: 10 }), 10));
        assert!(!is_alive_given(None, 10));
    }

    #[test]
    fn reads_own_stat() {
        let pid = i32::try_from(std::process::id()).expect("pids fit in i32 on Linux");
        let stat = read_stat(pid).expect("this process exists");
        assert!(is_alive(pid, stat.start_ticks));
        assert!(!is_alive(pid, stat.start_ticks + 1));
    }
}
