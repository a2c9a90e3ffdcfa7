//! Patches that must be refused, and what the refusal says.

use serde_json::json;

use super::{deployment, smp, test_schema};
use crate::patch::{PatchError, PatchType, apply_patch};

#[test]
fn strategic_errors_say_what_and_where() {
    let schema = test_schema();
    let original = json!({
        "items": [{"name": "a"}, {"name": "b"}],
        "tags": ["x"],
        "nested": {"plain": [[1]]},
        "union": {"a": 1}
    });
    let cases = [
        (
            json!({"nested": {"$frobnicate": 1}}),
            "invalid strategic merge patch at /nested: unknown directive \"$frobnicate\"",
        ),
        (
            json!({"$setElementOrder": ["a"]}),
            "invalid strategic merge patch at /: unknown directive \"$setElementOrder\"",
        ),
        (
            json!({"union": {"$patch": "remove"}}),
            "invalid strategic merge patch at /union/$patch: unknown $patch value \"remove\", expected \"replace\" or \"delete\"",
        ),
        (
            json!({"items": [{"name": "a"}, {"$patch": "merge"}]}),
            "invalid strategic merge patch at /items/1: $patch: merge cannot be used in a list element",
        ),
        (
            json!({"items": [{"name": "a"}, {"value": 1}]}),
            "invalid strategic merge patch at /items/1: list element has no merge key \"name\"",
        ),
        (
            json!({"items": [{"$patch": "delete"}]}),
            "invalid strategic merge patch at /items/0: list element has no merge key \"name\"",
        ),
        (
            json!({"$setElementOrder/items": [{"name": "a"}, {"name": "b"}], "items": [{"name": "b"}, {"name": "a"}]}),
            "invalid strategic merge patch at /items: the order of the list does not match $setElementOrder",
        ),
        (
            json!({"$setElementOrder/items": [{"name": "a"}, {"id": "b"}]}),
            "invalid strategic merge patch at /$setElementOrder~1items/1: list element has no merge key \"name\"",
        ),
        (
            json!({"$setElementOrder/tags": "x"}),
            "invalid strategic merge patch at /$setElementOrder~1tags: $setElementOrder/tags must be a list",
        ),
        (
            json!({"$deleteFromPrimitiveList/tags": "x"}),
            "invalid strategic merge patch at /$deleteFromPrimitiveList~1tags: $deleteFromPrimitiveList/tags must be a list",
        ),
        (
            json!({"union": {"$retainKeys": ["a"], "b": 2}}),
            "invalid strategic merge patch at /union: field \"b\" is set but not listed in $retainKeys",
        ),
        (
            json!({"union": {"$retainKeys": "a"}}),
            "invalid strategic merge patch at /union/$retainKeys: $retainKeys must be a list of field names",
        ),
        (
            json!({"tags": ["y", 1]}),
            "cannot apply strategic merge patch at /tags: list elements are not all of one type",
        ),
        (
            json!({"tags": [["y"]]}),
            "cannot apply strategic merge patch at /tags: lists of lists cannot be merged",
        ),
        (
            json!({"tags": [{"name": "y"}]}),
            "cannot apply strategic merge patch at /tags: list elements are not all of one type",
        ),
    ];
    for (patch, message) in cases {
        let err = smp(Some(&schema), &original, &patch).expect_err(message);
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn object_shapes_the_schema_cannot_merge() {
    let schema = test_schema();
    let err = smp(Some(&schema), &json!({"tags": [{"a": 1}]}), &json!({"tags": [{"b": 1}]}))
        .expect_err("set of objects");
    assert!(matches!(&err, PatchError::NoMergeKey { path } if path == "/tags"), "{err}");
    assert_eq!(err.status_code(), 422);

    let err = smp(Some(&schema), &json!({"items": [{"id": 1}]}), &json!({"items": [{"name": "a"}]}))
        .expect_err("object element without key");
    assert_eq!(
        err.to_string(),
        "cannot apply strategic merge patch at /items: element 0 of the object's list has no merge key \"name\""
    );

    let err = smp(Some(&schema), &json!([1]), &json!({})).expect_err("not an object");
    assert_eq!(
        err.to_string(),
        "cannot apply a strategic merge patch to a JSON array: the object must be a JSON object"
    );
}

#[test]
fn merge_and_strategic_patches_are_json_objects_only() {
    let yaml = b"spec:\n  replicas: 3\n";
    for patch_type in [PatchType::Merge, PatchType::StrategicMerge] {
        let err = apply_patch(&json!({}), patch_type, yaml, Some(deployment())).expect_err("yaml");
        let message = err.to_string();
        assert!(matches!(err, PatchError::NotJson { line: 1, column: 1, .. }), "{message}");
        assert!(message.contains("must be JSON") && message.contains(patch_type.content_type()), "{message}");
        assert!(std::error::Error::source(&err).is_some());

        let err = apply_patch(&json!({}), patch_type, b"[]", None).expect_err("array");
        assert_eq!(err.to_string(), format!("{patch_type} must be a JSON object, not array"));
        assert_eq!(err.status_code(), 400);
        assert!(apply_patch(&json!({}), patch_type, b"", None).is_err());
    }
}

#[test]
fn apply_patches_are_not_applied_here() {
    let err = apply_patch(&json!({}), PatchType::Apply, b"{}", None).expect_err("apply");
    assert!(matches!(err, PatchError::ApplyNotSupported));
    assert_eq!(err.status_code(), 415);
}

#[test]
fn content_types_round_trip() {
    for patch_type in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
        assert_eq!(PatchType::from_content_type(patch_type.content_type()), Some(patch_type));
        let shouted = format!("{} ; charset=UTF-8", patch_type.content_type().to_ascii_uppercase());
        assert_eq!(PatchType::from_content_type(&shouted), Some(patch_type));
    }
    assert_eq!(PatchType::from_content_type("application/json"), None);
    assert_eq!(PatchType::from_content_type(""), None);
}
