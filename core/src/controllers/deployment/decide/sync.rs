//! Finding or creating the new ReplicaSet and syncing revisions, scaling (proportionally
//! during a rollout), cleaning up old ReplicaSets, and the plain status (Kubernetes'
//! `sync.go`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{State, Working};
use crate::controllers::deployment::POD_TEMPLATE_HASH_LABEL;
use crate::controllers::deployment::annotations::{
    REVISION_ANNOTATION, desired_replicas, max_revision, set_new_replica_set_annotations,
};
use crate::controllers::deployment::conditions::{
    PROGRESSING, calculate_status, get_condition, new_condition, progress_deadline, reasons, set_condition,
};
use crate::controllers::deployment::hash::{compute_hash, equal_ignore_hash};
use crate::controllers::deployment::replicas::{
    by_creation, by_revision, by_size_newer, by_size_older, spec_replicas, status_replicas,
};
use crate::controllers::util::{controller_reference, is_controlled_by, is_deleting};

/// Name collisions tried in one decision before waiting for the next (each is a 1 in 2^32
/// event, or a name squatted on purpose).
const MAX_COLLISIONS_PER_SYNC: i32 = 16;

impl State<'_> {
    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: finds the new ReplicaSet (the oldest
    /// owned one with the Deployment's template), brings its revision and annotations up to
    /// date, or creates it when `create`; and records its revision for the Deployment.
    pub(super) fn sync_revision(&mut self, create: bool) {
        if self.new.is_none() {
            let template = self.d.spec.as_ref().map(|s| &s.template);
            let mut candidates = self.all();
            candidates.sort_by(|a, b| by_creation(self.rs(*a), self.rs(*b)));
            self.new = candidates.into_iter().find(|i| {
                let t = self.rs(*i).spec.as_ref().and_then(|s| s.template.as_ref());
                matches!((t, template), (Some(t), Some(template)) if equal_ignore_hash(t, template))
            });
        }
        let old = self.old();
        let new_revision = max_revision(old.iter().map(|i| self.rs(*i))).saturating_add(1);
        match self.new {
            Some(i) => self.sync_existing_new(i, new_revision),
            None if create => self.create_new(new_revision),
            None => {}
        }
    }

    /// Kubernetes' existing-new-ReplicaSet branch of `getNewReplicaSet`. Where Kubernetes
    /// writes the ReplicaSet and leaves the Deployment's revision to its next sync, both are
    /// planned at once.
    fn sync_existing_new(&mut self, i: usize, new_revision: i64) {
        let d = self.d;
        let mut copy = self.rs(i).clone();
        let surge = self.sizing.max_surge();
        let annotated = set_new_replica_set_annotations(d, &mut copy, new_revision, true, surge);
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = copy.spec.get_or_insert_with(Default::default);
        if annotated || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
            spec.min_ready_seconds = min_ready;
            *self.rs_mut(i) = copy;
        }
        let revision =
            self.rs(i).metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).cloned();
        self.set_deployment_revision(revision.unwrap_or_default());
        if progress_deadline(d).is_some() && get_condition(&self.status, PROGRESSING).is_none() {
            let msg =
                format!("Found new replica set {:?}", self.rs(i).metadata.name.as_deref().unwrap_or(""));
            let cond = new_condition(PROGRESSING, "True", reasons::FOUND_NEW_REPLICA_SET, msg, &self.now);
            set_condition(&mut self.status, cond);
        }
    }

    /// Plans the Deployment's revision annotation, if it differs.
    fn set_deployment_revision(&mut self, revision: String) {
        let current = self.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION));
        self.revision = (current != Some(&revision)).then_some(revision);
    }

    /// Kubernetes' create branch of `getNewReplicaSet`: `<deployment>-<hash>`, bumping
    /// `status.collisionCount` while the name belongs to a ReplicaSet with another template.
    fn create_new(&mut self, new_revision: i64) {
        let d = self.d;
        let Some(spec) = d.spec.as_ref() else { return };
        let dname = d.metadata.name.clone().unwrap_or_default();
        let mut tries = 0;
        let (hash, name) = loop {
            let hash = compute_hash(&spec.template, self.status.collision_count);
            let name = format!("{dname}-{hash}");
            let taken = self.namespace_rss.iter().find(|rs| {
                rs.metadata.name.as_deref() == Some(name.as_str())
                    && rs.metadata.namespace == d.metadata.namespace
            });
            let Some(taken) = taken else { break (hash, name) };
            let uid = d.metadata.uid.as_deref().unwrap_or_default();
            let same = taken
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &spec.template));
            if is_controlled_by(&taken.metadata, uid) && same {
                // Ours, yet not claimed (being deleted, or relabelled): wait for it to settle.
                return;
            }
            tracing::info!(
                deployment = %self.key(),
                replica_set = %name,
                "replica set name taken by another; bumping collisionCount"
            );
            self.status.collision_count = Some(self.status.collision_count.unwrap_or(0).saturating_add(1));
            tries += 1;
            if tries >= MAX_COLLISIONS_PER_SYNC {
                return;
            }
        };

        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = template_meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
        let old = self.old();
        let replicas = self.sizing.new_rs_replicas(self.total_spec(&old), 0);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_reference(d)]),
                labels,
                // Orders it as the newest among the others; dropped from the create.
                creation_timestamp: Some(self.now.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_replica_set_annotations(d, &mut rs, new_revision, false, self.sizing.max_surge());
        self.owned.push(Working { original: None, rs });
        let i = self.owned.len() - 1;
        self.touched.push(i);
        self.new = Some(i);
        self.set_deployment_revision(new_revision.to_string());
        if progress_deadline(d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            let cond = new_condition(PROGRESSING, "True", reasons::NEW_REPLICA_SET_CREATED, msg, &self.now);
            set_condition(&mut self.status, cond);
        }
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for another
    /// `spec.replicas` than the Deployment's now.
    pub(super) fn is_scaling_event(&mut self) -> bool {
        self.sync_revision(false);
        let all = self.all();
        self.active(&all)
            .iter()
            .any(|i| desired_replicas(self.rs(*i)).is_some_and(|r| r != self.sizing.replicas))
    }

    /// Kubernetes' `sync`: scaling of a paused or resized Deployment, with cleanup when paused.
    pub(super) fn sync(&mut self, paused: bool) {
        self.sync_revision(false);
        self.scale_replica_sets();
        if paused {
            let old = self.old();
            self.cleanup(&old);
        }
        self.sync_status();
    }

    /// Kubernetes' `syncStatusOnly`, for a Deployment being deleted.
    pub(super) fn sync_status_only(&mut self) {
        self.sync_revision(false);
        self.sync_status();
    }

    /// Kubernetes' `syncDeploymentStatus`: the counts and `Available`, without progress.
    pub(super) fn sync_status(&mut self) {
        let (all, new) = self.status_view();
        self.final_status = Some(calculate_status(self.d, &self.sizing, &self.status, &all, new, &self.now));
    }

    /// Kubernetes' `scale`: the only active (or else the newest) ReplicaSet takes the whole
    /// size; a saturated new ReplicaSet retires the old ones; otherwise, for `RollingUpdate`,
    /// the change is spread over the active ReplicaSets in proportion to their sizes.
    fn scale_replica_sets(&mut self) {
        let replicas = self.sizing.replicas;
        let mut old = self.old();
        old.sort_by(|a, b| by_creation(self.rs(*b), self.rs(*a)));
        let mut all = old.clone();
        all.extend(self.new);
        let active = self.active(&all);
        let only = match active.len() {
            0 => self.new.or(old.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            if spec_replicas(self.rs(i)) != replicas {
                self.scale_if_resized(i, replicas);
            }
            return;
        }
        if self.new.is_some_and(|n| self.sizing.is_saturated(self.rs(n))) {
            for i in self.active(&old) {
                self.scale_if_resized(i, 0);
            }
            return;
        }
        if !self.sizing.is_rolling() {
            return;
        }
        let mut active = active;
        let allowed = if replicas > 0 { replicas.saturating_add(self.sizing.max_surge()) } else { 0 };
        let to_add = allowed.saturating_sub(self.total_spec(&active));
        match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => active.sort_by(|a, b| by_size_newer(self.rs(*a), self.rs(*b))),
            std::cmp::Ordering::Less => active.sort_by(|a, b| by_size_older(self.rs(*a), self.rs(*b))),
            std::cmp::Ordering::Equal => {}
        }
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for i in &active {
            let rs = self.rs(*i);
            let p = if to_add != 0 { self.sizing.proportion(rs, status_replicas, to_add, added) } else { 0 };
            added += p;
            sizes.push(spec_replicas(rs).saturating_add(p));
        }
        if to_add != 0
            && let Some(first) = sizes.first_mut()
        {
            // Rounding leftovers go to the largest ReplicaSet.
            *first = first.saturating_add(to_add.saturating_sub(added)).max(0);
        }
        for (i, size) in active.into_iter().zip(sizes) {
            self.scale(i, size);
        }
    }

    /// Kubernetes' `cleanupDeployment`: deletes the oldest revisions beyond
    /// `revisionHistoryLimit` (default 10) among `old`, only those with no replicas in spec or
    /// status, whose spec their controller has observed, and that this decision leaves alone.
    pub(super) fn cleanup(&mut self, old: &[usize]) {
        let limit = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        if limit == i32::MAX {
            return;
        }
        let original = |w: &Working| w.original.clone();
        let mut cleanable: Vec<(usize, Arc<ReplicaSet>)> = old
            .iter()
            .filter_map(|i| original(&self.owned[*i]).map(|o| (*i, o)))
            .filter(|(_, rs)| !is_deleting(&rs.metadata))
            .collect();
        let excess = cleanable.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return;
        }
        cleanable.sort_by(|(_, a), (_, b)| by_revision(a, b));
        for (i, rs) in cleanable.into_iter().take(excess) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if status_replicas(&rs) != 0
                || spec_replicas(&rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.touched.contains(&i)
            {
                continue;
            }
            let m = &rs.metadata;
            tracing::debug!(deployment = %self.key(), replica_set = ?m.name, "deleting old replica set");
            self.deletes.push(super::Step::Delete {
                name: m.name.clone().unwrap_or_default(),
                uid: m.uid.clone().unwrap_or_default(),
                resource_version: m.resource_version.clone().unwrap_or_default(),
            });
        }
    }
}
