//! [`DeploymentReconciler`]: reads the informer caches, asks [`decide`] for a plan and
//! performs it through the client, stopping at the first failed write (the key is retried).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::annotations::REVISION_ANNOTATION;
use super::conditions::{PROGRESSING, new_condition, progress_deadline, reasons, set_condition};
use super::decide::{EventRecord, Observed, Plan, Step, decide};
use super::hash::equal_ignore_hash;
use super::triggers::{controlled_by, in_namespace};
use super::{Error, Result};
use crate::client::{self, Api, Cache, Client, DeleteOptions, object_key};
use crate::controller::events::{EventType, Recorder, reference};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::controllers::util::{controller_of, controller_reference, is_controlled_by, is_deleting};
use crate::patch::PatchType;
use crate::registry::{Clock, Precondition};

#[cfg(test)]
mod tests;

/// The Deployment controller's reconciler (see the [module docs](super)).
pub struct DeploymentReconciler {
    client: Arc<dyn Client>,
    deployments: Cache<Deployment>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    clock: Clock,
    recorder: Recorder,
}

impl DeploymentReconciler {
    /// A reconciler writing through `client`, reading the caches (best built with
    /// [`deployment_indexes`](super::deployment_indexes) and its siblings), with `clock` for
    /// condition times and the progress deadline; `recorder` publishes its Events (run its
    /// task alongside), which aggregates repeats.
    pub fn new(
        client: Arc<dyn Client>,
        deployments: Cache<Deployment>,
        replica_sets: Cache<ReplicaSet>,
        pods: Cache<Pod>,
        clock: Clock,
        recorder: Recorder,
    ) -> Self {
        DeploymentReconciler { client, deployments, replica_sets, pods, clock, recorder }
    }

    /// The pods a `Recreate` rollout waits for: those of the ReplicaSets the Deployment
    /// controls or may adopt.
    fn pods_of(&self, d: &Deployment, namespace: &str, replica_sets: &[Arc<ReplicaSet>]) -> Vec<Arc<Pod>> {
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let candidates = replica_sets.iter().filter(|rs| match controller_of(&rs.metadata) {
            Some(r) => r.uid == uid,
            None => true,
        });
        candidates
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .flat_map(|rs_uid| controlled_by(&self.pods, namespace, rs_uid))
            .collect()
    }
}

#[async_trait]
impl Reconciler for DeploymentReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action> {
        let Some(namespace) = key.namespace.as_deref() else { return Ok(Action::Done) };
        let Some(d) = self.deployments.get(&key.cache_key()) else {
            // Gone: the garbage collector removes its ReplicaSets.
            tracing::debug!(deployment = %key, "deployment not found; nothing to do");
            return Ok(Action::Done);
        };
        let replica_sets = in_namespace(&self.replica_sets, namespace);
        let recreate = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref())
            == Some("Recreate");
        let pods = if recreate { self.pods_of(&d, namespace, &replica_sets) } else { Vec::new() };
        let now = (self.clock)();
        let plan = decide(&Observed { deployment: &d, replica_sets: &replica_sets, pods: &pods, now })?;
        let requeue = plan.requeue_after;
        let executor =
            Executor::new(self.client.clone(), self.recorder.clone(), (*d).clone(), namespace, now);
        match executor.run(plan).await? {
            Flow::Continue => Ok(requeue.map_or(Action::Done, Action::RequeueAfter)),
            // The ReplicaSet informer will bring what the cache lacked; look again soon anyway.
            Flow::Stop => Ok(Action::RequeueAfter(STALE_CACHE_RETRY)),
        }
    }
}

/// How soon to look again after finding the cache behind the API.
const STALE_CACHE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether to go on with a plan.
enum Flow {
    /// The step is done.
    Continue,
    /// The plan was made from a cache that is behind (the new ReplicaSet already exists): the
    /// rest of it would act on a wrong picture.
    Stop,
}

/// Performs a plan, threading the resourceVersions its own writes produce.
struct Executor {
    client: Arc<dyn Client>,
    recorder: Recorder,
    /// The Deployment as last written (or as cached).
    deployment: Deployment,
    key: String,
    namespace: String,
    now: Time,
    /// The generation before and after this plan's revision annotation moved it.
    generation_moved: Option<(i64, i64)>,
    /// The resourceVersion of ReplicaSets this plan wrote, by name.
    versions: HashMap<String, String>,
    /// Whether the Deployment was read back before the first adoption.
    adoption_checked: bool,
}

