//! The error of applying a patch, and the patch locations it names.

use std::fmt;

use super::PatchType;

/// The patch module's result type.
pub type Result<T, E = PatchError> = std::result::Result<T, E>;

/// Why a patch could not be applied. Every message says what is wrong and where: the index of a
/// JSON patch operation, or the JSON pointer of the offending place in the patch document
/// (`/` for the whole document).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON. Merge and strategic merge patches are JSON only, like in
    /// Kubernetes: kubectl converts YAML before it sends a patch.
    #[error(
        "{patch_type} is not valid JSON (line {line}, column {column}): the body of an {} request must be JSON",
        .patch_type.content_type()
    )]
    NotJson {
        /// The patch type the body was sent as.
        patch_type: PatchType,
        /// The line of the first error, from 1.
        line: usize,
        /// The column of the first error, from 1.
        column: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The body is JSON of the wrong shape (a merge patch that is not an object, a JSON patch
    /// that is not an array).
    #[error("{patch_type} must be a JSON {expected}, not {found}")]
    WrongShape {
        /// The patch type the body was sent as.
        patch_type: PatchType,
        /// `object` or `array`.
        expected: &'static str,
        /// What the body is.
        found: &'static str,
    },
    /// A JSON patch with more operations than Kubernetes allows.
    #[error("invalid JSON patch: {count} operations exceed the limit of {max}")]
    TooManyOperations {
        /// Operations in the patch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON patch operation that is not a valid RFC 6902 operation.
    #[error("invalid JSON patch: operation {index} is malformed: {reason}")]
    MalformedOperation {
        /// The operation's index, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON patch operation that does not apply to the object (including a failed `test`).
    #[error("invalid JSON patch: operation {index} ({op} {path}): {reason}")]
    OperationFailed {
        /// The operation's index, from 0.
        index: usize,
        /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
        op: &'static str,
        /// The operation's `path`, a JSON pointer into the object.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// An apply patch was given to [`apply_patch`](super::apply_patch): server-side apply
    /// computes those with field ownership, elsewhere.
    #[error("{} patches are applied by server-side apply, not as patches", PatchType::Apply.content_type())]
    ApplyNotSupported,
    /// The object a strategic merge patch applies to is not a JSON object.
    #[error("cannot apply a strategic merge patch to a JSON {found}: the object must be a JSON object")]
    OriginalNotAnObject {
        /// What the object is.
        found: &'static str,
    },
    /// A `$`-prefixed key that is no strategic merge patch directive.
    #[error("invalid strategic merge patch at {path}: unknown directive {directive:?}")]
    UnknownDirective {
        /// Where, in the patch.
        path: String,
        /// The key.
        directive: String,
    },
    /// A `$patch` directive with a value other than `replace`, `delete` or `merge`.
    #[error(
        "invalid strategic merge patch at {path}: unknown $patch value {value}, expected \"replace\" or \"delete\""
    )]
    UnknownPatchValue {
        /// Where, in the patch.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// `$patch: merge` in a list element: Kubernetes does not support asking for a list merge
    /// in the patch; the schema decides.
    #[error("invalid strategic merge patch at {path}: $patch: merge cannot be used in a list element")]
    MergeDirectiveInList {
        /// Where, in the patch.
        path: String,
    },
    /// A directive whose value has the wrong form.
    #[error("invalid strategic merge patch at {path}: {directive} must be {expected}")]
    MalformedDirective {
        /// Where, in the patch (the directive's own key).
        path: String,
        /// The directive.
        directive: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A field present in a patch that also lists `$retainKeys`, but not listed there.
    #[error("invalid strategic merge patch at {path}: field {field:?} is set but not listed in $retainKeys")]
    NotInRetainKeys {
        /// Where, in the patch (the map holding the directive).
        path: String,
        /// The field.
        field: String,
    },
    /// A list in the patch whose order contradicts its `$setElementOrder` directive.
    #[error("invalid strategic merge patch at {path}: the order of the list does not match $setElementOrder")]
    ElementOrderMismatch {
        /// Where, in the patch (the list).
        path: String,
    },
    /// An element of a patch list merged by key without that key.
    #[error("invalid strategic merge patch at {path}: list element has no merge key {key:?}")]
    MissingMergeKey {
        /// Where, in the patch (the element).
        path: String,
        /// The merge key.
        key: String,
    },
    /// An element of the object's list merged by key without that key.
    #[error(
        "cannot apply strategic merge patch at {path}: element {index} of the object's list has no merge key {key:?}"
    )]
    ObjectMissingMergeKey {
        /// Where, in the patch (the list).
        path: String,
        /// The element's index in the object's list.
        index: usize,
        /// The merge key.
        key: String,
    },
    /// A merged list holding lists.
    #[error("cannot apply strategic merge patch at {path}: lists of lists cannot be merged")]
    NestedList {
        /// Where, in the patch (the list).
        path: String,
    },
    /// A merged list whose elements (in the object and the patch together) differ in type.
    #[error("cannot apply strategic merge patch at {path}: list elements are not all of one type")]
    MixedListElements {
        /// Where, in the patch (the list).
        path: String,
    },
    /// A list of objects whose schema says set: objects need a merge key.
    #[error(
        "cannot apply strategic merge patch at {path}: a list of objects cannot be merged without a merge key"
    )]
    NoMergeKey {
        /// Where, in the patch (the list).
        path: String,
    },
}

