//! [`ManagedFields`]: `metadata.managedFields` decoded into one [`FieldSet`] per manager.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};

use super::path::PathElement;
use super::set::FieldSet;
use super::{ApplyError, Result};

/// The only `fieldsType` Kubernetes defines.
const FIELDS_V1: &str = "FieldsV1";

/// How a manager came to own its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A server-side apply: the manager's set is exactly its last applied configuration.
    Apply,
    /// Any other write (create, update, patch): the manager owns what it changed.
    Update,
}

impl Operation {
    /// The name in a `managedFields` entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set of fields: a manager's name, the kind of operation, and the subresource it
/// wrote through (`""` for the main resource).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    /// The field manager (`kubectl`, `kube-controller-manager`, ...).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: Operation,
    /// `""`, or the subresource (`status`, `scale`).
    pub subresource: String,
}

impl ManagerId {
    /// A manager writing through the main resource.
    pub fn new(manager: impl Into<String>, operation: Operation) -> Self {
        ManagerId { manager: manager.into(), operation, subresource: String::new() }
    }
}

impl fmt::Display for ManagerId {
    /// `"kubectl" (Apply)`, `"kubelet" (Update, subresource "status")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({}", self.manager, self.operation.as_str())?;
        if !self.subresource.is_empty() {
            write!(f, ", subresource {:?}", self.subresource)?;
        }
        f.write_str(")")
    }
}

/// One manager's fields, with the API version it wrote them at and when its set last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSet {
    /// The API version (`apps/v1`) the paths refer to.
    pub api_version: String,
    /// When the set last changed.
    pub time: Option<Time>,
    /// The fields.
    pub fields: FieldSet,
}

/// `metadata.managedFields` as field sets, keyed by [`ManagerId`].
///
/// ```
/// use flotilla_core::apply::{ManagedFields, ManagerId, Operation, Path};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
/// use serde_json::json;
///
/// let entries = vec![ManagedFieldsEntry {
///     manager: Some("kubectl".into()),
///     operation: Some("Apply".into()),
///     api_version: Some("apps/v1".into()),
///     fields_type: Some("FieldsV1".into()),
///     fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
///     ..Default::default()
/// }];
/// let managed = ManagedFields::decode(&entries)?;
/// let owners = managed.owners(Path::fields(["spec", "replicas"]).elements());
/// assert_eq!(owners, [&ManagerId::new("kubectl", Operation::Apply)]);
/// assert_eq!(managed.encode(), entries);
/// # Ok::<(), flotilla_core::apply::ApplyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields {
    sets: BTreeMap<ManagerId, ManagedSet>,
}

