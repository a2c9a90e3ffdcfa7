//! Wall-clock skew of members through libfaketime (Debian's `faketime` package).
//!
//! With [`ClusterSpec::clock_skew`](super::ClusterSpec::clock_skew) set, every member starts
//! with libfaketime preloaded, reading its offset from `<dir>/n<i>.clock` (re-read at most
//! once a second). Only `CLOCK_REALTIME` is shifted: monotonic clocks, which Raft's timers and
//! lease deadlines run on, are left alone, so a correct member must not care. The offset
//! survives restarts of the member and is reset by [`Cluster::skew_clock`] with 0.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Cluster;

/// Where Debian's `libfaketime` package installs the multi-threaded library.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Why members cannot have their clocks skewed here, if they cannot.
pub fn faketime_unavailable() -> Option<String> {
    (!Path::new(FAKETIME_LIB).is_file())
        .then(|| format!("{FAKETIME_LIB} is missing (install Debian's faketime package)"))
}

/// libfaketime's spelling of an offset in seconds: `+0s`, `+90s`, `-3600s`.
pub fn offset_spec(offset_secs: i64) -> String {
    format!("{offset_secs:+}s")
}

impl Cluster {
    /// The file member `i`'s libfaketime reads its offset from.
    pub fn clock_file(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("n{i}.clock"))
    }

    /// Sets up `cmd` (member `i`'s server) to run under libfaketime, creating its clock file
    /// with no offset if it has none yet.
    pub(super) fn faketime_env(&self, i: usize, cmd: &mut tokio::process::Command) -> anyhow::Result<()> {
        if let Some(why) = faketime_unavailable() {
            anyhow::bail!("member n{i}: clock skew asked for, but {why}");
        }
        let file = self.clock_file(i);
        if !file.exists() {
            write_offset(&file, 0)?;
        }
        cmd.env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME_TIMESTAMP_FILE", &file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        Ok(())
    }

    /// Shifts member `i`'s wall clock by `offset_secs` from the true time (0 puts it right);
    /// the member sees the change within about a second.
    pub fn skew_clock(&mut self, i: usize, offset_secs: i64) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.spec.clock_skew,
            "member n{i}: the cluster was started without clock skew (ClusterSpec::clock_skew)"
        );
        write_offset(&self.clock_file(i), offset_secs)?;
        self.member_mut(i)?.clock_offset = offset_secs;
        Ok(())
    }

    /// Member `i`'s wall-clock offset in seconds (0 when not skewed).
    pub fn clock_offset(&self, i: usize) -> i64 {
        self.members.get(i).map_or(0, |m| m.clock_offset)
    }
}

/// Replaces `file` with `offset` (written beside it and renamed, so libfaketime never reads
/// half a file).
fn write_offset(file: &Path, offset_secs: i64) -> anyhow::Result<()> {
    let tmp = file.with_extension("clock.tmp");
    std::fs::write(&tmp, format!("{}\n", offset_spec(offset_secs)))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_spelled_with_a_sign_and_seconds() {
        assert_eq!(offset_spec(0), "+0s");
        assert_eq!(offset_spec(90), "+90s");
        assert_eq!(offset_spec(-3600), "-3600s");
    }

    #[test]
    fn an_offset_file_is_replaced_whole() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("n0.clock");
        write_offset(&file, 5)?;
        write_offset(&file, -7)?;
        assert_eq!(std::fs::read_to_string(&file)?, "-7s\n");
        assert!(!file.with_extension("clock.tmp").exists());
        Ok(())
    }
}
