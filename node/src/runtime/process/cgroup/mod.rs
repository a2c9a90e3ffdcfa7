//! CPU and memory limits of the process runtime through cgroups, where the host lets the
//! agent create them.
//!
//! # Detection
//! When a runtime opens, `/proc/self/mountinfo` is read for cgroup hierarchies. For each of
//! the `cpu` and `memory` controllers the hierarchy is a cgroup v2 mount that lists it in its
//! `cgroup.controllers` (it is then enabled in that mount's `cgroup.subtree_control` if it is
//! not yet), else the v1 hierarchy mounted with it. It is usable if the runtime's group
//! `<mount>/flotilla/<node>-<hash of the root directory>/` can be created there: it is made
//! and removed again as a probe (the `flotilla/` folder stays). Otherwise (not root,
//! read-only `/sys/fs/cgroup`, no such controller) the limit is not enforced: CPU limits are
//! then ignored, memory limits fall back to `RLIMIT_AS`. The outcome is logged once (a warning
//! when CPU limits are not enforced) and kept in [`LimitEnforcement`].
//!
//! # Per container
//! A container with a limit that a usable hierarchy enforces gets the group
//! `<runtime group>/<container id>` in it at start (v1 keeps `cpu` and `memory` in separate
//! hierarchies, so there may be two), with the limit written before any process joins:
//! - CPU, the kubelet's conversion: a CFS period of 100 ms and a quota of `millis * 100` µs,
//!   at least 1 ms (`cpu.max` in v2; `cpu.cfs_period_us` and `cpu.cfs_quota_us` in v1);
//! - memory: `memory.max` (and `memory.swap.max` 0 where swap is accounted) in v2,
//!   `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` at the same value) in v1.
//!   Going over it gets the container OOM-killed: exit code 137, reason `OOMKilled`.
//!
//! The process joins its groups before it runs the container's command: the launching shell
//! writes its own pid into each group's `cgroup.procs`, then execs the command (see
//! `launch`). Exec commands join the same groups. The groups are recorded with the
//! container, so a restarted runtime removes the groups of the containers it adopts. Removal
//! kills whatever still runs in a group (processes that left the container's process group
//! included), then removes the group, and the runtime's group when it is empty.

mod files;
mod mountinfo;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use self::mountinfo::CgroupMount;

/// How long removal waits for the processes left in a container's groups to go.
const REMOVE_WAIT: Duration = Duration::from_secs(5);
/// How often removal looks whether they are gone.
const REMOVE_POLL: Duration = Duration::from_millis(10);
/// The file listing (and taking) a group's processes, in both versions.
const PROCS_FILE: &str = "cgroup.procs";

/// Errors setting up or tearing down a container's groups.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A file or folder of a group could not be read, written, created or removed.
    #[error("{doing} {}", path.display())]
    Io {
        /// What was done (`creating`, `writing 10000 to`).
        doing: String,
        /// The file or folder.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The limit cannot be expressed as a CFS quota.
    #[error("cpu limit of {millis} millicores is out of range")]
    CpuOutOfRange {
        /// The limit.
        millis: u64,
    },
}

impl Error {
    /// The message with its cause, for a container's error detail.
    pub(crate) fn detail(&self) -> String {
        match self {
            Error::Io { source, .. } => format!("{self}: {source}"),
            Error::CpuOutOfRange { .. } => self.to_string(),
        }
    }
}

fn io(doing: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let (doing, path) = (doing.into(), path.to_path_buf());
    move |source| Error::Io { doing, path, source }
}

/// A cgroup hierarchy's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per controller (or a few together).
    V1,
    /// cgroup v2: one unified hierarchy.
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// How the process runtime enforces one kind of limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Through cgroups: a limited container's group is `<dir>/<container id>`.
    Cgroup {
        /// The hierarchy's version.
        version: CgroupVersion,
        /// The runtime's group, which holds the containers' groups.
        dir: PathBuf,
    },
    /// Memory only: as `RLIMIT_AS`, the process's address space (allocations beyond it fail).
    AddressSpace,
    /// Not at all.
    NotEnforced {
        /// Why not.
        reason: String,
    },
}

