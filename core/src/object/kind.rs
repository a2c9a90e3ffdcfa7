//! Per-kind behaviour ([`Kind`]) and the [`KindRegistry`] that maps a resource to it.
//!
//! The registry works on [`DynamicObject`]s; a [`KindStrategy`] is the object-safe view of a
//! kind it calls: [`TypedKind`] adapts any Rust type implementing [`Kind`], and
//! [`SchemalessKind`] serves a kind with no Rust type (every field kept as written).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::table::{self, Column};
use super::{DynamicObject, Resource, ResourceType};
use crate::validation::{ErrorList, FieldError, FieldPath};

/// What a kind adds to the registry's generic object handling. Every method has a default
/// that does nothing, so a user kind may implement only what it needs.
pub trait Kind: Resource {
    /// Fills in defaults, on create and on update, before validation.
    fn set_defaults(&mut self) {}

    /// Checks the object (`old` is the stored object on update): every problem, each with
    /// its field path. Metadata is checked by the registry for every kind.
    fn validate(&self, _old: Option<&Self>) -> ErrorList {
        ErrorList::default()
    }

    /// Field values a field selector may name besides `metadata.name` and
    /// `metadata.namespace`, e.g. `("spec.nodeName", ...)` for pods.
    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The names [`selectable_fields`](Self::selectable_fields) returns, so a bad field
    /// selector is refused before any object is read.
    fn selectable_field_names() -> &'static [&'static str] {
        &[]
    }

    /// The kind's table columns after `Name` (what `kubectl get` shows); `Age` goes after the
    /// default-view ones (priority 0, listed first) and before the `-o wide` ones, unless the
    /// kind lists [`table::AGE`] itself (its cell there is a placeholder the server fills).
    fn printer_columns() -> &'static [Column] {
        &[]
    }

    /// The cells of [`printer_columns`](Self::printer_columns) for this object.
    fn printer_cells(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// The registry's object-safe view of one kind.
pub trait KindStrategy: Send + Sync + 'static {
    /// The kind's names and scope.
    fn resource_type(&self) -> ResourceType;

    /// Decodes the object as the kind, applies defaults and encodes it again: fields the kind
    /// does not know are dropped and their paths returned (for strict field validation and
    /// warnings). Decoding errors name the field.
    fn normalize(&self, obj: DynamicObject) -> Result<(DynamicObject, Vec<String>), ErrorList>;

    /// The kind's own validation (the registry checks metadata itself).
    fn validate(&self, obj: &DynamicObject, old: Option<&DynamicObject>) -> ErrorList;

    /// Values of the kind's selectable fields (without the metadata ones).
    fn selectable_fields(&self, obj: &DynamicObject) -> BTreeMap<String, String>;

    /// The names of the kind's selectable fields (without the metadata ones).
    fn selectable_field_names(&self) -> &'static [&'static str];

    /// Every table column: `Name`, the kind's own, with `Age` among them.
    fn columns(&self) -> Vec<Column> {
        vec![table::NAME, table::AGE]
    }

    /// The table row of `obj` seen at `now`, one cell per [`columns`](Self::columns) entry.
    fn row(&self, obj: &DynamicObject, now: &Time) -> Vec<Value> {
        vec![Value::String(obj.name().into()), table::age(obj.metadata.creation_timestamp.as_ref(), now)]
    }
}

/// A [`KindStrategy`] for a Rust type implementing [`Kind`].
pub struct TypedKind<K>(PhantomData<fn() -> K>);

impl<K> Default for TypedKind<K> {
    fn default() -> Self {
        TypedKind(PhantomData)
    }
}

impl<K: Kind> TypedKind<K> {
    fn decode(obj: &DynamicObject) -> Result<K, ErrorList> {
        obj.to_typed::<K>().map_err(|e| {
            let mut errs = ErrorList::default();
            errs.push(FieldError::invalid(FieldPath::new("body"), Value::Null, e.source.to_string()));
            errs
        })
    }
}

impl<K: Kind> KindStrategy for TypedKind<K> {
    fn resource_type(&self) -> ResourceType {
        K::TYPE
    }

    fn normalize(&self, obj: DynamicObject) -> Result<(DynamicObject, Vec<String>), ErrorList> {
        let before = obj.to_value();
        let mut typed = Self::decode(&obj)?;
        typed.set_defaults();
        let after = DynamicObject::from_typed(&typed).map_err(|e| {
            let mut errs = ErrorList::default();
            errs.push(FieldError::internal(FieldPath::new("body"), e.to_string()));
            errs
        })?;
        let mut unknown = Vec::new();
        unknown_fields(&before, &after.to_value(), "", &mut unknown);
        Ok((after, unknown))
    }

    fn validate(&self, obj: &DynamicObject, old: Option<&DynamicObject>) -> ErrorList {
        let new = match Self::decode(obj) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let old = old.and_then(|o| Self::decode(o).ok());
        new.validate(old.as_ref())
    }

