//! The collector's decisions, as plain functions from what is known (the [`Graph`], the
//! latest state of an object, what its owners turned out to be) to the writes to make
//! ([`Step`]s). The runner reads and writes; nothing here does.
//!
//! Deciding about an object ("attempt to delete" in Kubernetes) goes in two halves:
//! [`owner_lookup`] says, for each owner reference of the object's latest state, whether the
//! graph already knows the owner or it must be read (an owner the graph has not seen may not
//! exist: the "virtual node" check), and [`attempt_to_delete`] turns the classified owners
//! into steps. Orphaning has [`orphan_dependent`] and [`remove_finalizer`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use super::graph::{FOREGROUND_FINALIZER, Graph, Identity, ORPHAN_FINALIZER, Uid, api_group};
use crate::object::{DynamicObject, ResourceType};
use crate::registry::{DeleteOptions, Precondition, PropagationPolicy};

/// The reason of the warning about an owner reference that cannot name its owner.
pub const INVALID_OWNER_REASON: &str = "OwnerRefInvalidNamespace";

/// Where an owner reference points, seen from its dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerTarget {
    /// The owner is the object of that name of kind `resource` in `namespace`.
    At {
        /// The owner's kind.
        resource: ResourceType,
        /// The dependent's namespace for a namespaced owner, `None` for a cluster-scoped one.
        namespace: Option<String>,
    },
    /// The reference names a kind the collector does not serve (maybe not yet): retry later.
    UnknownKind,
    /// A cluster-scoped dependent names a namespaced owner: the reference can never resolve.
    NamespacedOwnerOfClusterScoped,
}

/// Where `r`, written on `dependent`, points: an owner reference has no namespace, so a
/// namespaced owner is looked for in the dependent's own namespace.
pub fn owner_target(types: &[ResourceType], dependent: &Identity, r: &OwnerReference) -> OwnerTarget {
    let group = api_group(&r.api_version);
    let Some(resource) = types.iter().find(|t| t.group == group && t.kind == r.kind) else {
        return OwnerTarget::UnknownKind;
    };
    match (resource.namespaced, &dependent.namespace) {
        (true, None) => OwnerTarget::NamespacedOwnerOfClusterScoped,
        (true, Some(ns)) => OwnerTarget::At { resource: *resource, namespace: Some(ns.clone()) },
        (false, _) => OwnerTarget::At { resource: *resource, namespace: None },
    }
}

/// What an owner reference turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// No object with the reference's uid exists where it points.
    Dangling,
    /// The owner is being deleted in the foreground, waiting for its dependents.
    WaitingForDependents,
    /// The uid belongs to an object in another namespace: absent where the reference points
    /// (so dangling), and worth a warning.
    InvalidNamespace,
    /// A cluster-scoped dependent names a namespaced kind: nothing can be decided about the
    /// dependent (Kubernetes leaves it alone), and it is worth a warning.
    Unresolvable,
}

/// What must be learnt about one owner reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerLookup {
    /// Known without I/O.
    Known(OwnerState),
    /// Read the owner (by the reference's name) at these coordinates; then
    /// [`owner_state_from_read`].
    Read {
        /// The owner's kind.
        resource: ResourceType,
        /// Where to read it.
        namespace: Option<String>,
    },
    /// The reference names a kind the collector does not know: retry later.
    UnknownKind,
}

/// What to learn about `r`, an owner reference of `dependent`: the graph answers for an
/// owner it has seen at the reference's coordinates; an unseen owner is read live.
pub fn owner_lookup(
    graph: &Graph,
    types: &[ResourceType],
    dependent: &Identity,
    r: &OwnerReference,
) -> OwnerLookup {
    let (resource, namespace) = match owner_target(types, dependent, r) {
        OwnerTarget::UnknownKind => return OwnerLookup::UnknownKind,
        OwnerTarget::NamespacedOwnerOfClusterScoped => return OwnerLookup::Known(OwnerState::Unresolvable),
        OwnerTarget::At { resource, namespace } => (resource, namespace),
    };
    match graph.node(&r.uid) {
        Some(owner) if owner.identity.is_named_by(r, dependent.namespace.as_deref()) => {
            OwnerLookup::Known(if owner.deleting_dependents {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            })
        }
        // Uids are unique: whatever has the reference's name in the dependent's namespace
        // is not this object.
        Some(owner) if owner.identity.resource.namespaced && owner.identity.namespace != namespace => {
            OwnerLookup::Known(OwnerState::InvalidNamespace)
        }
        _ => OwnerLookup::Read { resource, namespace },
    }
}

