//! The dependency graph: every object the collector has seen, keyed by uid, with its owners
//! (its `ownerReferences`) and its dependents (the objects whose references name its uid).
//!
//! The graph is fed with watch events and does no I/O. [`Graph::observe`] and
//! [`Graph::remove`] return the [`Attention`] a change calls for: the uids to look at for
//! deletion (an owner may have gone, a foreground deletion may be able to finish) and the
//! owners whose dependents must be orphaned. Dependents are kept by owner uid whether or not
//! the owner itself has been seen, so an owner observed after its dependents finds them
//! (Kubernetes keeps "virtual" nodes for that; here an unseen owner is simply a uid with
//! dependents and no node).

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::object::{DynamicObject, ResourceType};

/// An object's uid.
pub type Uid = String;

/// The finalizer that makes the collector orphan an owner's dependents before it goes.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that keeps an owner until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Who an object is: its kind, where it lives, its name and its uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The object's kind.
    pub resource: ResourceType,
    /// The namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// The uid.
    pub uid: Uid,
}

impl Identity {
    /// The identity of `obj`, an object of kind `resource`.
    pub fn of(resource: ResourceType, obj: &DynamicObject) -> Identity {
        let namespace =
            if resource.namespaced { obj.metadata.namespace.clone().filter(|n| !n.is_empty()) } else { None };
        Identity { resource, namespace, name: obj.name().to_string(), uid: obj.uid().to_string() }
    }

    /// Whether `r`, written on a dependent in `dependent_namespace`, names this object: same
    /// uid, group, kind and name, and, for a namespaced owner, the dependent's namespace
    /// (an owner reference has no namespace of its own).
    pub fn is_named_by(&self, r: &OwnerReference, dependent_namespace: Option<&str>) -> bool {
        r.uid == self.uid
            && r.kind == self.resource.kind
            && r.name == self.name
            && api_group(&r.api_version) == self.resource.group
            && (!self.resource.namespaced || self.namespace.as_deref() == dependent_namespace)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{} ({})", self.resource.kind, self.name, self.uid),
            None => write!(f, "{} {} ({})", self.resource.kind, self.name, self.uid),
        }
    }
}

/// The group of an `apiVersion`: `apps` for `apps/v1`, empty for `v1`.
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether a reference makes foreground deletion of its owner wait for the dependent.
pub fn blocks_owner(r: &OwnerReference) -> bool {
    r.block_owner_deletion == Some(true)
}

/// What the graph knows of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Who it is.
    pub identity: Identity,
    /// Its owner references, as last observed.
    pub owners: Vec<OwnerReference>,
    /// Its deletion has started (`deletionTimestamp` is set).
    pub deleting: bool,
    /// It is being deleted in the foreground: it waits for its blocking dependents.
    pub deleting_dependents: bool,
    /// It is being deleted with the `orphan` finalizer: its dependents are to be released.
    pub orphaning: bool,
}

impl Node {
    fn of(resource: ResourceType, obj: &DynamicObject) -> Node {
        let deleting = obj.is_deleting();
        let has = |finalizer: &str| obj.finalizers().iter().any(|f| f == finalizer);
        Node {
            identity: Identity::of(resource, obj),
            owners: obj.metadata.owner_references.clone().unwrap_or_default(),
            deleting,
            deleting_dependents: deleting && has(FOREGROUND_FINALIZER),
            orphaning: deleting && has(ORPHAN_FINALIZER),
        }
    }

    /// The reference this node holds to `owner`, if any.
    pub fn reference_to(&self, owner: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|r| r.uid == owner)
    }
}

/// What a change to the graph calls for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attention {
    /// Objects to look at: delete them if their owners are gone, or finish their foreground
    /// deletion ("attempt to delete" in Kubernetes).
    pub attempt_to_delete: BTreeSet<Uid>,
    /// Owners being deleted with the `orphan` finalizer, whose dependents must be released.
    pub orphan: BTreeSet<Uid>,
}

impl Attention {
    /// Whether nothing needs attention.
    pub fn is_empty(&self) -> bool {
        self.attempt_to_delete.is_empty() && self.orphan.is_empty()
    }

    /// Adds everything `other` asks for.
    pub fn merge(&mut self, other: Attention) {
        self.attempt_to_delete.extend(other.attempt_to_delete);
        self.orphan.extend(other.orphan);
    }
}

