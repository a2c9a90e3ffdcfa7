//! What the process runtime persists under its root directory, so that a restarted agent
//! finds its sandboxes and containers again.
//!
//! Layout:
//! ```text
//! <root>/sandboxes/<id>/sandbox.json
//! <root>/containers/<id>/container.json   the record below
//! <root>/containers/<id>/container.log    the log, CRI format
//! <root>/containers/<id>/stdout, stderr   FIFOs the process writes to
//! <root>/containers/<id>/work/            the default working directory
//! ```
//! Every record carries `version`; a record of an unknown version is skipped with a warning
//! rather than misread. Records are replaced atomically (write a temporary file, rename).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::cgroup::ContainerGroups;
use crate::runtime::{ContainerConfig, Error, Mount, PodRef, Result, SandboxConfig};

/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

const SANDBOX_FILE: &str = "sandbox.json";
const CONTAINER_FILE: &str = "container.json";

/// A pod reference as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPod {
    pub(crate) uid: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl From<&PodRef> for StoredPod {
    fn from(pod: &PodRef) -> Self {
        StoredPod { uid: pod.uid.clone(), namespace: pod.namespace.clone(), name: pod.name.clone() }
    }
}

impl StoredPod {
    pub(crate) fn to_pod_ref(&self) -> PodRef {
        PodRef { uid: self.uid.clone(), namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

/// A sandbox as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub(crate) version: u32,
    pub(crate) id: String,
    pub(crate) pod: StoredPod,
    pub(crate) hostname: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) created_at: Timestamp,
}

impl SandboxRecord {
    pub(crate) fn new(id: String, config: &SandboxConfig, labels: BTreeMap<String, String>) -> Self {
        SandboxRecord {
            version: FORMAT_VERSION,
            id,
            pod: StoredPod::from(&config.pod),
            hostname: config.hostname.clone(),
            labels,
            created_at: Timestamp::now(),
        }
    }
}

/// A bind mount as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMount {
    pub(crate) host_path: PathBuf,
    pub(crate) container_path: PathBuf,
    pub(crate) read_only: bool,
}

impl From<&Mount> for StoredMount {
    fn from(m: &Mount) -> Self {
        StoredMount {
            host_path: m.host_path.clone(),
            container_path: m.container_path.clone(),
            read_only: m.read_only,
        }
    }
}

/// The process of a started container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProcessRecord {
    /// Its pid, which is also its process group id.
    pub(crate) pid: i32,
    /// Its start time from `/proc/<pid>/stat`, to tell it from a later process with its pid.
    pub(crate) start_ticks: u64,
    pub(crate) started_at: Timestamp,
    /// Whether it runs in a private mount namespace (exec joins it).
    pub(crate) mount_namespace: bool,
}

/// How a container's process ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub(crate) exit_code: i32,
    pub(crate) reason: String,
    pub(crate) finished_at: Option<Timestamp>,
}

/// A container as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub(crate) version: u32,
    pub(crate) id: String,
    pub(crate) sandbox_id: String,
    pub(crate) pod: StoredPod,
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) command: Vec<String>,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: Option<String>,
    pub(crate) mounts: Vec<StoredMount>,
    pub(crate) cpu_limit_millis: Option<u64>,
    pub(crate) memory_limit_bytes: Option<u64>,
    pub(crate) restart_count: u32,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) created_at: Timestamp,
    /// Set once started.
    pub(crate) process: Option<ProcessRecord>,
    /// Set once its end is known.
    pub(crate) exit: Option<ExitRecord>,
    /// The cgroups made for its limits when it started (absent in records written before
    /// cgroups were used, which read as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cgroups: Option<ContainerGroups>,
}

impl ContainerRecord {
    pub(crate) fn new(
        id: String,
        sandbox_id: String,
        config: &ContainerConfig,
        labels: BTreeMap<String, String>,
    ) -> Self {
        ContainerRecord {
            version: FORMAT_VERSION,
            id,
            sandbox_id,
            pod: StoredPod::from(&config.pod),
            name: config.name.clone(),
            image: config.image.clone(),
            command: config.command.clone(),
            args: config.args.clone(),
            env: config.env.clone(),
            working_dir: config.working_dir.clone(),
            mounts: config.mounts.iter().map(StoredMount::from).collect(),
            cpu_limit_millis: config.cpu_limit_millis,
            memory_limit_bytes: config.memory_limit_bytes,
            restart_count: config.restart_count,
            labels,
            created_at: Timestamp::now(),
            process: None,
            exit: None,
            cgroups: None,
        }
    }

    /// The command line: `command` followed by `args`.
    pub(crate) fn argv(&self) -> Vec<String> {
        self.command.iter().chain(&self.args).cloned().collect()
    }
}

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(record).expect("records hold only strings, numbers and maps")
}

