//! The two ways a write changes ownership: [`update`] and [`apply`].

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::managed::{ManagedFields, ManagedSet, ManagerId, Operation};
use super::object::{compare, merge, prune};
use super::path::Path;
use super::set::FieldSet;
use crate::patch::MergeSchema;

/// Records an ordinary write (create, update, patch) by `manager`: the fields it added or
/// changed between `old` and `new` become its own (operation `Update`), and stop being anyone
/// else's; fields it removed stop being anyone's. An update never conflicts.
///
/// For a create, `old` is `Value::Null`. The manager's entry takes `new`'s `apiVersion`, and
/// `now` as its time when its set changed.
pub fn update(
    managed: &mut ManagedFields,
    manager: &str,
    old: &Value,
    new: &Value,
    schema: Option<&MergeSchema>,
    now: Time,
) {
    let id = ManagerId::new(manager, Operation::Update);
    let changes = compare(old, new, schema);
    let changed = changes.added.union(&changes.modified);
    for (other, set) in managed.iter_mut() {
        if *other != id {
            set.fields = set.fields.difference(&changed).difference(&changes.removed);
        }
    }
    let previous = managed.fields(&id).cloned().unwrap_or_default();
    let fields = previous.difference(&changes.removed).union(&changed);
    record(managed, id, fields, api_version(new), now);
    managed.remove_empty();
}

/// Server-side applies `config` for `manager` to `live`, and returns the new object.
///
/// The result is `live` with `config` merged in (objects field by field, keyed lists item by
/// item, set lists as sets, everything else replaced), minus the fields `manager` applied
/// last time, no longer applies and no other manager owns. `manager`'s `Apply` set becomes
/// exactly the fields of `config` ([`FieldSet::from_object`]).
///
/// A field that the apply changes (or adds) and another manager owns is a conflict: without
/// `force` the apply fails with every conflict and `managed` is left as it was; with `force`
/// the other managers lose those fields. Applying the value a field already has is not a
/// conflict: the field is then shared.
pub fn apply(
    managed: &mut ManagedFields,
    manager: &str,
    live: &Value,
    config: &Value,
    schema: Option<&MergeSchema>,
    force: bool,
    now: Time,
) -> Result<Value, Conflicts> {
    let id = ManagerId::new(manager, Operation::Apply);
    let applied = FieldSet::from_object(config, schema);
    let previous = managed.fields(&id).cloned().unwrap_or_default();

    let mut owned = applied.clone();
    for (_, set) in managed.iter().filter(|(other, _)| **other != id) {
        owned.union_with(&set.fields);
    }
    let mut result = merge(live, config, schema);
    prune(&mut result, &previous.difference(&applied), &owned);

    let changes = compare(live, &result, schema);
    let changed = changes.added.union(&changes.modified);
    let mut conflicts = Vec::new();
    for (other, set) in managed.iter().filter(|(other, _)| **other != id) {
        for path in set.fields.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: other.clone(), api_version: set.api_version.clone(), path });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }

    for (other, set) in managed.iter_mut() {
        if *other != id {
            set.fields = set.fields.difference(&changed).difference(&changes.removed);
        }
    }
    record(managed, id, applied, api_version(config), now);
    managed.remove_empty();
    Ok(result)
}

/// Sets `id`'s fields, with time `now` if they changed (or are new).
fn record(managed: &mut ManagedFields, id: ManagerId, fields: FieldSet, api_version: String, now: Time) {
    let time = match managed.get(&id) {
        Some(set) if set.fields == fields => set.time.clone().or(Some(now)),
        _ => Some(now),
    };
    managed.insert(id, ManagedSet { api_version, time, fields });
}

/// An object's `apiVersion`, or `""`.
fn api_version(object: &Value) -> String {
    object.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager that owns the field.
    pub manager: ManagerId,
    /// The API version of that manager's entry.
    pub api_version: String,
    /// The field.
    pub path: Path,
}

impl fmt::Display for Conflict {
    /// `conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict with {}: {}", self.owner(), self.path)
    }
}

impl Conflict {
    /// The owner as Kubernetes prints it: its name, its subresource, and for an update the
    /// API version it wrote at.
    fn owner(&self) -> String {
        let mut out = format!("{:?}", self.manager.manager);
        if !self.manager.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.manager.subresource));
        }
        if self.manager.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// The conflicts that stopped an apply, by manager and path. Its message is Kubernetes'
/// (`Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`),
/// and each conflict becomes a `FieldManagerConflict` cause of the 409 `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "Apply failed with 1 conflict: {one}"),
            all => {
                write!(f, "Apply failed with {} conflicts: ", all.len())?;
                let mut by_owner: Vec<(String, Vec<&Path>)> = Vec::new();
                for conflict in all {
                    let owner = conflict.owner();
                    match by_owner.iter_mut().find(|(o, _)| *o == owner) {
                        Some((_, paths)) => paths.push(&conflict.path),
                        None => by_owner.push((owner, vec![&conflict.path])),
                    }
                }
                by_owner.sort_by(|a, b| a.0.cmp(&b.0));
                for (i, (owner, paths)) in by_owner.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "conflicts with {owner}:")?;
                    for path in paths {
                        write!(f, "\n- {path}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Conflicts {}
