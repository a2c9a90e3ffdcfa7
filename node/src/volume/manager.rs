//! [`VolumeManager`]: reads what volumes need through the client, then prepares them on disk
//! on a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use flotilla_core::client::{Api, Client};
use flotilla_core::quantity::Quantity;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use tracing::{debug, info};

use super::payload::{self, DEFAULT_MODE, Payload, file_mode};
use super::{Error, Failure, PodVolumes, Result, atomic, claim, emptydir, host, is_safe_component, mounts};
use crate::runtime::Mount;

/// The directory under the root holding one directory per pod uid.
const PODS_DIR: &str = "pods";
/// The directory in a pod's directory holding its volumes, one directory per plugin.
const VOLUMES_DIR: &str = "volumes";

/// Prepares, refreshes and removes the volumes of the pods on this node.
#[derive(Clone)]
pub struct VolumeManager {
    root: PathBuf,
    client: Arc<dyn Client>,
    /// The result of each pod's latest successful setup, by uid (shared by clones).
    prepared: Arc<Mutex<HashMap<String, PodVolumes>>>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The pod fields volumes need.
struct PodId {
    uid: String,
    namespace: String,
    /// `namespace/name`, for errors.
    key: String,
}

impl PodId {
    fn of(pod: &Pod) -> Result<PodId> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or_default());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !is_safe_component(&uid) {
            return Err(Error::Pod { pod: key, reason: format!("uid {uid:?} cannot name a directory") });
        }
        Ok(PodId { uid, namespace, key })
    }
}

/// One prepared volume.
struct Prepared {
    path: PathBuf,
    read_only: bool,
    file: bool,
}

impl Prepared {
    fn dir(path: PathBuf, read_only: bool) -> Prepared {
        Prepared { path, read_only, file: false }
    }
}

/// Runs file system work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Failure::Invalid(format!("volume work on a blocking thread failed: {e}"))))
}

/// The name of a volume's type: the JSON field of its source.
fn type_name(volume: &Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()))
        .unwrap_or_else(|| "none".into())
}

impl VolumeManager {
    /// A manager keeping volumes under `root_dir` and reading objects through `client`.
    pub fn new(root_dir: PathBuf, client: Arc<dyn Client>) -> Self {
        VolumeManager { root: root_dir, client, prepared: Arc::default() }
    }

    /// What the latest successful [`setup`](Self::setup) of the pod returned, until its
    /// [`teardown`](Self::teardown).
    pub fn prepared(&self, pod_uid: &str) -> Option<PodVolumes> {
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(pod_uid).cloned()
    }