/// How the process runtime enforces containers' limits on this host; see
/// [`ProcessRuntime::limit_enforcement`](super::ProcessRuntime::limit_enforcement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitEnforcement {
    /// `cpu_limit_millis`: a cgroup, or not enforced.
    pub cpu: Enforcement,
    /// `memory_limit_bytes`: a cgroup, or the address space limit.
    pub memory: Enforcement,
}

/// A usable hierarchy for one controller.
#[derive(Clone, Debug)]
struct Hierarchy {
    version: CgroupVersion,
    controller: &'static str,
    /// `<mount>/flotilla/<runtime group>`.
    runtime_dir: PathBuf,
}

/// A container's groups, as recorded with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerGroups {
    /// The group limiting its CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu: Option<Group>,
    /// The group limiting its memory (the same folder as `cpu` in v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<Group>,
}

/// One group folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Group {
    pub(crate) version: CgroupVersion,
    pub(crate) dir: PathBuf,
}

impl ContainerGroups {
    /// Each distinct folder once.
    fn dirs(&self) -> Vec<&Path> {
        let set: BTreeSet<&Path> = self.cpu.iter().chain(&self.memory).map(|g| g.dir.as_path()).collect();
        set.into_iter().collect()
    }

    /// The `cgroup.procs` files a process writes its pid into to join the groups.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|d| d.join(PROCS_FILE)).collect()
    }

    /// Whether a memory group limits the container (so `RLIMIT_AS` is not needed).
    pub(crate) fn limits_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Whether the kernel OOM-killed a process in the memory group.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(group) = &self.memory else { return false };
        std::fs::read_to_string(group.dir.join(files::oom_file(group.version)))
            .ok()
            .and_then(|content| files::parse_oom_kills(&content))
            .is_some_and(|kills| kills > 0)
    }
}

/// The runtime's cgroup hierarchies; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Cgroups {
    enforcement: LimitEnforcement,
    cpu: Option<Hierarchy>,
    memory: Option<Hierarchy>,
    /// Held while folders are created or removed, so that removing the runtime's emptied
    /// group never races creating a container's group in it.
    dirs: Mutex<()>,
}

