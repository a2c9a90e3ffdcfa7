//! The few protobuf bodies kubectl's typed clients send (`kubectl auth can-i` posts its
//! SelfSubjectAccessReview as `application/vnd.kubernetes.protobuf`), decoded into the JSON
//! form the rest of the server uses. Other kinds in protobuf get 415.
//!
//! Kubernetes wraps a protobuf object in an envelope: the magic bytes `k8s\0`, then a
//! `runtime.Unknown` whose `raw` field holds the object's own message. The field numbers
//! below are those of Kubernetes' published `generated.proto` files.

use serde_json::{Map, Value, json};

use super::{Error, Result};

/// The media type of Kubernetes' protobuf encoding.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// `authorization.k8s.io/v1` SelfSubjectAccessReview (metadata and status skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct SelfSubjectAccessReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<ReviewSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

/// Whether a `Content-Type` names the protobuf encoding.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// The object inside a protobuf envelope, with its `apiVersion` and `kind`.
fn unwrap(bytes: &[u8]) -> Result<(String, String, Vec<u8>)> {
    let body = bytes.strip_prefix(MAGIC).ok_or_else(|| {
        Error::BadRequest("the protobuf body does not start with Kubernetes' magic bytes \"k8s\\0\"".into())
    })?;
    let u = <Unknown as prost::Message>::decode(body)
        .map_err(|e| Error::BadRequest(format!("the protobuf envelope does not decode: {e}")))?;
    let tm = u.type_meta.unwrap_or_default();
    Ok((tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default(), u.raw))
}

/// A SelfSubjectAccessReview sent in protobuf, as JSON.
pub(crate) fn self_subject_access_review(bytes: &[u8]) -> Result<Value> {
    let (api_version, kind, raw) = unwrap(bytes)?;
    if kind != "SelfSubjectAccessReview" {
        return Err(Error::BadRequest(format!("expected a SelfSubjectAccessReview, got {kind:?}")));
    }
    let r = <SelfSubjectAccessReview as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::BadRequest(format!("the SelfSubjectAccessReview does not decode: {e}")))?;
    let spec = r.spec.unwrap_or_default();
    let mut s = Map::new();
    if let Some(a) = spec.resource_attributes {
        let fields = [
            ("namespace", a.namespace),
            ("verb", a.verb),
            ("group", a.group),
            ("version", a.version),
            ("resource", a.resource),
            ("subresource", a.subresource),
            ("name", a.name),
        ];
        s.insert("resourceAttributes".into(), object(fields));
    }
    if let Some(a) = spec.non_resource_attributes {
        s.insert("nonResourceAttributes".into(), object([("path", a.path), ("verb", a.verb)]));
    }
    Ok(json!({ "apiVersion": api_version, "kind": kind, "spec": Value::Object(s) }))
}

fn object<const N: usize>(fields: [(&str, Option<String>); N]) -> Value {
    Value::Object(
        fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), Value::String(v)))).collect(),
    )
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn can_i_reviews_decode() -> Result<()> {
        let review = SelfSubjectAccessReview {
            spec: Some(ReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("default".into()),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let envelope = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("authorization.k8s.io/v1".into()),
                kind: Some("SelfSubjectAccessReview".into()),
            }),
            raw: review.encode_to_vec(),
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend(envelope.encode_to_vec());
        let v = self_subject_access_review(&bytes)?;
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "list", "resource": "pods"})
        );
        assert!(self_subject_access_review(b"nope").is_err());
        assert!(is_protobuf("application/vnd.kubernetes.protobuf; charset=x"));
        Ok(())
    }
}
