//! Walking objects with a schema: the fields an object sets ([`FieldSet::from_object`]), what
//! changed between two versions ([`compare`]), merging an apply configuration ([`merge`]) and
//! removing fields no one applies any more ([`prune`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::path::{Path, PathElement};
use super::set::FieldSet;
use crate::patch::{ListStrategy, MergeSchema};

/// Paths no manager owns: those Kubernetes strips from managed fields (identity, bookkeeping
/// and `managedFields` itself), and `status`, which the main resource does not write.
static IGNORED: LazyLock<FieldSet> = LazyLock::new(|| {
    let meta = ["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName"]
        .into_iter()
        .chain(["generation", "managedFields", "resourceVersion"])
        .map(|field| Path::fields(["metadata", field]));
    meta.chain([Path::fields(["apiVersion"]), Path::fields(["kind"]), Path::fields(["status"])]).collect()
});

impl FieldSet {
    /// The fields `object` (a whole object, or an apply configuration) specifies, as
    /// structured-merge-diff counts them:
    ///
    /// - a field holding a scalar, `null`, `{}` or an atomic list is a member; a non-empty
    ///   object is not, but its fields are considered in turn;
    /// - each item of a list merged by key is a member (`[name="c"]`), and so are its fields;
    /// - each item of a set list is a member (`[="a"]`);
    /// - a list without a strategy in `schema` (or with no schema) is atomic: the list field
    ///   is the member.
    ///
    /// `apiVersion`, `kind`, `status` and the metadata Kubernetes manages itself (`name`,
    /// `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
    /// `managedFields`, ...) are left out.
    ///
    /// ```
    /// use flotilla_core::apply::FieldSet;
    /// use flotilla_core::patch::builtin_schema;
    /// use serde_json::json;
    ///
    /// let pod = json!({
    ///     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}},
    ///     "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    /// });
    /// let set = FieldSet::from_object(&pod, builtin_schema("", "v1", "Pod"));
    /// assert_eq!(
    ///     set.to_string(),
    ///     ".metadata.labels.app\n.spec.containers[name=\"c\"]\n\
    ///      .spec.containers[name=\"c\"].image\n.spec.containers[name=\"c\"].name",
    /// );
    /// ```
    pub fn from_object(object: &Value, schema: Option<&MergeSchema>) -> FieldSet {
        let mut set = FieldSet::new();
        if let Value::Object(fields) = object {
            members_of_map(fields, schema, &mut Vec::new(), &mut set);
        }
        set.recursive_difference(&IGNORED)
    }
}

fn members_of_map(
    fields: &Map<String, Value>,
    schema: Option<&MergeSchema>,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) {
    for (name, value) in fields {
        path.push(PathElement::Field(name.clone()));
        members_of(value, schema.and_then(|s| s.field(name)), path, set);
        path.pop();
    }
}

fn members_of(value: &Value, schema: Option<&MergeSchema>, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    match value {
        Value::Object(fields) if !fields.is_empty() => members_of_map(fields, schema, path, set),
        Value::Array(items) => match list_items(items, schema) {
            Some(items) => {
                for (element, item) in items {
                    path.push(element);
                    if let Value::Object(fields) = item {
                        members_of_map(fields, schema, path, set);
                    }
                    set.insert(path);
                    path.pop();
                }
            }
            None => set.insert(path),
        },
        _ => set.insert(path),
    }
}

/// The items of a granular list by their path element, or `None` when the list is atomic: no
/// strategy, or (for a keyed list) an item without its key or two items with the same key.
fn list_items<'v>(items: &'v [Value], schema: Option<&MergeSchema>) -> Option<Vec<(PathElement, &'v Value)>> {
    let strategy = schema.map(MergeSchema::list_strategy)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let element = match strategy {
            ListStrategy::Atomic => return None,
            ListStrategy::MergeByKey(key) => {
                let value = item.as_object()?.get(key.as_ref())?;
                PathElement::key([(key.to_string(), value.clone())])
            }
            ListStrategy::Set => PathElement::Value(item.clone()),
        };
        if seen.insert(element.clone()) {
            out.push((element, item));
        } else if matches!(strategy, ListStrategy::MergeByKey(_)) {
            return None;
        }
    }
    Some(out)
}

