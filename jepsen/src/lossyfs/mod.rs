//! `LossyFs`: a file system in memory, mounted through FUSE, that can lose power.
//!
//! A member's data directory mounted on a [`LossyFs`] behaves like a disk whose write cache
//! is lost when the power goes: [`LossyFs::power_loss`] unmounts it (the member must have
//! been killed first) and keeps only what a disk must keep — file bytes as of their last
//! `fsync`/`fdatasync`, directory entries as of the directory's last `fsync` — plus, chosen at
//! random from a seed, some or all of what was written since (the kernel may have written
//! it back before the power went), then mounts it again. Whatever survives, the member must
//! restart with every write it acknowledged: a store that forgets to sync a file or a
//! directory, or trusts a write that was never synced, loses data here.
//!
//! The file system holds regular files and directories only (no symlinks or devices);
//! POSIX record locks are the kernel's own, since no process survives a power loss. It
//! needs `/dev/fuse` and root (it mounts and unmounts directly); see [`unavailable`].

mod fuse;
mod tree;

#[cfg(test)]
mod live;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fuser::{BackgroundSession, Config, MountOption};
use nix::mount::MntFlags;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use fuse::LossyFuse;
use tree::Tree;

/// What went wrong mounting or unmounting a [`LossyFs`].
#[derive(Debug, thiserror::Error)]
pub enum LossyFsError {
    /// The mount point could not be created, or FUSE refused the mount.
    #[error("mounting a lossy file system on {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file system could not be unmounted (a process still uses it, most likely).
    #[error("unmounting the lossy file system on {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a power loss did, for the nemesis's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Whether the directories kept every change (the journal had committed) rather than only
    /// what was synced.
    pub metadata_committed: bool,
    /// Files with unsynced changes that lost all of them.
    pub files_reverted: usize,
    /// Files with unsynced changes that kept a part of them (a torn write).
    pub files_torn: usize,
    /// Files with unsynced changes that kept all of them.
    pub files_kept: usize,
    /// Unsynced bytes lost in all (changed bytes not kept).
    pub bytes_lost: u64,
    /// Files and directories gone because an unsynced directory entry was lost.
    pub nodes_lost: usize,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "metadata {}, files reverted {} torn {} kept {}, {} unsynced bytes lost, {} nodes lost",
            if self.metadata_committed { "committed" } else { "as synced" },
            self.files_reverted,
            self.files_torn,
            self.files_kept,
            self.bytes_lost,
            self.nodes_lost
        )
    }
}

/// A mounted lossy file system; dropping it unmounts it (lazily) and drops its contents once
/// no copy of the mount is left (see `detach`).
#[derive(Debug)]
pub struct LossyFs {
    mountpoint: PathBuf,
    tree: Arc<Mutex<Tree>>,
    session: Option<BackgroundSession>,
}

impl LossyFs {
    /// Mounts an empty lossy file system on `mountpoint`, creating the directory if needed
    /// (what it held before stays hidden under the mount). The root belongs to the caller.
    pub fn mount(mountpoint: &Path) -> Result<LossyFs, LossyFsError> {
        let err = |source| LossyFsError::Mount { path: mountpoint.to_path_buf(), source };
        std::fs::create_dir_all(mountpoint).map_err(err)?;
        let (uid, gid) = ids();
        let mut fs = LossyFs {
            mountpoint: mountpoint.to_path_buf(),
            tree: Arc::new(Mutex::new(Tree::new(uid, gid))),
            session: None,
        };
        fs.attach()?;
        Ok(fs)
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn attach(&mut self) -> Result<(), LossyFsError> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("flotilla-lossyfs".to_string()),
            MountOption::Subtype("lossyfs".to_string()),
            MountOption::DefaultPermissions,
        ];
        let fs = LossyFuse { tree: self.tree.clone() };
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config)
            .map_err(|source| LossyFsError::Mount { path: self.mountpoint.clone(), source })?;
        self.session = Some(session);
        Ok(())
    }

    /// Unmounts it, lazily (`MNT_DETACH`, for [`Drop`]) or refusing while in use. Processes
    /// in other mount namespaces (`ip netns exec` copies the mounts of its time, privately)
    /// may keep copies of the mount: those keep the old FUSE connection and its thread alive
    /// until they exit, serving the same tree, which nothing reaches through them any more.
    fn detach(&mut self, lazy: bool) -> Result<(), LossyFsError> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let flags = if lazy { MntFlags::MNT_DETACH } else { MntFlags::empty() };
        if let Err(e) = nix::mount::umount2(&self.mountpoint, flags) {
            self.session = Some(session);
            return Err(LossyFsError::Unmount { path: self.mountpoint.clone(), source: e.into() });
        }
        // Unmounted already: dropping the session only lets its thread end with the connection.
        drop(session);
        Ok(())
    }

    /// The power goes out and comes back: unmounts the file system (every process using it
    /// must have exited), keeps what a disk would (see the module documentation; what part
    /// of the unsynced writes survives is drawn from `seed`) and mounts it again.
    pub fn power_loss(&mut self, seed: u64) -> Result<CrashReport, LossyFsError> {
        self.detach(false)?;
        let report = {
            let mut tree = self.tree.lock().unwrap_or_else(PoisonError::into_inner);
            tree.power_loss(&mut StdRng::seed_from_u64(seed))
        };
        self.attach()?;
        Ok(report)
    }

    /// Unmounts it, answering why when that fails, e.g. while a process still uses it
    /// (dropping it unmounts it lazily and silently instead).
    pub fn unmount(mut self) -> Result<(), LossyFsError> {
        self.detach(false)
    }
}

impl Drop for LossyFs {
    fn drop(&mut self) {
        if let Err(e) = self.detach(true) {
            tracing::warn!("{e}");
        }
    }
}

/// The caller's user and group ids.
fn ids() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
}

/// Why no [`LossyFs`] can be mounted here, if so: `/dev/fuse` cannot be opened, or the
/// caller is not root (mounts go through the kernel directly, not `fusermount3`).
pub fn unavailable() -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Some(format!("cannot open /dev/fuse: {e}"));
    }
    if !nix::unistd::getuid().is_root() {
        return Some("mounting FUSE file systems needs root here".to_string());
    }
    None
}