/// The dependency graph: every object seen, by uid, with its owners (its `ownerReferences`)
/// and its dependents. Dependents are kept by owner uid whether or not the owner has been
/// seen, so an owner observed after its dependents finds them.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    /// Owner uid to the uids of the nodes that reference it; the owner may be unseen.
    dependents: HashMap<Uid, BTreeSet<Uid>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// How many objects the graph holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph holds no object.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The object with this uid, if seen.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The seen objects that reference `owner`, in uid order.
    pub fn dependents(&self, owner: &str) -> impl Iterator<Item = &Node> + '_ {
        self.dependents.get(owner).into_iter().flatten().filter_map(|uid| self.nodes.get(uid))
    }

    /// The dependents of `owner` whose reference to it has `blockOwnerDeletion`: those a
    /// foreground deletion of `owner` waits for.
    pub fn blocking_dependents<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.dependents(owner).filter(move |d| d.owners.iter().any(|r| r.uid == owner && blocks_owner(r)))
    }

    /// The uids of the seen objects of kind `resource`.
    pub fn uids_of(&self, resource: &ResourceType) -> Vec<Uid> {
        self.nodes
            .values()
            .filter(|n| {
                n.identity.resource.group == resource.group && n.identity.resource.kind == resource.kind
            })
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// Records that `obj` (of kind `resource`) exists as given: added or changed.
    pub fn observe(&mut self, resource: ResourceType, obj: &DynamicObject) -> Attention {
        let mut attention = Attention::default();
        if obj.uid().is_empty() {
            tracing::debug!(kind = resource.kind, name = obj.name(), "object without uid ignored");
            return attention;
        }
        let new = Node::of(resource, obj);
        let uid = new.identity.uid.clone();
        let old = self.nodes.remove(&uid);
        match &old {
            None => {
                for r in &new.owners {
                    self.link(&uid, &r.uid);
                    self.check_new_reference(&new, r, &mut attention);
                }
                self.check_dependents_of_new_owner(&new.identity, &mut attention);
            }
            Some(old) => self.update_references(old, &new, &mut attention),
        }
        let was_orphaning = old.as_ref().is_some_and(|o| o.orphaning);
        let was_deleting_dependents = old.as_ref().is_some_and(|o| o.deleting_dependents);
        if new.orphaning && !was_orphaning {
            attention.orphan.insert(uid.clone());
        }
        if new.deleting_dependents && !was_deleting_dependents {
            attention.attempt_to_delete.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
            attention.attempt_to_delete.insert(uid.clone());
        }
        self.nodes.insert(uid, new);
        attention
    }

    /// Records that the object with this uid is gone. Its dependents need a look (their owner
    /// may be gone for good), and so do its owners in foreground deletion (it may have been
    /// the last dependent they waited for).
    pub fn remove(&mut self, uid: &str) -> Attention {
        let mut attention = Attention::default();
        let Some(node) = self.nodes.remove(uid) else { return attention };
        for r in &node.owners {
            self.unlink(uid, &r.uid);
            if self.nodes.get(&r.uid).is_some_and(|o| o.deleting_dependents) {
                attention.attempt_to_delete.insert(r.uid.clone());
            }
        }
        // The dependents keep their edges to the uid: they still reference it.
        attention.attempt_to_delete.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        attention
    }

    /// After a relist of kind `resource`: removes the objects of that kind not in `listed`.
    pub fn retain_listed(&mut self, resource: &ResourceType, listed: &HashSet<Uid>) -> Attention {
        let mut attention = Attention::default();
        for uid in self.uids_of(resource) {
            if !listed.contains(&uid) {
                attention.merge(self.remove(&uid));
            }
        }
        attention
    }

    fn link(&mut self, dependent: &str, owner: &str) {
        self.dependents.entry(owner.to_string()).or_default().insert(dependent.to_string());
    }

    fn unlink(&mut self, dependent: &str, owner: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    /// A reference `dependent` gained: it needs a look when the owner is unseen (it may not
    /// exist), seen elsewhere (the reference is wrong, so the owner is absent where it
    /// points), or in foreground deletion (which waits for this new dependent too).
    fn check_new_reference(&self, dependent: &Node, r: &OwnerReference, attention: &mut Attention) {
        let needs_look = match self.nodes.get(&r.uid) {
            None => true,
            Some(owner) => {
                owner.deleting_dependents
                    || !owner.identity.is_named_by(r, dependent.identity.namespace.as_deref())
            }
        };
        if needs_look {
            attention.attempt_to_delete.insert(dependent.identity.uid.clone());
        }
    }

    /// An owner seen for the first time: dependents that reference it by other coordinates
    /// (another namespace, kind or name) point at something absent and need a look.
    fn check_dependents_of_new_owner(&self, owner: &Identity, attention: &mut Attention) {
        for dependent in self.dependents(&owner.uid) {
            let mismatch = dependent
                .reference_to(&owner.uid)
                .is_some_and(|r| !owner.is_named_by(r, dependent.identity.namespace.as_deref()));
            if mismatch {
                attention.attempt_to_delete.insert(dependent.identity.uid.clone());
            }
        }
    }

    /// Follows the changes of a seen object's references.
    fn update_references(&mut self, old: &Node, new: &Node, attention: &mut Attention) {
        let uid = &new.identity.uid;
        for before in &old.owners {
            match new.reference_to(&before.uid) {
                None => {
                    self.unlink(uid, &before.uid);
                    if blocks_owner(before) {
                        self.wake_owner_in_foreground(&before.uid, attention);
                    }
                }
                Some(after) if after != before => {
                    if blocks_owner(before) && !blocks_owner(after) {
                        self.wake_owner_in_foreground(&before.uid, attention);
                    }
                    let moved = (&before.api_version, &before.kind, &before.name)
                        != (&after.api_version, &after.kind, &after.name);
                    if moved {
                        self.check_new_reference(new, after, attention);
                    }
                }
                Some(_) => {}
            }
        }
        for r in &new.owners {
            if old.reference_to(&r.uid).is_none() {
                self.link(uid, &r.uid);
                self.check_new_reference(new, r, attention);
            }
        }
    }

    /// An owner in foreground deletion lost a blocking dependent: it may be able to finish.
    fn wake_owner_in_foreground(&self, owner: &str, attention: &mut Attention) {
        if self.nodes.get(owner).is_some_and(|o| o.deleting_dependents) {
            attention.attempt_to_delete.insert(owner.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
