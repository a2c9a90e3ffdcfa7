//! The object model: what a kind is ([`ResourceType`], [`Resource`], [`Kind`]), objects of
//! any kind as [`DynamicObject`], and the [`KindRegistry`] of kinds a registry serves.
//!
//! Built-in kinds are the `k8s-openapi` types (Kubernetes' own field names and JSON form);
//! their defaults and validation live in `builtin`. A user kind implements [`Resource`] and
//! [`Kind`] and is registered like a built-in one.

mod builtin;
mod columns;
mod dynamic;
mod kind;
mod resource;
pub mod table;

pub use builtin::priority;
pub use dynamic::{ConvertError, DynamicObject};
pub use kind::{Kind, KindError, KindRegistry, KindStrategy, SchemalessKind, TypedKind};
pub use resource::{Resource, ResourceType};
