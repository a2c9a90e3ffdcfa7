//! The Deployment controller's decision: objects in, a [`Plan`] of writes out, no I/O.
//!
//! It follows Kubernetes' `syncDeployment`: claim ReplicaSets (adopt and release), then a
//! deleting Deployment only gets its status; a paused one or a resized one is scaled
//! ([`sync`]); otherwise the strategy rolls out ([`rolling`], [`recreate`]), and the status with
//! its progress conditions is computed ([`progress`]). Where Kubernetes writes as it goes and
//! reads its own writes back, the decision works on copies of the ReplicaSets and emits one
//! write per changed ReplicaSet at the end.

mod progress;
mod recreate;
mod rolling;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::annotations::{replicas_annotations_need_update, set_replicas_annotations};
use super::replicas::{Sizing, spec_replicas, total};
use super::{Error, Result};
use crate::client::object_key;
use crate::controller::events::EventType;
use crate::controllers::util::{controller_of, controller_reference, is_deleting};
use crate::selector::LabelSelector;
use crate::validation::FieldPath;

/// What the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The Deployment.
    pub deployment: &'a Deployment,
    /// The ReplicaSets of the Deployment's namespace: owned, orphaned and others' (others'
    /// names matter when choosing the new ReplicaSet's name).
    pub replica_sets: &'a [Arc<ReplicaSet>],
    /// Pods of the namespace; only read for the `Recreate` strategy (others may pass none).
    pub pods: &'a [Arc<Pod>],
    /// Now.
    pub now: Timestamp,
}

/// An Event about the Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// A CamelCase reason (`ScalingReplicaSet`).
    pub reason: &'static str,
    /// For humans.
    pub message: String,
}

