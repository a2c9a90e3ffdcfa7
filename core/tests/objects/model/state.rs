//! The model: what the registry must store for each object, the store revision, and the
//! history of committed changes, with the outcome each step must have under Kubernetes' rules.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::object::DynamicObject;
use serde_json::{Value, json};

use super::ops::{FINALIZERS, Kind, LABEL_KEYS, NAMES, NAMESPACES, Op, Rv, Step};

/// Labels as compared: an absent map and an empty one are the same (Kubernetes omits both).
pub(crate) type Labels = BTreeMap<String, String>;

/// What the registry must preserve and compute for one object; read back from every list and
/// watch event and compared whole.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snap {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) resource_version: i64,
    pub(crate) generation: i64,
    pub(crate) labels: Labels,
    /// The kind's spec field (ConfigMap `data.v`, the pod's image, the deployment's replicas).
    pub(crate) value: Value,
    pub(crate) finalizers: Vec<String>,
    pub(crate) deleting: bool,
    /// `status` as stored (`null` when absent).
    pub(crate) status: Value,
}

impl Snap {
    /// The comparable part of a registry object.
    pub(crate) fn of(kind: Kind, o: &DynamicObject) -> Snap {
        Snap {
            namespace: o.namespace().to_string(),
            name: o.name().to_string(),
            uid: o.uid().to_string(),
            resource_version: o.resource_version().parse().unwrap_or(-1),
            generation: o.metadata.generation.unwrap_or(0),
            labels: o.metadata.labels.clone().unwrap_or_default(),
            value: o.to_value().pointer(kind.value_path()).cloned().unwrap_or(Value::Null),
            finalizers: o.finalizers().to_vec(),
            deleting: o.is_deleting(),
            status: o.data.get("status").cloned().unwrap_or(Value::Null),
        }
    }
}

/// The outcome of one registry call, as compared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Success: the resourceVersion of the object returned, and for deletes whether it is gone.
    Ok { rv: i64, gone: Option<bool> },
    /// Failure: the Kubernetes reason and HTTP code.
    Err { reason: &'static str, code: u16 },
}

const NOT_FOUND: Outcome = Outcome::Err { reason: "NotFound", code: 404 };
const ALREADY_EXISTS: Outcome = Outcome::Err { reason: "AlreadyExists", code: 409 };
const CONFLICT: Outcome = Outcome::Err { reason: "Conflict", code: 409 };
const INVALID: Outcome = Outcome::Err { reason: "Invalid", code: 422 };

/// One committed change of a watched kind.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) revision: i64,
    pub(crate) kind: Kind,
    pub(crate) before: Option<Snap>,
    pub(crate) after: Option<Snap>,
}

/// A watch event, as compared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ev {
    pub(crate) kind: &'static str,
    pub(crate) object: Snap,
}

/// Which objects a watch selects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selection {
    pub(crate) namespace: Option<&'static str>,
    /// Only objects labelled `app=a`.
    pub(crate) app_a: bool,
}

impl Selection {
    fn matches(&self, s: &Snap) -> bool {
        self.namespace.is_none_or(|ns| s.namespace == ns)
            && (!self.app_a || s.labels.get("app").map(String::as_str) == Some("a"))
    }
}

type Key = (Kind, &'static str, &'static str);

/// The registry as it should be.
#[derive(Debug)]
pub(crate) struct Model {
    /// The store revision: every committed write adds one.
    pub(crate) revision: i64,
    namespaces: BTreeSet<&'static str>,
    /// In key order within a kind (namespace, then name), as lists and watches deliver them.
    objects: BTreeMap<Key, Snap>,
    history: Vec<Change>,
}

impl Model {
    /// A model of a store at `revision` holding namespace `ns-a` and nothing else.
    pub(crate) fn new(revision: i64) -> Model {
        Model { revision, namespaces: [NAMESPACES[0]].into(), objects: BTreeMap::new(), history: Vec::new() }
    }

    fn key(s: &Step) -> Key {
        (s.kind, NAMESPACES[s.ns], NAMES[s.name])
    }

    /// `s` with a concrete address: the object `s.pick` names, if any exists.
    pub(crate) fn resolve(&self, s: &Step) -> Step {
        let mut s = s.clone();
        let Some(n) = s.pick.take() else { return s };
        let status = matches!(s.op, Op::Status { .. });
        let keys: Vec<&Key> = self.objects.keys().filter(|k| !status || k.0 == Kind::Deployment).collect();
        if let Some((kind, ns, name)) = keys.get(n % keys.len().max(1)) {
            s.kind = *kind;
            s.ns = NAMESPACES.iter().position(|x| x == ns).unwrap_or(0);
            s.name = NAMES.iter().position(|x| x == name).unwrap_or(0);
        }
        s
    }

