//! JSON patch (RFC 6902).

use json_patch::{PatchErrorKind, PatchOperation};
use serde::Deserialize;
use serde_json::Value;

use super::error::{PatchError, Result, type_name};
use super::{PatchType, parse_json};

/// The most operations a JSON patch may hold, as in the Kubernetes API server.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies the JSON patch `body` to a copy of `original`: every operation or none.
pub(crate) fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value> {
    let value = parse_json(body, PatchType::Json)?;
    let Value::Array(items) = &value else {
        return Err(PatchError::WrongShape {
            patch_type: PatchType::Json,
            expected: "array",
            found: type_name(&value),
        });
    };
    if items.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { count: items.len(), max: MAX_JSON_PATCH_OPERATIONS });
    }
    // Decoding each operation alone lets the error name the malformed one.
    let operations = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            PatchOperation::deserialize(item)
                .map_err(|e| PatchError::MalformedOperation { index, reason: e.to_string() })
        })
        .collect::<Result<Vec<_>>>()?;

    // The copy is thrown away on failure, so the crate's undo log is not needed.
    let mut patched = original.clone();
    json_patch::patch_unsafe(&mut patched, &operations).map_err(|e| {
        let operation = operations.get(e.operation);
        PatchError::OperationFailed {
            index: e.operation,
            op: operation.map_or("operation", op_name),
            path: operation.map_or_else(|| e.path.to_string(), |op| op.path().to_string()),
            reason: reason(&e.kind, operation),
        }
    })?;
    Ok(patched)
}

fn op_name(operation: &PatchOperation) -> &'static str {
    match operation {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn reason(kind: &PatchErrorKind, operation: Option<&PatchOperation>) -> String {
    match kind {
        PatchErrorKind::TestFailed => "test failed: the value differs".to_string(),
        PatchErrorKind::InvalidFromPointer => {
            let from = match operation {
                Some(PatchOperation::Move(op)) => op.from.to_string(),
                Some(PatchOperation::Copy(op)) => op.from.to_string(),
                _ => String::new(),
            };
            format!("from path {from} not found")
        }
        PatchErrorKind::InvalidPointer => "path not found".to_string(),
        PatchErrorKind::CannotMoveInsideItself => "cannot move a value into itself".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::patch::{PatchError, PatchType, apply_patch};

    fn json_patch(
        original: serde_json::Value,
        patch: serde_json::Value,
    ) -> Result<serde_json::Value, PatchError> {
        apply_patch(&original, PatchType::Json, patch.to_string().as_bytes(), None)
    }

    #[test]
    fn applies_every_operation() {
        let original = json!({"spec": {"replicas": 1, "list": [1, 2]}, "metadata": {"name": "a"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/name", "value": "a"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "remove", "path": "/spec/list/0"},
            {"op": "copy", "from": "/metadata/name", "path": "/spec/name"},
            {"op": "move", "from": "/spec/name", "path": "/metadata/alias"},
            {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "x"}},
            {"op": "remove", "path": "/metadata/labels/a~0b~1c"}
        ]);
        assert_eq!(
            json_patch(original, patch).expect("applies"),
            json!({"spec": {"replicas": 3, "list": [2, 3]}, "metadata": {"name": "a", "alias": "a", "labels": {}}})
        );
    }

    #[test]
    fn errors_name_the_operation_and_path() {
        let original = json!({"spec": {}});
        let cases = [
            (
                json!([{"op": "test", "path": "/spec", "value": {}}, {"op": "add", "path": "/spec/x", "value": 1},
                       {"op": "replace", "path": "/spec/replicas", "value": 2}]),
                "invalid JSON patch: operation 2 (replace /spec/replicas): path not found",
            ),
            (
                json!([{"op": "test", "path": "/spec", "value": 1}]),
                "invalid JSON patch: operation 0 (test /spec): test failed: the value differs",
            ),
            (
                json!([{"op": "move", "from": "/nope", "path": "/spec/a"}]),
                "invalid JSON patch: operation 0 (move /spec/a): from path /nope not found",
            ),
            (
                json!([{"op": "move", "from": "/spec", "path": "/spec/a"}]),
                "invalid JSON patch: operation 0 (move /spec/a): cannot move a value into itself",
            ),
            (json!({"op": "add"}), "JSON patch must be a JSON array, not object"),
        ];
        for (patch, message) in cases {
            let err = json_patch(original.clone(), patch).expect_err(message);
            assert_eq!(err.to_string(), message);
        }
        let err =
            json_patch(original, json!([{"op": "add", "path": "/a", "value": 1}, {"op": "frobnicate"}]))
                .expect_err("unknown op");
        assert!(
            matches!(&err, PatchError::MalformedOperation { index: 1, reason } if reason.contains("frobnicate")),
            "{err}"
        );
    }

    #[test]
    fn too_many_operations_are_refused() {
        let op = json!({"op": "test", "path": "", "value": {}});
        let patch = serde_json::Value::Array(vec![op; super::MAX_JSON_PATCH_OPERATIONS + 1]);
        let err = json_patch(json!({}), patch).expect_err("too many");
        assert_eq!(err.status_code(), 413);
    }

    #[test]
    fn not_json_is_refused() {
        let err = apply_patch(&json!({}), PatchType::Json, b"op: add", None).expect_err("yaml");
        assert!(matches!(err, PatchError::NotJson { line: 1, column: 1, .. }), "{err}");
        assert_eq!(err.status_code(), 400);
    }
}
