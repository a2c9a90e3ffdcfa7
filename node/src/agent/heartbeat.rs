//! The node's side of health: registers the Node, posts its status when it changes (and every
//! report interval), and renews the Lease `kube-node-lease/<node>` every renew interval.
//! Failures are logged and retried on the next tick; they never stop the agent.

use std::sync::Arc;

use flotilla_core::client::{Api, Client, Error as ClientError};
use flotilla_core::controllers::nodelifecycle::LEASE_NAMESPACE;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::config::AgentConfig;
use super::machine::{MachineReadings, node_conditions, read_machine};
use super::node_status::{merge_taints, new_node, node_labels, node_status, status_changed, system_info};
use super::{Error, Result};
use crate::runtime::ContainerRuntime;

/// Attempts of one status write when it meets a 409 Conflict.
const STATUS_WRITE_ATTEMPTS: usize = 3;

/// Registers the node and keeps its status and Lease fresh.
pub(crate) struct Heartbeat {
    client: Arc<dyn Client>,
    runtime: Arc<dyn ContainerRuntime>,
    config: Arc<AgentConfig>,
    info: Option<NodeSystemInfo>,
    node_uid: Option<String>,
    /// The status last posted and when.
    posted: Option<(NodeStatus, Timestamp)>,
}

impl Heartbeat {
    pub(crate) fn new(
        client: Arc<dyn Client>,
        runtime: Arc<dyn ContainerRuntime>,
        config: Arc<AgentConfig>,
    ) -> Self {
        Heartbeat { client, runtime, config, info: None, node_uid: None, posted: None }
    }