impl Executor {
    fn new(
        client: Arc<dyn Client>,
        recorder: Recorder,
        deployment: Deployment,
        namespace: &str,
        now: Timestamp,
    ) -> Self {
        Executor {
            client,
            recorder,
            key: object_key(&deployment),
            deployment,
            namespace: namespace.to_string(),
            now: Time(Timestamp::from_second(now.as_second()).unwrap_or(now)),
            generation_moved: None,
            versions: HashMap::new(),
            adoption_checked: false,
        }
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn name(&self) -> String {
        self.deployment.metadata.name.clone().unwrap_or_default()
    }

    fn rs_error(&self, verb: &'static str, name: &str, source: client::Error) -> Error {
        Error::ReplicaSetWrite {
            verb,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            deployment: self.name(),
            source: Box::new(source),
        }
    }

    async fn run(mut self, plan: Plan) -> Result<Flow> {
        for step in plan.steps {
            if let Flow::Stop = self.perform(step).await? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    async fn perform(&mut self, step: Step) -> Result<Flow> {
        match step {
            Step::Adopt { name, uid, resource_version } => {
                self.check_can_adopt().await?;
                let owner = controller_reference(&self.deployment);
                let patch = json!({"metadata": {
                    "ownerReferences": [owner], "uid": uid, "resourceVersion": resource_version}});
                let rs = self
                    .replica_sets()
                    .patch(&name, PatchType::StrategicMerge, &patch)
                    .await
                    .map_err(|e| self.rs_error("adopt", &name, e))?;
                tracing::info!(deployment = %self.key, replica_set = %name, "adopted replica set");
                self.remember(&rs);
            }
            Step::Release { name, uid, resource_version } => {
                let owner_uid = self.deployment.metadata.uid.clone().unwrap_or_default();
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                    "uid": uid, "resourceVersion": resource_version}});
                match self.replica_sets().patch(&name, PatchType::StrategicMerge, &patch).await {
                    Ok(rs) => {
                        tracing::info!(deployment = %self.key, replica_set = %name, "released replica set");
                        self.remember(&rs);
                    }
                    // Gone already: nothing to release.
                    Err(client::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.rs_error("release", &name, e)),
                }
            }
            Step::Create { replica_set, event } => return self.create(replica_set, event).await,
            Step::Update { mut replica_set, event } => {
                let name = replica_set.metadata.name.clone().unwrap_or_default();
                if let Some(rv) = self.versions.get(&name) {
                    replica_set.metadata.resource_version = Some(rv.clone());
                }
                let rs = self
                    .replica_sets()
                    .replace(&name, &replica_set)
                    .await
                    .map_err(|e| self.rs_error("update", &name, e))?;
                self.remember(&rs);
                if let Some(e) = event {
                    self.record(e);
                }
            }
            Step::Delete { name, uid, resource_version } => {
                let preconditions = Precondition { uid: Some(uid), resource_version: Some(resource_version) };
                let opts = DeleteOptions { preconditions, ..Default::default() };
                match self.replica_sets().delete(&name, &opts).await {
                    Ok(_) | Err(client::Error::NotFound { .. }) => {
                        let (deployment, replica_set) = (&self.key, &name);
                        tracing::info!(%deployment, %replica_set, "deleted old replica set");
                    }
                    Err(e) => return Err(self.rs_error("delete", &name, e)),
                }
            }
            Step::Event(e) => self.record(e),
            Step::SetRevision { revision } => {
                let before = self.deployment.metadata.generation.unwrap_or(0);
                let patch = json!({"metadata": {
                    "resourceVersion": self.deployment.metadata.resource_version,
                    "annotations": {REVISION_ANNOTATION: revision}}});
                let d = self.deployments().patch(&self.name(), PatchType::Merge, &patch).await.map_err(
                    |source| Error::DeploymentWrite {
                        what: "revision annotation",
                        deployment: self.key.clone(),
                        source: Box::new(source),
                    },
                )?;
                self.generation_moved = Some((before, d.metadata.generation.unwrap_or(0)));
                self.deployment = d;
            }
            Step::UpdateStatus { mut status } => {
                // Our own annotation write moved the generation; nothing else could have, as
                // it was made at the observed resourceVersion.
                if let Some((before, after)) = self.generation_moved
                    && status.observed_generation.unwrap_or(0) == before
                {
                    status.observed_generation = Some(after);
                }
                self.write_status(status).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Remembers the resourceVersion of a ReplicaSet this plan wrote.
    fn remember(&mut self, rs: &ReplicaSet) {
        if let (Some(name), Some(rv)) = (&rs.metadata.name, &rs.metadata.resource_version) {
            self.versions.insert(name.clone(), rv.clone());
        }
    }

    async fn write_status(&mut self, status: k8s_openapi::api::apps::v1::DeploymentStatus) -> Result<()> {
        let mut d = self.deployment.clone();
        d.status = Some(status);
        let written = self.deployments().replace_status(&self.name(), &d).await.map_err(|source| {
            Error::DeploymentWrite { what: "status", deployment: self.key.clone(), source: Box::new(source) }
        })?;
        self.deployment = written;
        Ok(())
    }

    /// Kubernetes' `canAdopt`: the Deployment read afresh must be the cached one (same uid)
    /// and not being deleted, or an adopted ReplicaSet could point at an owner that is gone.
    async fn check_can_adopt(&mut self) -> Result<()> {
        if self.adoption_checked {
            return Ok(());
        }
        let fresh = self.deployments().get_opt(&self.name()).await.map_err(|source| {
            Error::DeploymentRead { deployment: self.key.clone(), source: Box::new(source) }
        })?;
        let refuse = |reason| Error::CannotAdopt { deployment: self.key.clone(), reason };
        let Some(fresh) = fresh else { return Err(refuse("it no longer exists")) };
        if fresh.metadata.uid != self.deployment.metadata.uid {
            return Err(refuse("it was deleted and created again"));
        }
        if is_deleting(&fresh.metadata) {
            return Err(refuse("it is being deleted"));
        }
        self.adoption_checked = true;
        Ok(())
    }

    /// Creates the new ReplicaSet. If it exists already and is ours, the cache was behind: the
    /// plan stops. A name taken by another is an error (the next sync sees the taker in the
    /// cache and bumps the collision count); other failures are also reported on the
    /// Deployment (`ReplicaSetCreateError`), as Kubernetes does.
    async fn create(&mut self, rs: ReplicaSet, event: Option<EventRecord>) -> Result<Flow> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        match self.replica_sets().create(&rs).await {
            Ok(created) => {
                tracing::info!(deployment = %self.key, replica_set = %name, "created new replica set");
                self.remember(&created);
                if let Some(e) = event {
                    self.record(e);
                }
                Ok(Flow::Continue)
            }
            Err(e @ client::Error::AlreadyExists { .. }) => {
                if self.is_ours(&name, &rs).await {
                    tracing::debug!(
                        deployment = %self.key,
                        replica_set = %name,
                        "new replica set exists already; cache behind"
                    );
                    return Ok(Flow::Stop);
                }
                Err(self.rs_error("create", &name, e))
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                if progress_deadline(&self.deployment).is_some() {
                    let mut status = self.deployment.status.clone().unwrap_or_default();
                    let cond = new_condition(
                        PROGRESSING,
                        "False",
                        reasons::FAILED_RS_CREATE,
                        msg.clone(),
                        &self.now,
                    );
                    set_condition(&mut status, cond);
                    if let Err(error) = self.write_status(status).await {
                        tracing::warn!(deployment = %self.key, %error, "cannot report the failed creation");
                    }
                }
                let warning = EventRecord {
                    type_: EventType::Warning,
                    reason: reasons::FAILED_RS_CREATE,
                    message: msg,
                };
                self.record(warning);
                Err(self.rs_error("create", &name, e))
            }
        }
    }

    /// Whether the ReplicaSet named `name` in the API is this Deployment's, with the template
    /// of `wanted`.
    async fn is_ours(&self, name: &str, wanted: &ReplicaSet) -> bool {
        let Ok(Some(existing)) = self.replica_sets().get_opt(name).await else { return false };
        let uid = self.deployment.metadata.uid.as_deref().unwrap_or_default();
        let template = |rs: &ReplicaSet| rs.spec.as_ref().and_then(|s| s.template.clone());
        match (template(&existing), template(wanted)) {
            (Some(a), Some(b)) => is_controlled_by(&existing.metadata, uid) && equal_ignore_hash(&a, &b),
            _ => false,
        }
    }

    /// Publishes an Event about the Deployment; the recorder writes it (or bumps the count of
    /// its earlier twin) without holding up the plan.
    fn record(&self, e: EventRecord) {
        tracing::debug!(deployment = %self.key, reason = e.reason, message = %e.message, "recording event");
        self.recorder.publish(reference(&self.deployment), e.type_, e.reason, e.message);
    }
}
