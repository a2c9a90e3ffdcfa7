//! Responses back into core's terms: a `Status` body into the [`Error`] the server
//! started from, and `Warning` headers into warning texts.
//!
//! The mapping goes by `reason` first and by HTTP code when the reason is unknown. It is
//! exact for the registry's own errors (their messages and, for `Invalid`, every field error
//! round-trip); HTTP-only failures land on the nearest variant: 401 Unauthorized becomes
//! `Forbidden` (the registry has no variant for "who are you"), other 4xx `BadRequest`,
//! 429 (once retries are exhausted) and 502 `Unavailable`, other 5xx `Internal`.

use flotilla_core::object::ResourceType;
use flotilla_core::registry::Error;
use flotilla_core::validation::{ErrorKind, ErrorList, FieldError, FieldPath};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::request::qualified;

/// How much of a body that is not a `Status` goes into an error message.
const MAX_FOREIGN_BODY: usize = 512;

/// A `Status` (meta/v1) as far as errors need it; lenient about everything else.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireStatus {
    pub(crate) code: Option<u16>,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) details: Option<WireDetails>,
}

/// `Status.details`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct WireDetails {
    pub(crate) name: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) causes: Option<Vec<WireCause>>,
    pub(crate) retry_after_seconds: Option<u32>,
}

/// `Status.details.causes[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireCause {
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) field: Option<String>,
}

/// The error a failed response stands for. `t` is the resource the request was about, used
/// where the `Status` leaves the resource out.
pub(crate) fn from_response(t: &ResourceType, code: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<WireStatus>(body) {
        Ok(s) if s.reason.is_some() || s.message.is_some() => from_status(t, code.as_u16(), s),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut = text.char_indices().nth(MAX_FOREIGN_BODY).map_or(text.len(), |(i, _)| i);
            let mut message = format!("the server answered {code}");
            if !text.is_empty() {
                message.push_str(": ");
                message.push_str(&text[..cut]);
            }
            from_status(t, code.as_u16(), WireStatus { message: Some(message), ..Default::default() })
        }
    }
}

/// The error a `Status` stands for; `code` is the HTTP code when the status has none.
pub(crate) fn from_status(t: &ResourceType, code: u16, s: WireStatus) -> Error {
    let code = s.code.unwrap_or(code);
    let message = s.message.clone().unwrap_or_default();
    let details = s.details.unwrap_or_default();
    let resource = match (details.kind.as_deref().filter(|k| !k.is_empty()), details.group.as_deref()) {
        (Some(kind), Some(group)) if !group.is_empty() => format!("{kind}.{group}"),
        (Some(kind), _) => kind.to_string(),
        (None, _) => qualified(t),
    };
    let name = details.name.clone().unwrap_or_default();
    match (s.reason.as_deref().unwrap_or_default(), code) {
        ("NotFound", _) | ("", 404) if details.name.is_some() => Error::NotFound { resource, name },
        ("NotFound", _) | ("", 404) => Error::UnknownResource { resource: qualified(t) },
        ("AlreadyExists", _) => Error::AlreadyExists { resource, name },
        ("Conflict", _) | ("", 409) => {
            let prefix = format!("Operation cannot be fulfilled on {resource} \"{name}\": ");
            let reason = message.strip_prefix(&prefix).unwrap_or(&message).to_string();
            Error::Conflict { resource, name, reason }
        }
        ("Invalid", _) | ("", 422) => {
            let kind = details.kind.clone().unwrap_or_else(|| t.kind.to_string());
            let errors = field_errors(&details.causes.unwrap_or_default(), &kind, &name, &message);
            Error::Invalid { kind, name, errors }
        }
        ("Unauthorized", _) | ("Forbidden", _) | ("", 401 | 403) => Error::Forbidden(message),
        ("Expired" | "Gone", _) | ("", 410) => Error::Expired(message),
        ("Timeout", _) | ("", 504) => Error::Timeout(message),
        ("ServiceUnavailable" | "TooManyRequests", _) | ("", 429 | 502 | 503) => Error::Unavailable(message),
        ("BadRequest", _) => Error::BadRequest(message),
        ("InternalError", _) => Error::Internal(message),
        (_, 400..=499) => Error::BadRequest(message),
        _ => Error::Internal(message),
    }
}

/// The field errors of an `Invalid` status, rebuilt from its causes so that they print as
/// the server printed them. Without causes, one error carries the message.
fn field_errors(causes: &[WireCause], kind: &str, name: &str, message: &str) -> ErrorList {
    let list: ErrorList = causes.iter().map(field_error).collect();
    if !list.is_empty() {
        return list;
    }
    let prefix = format!("{kind} \"{name}\" is invalid: ");
    let detail = message.strip_prefix(&prefix).unwrap_or(message);
    let detail = detail.strip_prefix("Invalid value: ").unwrap_or(detail);
    ErrorList::from(FieldError {
        kind: ErrorKind::Invalid,
        path: FieldPath::root(),
        detail: detail.to_string(),
        bad_value: None,
    })
}

