//! [`DynamicObject`]: any kind's object as JSON with typed metadata, the form the registry
//! stores, patches and serves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::Resource;

/// An object of any kind: `apiVersion`, `kind`, typed `metadata`, and every other top-level
/// field (`spec`, `status`, `data`, ...) as JSON.
///
/// It deserializes from a map only, as the derived form with `#[serde(flatten)]` would, but
/// without that form's cost: flattening buffers every other field in serde's generic
/// `Content` tree before building its JSON value, which made decoding a stored pod take
/// about 1.5 times as long (`benches/benches/dynamic.rs` compares the two).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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

impl<'de> Deserialize<'de> for DynamicObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Reads an object's fields straight into a [`DynamicObject`].
struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = DynamicObject;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DynamicObject, A::Error> {
        let mut obj = DynamicObject::default();
        let (mut api_version, mut kind, mut metadata) = (false, false, false);
        let once = |seen: &mut bool, name: &'static str| {
            if std::mem::replace(seen, true) { Err(A::Error::duplicate_field(name)) } else { Ok(()) }
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => {
                    once(&mut api_version, "apiVersion")?;
                    obj.api_version = map.next_value()?;
                }
                "kind" => {
                    once(&mut kind, "kind")?;
                    obj.kind = map.next_value()?;
                }
                "metadata" => {
                    once(&mut metadata, "metadata")?;
                    obj.metadata = map.next_value()?;
                }
                _ => {
                    let value = map.next_value()?;
                    obj.data.insert(key, value);
                }
            }
        }
        Ok(obj)
    }
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
        // One JSON tree, taken apart: its other fields move into `data` as they are.
        let mut data = match serde_json::to_value(obj).map_err(err)? {
            Value::Object(map) => map,
            other => return Err(err(serde_json::Error::invalid_type(unexpected(&other), &"an object"))),
        };
        let metadata = match data.remove("metadata") {
            Some(m) => serde_json::from_value(m).map_err(err)?,
            None => ObjectMeta::default(),
        };
        data.remove("apiVersion");
        data.remove("kind");
        Ok(DynamicObject {
            api_version: K::TYPE.api_version(),
            kind: K::TYPE.kind.to_string(),
            metadata,
            data,
        })
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

/// What serde calls a JSON value that is not an object, for an error message.
fn unexpected(v: &Value) -> serde::de::Unexpected<'_> {
    use serde::de::Unexpected;
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("a number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
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

    /// The hand-written decoding agrees with the derived, flattened form it replaced: the
    /// same objects, and refusals of the same inputs.
    #[test]
    fn decoding_matches_the_flattened_derive() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Flattened {
            #[serde(rename = "apiVersion", default)]
            api_version: String,
            #[serde(default)]
            kind: String,
            #[serde(default)]
            metadata: ObjectMeta,
            #[serde(flatten)]
            data: Map<String, Value>,
        }
        let inputs = [
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"x":"y"}},"spec":{"n":[1,2.5,-3]},"status":null}"#,
            r#"{"spec":{},"kind":"Pod"}"#,
            r#"{}"#,
            r#"{"metadata":null}"#,
            r#"{"kind":1}"#,
            r#"{"kind":"A","kind":"B"}"#,
            r#"{"metadata":{},"metadata":{}}"#,
            r#"{"x":1,"x":2}"#,
            r#"[]"#,
            r#"{"big":44444444444444444444444444444}"#,
        ];
        for input in inputs {
            let ours = serde_json::from_str::<DynamicObject>(input);
            let derived = serde_json::from_str::<Flattened>(input);
            match (ours, derived) {
                (Ok(o), Ok(d)) => assert_eq!(
                    (o.api_version, o.kind, o.metadata, o.data),
                    (d.api_version, d.kind, d.metadata, d.data),
                    "{input}"
                ),
                (Err(_), Err(_)) => {}
                (o, d) => panic!("{input}: ours {o:?}, derived {d:?}"),
            }
        }
        let yaml: DynamicObject = serde_yaml_ng::from_str("kind: Pod\nspec:\n  a: 1\n").expect("YAML");
        assert_eq!((yaml.kind.as_str(), &yaml.data["spec"]["a"]), ("Pod", &serde_json::json!(1)));
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