impl Cgroups {
    /// Finds what this host offers to the runtime of `node_name` rooted at `root_dir`, and
    /// logs it once.
    pub(crate) fn detect(node_name: &str, root_dir: &Path) -> Self {
        let group = files::runtime_group_name(node_name, root_dir);
        let (cpu, memory) = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(content) => {
                let mounts = mountinfo::parse(&content);
                (probe(&mounts, "cpu", &group), probe(&mounts, "memory", &group))
            }
            Err(e) => {
                let reason = format!("reading /proc/self/mountinfo: {e}");
                (Err(reason.clone()), Err(reason))
            }
        };
        let enforcement = LimitEnforcement {
            cpu: match &cpu {
                Ok(h) => Enforcement::Cgroup { version: h.version, dir: h.runtime_dir.clone() },
                Err(reason) => Enforcement::NotEnforced { reason: reason.clone() },
            },
            memory: match &memory {
                Ok(h) => Enforcement::Cgroup { version: h.version, dir: h.runtime_dir.clone() },
                Err(_) => Enforcement::AddressSpace,
            },
        };
        match &cpu {
            Ok(cpu) => tracing::info!(
                version = %cpu.version,
                cgroup = %cpu.runtime_dir.display(),
                memory = ?enforcement.memory,
                "cpu limits are enforced through cgroups"
            ),
            Err(reason) => tracing::warn!(
                %reason,
                memory = ?enforcement.memory,
                "cpu limits are not enforced: no usable cgroup cpu controller"
            ),
        }
        if let Err(reason) = &memory {
            tracing::debug!(%reason, "memory limits are address space limits: no usable memory controller");
        }
        Cgroups { enforcement, cpu: cpu.ok(), memory: memory.ok(), dirs: Mutex::new(()) }
    }

    /// How limits are enforced.
    pub(crate) fn enforcement(&self) -> &LimitEnforcement {
        &self.enforcement
    }

    /// Creates the groups of container `id` for the limits the hierarchies enforce, with the
    /// limits written; `None` when no group is needed. Nothing is left behind on failure.
    pub(crate) fn create(
        &self,
        id: &str,
        cpu_limit_millis: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Result<Option<ContainerGroups>, Error> {
        let cpu = match (&self.cpu, cpu_limit_millis.filter(|m| *m > 0)) {
            (Some(h), Some(millis)) => {
                Some((h, files::cpu_quota(millis).ok_or(Error::CpuOutOfRange { millis })?))
            }
            _ => None,
        };
        let memory = self.memory.as_ref().zip(memory_limit_bytes);
        if cpu.is_none() && memory.is_none() {
            return Ok(None);
        }
        let _dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut groups = ContainerGroups::default();
        let mut made = Vec::new();
        let mut setup = || -> Result<(), Error> {
            if let Some((h, quota)) = cpu {
                let dir = make_group(h, id, &mut made)?;
                for (file, value) in files::cpu_files(h.version, quota) {
                    write(&dir.join(file), &value)?;
                }
                groups.cpu = Some(Group { version: h.version, dir });
            }
            if let Some((h, bytes)) = memory {
                let dir = make_group(h, id, &mut made)?;
                let (limit_file, swap_file, swap_value) = files::memory_files(h.version, bytes);
                write(&dir.join(limit_file), &bytes.to_string())?;
                if dir.join(swap_file).exists() {
                    write(&dir.join(swap_file), &swap_value)?;
                }
                groups.memory = Some(Group { version: h.version, dir });
            }
            Ok(())
        };
        if let Err(error) = setup() {
            for dir in made.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(error);
        }
        Ok(Some(groups))
    }

    /// Kills what still runs in a container's groups and removes them, and the runtime's
    /// groups once empty. Failures are logged: a leftover empty group harms nobody.
    pub(crate) async fn remove(&self, id: &str, groups: &ContainerGroups) {
        let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
        for dir in groups.dirs() {
            loop {
                let outcome = kill_members(dir).and_then(|()| {
                    let _dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
                    remove_dir(dir)?;
                    // Fails while other containers' groups are in it, which is fine.
                    if let Some(parent) = dir.parent() {
                        let _ = std::fs::remove_dir(parent);
                    }
                    Ok(())
                });
                match outcome {
                    Ok(()) => break,
                    Err(error) if tokio::time::Instant::now() >= deadline => {
                        let error = error.detail();
                        tracing::warn!(container = %id, %error, "cannot remove the container's cgroup");
                        break;
                    }
                    // Killed processes leave their group a moment after they die.
                    Err(_) => tokio::time::sleep(REMOVE_POLL).await,
                }
            }
        }
    }
}

/// Finds the hierarchy of `controller` and checks the runtime can make its group there.
fn probe(mounts: &[CgroupMount], controller: &'static str, group: &str) -> Result<Hierarchy, String> {
    let mount = mountinfo::find_hierarchy(mounts, controller, |mount_point| {
        std::fs::read_to_string(mount_point.join("cgroup.controllers")).ok()
    })?;
    let hierarchy = Hierarchy {
        version: mount.version,
        controller,
        runtime_dir: files::runtime_dir(&mount.mount_point, group),
    };
    let failed = |e: Error| {
        format!("cannot use the {controller} controller at {}: {}", mount.mount_point.display(), e.detail())
    };
    if mount.version == CgroupVersion::V2 {
        enable(&mount.mount_point, controller).map_err(failed)?;
    }
    let existed = hierarchy.runtime_dir.is_dir();
    make_runtime_dir(&hierarchy).map_err(failed)?;
    if !existed {
        // Only a probe: the group is made again when a container needs it.
        remove_dir(&hierarchy.runtime_dir).map_err(failed)?;
    }
    Ok(hierarchy)
}

/// Makes `<mount>/flotilla/<runtime group>`, with the controller enabled for the groups
/// below each level in v2.
fn make_runtime_dir(h: &Hierarchy) -> Result<(), Error> {
    let base = h.runtime_dir.parent().unwrap_or(&h.runtime_dir);
    for dir in [base, h.runtime_dir.as_path()] {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", dir)(e)),
        }
        if h.version == CgroupVersion::V2 {
            enable(dir, h.controller)?;
        }
    }
    Ok(())
}

