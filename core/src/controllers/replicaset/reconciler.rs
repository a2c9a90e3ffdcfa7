//! [`ReplicaSetReconciler`]: reads the caches, asks [`decide`] and performs the plan.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::decide::{
    Input, Plan, ReplicaFailure, Scale, availability_requeue, compute_status, decide, pod_from_template,
    related_pods_per_node, slow_start_batches, status_changed,
};
use super::expectations::{Check, Expectations, PodSeen};
use super::triggers::{ensure_indexes, namespace_index, pod_indexes, replica_set_indexes};
use super::{EXPECTATIONS_RECHECK, Error};
use crate::client::{Api, Cache, Client, DeleteOptions, Error as ClientError};
use crate::controller::events::{EventType, Recorder, reference};
use crate::controller::{Action, ObjectKey, Reconciler};
use crate::controllers::util::{controller_of, controller_reference, is_deleting};
use crate::patch::PatchType;
use crate::registry::{Clock, Precondition};

/// How many direct reads confirm pending expectations at once.
const CONFIRM_CONCURRENCY: usize = 16;

/// The ReplicaSet controller's reconciler: see the [module docs](super).
pub struct ReplicaSetReconciler {
    client: Arc<dyn Client>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    clock: Clock,
    expectations: Mutex<Expectations>,
    recorder: Recorder,
}

