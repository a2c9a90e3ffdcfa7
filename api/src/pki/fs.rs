//! Crash-safe private files: a credential is either the old bytes or the new bytes on disk,
//! never a torn mix, and a key is never readable by other users, even for a moment.

use std::fs;
use std::io;
use std::path::Path;

/// Mode for private keys and kubeconfigs.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode for certificates, which are public.
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `dir` (and missing parents) readable only by the owner, durably (see
/// [`flotilla_core::durable_fs::create_dir_all`]). An existing directory keeps its mode: the
/// operator may have chosen it.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    flotilla_core::durable_fs::create_dir_all(dir, 0o700)
}

/// Writes `bytes` to `path` with `mode`, crash- and power-loss-safe (see
/// [`flotilla_core::durable_fs::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    flotilla_core::durable_fs::write_atomic(path, bytes, mode)
}

/// Reads `path`, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_optional_distinguishes_missing_from_unreadable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(read_optional(&dir.path().join("absent"))?.is_none());
        // Reading a directory as a file is an error, not "missing".
        assert!(read_optional(dir.path()).is_err());
        Ok(())
    }
}
