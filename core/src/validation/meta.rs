//! Object metadata rules: object names, label and annotation maps.

use std::collections::BTreeMap;

use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
};
use super::{ErrorList, FieldError, FieldPath};

/// The most bytes all of an object's annotation keys and values may take together (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// A rule for the names of one kind of object (Kubernetes' `ValidateNameFunc`).
///
/// `prefix` is true when the name is a `generateName` prefix, to which random characters will
/// be appended: a trailing `-` is then allowed. Returns the problems found, empty when valid.
pub type ValidateNameFn = fn(name: &str, prefix: bool) -> Vec<String>;

/// The name rule of most kinds: a DNS subdomain (Kubernetes' `NameIsDNSSubdomain`).
///
/// ```
/// use flotilla_core::validation::validate_object_name;
///
/// assert!(validate_object_name("web-0", false).is_empty());
/// assert!(!validate_object_name("web-", false).is_empty());
/// assert!(validate_object_name("web-", true).is_empty(), "a generateName prefix may end with '-'");
/// ```
pub fn validate_object_name(name: &str, prefix: bool) -> Vec<String> {
    name_is_dns_subdomain(name, prefix)
}

/// Names that must be DNS subdomains (Kubernetes' `NameIsDNSSubdomain`).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_prefix(name, prefix))
}

/// Names that must be RFC 1123 labels, such as namespaces (Kubernetes' `NameIsDNSLabel`).
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_prefix(name, prefix))
}

/// Names that must be RFC 1035 labels, such as services (Kubernetes' `NameIsDNS1035Label`).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_prefix(name, prefix))
}

/// Makes a `generateName` prefix checkable as a name.
///
/// Kubernetes' `maskTrailingDash` replaces the last *two* characters of a prefix ending in `-`
/// by `a` (so `"ab-"` is checked as `"aa"`); this does the same, so that exactly the same
/// prefixes are accepted.
fn mask_prefix(name: &str, prefix: bool) -> String {
    if !prefix || name.len() <= 1 {
        return name.to_string();
    }
    let Some(rest) = name.strip_suffix('-') else {
        return name.to_string();
    };
    let mut chars = rest.chars();
    match chars.next_back() {
        // Go cuts one byte there, leaving an invalid sequence that fails every name rule; keeping
        // the non-ASCII character fails them too.
        Some(c) if !c.is_ascii() => format!("{rest}a"),
        _ => format!("{}a", chars.as_str()),
    }
}

/// Checks a label key (a qualified name), reporting each problem at `path`.
pub fn validate_label_name(key: &str, path: &FieldPath) -> ErrorList {
    is_qualified_name(key).into_iter().map(|msg| FieldError::invalid(path, key, msg)).collect()
}

/// Checks an object's labels: keys are qualified names, values valid label values.
///
/// Like Kubernetes, every problem is reported at `path` itself (`metadata.labels`), with the bad
/// key or value as the error's value.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (key, value) in labels {
        errs.extend(validate_label_name(key, path));
        errs.extend(
            is_valid_label_value(value).into_iter().map(|msg| FieldError::invalid(path, value.as_str(), msg)),
        );
    }
    errs
}

/// Checks an object's annotations: keys are qualified names (in any case), and keys and values
/// together take at most [`TOTAL_ANNOTATION_SIZE_LIMIT_BYTES`].
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        // Kubernetes ignores case in annotation keys: only ASCII letters can pass anyway.
        for msg in is_qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(path, key.as_str(), msg));
        }
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.push(FieldError::too_long(path, "", Some(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES)));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::ErrorKind;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn masks_trailing_dash_like_kubernetes() {
        let cases = [("", ""), ("-", "-"), ("-foo", "-foo"), ("-foo-", "-foa"), ("b-", "a"), ("ab-", "aa")];
        for (name, want) in cases {
            assert_eq!(mask_prefix(name, true), want, "{name:?}");
        }
        assert_eq!(mask_prefix("ab-", false), "ab-");
        assert!(!validate_object_name("é-", true).is_empty());
    }

    #[test]
    fn object_names() {
        assert!(validate_object_name("my-app.v1", false).is_empty());
        assert!(validate_object_name("my-app-", true).is_empty());
        assert!(validate_object_name("a-", true).is_empty());
        assert!(!validate_object_name("my-app-", false).is_empty());
        assert!(!validate_object_name("My-app-", true).is_empty());
        assert!(!validate_object_name("-", true).is_empty(), "a lone dash is not masked");
        assert!(!validate_object_name("", false).is_empty());
        let err = FieldError::invalid(
            FieldPath::new("metadata").child("name"),
            "Foo_",
            validate_object_name("Foo_", false).concat(),
        );
        assert_eq!(
            err.to_string(),
            "metadata.name: Invalid value: \"Foo_\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(name_is_dns_label("a.b", false), vec!["must not contain dots".to_string()]);
        assert!(name_is_dns_label("ns-", true).is_empty());
        assert!(name_is_dns1035_label("svc-", true).is_empty());
        assert!(!name_is_dns1035_label("1svc", false).is_empty());
        let rules: [ValidateNameFn; 3] = [name_is_dns_subdomain, name_is_dns_label, name_is_dns1035_label];
        assert!(rules.iter().all(|rule| rule("web", false).is_empty()));
    }

    #[test]
    fn labels() {
        let path = FieldPath::new("metadata").child("labels");
        assert!(
            validate_labels(&map(&[("app", "web"), ("example.com/tier", ""), ("a", "A_b.c-1")]), &path)
                .is_empty()
        );
        let errs = validate_labels(&map(&[("bad key", "ok"), ("ok", "-bad")]), &path);
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.kind == ErrorKind::Invalid && e.path == path));
        assert!(
            errs.0[0]
                .to_string()
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of")
        );
        assert!(
            errs.0[1]
                .to_string()
                .starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be")
        );
        let long = "a".repeat(64);
        let errs = validate_labels(&map(&[("k", &long)]), &path);
        assert_eq!(errs.0[0].detail, "must be no more than 63 characters");
    }

    #[test]
    fn annotations() {
        let path = FieldPath::new("metadata").child("annotations");
        let ok = map(&[
            ("Example.COM/Some_Key", "any value at all: {\"json\": true}"),
            ("kubectl.kubernetes.io/last-applied-configuration", ""),
        ]);
        assert!(validate_annotations(&ok, &path).is_empty());
        let errs = validate_annotations(&map(&[("a/b/c", "")]), &path);
        assert_eq!(errs.len(), 1);
        assert!(
            errs.0[0]
                .to_string()
                .starts_with("metadata.annotations: Invalid value: \"a/b/c\": a qualified name must")
        );

        let at_limit = map(&[("k", &"v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1))]);
        assert!(validate_annotations(&at_limit, &path).is_empty());
        let over = map(&[("k", &"v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))]);
        let errs = validate_annotations(&over, &path);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs.0[0].kind, ErrorKind::TooLong);
        assert_eq!(errs.to_string(), "metadata.annotations: Too long: may not be more than 262144 bytes");
    }
}