    /// The directory of a pod's files: `<root>/pods/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join(PODS_DIR).join(pod_uid)
    }

    fn plugin_dir(&self, id: &PodId, plugin: &str, volume: &str) -> PathBuf {
        self.pod_dir(&id.uid).join(VOLUMES_DIR).join(plugin).join(volume)
    }

    /// Prepares every volume of the pod, idempotently.
    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes> {
        let id = PodId::of(pod)?;
        let mut out = PodVolumes::default();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let prepared = self.prepare(&id, pod, volume).await.map_err(|f| f.at(&id.key, &volume.name))?;
            if prepared.read_only {
                out.read_only.insert(volume.name.clone());
            }
            if prepared.file {
                out.files.insert(volume.name.clone());
            }
            out.paths.insert(volume.name.clone(), prepared.path);
        }
        debug!(pod = %id.key, volumes = out.paths.len(), "volumes ready");
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).insert(id.uid.clone(), out.clone());
        Ok(out)
    }

    async fn prepare(&self, id: &PodId, pod: &Pod, volume: &Volume) -> Result<Prepared, Failure> {
        if !is_safe_component(&volume.name) {
            return Err(Failure::Invalid("the volume name cannot name a directory".into()));
        }
        if let Some((dir, payload)) = self.projection(id, pod, volume).await? {
            let target = dir.clone();
            let changed = blocking(move || atomic::write(&target, &payload)).await?;
            if changed {
                debug!(pod = %id.key, volume = %volume.name, "volume files written");
            }
            return Ok(Prepared::dir(dir, true));
        }
        if let Some(e) = &volume.empty_dir {
            let size_limit = match &e.size_limit {
                Some(q) => Some(
                    Quantity::parse(&q.0)
                        .ok()
                        .filter(|q| !q.is_negative())
                        .and_then(|q| u64::try_from(q.value()).ok())
                        .ok_or_else(|| {
                            Failure::Invalid(format!("emptyDir sizeLimit {:?} is not a size", q.0))
                        })?,
                ),
                None => None,
            };
            let dir = self.plugin_dir(id, "emptydir", &volume.name);
            let medium = e.medium.clone();
            let target = dir.clone();
            blocking(move || emptydir::prepare(&target, medium.as_deref(), size_limit)).await?;
            return Ok(Prepared::dir(dir, false));
        }
        if let Some(h) = &volume.host_path {
            let (path, type_) = (h.path.clone(), h.type_.clone());
            let hp = blocking(move || host::prepare(&path, type_.as_deref())).await?;
            return Ok(Prepared { path: hp.path, read_only: false, file: hp.file });
        }
        if let Some(c) = &volume.persistent_volume_claim {
            let cp = claim::resolve(&self.client, &id.namespace, c).await?;
            let hp = blocking(move || {
                let hp = host::prepare(&cp.path, cp.type_.as_deref())?;
                if cp.must_exist && !hp.path.exists() {
                    return Err(Failure::Invalid(format!("local volume path {} does not exist", cp.path)));
                }
                Ok(hp)
            })
            .await?;
            return Ok(Prepared { path: hp.path, read_only: c.read_only == Some(true), file: hp.file });
        }
        Err(Failure::Invalid(format!("volume type {} is not supported by this node", type_name(volume))))
    }

    /// For the volumes made of files (configMap, secret, downwardAPI, projected): their
    /// directory and current content.
    async fn projection(
        &self,
        id: &PodId,
        pod: &Pod,
        volume: &Volume,
    ) -> Result<Option<(PathBuf, Payload)>, Failure> {
        let invalid = Failure::Invalid;
        if let Some(s) = &volume.config_map {
            let mode = file_mode("defaultMode", s.default_mode, DEFAULT_MODE).map_err(invalid)?;
            let optional = s.optional == Some(true);
            let p = self.config_map(&id.namespace, &s.name, s.items.as_deref(), mode, optional).await?;
            return Ok(Some((self.plugin_dir(id, "configmap", &volume.name), p)));
        }
        if let Some(s) = &volume.secret {
            let mode = file_mode("defaultMode", s.default_mode, DEFAULT_MODE).map_err(invalid)?;
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional == Some(true);
            let p = self.secret(&id.namespace, &name, s.items.as_deref(), mode, optional).await?;
            return Ok(Some((self.plugin_dir(id, "secret", &volume.name), p)));
        }
        if let Some(s) = &volume.downward_api {
            let mode = file_mode("defaultMode", s.default_mode, DEFAULT_MODE).map_err(invalid)?;
            let p =
                payload::downward_api(pod, s.items.as_deref().unwrap_or_default(), mode).map_err(invalid)?;
            return Ok(Some((self.plugin_dir(id, "downwardapi", &volume.name), p)));
        }
        if let Some(s) = &volume.projected {
            let mode = file_mode("defaultMode", s.default_mode, DEFAULT_MODE).map_err(invalid)?;
            let mut all = Payload::new();
            for source in s.sources.iter().flatten() {
                let part = if let Some(c) = &source.config_map {
                    let optional = c.optional == Some(true);
                    self.config_map(&id.namespace, &c.name, c.items.as_deref(), mode, optional).await?
                } else if let Some(c) = &source.secret {
                    let optional = c.optional == Some(true);
                    self.secret(&id.namespace, &c.name, c.items.as_deref(), mode, optional).await?
                } else if let Some(d) = &source.downward_api {
                    payload::downward_api(pod, d.items.as_deref().unwrap_or_default(), mode)
                        .map_err(invalid)?
                } else {
                    return Err(Failure::Invalid(
                        "projected sources other than configMap, secret and downwardAPI are not supported"
                            .into(),
                    ));
                };
                for (path, file) in part {
                    if all.insert(path.clone(), file).is_some() {
                        return Err(Failure::Invalid(format!("projected sources both write {path:?}")));
                    }
                }
            }
            return Ok(Some((self.plugin_dir(id, "projected", &volume.name), all)));
        }
        Ok(None)
    }

    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        mode: u32,
        optional: bool,
    ) -> Result<Payload, Failure> {
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|source| Failure::Api { kind: "configmap", name: name.to_string(), source })?;
        payload::config_map(name, cm.as_ref(), items, mode, optional).map_err(Failure::Invalid)
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        mode: u32,
        optional: bool,
    ) -> Result<Payload, Failure> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|source| Failure::Api { kind: "secret", name: name.to_string(), source })?;
        payload::secret(name, secret.as_ref(), items, mode, optional).map_err(Failure::Invalid)
    }

    /// The bind mounts for one container from its `volumeMounts`.
    pub fn mounts(&self, pod: &Pod, volumes: &PodVolumes, container: &Container) -> Result<Vec<Mount>> {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        mounts::container_mounts(&key, volumes, container)
    }

    /// Rewrites the file volumes (configMap, secret, downwardAPI, projected) whose content
    /// changed; returns whether any did.
    pub async fn refresh(&self, pod: &Pod) -> Result<bool> {
        let id = PodId::of(pod)?;
        let mut changed = false;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if !is_safe_component(&volume.name) {
                continue;
            }
            let projection =
                self.projection(&id, pod, volume).await.map_err(|f| f.at(&id.key, &volume.name))?;
            let Some((dir, payload)) = projection else { continue };
            let wrote = blocking(move || atomic::write(&dir, &payload))
                .await
                .map_err(|f| f.at(&id.key, &volume.name))?;
            if wrote {
                info!(pod = %id.key, volume = %volume.name, "volume files updated");
            }
            changed |= wrote;
        }
        Ok(changed)
    }

    /// Removes the pod's volume directories (unmounting memory emptyDirs); never touches
    /// hostPath or PersistentVolume data, which live outside them.
    pub async fn teardown(&self, pod_uid: &str) -> Result<()> {
        if !is_safe_component(pod_uid) {
            return Err(Error::Teardown {
                pod_uid: pod_uid.to_string(),
                reason: "the uid cannot name a directory".into(),
            });
        }
        let pod_dir = self.pod_dir(pod_uid);
        let empty_dirs = pod_dir.join(VOLUMES_DIR).join("emptydir");
        blocking(move || emptydir::remove_pod_dir(&pod_dir, &empty_dirs))
            .await
            .map_err(|f| f.teardown(pod_uid))?;
        self.prepared.lock().unwrap_or_else(PoisonError::into_inner).remove(pod_uid);
        debug!(pod_uid, "volumes removed");
        Ok(())
    }

    /// The pod uids that have a directory under `<root>/pods`.
    pub async fn pods_on_disk(&self) -> Result<Vec<String>> {
        let dir = self.root.join(PODS_DIR);
        let listed = dir.clone();
        let names = tokio::task::spawn_blocking(move || list_dirs(&listed)).await.unwrap_or_else(|e| {
            Err(std::io::Error::other(format!("listing on a blocking thread failed: {e}")))
        });
        names.map_err(|source| Error::ListPods { path: dir, source })
    }
}

fn list_dirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}