impl PatchError {
    /// The HTTP status Kubernetes answers with: 400 for a body that cannot be a patch, 413
    /// for too many operations, 415 for an apply patch, 422 for a well-formed patch that does
    /// not apply to this object.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::TooManyOperations { .. } => 413,
            PatchError::ApplyNotSupported => 415,
            PatchError::OperationFailed { .. }
            | PatchError::OriginalNotAnObject { .. }
            | PatchError::NotInRetainKeys { .. }
            | PatchError::ObjectMissingMergeKey { .. }
            | PatchError::NestedList { .. }
            | PatchError::MixedListElements { .. }
            | PatchError::NoMergeKey { .. } => 422,
            _ => 400,
        }
    }
}

/// The name of a JSON value's type, for messages.
pub(crate) fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A place in the patch document, built on the stack while descending and rendered as a JSON
/// pointer only when an error names it.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// The whole document.
    Root,
    /// A field of an object.
    Key(&'a Path<'a>, &'a str),
    /// An element of a list.
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// The field `key` below this place.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    /// Element `index` below this place.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) => {
                parent.write(f)?;
                f.write_str("/")?;
                for c in key.chars() {
                    match c {
                        '~' => f.write_str("~0")?,
                        '/' => f.write_str("~1")?,
                        c => fmt::Write::write_char(f, c)?,
                    }
                }
                Ok(())
            }
            Path::Index(parent, index) => {
                parent.write(f)?;
                write!(f, "/{index}")
            }
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("/"),
            path => path.write(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_json_pointers() {
        let root = Path::Root;
        assert_eq!(root.to_string(), "/");
        let spec = root.key("spec");
        let containers = spec.key("containers");
        let first = containers.index(0);
        let order = first.key("$setElementOrder/env");
        assert_eq!(order.to_string(), "/spec/containers/0/$setElementOrder~1env");
        assert_eq!(root.key("a~b").to_string(), "/a~0b");
    }

    #[test]
    fn messages_name_the_place() {
        let err = PatchError::OperationFailed {
            index: 2,
            op: "replace",
            path: "/spec/replicas".into(),
            reason: "path not found".into(),
        };
        assert_eq!(
            err.to_string(),
            "invalid JSON patch: operation 2 (replace /spec/replicas): path not found"
        );
        assert_eq!(err.status_code(), 422);
        let err = PatchError::MissingMergeKey { path: "/spec/containers/1".into(), key: "name".into() };
        assert_eq!(
            err.to_string(),
            "invalid strategic merge patch at /spec/containers/1: list element has no merge key \"name\""
        );
        assert_eq!(err.status_code(), 400);
    }
}
