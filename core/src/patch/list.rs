//! Strategic merge patch: lists, and the order of merged lists.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::error::{PatchError, Path, Result};
use super::schema::{ListStrategy, MergeSchema};
use super::strategic::{Directive, literal, merge_fields, patch_directive};

/// The identity of a list element: its merge key's value, or the element itself. Numbers
/// compare as floating point, as in Kubernetes (whose JSON numbers are all `float64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Ident {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
    /// An array or object, or a number `f64` cannot hold, by its JSON text.
    Composite(String),
}

impl Ident {
    pub(crate) fn of(value: &Value) -> Ident {
        match value {
            Value::Null => Ident::Null,
            Value::Bool(b) => Ident::Bool(*b),
            // `+ 0.0` turns -0.0 into 0.0, so that both compare equal.
            Value::Number(n) => n
                .as_f64()
                .map_or_else(|| Ident::Composite(n.to_string()), |f| Ident::Number((f + 0.0).to_bits())),
            Value::String(s) => Ident::String(s.clone()),
            other => Ident::Composite(other.to_string()),
        }
    }
}

/// The identity of `item` in a list merged by `key` (or by value, without one); `None` for an
/// object without the key.
fn key_of(item: &Value, key: Option<&str>) -> Option<Ident> {
    match (key, item) {
        (Some(key), Value::Object(map)) => map.get(key).map(Ident::of),
        _ => Some(Ident::of(item)),
    }
}

/// Where each identity first occurs in `items`.
pub(crate) fn ident_index(items: &[Value], key: Option<&str>) -> HashMap<Ident, usize> {
    let mut index = HashMap::with_capacity(items.len());
    for (at, item) in items.iter().enumerate() {
        if let Some(id) = key_of(item, key) {
            index.entry(id).or_insert(at);
        }
    }
    index
}

/// Where each identity first occurs in `order`.
pub(crate) fn ranks(order: Vec<Ident>) -> HashMap<Ident, usize> {
    let mut ranks = HashMap::with_capacity(order.len());
    for (rank, id) in order.into_iter().enumerate() {
        ranks.entry(id).or_insert(rank);
    }
    ranks
}

/// The identities a `$setElementOrder` list names: objects holding the merge key, or values.
pub(crate) fn order_idents(order: &[Value], key: Option<&str>, path: Path<'_>) -> Result<Vec<Ident>> {
    let ident = |(i, item): (usize, &Value)| match key {
        Some(key) => item.as_object().and_then(|map| map.get(key)).map(Ident::of).ok_or_else(|| {
            PatchError::MissingMergeKey { path: path.index(i).to_string(), key: key.to_string() }
        }),
        None => Ok(Ident::of(item)),
    };
    order.iter().enumerate().map(ident).collect()
}

/// Checks that the patch's list names its items in the order `$setElementOrder` gives them.
pub(crate) fn check_patch_order(
    items: &[Value],
    key: Option<&str>,
    order: &[Ident],
    path: Path<'_>,
) -> Result<()> {
    if order.is_empty() {
        return Ok(());
    }
    let mut at = 0;
    for item in items {
        let directive = item.as_object().is_some_and(|map| map.contains_key(super::strategic::PATCH));
        let Some(id) = key_of(item, key).filter(|_| !directive) else { continue };
        while order.get(at).is_some_and(|o| *o != id) {
            at += 1;
        }
        if at == order.len() {
            return Err(PatchError::ElementOrderMismatch { path: path.to_string() });
        }
        at += 1;
    }
    Ok(())
}

/// A list the patch sets where there is nothing to merge it with: its elements cleaned, and
/// the list markers (`$patch: replace`, `$patch: delete`) dropped.
pub(crate) fn literal_list(
    items: &[Value],
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        if let Value::Object(map) = item {
            match patch_directive(map, item_path)? {
                Some(Directive::Delete | Directive::Replace) => continue,
                Some(Directive::Merge) => {
                    return Err(PatchError::MergeDirectiveInList { path: item_path.to_string() });
                }
                None => {}
            }
        }
        out.extend(literal(item, schema, item_path)?);
    }
    Ok(out)
}

