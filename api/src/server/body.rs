//! Request bodies: size limits, media types, and decoding errors that say where parsing failed.

use axum::body::Body;
use bytes::Bytes;
use flotilla_core::object::DynamicObject;
use flotilla_core::registry::{DeleteOptions, Precondition};
use http::HeaderMap;
use serde::Deserialize;

use super::query::parse_propagation;
use super::{Error, Result, protobuf};

/// The media types a request body may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (also the default when no type is given).
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/vnd.kubernetes.protobuf` (kubectl's typed clients), transcoded to JSON.
    Protobuf,
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read(body: Body, limit: usize) -> Result<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports an exceeded limit as a length-limit error in its source chain.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return Error::PayloadTooLarge { limit };
            }
            source = s.source();
        }
        Error::BadRequest(format!("reading the request body: {e}"))
    })
}

/// The media type of a body from its `Content-Type` (JSON when absent).
pub(crate) fn format(headers: &HeaderMap) -> Result<Format> {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let ct = ct.to_str().unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "" | "application/json" | "*/*" => Ok(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(Format::Yaml),
        protobuf::MEDIA_TYPE => Ok(Format::Protobuf),
        _ => Err(Error::UnsupportedMediaType(ct.to_string())),
    }
}

/// Decodes an object from a body in `format`; errors say where parsing stopped.
pub(crate) fn object(bytes: &[u8], format: Format) -> Result<DynamicObject> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest("the request body is empty; an object was expected".into()));
    }
    match format {
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("the request body is not a valid JSON object: {e}"))),
        Format::Yaml => serde_yaml_ng::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("the request body is not a valid YAML object: {e}"))),
        Format::Protobuf => serde_json::from_value(protobuf::to_json(bytes)?)
            .map_err(|e| Error::BadRequest(format!("the protobuf request body is not a valid object: {e}"))),
    }
}

/// Decodes any JSON or YAML document (the bodies of bindings, evictions and reviews).
pub(crate) fn document<T: for<'de> Deserialize<'de>>(bytes: &[u8], format: Format, what: &str) -> Result<T> {
    match format {
        Format::Json => serde_json::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("the request body is not a valid {what}: {e}"))),
        Format::Yaml => serde_yaml_ng::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("the request body is not a valid {what}: {e}"))),
        Format::Protobuf => serde_json::from_value(protobuf::to_json(bytes)?)
            .map_err(|e| Error::BadRequest(format!("the protobuf request body is not a valid {what}: {e}"))),
    }
}

/// The wire form of `DeleteOptions` (meta/v1), as kubectl sends it in DELETE bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptionsBody {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
    preconditions: Option<PreconditionsBody>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreconditionsBody {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Merges a DeleteOptions body (if any) into the options from the query: the body wins
/// where both say something, as in Kubernetes.
pub(crate) fn delete_options(bytes: &[u8], format: Format, mut opts: DeleteOptions) -> Result<DeleteOptions> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(opts);
    }
    let b: DeleteOptionsBody = document(bytes, format, "DeleteOptions")?;
    if let Some(g) = b.grace_period_seconds {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = b.propagation_policy {
        opts.propagation_policy = Some(parse_propagation(&p).ok_or_else(|| {
            Error::BadRequest(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
            ))
        })?);
    } else if b.orphan_dependents == Some(true) {
        opts.propagation_policy = Some(flotilla_core::registry::PropagationPolicy::Orphan);
    }
    if let Some(p) = b.preconditions {
        opts.preconditions = Precondition { uid: p.uid, resource_version: p.resource_version };
    }
    for d in &b.dry_run {
        if d != "All" {
            return Err(Error::BadRequest(format!(
                "DeleteOptions.dryRun: Unsupported value: {d:?}: supported values: \"All\""
            )));
        }
        opts.dry_run = true;
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_say_where() {
        let err = object(b"{\"kind\": \"Pod\",\n \"metadata\": [}", Format::Json).expect_err("bad json");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        let err = object(b"kind: Pod\nmetadata: [a\n", Format::Yaml).expect_err("bad yaml");
        assert!(err.to_string().contains("line"), "{err}");
        assert!(object(b"  ", Format::Json).is_err());
    }

    #[test]
    fn yaml_objects_decode() -> Result<()> {
        let o = object(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n", Format::Yaml)?;
        assert_eq!((o.kind.as_str(), o.name()), ("Pod", "web"));
        Ok(())
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert_eq!(format(&h).ok(), Some(Format::Json));
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/yaml; charset=utf-8"),
        );
        assert_eq!(format(&h).ok(), Some(Format::Yaml));
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        assert_eq!(format(&h).ok(), Some(Format::Protobuf));
        h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        assert!(matches!(format(&h), Err(Error::UnsupportedMediaType(_))));
    }

    #[test]
    fn delete_bodies_merge_with_the_query() -> Result<()> {
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground",
            "preconditions":{"uid":"u1"},"dryRun":["All"]}"#;
        let o = delete_options(
            body,
            Format::Json,
            DeleteOptions { grace_period_seconds: Some(3), ..Default::default() },
        )?;
        assert_eq!(o.grace_period_seconds, Some(3));
        assert_eq!(o.propagation_policy, Some(flotilla_core::registry::PropagationPolicy::Foreground));
        assert_eq!(o.preconditions.uid.as_deref(), Some("u1"));
        assert!(o.dry_run);
        let err = delete_options(br#"{"propagationPolicy":"Up"}"#, Format::Json, DeleteOptions::default())
            .expect_err("bad policy");
        assert!(err.to_string().contains("propagationPolicy"), "{err}");
        Ok(())
    }
}