    /// The stored object a step addresses.
    pub(crate) fn get(&self, s: &Step) -> Option<&Snap> {
        self.objects.get(&Self::key(s))
    }

    /// The resourceVersion a request of `s` carries for `rv`.
    pub(crate) fn request_rv(&self, s: &Step, rv: Rv) -> Option<String> {
        let current = self.get(s).map_or(1, |o| o.resource_version);
        match rv {
            Rv::Current => Some(current.to_string()),
            Rv::Stale => Some((current - 1).to_string()),
            Rv::Unset => None,
        }
    }

    /// Every object of `kind`, in key order.
    pub(crate) fn list(&self, kind: Kind) -> Vec<Snap> {
        self.objects.iter().filter(|((k, _, _), _)| *k == kind).map(|(_, s)| s.clone()).collect()
    }

    /// Applies `s`, returning the outcome the registry must report. `uid` is the one the
    /// registry gave a created object (uids are random).
    pub(crate) fn apply(&mut self, s: &Step, uid: &str) -> Outcome {
        let key = Self::key(s);
        let old = self.objects.get(&key).cloned();
        let stale = |rv: &Rv| matches!(rv, Rv::Stale);
        match (&s.op, old) {
            (Op::CreateNamespace, _) => {
                if !self.namespaces.insert(NAMESPACES[s.ns]) {
                    return ALREADY_EXISTS;
                }
                self.revision += 1;
                Outcome::Ok { rv: self.revision, gone: None }
            }
            (Op::Create { .. }, _) if !self.namespaces.contains(key.1) => NOT_FOUND,
            (Op::Create { .. }, Some(_)) => ALREADY_EXISTS,
            (Op::Create { labels, value, finalizers }, None) => {
                let new = Snap {
                    namespace: key.1.into(),
                    name: key.2.into(),
                    uid: uid.into(),
                    resource_version: 0,
                    generation: 1,
                    labels: labels.clone(),
                    value: s.kind.render(*value),
                    finalizers: finalizer_names(finalizers),
                    deleting: false,
                    status: s.kind.initial_status(),
                };
                Outcome::Ok { rv: self.commit(key, None, Some(new)), gone: None }
            }
            (_, None) => NOT_FOUND,
            (Op::Update { rv, .. } | Op::Status { rv, .. } | Op::MergeLabel { rv, .. }, Some(_))
                if stale(rv) =>
            {
                CONFLICT
            }
            (Op::Delete, Some(old)) => self.delete(key, old),
            (op, Some(old)) => {
                let mut new = old.clone();
                match op {
                    Op::Update { labels, value, finalizers, .. } => {
                        new.labels = labels.clone();
                        new.value = s.kind.render(*value);
                        new.finalizers = finalizer_names(finalizers);
                    }
                    Op::Status { replicas, .. } => new.status = json!({"replicas": replicas}),
                    Op::MergeLabel { key, value, .. } => {
                        let k = LABEL_KEYS[*key].to_string();
                        match value {
                            Some(v) => new.labels.insert(k, v.to_string()),
                            None => new.labels.remove(&k),
                        };
                    }
                    Op::MergeValue { value } | Op::JsonValue { value } | Op::StrategicValue { value } => {
                        new.value = s.kind.render(*value)
                    }
                    Op::MergeFinalizers { finalizers } => new.finalizers = finalizer_names(finalizers),
                    Op::StrategicAddFinalizer(f) => {
                        // Kubernetes' `mergeSortedSlice`: a value only the patch has goes
                        // before the live values it cannot be ordered against.
                        if !new.finalizers.iter().any(|x| x == FINALIZERS[*f]) {
                            new.finalizers.insert(0, FINALIZERS[*f].into());
                        }
                    }
                    Op::StrategicRemoveFinalizer(f) => new.finalizers.retain(|x| x != FINALIZERS[*f]),
                    Op::CreateNamespace | Op::Create { .. } | Op::Delete => unreachable!("handled above"),
                }
                self.write(key, old, new)
            }
        }
    }

