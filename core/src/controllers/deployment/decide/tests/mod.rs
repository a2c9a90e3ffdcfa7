//! Decision tests: a small simulated world applies each plan as the API server and the
//! ReplicaSet controller would, so rollouts can be followed step by step.

mod t10_create;
mod t20_rolling;
mod t30_recreate;
mod t40_lifecycle;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{Observed, Plan, Step, decide};
use crate::controllers::deployment::REVISION_ANNOTATION;
use crate::controllers::deployment::conditions::{AVAILABLE, PROGRESSING, get_condition};
use crate::controllers::deployment::replicas::{available_replicas, spec_replicas};

/// The start of every test's clock.
pub(super) const T0: &str = "2026-03-01T12:00:00Z";

/// A Deployment `web` in `default` selecting `app=web`, with `spec` merged over defaults.
pub(super) fn deployment(spec: Value) -> Deployment {
    let mut base = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1,
            "resourceVersion": "1", "creationTimestamp": T0},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        }
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).expect("test deployment")
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The Deployment's world as the decision sees it, plus what the API server and the
/// ReplicaSet controller would do with a plan.
pub(super) struct World {
    pub(super) d: Deployment,
    pub(super) rss: Vec<Arc<ReplicaSet>>,
    pub(super) pods: Vec<Arc<Pod>>,
    pub(super) now: Timestamp,
    next_uid: u32,
}

impl World {
    pub(super) fn new(d: Deployment) -> World {
        World { d, rss: Vec::new(), pods: Vec::new(), now: T0.parse().expect("time"), next_uid: 0 }
    }

    pub(super) fn decide(&self) -> Plan {
        let observed =
            Observed { deployment: &self.d, replica_sets: &self.rss, pods: &self.pods, now: self.now };
        decide(&observed).expect("decision")
    }

    /// Decides and applies; a second passes.
    pub(super) fn step(&mut self) -> Plan {
        let plan = self.decide();
        self.apply(&plan);
        self.tick(1);
        plan
    }

    pub(super) fn tick(&mut self, seconds: i64) {
        self.now += std::time::Duration::from_secs(u64::try_from(seconds).expect("seconds"));
    }

    fn now_time(&self) -> Time {
        Time(self.now)
    }

    /// Applies a plan as the API server would.
    pub(super) fn apply(&mut self, plan: &Plan) {
        let mut generation_moved = None;
        for step in &plan.steps {
            match step {
                Step::Adopt { name, .. } => {
                    let owner = crate::controllers::util::controller_reference(&self.d);
                    self.update_rs(name, |rs| {
                        rs.metadata.owner_references.get_or_insert_with(Vec::new).push(owner)
                    });
                }
                Step::Release { name, .. } => {
                    self.update_rs(name, |rs| rs.metadata.owner_references = None);
                }
                Step::Create { replica_set, .. } => {
                    let mut rs = replica_set.clone();
                    assert!(self.get(rs.metadata.name.as_deref().unwrap_or("")).is_none(), "created twice");
                    self.next_uid += 1;
                    rs.metadata.uid = Some(format!("rs-uid-{}", self.next_uid));
                    rs.metadata.creation_timestamp = Some(self.now_time());
                    rs.metadata.generation = Some(1);
                    rs.metadata.resource_version = Some("1".into());
                    self.rss.push(Arc::new(rs));
                }
                Step::Update { replica_set, .. } => {
                    let name = replica_set.metadata.name.clone().unwrap_or_default();
                    let new = replica_set.clone();
                    self.update_rs(&name, move |rs| {
                        let spec_changed = rs.spec != new.spec;
                        let generation = rs.metadata.generation.unwrap_or(1) + i64::from(spec_changed);
                        rs.metadata = ObjectMetaKeep::keep(&rs.metadata, new.metadata.clone());
                        rs.metadata.generation = Some(generation);
                        rs.spec = new.spec.clone();
                    });
                }
                Step::Delete { name, .. } => self.rss.retain(|rs| rs.metadata.name.as_deref() != Some(name)),
                Step::Event(_) => {}
                Step::SetRevision { revision } => {
                    let before = self.d.metadata.generation.unwrap_or(0);
                    self.d
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(REVISION_ANNOTATION.into(), revision.clone());
                    self.d.metadata.generation = Some(before + 1);
                    generation_moved = Some((before, before + 1));
                }
                Step::UpdateStatus { status } => {
                    let mut status = status.clone();
                    if let Some((before, after)) = generation_moved
                        && status.observed_generation == Some(before)
                    {
                        status.observed_generation = Some(after);
                    }
                    self.d.status = Some(status);
                }
            }
        }
    }

    fn update_rs(&mut self, name: &str, f: impl FnOnce(&mut ReplicaSet)) {
        let slot =
            self.rss.iter_mut().find(|rs| rs.metadata.name.as_deref() == Some(name)).expect("replica set");
        let mut rs = (**slot).clone();
        f(&mut rs);
        *slot = Arc::new(rs);
    }