/// What changed between two versions of an object, as structured-merge-diff compares them.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Paths only in the new version: every node of an added subtree.
    pub(crate) added: FieldSet,
    /// Leaves present in both versions with different values.
    pub(crate) modified: FieldSet,
    /// Paths only in the old version: every node of a removed subtree.
    pub(crate) removed: FieldSet,
}

/// Compares two versions of an object; paths no one owns are left out.
pub(crate) fn compare(old: &Value, new: &Value, schema: Option<&MergeSchema>) -> Comparison {
    let mut out = Comparison::default();
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => compare_maps(o, n, schema, &mut Vec::new(), &mut out),
        (_, Value::Object(n)) => {
            each_node_of_map(n, schema, &mut Vec::new(), &mut out.added);
        }
        (Value::Object(o), _) => each_node_of_map(o, schema, &mut Vec::new(), &mut out.removed),
        _ => {}
    }
    for set in [&mut out.added, &mut out.modified, &mut out.removed] {
        *set = set.recursive_difference(&IGNORED);
    }
    out
}

fn compare_maps(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    schema: Option<&MergeSchema>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        path.push(PathElement::Field(name.clone()));
        compare_node(old.get(name), new.get(name), schema.and_then(|s| s.field(name)), path, out);
        path.pop();
    }
}

fn compare_node(
    old: Option<&Value>,
    new: Option<&Value>,
    schema: Option<&MergeSchema>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let (old, new) = match (old, new) {
        (Some(old), Some(new)) => (old, new),
        (None, Some(new)) => return each_node(new, schema, path, &mut out.added),
        (Some(old), None) => return each_node(old, schema, path, &mut out.removed),
        (None, None) => return,
    };
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => compare_maps(o, n, schema, path, out),
        (Value::Array(o), Value::Array(n)) => match (list_items(o, schema), list_items(n, schema)) {
            (Some(o), Some(n)) => {
                let o: BTreeMap<PathElement, &Value> = o.into_iter().collect();
                let n: BTreeMap<PathElement, &Value> = n.into_iter().collect();
                let elements: std::collections::BTreeSet<&PathElement> = o.keys().chain(n.keys()).collect();
                for element in elements {
                    path.push(element.clone());
                    compare_node(o.get(element).copied(), n.get(element).copied(), schema, path, out);
                    path.pop();
                }
            }
            _ => out.modified.insert(path),
        },
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            each_node(old, schema, path, &mut out.removed);
            each_node(new, schema, path, &mut out.added);
        }
        _ => out.modified.insert(path),
    }
}

/// Adds the path of `value` and of every node below it (an atomic list is one node).
fn each_node(value: &Value, schema: Option<&MergeSchema>, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    // Go's types always serialize their top-level structs, so Kubernetes never sees a built-in
    // kind's `metadata`, `spec` or `status` appear or disappear: only what is inside them.
    let always_present = schema.is_some()
        && matches!(path.as_slice(), [PathElement::Field(f)] if ["metadata", "spec", "status"].contains(&f.as_str()));
    if !always_present {
        set.insert(path);
    }
    match value {
        Value::Object(fields) => each_node_of_map(fields, schema, path, set),
        Value::Array(items) => {
            for (element, item) in list_items(items, schema).unwrap_or_default() {
                path.push(element);
                each_node(item, schema, path, set);
                path.pop();
            }
        }
        _ => {}
    }
}

fn each_node_of_map(
    fields: &Map<String, Value>,
    schema: Option<&MergeSchema>,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) {
    for (name, value) in fields {
        path.push(PathElement::Field(name.clone()));
        each_node(value, schema.and_then(|s| s.field(name)), path, set);
        path.pop();
    }
}

