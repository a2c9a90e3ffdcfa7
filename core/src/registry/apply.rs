//! Server-side apply in the registry, and the `managedFields` every tracked write keeps.

use serde_json::{Value, json};

use super::options::{Subresource, WriteOptions};
use super::{Error, Registry, Result, Written, error::qualified};
use crate::apply::{ManagedFields, apply, update};
use crate::object::{DynamicObject, ResourceType};
use crate::patch::builtin_schema;

/// How many times an apply re-reads and retries after losing a race.
const MAX_APPLY_RETRIES: usize = 8;

fn decode_managed(obj: &DynamicObject) -> ManagedFields {
    ManagedFields::decode(obj.metadata.managed_fields.as_deref().unwrap_or(&[])).unwrap_or_else(|e| {
        tracing::warn!(object = obj.name(), error = %e, "unreadable managedFields; starting afresh");
        ManagedFields::default()
    })
}

fn set_managed(obj: &mut DynamicObject, managed: &ManagedFields) {
    let entries = managed.encode();
    obj.metadata.managed_fields = (!entries.is_empty()).then_some(entries);
}

impl Registry {
    /// Records `manager`'s ordinary write of `new` over `old` (`None` for a create) in
    /// `new`'s managedFields.
    pub(crate) fn track_update(
        &self,
        t: &ResourceType,
        manager: &str,
        old: Option<&DynamicObject>,
        new: &mut DynamicObject,
    ) {
        let schema = builtin_schema(t.group, t.version, t.kind);
        let mut managed = old.map(decode_managed).unwrap_or_default();
        let before = old.map_or(Value::Null, DynamicObject::to_value);
        update(&mut managed, manager, &before, &new.to_value(), schema, self.now());
        set_managed(new, &managed);
    }

    /// Server-side apply (`PatchType::Apply`): merges the apply configuration `body` (YAML
    /// or JSON) for `opts.field_manager`, creating the object if it does not exist. Fields
    /// another manager owns and the configuration changes are a 409 Conflict naming them,
    /// unless `opts.force`.
    pub(crate) async fn server_side_apply(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let manager = opts
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Error::BadRequest("fieldManager is required for apply requests".into()))?;
        let config: Value = serde_yaml_ng::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("the apply configuration does not parse: {e}")))?;
        if !config.is_object() {
            return Err(Error::BadRequest("the apply configuration must be an object".into()));
        }
        let config_name = config.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(name);
        if config_name != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        let schema = builtin_schema(t.group, t.version, t.kind);
        let conflict = |c: crate::apply::Conflicts| Error::Conflict {
            resource: qualified(t),
            name: name.to_string(),
            reason: c.to_string(),
        };
        let decode = |v: Value| -> Result<DynamicObject> {
            serde_json::from_value(v)
                .map_err(|e| Error::BadRequest(format!("the applied object does not decode: {e}")))
        };
        for _ in 0..MAX_APPLY_RETRIES {
            match self.read_current(t, ns, name).await {
                Err(Error::NotFound { .. }) => {
                    let mut managed = ManagedFields::default();
                    let created =
                        apply(&mut managed, manager, &json!({}), &config, schema, opts.force, self.now())
                            .map_err(conflict)?;
                    let mut obj = decode(created)?;
                    obj.metadata.name = Some(name.to_string());
                    set_managed(&mut obj, &managed);
                    // The apply's ownership is recorded; the create must not add an Update.
                    let create_opts = WriteOptions { field_manager: None, ..opts.clone() };
                    match self.create(t, Some(ns), obj, &create_opts).await {
                        Err(Error::AlreadyExists { .. }) => continue,
                        other => return other,
                    }
                }
                Err(e) => return Err(e),
                Ok(old) => {
                    let mut managed = decode_managed(&old);
                    let merged = apply(
                        &mut managed,
                        manager,
                        &old.to_value(),
                        &config,
                        schema,
                        opts.force,
                        self.now(),
                    )
                    .map_err(conflict)?;
                    let mut new = decode(merged)?;
                    set_managed(&mut new, &managed);
                    new.metadata.resource_version = None;
                    if let Some(w) = self.write_over(t, ns, name, &old, new, subresource, opts, None).await? {
                        return Ok(w);
                    }
                }
            }
        }
        Err(Error::conflict(t, name))
    }
}