/// Decodes a record, refusing versions this code does not know.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], file: &Path) -> Result<T> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let unreadable =
        |e: serde_json::Error| Error::Unavailable(format!("state file {} unreadable: {e}", file.display()));
    let Versioned { version } = serde_json::from_slice(bytes).map_err(unreadable)?;
    if version != FORMAT_VERSION {
        return Err(Error::Unavailable(format!(
            "state file {} has format version {version}; this runtime reads version {FORMAT_VERSION}",
            file.display()
        )));
    }
    serde_json::from_slice(bytes).map_err(unreadable)
}

/// Where things live under the root directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub(crate) fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes_dir().join(id)
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    pub(crate) fn container_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    pub(crate) fn stdout_fifo(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("stdout")
    }

    pub(crate) fn stderr_fifo(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("stderr")
    }

    pub(crate) fn default_working_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("work")
    }

    /// Creates the root's folders.
    pub(crate) fn create(&self) -> Result<()> {
        for dir in [self.sandboxes_dir(), self.containers_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| io_error("creating", &dir, e))?;
        }
        Ok(())
    }

    /// Creates a fresh directory for a new object under `parent`; returns its id.
    pub(crate) fn create_object_dir(&self, parent: &Path) -> Result<String> {
        loop {
            let id = new_id();
            let dir = parent.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("creating", &dir, e)),
            }
        }
    }

    pub(crate) fn write_sandbox(&self, record: &SandboxRecord) -> Result<()> {
        write_atomic(&self.sandbox_dir(&record.id).join(SANDBOX_FILE), &encode(record))
    }

    pub(crate) fn write_container(&self, record: &ContainerRecord) -> Result<()> {
        write_atomic(&self.container_dir(&record.id).join(CONTAINER_FILE), &encode(record))
    }

    /// Every sandbox record; unreadable ones are skipped with a warning.
    pub(crate) fn load_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        load_all(&self.sandboxes_dir(), SANDBOX_FILE)
    }

    /// Every container record; unreadable ones are skipped with a warning.
    pub(crate) fn load_containers(&self) -> Result<Vec<ContainerRecord>> {
        load_all(&self.containers_dir(), CONTAINER_FILE)
    }

    /// Removes an object's directory and everything in it.
    pub(crate) fn remove_dir(&self, dir: &Path) -> Result<()> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", dir, e)),
        }
    }
}

fn load_all<T: for<'de> Deserialize<'de>>(parent: &Path, file_name: &str) -> Result<Vec<T>> {
    let entries = std::fs::read_dir(parent).map_err(|e| io_error("listing", parent, e))?;
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", parent, e))?;
        let file = entry.path().join(file_name);
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            // A directory without a record: creation was interrupted before the first write.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %entry.path().display(), "skipping state directory without a record");
                continue;
            }
            Err(e) => return Err(io_error("reading", &file, e)),
        };
        match decode(&bytes, &file) {
            Ok(record) => records.push(record),
            Err(error) => tracing::warn!(%error, "skipping unreadable state file"),
        }
    }
    Ok(records)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    flotilla_core::durable_fs::write_atomic(path, bytes, 0o644).map_err(|e| io_error("writing", path, e))
}

/// An I/O failure naming what was done to which path.
pub(crate) fn io_error(doing: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{doing} {}: {e}", path.display()))
}

