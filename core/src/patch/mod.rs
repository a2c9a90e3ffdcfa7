//! Patches: JSON patch, JSON merge patch and strategic merge patch, as the Kubernetes API server
//! applies them for `kubectl patch` and client-side `kubectl apply`.
//!
//! Start with [`apply_patch`]: it takes the stored object as JSON, the request's [`PatchType`]
//! (from its `Content-Type`) and body, and, for strategic merge patches, the kind's
//! [`MergeSchema`] from [`builtin_schema`].
//!
//! - JSON patch (RFC 6902): a list of operations, `test` included; applied all or nothing.
//! - Merge patch (RFC 7386): objects merge, `null` deletes, everything else replaces.
//! - Strategic merge patch: a merge patch whose lists merge as the schema says (by a merge key,
//!   or as a set) and which understands the directives `$patch`, `$retainKeys`,
//!   `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`; see below.
//!
//! # Strategic merge patch
//!
//! The result follows Kubernetes' `strategicpatch` package, including the order of merged
//! lists: items named by the patch keep the patch's relative order, items only in the object
//! keep theirs, and the two are interleaved by their position in the object (so a new item
//! listed first in the patch comes first). `$setElementOrder/<list>` imposes an order the same
//! way. Where Kubernetes' behaviour is an accident, this module does the documented thing:
//!
//! - `$patch: delete` in an object removes the field (Kubernetes leaves `{}`); at the top it
//!   leaves an empty object.
//! - `$patch: merge` in an object is accepted as the default it names (Kubernetes rejects it);
//!   in a list element it is rejected, as in Kubernetes.
//! - Content the patch adds (a field the object lacks, a list that replaces, `$patch: replace`)
//!   is cleaned of `null` fields and directives; Kubernetes keeps some of them verbatim.
//! - A key starting with `$` that is not a directive is an error (Kubernetes ignores it),
//!   except `$ref` and `$schema`, which are fields of JSON schemas in custom resource
//!   definitions.
//! - Deletions (`$deleteFromPrimitiveList`) apply after the patch's additions to the same list.

mod error;
mod json;
mod list;
mod schema;
mod schemas;
mod strategic;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

pub use error::{PatchError, Result};
pub use json::MAX_JSON_PATCH_OPERATIONS;
pub use schema::{ListStrategy, MergeSchema};
pub use schemas::builtin_schema;

/// The four patch types of a Kubernetes `PATCH` request, named by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply. Only named here; it is applied with
    /// field ownership elsewhere, and [`apply_patch`] refuses it.
    Apply,
}

impl PatchType {
    /// The patch type a `Content-Type` header names, ignoring parameters (`; charset=utf-8`)
    /// and case; `None` for any other media type (Kubernetes answers 415).
    ///
    /// ```
    /// use flotilla_core::patch::PatchType;
    ///
    /// let t = PatchType::from_content_type("application/merge-patch+json; charset=utf-8");
    /// assert_eq!(t, Some(PatchType::Merge));
    /// assert_eq!(PatchType::from_content_type("application/json"), None);
    /// ```
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media_type))
    }

    /// The media type that names this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

impl fmt::Display for PatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatchType::Json => "JSON patch",
            PatchType::Merge => "merge patch",
            PatchType::StrategicMerge => "strategic merge patch",
            PatchType::Apply => "apply patch",
        })
    }
}

/// Applies `patch` (the request body) of type `patch_type` to `original` and returns the patched
/// object; `original` is not changed. `schema` guides a strategic merge patch (`None`: lists
/// replace, as in a merge patch) and is ignored by the other types.
///
/// ```
/// use flotilla_core::patch::{apply_patch, builtin_schema, PatchType};
/// use serde_json::json;
///
/// let pod = json!({"spec": {"containers": [{"name": "app", "image": "app:1"}]}});
/// let sidecar = br#"{"spec": {"containers": [{"name": "log", "image": "log:1"}]}}"#;
///
/// let schema = builtin_schema("", "v1", "Pod");
/// let merged = apply_patch(&pod, PatchType::StrategicMerge, sidecar, schema)?;
/// assert_eq!(merged["spec"]["containers"].as_array().map(Vec::len), Some(2));
///
/// let replaced = apply_patch(&pod, PatchType::Merge, sidecar, None)?;
/// assert_eq!(replaced["spec"]["containers"], json!([{"name": "log", "image": "log:1"}]));
/// # Ok::<(), flotilla_core::patch::PatchError>(())
/// ```
pub fn apply_patch(
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
    schema: Option<&MergeSchema>,
) -> Result<Value> {
    match patch_type {
        PatchType::Json => json::apply_json_patch(original, patch),
        PatchType::Merge => {
            let patch = parse_object(patch, patch_type)?;
            let mut patched = original.clone();
            json_patch::merge(&mut patched, &patch);
            Ok(patched)
        }
        PatchType::StrategicMerge => {
            let patch = parse_object(patch, patch_type)?;
            strategic::apply(original, &patch, schema)
        }
        PatchType::Apply => Err(PatchError::ApplyNotSupported),
    }
}

/// Parses a JSON body.
fn parse_json(body: &[u8], patch_type: PatchType) -> Result<Value> {
    serde_json::from_slice(body).map_err(|source| PatchError::NotJson {
        patch_type,
        line: source.line(),
        column: source.column(),
        source,
    })
}

/// Parses a JSON body that must be an object.
fn parse_object(body: &[u8], patch_type: PatchType) -> Result<Value> {
    let value = parse_json(body, patch_type)?;
    if !value.is_object() {
        return Err(PatchError::WrongShape {
            patch_type,
            expected: "object",
            found: error::type_name(&value),
        });
    }
    Ok(value)
}