    /// Runs until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut status_tick = tokio::time::interval(self.config.status_update_interval);
        status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lease_tick = tokio::time::interval(self.config.renew_interval);
        lease_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let node = self.config.node_name.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                // Status first: the first round registers the Node the Lease points at.
                _ = status_tick.tick() => {
                    if let Err(error) = self.sync_node().await {
                        tracing::warn!(node = %node, error = %error_chain(&error), "node status update failed");
                    }
                }
                _ = lease_tick.tick() => {
                    if let Err(error) = self.renew_lease().await {
                        tracing::warn!(node = %node, error = %error_chain(&error), "lease renewal failed");
                    }
                }
            }
        }
    }

    async fn readings(&self) -> MachineReadings {
        let root = self.config.root_dir.clone();
        tokio::task::spawn_blocking(move || read_machine(&root)).await.unwrap_or_default()
    }

    async fn system_info(&mut self) -> NodeSystemInfo {
        if let Some(info) = &self.info {
            return info.clone();
        }
        let name = self.runtime.name();
        let info = tokio::task::spawn_blocking(move || system_info(name)).await.unwrap_or_default();
        self.info = Some(info.clone());
        info
    }

    fn node_error(&self, source: ClientError) -> Error {
        Error::Node { node: self.config.node_name.clone(), source }
    }

    /// Registers the node if absent, keeps its labels and taints, and posts its status when
    /// it changed or the report interval passed.
    async fn sync_node(&mut self) -> Result<()> {
        let readings = self.readings().await;
        let health = self.runtime.sandboxes().await.map(|_| ()).map_err(|e| e.to_string());
        let conditions = node_conditions(&readings, health);
        let info = self.system_info().await;
        let api = Api::<Node>::all(self.client.clone());
        let name = self.config.node_name.clone();
        for _ in 0..STATUS_WRITE_ATTEMPTS {
            let now = (self.config.clock)();
            let existing = api.get_opt(&name).await.map_err(|e| self.node_error(e))?;
            let Some(mut node) = existing else {
                let status = node_status(&self.config, None, &readings, &conditions, &info, now);
                let node = new_node(&self.config, status.clone());
                match api.create(&node).await {
                    Ok(created) => {
                        tracing::info!(node = %name, "registered node");
                        self.node_uid = created.metadata.uid.clone();
                        // Create drops status: post it through the status subresource.
                        let mut with_status = created;
                        with_status.status = Some(status.clone());
                        match api.replace_status(&name, &with_status).await {
                            Ok(_) => self.posted = Some((status, now)),
                            Err(ClientError::Conflict { .. }) => continue,
                            Err(e) => return Err(self.node_error(e)),
                        }
                        return Ok(());
                    }
                    Err(ClientError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(self.node_error(e)),
                }
            };
            self.node_uid = node.metadata.uid.clone();
            if let Some(updated) = self.with_own_labels_and_taints(&node) {
                match api.replace(&name, &updated).await {
                    Ok(n) => node = n,
                    Err(ClientError::Conflict { .. }) => continue,
                    Err(e) => return Err(self.node_error(e)),
                }
            }
            let status = node_status(&self.config, node.status.as_ref(), &readings, &conditions, &info, now);
            let due = match &self.posted {
                None => true,
                Some((_, at)) => {
                    let elapsed = std::time::Duration::try_from(now.duration_since(*at)).unwrap_or_default();
                    elapsed >= self.config.status_report_interval
                }
            };
            if !due && !status_changed(node.status.as_ref(), &status) {
                return Ok(());
            }
            node.status = Some(status.clone());
            match api.replace_status(&name, &node).await {
                Ok(_) => {
                    self.posted = Some((status, now));
                    return Ok(());
                }
                Err(ClientError::Conflict { .. }) => continue,
                Err(e) => return Err(self.node_error(e)),
            }
        }
        Err(self.node_error(ClientError::Conflict {
            resource: "nodes".into(),
            name,
            reason: format!("still conflicting after {STATUS_WRITE_ATTEMPTS} attempts"),
        }))
    }

    /// The node with the agent's labels and taints, if it lacks any.
    fn with_own_labels_and_taints(&self, node: &Node) -> Option<Node> {
        let mut updated = node.clone();
        let labels = updated.metadata.labels.get_or_insert_with(Default::default);
        let mut changed = false;
        for (k, v) in node_labels(&self.config) {
            if labels.get(&k) != Some(&v) {
                labels.insert(k, v);
                changed = true;
            }
        }
        if !self.config.taints.is_empty() {
            let spec = updated.spec.get_or_insert_with(Default::default);
            let existing = spec.taints.clone().unwrap_or_default();
            let merged = merge_taints(&existing, &self.config.taints);
            if merged != existing {
                spec.taints = Some(merged);
                changed = true;
            }
        }
        changed.then_some(updated)
    }

    fn owner(&self) -> Option<Vec<OwnerReference>> {
        let uid = self.node_uid.clone()?;
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.config.node_name.clone(),
            uid,
            ..Default::default()
        }])
    }

    /// Creates or renews the Lease.
    async fn renew_lease(&mut self) -> Result<()> {
        let name = self.config.node_name.clone();
        let lease_error = |source| Error::Lease { node: name.clone(), source };
        let api = Api::<Lease>::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let spec = LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime((self.config.clock)())),
            ..Default::default()
        };
        match api.get_opt(&name).await.map_err(lease_error)? {
            Some(mut lease) => {
                if lease.metadata.owner_references.is_none() {
                    lease.metadata.owner_references = self.owner();
                }
                let old = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec { acquire_time: old.acquire_time, ..spec });
                api.replace(&name, &lease).await.map_err(lease_error)?;
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: self.owner(),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec { acquire_time: spec.renew_time.clone(), ..spec }),
                };
                match api.create(&lease).await {
                    Ok(_) => tracing::info!(node = %name, "created node lease"),
                    // Kubernetes' API server creates the namespace; a bare registry may not have.
                    Err(ClientError::NotFound { .. }) => {
                        let ns = Namespace {
                            metadata: ObjectMeta { name: Some(LEASE_NAMESPACE.into()), ..Default::default() },
                            ..Default::default()
                        };
                        match Api::<Namespace>::all(self.client.clone()).create(&ns).await {
                            Ok(_) | Err(ClientError::AlreadyExists { .. }) => {}
                            Err(e) => return Err(lease_error(e)),
                        }
                        api.create(&lease).await.map_err(lease_error)?;
                    }
                    Err(e) => return Err(lease_error(e)),
                }
            }
        }
        Ok(())
    }
}

/// An error and its sources, for one log field.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