/// Merges the patch's list into the object's, as the schema says.
pub(crate) fn merge_list(
    current: Vec<Value>,
    patch: &[Value],
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<Vec<Value>> {
    let strategy = schema.map_or(&ListStrategy::Atomic, MergeSchema::list_strategy);
    if *strategy == ListStrategy::Atomic {
        return literal_list(patch, schema, path);
    }
    if current.is_empty() && patch.is_empty() {
        return Ok(current);
    }
    let objects = elements_are_objects(&current, patch, path)?;
    match strategy {
        _ if !objects => merge_set(current, patch, path),
        ListStrategy::MergeByKey(key) => merge_by_key(current, patch, key, schema, path),
        ListStrategy::Set | ListStrategy::Atomic => Err(PatchError::NoMergeKey { path: path.to_string() }),
    }
}

/// Whether the elements of both lists are objects; an error unless they are all of one type
/// and none is a list.
fn elements_are_objects(current: &[Value], patch: &[Value], path: Path<'_>) -> Result<bool> {
    let mut kind = None;
    for item in current.iter().chain(patch) {
        if item.is_array() {
            return Err(PatchError::NestedList { path: path.to_string() });
        }
        let this = std::mem::discriminant(item);
        if *kind.get_or_insert(this) != this {
            return Err(PatchError::MixedListElements { path: path.to_string() });
        }
    }
    Ok(current.iter().chain(patch).next().is_some_and(Value::is_object))
}

/// A list of primitives merged as a set: the union, without duplicates.
fn merge_set(current: Vec<Value>, patch: &[Value], path: Path<'_>) -> Result<Vec<Value>> {
    let reference = ident_index(&current, None);
    let wanted = ident_index(patch, None);
    let mut seen = HashSet::with_capacity(current.len() + patch.len());
    let merged = current
        .into_iter()
        .chain(patch.iter().cloned())
        .filter(|item| seen.insert(Ident::of(item)))
        .collect();
    reorder(merged, &wanted, &reference, None, path)
}

/// A list of objects merged by `key`.
fn merge_by_key(
    mut current: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: Option<&MergeSchema>,
    path: Path<'_>,
) -> Result<Vec<Value>> {
    let missing_key =
        |i: usize| PatchError::MissingMergeKey { path: path.index(i).to_string(), key: key.to_string() };

    let mut regular = Vec::with_capacity(patch.len());
    let mut replace = false;
    for (i, item) in patch.iter().enumerate() {
        let Value::Object(map) = item else { continue };
        match patch_directive(map, path.index(i))? {
            None => regular.push((i, map)),
            Some(Directive::Delete) => {
                let doomed = map.get(key).map(Ident::of).ok_or_else(|| missing_key(i))?;
                current.retain(|item| key_of(item, Some(key)).as_ref() != Some(&doomed));
            }
            Some(Directive::Replace) => replace = true,
            Some(Directive::Merge) => {
                return Err(PatchError::MergeDirectiveInList { path: path.index(i).to_string() });
            }
        }
    }
    if replace {
        // The patch's other elements are the whole list; any further directive is dropped.
        return regular
            .into_iter()
            .map(|(i, map)| merge_fields(Map::new(), map, schema, path.index(i)).map(Value::Object))
            .collect();
    }

    let reference = ident_index(&current, Some(key));
    let mut positions = reference.clone();
    let mut wanted = HashMap::with_capacity(regular.len());
    for (i, map) in regular {
        let item_path = path.index(i);
        let id = map.get(key).map(Ident::of).ok_or_else(|| missing_key(i))?;
        let rank = wanted.len();
        wanted.entry(id.clone()).or_insert(rank);
        match positions.get(&id).and_then(|&at| current.get_mut(at)) {
            Some(Value::Object(existing)) => {
                *existing = merge_fields(std::mem::take(existing), map, schema, item_path)?;
            }
            _ => {
                positions.insert(id, current.len());
                current.push(Value::Object(merge_fields(Map::new(), map, schema, item_path)?));
            }
        }
    }
    reorder(current, &wanted, &reference, Some(key), path)
}

/// Orders a merged list as Kubernetes does: the items `wanted` names in that order, the
/// others in their order in the original list, interleaved by their position in the original
/// (`reference`); an item the original lacks goes before the next item that it has.
pub(crate) fn reorder(
    merged: Vec<Value>,
    wanted: &HashMap<Ident, usize>,
    reference: &HashMap<Ident, usize>,
    key: Option<&str>,
    path: Path<'_>,
) -> Result<Vec<Value>> {
    let mut named = Vec::new();
    let mut others = Vec::new();
    for (index, item) in merged.into_iter().enumerate() {
        let Some(id) = key_of(&item, key) else {
            let key = key.unwrap_or_default().to_string();
            return Err(PatchError::ObjectMissingMergeKey { path: path.to_string(), index, key });
        };
        let at = reference.get(&id).copied();
        match wanted.get(&id) {
            Some(&rank) => named.push((rank, at, item)),
            None => others.push((at, item)),
        }
    }
    named.sort_by_key(|&(rank, ..)| rank);
    others.sort_by_key(|&(at, _)| at.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(named.len() + others.len());
    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let take_other = match (others.peek(), named.peek()) {
            (Some((Some(o), _)), Some((_, Some(n), _))) => o < n,
            (Some(_), Some(_)) => false,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if take_other {
            others.next().map(|(_, item)| item)
        } else {
            named.next().map(|(.., item)| item)
        };
        match next {
            Some(item) => out.push(item),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids(values: &[Value]) -> HashMap<Ident, usize> {
        ident_index(values, None)
    }

    #[test]
    fn identities_compare_numbers_as_floats() {
        assert_eq!(Ident::of(&json!(80)), Ident::of(&json!(80.0)));
        assert_eq!(Ident::of(&json!(-0.0)), Ident::of(&json!(0)));
        assert_ne!(Ident::of(&json!("80")), Ident::of(&json!(80)));
        assert_eq!(Ident::of(&json!({"a": [1]})), Ident::of(&json!({"a": [1]})));
    }

    #[test]
    fn reorder_interleaves_by_original_position() {
        let original = [json!("a"), json!("b"), json!("c")];
        // Named items keep the wanted order; "x" is new and goes before the next known item.
        let cases = [
            (vec!["x"], vec!["x", "a", "b", "c"]),
            (vec!["c", "x"], vec!["a", "b", "c", "x"]),
            (vec!["b", "x", "c"], vec!["a", "b", "x", "c"]),
            (vec!["c", "a"], vec!["b", "c", "a"]),
        ];
        for (wanted, expected) in cases {
            let wanted: Vec<Value> = wanted.into_iter().map(Value::from).collect();
            let mut merged = original.to_vec();
            merged.extend(wanted.iter().filter(|w| !original.contains(w)).cloned());
            let out = reorder(merged, &ids(&wanted), &ids(&original), None, Path::Root).expect("orders");
            let expected: Vec<Value> = expected.into_iter().map(Value::from).collect();
            assert_eq!(out, expected, "wanted {wanted:?}");
        }
    }

    #[test]
    fn patch_order_must_follow_set_element_order() {
        let order = vec![Ident::of(&json!(1)), Ident::of(&json!(2)), Ident::of(&json!(3))];
        let ok = [json!(1), json!(3)];
        let bad = [json!(3), json!(1)];
        assert!(check_patch_order(&ok, None, &order, Path::Root).is_ok());
        let err = check_patch_order(&bad, None, &order, Path::Root).expect_err("out of order");
        assert!(matches!(err, PatchError::ElementOrderMismatch { .. }));
        assert!(check_patch_order(&[json!(4)], None, &order, Path::Root).is_err());
    }
}
