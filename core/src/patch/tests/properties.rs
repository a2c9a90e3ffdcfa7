//! Property tests: merge patches against a diff model, and no panics on any input.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{deployment, merge_diff, test_schema};
use crate::patch::{PatchType, apply_patch};

/// JSON without `null` (a merge patch cannot set one) and with few distinct keys, so that
/// objects overlap.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array), object_of(inner),]
    })
}

fn object_of(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", values, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// Keys that reach the schema's lists and every directive.
const KEYS: [&str; 16] = [
    "spec",
    "template",
    "containers",
    "env",
    "name",
    "metadata",
    "finalizers",
    "items",
    "tags",
    "union",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/tags",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/tags",
];

/// JSON built from schema field names, directives and directive values.
fn patch_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        prop::sample::select(&["replace", "delete", "merge", "a", "b", "name"][..]).prop_map(Value::from),
        (0..3i64).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(&KEYS[..]), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Whether any object key in `value` is a directive.
fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k.starts_with('$') || has_directive(v)),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

proptest! {
    #[test]
    fn merge_patch_of_a_diff_turns_one_object_into_the_other(from in object_of(json_value()), to in object_of(json_value())) {
        let patch = merge_diff(&from, &to).to_string();
        let merged = apply_patch(&from, PatchType::Merge, patch.as_bytes(), None);
        prop_assert_eq!(merged.ok(), Some(to.clone()));
        // Without a schema a strategic merge patch is a merge patch.
        let strategic = apply_patch(&from, PatchType::StrategicMerge, patch.as_bytes(), None);
        prop_assert_eq!(strategic.ok(), Some(to));
    }

    #[test]
    fn any_bytes_are_refused_or_applied_without_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
        let original = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        for patch_type in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            let _ = apply_patch(&original, patch_type, &body, Some(deployment()));
        }
    }

    #[test]
    fn strategic_patches_never_panic_nor_leak_directives(original in patch_like(), patch in patch_like()) {
        // Originals never hold directive keys; patches may hold anything.
        let original = if has_directive(&original) { Value::Object(Map::new()) } else { original };
        let body = patch.to_string();
        for schema in [Some(deployment()), Some(&test_schema()), None] {
            if let Ok(patched) = apply_patch(&original, PatchType::StrategicMerge, body.as_bytes(), schema) {
                prop_assert!(patched.is_object());
                prop_assert!(!has_directive(&patched), "{} leaked into {}", body, patched);
            }
            let _ = apply_patch(&original, PatchType::Json, body.as_bytes(), schema);
        }
    }
}
