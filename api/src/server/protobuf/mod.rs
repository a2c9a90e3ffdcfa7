//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`,
//! what kubectl's typed clients send), turned into the JSON form the rest of the server uses.
//!
//! Kubernetes wraps a protobuf object in an envelope: the magic bytes `k8s\0`, then a
//! `runtime.Unknown` message whose `typeMeta` names the object's `apiVersion` and `kind` and
//! whose `raw` field holds the object's own message. The object is decoded with the schema
//! of Kubernetes' `generated.proto` files (shipped by the `k8s-rs-pb` crate, compiled into a
//! descriptor set by `build.rs`, see [`catalog`]) and walked generically with `prost-reflect`
//! ([`transcode`]). Responses stay JSON.

mod catalog;
mod transcode;

#[cfg(test)]
mod tests;

use serde_json::Value;

use super::{Error, Result};

/// The media type of Kubernetes' protobuf encoding.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// `runtime.Unknown`, the envelope (field numbers of apimachinery's `runtime/generated.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

/// Whether a `Content-Type` names the protobuf encoding.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// The object in a protobuf body as Kubernetes' JSON, with its `apiVersion` and `kind`.
///
/// A body that is not a well-formed envelope or object is a 400 saying where decoding
/// failed; a kind without a known protobuf schema, or an envelope whose content is
/// compressed or not protobuf, is a 415 naming it.
pub(crate) fn to_json(bytes: &[u8]) -> Result<Value> {
    let body = bytes.strip_prefix(MAGIC).ok_or_else(|| {
        Error::BadRequest("the protobuf body does not start with Kubernetes' magic bytes \"k8s\\0\"".into())
    })?;
    let envelope = <Unknown as prost::Message>::decode(body).map_err(|e| {
        Error::BadRequest(format!("the protobuf envelope (runtime.Unknown) does not decode: {e}"))
    })?;
    let tm = envelope.type_meta.unwrap_or_default();
    let (api_version, kind) = (tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default());
    if kind.is_empty() || api_version.is_empty() {
        return Err(Error::BadRequest(format!(
            "the protobuf envelope must name the object's apiVersion and kind (got apiVersion {api_version:?}, kind {kind:?})"
        )));
    }
    if let Some(enc) = envelope.content_encoding.filter(|e| !e.is_empty()) {
        return Err(Error::UnsupportedMediaType(format!(
            "{MEDIA_TYPE} with contentEncoding {enc:?} (only unencoded objects are supported)"
        )));
    }
    if let Some(ct) = envelope.content_type.filter(|c| !c.is_empty() && !is_protobuf(c)) {
        return Err(Error::UnsupportedMediaType(format!("{MEDIA_TYPE} wrapping contentType {ct:?}")));
    }
    let descriptor = catalog::catalog().message(&api_version, &kind).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "{MEDIA_TYPE} for {api_version} {kind}, which has no known protobuf schema; send it as application/json"
        ))
    })?;
    let raw = envelope.raw.unwrap_or_default();
    let object = prost_reflect::DynamicMessage::decode(descriptor.clone(), raw.as_slice()).map_err(|e| {
        Error::BadRequest(format!(
            "the protobuf {api_version} {kind} does not decode as {}: {e}",
            descriptor.full_name()
        ))
    })?;
    let mut json = transcode::message(&object, "")
        .map_err(|e| Error::BadRequest(format!("the protobuf {api_version} {kind} is not valid: {e}")))?;
    if let Value::Object(map) = &mut json {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(json)
}

/// A SelfSubjectAccessReview sent in protobuf (by `kubectl auth can-i`), as JSON.
pub(crate) fn self_subject_access_review(bytes: &[u8]) -> Result<Value> {
    let v = to_json(bytes)?;
    match v.get("kind").and_then(Value::as_str) {
        Some("SelfSubjectAccessReview") => Ok(v),
        other => Err(Error::BadRequest(format!("expected a SelfSubjectAccessReview, got {other:?}"))),
    }
}
