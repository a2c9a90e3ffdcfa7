//! Finding cgroup hierarchies in `/proc/self/mountinfo`, and the one that offers a controller.

use std::path::{Path, PathBuf};

use super::CgroupVersion;

/// A mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub(crate) mount_point: PathBuf,
    pub(crate) version: CgroupVersion,
    /// The superblock options of a v1 hierarchy: its controllers (`cpu`, `cpuacct`,
    /// `memory`, ...) among others (`rw`, `name=systemd`). Empty for v2, whose controllers
    /// are listed in its `cgroup.controllers` file instead.
    pub(crate) options: Vec<String>,
    /// Mounted (or its superblock) read-only.
    pub(crate) read_only: bool,
}

impl CgroupMount {
    /// Whether this v1 hierarchy carries `controller` (`cpu` is not `cpuacct` or `cpuset`).
    fn has_v1(&self, controller: &str) -> bool {
        self.version == CgroupVersion::V1 && self.options.iter().any(|o| o == controller)
    }
}

/// The cgroup mounts in the content of `/proc/self/mountinfo`. A line is
/// `id parent major:minor root mount-point options [optional fields...] - type source super-options`;
/// lines that do not have that shape are skipped.
pub(crate) fn parse(content: &str) -> Vec<CgroupMount> {
    content.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<CgroupMount> {
    let fields: Vec<&str> = line.split(' ').collect();
    // The optional fields end at the first lone `-` after the six fixed fields.
    let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let (mount_point, mount_options) = (fields.get(4)?, fields.get(5)?);
    let fs_type = *fields.get(dash + 1)?;
    let super_options = *fields.get(dash + 3)?;
    let version = match fs_type {
        "cgroup" => CgroupVersion::V1,
        "cgroup2" => CgroupVersion::V2,
        _ => return None,
    };
    let is_ro = |options: &str| options.split(',').any(|o| o == "ro");
    Some(CgroupMount {
        mount_point: PathBuf::from(unescape(mount_point)),
        version,
        options: match version {
            CgroupVersion::V1 => super_options.split(',').map(str::to_string).collect(),
            CgroupVersion::V2 => Vec::new(),
        },
        read_only: is_ro(mount_options) || is_ro(super_options),
    })
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash (`\040` ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'))) {
            Some(code) if code <= 0xff => {
                out.push(u8::try_from(code).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hierarchy where `controller` can be used: a v2 hierarchy that lists it in its
/// `cgroup.controllers` (read through `v2_controllers`, given a mount point), else a v1
/// hierarchy mounted with it. A controller is attached to one hierarchy at a time, so at most
/// one of them has it. The error says what was found instead.
pub(crate) fn find_hierarchy(
    mounts: &[CgroupMount],
    controller: &str,
    v2_controllers: impl Fn(&Path) -> Option<String>,
) -> Result<CgroupMount, String> {
    let mut seen = Vec::new();
    for mount in mounts.iter().filter(|m| m.version == CgroupVersion::V2) {
        let offered = v2_controllers(&mount.mount_point).unwrap_or_default();
        if offered.split_whitespace().any(|c| c == controller) {
            return usable(mount);
        }
        let offered = if offered.trim().is_empty() { "none" } else { offered.trim() };
        seen.push(format!("cgroup2 at {} offers controllers: {offered}", mount.mount_point.display()));
    }
    if let Some(mount) = mounts.iter().find(|m| m.has_v1(controller)) {
        return usable(mount);
    }
    seen.push(format!("no cgroup v1 hierarchy is mounted with the {controller} controller"));
    Err(seen.join("; "))
}

fn usable(mount: &CgroupMount) -> Result<CgroupMount, String> {
    if mount.read_only {
        return Err(format!("the cgroup hierarchy at {} is mounted read-only", mount.mount_point.display()));
    }
    Ok(mount.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cgroup v1 with cpu and cpuacct in separate hierarchies, and an empty cgroup2 beside
    /// them (a "hybrid" host like the CI machines).
    const HYBRID: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    /// Pure cgroup v2 (systemd's unified layout).
    const V2: &str = "\
25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 22 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:5 - securityfs securityfs rw";

    /// cgroup v1 with `cpu,cpuacct` together, as systemd mounts it, inside a container
    /// whose /sys/fs/cgroup is read-only, with an escaped mount point.
    const V1_READ_ONLY: &str = "\
700 690 0:60 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:12 - cgroup cgroup rw,cpu,cpuacct
701 690 0:61 /docker/abc /sys/fs/cgroup/my\\040memory rw,nosuid - cgroup cgroup rw,memory";

    fn offers(controllers: &'static str) -> impl Fn(&Path) -> Option<String> {
        move |_| Some(controllers.to_string())
    }

    #[test]
    fn parses_a_hybrid_host() {
        let mounts = parse(HYBRID);
        let points: Vec<&str> = mounts.iter().map(|m| m.mount_point.to_str().expect("utf-8")).collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
        );
        assert_eq!(mounts[5].version, CgroupVersion::V2);
        assert!(mounts.iter().all(|m| !m.read_only));
        // cgroup2 there offers no cpu: the v1 hierarchy is the one, and `cpuacct` or `cpuset`
        // are not mistaken for it.
        let cpu = find_hierarchy(&mounts, "cpu", offers("hugetlb")).expect("v1 cpu");
        assert_eq!(
            (cpu.mount_point.as_path(), cpu.version),
            (Path::new("/sys/fs/cgroup/cpu"), CgroupVersion::V1)
        );
        let memory = find_hierarchy(&mounts, "memory", offers("")).expect("v1 memory");
        assert_eq!(memory.mount_point, Path::new("/sys/fs/cgroup/memory"));
        let error = find_hierarchy(&mounts, "io", offers("hugetlb")).expect_err("no io anywhere");
        assert!(error.contains("/sys/fs/cgroup/unified offers controllers: hugetlb"), "{error}");
    }

    #[test]
    fn parses_pure_v2() {
        let mounts = parse(V2);
        assert_eq!(mounts.len(), 1);
        assert_eq!((mounts[0].version, mounts[0].read_only), (CgroupVersion::V2, false));
        let cpu = find_hierarchy(&mounts, "cpu", offers("cpuset cpu io memory pids\n")).expect("v2 cpu");
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup"));
        let error = find_hierarchy(&mounts, "cpu", offers("memory pids")).expect_err("cpu not delegated");
        assert!(error.contains("offers controllers: memory pids"), "{error}");
        let error = find_hierarchy(&mounts, "cpu", |_| None).expect_err("unreadable");
        assert!(error.contains("offers controllers: none"), "{error}");
    }

    #[test]
    fn read_only_and_comounted_v1() {
        let mounts = parse(V1_READ_ONLY);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(mounts[0].read_only);
        assert_eq!(mounts[1].mount_point, Path::new("/sys/fs/cgroup/my memory"));
        let error = find_hierarchy(&mounts, "cpu", offers("")).expect_err("read-only");
        assert!(error.contains("read-only"), "{error}");
        assert!(find_hierarchy(&mounts, "memory", offers("")).is_ok());
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert!(parse("").is_empty());
        assert!(parse("garbage\n1 2 3\n1 2 0:1 / /x rw - cgroup cgroup").is_empty());
        assert!(parse("1 2 0:1 / /x rw - tmpfs tmpfs rw").is_empty());
        // Optional fields before the separator.
        let mounts = parse("1 2 0:1 / /x rw shared:1 master:2 - cgroup2 cgroup2 rw");
        assert_eq!(mounts.len(), 1);
        assert_eq!(unescape("a\\134b\\011c\\0"), "a\\b\tc\\0");
    }
}