/// One cause as a field error: the kind from its reason, the path from its field, and the
/// rest of its message as the detail (the offending value, already rendered, included).
fn field_error(c: &WireCause) -> FieldError {
    let kind = cause_kind(c.reason.as_deref().unwrap_or_default());
    let field = c.field.as_deref().unwrap_or_default();
    let message = c.message.as_deref().unwrap_or_default();
    let body = if field.is_empty() {
        message
    } else {
        message.strip_prefix(field).and_then(|m| m.strip_prefix(": ")).unwrap_or(message)
    };
    let detail = match body.strip_prefix(kind.as_str()) {
        Some("") => "",
        Some(rest) => rest.strip_prefix(": ").unwrap_or(body),
        None => body,
    };
    FieldError { kind, path: parse_path(field), detail: detail.to_string(), bad_value: None }
}

/// The kind of a `StatusCause` reason (`FieldValueRequired`, ...); `Invalid` when unknown.
fn cause_kind(reason: &str) -> ErrorKind {
    [
        ErrorKind::Required,
        ErrorKind::Invalid,
        ErrorKind::Duplicate,
        ErrorKind::NotSupported,
        ErrorKind::Forbidden,
        ErrorKind::TooLong,
        ErrorKind::TooMany,
        ErrorKind::Internal,
    ]
    .into_iter()
    .find(|k| k.cause_type() == reason)
    .unwrap_or(ErrorKind::Invalid)
}

/// Parses a field path as Kubernetes prints it (`spec.containers[0].image`,
/// `metadata.labels[example.com/app]`): bracketed numbers are indexes, other brackets keys.
pub(crate) fn parse_path(s: &str) -> FieldPath {
    let mut path = FieldPath::root();
    let mut name = String::new();
    let mut chars = s.chars();
    let flush = |path: &mut FieldPath, name: &mut String| {
        if !name.is_empty() {
            *path = path.child(std::mem::take(name));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut path, &mut name),
            '[' => {
                flush(&mut path, &mut name);
                let inner: String = chars.by_ref().take_while(|c| *c != ']').collect();
                path = match inner.parse::<usize>() {
                    // Only a number that prints back the same is an index (`[007]` is a key).
                    Ok(i) if i.to_string() == inner => path.index(i),
                    _ if inner.is_empty() => path.child(""),
                    _ => path.key(inner),
                };
            }
            c => name.push(c),
        }
    }
    flush(&mut path, &mut name);
    path
}

/// The texts of the `Warning` headers (`299 - "text"`, several per header allowed).
pub(crate) fn warnings(headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::WARNING) {
        let raw = String::from_utf8_lossy(value.as_bytes());
        match parse_warning_values(&raw) {
            Some(texts) => out.extend(texts),
            None => out.push(raw.trim().to_string()),
        }
    }
    out
}

/// `warn-code SP warn-agent SP quoted-text [SP quoted-date]`, comma-separated; `None` if the
/// header is not in that form.
fn parse_warning_values(raw: &str) -> Option<Vec<String>> {
    let mut texts = Vec::new();
    let mut rest = raw.trim_start();
    while !rest.is_empty() {
        let (code, after) = rest.split_once(' ')?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (_agent, after) = after.trim_start().split_once(' ')?;
        let (text, after) = quoted(after.trim_start())?;
        texts.push(text);
        rest = after.trim_start();
        if rest.starts_with('"') {
            // The optional warn-date.
            rest = quoted(rest)?.1.trim_start();
        }
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => {}
            None => return None,
        }
    }
    Some(texts)
}

