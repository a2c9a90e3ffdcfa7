//! The schema a strategic merge patch follows: per field, how its list merges.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// How a strategic merge patch treats a list-valued field: the `patchStrategy` and
/// `patchMergeKey` struct tags of Kubernetes' Go types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the object's list, as in a merge patch. Fields without a
    /// `patchStrategy` tag, and every field the schema does not know, behave like this.
    #[default]
    Atomic,
    /// `patchStrategy: merge` with a `patchMergeKey`: elements are objects, matched by the
    /// value of the named field; matched elements merge, new ones are added.
    MergeByKey(Cow<'static, str>),
    /// `patchStrategy: merge` on a list of primitives (`finalizers`): the list is a set and the
    /// patch's values are added to it.
    Set,
}

/// The strategic-merge schema of one value: how it merges if it is a list, whether a patch
/// may clear its other keys (`retainKeys`), and the schemas of its fields if it is an object.
///
/// Elements of a list share the schema of the list: the node of `containers` says "merge by
/// `name`" and also holds the fields of a container. A field the schema does not name merges
/// like a JSON merge patch (objects recursively, lists replaced), which is what Kubernetes does
/// for objects it has no Go struct for.
///
/// Schemas are built with a small builder:
///
/// ```
/// use flotilla_core::patch::{ListStrategy, MergeSchema};
///
/// let container = MergeSchema::new()
///     .with("ports", MergeSchema::new().merged_by("containerPort"))
///     .with("env", MergeSchema::new().merged_by("name"));
/// let pod_spec = MergeSchema::new().with("containers", container.merged_by("name"));
///
/// let containers = pod_spec.field("containers").expect("declared above");
/// assert_eq!(containers.list_strategy(), &ListStrategy::MergeByKey("name".into()));
/// assert_eq!(containers.field("env").and_then(MergeSchema::merge_key), Some("name"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSchema {
    list: ListStrategy,
    retain_keys: bool,
    fields: BTreeMap<Cow<'static, str>, MergeSchema>,
}

impl MergeSchema {
    /// A schema with no field information: an atomic list, or an object whose fields all merge
    /// like a JSON merge patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A primitive list merged as a set (`patchStrategy: merge` without a merge key).
    pub fn set() -> Self {
        Self { list: ListStrategy::Set, ..Self::default() }
    }

    /// Adds (or replaces) the schema of field `name`.
    #[must_use]
    pub fn with(mut self, name: impl Into<Cow<'static, str>>, schema: MergeSchema) -> Self {
        self.fields.insert(name.into(), schema);
        self
    }

    /// Makes this a list of objects merged by the value of field `key`
    /// (`patchStrategy: merge`, `patchMergeKey: key`); its fields describe each element.
    #[must_use]
    pub fn merged_by(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.list = ListStrategy::MergeByKey(key.into());
        self
    }

    /// Marks the value (for a list: each element) as a union whose unset members a patch
    /// clears (`patchStrategy: retainKeys`).
    #[must_use]
    pub fn retaining_keys(mut self) -> Self {
        self.retain_keys = true;
        self
    }

    /// The schema of field `name` of this object (or of each element, for a list).
    pub fn field(&self, name: &str) -> Option<&MergeSchema> {
        self.fields.get(name)
    }

    /// The schema at a path of field names, `["spec", "template", "spec"]`.
    pub fn lookup(&self, path: &[&str]) -> Option<&MergeSchema> {
        path.iter().try_fold(self, |schema, name| schema.field(name))
    }

    /// How this value merges if it is a list.
    pub fn list_strategy(&self) -> &ListStrategy {
        &self.list
    }

    /// The merge key, for a list merged by key.
    pub fn merge_key(&self) -> Option<&str> {
        match &self.list {
            ListStrategy::MergeByKey(key) => Some(key),
            ListStrategy::Atomic | ListStrategy::Set => None,
        }
    }

    /// Whether the value (for a list: each element) has the `retainKeys` strategy.
    ///
    /// Applying a patch does not depend on this: like Kubernetes, the merge clears keys only
    /// where the patch carries a `$retainKeys` directive. Clients that compute patches (apply)
    /// read it to know where to send one.
    pub fn retain_keys(&self) -> bool {
        self.retain_keys
    }

    /// The names of the fields this schema describes, in order.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(|name| name.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_records_strategies_and_nested_fields() {
        let schema = MergeSchema::new()
            .with("finalizers", MergeSchema::set())
            .with("volumes", MergeSchema::new().merged_by("name").retaining_keys())
            .with("spec", MergeSchema::new().with("strategy", MergeSchema::new().retaining_keys()));

        assert_eq!(schema.field("finalizers").map(MergeSchema::list_strategy), Some(&ListStrategy::Set));
        let volumes = schema.field("volumes").expect("declared");
        assert_eq!(volumes.merge_key(), Some("name"));
        assert!(volumes.retain_keys());
        assert!(schema.lookup(&["spec", "strategy"]).is_some_and(MergeSchema::retain_keys));
        assert!(schema.lookup(&["spec", "missing"]).is_none());
        assert_eq!(schema.field_names().collect::<Vec<_>>(), ["finalizers", "spec", "volumes"]);
        assert_eq!(MergeSchema::new().list_strategy(), &ListStrategy::Atomic);
    }
}
