//! The thin part that does I/O: one watch per kind feeding the graph, workers taking uids
//! from the queue, reading what the decisions need and performing their steps.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::decide::{self, OwnerLookup, OwnerState, Step};
use super::graph::{Attention, Graph, Identity, ORPHAN_FINALIZER, Uid};
use super::queue::{SimpleQueue, WorkQueue};
use super::watch::{Observed, watch_kind};
use super::{CONTROLLER_NAME, Error, GarbageCollector, GcConfig, Result};
use crate::client::{self, Client, GetOptions, Subresource, WriteOptions};
use crate::object::{DynamicObject, Resource, ResourceType};
use crate::patch::PatchType;

/// Dependents of one owner released at once.
const ORPHAN_CONCURRENCY: usize = 8;
/// The component named in the collector's events.
const EVENT_SOURCE: &str = "garbage-collector-controller";

/// What a worker does with a uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Work {
    /// Delete the object if its owners are gone, or finish its foreground deletion.
    AttemptToDelete(Uid),
    /// Release the dependents of an owner deleted with the `orphan` finalizer.
    Orphan(Uid),
}

/// Owners confirmed absent where a reference points (uid and coordinates). A uid never comes
/// back, so an entry stays true; the set is bounded, oldest out first.
struct AbsentOwners {
    capacity: usize,
    set: HashSet<AbsentKey>,
    order: VecDeque<AbsentKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AbsentKey {
    uid: Uid,
    group: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    name: String,
}

impl AbsentOwners {
    fn contains(&self, key: &AbsentKey) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: AbsentKey) {
        if self.capacity == 0 || !self.set.insert(key.clone()) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// What the watch tasks and workers share. The graph's lock is never held across an await.
struct Shared {
    client: Arc<dyn Client>,
    types: Vec<ResourceType>,
    graph: Mutex<Graph>,
    queue: Arc<dyn WorkQueue<Work>>,
    absent: Mutex<AbsentOwners>,
}

pub(super) async fn run(
    gc: GarbageCollector,
    mut is_leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let GarbageCollector { client, types, config } = gc;
    let GcConfig { workers, retry_base, retry_max, absent_owner_cache, initial_sync_timeout, shutdown_grace } =
        config;
    let shared = Arc::new(Shared {
        client,
        types: types.clone(),
        graph: Mutex::new(Graph::new()),
        queue: Arc::new(SimpleQueue::new(retry_base, retry_max)),
        absent: Mutex::new(AbsentOwners {
            capacity: absent_owner_cache,
            set: HashSet::new(),
            order: VecDeque::new(),
        }),
    });
    let tasks = TaskTracker::new();
    let abort = CancellationToken::new();
    let (synced_tx, mut synced_rx) = watch::channel(0usize);
    let (active_tx, active_rx) = watch::channel(false);
    for t in &types {
        tasks.spawn(follow(shared.clone(), *t, synced_tx.clone(), shutdown.clone()));
    }
    drop(synced_tx);
    for _ in 0..workers.max(1) {
        tasks.spawn(work(shared.clone(), active_rx.clone(), shutdown.clone(), abort.clone()));
    }
    let (mut leader_open, mut synced_open) = (true, true);
    let sync_deadline = tokio::time::sleep(initial_sync_timeout);
    tokio::pin!(sync_deadline);
    let mut sync_timed_out = false;
    loop {
        let leader = *is_leader.borrow_and_update();
        let synced = sync_timed_out || *synced_rx.borrow_and_update() >= types.len();
        let active = leader && synced;
        if active_tx.send_replace(active) != active {
            tracing::info!(
                leader,
                synced,
                active,
                graph = shared.graph.lock().len(),
                "garbage collector activity changed"
            );
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = is_leader.changed(), if leader_open => leader_open = changed.is_ok(),
            changed = synced_rx.changed(), if synced_open => synced_open = changed.is_ok(),
            _ = &mut sync_deadline, if !synced => {
                sync_timed_out = true;
                let listed = *synced_rx.borrow();
                tracing::warn!(listed, kinds = types.len(), "not every kind could be listed; collecting anyway");
            }
        }
    }
    // Graceful: no new work, the running work gets a deadline, then it is abandoned.
    shared.queue.shut_down();
    tasks.close();
    if tokio::time::timeout(shutdown_grace, tasks.wait()).await.is_err() {
        tracing::warn!(grace = ?shutdown_grace, "garbage collector work still running at shutdown; abandoning it");
        abort.cancel();
        tasks.wait().await;
    }
}

/// Follows one kind into the graph, queueing what its changes call for. Counts itself in
/// `synced` once its first list is complete.
async fn follow(
    shared: Arc<Shared>,
    t: ResourceType,
    synced: watch::Sender<usize>,
    shutdown: CancellationToken,
) {
    let mut events = Box::pin(watch_kind(shared.client.clone(), t));
    let mut relist: Option<HashSet<Uid>> = None;
    let mut first_sync = true;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        let attention = match event {
            Observed::Init => {
                relist = Some(HashSet::new());
                continue;
            }
            Observed::InitApply(obj) => {
                if let Some(seen) = relist.as_mut() {
                    seen.insert(obj.uid().to_string());
                }
                shared.graph.lock().observe(t, &obj)
            }
            Observed::InitDone => {
                let seen = relist.take().unwrap_or_default();
                let attention = shared.graph.lock().retain_listed(&t, &seen);
                if first_sync {
                    first_sync = false;
                    synced.send_modify(|n| *n += 1);
                    tracing::debug!(kind = t.kind, objects = seen.len(), "gc graph synced kind");
                }
                attention
            }
            Observed::Apply(obj) => shared.graph.lock().observe(t, &obj),
            Observed::Delete(obj) => shared.graph.lock().remove(obj.uid()),
            Observed::Retrying(msg) => {
                tracing::debug!(kind = t.kind, error = %msg, "gc watch retrying");
                continue;
            }
        };
        shared.enqueue(attention);
    }
}

/// Takes work while the collector is active (leading, every kind synced). Losing the lead
/// puts the running item back; shutdown lets it finish unless `abort` fires.
async fn work(
    shared: Arc<Shared>,
    mut active: watch::Receiver<bool>,
    shutdown: CancellationToken,
    abort: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            ready = active.wait_for(|a| *a) => if ready.is_err() { return },
        }
        let item = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = active.wait_for(|a| !*a) => continue,
            item = shared.queue.get() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let outcome = tokio::select! {
            biased;
            _ = abort.cancelled() => {
                shared.queue.done(&item);
                return;
            }
            _ = active.wait_for(|a| !*a) => None,
            result = shared.process(&item) => Some(result),
        };
        match outcome {
            None => shared.queue.add(item.clone()),
            Some(Ok(())) => shared.queue.forget(&item),
            Some(Err(e)) => {
                tracing::warn!(work = ?item, error = %e, cause = ?std::error::Error::source(&e), "gc work failed; retrying");
                shared.queue.add_rate_limited(item.clone());
            }
        }
        shared.queue.done(&item);
    }
}