    /// An update of `old` to `new`, with Kubernetes' rules.
    fn write(&mut self, key: Key, old: Snap, mut new: Snap) -> Outcome {
        if old.deleting && new.finalizers.iter().any(|f| !old.finalizers.contains(f)) {
            return INVALID;
        }
        if old.deleting && new.finalizers.is_empty() {
            // The last finalizer of an object being deleted: it goes, with no intermediate write.
            return Outcome::Ok { rv: self.commit(key, Some(old), None), gone: None };
        }
        if new.value != old.value {
            new.generation += 1;
        }
        if new == old {
            // Kubernetes compares the encoded objects and writes nothing when they are equal.
            return Outcome::Ok { rv: old.resource_version, gone: None };
        }
        Outcome::Ok { rv: self.commit(key, Some(old), Some(new)), gone: None }
    }

    fn delete(&mut self, key: Key, old: Snap) -> Outcome {
        if old.finalizers.is_empty() {
            let rv = self.commit(key, Some(old), None);
            // The deleted object comes back at the revision of its deletion (etcd3 store).
            return Outcome::Ok { rv, gone: Some(true) };
        }
        if old.deleting {
            return Outcome::Ok { rv: old.resource_version, gone: Some(false) };
        }
        let mut new = old.clone();
        new.deleting = true;
        // Kubernetes bumps the generation when deletion starts (`markAsDeleting`), so that
        // controllers comparing observedGeneration see it.
        new.generation += 1;
        Outcome::Ok { rv: self.commit(key, Some(old), Some(new)), gone: Some(false) }
    }

    /// Records one write; returns its revision.
    fn commit(&mut self, key: Key, before: Option<Snap>, after: Option<Snap>) -> i64 {
        self.revision += 1;
        let after = after.map(|mut a| {
            a.resource_version = self.revision;
            a
        });
        match &after {
            Some(a) => self.objects.insert(key, a.clone()),
            None => self.objects.remove(&key),
        };
        self.history.push(Change { revision: self.revision, kind: key.0, before, after });
        self.revision
    }

    /// What a watch of `kind` over `sel` from `"0"` may deliver: the objects at any revision
    /// from `first` on, each followed by the changes after it.
    pub(crate) fn expected_from_any_state(&self, kind: Kind, sel: Selection, first: i64) -> Vec<Vec<Ev>> {
        let mut state = BTreeMap::new();
        let mut changes = self.history.iter().filter(|c| c.kind == kind).peekable();
        let mut out = Vec::new();
        for at in first..=self.revision {
            while let Some(c) = changes.next_if(|c| c.revision <= at) {
                let s = c.before.as_ref().or(c.after.as_ref()).expect("a change has a side");
                let key = (s.namespace.clone(), s.name.clone());
                match &c.after {
                    Some(a) => state.insert(key, a.clone()),
                    None => state.remove(&key),
                };
            }
            let initial =
                state.values().filter(|s| sel.matches(s)).map(|s| Ev { kind: "ADDED", object: s.clone() });
            out.push(initial.chain(self.expected_events(kind, sel, Some(at))).collect());
        }
        out
    }

    /// What a watch of `kind` over `sel` delivers: from `from`, every later change in order
    /// with Kubernetes' selector transitions; without it, an ADDED per object now.
    pub(crate) fn expected_events(&self, kind: Kind, sel: Selection, from: Option<i64>) -> Vec<Ev> {
        let ev = |kind, object| Ev { kind, object };
        let Some(from) = from else {
            return self.list(kind).into_iter().filter(|s| sel.matches(s)).map(|s| ev("ADDED", s)).collect();
        };
        let mut out = Vec::new();
        for c in self.history.iter().filter(|c| c.kind == kind && c.revision > from) {
            let was = c.before.as_ref().filter(|s| sel.matches(s));
            let is = c.after.as_ref().filter(|s| sel.matches(s));
            match (was, is) {
                (None, Some(new)) => out.push(ev("ADDED", new.clone())),
                (Some(_), Some(new)) => out.push(ev("MODIFIED", new.clone())),
                // Deleted, or no longer selected: the last state the watcher saw, at the
                // revision of the change (etcd3 watcher and cacher alike).
                (Some(old), None) => {
                    let mut last = old.clone();
                    last.resource_version = c.revision;
                    out.push(ev("DELETED", last));
                }
                (None, None) => {}
            }
        }
        out
    }
}

fn finalizer_names(idx: &[usize]) -> Vec<String> {
    idx.iter().map(|i| FINALIZERS[*i].to_string()).collect()
}
