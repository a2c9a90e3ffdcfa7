//! [`HollowKubelet`]: a stand-in for node agents that reports pods running and ready at once,
//! and completes their graceful deletion, so controllers can be tested (and benchmarked)
//! without containers.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{
    Api, Client, DeleteOptions, Error as ClientError, ListOptions, Precondition, WatcherEvent, watcher,
};
use crate::patch::PatchType;
use crate::registry::Clock;

/// Status writes in flight at once.
const CONCURRENCY: usize = 32;
/// The first wait before a write that failed for a passing reason is tried again; it doubles
/// up to [`RETRY_MAX`]. A node agent keeps trying: a pod it dropped would stay unready or
/// terminating for good, since no later event need come.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// See [`RETRY_FIRST`].
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Whether a failed write may succeed if tried again (the store was busy or changing
/// leaders, or a status patch raced another write), rather than being refused for good (the
/// pod is gone, or a delete's uid precondition found it replaced).
fn transient(error: &ClientError, deleting: bool) -> bool {
    match error {
        ClientError::Timeout(_) | ClientError::Unavailable(_) | ClientError::Internal(_) => true,
        ClientError::Conflict { .. } => !deleting,
        _ => false,
    }
}

/// Marks pods `Running` and `Ready` and finishes their deletion, like a kubelet whose
/// containers start instantly.
pub struct HollowKubelet {
    client: Arc<dyn Client>,
    clock: Clock,
    nodes: Option<BTreeSet<String>>,
    next_ip: Arc<AtomicU32>,
}

impl HollowKubelet {
    /// A hollow kubelet for every pod, bound to a node or not.
    pub fn new(client: Arc<dyn Client>, clock: Clock) -> HollowKubelet {
        HollowKubelet { client, clock, nodes: None, next_ip: Arc::new(AtomicU32::new(1)) }
    }

    /// Only pods bound to one of `nodes` (as node agents would).
    pub fn for_nodes(mut self, nodes: impl IntoIterator<Item = String>) -> HollowKubelet {
        self.nodes = Some(nodes.into_iter().collect());
        self
    }

    fn concerns(&self, pod: &Pod) -> bool {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
        match (&self.nodes, node) {
            (None, _) => true,
            (Some(nodes), Some(n)) => nodes.contains(n),
            (Some(_), None) => false,
        }
    }

    fn running(pod: &Pod) -> bool {
        let s = pod.status.as_ref();
        s.and_then(|s| s.phase.as_deref()) == Some("Running") && crate::controllers::util::is_pod_ready(pod)
    }

    fn ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) | (n & 0xffff)).to_string()
    }

    /// The write this pod needs, if any, performed through the client, tried again while it
    /// fails for a passing reason (the task is aborted at shutdown).
    async fn act(client: Arc<dyn Client>, pod: Pod, ip: String, now: String) {
        let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
            return;
        };
        let api = Api::<Pod>::namespaced(client, &ns);
        let mut wait = RETRY_FIRST;
        loop {
            match Self::write(&api, &pod, &name, &ip, &now).await {
                Ok(()) => return,
                Err(error) if transient(&error, pod.metadata.deletion_timestamp.is_some()) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), %error, "hollow kubelet write failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(error) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), %error, "hollow kubelet write refused");
                    return;
                }
            }
        }
    }

    /// One attempt at the write `pod` needs: finishing its deletion, or reporting it running.
    async fn write(api: &Api<Pod>, pod: &Pod, name: &str, ip: &str, now: &str) -> Result<(), ClientError> {
        if pod.metadata.deletion_timestamp.is_some() {
            let opts = DeleteOptions {
                grace_period_seconds: Some(0),
                preconditions: Precondition { uid: pod.metadata.uid.clone(), resource_version: None },
                ..Default::default()
            };
            return match api.delete(name, &opts).await {
                // Gone already: done.
                Ok(_) | Err(ClientError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let containers: Vec<_> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| {
                json!({"name": c.name, "image": c.image, "imageID": "", "ready": true,
                    "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let ready = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.100.0.1",
            "startTime": now,
            "conditions": [ready("Initialized"), ready("Ready"), ready("ContainersReady"), ready("PodScheduled")],
            "containerStatuses": containers,
        }});
        api.patch_status(name, PatchType::StrategicMerge, &patch).await.map(|_| ())
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let events = watcher(Api::<Pod>::all(self.client.clone()), ListOptions::default());
        tokio::pin!(events);
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut writes = JoinSet::new();
        loop {
            let ev = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(_) = writes.join_next(), if !writes.is_empty() => continue,
                ev = events.next() => match ev { Some(ev) => ev, None => break },
            };
            let (WatcherEvent::Apply(pod) | WatcherEvent::InitApply(pod)) = ev else { continue };
            if !self.concerns(&pod) || (pod.metadata.deletion_timestamp.is_none() && Self::running(&pod)) {
                continue;
            }
            // Waiting for a free slot must not hold up shutdown.
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let now = k8s_openapi::jiff::Timestamp::from_second((self.clock)().as_second())
                .map(|t| t.to_string())
                .unwrap_or_default();
            let (client, ip) = (self.client.clone(), self.ip());
            writes.spawn(async move {
                Self::act(client, pod, ip, now).await;
                drop(permit);
            });
        }
        writes.shutdown().await;
    }
}