/// `live` with the apply configuration `config` merged in: objects merge field by field,
/// lists merged by key merge item by item (new items are appended), set lists gain the
/// configuration's values, and everything else is replaced. A `null` in the configuration
/// removes the field.
pub(crate) fn merge(live: &Value, config: &Value, schema: Option<&MergeSchema>) -> Value {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            let mut out = live.clone();
            for (name, value) in config {
                if value.is_null() {
                    out.remove(name);
                    continue;
                }
                let merged = match live.get(name) {
                    Some(current) => merge(current, value, schema.and_then(|s| s.field(name))),
                    None => without_nulls(value),
                };
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(live_items), Value::Array(config_items)) => {
            let (Some(current), Some(applied)) =
                (list_items(live_items, schema), list_items(config_items, schema))
            else {
                return without_nulls(config);
            };
            let positions: BTreeMap<PathElement, usize> =
                current.into_iter().enumerate().map(|(i, (element, _))| (element, i)).collect();
            let mut out = live_items.clone();
            for (element, item) in applied {
                match positions.get(&element).and_then(|&i| out.get_mut(i)) {
                    Some(slot) => *slot = merge(slot, item, schema),
                    None => out.push(without_nulls(item)),
                }
            }
            Value::Array(out)
        }
        _ => without_nulls(config),
    }
}

/// `value` without the `null` fields of its objects.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Removes from `object` each path of `remove` that no path of `owned` is at or below, then
/// the objects and lists those removals left empty, up to (not including) the top-level
/// fields, unless someone owns them.
pub(crate) fn prune(object: &mut Value, remove: &FieldSet, owned: &FieldSet) {
    for path in remove.paths() {
        let elements = path.elements();
        if owned.contains_prefix(elements) || !remove_at(object, elements) {
            continue;
        }
        for depth in (2..elements.len()).rev() {
            let parent = &elements[..depth];
            let emptied = get(object, parent).is_some_and(|v| match v {
                Value::Object(fields) => fields.is_empty(),
                Value::Array(items) => items.is_empty(),
                _ => false,
            });
            if !emptied || owned.contains_prefix(parent) || !remove_at(object, parent) {
                break;
            }
        }
    }
}

/// The value at `path`.
fn get<'v>(value: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, element| {
        let index = position(node, element)?;
        match node {
            Value::Object(fields) => match element {
                PathElement::Field(name) => fields.get(name),
                _ => None,
            },
            Value::Array(items) => items.get(index),
            _ => None,
        }
    })
}

/// Removes the value at `path`; whether there was one.
fn remove_at(value: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for element in parents {
        let Some(index) = position(node, element) else {
            return false;
        };
        node = match node {
            Value::Object(fields) => match element {
                PathElement::Field(name) => match fields.get_mut(name) {
                    Some(child) => child,
                    None => return false,
                },
                _ => return false,
            },
            Value::Array(items) => match items.get_mut(index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (node, last) {
        (Value::Object(fields), PathElement::Field(name)) => fields.remove(name).is_some(),
        (node @ Value::Array(_), element) => match (position(node, element), node) {
            (Some(index), Value::Array(items)) => {
                items.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Where `element` is in `node`: for a list, the index of the item it names; for an object,
/// `Some(0)` when it is a field (the caller looks the field up by name).
fn position(node: &Value, element: &PathElement) -> Option<usize> {
    match (node, element) {
        (Value::Object(_), PathElement::Field(_)) => Some(0),
        (Value::Array(items), PathElement::Key(key)) => items.iter().position(|item| {
            key.iter().all(|(name, value)| item.as_object().and_then(|o| o.get(name)) == Some(value))
        }),
        (Value::Array(items), PathElement::Value(value)) => items.iter().position(|item| item == value),
        (Value::Array(items), PathElement::Index(i)) => (*i < items.len()).then_some(*i),
        _ => None,
    }
}