/// A quoted string at the start of `s` (backslash escapes), and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let mut text = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?.1),
            '"' => return Some((text, &s[i + 2..])),
            c => text.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::Resource;
    use http::HeaderValue;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    /// A registry error, sent as the server sends it and read back.
    fn round_trip(t: &ResourceType, e: &Error) -> Error {
        let body = serde_json::to_vec(&e.to_status()).expect("a status encodes");
        from_response(t, StatusCode::from_u16(e.code()).expect("a valid code"), &body)
    }

    #[test]
    fn registry_errors_round_trip() {
        let errors = [
            (Pod::TYPE, Error::NotFound { resource: "pods".into(), name: "web".into() }),
            (Deployment::TYPE, Error::NotFound { resource: "deployments.apps".into(), name: "d".into() }),
            (Pod::TYPE, Error::UnknownResource { resource: "pods".into() }),
            (Pod::TYPE, Error::AlreadyExists { resource: "pods".into(), name: "web".into() }),
            (
                Deployment::TYPE,
                Error::Conflict {
                    resource: "deployments.apps".into(),
                    name: "d".into(),
                    reason: "the object has been modified; please apply your changes".into(),
                },
            ),
            (Pod::TYPE, Error::BadRequest("bad".into())),
            (Pod::TYPE, Error::Forbidden("no".into())),
            (Pod::TYPE, Error::Expired("too old resource version: 3 (7)".into())),
            (Pod::TYPE, Error::Timeout("slow".into())),
            (Pod::TYPE, Error::Unavailable("down".into())),
            (Pod::TYPE, Error::Internal("oops".into())),
        ];
        for (t, e) in errors {
            assert_eq!(round_trip(&t, &e), e);
        }
    }

    #[test]
    fn invalid_objects_keep_every_field_error() {
        let name = FieldPath::new("metadata").child("name");
        let image = FieldPath::new("spec").child("containers").index(0).child("image");
        let label = FieldPath::new("metadata").child("labels").key("example.com/app");
        let errors: ErrorList = [
            FieldError::invalid(&name, "Web_1", "a lowercase RFC 1123 subdomain must ..."),
            FieldError::required(&image, ""),
            FieldError::not_supported(
                FieldPath::new("spec").child("restartPolicy"),
                "Sometimes",
                &["Always"],
            ),
            FieldError::invalid(&label, "bad value", "must be 63 characters or less"),
            FieldError::too_long(FieldPath::new("data"), "", Some(10)),
        ]
        .into_iter()
        .collect();
        let e = Error::Invalid { kind: "Pod".into(), name: "Web_1".into(), errors: errors.clone() };
        let back = round_trip(&Pod::TYPE, &e);
        assert_eq!(back.to_string(), e.to_string());
        let Error::Invalid { kind, name: n, errors: got } = back else { panic!("not Invalid: {back:?}") };
        assert_eq!((kind.as_str(), n.as_str()), ("Pod", "Web_1"));
        for (g, want) in got.iter().zip(errors.iter()) {
            assert_eq!((g.kind, &g.path, g.to_string()), (want.kind, &want.path, want.to_string()));
        }
        assert_eq!(got.len(), errors.len());
    }

    #[test]
    fn invalid_without_causes_keeps_the_message() {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                          "reason": "Invalid", "message": "the review is invalid"});
        let e = from_response(&Pod::TYPE, StatusCode::UNPROCESSABLE_ENTITY, body.to_string().as_bytes());
        assert!(matches!(&e, Error::Invalid { errors, .. } if errors.len() == 1), "{e:?}");
        assert!(e.to_string().contains("the review is invalid"), "{e}");
    }

    #[test]
    fn http_only_failures_map_to_the_nearest_variant() {
        let status = |code: u16, reason: &str| {
            let body = json!({"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason,
                              "message": format!("{reason} happened")});
            from_response(&Pod::TYPE, StatusCode::from_u16(code).expect("code"), body.to_string().as_bytes())
        };
        assert_eq!(status(401, "Unauthorized"), Error::Forbidden("Unauthorized happened".into()));
        assert_eq!(status(429, "TooManyRequests"), Error::Unavailable("TooManyRequests happened".into()));
        assert_eq!(
            status(415, "UnsupportedMediaType"),
            Error::BadRequest("UnsupportedMediaType happened".into())
        );
        assert_eq!(status(405, "MethodNotAllowed"), Error::BadRequest("MethodNotAllowed happened".into()));
        assert_eq!(status(501, "NotImplemented"), Error::Internal("NotImplemented happened".into()));
        let html = from_response(&Pod::TYPE, StatusCode::BAD_GATEWAY, b"<html>proxy error</html>");
        assert_eq!(
            html,
            Error::Unavailable("the server answered 502 Bad Gateway: <html>proxy error</html>".into())
        );
        let empty = from_response(&Pod::TYPE, StatusCode::NOT_FOUND, b"");
        assert_eq!(empty, Error::UnknownResource { resource: "pods".into() });
    }

    #[test]
    fn paths_parse_back() {
        for p in [
            FieldPath::new("spec").child("containers").index(0).child("image"),
            FieldPath::new("metadata").child("annotations").key("example.com/x.y"),
            FieldPath::new("a").index(1).index(2).key("k").child("b"),
            FieldPath::new("data").key("007"),
            FieldPath::root(),
        ] {
            let s = p.to_string();
            assert_eq!(parse_path(&s).to_string(), s);
        }
        assert_eq!(parse_path("a[3]"), FieldPath::new("a").index(3));
        assert_eq!(parse_path("m[x.y]"), FieldPath::new("m").key("x.y"));
    }

    #[test]
    fn warning_headers() {
        let mut h = HeaderMap::new();
        for v in [
            r#"299 - "unknown field \"spec.foo\"""#,
            r#"299 - "a, with comma", 299 kube-apiserver "second" "Sat, 01 Jan 2000 00:00:00 GMT""#,
            "not a warning",
        ] {
            h.append(http::header::WARNING, HeaderValue::from_static(v));
        }
        assert_eq!(
            warnings(&h),
            vec!["unknown field \"spec.foo\"", "a, with comma", "second", "not a warning"]
        );
        assert!(warnings(&HeaderMap::new()).is_empty());
    }
}