/// A random 32-hex-digit id (std's randomly keyed hasher spares a dependency on `rand`;
/// uniqueness is checked when the directory is created).
fn new_id() -> String {
    let nanos = Timestamp::now().as_nanosecond();
    let a = RandomState::new().hash_one(nanos);
    let b = RandomState::new().hash_one((nanos, std::process::id()));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container record as format version 1 wrote it. Never edit: it is how old state looks.
    const CONTAINER_V1: &str = r#"{
      "version": 1,
      "id": "0123456789abcdef0123456789abcdef",
      "sandbox_id": "fedcba9876543210fedcba9876543210",
      "pod": { "uid": "u-1", "namespace": "default", "name": "web" },
      "name": "app",
      "image": "",
      "command": ["/bin/sh", "-c"],
      "args": ["echo hi"],
      "env": [["A", "1"], ["PATH", "/bin"]],
      "working_dir": "/tmp",
      "mounts": [{ "host_path": "/srv/data", "container_path": "/data", "read_only": true }],
      "cpu_limit_millis": 500,
      "memory_limit_bytes": 67108864,
      "restart_count": 2,
      "labels": { "flotilla.dev/role": "container" },
      "created_at": "2025-01-02T03:04:05.123456789Z",
      "process": {
        "pid": 4242,
        "start_ticks": 987654,
        "started_at": "2025-01-02T03:04:06Z",
        "mount_namespace": true
      },
      "exit": { "exit_code": 137, "reason": "Error", "finished_at": "2025-01-02T03:05:00Z" }
    }"#;

    const SANDBOX_V1: &str = r#"{
      "version": 1,
      "id": "fedcba9876543210fedcba9876543210",
      "pod": { "uid": "u-1", "namespace": "default", "name": "web" },
      "hostname": "web",
      "labels": {},
      "created_at": "2025-01-02T03:04:05Z"
    }"#;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamps are valid")
    }

    #[test]
    fn decodes_version_1_container_fixture() {
        let record: ContainerRecord = decode(CONTAINER_V1.as_bytes(), Path::new("fixture")).expect("decodes");
        assert_eq!(record.id, "0123456789abcdef0123456789abcdef");
        assert_eq!(record.pod.to_pod_ref().name, "web");
        assert_eq!(record.argv(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(record.env[1], ("PATH".to_string(), "/bin".to_string()));
        assert_eq!(record.mounts[0].container_path, PathBuf::from("/data"));
        assert!(record.mounts[0].read_only);
        assert_eq!(record.memory_limit_bytes, Some(64 << 20));
        assert_eq!(record.created_at, ts("2025-01-02T03:04:05.123456789Z"));
        let process = record.process.as_ref().expect("fixture has a process");
        assert_eq!((process.pid, process.start_ticks, process.mount_namespace), (4242, 987654, true));
        let exit = record.exit.as_ref().expect("fixture has an exit");
        assert_eq!((exit.exit_code, exit.reason.as_str()), (137, "Error"));
        assert_eq!(exit.finished_at, Some(ts("2025-01-02T03:05:00Z")));
        assert_eq!(record.cgroups, None, "version 1 records from before cgroups have none");
    }

    #[test]
    fn cgroups_round_trip_and_stay_out_of_records_without_them() {
        use super::super::cgroup::{CgroupVersion, Group};
        let mut record: ContainerRecord =
            decode(CONTAINER_V1.as_bytes(), Path::new("fixture")).expect("decodes");
        assert!(!String::from_utf8(encode(&record)).expect("utf-8").contains("cgroups"));
        let group = Group { version: CgroupVersion::V2, dir: PathBuf::from("/sys/fs/cgroup/flotilla/n/c") };
        record.cgroups = Some(ContainerGroups { cpu: Some(group.clone()), memory: Some(group) });
        let again: ContainerRecord = decode(&encode(&record), Path::new("again")).expect("decodes");
        assert_eq!(again, record);
    }

    #[test]
    fn decodes_version_1_sandbox_fixture() {
        let record: SandboxRecord = decode(SANDBOX_V1.as_bytes(), Path::new("fixture")).expect("decodes");
        assert_eq!(record.hostname, "web");
        assert_eq!(record.pod.uid, "u-1");
    }

    #[test]
    fn round_trips_through_encode() {
        let record: ContainerRecord = decode(CONTAINER_V1.as_bytes(), Path::new("fixture")).expect("decodes");
        let again: ContainerRecord = decode(&encode(&record), Path::new("again")).expect("decodes");
        assert_eq!(again, record);
    }

    #[test]
    fn refuses_unknown_version_naming_the_file() {
        let bytes = CONTAINER_V1.replacen("\"version\": 1", "\"version\": 99", 1);
        let err = decode::<ContainerRecord>(bytes.as_bytes(), Path::new("/x/container.json"))
            .expect_err("version 99 is unknown");
        let message = err.to_string();
        assert!(message.contains("/x/container.json") && message.contains("99"), "{message}");
    }

    #[test]
    fn refuses_garbage_naming_the_file() {
        let err = decode::<SandboxRecord>(b"{not json", Path::new("/y/sandbox.json")).expect_err("garbage");
        assert!(err.to_string().contains("/y/sandbox.json"), "{err}");
    }

    #[test]
    fn ids_are_distinct_hex() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn layout_writes_and_loads_records_skipping_broken_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path().to_path_buf());
        layout.create().expect("create layout");
        let mut record: SandboxRecord = decode(SANDBOX_V1.as_bytes(), Path::new("fixture")).expect("decodes");
        record.id = layout.create_object_dir(&layout.sandboxes_dir()).expect("dir");
        layout.write_sandbox(&record).expect("write");
        let broken = layout.create_object_dir(&layout.sandboxes_dir()).expect("dir");
        std::fs::write(layout.sandbox_dir(&broken).join(SANDBOX_FILE), b"{").expect("write broken");
        layout.create_object_dir(&layout.sandboxes_dir()).expect("dir without a record");
        assert_eq!(layout.load_sandboxes().expect("load"), vec![record]);
    }
}
