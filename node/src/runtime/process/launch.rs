//! Starting a host process for a container or an exec: environment, working directory,
//! program lookup, the memory limit, the process group, and the mount namespace.
//!
//! The workspace forbids `unsafe`, so nothing runs between `fork` and `exec` in the child
//! (`pre_exec` is unsafe). Instead:
//! - the process group comes from `Command::process_group(0)`;
//! - a private mount namespace is made on a short-lived thread of our own: that thread
//!   unshares its mount namespace (threads may, as long as they stop sharing filesystem
//!   attributes, which `CLONE_NEWNS` implies), bind-mounts, then spawns the child, which
//!   inherits the thread's namespace; exec joins a container's namespace the same way with
//!   `setns`;
//! - limits are applied by `/bin/sh` just before it `exec`s the program, so the pid stays the
//!   program's and the program never runs unlimited: it writes its own pid into the
//!   `cgroup.procs` file of each of the container's cgroups, and sets `RLIMIT_AS` with
//!   `ulimit -v` when no memory cgroup limits the container. A failure there ends the shell
//!   with exit code 125 and the shell's message in the log.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use tokio::process::Child;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::state::StoredMount;

/// `PATH` given to processes whose environment has none and whose agent has none either.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell that applies the limits.
pub(crate) const SHELL: &str = "/bin/sh";

/// The mount namespace a process starts in.
#[derive(Debug)]
pub(crate) enum Namespace {
    /// The agent's own.
    Host,
    /// A new private one with these bind mounts.
    Private(Vec<StoredMount>),
    /// The one behind this `/proc/<pid>/ns/mnt` file.
    Join(File),
}

/// Everything needed to start a process.
#[derive(Debug)]
pub(crate) struct Launch {
    /// `command ++ args`, not empty.
    pub(crate) argv: Vec<String>,
    /// The full environment.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: PathBuf,
    pub(crate) limits: Limits,
    pub(crate) namespace: Namespace,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    /// Kill the process (not its group) if its `Child` is dropped before it exits.
    pub(crate) kill_on_drop: bool,
}

/// The limits a process gets before it runs its program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The `cgroup.procs` files of the groups it joins.
    pub(crate) cgroup_procs: Vec<PathBuf>,
    /// Its `RLIMIT_AS`, in bytes.
    pub(crate) address_space_bytes: Option<u64>,
}

/// The environment a process gets: its own, plus the agent's `PATH` when it sets none
/// (nothing else of the agent's environment leaks in).
pub(crate) fn effective_env(env: &[(String, String)], agent_path: &str) -> Vec<(String, String)> {
    let mut out = env.to_vec();
    if !env.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".to_string(), agent_path.to_string()));
    }
    out
}

/// The value of `key` in an environment (the last one wins, as in `Command::env`).
fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Finds the program as `execvp` would: a name with a `/` is a path (relative to the working
/// directory), any other is looked up in `path`.
pub(crate) fn resolve_program(program: &str, path: &str, working_dir: &Path) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the command is empty".to_string());
    }
    if program.contains('/') {
        let candidate = working_dir.join(program);
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(format!("executable {program:?} not found or not executable"))
        };
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("executable {program:?} not found in PATH {path:?}"))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command line actually run: the program itself, or the shell applying the limits
/// (joining each cgroup, then the address space limit rounded up to KiB) and then replacing
/// itself with the program. The paths and values are the shell's arguments, never part of its
/// script, so nothing in them is interpreted.
pub(crate) fn command_line(program: PathBuf, args: &[String], limits: &Limits) -> Vec<String> {
    let program = program.to_string_lossy().into_owned();
    if limits == &Limits::default() {
        return std::iter::once(program).chain(args.iter().cloned()).collect();
    }
    let mut script = String::new();
    let mut values = Vec::new();
    for procs in &limits.cgroup_procs {
        script.push_str("echo $$ > \"$1\" || exit 125; shift; ");
        values.push(procs.to_string_lossy().into_owned());
    }
    if let Some(bytes) = limits.address_space_bytes {
        script.push_str("ulimit -v \"$1\" || exit 125; shift; ");
        values.push(bytes.div_ceil(1024).max(1).to_string());
    }
    script.push_str("exec \"$@\"");
    [SHELL.to_string(), "-c".to_string(), script, "flotilla-limit".to_string()]
        .into_iter()
        .chain(values)
        .chain(std::iter::once(program))
        .chain(args.iter().cloned())
        .collect()
}

