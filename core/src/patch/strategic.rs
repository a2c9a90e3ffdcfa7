//! Strategic merge patch: objects and directives. Lists are in [`super::list`].

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{PatchError, Path, Result, type_name};
use super::list::{self, Ident, ident_index};
use super::schema::MergeSchema;

/// `$patch`: replace, delete (or merge) the object or list holding it.
pub(crate) const PATCH: &str = "$patch";
/// `$retainKeys`: the keys an object keeps; the others are cleared.
const RETAIN_KEYS: &str = "$retainKeys";
/// `$setElementOrder/<list>`: the order of a list.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
/// `$deleteFromPrimitiveList/<list>`: values to remove from a list of primitives.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
/// Keys of JSON schemas (in custom resource definitions) that look like directives.
const SCHEMA_KEYWORDS: [&str; 2] = ["$ref", "$schema"];

/// What a `$patch` directive asks for.
pub(crate) enum Directive {
    Replace,
    Delete,
    Merge,
}

/// The `$patch` directive of an object in the patch, if it has one.
pub(crate) fn patch_directive(patch: &Map<String, Value>, path: Path<'_>) -> Result<Option<Directive>> {
    let Some(value) = patch.get(PATCH) else { return Ok(None) };
    match value.as_str() {
        Some("replace") => Ok(Some(Directive::Replace)),
        Some("delete") => Ok(Some(Directive::Delete)),
        Some("merge") => Ok(Some(Directive::Merge)),
        _ => {
            Err(PatchError::UnknownPatchValue { path: path.key(PATCH).to_string(), value: value.to_string() })
        }
    }
}

/// Applies a strategic merge patch (a JSON object) to `original`.
pub(crate) fn apply(original: &Value, patch: &Value, schema: Option<&MergeSchema>) -> Result<Value> {
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotAnObject { found: type_name(original) });
    };
    let Value::Object(patch) = patch else {
        return Err(PatchError::WrongShape {
            patch_type: super::PatchType::StrategicMerge,
            expected: "object",
            found: type_name(patch),
        });
    };
    let merged = merge_map(Some(original.clone()), patch, schema, Path::Root)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Merges `patch` into `original` (`None`: the object has no such field). `None` in the
/// result: the patch deletes the object.
pub(crate) fn merge_map(
    original: Option<Map<String, Value>>,
    patch: &Map<String, Value>,
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<Option<Map<String, Value>>> {
    match patch_directive(patch, path)? {
        Some(Directive::Delete) => Ok(None),
        // Replacing is merging into nothing: the patch's content, cleaned of directives.
        Some(Directive::Replace) => merge_fields(Map::new(), patch, schema, path).map(Some),
        Some(Directive::Merge) | None => {
            merge_fields(original.unwrap_or_default(), patch, schema, path).map(Some)
        }
    }
}

/// The value a patch value becomes where the object has nothing to merge it with: objects
/// and lists are cleaned of `null` fields and directives. `None`: nothing (the patch deletes).
pub(crate) fn literal(patch: &Value, schema: Option<&MergeSchema>, path: Path<'_>) -> Result<Option<Value>> {
    match patch {
        Value::Object(map) => Ok(merge_map(None, map, schema, path)?.map(Value::Object)),
        Value::Array(items) => Ok(Some(Value::Array(list::literal_list(items, schema, path)?))),
        other => Ok(Some(other.clone())),
    }
}

/// A list directive of the patch: the list's name, the directive's value, and its key.
struct ListDirective<'p> {
    field: &'p str,
    value: &'p Value,
    key: &'p str,
}

