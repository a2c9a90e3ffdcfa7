//! [`DynamicObject`]: any kind's object as JSON with typed metadata, the form the registry
//! stores, patches and serves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Resource;

/// An object of any kind: `apiVersion`, `kind`, typed `metadata`, and every other top-level
/// field (`spec`, `status`, `data`, ...) as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicObject {
    /// `group/version` or `version`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// The kind.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The other top-level fields.
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

/// Why an object could not be converted between its typed and dynamic forms.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {source}")]
pub struct ConvertError {
    /// The kind being converted.
    pub kind: &'static str,
    /// The serde error, which names the field.
    #[source]
    pub source: serde_json::Error,
}

impl DynamicObject {
    /// The typed object as a dynamic one.
    pub fn from_typed<K: Resource>(obj: &K) -> Result<Self, ConvertError> {
        let err = |source| ConvertError { kind: K::TYPE.kind, source };
        let mut d: DynamicObject =
            serde_json::from_value(serde_json::to_value(obj).map_err(err)?).map_err(err)?;
        d.api_version = K::TYPE.api_version();
        d.kind = K::TYPE.kind.to_string();
        Ok(d)
    }

    /// This object as kind `K` (fields `K` does not know are dropped).
    pub fn to_typed<K: Resource>(&self) -> Result<K, ConvertError> {
        let err = |source| ConvertError { kind: K::TYPE.kind, source };
        // Through one byte buffer: much cheaper than building a `Value` tree to decode from.
        serde_json::from_slice(&serde_json::to_vec(self).map_err(err)?).map_err(err)
    }

    /// The object's name, or `""`.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The object's namespace, or `""`.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }

    /// The object's resourceVersion, or `""`.
    pub fn resource_version(&self) -> &str {
        self.metadata.resource_version.as_deref().unwrap_or("")
    }

    /// The object's uid, or `""`.
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or("")
    }

    /// The object's finalizers.
    pub fn finalizers(&self) -> &[String] {
        self.metadata.finalizers.as_deref().unwrap_or(&[])
    }

    /// Whether deletion has started (a `deletionTimestamp` is set).
    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// The whole object as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether everything but `metadata` and `status` is equal in both: what a change of
    /// bumps `generation`.
    pub fn same_spec(&self, other: &DynamicObject) -> bool {
        fn rest(o: &DynamicObject) -> Vec<(&String, &Value)> {
            let mut fields: Vec<(&String, &Value)> =
                o.data.iter().filter(|(k, _)| k.as_str() != "status").collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            fields
        }
        rest(self) == rest(other)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

    use super::*;

    #[test]
    fn typed_round_trip_keeps_every_field() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let d = DynamicObject::from_typed(&pod).expect("converts");
        assert_eq!(
            (d.api_version.as_str(), d.kind.as_str(), d.name(), d.namespace()),
            ("v1", "Pod", "web", "default")
        );
        assert_eq!(d.data["spec"]["containers"][0]["image"], "busybox");
        let back: Pod = d.to_typed().expect("converts back");
        assert_eq!(back, pod);
        let mut with_status = d.clone();
        with_status.data.insert("status".into(), serde_json::json!({"phase": "Running"}));
        assert!(d.same_spec(&with_status), "status is not spec");
        let mut other = d.clone();
        other.data.insert("spec".into(), serde_json::json!({}));
        assert!(!d.same_spec(&other));
    }

    /// Found by `fuzz/object_decode` (input `corpus/object_decode/regression-float-roundtrip`,
    /// a YAML body): an integer too large for `i64`/`u64` is kept as a float, which JSON prints
    /// as `4.4444444444444443e+77`; without correctly rounded parsing that text decoded one ulp
    /// off, so the stored object changed on every decode -> encode -> decode.
    #[test]
    fn large_numbers_survive_a_json_round_trip() {
        let body = format!("\"4nkit\": {} ", "4".repeat(78));
        let obj: DynamicObject = serde_yaml_ng::from_str(&body).expect("decodes as YAML");
        let encoded = serde_json::to_vec(&obj).expect("encodes");
        let again: DynamicObject = serde_json::from_slice(&encoded).expect("decodes as JSON");
        assert_eq!(again, obj, "{}", String::from_utf8_lossy(&encoded));
    }
}
