//! Server-side apply: field sets, managed fields and conflicts.
//!
//! This is the data model of Kubernetes' server-side apply (the `structured-merge-diff`
//! library), as pure functions over JSON objects:
//!
//! - [`Path`] and [`PathElement`] name one field (`.spec.containers[name="c"].image`);
//!   [`FieldSet`] is a set of them, with set algebra and the `FieldsV1` encoding
//!   ([`FieldSet::to_fields_v1`], [`FieldSet::from_fields_v1`]).
//! - [`FieldSet::from_object`] is the set of fields an object or an apply configuration
//!   specifies, following the kind's [`MergeSchema`](crate::patch::MergeSchema).
//! - [`ManagedFields`] decodes and encodes `metadata.managedFields`: one [`FieldSet`] per
//!   manager, operation and subresource.
//! - [`update`] records who changed what in an ordinary write; [`apply`] merges an apply
//!   configuration into the live object, prunes what the manager stopped applying, and fails
//!   with [`Conflicts`] when it would change another manager's fields (unless forced).
//!
//! # Differences from Kubernetes
//!
//! The schema is the strategic-merge one ([`builtin_schema`](crate::patch::builtin_schema)),
//! which knows less than Kubernetes' OpenAPI schemas:
//!
//! - Every object is treated as a struct: a field is a member only when its value is a leaf (a
//!   scalar, an atomic list, `null` or `{}`). Kubernetes also makes each key of a declared
//!   `map` a member; for maps of scalars (`labels`, `data`) the result is the same.
//!   Structs Kubernetes marks atomic (`spec.selector`) are granular here.
//! - Lists merged by key have one key field (the strategic-merge `patchMergeKey`): container
//!   `ports` are keyed by `containerPort` alone, where Kubernetes keys them by
//!   `containerPort` and `protocol`. A keyed list with an item that lacks its key, or with two
//!   items of the same key, is treated as atomic.
//! - `status` is never owned through the main resource, and the status subresource is not
//!   modelled yet: [`update`] and [`apply`] act for the main resource only.
//! - Managers are told apart by name, operation and subresource; Kubernetes also separates
//!   `Update` entries by API version (Flotilla serves one version per kind).
//! - Encoded key elements are plain JSON; Go escapes `<`, `>` and `&` in them.

mod fields_v1;
mod managed;
mod object;
mod ops;
mod path;
mod set;

#[cfg(test)]
mod tests;

pub use managed::{ManagedFields, ManagedSet, ManagerId, Operation};
pub use ops::{Conflict, Conflicts, apply, update};
pub use path::{Path, PathElement};
pub use set::FieldSet;

/// The apply module's result type.
pub type Result<T, E = ApplyError> = std::result::Result<T, E>;

/// Why managed fields could not be read, or an apply could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A `FieldsV1` value is malformed.
    #[error("invalid fieldsV1 at {at}: {reason}")]
    FieldsV1 {
        /// The path of the node holding the bad key (empty for the root).
        at: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `managedFields` entry is malformed.
    #[error("invalid managedFields entry {index} (manager {manager:?}): {reason}")]
    ManagedFieldsEntry {
        /// The entry's position in the list, from 0.
        index: usize,
        /// The entry's manager.
        manager: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `fieldsV1` of a `managedFields` entry is malformed.
    #[error("managedFields entry {index} (manager {manager:?}) has an invalid fieldsV1")]
    EntryFields {
        /// The entry's position in the list, from 0.
        index: usize,
        /// The entry's manager.
        manager: String,
        /// What is wrong with it.
        #[source]
        source: Box<ApplyError>,
    },
    /// Two `managedFields` entries for the same manager, operation and subresource.
    #[error("duplicate managedFields entries for {0}")]
    DuplicateManager(ManagerId),
    /// An apply would change fields other managers own.
    #[error(transparent)]
    Conflicts(#[from] Conflicts),
}