/// Starts the process; the error says why it could not (for `RunContainerError`).
pub(crate) async fn launch(handle: &Handle, launch: Launch) -> Result<Child, String> {
    if matches!(launch.namespace, Namespace::Host) {
        return spawn_here(launch);
    }
    // Namespace changes stick to the thread that makes them, so they happen on a thread
    // that ends right after the spawn instead of one of the runtime's.
    let (tx, rx) = oneshot::channel();
    let handle = handle.clone();
    std::thread::Builder::new()
        .name("flotilla-launch".to_string())
        .spawn(move || {
            let _runtime = handle.enter();
            // The receiver only goes away if the caller gave up; the child then runs unwatched.
            let _ = tx.send(spawn_here(launch));
        })
        .map_err(|e| format!("starting a thread to launch the process: {e}"))?;
    rx.await.map_err(|_| "the launching thread ended without an answer".to_string())?
}

fn spawn_here(launch: Launch) -> Result<Child, String> {
    match launch.namespace {
        Namespace::Host => {}
        Namespace::Private(ref mounts) => enter_private_namespace(mounts)?,
        Namespace::Join(ref ns) => {
            nix::sched::unshare(CloneFlags::CLONE_FS)
                .and_then(|()| nix::sched::setns(ns, CloneFlags::CLONE_NEWNS))
                .map_err(|e| format!("joining the container's mount namespace: {e}"))?;
        }
    }
    if !launch.working_dir.is_dir() {
        return Err(format!("working directory {} does not exist", launch.working_dir.display()));
    }
    let (first, args) = launch.argv.split_first().ok_or("the command is empty")?;
    let path = lookup(&launch.env, "PATH").unwrap_or(DEFAULT_PATH);
    let program = resolve_program(first, path, &launch.working_dir)?;
    let argv = command_line(program, args, &launch.limits);
    let (program, args) = argv.split_first().expect("a command line starts with its program");
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.working_dir)
        .stdin(Stdio::null())
        .stdout(launch.stdout)
        .stderr(launch.stderr)
        // Its own process group, so that stop signals everything it started.
        .process_group(0)
        .kill_on_drop(launch.kill_on_drop);
    command.spawn().map_err(|e| format!("starting {first:?}: {e}"))
}

/// Makes the calling thread's mount namespace a private copy and bind-mounts into it.
fn enter_private_namespace(mounts: &[StoredMount]) -> Result<(), String> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("creating a mount namespace: {e}"))?;
    // Without this, the bind mounts below would propagate back to the host.
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making the mount namespace private: {e}"))?;
    for m in mounts {
        let what = || format!("mount {} at {}", m.host_path.display(), m.container_path.display());
        create_target(m).map_err(|e| format!("{}: creating the target: {e}", what()))?;
        nix::mount::mount(
            Some(m.host_path.as_path()),
            m.container_path.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("{}: {e}", what()))?;
        if m.read_only {
            nix::mount::mount(
                None::<&str>,
                m.container_path.as_path(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| format!("{}: making it read-only: {e}", what()))?;
        }
    }
    Ok(())
}

