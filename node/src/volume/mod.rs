//! Pod volumes on the node (the kubelet's volume manager and its `emptydir`, `hostpath`,
//! `configmap`, `secret`, `downwardapi`, `projected` and persistent volume plugins).
//!
//! [`VolumeManager::setup`] makes every volume of a pod ready, idempotently, before its
//! containers are created; [`VolumeManager::mounts`] turns a container's `volumeMounts` into
//! the runtime's bind mounts. Volumes live under `<root>/pods/<uid>/volumes/<plugin>/<name>`:
//! - `emptyDir`: a directory (mode 0777); medium `Memory` mounts a tmpfs there (size
//!   `sizeLimit` when set), which needs root. A disk `sizeLimit` is not enforced.
//! - `hostPath`: the host path itself, checked (or created) according to `type`.
//! - `configMap`, `secret`, `downwardAPI` (metadata fields) and `projected` (of those
//!   three): files written atomically (see `atomic.rs`: a timestamped directory behind a
//!   `..data` symlink), `items` choosing keys, paths and modes, `defaultMode` 0644, `optional`
//!   allowing a missing object or key. [`VolumeManager::refresh`] rewrites them when the
//!   objects change; a subPath mount of such a volume does not see updates (as in Kubernetes).
//!   These volumes are always mounted read-only.
//! - `persistentVolumeClaim`: the claim (in the pod's namespace) must be Bound; its
//!   PersistentVolume must be a `hostPath` (its `type` honoured) or `local` volume.
//!
//! Not done: other volume types (an error naming the type), secrets on tmpfs (they are written
//! to disk), `fsGroup` ownership, `resourceFieldRef` in downward API files, service account
//! token projections, mount propagation, `recursiveReadOnly`. The subPath checks resolve
//! symlinks when the mounts are computed; a container swapping a symlink afterwards is not
//! guarded against. Memory emptyDirs are mounted in the agent's mount namespace, which must
//! be the one the container runtime sees.

mod atomic;
mod claim;
mod emptydir;
mod host;
mod manager;
mod mounts;
mod payload;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::io;
use std::path::{Path, PathBuf};

pub use manager::VolumeManager;

/// The prepared volumes of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes {
    /// The host directory (or file) of each volume, by volume name.
    pub paths: BTreeMap<String, PathBuf>,
    /// Volumes every mount of which is read-only (configMap, secret, downwardAPI, projected,
    /// and claims the pod mounts `readOnly`).
    pub read_only: BTreeSet<String>,
    /// Volumes that are a single file or socket rather than a directory (no subPath).
    pub files: BTreeSet<String>,
}

/// Errors of volume setup, mounts and teardown. Each names the pod, the volume and what
/// failed, so the agent can show it in Events and container states; use
/// [`Error::event_message`] for the text with its causes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod itself cannot have volumes (no uid, a bad name).
    #[error("pod {pod}: {reason}")]
    Pod {
        /// `namespace/name`.
        pod: String,
        /// What is wrong.
        reason: String,
    },
    /// A volume cannot be prepared: missing object or key, unbound claim, failed type check,
    /// unsupported type.
    #[error("pod {pod}: volume {volume:?}: {reason}")]
    Volume {
        /// `namespace/name`.
        pod: String,
        /// The volume's name.
        volume: String,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation on a volume failed.
    #[error("pod {pod}: volume {volume:?}: {action} {}", path.display())]
    Io {
        /// `namespace/name`.
        pod: String,
        /// The volume's name.
        volume: String,
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading an object the volume needs failed.
    #[error("pod {pod}: volume {volume:?}: reading {kind} {name:?}")]
    Api {
        /// `namespace/name`.
        pod: String,
        /// The volume's name.
        volume: String,
        /// The object's kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The cause (boxed: it is large and rare).
        #[source]
        source: Box<flotilla_core::client::Error>,
    },
    /// A volumeMount names no volume of the pod.
    #[error(
        "pod {pod}: container {container:?}: volumeMount {volume:?} names no volume of the pod (volumes: {known})"
    )]
    UnknownVolume {
        /// `namespace/name`.
        pod: String,
        /// The container's name.
        container: String,
        /// The unknown volume name.
        volume: String,
        /// The pod's volume names, comma separated.
        known: String,
    },
    /// A volumeMount cannot be used: bad mountPath, subPath outside the volume, ...
    #[error("pod {pod}: container {container:?}: volumeMount of {volume:?}: {reason}")]
    Mount {
        /// `namespace/name`.
        pod: String,
        /// The container's name.
        container: String,
        /// The volume's name.
        volume: String,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation for a volumeMount (a subPath) failed.
    #[error("pod {pod}: container {container:?}: volumeMount of {volume:?}: {action} {}", path.display())]
    MountIo {
        /// `namespace/name`.
        pod: String,
        /// The container's name.
        container: String,
        /// The volume's name.
        volume: String,
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a pod's volumes was refused (a file system still mounted, a bad uid).
    #[error("pod uid {pod_uid}: removing volumes: {reason}")]
    Teardown {
        /// The pod's uid.
        pod_uid: String,
        /// What is wrong.
        reason: String,
    },
    /// Removing a pod's volumes failed.
    #[error("pod uid {pod_uid}: removing volumes: {action} {}", path.display())]
    TeardownIo {
        /// The pod's uid.
        pod_uid: String,
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Listing the pod directories failed.
    #[error("listing pod directories in {}", path.display())]
    ListPods {
        /// The directory listed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The message followed by its causes (`...: permission denied`), for Events and
    /// container state messages.
    pub fn event_message(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What preparing one volume failed with, before the pod and volume are known.
#[derive(Debug)]
enum Failure {
    Invalid(String),
    Fs { action: &'static str, path: PathBuf, source: io::Error },
    Api { kind: &'static str, name: String, source: flotilla_core::client::Error },
}

impl Failure {
    /// A mapper of an I/O error on `path`.
    fn fs(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Failure {
        move |source| Failure::Fs { action, path: path.to_path_buf(), source }
    }

    /// The error, naming the pod and volume.
    fn at(self, pod: &str, volume: &str) -> Error {
        let (pod, volume) = (pod.to_string(), volume.to_string());
        match self {
            Failure::Invalid(reason) => Error::Volume { pod, volume, reason },
            Failure::Fs { action, path, source } => Error::Io { pod, volume, action, path, source },
            Failure::Api { kind, name, source } => {
                Error::Api { pod, volume, kind, name, source: Box::new(source) }
            }
        }
    }

    /// The error of a teardown.
    fn teardown(self, pod_uid: &str) -> Error {
        let pod_uid = pod_uid.to_string();
        match self {
            Failure::Invalid(reason) => Error::Teardown { pod_uid, reason },
            Failure::Fs { action, path, source } => Error::TeardownIo { pod_uid, action, path, source },
            Failure::Api { kind, name, .. } => {
                Error::Teardown { pod_uid, reason: format!("unexpected read of {kind} {name:?}") }
            }
        }
    }
}

/// Whether `name` can be one path component (pod uids, volume names come from the network).
fn is_safe_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}
