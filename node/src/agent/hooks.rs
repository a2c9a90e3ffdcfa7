//! The seams between pod workers and the probe and volume managers: small traits the workers
//! call, implemented by [`Prober`] and the volume manager (and by no-op stand-ins).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use crate::probe::{ProbeKind, Prober, Seed};
use crate::runtime::Mount;
use crate::volume::VolumeManager;

/// What pod workers need of a prober.
pub trait Probes: Send + Sync + 'static {
    /// Starts probing container `container_id` (a no-op if it already probes that one), its
    /// readiness and startup results starting from `seed`.
    fn start_container(
        &self,
        pod_uid: &str,
        pod_ip: Option<IpAddr>,
        container: &SpecContainer,
        container_id: &str,
        seed: Seed,
    );
    /// Stops probing a container and forgets its results.
    fn stop_container(&self, pod_uid: &str, container_name: &str);
    /// Stops probing every container of a pod.
    fn stop_pod(&self, pod_uid: &str);
    /// The published result of a probe, if it is probed.
    fn result(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<bool>;
    /// Why the latest attempt failed, for Events.
    fn message(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<String>;
}

impl Probes for Prober {
    fn start_container(
        &self,
        pod_uid: &str,
        pod_ip: Option<IpAddr>,
        container: &SpecContainer,
        container_id: &str,
        seed: Seed,
    ) {
        Prober::start_container(self, pod_uid, pod_ip, container, container_id, seed);
    }
    fn stop_container(&self, pod_uid: &str, container_name: &str) {
        Prober::stop_container(self, pod_uid, container_name);
    }
    fn stop_pod(&self, pod_uid: &str) {
        Prober::stop_pod(self, pod_uid);
    }
    fn result(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<bool> {
        Prober::result(self, pod_uid, container_name, kind)
    }
    fn message(&self, pod_uid: &str, container_name: &str, kind: ProbeKind) -> Option<String> {
        Prober::last_message(self, pod_uid, container_name, kind)
    }
}

/// What pod workers need of a volume manager. Errors are messages naming the volume.
#[async_trait]
pub trait Volumes: Send + Sync + 'static {
    /// Sets up a pod's volumes (idempotent).
    async fn setup(&self, pod: &Pod) -> Result<(), String>;
    /// The bind mounts of one container (after [`setup`](Self::setup) succeeded).
    fn mounts(&self, pod: &Pod, container: &SpecContainer) -> Result<Vec<Mount>, String>;
    /// Refreshes projected content (ConfigMaps, Secrets).
    async fn refresh(&self, pod: &Pod) -> Result<(), String>;
    /// Removes a pod's volumes.
    async fn teardown(&self, pod_uid: &str) -> Result<(), String>;
    /// The pod uids that have volumes on disk.
    async fn pods_on_disk(&self) -> Result<Vec<String>, String>;
}

/// No volumes: setup succeeds and containers get no mounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoVolumes;

#[async_trait]
impl Volumes for NoVolumes {
    async fn setup(&self, _pod: &Pod) -> Result<(), String> {
        Ok(())
    }
    fn mounts(&self, _pod: &Pod, _container: &SpecContainer) -> Result<Vec<Mount>, String> {
        Ok(Vec::new())
    }
    async fn refresh(&self, _pod: &Pod) -> Result<(), String> {
        Ok(())
    }
    async fn teardown(&self, _pod_uid: &str) -> Result<(), String> {
        Ok(())
    }
    async fn pods_on_disk(&self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// Shared handles a worker uses for its pod.
pub(crate) type SharedProbes = Arc<dyn Probes>;
/// Shared volume handle.
pub(crate) type SharedVolumes = Arc<dyn Volumes>;

/// The node's real volumes: what [`VolumeManager::setup`] prepared is kept by the manager
/// itself ([`VolumeManager::prepared`]), so mounts are computed from it.
#[async_trait]
impl Volumes for VolumeManager {
    async fn setup(&self, pod: &Pod) -> Result<(), String> {
        VolumeManager::setup(self, pod).await.map(|_| ()).map_err(|e| e.event_message())
    }

    fn mounts(&self, pod: &Pod, container: &SpecContainer) -> Result<Vec<Mount>, String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let volumes =
            self.prepared(uid).ok_or_else(|| format!("the volumes of pod uid {uid} are not set up"))?;
        VolumeManager::mounts(self, pod, &volumes, container).map_err(|e| e.event_message())
    }

    async fn refresh(&self, pod: &Pod) -> Result<(), String> {
        VolumeManager::refresh(self, pod).await.map(|_| ()).map_err(|e| e.event_message())
    }

    async fn teardown(&self, pod_uid: &str) -> Result<(), String> {
        VolumeManager::teardown(self, pod_uid).await.map_err(|e| e.event_message())
    }

    async fn pods_on_disk(&self) -> Result<Vec<String>, String> {
        VolumeManager::pods_on_disk(self).await.map_err(|e| e.event_message())
    }
}
