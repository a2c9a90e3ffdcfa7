//! Crash-safe private files: a credential is either the old bytes or the new bytes on disk,
//! never a torn mix, and a key is never readable by other users, even for a moment.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode for private keys and kubeconfigs.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode for certificates, which are public.
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `dir` (and missing parents) readable only by the owner. An existing directory keeps
/// its mode: the operator may have chosen it.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to `path` with `mode`: a temporary file in the same directory, created with
/// the final mode, fsynced, renamed over `path`, and the directory fsynced so the rename itself
/// survives a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // A unique name: a temporary file left by a crash must not block the next write.
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the write already failed and that error is the one to report.
        let _ = fs::remove_file(&tmp);
    }
    result
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn write_atomic_replaces_content_with_the_requested_mode() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", PRIVATE)?;
        write_atomic(&path, b"two", PRIVATE)?;
        assert_eq!(fs::read(&path)?, b"two");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, PRIVATE);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn read_optional_distinguishes_missing_from_unreadable() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(read_optional(&dir.path().join("absent"))?.is_none());
        // Reading a directory as a file is an error, not "missing".
        assert!(read_optional(dir.path()).is_err());
        Ok(())
    }
}