/// Makes container `id`'s group in `h` (once: v2 keeps both controllers in one folder),
/// remembering what it made in `made`.
fn make_group(h: &Hierarchy, id: &str, made: &mut Vec<PathBuf>) -> Result<PathBuf, Error> {
    let dir = h.runtime_dir.join(id);
    if made.contains(&dir) {
        return Ok(dir);
    }
    make_runtime_dir(h)?;
    match std::fs::create_dir(&dir) {
        Ok(()) => made.push(dir.clone()),
        // A start that was interrupted before: the group is reused.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", &dir)(e)),
    }
    Ok(dir)
}

/// Enables `controller` for the children of the v2 group `dir`, unless it is already.
fn enable(dir: &Path, controller: &str) -> Result<(), Error> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).map_err(io("reading", &file))?;
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    write(&file, &format!("+{controller}"))
}

fn write(file: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(file, value).map_err(io(format!("writing {value:?} to"), file))
}

fn remove_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
        _ => Ok(()),
    }
}

/// Sends SIGKILL to every process in the group `dir` (none once it is gone).
fn kill_members(dir: &Path) -> Result<(), Error> {
    let file = dir.join(PROCS_FILE);
    let pids = match std::fs::read_to_string(&file) {
        Ok(pids) => pids,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &file)(e)),
    };
    for pid in pids.lines().filter_map(|line| line.trim().parse::<i32>().ok()) {
        // Gone already is fine; nothing else can fail for root, who made the group.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_list_each_folder_once() {
        let v2 = Group { version: CgroupVersion::V2, dir: PathBuf::from("/cg/flotilla/n-1/c") };
        let both = ContainerGroups { cpu: Some(v2.clone()), memory: Some(v2) };
        assert_eq!(both.procs_files(), vec![PathBuf::from("/cg/flotilla/n-1/c/cgroup.procs")]);
        assert!(both.limits_memory());
        let v1 = ContainerGroups {
            cpu: Some(Group { version: CgroupVersion::V1, dir: PathBuf::from("/cg/cpu/flotilla/n-1/c") }),
            memory: Some(Group {
                version: CgroupVersion::V1,
                dir: PathBuf::from("/cg/memory/flotilla/n-1/c"),
            }),
        };
        assert_eq!(v1.procs_files().len(), 2);
        let cpu_only = ContainerGroups { memory: None, ..v1 };
        assert!(!cpu_only.limits_memory());
        assert!(!cpu_only.oom_killed(), "no memory group, no OOM kill");
    }

    #[test]
    fn groups_are_recorded_compactly() {
        let groups = ContainerGroups {
            cpu: Some(Group { version: CgroupVersion::V1, dir: PathBuf::from("/c") }),
            memory: None,
        };
        let json = serde_json::to_string(&groups).expect("encodes");
        assert_eq!(json, r#"{"cpu":{"version":"v1","dir":"/c"}}"#);
        assert_eq!(serde_json::from_str::<ContainerGroups>(&json).expect("decodes"), groups);
    }

    #[test]
    fn oom_kills_are_read_from_the_memory_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n").expect("write");
        let group = Group { version: CgroupVersion::V2, dir: dir.path().to_path_buf() };
        assert!(ContainerGroups { cpu: None, memory: Some(group.clone()) }.oom_killed());
        std::fs::write(dir.path().join("memory.events"), "oom 0\noom_kill 0\n").expect("write");
        assert!(!ContainerGroups { cpu: None, memory: Some(group) }.oom_killed());
    }

    #[test]
    fn errors_name_the_file_and_the_cause() {
        let error = write(Path::new("/nonexistent/cpu.max"), "1000 100000").expect_err("no such dir");
        let detail = error.detail();
        assert!(detail.starts_with("writing \"1000 100000\" to /nonexistent/cpu.max: "), "{detail}");
        assert_eq!(Error::CpuOutOfRange { millis: 7 }.detail(), "cpu limit of 7 millicores is out of range");
    }
}
