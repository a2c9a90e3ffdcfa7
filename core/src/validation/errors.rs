//! Field errors and error lists, printed as Kubernetes prints `field.Error` and its aggregate.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde_json::Value;

use super::FieldPath;

/// Why a field is invalid. Each kind maps one to one onto a Kubernetes `StatusCause` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required value was not provided (an empty string, a null, an empty list).
    Required,
    /// The value is malformed: it fails a pattern, a range or a length rule.
    Invalid,
    /// The value collides with another one that must be unique.
    Duplicate,
    /// The value is not one of an enumeration's values.
    NotSupported,
    /// The value is well formed but not allowed here (by policy, or for this kind of object).
    Forbidden,
    /// The value is too long; the error does not repeat it.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// Validation failed for a reason unrelated to the input.
    Internal,
}

impl ErrorKind {
    /// The `StatusCause.reason` Kubernetes reports for this kind (`FieldValueRequired`, ...).
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Internal => "InternalError",
        }
    }

    /// The words that open an error of this kind (`Required value`, `Unsupported value`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Internal => "Internal error",
        }
    }

    /// Whether errors of this kind print the offending value.
    fn shows_value(self) -> bool {
        matches!(
            self,
            ErrorKind::Invalid | ErrorKind::Duplicate | ErrorKind::NotSupported | ErrorKind::TooMany
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field: what is wrong ([`ErrorKind`]), where ([`FieldPath`]), the offending value
/// and a human-readable detail.
///
/// Displays like Kubernetes' `field.Error`. The constructors take the path by value or by
/// reference:
///
/// ```
/// use flotilla_core::validation::{FieldError, FieldPath};
///
/// let path = FieldPath::new("spec").child("restartPolicy");
/// let err = FieldError::not_supported(&path, "Sometimes", &["Always", "Never", "OnFailure"]);
/// assert_eq!(
///     err.to_string(),
///     r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Which field.
    pub path: FieldPath,
    /// A human-readable explanation; may be empty.
    pub detail: String,
    /// The offending value, for the kinds that print it; `None` leaves it out of the message.
    pub bad_value: Option<Value>,
}

impl FieldError {
    /// A required value is missing.
    pub fn required(path: impl Into<FieldPath>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Required, path, None, detail.into())
    }

    /// `value` is malformed.
    pub fn invalid(path: impl Into<FieldPath>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, path, Some(value.into()), detail.into())
    }

    /// `value` is not one of `valid`, which the message lists in the order given.
    pub fn not_supported<S: AsRef<str>>(
        path: impl Into<FieldPath>,
        value: impl Into<Value>,
        valid: &[S],
    ) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorKind::NotSupported, path, Some(value.into()), detail)
    }

    /// `value` repeats one that must be unique.
    pub fn duplicate(path: impl Into<FieldPath>, value: impl Into<Value>) -> Self {
        Self::new(ErrorKind::Duplicate, path, Some(value.into()), String::new())
    }

    /// The field is not allowed here.
    pub fn forbidden(path: impl Into<FieldPath>, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, path, None, detail.into())
    }

    /// The value is longer than `max_bytes` (`None` when the limit is not known).
    ///
    /// Like Kubernetes, the value itself is neither kept nor printed, so a huge value is not
    /// echoed back to the client.
    pub fn too_long(path: impl Into<FieldPath>, _value: impl Into<Value>, max_bytes: Option<usize>) -> Self {
        let detail = match max_bytes {
            Some(max) => format!("may not be more than {max} bytes"),
            None => "value is too long".to_string(),
        };
        Self::new(ErrorKind::TooLong, path, None, detail)
    }

    /// A list has `actual` items, more than `max` (either may be unknown).
    pub fn too_many(path: impl Into<FieldPath>, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(max) => format!("must have at most {max} items"),
            None => "has too many items".to_string(),
        };
        Self::new(ErrorKind::TooMany, path, actual.map(Value::from), detail)
    }

    /// Validation itself failed, for a reason unrelated to the input.
    pub fn internal(path: impl Into<FieldPath>, error: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, path, None, error.to_string())
    }

    fn new(kind: ErrorKind, path: impl Into<FieldPath>, bad_value: Option<Value>, detail: String) -> Self {
        FieldError { kind, path: path.into(), detail, bad_value }
    }

    /// The message without the field path (Kubernetes' `ErrorBody`), e.g.
    /// `Invalid value: "Foo_": a lowercase RFC 1123 subdomain must ...`.
    pub fn body(&self) -> String {
        let mut body = self.kind.as_str().to_string();
        if self.kind.shows_value()
            && let Some(value) = &self.bad_value
        {
            body.push_str(": ");
            body.push_str(&render_value(value));
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.path, self.body())
        }
    }
}

impl std::error::Error for FieldError {}

/// Every error found in one object, in the order found.
///
/// Displays like Kubernetes' aggregate of a `field.ErrorList`: one message alone as itself,
/// several as `[first, second]`, with repeated messages printed once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorList(pub Vec<FieldError>);

impl ErrorList {
    /// An empty list.
    pub fn new() -> Self {
        ErrorList(Vec::new())
    }