/// Merges the fields of `patch` (an object without `$patch`, or whose `$patch` is handled)
/// into `original`.
pub(crate) fn merge_fields(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<Map<String, Value>> {
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, retain, path)?;
    }

    let mut orders = Vec::new();
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if !key.starts_with('$') || SCHEMA_KEYWORDS.contains(&key.as_str()) {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER).filter(|f| !f.is_empty()) {
            orders.push(ListDirective { field, value, key });
        } else if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST).filter(|f| !f.is_empty()) {
            deletions.push(ListDirective { field, value, key });
        } else if key != PATCH && key != RETAIN_KEYS {
            return Err(PatchError::UnknownDirective { path: path.to_string(), directive: key.clone() });
        }
    }

    // The order of a list is set relative to the list as it was before the patch.
    let mut before = Vec::with_capacity(orders.len());
    for order in &orders {
        let order_path = path.key(order.key);
        let Value::Array(order_list) = order.value else {
            return Err(malformed(order_path, order.key, "a list"));
        };
        let field_schema = schema.and_then(|s| s.field(order.field));
        let key = field_schema.and_then(MergeSchema::merge_key);
        let wanted = list::order_idents(order_list, key, order_path)?;
        if let Some(Value::Array(items)) = patch.get(order.field) {
            list::check_patch_order(items, key, &wanted, path.key(order.field))?;
        }
        let wanted = list::ranks(wanted);
        let reference = match original.get(order.field) {
            Some(Value::Array(items)) => ident_index(items, key),
            _ => Default::default(),
        };
        before.push((wanted, reference, key));
    }

    for (key, value) in patch {
        if key.starts_with('$') && !SCHEMA_KEYWORDS.contains(&key.as_str()) {
            continue;
        }
        merge_field(&mut original, key, value, schema.and_then(|s| s.field(key)), path.key(key))?;
    }

    for (order, (wanted, reference, key)) in orders.iter().zip(before) {
        match original.get_mut(order.field) {
            Some(Value::Array(items)) => {
                let merged = std::mem::take(items);
                *items = list::reorder(merged, &wanted, &reference, key, path.key(order.field))?;
            }
            None => {}
            Some(_) => return Err(malformed(path.key(order.key), order.key, "applied to a list")),
        }
    }

    for deletion in &deletions {
        let Value::Array(values) = deletion.value else {
            return Err(malformed(path.key(deletion.key), deletion.key, "a list"));
        };
        // Like Kubernetes, deleting from a list the object lacks (or that is not a list) does
        // nothing.
        if let Some(Value::Array(items)) = original.get_mut(deletion.field) {
            let doomed: HashSet<Ident> = values.iter().map(Ident::of).collect();
            items.retain(|item| !doomed.contains(&Ident::of(item)));
        }
    }
    Ok(original)
}

/// Merges one field of the patch into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    key: &str,
    patch: &Value,
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<()> {
    let merged = match (original.get_mut(key), patch) {
        (_, Value::Null) => None,
        (None, patch) => literal(patch, schema, path)?,
        (Some(Value::Object(current)), Value::Object(patch)) => {
            merge_map(Some(std::mem::take(current)), patch, schema, path)?.map(Value::Object)
        }
        (Some(Value::Array(current)), Value::Array(patch)) => {
            Some(Value::Array(list::merge_list(std::mem::take(current), patch, schema, path)?))
        }
        // Different types, or primitives: the patch's value replaces.
        (Some(_), patch) => literal(patch, schema, path)?,
    };
    match merged {
        Some(value) => {
            original.insert(key.to_string(), value);
        }
        None => {
            original.remove(key);
        }
    }
    Ok(())
}

/// Applies `$retainKeys`: every field the patch sets must be listed, and the object keeps only
/// listed fields.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: Path<'_>,
) -> Result<()> {
    let listed: Option<HashSet<&str>> =
        retain.as_array().and_then(|keys| keys.iter().map(Value::as_str).collect());
    let Some(listed) = listed else {
        return Err(malformed(path.key(RETAIN_KEYS), RETAIN_KEYS, "a list of field names"));
    };
    for (key, value) in patch {
        let directive = key.starts_with('$') && !SCHEMA_KEYWORDS.contains(&key.as_str());
        if !directive && !value.is_null() && !listed.contains(key.as_str()) {
            return Err(PatchError::NotInRetainKeys { path: path.to_string(), field: key.clone() });
        }
    }
    original.retain(|key, _| listed.contains(key.as_str()));
    Ok(())
}

pub(crate) fn malformed(path: Path<'_>, directive: &str, expected: &'static str) -> PatchError {
    PatchError::MalformedDirective { path: path.to_string(), directive: directive.to_string(), expected }
}
