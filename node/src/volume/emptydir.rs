//! emptyDir volumes (a directory, or a tmpfs for medium `Memory`) and the removal of a pod's
//! volume directories.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::geteuid;

use super::Failure;

/// emptyDir directories are writable by any user a container runs as (as the kubelet's).
const EMPTY_DIR_MODE: u32 = 0o777;

/// Makes the emptyDir at `dir`; for medium `Memory`, mounts a tmpfs there (limited to
/// `size_limit` bytes when set) unless one is mounted already.
pub(super) fn prepare(dir: &Path, medium: Option<&str>, size_limit: Option<u64>) -> Result<(), Failure> {
    let memory = match medium.unwrap_or_default() {
        "" => false,
        "Memory" => true,
        other => return Err(Failure::Invalid(format!("emptyDir medium {other:?} is not supported"))),
    };
    fs::create_dir_all(dir).map_err(Failure::fs("creating directory", dir))?;
    if memory {
        if is_mount_point(dir).map_err(Failure::fs("checking for a mount at", dir))? {
            return Ok(());
        }
        if !geteuid().is_root() {
            return Err(Failure::Invalid(
                "emptyDir medium Memory needs a tmpfs mount, and the agent does not run as root".into(),
            ));
        }
        let mut options = format!("mode={EMPTY_DIR_MODE:o}");
        if let Some(size) = size_limit {
            options.push_str(&format!(",size={size}"));
        }
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| Failure::fs("mounting tmpfs at", dir)(io::Error::from(e)))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(EMPTY_DIR_MODE))
        .map_err(Failure::fs("setting permissions of", dir))
}

/// Whether a file system is mounted at `path` (it is on another device than its parent).
pub(super) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let meta = fs::symlink_metadata(path)?;
    let parent = path.parent().unwrap_or(path);
    Ok(meta.is_dir() && meta.dev() != fs::metadata(parent)?.dev())
}

/// Removes a pod's directory: unmounts the tmpfs of its memory emptyDirs, then deletes the
/// tree without following symlinks and without crossing into another file system (so a
/// mount it does not know about is never emptied).
pub(super) fn remove_pod_dir(pod_dir: &Path, empty_dirs: &Path) -> Result<(), Failure> {
    let root = match fs::symlink_metadata(pod_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure::fs("reading metadata of", pod_dir)(e)),
    };
    match fs::read_dir(empty_dirs) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(Failure::fs("listing directory", empty_dirs))?.path();
                if is_mount_point(&path).map_err(Failure::fs("checking for a mount at", &path))? {
                    unmount(&path)?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::fs("listing directory", empty_dirs)(e)),
    }
    remove_tree(pod_dir, root.dev())
}

fn unmount(path: &Path) -> Result<(), Failure> {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        // Busy (a container still holds it): detach now, the kernel frees it when unused.
        Err(nix::errno::Errno::EBUSY) => umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| Failure::fs("unmounting", path)(io::Error::from(e))),
        Err(e) => Err(Failure::fs("unmounting", path)(io::Error::from(e))),
    }
}

fn remove_tree(path: &Path, dev: u64) -> Result<(), Failure> {
    let meta = fs::symlink_metadata(path).map_err(Failure::fs("reading metadata of", path))?;
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(Failure::fs("removing", path));
    }
    if meta.dev() != dev {
        return Err(Failure::Invalid(format!(
            "{} is on another file system (still mounted?); not removing it",
            path.display()
        )));
    }
    for entry in fs::read_dir(path).map_err(Failure::fs("listing directory", path))? {
        let entry = entry.map_err(Failure::fs("listing directory", path))?;
        remove_tree(&entry.path(), dev)?;
    }
    fs::remove_dir(path).map_err(Failure::fs("removing directory", path))
}