    pub(super) fn get(&self, name: &str) -> Option<&ReplicaSet> {
        self.rss.iter().find(|rs| rs.metadata.name.as_deref() == Some(name)).map(|rs| rs.as_ref())
    }

    /// The ReplicaSets oldest first, as (name, spec.replicas).
    pub(super) fn sizes(&self) -> Vec<(String, i32)> {
        let mut rss: Vec<&Arc<ReplicaSet>> = self.rss.iter().collect();
        rss.sort_by(|a, b| crate::controllers::deployment::replicas::by_creation(a, b));
        rss.iter().map(|rs| (rs.metadata.name.clone().unwrap_or_default(), spec_replicas(rs))).collect()
    }

    /// Just the sizes, oldest first.
    pub(super) fn counts(&self) -> Vec<i32> {
        self.sizes().into_iter().map(|(_, n)| n).collect()
    }

    /// The ReplicaSet controller catches up with `rs`: `available` of its replicas are
    /// available (all if `None`).
    pub(super) fn settle_rs(&mut self, name: &str, available: Option<i32>) {
        self.update_rs(name, |rs| {
            let size = spec_replicas(rs);
            let available = available.unwrap_or(size).min(size);
            rs.status = Some(ReplicaSetStatus {
                replicas: size,
                fully_labeled_replicas: Some(size),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                observed_generation: rs.metadata.generation,
                ..Default::default()
            });
        });
    }

    /// Every ReplicaSet catches up, all replicas available.
    pub(super) fn settle(&mut self) {
        let names: Vec<String> = self.rss.iter().filter_map(|rs| rs.metadata.name.clone()).collect();
        for n in names {
            self.settle_rs(&n, None);
        }
    }

    /// A user edit of the Deployment's spec (the generation moves).
    pub(super) fn edit(&mut self, spec: Value) {
        let mut v = serde_json::to_value(&self.d).expect("json");
        merge(&mut v["spec"], spec);
        let mut d: Deployment = serde_json::from_value(v).expect("deployment");
        d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(0) + 1);
        self.d = d;
    }

    pub(super) fn condition(&self, type_: &str) -> Option<DeploymentCondition> {
        get_condition(self.d.status.as_ref()?, type_).cloned()
    }

    pub(super) fn progressing_reason(&self) -> Option<String> {
        self.condition(PROGRESSING)?.reason
    }

    pub(super) fn available_reason(&self) -> Option<String> {
        self.condition(AVAILABLE)?.reason
    }

    /// Available replicas that survive the sizes now asked for.
    pub(super) fn surviving_available(&self) -> i32 {
        self.rss.iter().map(|rs| available_replicas(rs).min(spec_replicas(rs))).sum()
    }
}

/// Update semantics of metadata: what a client may change.
struct ObjectMetaKeep;

impl ObjectMetaKeep {
    fn keep(
        old: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        mut new: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        new.uid = old.uid.clone();
        new.creation_timestamp = old.creation_timestamp.clone();
        new.generation = old.generation;
        new
    }
}

/// The writes of a plan, in short: `create NAME N`, `scale NAME A->B`, `annotate NAME`,
/// `delete NAME`, `adopt NAME`, `release NAME`, `revision R`, `status`.
pub(super) fn summary(world: &World, plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Adopt { name, .. } => Some(format!("adopt {name}")),
            Step::Release { name, .. } => Some(format!("release {name}")),
            Step::Create { replica_set, .. } => {
                Some(format!("create {} {}", short(replica_set), spec_replicas(replica_set)))
            }
            Step::Update { replica_set, .. } => {
                let name = replica_set.metadata.name.as_deref().unwrap_or("");
                let before = world.get(name).map_or(-1, spec_replicas);
                let after = spec_replicas(replica_set);
                if before == after {
                    Some(format!("annotate {}", short(replica_set)))
                } else {
                    Some(format!("scale {} {before}->{after}", short(replica_set)))
                }
            }
            Step::Delete { name, .. } => Some(format!("delete {name}")),
            Step::SetRevision { revision } => Some(format!("revision {revision}")),
            Step::UpdateStatus { .. } => Some("status".into()),
            Step::Event(_) => None,
        })
        .collect()
}

/// A ReplicaSet's name without the Deployment's prefix: its hash, or the name given in a test.
fn short(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// An owned ReplicaSet as a test builds it.
pub(super) fn owned_rs(name: &str, image: &str, replicas: i32, revision: i64, created: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "5", "generation": 1, "creationTimestamp": created,
            "labels": {"app": "web", "pod-template-hash": name},
            "annotations": {REVISION_ANNOTATION: revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": "d-uid", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": name}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"replicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas,
            "observedGeneration": 1}
    }))
    .expect("test replica set")
}