impl Shared {
    fn enqueue(&self, attention: Attention) {
        for uid in attention.attempt_to_delete {
            self.queue.add(Work::AttemptToDelete(uid));
        }
        for uid in attention.orphan {
            self.queue.add(Work::Orphan(uid));
        }
    }

    async fn process(&self, work: &Work) -> Result<()> {
        match work {
            Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.orphan(uid).await,
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<()> {
        let identity = {
            let graph = self.graph.lock();
            if !decide::needs_look(&graph, &self.types, uid) {
                return Ok(());
            }
            graph.node(uid).map(|n| n.identity.clone())
        };
        let Some(identity) = identity else { return Ok(()) };
        let Some(latest) = self.read(&identity).await? else { return Ok(()) };
        let lookups: Vec<(OwnerReference, OwnerLookup)> = if latest.is_deleting() {
            Vec::new()
        } else {
            let graph = self.graph.lock();
            latest
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|r| (r.clone(), decide::owner_lookup(&graph, &self.types, &identity, r)))
                .collect()
        };
        let mut owners = Vec::with_capacity(lookups.len());
        for (r, lookup) in lookups {
            let state = match lookup {
                OwnerLookup::Known(state) => state,
                OwnerLookup::Read { resource, namespace } => {
                    self.read_owner(&identity, &r, resource, namespace).await?
                }
                OwnerLookup::UnknownKind => {
                    return Err(Error::UnknownOwnerKind {
                        object: identity.to_string(),
                        api_version: r.api_version,
                        kind: r.kind,
                    });
                }
            };
            owners.push((r, state));
        }
        let steps = decide::attempt_to_delete(&self.graph.lock(), &identity, &latest, &owners);
        self.perform(steps).await
    }

    async fn orphan(&self, uid: &str) -> Result<()> {
        let found = {
            let graph = self.graph.lock();
            graph.node(uid).map(|n| {
                let dependents: Vec<Identity> = graph.dependents(uid).map(|d| d.identity.clone()).collect();
                (n.identity.clone(), dependents)
            })
        };
        let Some((owner, dependents)) = found else { return Ok(()) };
        let Some(latest) = self.read(&owner).await? else { return Ok(()) };
        if !decide::is_orphaning(&owner, &latest) {
            return Ok(());
        }
        let released: Vec<Result<()>> = futures::stream::iter(dependents)
            .map(|d| async move {
                let Some(latest) = self.read(&d).await? else { return Ok(()) };
                self.perform(decide::orphan_dependent(&d, &latest, uid).into_iter().collect()).await
            })
            .buffer_unordered(ORPHAN_CONCURRENCY)
            .collect()
            .await;
        released.into_iter().collect::<Result<()>>()?;
        // Read again: the owner may have changed while its dependents were released.
        let Some(latest) = self.read(&owner).await? else { return Ok(()) };
        tracing::info!(owner = %owner, "orphaned dependents");
        self.perform(decide::remove_finalizer(&owner, &latest, ORPHAN_FINALIZER).into_iter().collect()).await
    }

    /// The object as it is now, if it still is the object `id` names.
    async fn read(&self, id: &Identity) -> Result<Option<DynamicObject>> {
        match self.client.get(&id.resource, id.namespace.as_deref(), &id.name, &GetOptions::default()).await {
            Ok(obj) if obj.uid() == id.uid => Ok(Some(obj)),
            Ok(_) | Err(client::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Read { object: id.to_string(), source }),
        }
    }

    /// The state of `r`'s owner, read live (the "virtual node" check), with absent owners
    /// remembered.
    async fn read_owner(
        &self,
        dependent: &Identity,
        r: &OwnerReference,
        resource: ResourceType,
        namespace: Option<String>,
    ) -> Result<OwnerState> {
        let key = AbsentKey {
            uid: r.uid.clone(),
            group: resource.group,
            kind: resource.kind,
            namespace: namespace.clone(),
            name: r.name.clone(),
        };
        if self.absent.lock().contains(&key) {
            return Ok(OwnerState::Dangling);
        }
        let found =
            match self.client.get(&resource, namespace.as_deref(), &r.name, &GetOptions::default()).await {
                Ok(obj) => Some(obj),
                Err(client::Error::NotFound { .. }) => None,
                Err(source) => {
                    return Err(Error::ReadOwner {
                        object: dependent.to_string(),
                        owner: format!("{} {} ({})", r.kind, r.name, r.uid),
                        source,
                    });
                }
            };
        let state = decide::owner_state_from_read(r, found.as_ref());
        if state == OwnerState::Dangling {
            tracing::debug!(object = %dependent, owner = %r.uid, "owner absent");
            self.absent.lock().insert(key);
        }
        Ok(state)
    }

    /// Performs `steps` in order; stops early when the object they write is gone.
    async fn perform(&self, steps: Vec<Step>) -> Result<()> {
        let mut written: Option<DynamicObject> = None;
        for step in steps {
            let step = match &written {
                Some(w) => step.after_write(w),
                None => step,
            };
            match &step {
                Step::Enqueue(uids) => {
                    for uid in uids {
                        self.queue.add(Work::AttemptToDelete(uid.clone()));
                    }
                }
                Step::Warn { target, reason, message } => self.warn(target, reason, message).await,
                Step::Delete { .. } => {
                    if !self.delete(&step).await? {
                        return Ok(());
                    }
                }
                Step::SetOwnerReferences { target, .. } | Step::SetFinalizers { target, .. } => {
                    match self.patch(target, &step).await? {
                        Some(obj) => written = Some(obj),
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes as `step` says; false when the object was already gone.
    async fn delete(&self, step: &Step) -> Result<bool> {
        let (Some(target), Some(opts)) = (step.target(), step.delete_options()) else { return Ok(true) };
        let ns = target.namespace.as_deref();
        let err = match self.client.delete(&target.resource, ns, &target.name, &opts).await {
            Ok(_) => {
                tracing::info!(object = %target, policy = ?opts.propagation_policy, "deleted");
                return Ok(true);
            }
            Err(client::Error::NotFound { .. }) => return Ok(false),
            Err(e @ client::Error::Conflict { .. }) if opts.preconditions.resource_version.is_some() => e,
            Err(source) => return Err(Error::Delete { object: target.to_string(), source }),
        };
        // Only the version may have moved (a status update): then the delete still stands.
        let Some(live) = self.read(target).await? else { return Ok(false) };
        let Some(retry) = decide::retry_delete_without_version(step, &live) else {
            return Err(Error::Delete { object: target.to_string(), source: err });
        };
        let opts = retry.delete_options().unwrap_or_default();
        match self.client.delete(&target.resource, ns, &target.name, &opts).await {
            Ok(_) => {
                tracing::info!(object = %target, policy = ?opts.propagation_policy, "deleted");
                Ok(true)
            }
            Err(client::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(Error::Delete { object: target.to_string(), source }),
        }
    }

    /// Applies a metadata step; the object as written, or `None` when it is gone.
    async fn patch(&self, target: &Identity, step: &Step) -> Result<Option<DynamicObject>> {
        let Some(body) = step.merge_patch() else { return Ok(None) };
        let body = serde_json::to_vec(&body)
            .map_err(|source| Error::Encode { object: target.to_string(), source })?;
        let written = self
            .client
            .patch(
                &target.resource,
                target.namespace.as_deref(),
                &target.name,
                PatchType::Merge,
                &body,
                Subresource::Main,
                &WriteOptions::default(),
            )
            .await;
        match written {
            Ok(w) => {
                tracing::info!(object = %target, step = step_name(step), "patched");
                Ok(Some(w.object))
            }
            Err(client::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Patch { object: target.to_string(), source }),
        }
    }

    /// Logs a problem and records it as a Warning event on the object (best effort).
    async fn warn(&self, target: &Identity, reason: &str, message: &str) {
        tracing::warn!(object = %target, reason, detail = message, "invalid owner reference");
        let namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", target.name)),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(target.resource.api_version()),
                kind: Some(target.resource.kind.into()),
                name: Some(target.name.clone()),
                namespace: target.namespace.clone(),
                uid: Some(target.uid.clone()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            source: Some(EventSource { component: Some(EVENT_SOURCE.into()), host: None }),
            reporting_component: Some(CONTROLLER_NAME.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            ..Default::default()
        };
        let created = match DynamicObject::from_typed(&event) {
            Ok(obj) => self
                .client
                .create(&Event::TYPE, Some(&namespace), obj, &WriteOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = created {
            tracing::debug!(object = %target, error = %e, "gc event not recorded");
        }
    }
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Delete { .. } => "delete",
        Step::SetOwnerReferences { .. } => "owner references",
        Step::SetFinalizers { .. } => "finalizers",
        Step::Enqueue(_) => "enqueue",
        Step::Warn { .. } => "warn",
    }
}