impl ManagedFields {
    /// No managers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes an object's `managedFields`. Like Kubernetes, it refuses an entry whose
    /// operation is not `Apply` or `Update`, whose `fieldsType` is not `FieldsV1`, whose
    /// `fieldsV1` is malformed, or that repeats a manager; an entry without `fieldsV1` owns
    /// nothing.
    pub fn decode(entries: &[ManagedFieldsEntry]) -> Result<Self> {
        let mut sets = BTreeMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let manager = entry.manager.clone().unwrap_or_default();
            let bad =
                |reason: String| ApplyError::ManagedFieldsEntry { index, manager: manager.clone(), reason };
            let operation = match entry.operation.as_deref() {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                other => return Err(bad(format!("operation must be Apply or Update, not {other:?}"))),
            };
            let fields = match &entry.fields_v1 {
                None => FieldSet::new(),
                Some(FieldsV1(fields)) => {
                    if entry.fields_type.as_deref() != Some(FIELDS_V1) {
                        return Err(bad(format!("fieldsType must be FieldsV1, not {:?}", entry.fields_type)));
                    }
                    FieldSet::from_fields_v1(fields).map_err(|source| ApplyError::EntryFields {
                        index,
                        manager: manager.clone(),
                        source: Box::new(source),
                    })?
                }
            };
            let id = ManagerId {
                manager: manager.clone(),
                operation,
                subresource: entry.subresource.clone().unwrap_or_default(),
            };
            let set = ManagedSet {
                api_version: entry.api_version.clone().unwrap_or_default(),
                time: entry.time.clone(),
                fields,
            };
            if sets.insert(id.clone(), set).is_some() {
                return Err(ApplyError::DuplicateManager(id));
            }
        }
        Ok(ManagedFields { sets })
    }

    /// The entries of `managedFields`, without managers that own nothing, in Kubernetes'
    /// order: `Apply` entries before `Update` ones, then by time (whole seconds, an entry
    /// without a time first), manager, API version and subresource.
    pub fn encode(&self) -> Vec<ManagedFieldsEntry> {
        let mut entries: Vec<ManagedFieldsEntry> = self
            .sets
            .iter()
            .filter(|(_, set)| !set.fields.is_empty())
            .map(|(id, set)| ManagedFieldsEntry {
                api_version: Some(set.api_version.clone()),
                fields_type: Some(FIELDS_V1.to_owned()),
                fields_v1: Some(FieldsV1(set.fields.to_fields_v1())),
                manager: Some(id.manager.clone()),
                operation: Some(id.operation.as_str().to_owned()),
                subresource: (!id.subresource.is_empty()).then(|| id.subresource.clone()),
                time: set.time.clone(),
            })
            .collect();
        entries.sort_by(|p, q| {
            let seconds = |e: &ManagedFieldsEntry| e.time.as_ref().map_or(0, |t| t.0.as_second());
            p.operation
                .cmp(&q.operation)
                .then_with(|| seconds(p).cmp(&seconds(q)))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
        entries
    }

    /// One manager's set.
    pub fn get(&self, id: &ManagerId) -> Option<&ManagedSet> {
        self.sets.get(id)
    }

    /// One manager's fields, or `None` if it owns nothing.
    pub fn fields(&self, id: &ManagerId) -> Option<&FieldSet> {
        self.sets.get(id).map(|set| &set.fields)
    }

    /// Sets one manager's set, replacing what it had.
    pub fn insert(&mut self, id: ManagerId, set: ManagedSet) {
        self.sets.insert(id, set);
    }

    /// Removes one manager's set.
    pub fn remove(&mut self, id: &ManagerId) -> Option<ManagedSet> {
        self.sets.remove(id)
    }

    /// Every manager and its set, by manager.
    pub fn iter(&self) -> impl Iterator<Item = (&ManagerId, &ManagedSet)> {
        self.sets.iter()
    }

    /// The managers that own `path`.
    pub fn owners(&self, path: &[PathElement]) -> Vec<&ManagerId> {
        self.sets.iter().filter(|(_, set)| set.fields.contains(path)).map(|(id, _)| id).collect()
    }

    /// How many managers there are.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether there are no managers.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Every set, to change in place.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&ManagerId, &mut ManagedSet)> {
        self.sets.iter_mut()
    }

    /// Drops the managers that own nothing.
    pub(crate) fn remove_empty(&mut self) {
        self.sets.retain(|_, set| !set.fields.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(manager: &str, operation: &str, second: i64, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            time: Some(Time(jiff::Timestamp::from_second(second).expect("in range"))),
            subresource: None,
        }
    }

    #[test]
    fn encodes_apply_entries_first_then_by_time_and_drops_empty_sets() {
        let entries = vec![
            entry("b", "Update", 10, json!({"f:data": {"f:x": {}}})),
            entry("z", "Apply", 20, json!({"f:data": {"f:y": {}}})),
            entry("a", "Update", 10, json!({"f:data": {"f:z": {}}})),
            entry("c", "Update", 5, json!({})),
            entry("y", "Apply", 1, json!({"f:data": {"f:w": {}}})),
        ];
        let managed = ManagedFields::decode(&entries).expect("decodes");
        assert_eq!(managed.len(), 5);
        let order: Vec<_> = managed.encode().into_iter().filter_map(|e| e.manager).collect();
        assert_eq!(order, ["y", "z", "a", "b"]);
    }

    #[test]
    fn keeps_subresources_apart_and_round_trips() {
        let mut status = entry("kubelet", "Update", 3, json!({"f:status": {"f:phase": {}}}));
        status.subresource = Some("status".into());
        let entries = vec![entry("kubelet", "Update", 3, json!({"f:spec": {"f:nodeName": {}}})), status];
        let managed = ManagedFields::decode(&entries).expect("decodes");
        assert_eq!(managed.len(), 2);
        assert_eq!(managed.encode(), entries);
    }

    #[test]
    fn refuses_malformed_entries() {
        let err = |e: ManagedFieldsEntry| ManagedFields::decode(&[e]).expect_err("malformed").to_string();
        let mut op = entry("m", "Patch", 0, json!({}));
        assert_eq!(
            err(op.clone()),
            r#"invalid managedFields entry 0 (manager "m"): operation must be Apply or Update, not Some("Patch")"#
        );
        op.operation = Some("Apply".into());
        op.fields_type = Some("FieldsV2".into());
        assert!(err(op).contains(r#"fieldsType must be FieldsV1, not Some("FieldsV2")"#));
        let bad = entry("m", "Apply", 0, json!({"f:spec": {"i:x": {}}}));
        let bad = ManagedFields::decode(&[bad]).expect_err("malformed");
        assert_eq!(bad.to_string(), r#"managedFields entry 0 (manager "m") has an invalid fieldsV1"#);
        let source = std::error::Error::source(&bad).map(ToString::to_string).unwrap_or_default();
        assert!(source.starts_with("invalid fieldsV1 at .spec: index key"), "{source}");
        let twice = entry("m", "Apply", 0, json!({}));
        let dup = ManagedFields::decode(&[twice.clone(), twice]).expect_err("duplicate");
        assert_eq!(dup.to_string(), r#"duplicate managedFields entries for "m" (Apply)"#);
    }
}
