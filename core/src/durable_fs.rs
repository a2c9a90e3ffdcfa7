//! Files and directories that survive a power loss, not only a process crash.
//!
//! A write reaches the disk only when its file is `fsync`ed, and a new name (a created file or
//! directory, a rename) only when its *directory* is `fsync`ed. A program that skips the second
//! step may come back after a power cut without a file it wrote and synced, or without a whole
//! directory it created: a data directory that comes back empty makes a cluster member forget
//! that it ever voted or stored anything. Flotilla's power-loss tests (`flotilla-jepsen`'s
//! lossy disks) drop exactly what these helpers make sure to sync.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `fsync`s directory `dir`: the names it holds now survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its missing parents with `mode` (an existing directory keeps its mode),
/// then `fsync`s the parent of each directory it created, so that none of them can vanish in
/// a power loss. Does nothing to a directory that exists.
pub fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    // Deepest first: each directory's own entry is in its parent.
    for created in &missing {
        sync_dir(parent_of(created))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode` so that a crash or power loss leaves either the old
/// bytes or the new ones, never a torn mix or nothing (an [`AtomicFile`] written at once).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file written piece by piece that replaces `path` only when [`commit`](Self::commit)ted,
/// so a crash or power loss leaves either the old file or the whole new one: the bytes go to
/// a temporary file in the same directory (a unique name, created with the final mode, so a
/// private file is never readable by others), which `commit` `fsync`s, renames over `path`,
/// and whose directory it then `fsync`s so the rename itself survives. Dropped without a
/// commit, the temporary file is removed and `path` is left as it was.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing a new version of `path` with `mode`.
    pub fn create(path: &Path, mode: u32) -> io::Result<Self> {
        let dir = parent_of(path);
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        // A unique name: a temporary file left by a crash must not block the next write.
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        Ok(AtomicFile { file: Some(file), tmp, path: path.to_path_buf() })
    }

    /// The temporary file the bytes go to until the commit (to check them before it).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Makes the written bytes the content of `path`, durably.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().ok_or_else(|| io::Error::other("atomic file already committed"))?;
        let result = (|| {
            file.sync_all()?;
            drop(file);
            fs::rename(&self.tmp, &self.path)?;
            sync_dir(parent_of(&self.path))
        })();
        if result.is_err() {
            // Best effort: the write already failed and that error is the one to report.
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| io::Error::other("atomic file already committed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: nothing of it may remain. Best effort, nothing to report to.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn create_dir_all_makes_the_missing_chain_with_the_mode_and_leaves_existing_ones() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep, 0o700)?;
        for dir in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(root.path().join(dir))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{dir}");
        }
        fs::set_permissions(root.path().join("a"), fs::Permissions::from_mode(0o755))?;
        create_dir_all(&root.path().join("a/d"), 0o700)?;
        let mode = fs::metadata(root.path().join("a"))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "an existing directory keeps its mode");
        create_dir_all(&deep, 0o700)?;
        Ok(())
    }

    #[test]
    fn write_atomic_replaces_content_with_the_mode_and_leaves_no_temporary_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"old", 0o600)?;
        write_atomic(&path, b"new", 0o600)?;
        assert_eq!(fs::read(&path)?, b"new");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path())?.count(), 1, "no temporary file left");
        let missing = write_atomic(&dir.path().join("no/such/dir/f"), b"x", 0o600);
        assert_eq!(missing.map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
        Ok(())
    }

    #[test]
    fn an_atomic_file_dropped_without_commit_leaves_the_old_content_and_no_temporary_file() -> io::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("backup.db");
        write_atomic(&path, b"old", 0o600)?;
        let mut file = AtomicFile::create(&path, 0o600)?;
        file.write_all(b"half of the ne")?;
        drop(file);
        assert_eq!(fs::read(&path)?, b"old");
        assert_eq!(fs::read_dir(dir.path())?.count(), 1, "no temporary file left");
        let mut file = AtomicFile::create(&path, 0o600)?;
        file.write_all(b"new, ")?;
        file.write_all(b"in pieces")?;
        file.commit()?;
        assert_eq!(fs::read(&path)?, b"new, in pieces");
        assert_eq!(fs::read_dir(dir.path())?.count(), 1, "no temporary file left");
        Ok(())
    }
}
