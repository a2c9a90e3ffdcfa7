//! Responses: JSON bodies with `Warning` headers, content negotiation for Table output, and
//! errors as `Status` objects.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

use super::query::Query;
use super::{Error, Result};

/// What the client asked to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table with the kind's printer columns.
    Table(IncludeObject),
}

/// What each Table row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// The object's metadata as a PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// Picks the output from the `Accept` header: the first acceptable media range wins, and
/// a Table is served only when asked for as `application/json;as=Table;g=meta.k8s.io;v=v1`
/// (or `v1beta1`, answered with v1, whose shape is the same).
pub(crate) fn negotiate(headers: &HeaderMap, query: &Query) -> Result<Output> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Output::Object);
    };
    let mut saw_any = false;
    for range in accept.split(',') {
        saw_any = true;
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
            .collect();
        let param = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => {}
            _ => continue,
        }
        match param("as") {
            None => return Ok(Output::Object),
            Some("Table")
                if param("g") == Some("meta.k8s.io") && matches!(param("v"), Some("v1" | "v1beta1")) =>
            {
                let include = match query.get("includeObject") {
                    None | Some("Metadata") => IncludeObject::Metadata,
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    Some(other) => {
                        return Err(Error::BadRequest(format!(
                            "invalid value {other:?} for query parameter includeObject: must be None, Metadata or Object"
                        )));
                    }
                };
                return Ok(Output::Table(include));
            }
            // Other conversions (PartialObjectMetadata, ...) are not served: try the next range.
            Some(_) => continue,
        }
    }
    if saw_any && !accept.trim().is_empty() {
        Err(Error::NotAcceptable(accept.to_string()))
    } else {
        Ok(Output::Object)
    }
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(code: StatusCode, body: &T, warnings: &[String]) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = code;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            add_warnings(r.headers_mut(), warnings);
            r
        }
        Err(e) => Error::Internal(format!("encoding the response: {e}")).into_response(),
    }
}

/// Adds one `Warning: 299 - "..."` header per warning, as kube-apiserver does.
pub(crate) fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for w in warnings {
        let text: String = w
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            headers.append(header::WARNING, v);
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.to_status();
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json(code, &StatusBody(status), &[]);
        if let Error::TooManyRequests { retry_after_seconds } = self {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        if matches!(self, Error::Unauthorized(_)) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A `Status` with its `kind` and `apiVersion` (k8s-openapi's type leaves them out).
pub(crate) struct StatusBody(pub(crate) k8s_openapi::apimachinery::pkg::apis::meta::v1::Status);

impl Serialize for StatusBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.0).map_err(serde::ser::Error::custom)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("kind".into(), "Status".into());
            m.insert("apiVersion".into(), "v1".into());
            m.entry("metadata").or_insert_with(|| serde_json::json!({}));
        }
        v.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() -> Result<()> {
        let q = Query::default();
        let kubectl = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(negotiate(&kubectl, &q)?, Output::Table(IncludeObject::Metadata));
        assert_eq!(negotiate(&accept("application/json"), &q)?, Output::Object);
        assert_eq!(negotiate(&HeaderMap::new(), &q)?, Output::Object);
        assert_eq!(negotiate(&accept("application/vnd.kubernetes.protobuf, */*"), &q)?, Output::Object);
        assert_eq!(
            negotiate(
                &accept("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"),
                &q
            )?,
            Output::Object
        );
        let q = Query::parse(Some("includeObject=Object"));
        assert_eq!(
            negotiate(&accept("application/json;as=Table;v=v1;g=meta.k8s.io"), &q)?,
            Output::Table(IncludeObject::Object)
        );
        assert!(matches!(
            negotiate(&accept("application/vnd.kubernetes.protobuf"), &Query::default()),
            Err(Error::NotAcceptable(_))
        ));
        Ok(())
    }

    #[test]
    fn warnings_are_quoted() {
        let mut h = HeaderMap::new();
        add_warnings(&mut h, &["unknown field \"spec.foo\"".to_string()]);
        assert_eq!(
            h.get(header::WARNING).and_then(|v| v.to_str().ok()),
            Some(r#"299 - "unknown field \"spec.foo\"""#)
        );
    }
}