/// A bind mount needs a target of the same kind as its source.
fn create_target(m: &StoredMount) -> std::io::Result<()> {
    if std::fs::metadata(&m.host_path)?.is_dir() {
        return std::fs::create_dir_all(&m.container_path);
    }
    if let Some(parent) = m.container_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if !m.container_path.exists() {
        File::create(&m.container_path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_gets_the_agent_path_only_when_it_has_none() {
        assert_eq!(effective_env(&pairs(&[("A", "1")]), "/agent"), pairs(&[("A", "1"), ("PATH", "/agent")]));
        assert_eq!(effective_env(&pairs(&[("PATH", "/own")]), "/agent"), pairs(&[("PATH", "/own")]));
    }

    #[test]
    fn lookup_takes_the_last_value() {
        assert_eq!(lookup(&pairs(&[("A", "1"), ("A", "2")]), "A"), Some("2"));
        assert_eq!(lookup(&pairs(&[("A", "1")]), "B"), None);
    }

    #[test]
    fn resolves_in_path_and_relative_to_working_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        let not_exec = bin.join("data");
        std::fs::write(&not_exec, "").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(resolve_program("tool", &path, Path::new("/")), Ok(tool.clone()));
        assert_eq!(resolve_program("bin/tool", "", dir.path()), Ok(tool));
        let err = resolve_program("data", &path, Path::new("/")).expect_err("not executable");
        assert!(err.contains("\"data\""), "{err}");
        assert!(resolve_program("./bin/data", "", dir.path()).is_err());
        assert!(resolve_program("", &path, Path::new("/")).is_err());
    }

    #[test]
    fn limits_go_through_the_shell() {
        let args = vec!["-c".to_string(), "echo hi".to_string()];
        let none = Limits::default();
        assert_eq!(command_line(PathBuf::from("/bin/sh"), &args, &none), vec!["/bin/sh", "-c", "echo hi"]);
        let memory = Limits { address_space_bytes: Some(1025), ..Limits::default() };
        let limited = command_line(PathBuf::from("/bin/prog"), &args, &memory);
        assert_eq!(limited[0], SHELL);
        assert_eq!(limited[2], "ulimit -v \"$1\" || exit 125; shift; exec \"$@\"");
        assert_eq!(&limited[4..], &["2", "/bin/prog", "-c", "echo hi"]);
        let both = Limits {
            cgroup_procs: vec![
                PathBuf::from("/cg/cpu/x/cgroup.procs"),
                PathBuf::from("/cg/memory/x/cgroup.procs"),
            ],
            address_space_bytes: None,
        };
        let limited = command_line(PathBuf::from("/bin/prog"), &args, &both);
        assert_eq!(limited[2].matches("echo $$ > \"$1\" || exit 125; shift; ").count(), 2);
        assert!(!limited[2].contains("ulimit"));
        assert_eq!(
            &limited[4..],
            &["/cg/cpu/x/cgroup.procs", "/cg/memory/x/cgroup.procs", "/bin/prog", "-c", "echo hi"]
        );
    }

    #[test]
    fn the_limiting_shell_joins_the_group_before_it_execs() {
        // A stand-in for a group's `cgroup.procs`: the pid written there must be the pid the
        // program then runs as (`$$` of the inner shell), so no other process runs unlimited.
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = dir.path().join("cgroup.procs");
        let limits = Limits { cgroup_procs: vec![procs.clone()], address_space_bytes: Some(64 << 20) };
        let args = vec!["-c".to_string(), "echo $$; ulimit -v".to_string()];
        let argv = command_line(PathBuf::from(SHELL), &args, &limits);
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().expect("runs");
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let written = std::fs::read_to_string(&procs).expect("the pid was written");
        assert_eq!(stdout, format!("{written}65536\n"));
        let unwritable =
            Limits { cgroup_procs: vec![dir.path().join("no/such/file")], address_space_bytes: None };
        let argv = command_line(PathBuf::from(SHELL), &args, &unwritable);
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().expect("runs");
        assert_eq!(out.status.code(), Some(125), "the program does not run outside its group");
        assert!(out.stdout.is_empty());
    }
}