/// One write of a [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Make the Deployment the controller of an orphan ReplicaSet (a strategic merge patch of
    /// `ownerReferences`, only if the uid and resourceVersion are still these).
    Adopt {
        /// The ReplicaSet.
        name: String,
        /// Its uid.
        uid: String,
        /// Its resourceVersion as observed.
        resource_version: String,
    },
    /// Remove the Deployment's controller reference from a ReplicaSet its selector no longer
    /// matches (same preconditions as [`Step::Adopt`]).
    Release {
        /// The ReplicaSet.
        name: String,
        /// Its uid.
        uid: String,
        /// Its resourceVersion as observed.
        resource_version: String,
    },
    /// Create the new ReplicaSet; on success, record `event`.
    Create {
        /// The ReplicaSet to create.
        replica_set: ReplicaSet,
        /// The Event to record once created.
        event: Option<EventRecord>,
    },
    /// Replace a ReplicaSet (its size, annotations or `minReadySeconds` changed), at the
    /// resourceVersion it carries; on success, record `event`.
    Update {
        /// The ReplicaSet as it should be.
        replica_set: ReplicaSet,
        /// The Event to record once updated.
        event: Option<EventRecord>,
    },
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`, only if unchanged.
    Delete {
        /// The ReplicaSet.
        name: String,
        /// Its uid.
        uid: String,
        /// Its resourceVersion as observed.
        resource_version: String,
    },
    /// Record an Event that belongs to no write.
    Event(EventRecord),
    /// Set the Deployment's `deployment.kubernetes.io/revision` annotation.
    SetRevision {
        /// The revision of its new ReplicaSet.
        revision: String,
    },
    /// Replace the Deployment's status. If a [`Step::SetRevision`] before it moved the
    /// Deployment's generation, `observedGeneration` is to follow it.
    UpdateStatus {
        /// The status.
        status: DeploymentStatus,
    },
}

/// The writes that bring a Deployment's world in line, in order, and when to look again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The writes; performing them stops at the first failure.
    pub steps: Vec<Step>,
    /// Look again after this long even if nothing changes (the progress deadline).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// The status the plan writes, if it writes one.
    pub fn status(&self) -> Option<&DeploymentStatus> {
        self.steps.iter().find_map(|s| match s {
            Step::UpdateStatus { status } => Some(status),
            _ => None,
        })
    }

    /// The ReplicaSets the plan creates.
    pub fn created(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.steps.iter().filter_map(|s| match s {
            Step::Create { replica_set, .. } => Some(replica_set),
            _ => None,
        })
    }

    /// The ReplicaSets the plan replaces, as they will be.
    pub fn updated(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.steps.iter().filter_map(|s| match s {
            Step::Update { replica_set, .. } => Some(replica_set),
            _ => None,
        })
    }

    /// The Events the plan records (if its writes succeed).
    pub fn events(&self) -> impl Iterator<Item = &EventRecord> {
        self.steps.iter().filter_map(|s| match s {
            Step::Create { event, .. } | Step::Update { event, .. } => event.as_ref(),
            Step::Event(e) => Some(e),
            _ => None,
        })
    }
}

/// A ReplicaSet the Deployment owns, as observed and as the decision wants it.
pub(super) struct Working {
    /// As observed; `None` for the ReplicaSet this decision creates.
    pub(super) original: Option<Arc<ReplicaSet>>,
    /// As it should be.
    pub(super) rs: ReplicaSet,
}

/// The decision in progress: Kubernetes' sync functions become methods on it.
pub(super) struct State<'a> {
    pub(super) d: &'a Deployment,
    pub(super) sizing: Sizing,
    pub(super) now: Time,
    /// Every ReplicaSet of the namespace (to spot name collisions).
    pub(super) namespace_rss: &'a [Arc<ReplicaSet>],
    /// The Deployment's status with the conditions and collision count set so far; its counts
    /// stay those observed (what "progress" is measured against).
    pub(super) status: DeploymentStatus,
    /// The revision annotation to set on the Deployment.
    pub(super) revision: Option<String>,
    /// The owned ReplicaSets.
    pub(super) owned: Vec<Working>,
    /// Which of them is the new one.
    pub(super) new: Option<usize>,
    /// Owned ReplicaSets changed, in the order first changed.
    pub(super) touched: Vec<usize>,
    /// Owned pods by the uid of their ReplicaSet (for `Recreate`).
    pub(super) pods: BTreeMap<String, Vec<&'a Pod>>,
    /// Adoptions and releases.
    pub(super) claims: Vec<Step>,
    /// Deletions of old ReplicaSets.
    pub(super) deletes: Vec<Step>,
    /// The status to write, once computed.
    pub(super) final_status: Option<DeploymentStatus>,
    /// When to look again.
    pub(super) requeue: Option<Duration>,
}

impl<'a> State<'a> {
    /// The ReplicaSet at `i` as the decision wants it so far.
    pub(super) fn rs(&self, i: usize) -> &ReplicaSet {
        &self.owned[i].rs
    }

    /// The ReplicaSet at `i`, to change.
    pub(super) fn rs_mut(&mut self, i: usize) -> &mut ReplicaSet {
        if !self.touched.contains(&i) {
            self.touched.push(i);
        }
        &mut self.owned[i].rs
    }

    /// The old ReplicaSets (every owned one but the new).
    pub(super) fn old(&self) -> Vec<usize> {
        (0..self.owned.len()).filter(|i| Some(*i) != self.new).collect()
    }

    /// Those of `of` with replicas.
    pub(super) fn active(&self, of: &[usize]) -> Vec<usize> {
        of.iter().copied().filter(|i| spec_replicas(self.rs(*i)) > 0).collect()
    }

    /// `spec.replicas` summed over `of`.
    pub(super) fn total_spec(&self, of: &[usize]) -> i32 {
        total(of.iter().map(|i| spec_replicas(self.rs(*i))))
    }

    /// The owned ReplicaSets as the status counts them: sizes as observed, not as this
    /// decision changes them (Kubernetes computes the status from the ReplicaSets it listed;
    /// the next sync sees the new sizes), and the ReplicaSet created now; and which is new.
    pub(super) fn status_view(&self) -> (Vec<&ReplicaSet>, Option<&ReplicaSet>) {
        let all = self.owned.iter().map(|w| w.original.as_deref().unwrap_or(&w.rs)).collect();
        let new = self.new.map(|i| self.owned[i].original.as_deref().unwrap_or(&self.owned[i].rs));
        (all, new)
    }

    /// Every owned ReplicaSet.
    pub(super) fn all(&self) -> Vec<usize> {
        (0..self.owned.len()).collect()
    }

    /// Sizes the ReplicaSet at `i` to `to` and brings its replica annotations up to date
    /// (Kubernetes' `scaleReplicaSet`); whether the size changed.
    pub(super) fn scale(&mut self, i: usize, to: i32) -> bool {
        let desired = self.sizing.replicas;
        let max = desired.saturating_add(self.sizing.max_surge());
        let rs = self.rs(i);
        let resized = spec_replicas(rs) != to;
        if !resized && !replicas_annotations_need_update(rs, desired, max) {
            return false;
        }
        let rs = self.rs_mut(i);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(to);
        set_replicas_annotations(rs, desired, max);
        resized
    }

    /// [`scale`](Self::scale) unless the size is already `to` (Kubernetes'
    /// `scaleReplicaSetAndRecordEvent`).
    pub(super) fn scale_if_resized(&mut self, i: usize, to: i32) -> bool {
        spec_replicas(self.rs(i)) != to && self.scale(i, to)
    }

    /// The Deployment's `namespace/name`, for messages.
    pub(super) fn key(&self) -> String {
        object_key(self.d)
    }
}

/// Decides what to write for `observed.deployment`, as Kubernetes' `syncDeployment` would:
/// claim ReplicaSets (adopt matching orphans, release owned ones no longer matching); for a
/// Deployment being deleted, only its status; when paused or resized, scale (proportionally
/// during a rollout); otherwise roll out with its strategy; then the status with its
/// `Available` and `Progressing` conditions, and when to look again for the progress deadline.
///
/// An error means the Deployment's spec is unusable (selector, strategy or budgets).
pub fn decide(observed: &Observed<'_>) -> Result<Plan> {
    let d = observed.deployment;
    let sizing = Sizing::of(d)?;
    let now = Time(Timestamp::from_second(observed.now.as_second()).unwrap_or(observed.now));
    let spec_selector = d.spec.as_ref().map(|s| &s.selector);
    let path = FieldPath::new("spec").child("selector");
    let selector = LabelSelector::from_k8s(spec_selector, &path)
        .map_err(|source| Error::InvalidSelector { deployment: object_key(d), source })?;
    let status = d.status.clone().unwrap_or_default();
    if selector.is_empty() {
        return Ok(selecting_all(d, &status));
    }
    let mut state = State {
        d,
        sizing,
        now,
        namespace_rss: observed.replica_sets,
        status,
        revision: None,
        owned: Vec::new(),
        new: None,
        touched: Vec::new(),
        pods: BTreeMap::new(),
        claims: Vec::new(),
        deletes: Vec::new(),
        final_status: None,
        requeue: None,
    };
    state.claim(&selector);
    state.group_pods(&selector, observed.pods);

    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if is_deleting(&d.metadata) {
        state.sync_status_only();
    } else {
        state.check_paused_conditions(paused);
        if paused || state.is_scaling_event() {
            state.sync(paused);
        } else if sizing.is_rolling() {
            state.rollout_rolling();
        } else {
            state.rollout_recreate();
        }
    }
    Ok(state.finish())
}

/// A Deployment whose selector selects every pod: Kubernetes refuses to act and says so.
fn selecting_all(d: &Deployment, status: &DeploymentStatus) -> Plan {
    let mut steps = vec![Step::Event(EventRecord {
        type_: EventType::Warning,
        reason: "SelectingAll",
        message: "This deployment is selecting all pods. A non-empty selector is required.".into(),
    })];
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        let status = DeploymentStatus { observed_generation: Some(generation), ..status.clone() };
        steps.push(Step::UpdateStatus { status });
    }
    Plan { steps, requeue_after: None }
}

impl<'a> State<'a> {
    /// Kubernetes' `ClaimReplicaSets`: keeps owned ReplicaSets the selector matches, adopts
    /// matching orphans (not while the Deployment is being deleted), releases owned ones it
    /// no longer matches.
    fn claim(&mut self, selector: &LabelSelector) {
        let d = self.d;
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let deleting = is_deleting(&d.metadata);
        let mut rss: Vec<&Arc<ReplicaSet>> =
            self.namespace_rss.iter().filter(|rs| rs.metadata.namespace == d.metadata.namespace).collect();
        rss.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for rs in rss {
            let m = &rs.metadata;
            let labels = m.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            let name = m.name.clone().unwrap_or_default();
            let claim = || (name.clone(), m.uid.clone().unwrap_or_default(), m.resource_version.clone());
            match controller_of(m) {
                Some(r) if r.uid == uid => {
                    if matches {
                        self.owned.push(Working { original: Some(rs.clone()), rs: (**rs).clone() });
                    } else if !deleting && !is_deleting(m) {
                        let (name, uid, rv) = claim();
                        self.claims.push(Step::Release {
                            name,
                            uid,
                            resource_version: rv.unwrap_or_default(),
                        });
                    }
                }
                Some(_) => {}
                None if matches && !deleting && !is_deleting(m) => {
                    let (name, uid, rv) = claim();
                    self.claims.push(Step::Adopt { name, uid, resource_version: rv.unwrap_or_default() });
                    let mut adopted = (**rs).clone();
                    adopted
                        .metadata
                        .owner_references
                        .get_or_insert_with(Vec::new)
                        .push(controller_reference(d));
                    self.owned.push(Working { original: Some(Arc::new(adopted.clone())), rs: adopted });
                }
                None => {}
            }
        }
    }

    /// Files the pods the selector matches under the owned ReplicaSet controlling them.
    fn group_pods(&mut self, selector: &LabelSelector, pods: &'a [Arc<Pod>]) {
        let uids: Vec<&str> = self.owned.iter().filter_map(|w| w.rs.metadata.uid.as_deref()).collect();
        for pod in pods {
            let m = &pod.metadata;
            if m.namespace != self.d.metadata.namespace
                || !selector.matches(&m.labels.clone().unwrap_or_default())
            {
                continue;
            }
            if let Some(r) = controller_of(m).filter(|r| uids.contains(&r.uid.as_str())) {
                self.pods.entry(r.uid.clone()).or_default().push(pod);
            }
        }
    }

    /// The plan: claims, ReplicaSet writes in the order first changed, deletions, the
    /// Deployment's revision and status.
    fn finish(self) -> Plan {
        let mut steps = self.claims;
        for i in &self.touched {
            let w = &self.owned[*i];
            let name = w.rs.metadata.name.clone().unwrap_or_default();
            let to = spec_replicas(&w.rs);
            match &w.original {
                None => {
                    let mut rs = w.rs.clone();
                    // The creation time only ordered it among the others here; the API sets it.
                    rs.metadata.creation_timestamp = None;
                    let event = (to > 0).then(|| scaling_event("up", &name, 0, to));
                    steps.push(Step::Create { replica_set: rs, event });
                }
                Some(original) if **original != w.rs => {
                    let from = spec_replicas(original);
                    let event = match from.cmp(&to) {
                        std::cmp::Ordering::Less => Some(scaling_event("up", &name, from, to)),
                        std::cmp::Ordering::Greater => Some(scaling_event("down", &name, from, to)),
                        std::cmp::Ordering::Equal => None,
                    };
                    steps.push(Step::Update { replica_set: w.rs.clone(), event });
                }
                Some(_) => {}
            }
        }
        steps.extend(self.deletes);
        let revised = self.revision.is_some();
        if let Some(revision) = self.revision {
            steps.push(Step::SetRevision { revision });
        }
        let observed = self.d.status.clone().unwrap_or_default();
        if let Some(status) = self.final_status
            && (revised || status != observed)
        {
            steps.push(Step::UpdateStatus { status });
        }
        Plan { steps, requeue_after: self.requeue }
    }
}

/// Kubernetes' `ScalingReplicaSet` Event.
fn scaling_event(direction: &str, name: &str, from: i32, to: i32) -> EventRecord {
    EventRecord {
        type_: EventType::Normal,
        reason: "ScalingReplicaSet",
        message: format!("Scaled {direction} replica set {name} from {from} to {to}"),
    }
}
