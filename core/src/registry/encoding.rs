//! Storage keys and the stored encoding of objects.
//!
//! Keys are `/registry/<group>/<resource>/<namespace>/<name>` (`core` for the core group;
//! no namespace segment for cluster-scoped kinds). Values are one format byte followed by
//! the object's JSON, stored without `resourceVersion`: that is the key's `mod_revision`,
//! set on every read.

use crate::object::{DynamicObject, ResourceType};
use crate::store::KeyValue;

use super::{Error, Result};

/// The format byte in front of every stored object.
pub const OBJECT_FORMAT: u8 = 1;

/// The key prefix of every object of `t` (in `namespace` when given).
pub(crate) fn prefix(t: &ResourceType, namespace: Option<&str>) -> String {
    match namespace.filter(|n| !n.is_empty() && t.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/", t.storage_group(), t.plural),
        None => format!("/registry/{}/{}/", t.storage_group(), t.plural),
    }
}

/// The key of one object.
pub(crate) fn key(t: &ResourceType, namespace: &str, name: &str) -> String {
    if t.namespaced {
        format!("/registry/{}/{}/{namespace}/{name}", t.storage_group(), t.plural)
    } else {
        format!("/registry/{}/{}/{name}", t.storage_group(), t.plural)
    }
}

/// Encodes an object for storage (its resourceVersion is not stored).
pub(crate) fn encode(obj: &DynamicObject) -> Result<Vec<u8>> {
    let mut obj = obj.clone();
    obj.metadata.resource_version = None;
    let mut out = vec![OBJECT_FORMAT];
    serde_json::to_writer(&mut out, &obj)
        .map_err(|e| Error::Internal(format!("encoding {}: {e}", obj.name())))?;
    Ok(out)
}

/// Decodes a stored key-value, setting resourceVersion to its mod revision.
pub(crate) fn decode(kv: &KeyValue) -> Result<DynamicObject> {
    decode_value(&String::from_utf8_lossy(&kv.key), &kv.value, kv.mod_revision)
}

/// Decodes the stored `value` of `key` (named in errors), last changed at `mod_revision`.
pub(crate) fn decode_value(key: &str, value: &[u8], mod_revision: i64) -> Result<DynamicObject> {
    let (&format, json) =
        value.split_first().ok_or_else(|| Error::Internal(format!("stored object {key} is empty")))?;
    if format != OBJECT_FORMAT {
        return Err(Error::Internal(format!(
            "stored object {key} has format {format}; this build reads format {OBJECT_FORMAT}"
        )));
    }
    let mut obj: DynamicObject = serde_json::from_slice(json)
        .map_err(|e| Error::Internal(format!("stored object {key} does not decode: {e}")))?;
    obj.metadata.resource_version = Some(mod_revision.to_string());
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Namespace, Pod};

    use super::*;
    use crate::object::Resource;

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(key(&Pod::TYPE, "default", "web"), "/registry/core/pods/default/web");
        assert_eq!(key(&Namespace::TYPE, "", "default"), "/registry/core/namespaces/default");
        assert_eq!(prefix(&Pod::TYPE, Some("default")), "/registry/core/pods/default/");
        assert_eq!(prefix(&Pod::TYPE, None), "/registry/core/pods/");
        assert_eq!(prefix(&Namespace::TYPE, Some("x")), "/registry/core/namespaces/");
    }

    /// A stored object written by format 1, checked in: later builds must read it unchanged.
    #[test]
    fn decodes_format_1_fixture() {
        let value = include_bytes!("../../tests/fixtures/object-format-1.bin");
        let kv = KeyValue {
            key: b"/registry/core/pods/default/web".to_vec(),
            create_revision: 5,
            mod_revision: 9,
            version: 2,
            value: value.to_vec(),
            lease: 0,
        };
        let obj = decode(&kv).expect("format 1 decodes");
        assert_eq!(obj.name(), "web");
        assert_eq!(obj.resource_version(), "9");
        assert_eq!(obj.uid(), "7d3c5a8e-0000-4000-8000-000000000001");
        assert_eq!(obj.data["spec"]["containers"][0]["image"], "busybox");
        assert_eq!(encode(&obj).expect("encodes"), value.to_vec(), "format 1 encodes byte for byte");
        let mut bad = value.to_vec();
        bad[0] = 2;
        let err = decode(&KeyValue { value: bad, ..kv }).expect_err("unknown format refused");
        assert!(err.to_string().contains("format 2"), "{err}");
    }
}