impl std::fmt::Debug for ReplicaSetReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSetReconciler").finish_non_exhaustive()
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Whether a create failed only because the namespace is being deleted (nothing can be
/// created there any more; Kubernetes ignores it too).
fn namespace_terminating(e: &ClientError) -> bool {
    matches!(e, ClientError::Forbidden(msg) if msg.contains("because it is being terminated"))
}

impl ReplicaSetReconciler {
    /// A reconciler reading ReplicaSets and pods from these caches (filled by informers) and
    /// writing through `client`. The caches gain the indexes it reads through
    /// ([`pod_indexes`](super::pod_indexes), [`replica_set_indexes`](super::replica_set_indexes))
    /// if they lack them. `recorder` publishes its Events (run its task alongside), which
    /// aggregates repeats.
    pub fn new(
        client: Arc<dyn Client>,
        replica_sets: Cache<ReplicaSet>,
        pods: Cache<Pod>,
        clock: Clock,
        recorder: Recorder,
    ) -> Self {
        ensure_indexes(&replica_sets, replica_set_indexes());
        ensure_indexes(&pods, pod_indexes());
        ReplicaSetReconciler {
            client,
            replica_sets,
            pods,
            clock,
            expectations: Mutex::new(Expectations::new()),
            recorder,
        }
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn pod_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// One sync of the ReplicaSet `key` (Kubernetes' `syncReplicaSet`).
    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(rs) = self.replica_sets.get(&key.cache_key()) else {
            // Gone: its pods are the garbage collector's.
            self.expectations.lock().forget(key);
            return Ok(Action::Done);
        };
        let namespace = key.namespace.clone().unwrap_or_default();
        let now = self.now();
        let pods = self.pods.indexed(&namespace_index(), &namespace);
        let satisfied = self.expectations_satisfied(key, &namespace, &pods, now).await?;

        let no_ranks = HashMap::new();
        let input = Input {
            replica_set: &rs,
            pods: &pods,
            expectations_satisfied: satisfied,
            related_pods_per_node: &no_ranks,
            now,
        };
        let plan = match decide(&input) {
            Ok(plan) => plan,
            Err(error) => {
                // Validation refuses such selectors; an update of the ReplicaSet triggers again.
                tracing::warn!(replicaset = %key, %error, "cannot sync");
                return Ok(Action::Done);
            }
        };

        // Claims first: without them the count is wrong.
        let gone = self.claim(&rs, &plan).await?;
        let mut plan = if gone.is_empty() {
            plan
        } else {
            // Orphans deleted before they could be adopted do not count.
            let remaining: Vec<Arc<Pod>> =
                pods.iter().filter(|p| !gone.contains(pod_name(p))).cloned().collect();
            decide(&Input { pods: &remaining, ..input }).unwrap_or(plan)
        };
        if matches!(plan.scale, Scale::Delete(_)) && controller_of(&rs.metadata).is_some() {
            // Choose the pods to delete again with the pods of sibling ReplicaSets (those of
            // one Deployment) per node in view, so that what remains is spread out.
            let siblings = self.replica_sets.indexed(&namespace_index(), &namespace);
            let ranks = related_pods_per_node(&rs, &siblings, &pods);
            let claimed = plan.claimed();
            if let Ok(ranked) = decide(&Input { pods: &claimed, related_pods_per_node: &ranks, ..input }) {
                plan.scale = ranked.scale;
            }
        }
        let claimed = plan.claimed();

        let managed: Option<Result<(), Error>> = match &plan.scale {
            Scale::Deleting | Scale::AwaitingExpectations => None,
            Scale::InSync => Some(Ok(())),
            Scale::Create(count) => Some(self.create_pods(key, &rs, *count).await.map_err(Error::Create)),
            Scale::Delete(victims) => Some(self.delete_pods(key, &rs, victims).await.map_err(Error::Delete)),
        };
        let failure = match &managed {
            Some(Err(Error::Create(e))) => {
                Some(ReplicaFailure { reason: "FailedCreate", message: e.to_string() })
            }
            Some(Err(Error::Delete(e))) => {
                Some(ReplicaFailure { reason: "FailedDelete", message: e.to_string() })
            }
            _ => None,
        };
        let outcome = managed.as_ref().map(|r| match (r, &failure) {
            (Err(_), Some(f)) => Err(f),
            _ => Ok(()),
        });
        let status = compute_status(&rs, &claimed, outcome, self.now());
        if status_changed(&rs, &status) {
            self.write_status(&rs, &status).await?;
        }
        if let Some(Err(e)) = managed {
            return Err(e);
        }

        let mut requeue = availability_requeue(&rs, &claimed, self.now());
        if plan.scale == Scale::AwaitingExpectations {
            // Pod changes normally trigger the next sync; this catches a write the cache
            // will never show (see `expectations_satisfied`).
            requeue = Some(requeue.map_or(EXPECTATIONS_RECHECK, |d| d.min(EXPECTATIONS_RECHECK)));
        }
        Ok(requeue.map_or(Action::Done, Action::RequeueAfter))
    }

    /// Whether the earlier creates and deletes of `key` are all visible in `pods` (the cache's
    /// pods of its namespace).
    ///
    /// A created pod deleted before the cache showed it never appears there; so once
    /// [`EXPECTATIONS_RECHECK`] has passed since the last write (and at most once per that
    /// interval), the names still awaited are read directly, and those found gone or being
    /// deleted stop being awaited. The record expires after five minutes in any case.
    async fn expectations_satisfied(
        &self,
        key: &ObjectKey,
        namespace: &str,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> Result<bool, Error> {
        let by_name: HashMap<&str, &Pod> = pods.iter().map(|p| (pod_name(p), p.as_ref())).collect();
        let seen = |name: &str| match by_name.get(name) {
            None => PodSeen::Absent,
            Some(p) => {
                PodSeen::Present { uid: p.metadata.uid.as_deref(), deleting: is_deleting(&p.metadata) }
            }
        };
        let pending = {
            let mut expectations = self.expectations.lock();
            let Check::Pending(pending) = expectations.check(key, now, seen) else {
                return Ok(true);
            };
            if !expectations.take_confirmation(key, now, EXPECTATIONS_RECHECK) {
                return Ok(false);
            }
            pending
        };
        let api = self.pod_api(namespace);
        let reads = pending
            .created
            .into_iter()
            .map(|name| (name, None))
            .chain(pending.deleted.into_iter().map(|(name, uid)| (name, Some(uid))))
            .map(|(name, deleted_uid)| {
                let api = api.clone();
                async move {
                    let pod = api.get_opt(&name).await;
                    (name, deleted_uid, pod)
                }
            });
        let results: Vec<_> =
            futures::stream::iter(reads).buffer_unordered(CONFIRM_CONCURRENCY).collect().await;
        let mut expectations = self.expectations.lock();
        for (name, deleted_uid, pod) in results {
            let pod =
                pod.map_err(|source| Error::Read { what: format!("pod {namespace}/{name}"), source })?;
            let confirmed = match (&pod, deleted_uid) {
                (None, _) => true,
                (Some(p), _) if is_deleting(&p.metadata) => true,
                (Some(p), Some(Some(uid))) => p.metadata.uid.as_deref() != Some(uid.as_str()),
                (Some(_), _) => false,
            };
            if confirmed {
                expectations.confirm(key, &name);
            }
        }
        Ok(expectations.check(key, now, seen).is_satisfied())
    }

    /// Adopts and releases what the plan says. Returns the names of orphans that were gone
    /// when adopted; the first other failure is an error (after trying every claim, as
    /// Kubernetes' `ClaimPods` does).
    async fn claim(&self, rs: &ReplicaSet, plan: &Plan) -> Result<HashSet<String>, Error> {
        let mut gone = HashSet::new();
        let mut first_error = None;
        if !plan.adopt.is_empty() {
            // Adopting for a ReplicaSet that was just deleted would hand the pod to the
            // garbage collector: check the live object first (Kubernetes'
            // `RecheckDeletionTimestamp`).
            self.recheck_before_adoption(rs).await?;
        }
        for pod in &plan.adopt {
            match self.adopt(rs, pod).await {
                Ok(()) => {}
                Err(ClientError::NotFound { .. }) => {
                    gone.insert(pod_name(pod).to_string());
                }
                Err(source) => {
                    first_error.get_or_insert(Error::Adopt { pod: pod_name(pod).to_string(), source });
                }
            }
        }
        for pod in &plan.release {
            match self.release(rs, pod).await {
                Ok(()) | Err(ClientError::NotFound { .. }) => {}
                Err(source) => {
                    first_error.get_or_insert(Error::Release { pod: pod_name(pod).to_string(), source });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(gone),
        }
    }

    async fn recheck_before_adoption(&self, rs: &ReplicaSet) -> Result<(), Error> {
        let namespace = rs.metadata.namespace.as_deref().unwrap_or("");
        let name = rs.metadata.name.as_deref().unwrap_or("");
        let api = Api::<ReplicaSet>::namespaced(self.client.clone(), namespace);
        let fresh = api
            .get_opt(name)
            .await
            .map_err(|source| Error::Read { what: format!("replicaset {namespace}/{name}"), source })?;
        let reason = match fresh {
            None => "it is gone",
            Some(f) if f.metadata.uid != rs.metadata.uid => "it was replaced by another of the same name",
            Some(f) if is_deleting(&f.metadata) => "it is being deleted",
            Some(_) => return Ok(()),
        };
        Err(Error::CannotAdopt { replica_set: format!("{namespace}/{name}"), reason: reason.into() })
    }

    /// Makes the ReplicaSet the pod's controller. The patch carries the pod's
    /// resourceVersion (and uid): if the pod changed since the cache saw it (another
    /// controller adopted it first) the write fails with 409 instead of adopting twice.
    async fn adopt(&self, rs: &ReplicaSet, pod: &Pod) -> Result<(), ClientError> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.retain(|r| Some(&r.uid) != rs.metadata.uid.as_ref());
        refs.push(controller_reference(rs));
        self.patch_owner_references(pod, json!(refs)).await
    }

    /// Removes the ReplicaSet's reference from the pod, on the same precondition as
    /// [`adopt`](Self::adopt).
    async fn release(&self, rs: &ReplicaSet, pod: &Pod) -> Result<(), ClientError> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.retain(|r| Some(&r.uid) != rs.metadata.uid.as_ref());
        let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
        self.patch_owner_references(pod, refs).await
    }

    async fn patch_owner_references(&self, pod: &Pod, refs: Value) -> Result<(), ClientError> {
        let m = &pod.metadata;
        let patch = json!({"metadata": {
            "uid": m.uid,
            "resourceVersion": m.resource_version,
            "ownerReferences": refs,
        }});
        let api = self.pod_api(m.namespace.as_deref().unwrap_or(""));
        api.patch(pod_name(pod), PatchType::Merge, &patch).await.map(|_| ())
    }

    /// Creates `count` pods from the template in [`slow_start_batches`], stopping after the
    /// first batch with a failure. Each created name is recorded as soon as the create
    /// returns (before anything else is awaited, so an aborted sync loses none). Returns the
    /// first failure.
    async fn create_pods(&self, key: &ObjectKey, rs: &ReplicaSet, count: usize) -> Result<(), ClientError> {
        let pod = pod_from_template(rs);
        if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err(ClientError::BadRequest("unable to create pods, no labels".into()));
        }
        let api = self.pod_api(key.namespace.as_deref().unwrap_or(""));
        for batch in slow_start_batches(count) {
            let results = join_all((0..batch).map(|_| async {
                let created = api.create(&pod).await;
                let (type_, reason, message) = match &created {
                    Ok(p) => {
                        self.expectations.lock().expect_created(key, pod_name(p), self.now());
                        (EventType::Normal, "SuccessfulCreate", format!("Created pod: {}", pod_name(p)))
                    }
                    Err(e) if namespace_terminating(e) => return created.map(|_| ()),
                    Err(e) => (EventType::Warning, "FailedCreate", format!("Error creating: {e}")),
                };
                self.recorder.publish(reference(rs), type_, reason, message);
                created.map(|_| ())
            }))
            .await;
            match results.into_iter().find_map(Result::err) {
                None => {}
                Some(e) if namespace_terminating(&e) => return Ok(()),
                Some(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes `victims` at once, each only if it is still the pod of that uid. Each deleted
    /// name is recorded as soon as the delete returns. A pod already gone is no failure.
    /// Returns the first failure.
    async fn delete_pods(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        victims: &[Arc<Pod>],
    ) -> Result<(), ClientError> {
        let api = self.pod_api(key.namespace.as_deref().unwrap_or(""));
        let results = join_all(victims.iter().map(|pod| {
            let api = api.clone();
            async move {
                let name = pod_name(pod);
                let uid = pod.metadata.uid.clone();
                let opts = DeleteOptions {
                    preconditions: Precondition { uid: uid.clone(), resource_version: None },
                    ..Default::default()
                };
                let (type_, reason, message) = match api.delete(name, &opts).await {
                    Ok(_) => {
                        self.expectations.lock().expect_deleted(key, name, uid.as_deref(), self.now());
                        (EventType::Normal, "SuccessfulDelete", format!("Deleted pod: {name}"))
                    }
                    Err(ClientError::NotFound { .. }) => return Ok(()),
                    Err(e) => {
                        let message = format!("Error deleting: {e}");
                        self.recorder.publish(reference(rs), EventType::Warning, "FailedDelete", message);
                        return Err(e);
                    }
                };
                self.recorder.publish(reference(rs), type_, reason, message);
                Ok(())
            }
        }))
        .await;
        results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
    }

    /// Writes the status with a merge patch of the status subresource (absent counts and
    /// conditions as `null`, so they are removed). A ReplicaSet gone meanwhile is no failure.
    async fn write_status(&self, rs: &ReplicaSet, status: &ReplicaSetStatus) -> Result<(), Error> {
        let patch = json!({"status": {
            "replicas": status.replicas,
            "fullyLabeledReplicas": status.fully_labeled_replicas,
            "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        }});
        let namespace = rs.metadata.namespace.as_deref().unwrap_or("");
        let api = Api::<ReplicaSet>::namespaced(self.client.clone(), namespace);
        match api.patch_status(rs.metadata.name.as_deref().unwrap_or(""), PatchType::Merge, &patch).await {
            Ok(_) | Err(ClientError::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Status(e)),
        }
    }
}

#[async_trait]
impl Reconciler for ReplicaSetReconciler {
    type Error = Error;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests;