    /// Adds one error.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// `Ok(())` when the list is empty, else the list as an error.
    pub fn into_result(self) -> Result<(), ErrorList> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl Extend<FieldError> for ErrorList {
    fn extend<I: IntoIterator<Item = FieldError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<FieldError> for ErrorList {
    fn from_iter<I: IntoIterator<Item = FieldError>>(iter: I) -> Self {
        ErrorList(iter.into_iter().collect())
    }
}

impl From<FieldError> for ErrorList {
    fn from(error: FieldError) -> Self {
        ErrorList(vec![error])
    }
}

impl IntoIterator for ErrorList {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ErrorList {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen = BTreeSet::new();
        let messages: Vec<String> =
            self.0.iter().map(ToString::to_string).filter(|m| seen.insert(m.clone())).collect();
        if messages.len() > 1 {
            write!(f, "[{}]", messages.join(", "))
        } else {
            f.write_str(&messages.concat())
        }
    }
}

impl std::error::Error for ErrorList {}

/// Prints a bad value as Kubernetes does: strings Go-quoted, anything else as compact JSON
/// (with Go's escaping of `<`, `>` and `&`).
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        other => {
            let json = other.to_string();
            let mut out = String::with_capacity(json.len());
            for c in json.chars() {
                match c {
                    '<' => out.push_str("\\u003c"),
                    '>' => out.push_str("\\u003e"),
                    '&' => out.push_str("\\u0026"),
                    '\u{2028}' => out.push_str("\\u2028"),
                    '\u{2029}' => out.push_str("\\u2029"),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

/// Quotes a string the way Go's `%q` (`strconv.Quote`) does.
///
/// Go keeps every printable character and escapes the rest; without Unicode category tables
/// this treats control, format and non-ASCII whitespace characters as unprintable, which
/// covers the characters met in practice.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            // Writing to a String cannot fail.
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let format = matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}'
    );
    !(c.is_control() || c.is_whitespace() || format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FieldPath {
        let mut parts = s.split('.');
        let mut p = FieldPath::new(parts.next().unwrap_or_default());
        for part in parts {
            p = p.child(part);
        }
        p
    }

    #[test]
    fn displays_each_kind_like_kubernetes() {
        let image = FieldPath::new("spec").child("containers").index(0).child("image");
        let cases = [
            (FieldError::required(&image, ""), "spec.containers[0].image: Required value"),
            (
                FieldError::required(path("metadata.name"), "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::invalid(path("metadata.name"), "Foo_", "bad name"),
                r#"metadata.name: Invalid value: "Foo_": bad name"#,
            ),
            (
                FieldError::invalid(path("spec.replicas"), -1, "must be >= 0"),
                "spec.replicas: Invalid value: -1: must be >= 0",
            ),
            (FieldError::invalid(path("spec.x"), true, "no"), "spec.x: Invalid value: true: no"),
            (
                FieldError::invalid(path("spec.values"), serde_json::json!(["a", "b"]), "bad"),
                r#"spec.values: Invalid value: ["a","b"]: bad"#,
            ),
            (FieldError::invalid(path("spec.v"), Value::Null, "bad"), "spec.v: Invalid value: null: bad"),
            (
                FieldError::not_supported(
                    path("spec.restartPolicy"),
                    "Sometimes",
                    &["Always", "Never", "OnFailure"],
                ),
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#,
            ),
            (
                FieldError::not_supported::<&str>(&path("spec.policy"), "x", &[]),
                r#"spec.policy: Unsupported value: "x""#,
            ),
            (
                FieldError::duplicate(path("spec.ports").index(1), "http"),
                r#"spec.ports[1]: Duplicate value: "http""#,
            ),
            (
                FieldError::forbidden(path("metadata.namespace"), "not allowed on this type"),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                FieldError::too_long(path("metadata.annotations"), "", Some(262144)),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
            (FieldError::too_long(path("data"), "", None), "data: Too long: value is too long"),
            (
                FieldError::too_many(path("spec.items"), Some(5), Some(3)),
                "spec.items: Too many: 5: must have at most 3 items",
            ),
            (
                FieldError::too_many(path("spec.items"), None, None),
                "spec.items: Too many: has too many items",
            ),
            (FieldError::internal(path("spec"), "boom"), "spec: Internal error: boom"),
            (FieldError::required(FieldPath::root(), ""), "Required value"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn cause_types() {
        let kinds = [
            (ErrorKind::Required, "FieldValueRequired"),
            (ErrorKind::Invalid, "FieldValueInvalid"),
            (ErrorKind::NotSupported, "FieldValueNotSupported"),
            (ErrorKind::Duplicate, "FieldValueDuplicate"),
            (ErrorKind::Forbidden, "FieldValueForbidden"),
            (ErrorKind::TooLong, "FieldValueTooLong"),
            (ErrorKind::TooMany, "FieldValueTooMany"),
            (ErrorKind::Internal, "InternalError"),
        ];
        for (kind, cause) in kinds {
            assert_eq!(kind.cause_type(), cause);
        }
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("plain"), r#""plain""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there\nnl"), r#""tab\there\nnl""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("héllo 世界"), "\"héllo 世界\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        let err = FieldError::invalid(FieldPath::new("x"), serde_json::json!({"k": "<a&b>"}), "");
        assert_eq!(err.to_string(), r#"x: Invalid value: {"k":"\u003ca\u0026b\u003e"}"#);
    }

    #[test]
    fn list_displays_like_an_aggregate() {
        let mut list = ErrorList::new();
        assert_eq!(list.to_string(), "");
        assert!(list.clone().into_result().is_ok());
        list.push(FieldError::required(path("a"), ""));
        assert_eq!(list.to_string(), "a: Required value");
        list.push(FieldError::required(path("a"), ""));
        assert_eq!(list.to_string(), "a: Required value", "repeated messages print once");
        list.extend([FieldError::forbidden(path("b"), "no")]);
        assert_eq!(list.to_string(), "[a: Required value, b: Forbidden: no]");
        assert_eq!(list.len(), 3);
        assert_eq!(list.iter().filter(|e| e.kind == ErrorKind::Required).count(), 2);
        let err: Box<dyn std::error::Error> = Box::new(list.clone());
        assert_eq!(err.to_string(), "[a: Required value, b: Forbidden: no]");
        assert_eq!(list.into_result().map_err(|l| l.len()), Err(3));
    }
}