    fn selectable_fields(&self, obj: &DynamicObject) -> BTreeMap<String, String> {
        Self::decode(obj)
            .map(|k| k.selectable_fields().into_iter().map(|(n, v)| (n.to_string(), v)).collect())
            .unwrap_or_default()
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        K::selectable_field_names()
    }

    fn columns(&self) -> Vec<Column> {
        let mut c = vec![table::NAME];
        c.extend_from_slice(K::printer_columns());
        if !K::printer_columns().contains(&table::AGE) {
            c.insert(age_position::<K>(), table::AGE);
        }
        c
    }

    fn row(&self, obj: &DynamicObject, now: &Time) -> Vec<Value> {
        let mut r = vec![Value::String(obj.name().into())];
        let cells = Self::decode(obj).map(|k| k.printer_cells()).unwrap_or_default();
        let n = K::printer_columns().len();
        r.extend(cells.into_iter().chain(std::iter::repeat(Value::Null)).take(n));
        let age = table::age(obj.metadata.creation_timestamp.as_ref(), now);
        match K::printer_columns().iter().position(|c| *c == table::AGE) {
            Some(i) => r[1 + i] = age,
            None => r.insert(age_position::<K>(), age),
        }
        r
    }
}

/// Where `Age` goes when the kind does not place it itself (by listing [`table::AGE`] among
/// its columns, with a placeholder cell): after the default-view columns and before the
/// `-o wide` ones, as kubectl prints pods (`... RESTARTS AGE IP NODE`).
fn age_position<K: Kind>() -> usize {
    1 + K::printer_columns().iter().take_while(|c| c.priority == 0).count()
}

/// A kind with no Rust type: objects are kept exactly as written.
pub struct SchemalessKind(pub ResourceType);

impl KindStrategy for SchemalessKind {
    fn resource_type(&self) -> ResourceType {
        self.0
    }

    fn normalize(&self, obj: DynamicObject) -> Result<(DynamicObject, Vec<String>), ErrorList> {
        Ok((obj, Vec::new()))
    }

    fn validate(&self, _obj: &DynamicObject, _old: Option<&DynamicObject>) -> ErrorList {
        ErrorList::default()
    }

    fn selectable_fields(&self, _obj: &DynamicObject) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Collects paths present (and not null) in `written` but missing from `kept`.
fn unknown_fields(written: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (written, kept) {
        (Value::Object(w), Value::Object(k)) => {
            for (name, wv) in w {
                let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match k.get(name) {
                    Some(kv) => unknown_fields(wv, kv, &p, out),
                    None if !wv.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(w), Value::Array(k)) => {
            for (i, (wv, kv)) in w.iter().zip(k).enumerate() {
                unknown_fields(wv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Why a kind could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    /// Another kind already uses the resource name in that group.
    #[error("resource {plural}.{group} is already registered")]
    Duplicate {
        /// The group.
        group: &'static str,
        /// The resource name.
        plural: &'static str,
    },
}

/// Every kind the registry serves, looked up by group and resource name, by group and kind,
/// or by a short name.
#[derive(Clone, Default)]
pub struct KindRegistry {
    by_resource: BTreeMap<(&'static str, &'static str), Arc<dyn KindStrategy>>,
}

impl std::fmt::Debug for KindRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_resource.keys()).finish()
    }
}

impl KindRegistry {
    /// A registry of the built-in kinds.
    pub fn builtin() -> Self {
        let mut r = KindRegistry::default();
        super::builtin::register_all(&mut r);
        r
    }

    /// Adds a Rust kind.
    pub fn register<K: Kind>(&mut self) -> Result<(), KindError> {
        self.register_strategy(Arc::new(TypedKind::<K>::default()))
    }

    /// Adds a kind given as a strategy (for example a [`SchemalessKind`]).
    pub fn register_strategy(&mut self, s: Arc<dyn KindStrategy>) -> Result<(), KindError> {
        let t = s.resource_type();
        if self.by_resource.contains_key(&(t.group, t.plural)) {
            return Err(KindError::Duplicate { group: t.group, plural: t.plural });
        }
        self.by_resource.insert((t.group, t.plural), s);
        Ok(())
    }

    /// The kind serving `plural` in `group`.
    pub fn get(&self, group: &str, plural: &str) -> Option<&Arc<dyn KindStrategy>> {
        self.by_resource.iter().find(|((g, p), _)| *g == group && *p == plural).map(|(_, s)| s)
    }

    /// The kind named `kind` in `group`.
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&Arc<dyn KindStrategy>> {
        self.by_resource.values().find(|s| {
            let t = s.resource_type();
            t.group == group && t.kind == kind
        })
    }

    /// Every registered kind's type.
    pub fn types(&self) -> impl Iterator<Item = ResourceType> + '_ {
        self.by_resource.values().map(|s| s.resource_type())
    }
}