/// The state of `r`'s owner from a live read at its coordinates (`None`: not found). An
/// object there with another uid is a different object: the owner is gone.
pub fn owner_state_from_read(r: &OwnerReference, found: Option<&DynamicObject>) -> OwnerState {
    match found {
        Some(owner) if owner.uid() == r.uid => {
            if owner.is_deleting() && has_finalizer(owner, FOREGROUND_FINALIZER) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Dangling,
    }
}

/// Whether the object with this uid needs a live look: false when the graph alone shows
/// there is nothing to do (no owners, or only solid ones, and no foreground deletion to
/// finish), which saves a read per object listed at start-up.
pub fn needs_look(graph: &Graph, types: &[ResourceType], uid: &str) -> bool {
    let Some(node) = graph.node(uid) else { return false };
    if node.deleting_dependents {
        return true;
    }
    if node.deleting {
        // A one-way trip: once it is gone its dependents get their look.
        return false;
    }
    node.owners
        .iter()
        .any(|r| owner_lookup(graph, types, &node.identity, r) != OwnerLookup::Known(OwnerState::Solid))
}

/// One write (or follow-up) the collector makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Delete `target`, if it still has its uid (and, when set, its resourceVersion).
    Delete {
        /// The object.
        target: Identity,
        /// What happens to its own dependents.
        policy: PropagationPolicy,
        /// The resourceVersion the decision was made at; empty for none.
        resource_version: String,
        /// Its owner references at that resourceVersion: if only other fields changed since,
        /// the delete may go ahead without the resourceVersion precondition.
        owners: Vec<OwnerReference>,
    },
    /// Replace `target`'s owner references (a merge patch at its resourceVersion).
    SetOwnerReferences {
        /// The object.
        target: Identity,
        /// The resourceVersion the references were read at.
        resource_version: String,
        /// The references it keeps.
        owner_references: Vec<OwnerReference>,
    },
    /// Replace `target`'s finalizers (a merge patch at its resourceVersion).
    SetFinalizers {
        /// The object.
        target: Identity,
        /// The resourceVersion the finalizers were read at.
        resource_version: String,
        /// The finalizers it keeps.
        finalizers: Vec<String>,
    },
    /// Look at these objects (attempt to delete them).
    Enqueue(Vec<Uid>),
    /// Report a problem with `target` (a Warning event).
    Warn {
        /// The object the problem is about.
        target: Identity,
        /// The event's reason.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Step {
    /// The object the step writes, if it writes one.
    pub fn target(&self) -> Option<&Identity> {
        match self {
            Step::Delete { target, .. }
            | Step::SetOwnerReferences { target, .. }
            | Step::SetFinalizers { target, .. }
            | Step::Warn { target, .. } => Some(target),
            Step::Enqueue(_) => None,
        }
    }

    /// The JSON merge patch of a metadata step. Its resourceVersion makes it fail with a
    /// conflict if the object changed (or was recreated) since it was read.
    pub fn merge_patch(&self) -> Option<Value> {
        let (rv, field, value) = match self {
            Step::SetOwnerReferences { resource_version, owner_references, .. } => {
                let refs = if owner_references.is_empty() { Value::Null } else { json!(owner_references) };
                (resource_version, "ownerReferences", refs)
            }
            Step::SetFinalizers { resource_version, finalizers, .. } => {
                let f = if finalizers.is_empty() { Value::Null } else { json!(finalizers) };
                (resource_version, "finalizers", f)
            }
            _ => return None,
        };
        let mut metadata = serde_json::Map::new();
        if !rv.is_empty() {
            metadata.insert("resourceVersion".into(), Value::String(rv.clone()));
        }
        metadata.insert(field.into(), value);
        Some(json!({ "metadata": metadata }))
    }

    /// The options of a delete step: the uid precondition always (a recreated object of the
    /// same name is never deleted by mistake), the resourceVersion one when known.
    pub fn delete_options(&self) -> Option<DeleteOptions> {
        let Step::Delete { target, policy, resource_version, .. } = self else { return None };
        Some(DeleteOptions {
            propagation_policy: Some(*policy),
            preconditions: Precondition {
                uid: Some(target.uid.clone()),
                resource_version: (!resource_version.is_empty()).then(|| resource_version.clone()),
            },
            ..Default::default()
        })
    }

    /// This step after an earlier step wrote `written` (the same object): it applies at the
    /// new resourceVersion, to the references as written.
    pub fn after_write(self, written: &DynamicObject) -> Step {
        let same = self.target().is_some_and(|t| t.uid == written.uid());
        if !same {
            return self;
        }
        let rv = written.resource_version().to_string();
        match self {
            Step::Delete { target, policy, .. } => Step::Delete {
                target,
                policy,
                resource_version: rv,
                owners: written.metadata.owner_references.clone().unwrap_or_default(),
            },
            Step::SetOwnerReferences { target, owner_references, .. } => {
                Step::SetOwnerReferences { target, resource_version: rv, owner_references }
            }
            Step::SetFinalizers { target, finalizers, .. } => {
                Step::SetFinalizers { target, resource_version: rv, finalizers }
            }
            other => other,
        }
    }
}

/// After a delete at a resourceVersion failed with a conflict: the delete again without
/// that precondition when `live` is the same object with the same owner references (only
/// other fields moved, such as a status), as Kubernetes does; `None` to decide again.
pub fn retry_delete_without_version(step: &Step, live: &DynamicObject) -> Option<Step> {
    let Step::Delete { target, policy, resource_version, owners } = step else { return None };
    let live_owners = live.metadata.owner_references.as_deref().unwrap_or(&[]);
    let unchanged_owners = live_owners == owners.as_slice();
    let moved = !resource_version.is_empty() && live.resource_version() != resource_version;
    (live.uid() == target.uid && moved && unchanged_owners).then(|| Step::Delete {
        target: target.clone(),
        policy: *policy,
        resource_version: String::new(),
        owners: owners.clone(),
    })
}

/// Whether `obj` carries `finalizer`.
pub fn has_finalizer(obj: &DynamicObject, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

/// What to do about `item` given its `latest` state and the states of its owners (one per
/// owner reference of `latest`; a reference without one counts as solid).
///
/// - Being deleted, not in the foreground: nothing (its dependents get their look once it
///   is gone).
/// - Being deleted in the foreground: remove `foregroundDeletion` once no blocking dependent
///   remains, otherwise look at the blocking dependents.
/// - Some owner solid: remove the references to dangling owners and to owners waiting for
///   their dependents (which would otherwise wait for this object forever).
/// - Owners waiting for their dependents, and dependents of its own: delete it in the
///   foreground, so its owners wait for its dependents too (making its references
///   non-blocking first if one of its dependents waits as well, which could be a cycle).
/// - Otherwise every owner is gone: delete it, honouring an `orphan` or
///   `foregroundDeletion` finalizer it already carries, in the background otherwise.
pub fn attempt_to_delete(
    graph: &Graph,
    item: &Identity,
    latest: &DynamicObject,
    owners: &[(OwnerReference, OwnerState)],
) -> Vec<Step> {
    if latest.uid() != item.uid {
        return Vec::new();
    }
    if latest.is_deleting() {
        if has_finalizer(latest, FOREGROUND_FINALIZER) {
            return finish_foreground_deletion(graph, item, latest);
        }
        return Vec::new();
    }
    let refs = latest.metadata.owner_references.as_deref().unwrap_or(&[]);
    if refs.is_empty() {
        return Vec::new();
    }
    let state_of = |r: &OwnerReference| {
        owners.iter().find(|(o, _)| o.uid == r.uid).map_or(OwnerState::Solid, |(_, s)| *s)
    };
    if let Some(r) = refs.iter().find(|r| state_of(r) == OwnerState::Unresolvable) {
        return vec![Step::Warn {
            target: item.clone(),
            reason: INVALID_OWNER_REASON,
            message: format!(
                "cluster-scoped object references the namespaced owner {} {}/{} ({}), which it cannot have",
                r.api_version, r.kind, r.name, r.uid
            ),
        }];
    }
    let mut steps: Vec<Step> = refs
        .iter()
        .filter(|r| state_of(r) == OwnerState::InvalidNamespace)
        .map(|r| Step::Warn {
            target: item.clone(),
            reason: INVALID_OWNER_REASON,
            message: format!(
                "ownerRef [{}/{}, namespace: {}, name: {}, uid: {}] does not exist in namespace {:?}",
                r.api_version,
                r.kind,
                item.namespace.as_deref().unwrap_or(""),
                r.name,
                r.uid,
                item.namespace.as_deref().unwrap_or("")
            ),
        })
        .collect();
    let solid = refs.iter().any(|r| state_of(r) == OwnerState::Solid);
    let waiting = refs.iter().any(|r| state_of(r) == OwnerState::WaitingForDependents);
    let rv = latest.resource_version().to_string();
    let delete = |policy| Step::Delete {
        target: item.clone(),
        policy,
        resource_version: rv.clone(),
        owners: refs.to_vec(),
    };
    if solid {
        let keep: Vec<OwnerReference> =
            refs.iter().filter(|r| state_of(r) == OwnerState::Solid).cloned().collect();
        if keep.len() != refs.len() {
            steps.push(Step::SetOwnerReferences {
                target: item.clone(),
                resource_version: rv,
                owner_references: keep,
            });
        }
        return steps;
    }
    let mut dependents = graph.dependents(&item.uid).peekable();
    if waiting && dependents.peek().is_some() {
        if dependents.any(|d| d.deleting_dependents) {
            let unblocked = refs
                .iter()
                .map(|r| OwnerReference {
                    block_owner_deletion: r.block_owner_deletion.map(|_| false),
                    ..r.clone()
                })
                .collect();
            steps.push(Step::SetOwnerReferences {
                target: item.clone(),
                resource_version: rv.clone(),
                owner_references: unblocked,
            });
        }
        steps.push(delete(PropagationPolicy::Foreground));
        return steps;
    }
    let policy = if has_finalizer(latest, ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if has_finalizer(latest, FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    steps.push(delete(policy));
    steps
}

/// An owner in foreground deletion: done (its finalizer removed) when no dependent blocks
/// it any more; otherwise its blocking dependents get a look (those waiting for their own
/// dependents are already on their way).
fn finish_foreground_deletion(graph: &Graph, item: &Identity, latest: &DynamicObject) -> Vec<Step> {
    let blocking: Vec<Uid> = graph
        .blocking_dependents(&item.uid)
        .filter(|d| !d.deleting_dependents)
        .map(|d| d.identity.uid.clone())
        .collect();
    if graph.blocking_dependents(&item.uid).next().is_none() {
        return remove_finalizer(item, latest, FOREGROUND_FINALIZER).into_iter().collect();
    }
    if blocking.is_empty() { Vec::new() } else { vec![Step::Enqueue(blocking)] }
}

/// Whether `latest` is still `owner` and waits for its dependents to be orphaned.
pub fn is_orphaning(owner: &Identity, latest: &DynamicObject) -> bool {
    latest.uid() == owner.uid && latest.is_deleting() && has_finalizer(latest, ORPHAN_FINALIZER)
}

/// Releases `dependent` (at its `latest` state) from the owner with uid `owner`: its
/// reference goes. `None` when it has none (or `latest` is another object).
pub fn orphan_dependent(dependent: &Identity, latest: &DynamicObject, owner: &str) -> Option<Step> {
    if latest.uid() != dependent.uid {
        return None;
    }
    let refs = latest.metadata.owner_references.as_deref().unwrap_or(&[]);
    let keep: Vec<OwnerReference> = refs.iter().filter(|r| r.uid != owner).cloned().collect();
    (keep.len() != refs.len()).then(|| Step::SetOwnerReferences {
        target: dependent.clone(),
        resource_version: latest.resource_version().to_string(),
        owner_references: keep,
    })
}

/// Removes `finalizer` from `target` (at its `latest` state); `None` when it is not there
/// (or `latest` is another object).
pub fn remove_finalizer(target: &Identity, latest: &DynamicObject, finalizer: &str) -> Option<Step> {
    if latest.uid() != target.uid || !has_finalizer(latest, finalizer) {
        return None;
    }
    Some(Step::SetFinalizers {
        target: target.clone(),
        resource_version: latest.resource_version().to_string(),
        finalizers: latest.finalizers().iter().filter(|f| *f != finalizer).cloned().collect(),
    })
}

#[cfg(test)]
mod tests;
