//! Kubernetes' name and value rules (`IsDNS1123Subdomain`, `IsQualifiedName`, ...).
//!
//! Each check returns the list of problems found, worded as Kubernetes words them; an empty
//! list means the value is valid. Callers turn each message into a
//! [`FieldError::invalid`](super::FieldError::invalid) at the field's path.

/// Longest DNS (RFC 1123) label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS (RFC 1123) subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS (RFC 1035) label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (a label key without its prefix).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest port name (IANA service name).
pub const PORT_NAME_MAX_LENGTH: usize = 15;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// Whether `value` is a lowercase RFC 1123 subdomain (any length).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Kubernetes' path segment name rule (RBAC objects use it): any name except `.` and `..`
/// that contains neither `/` nor `%`.
pub fn is_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    ["/", "%"].iter().filter(|c| value.contains(**c)).map(|c| format!("may not contain '{c}'")).collect()
}

/// Whether `value` is a lowercase RFC 1123 label: at most 63 characters of `[-a-z0-9]`,
/// starting and ending with an alphanumeric character.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is not a valid label can only differ by its dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Whether `value` is an RFC 1035 label: like an RFC 1123 label, but starting with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let b = value.as_bytes();
    let valid = b.first().is_some_and(u8::is_ascii_lowercase) && matches_dns1123_label(value);
    if !valid {
        errs.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Whether `value` is a qualified name (the form of label keys and annotation keys): an
/// optional DNS subdomain prefix and `/`, then a name of at most 63 characters of
/// `[-A-Za-z0-9_.]` starting and ending with an alphanumeric character.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Whether `value` is a valid label value: empty, or at most 63 characters of
/// `[-A-Za-z0-9_.]` starting and ending with an alphanumeric character.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Whether `port` is a valid, non-zero port number (1 to 65535).
pub fn is_valid_port_num(port: impl Into<i64>) -> Vec<String> {
    if (1..=65535).contains(&port.into()) { Vec::new() } else { vec![inclusive_range_error(1, 65535)] }
}

/// Whether `port` is a valid port name (an IANA service name): 1 to 15 characters of
/// `[-a-z0-9]` with at least one letter, no leading, trailing or doubled `-`.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > PORT_NAME_MAX_LENGTH {
        errs.push(max_len_error(PORT_NAME_MAX_LENGTH));
    }
    let b = port.as_bytes();
    if b.is_empty() || !b.iter().all(|&c| c == b'-' || c.is_ascii_lowercase() || c.is_ascii_digit()) {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Whether `value` is a C identifier (`[A-Za-z_][A-Za-z0-9_]*`); the length is not checked.
pub fn is_c_identifier(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let valid = b.first().is_some_and(|&c| c == b'_' || c.is_ascii_alphabetic())
        && b.iter().all(|&c| c == b'_' || c.is_ascii_alphanumeric());
    if valid {
        Vec::new()
    } else {
        vec![regex_error(C_IDENTIFIER_ERR, C_IDENTIFIER_FMT, &["my_name", "MY_NAME", "MyName"])]
    }
}

/// Whether `value` is a valid environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`, and
/// neither `.`, `..` nor starting with `..`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let ext = |c: u8| c == b'-' || c == b'.' || c == b'_' || c.is_ascii_alphanumeric();
    let b = value.as_bytes();
    let valid = b.first().is_some_and(|c| !c.is_ascii_digit()) && b.iter().all(|&c| ext(c));
    if !valid {
        errs.push(regex_error(
            ENV_VAR_NAME_ERR,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// Whether `value` is a valid environment variable name under Kubernetes' relaxed rule
/// (feature `RelaxedEnvironmentVariableValidation`, on by default since 1.32): non-empty
/// printable ASCII other than `=`.
pub fn is_relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push(format!("environment variable name {}", empty_error()));
    }
    if value.bytes().any(|c| !(b' '..=b'~').contains(&c) || c == b'=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    errs
}

/// Whether `value` is a valid ConfigMap or Secret key: at most 253 characters of
/// `[-._a-zA-Z0-9]`, and neither `.`, `..` nor starting with `..`.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let b = value.as_bytes();
    if b.is_empty() || !b.iter().all(|&c| c == b'-' || c == b'.' || c == b'_' || c.is_ascii_alphanumeric()) {
        errs.push(regex_error(CONFIG_MAP_KEY_ERR, CONFIG_MAP_KEY_FMT, &["key.name", "KEY_NAME", "key-name"]));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// Kubernetes' message for a value longer than `length` (`must be no more than 63 characters`).
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Kubernetes' message for a value that fails a pattern: `msg`, then the examples and the
/// regular expression that Kubernetes validates with.
pub fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{regex}')");
    }
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{regex}')", examples.join(" or "))
}

/// Kubernetes' message for an empty value that must not be (`must be non-empty`).
pub fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Kubernetes' message for a number outside `lo..=hi`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn has_chdir_prefix(value: &str) -> Option<String> {
    match value {
        "." => Some("must not be '.'".to_string()),
        ".." => Some("must not be '..'".to_string()),
        v if v.starts_with("..") => Some("must not start with '..'".to_string()),
        _ => None,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, whole string.
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(alnum) && b.last().is_some_and(alnum) && b.iter().all(|c| *c == b'-' || alnum(c))
}

/// Dot-separated RFC 1123 labels, whole string.
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, whole string.
fn matches_qualified_name_part(value: &str) -> bool {
    let b = value.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|&c| c == b'-' || c == b'_' || c == b'.' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {

    #[test]
    fn path_segment_names() {
        assert!(is_path_segment_name("system:node").is_empty());
        assert_eq!(is_path_segment_name(".."), ["may not be '..'"]);
        assert_eq!(is_path_segment_name("a/b%c"), ["may not contain '/'", "may not contain '%'"]);
    }

    use super::*;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    /// Checks that every space-separated word of `words`, and every one of `more`, is valid.
    fn valid(f: fn(&str) -> Vec<String>, words: &str, more: &[&str]) {
        for v in words.split(' ').chain(more.iter().copied()) {
            assert!(f(v).is_empty(), "{v:?} should be valid, got {:?}", f(v));
        }
    }

    /// Checks that every space-separated word of `words`, and every one of `more`, is invalid.
    fn invalid(f: fn(&str) -> Vec<String>, words: &str, more: &[&str]) {
        for v in words.split(' ').chain(more.iter().copied()) {
            assert!(!f(v).is_empty(), "{v:?} should be invalid");
        }
    }

    #[test]
    fn dns1123_subdomain() {
        valid(
            is_dns1123_subdomain,
            "a ab abc a1 a-1 a--1--2--b 0 01 012 1a 1-a a.a ab.a 1.a 0.0 a-1.a1 0-a.a-1",
            &[&"a".repeat(253)],
        );
        invalid(
            is_dns1123_subdomain,
            "A ABC aBc A1 a_1 a..1 .a a. -a a- a.-a a-.a a@b a,b a/b é",
            &["", "a b", "1 ", "a\n", &"a".repeat(254)],
        );
        assert_eq!(is_dns1123_subdomain("Foo_"), vec![SUBDOMAIN_MSG.to_string()]);
        assert_eq!(
            is_dns1123_subdomain(&"A".repeat(254)),
            vec!["must be no more than 253 characters".to_string(), SUBDOMAIN_MSG.to_string()]
        );
    }

    #[test]
    fn dns1123_label() {
        valid(is_dns1123_label, "a ab a1 a-1 a--1--2--b 0 01 1a 1-a", &[&"a".repeat(63)]);
        invalid(is_dns1123_label, "A a_1 a.b -a a- a@b", &["", "a b", &"a".repeat(64)]);
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots".to_string()]);
        assert_eq!(
            is_dns1123_label("Ab"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec![max_len_error(63)]);
    }

    #[test]
    fn dns1035_label() {
        valid(is_dns1035_label, "a ab a1 a-1 a--1--2--b", &[&"a".repeat(63)]);
        invalid(is_dns1035_label, "0 01 1a A a_1 a.b -a a-", &["", "a b", &"a".repeat(64)]);
        assert_eq!(
            is_dns1035_label("1a"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn qualified_name() {
        valid(
            is_qualified_name,
            "simple now-with-dashes 1-starts-with-num 1234 simple/simple now-with-dashes/simple now-with-dashes/now-with-dashes now.with.dots/simple now-with.dashes-and.dots/simple 1-num.2-num/3-num 1234/5678 1.2.3.4/5678 Uppercase_Is_OK_123 example.com/Uppercase_Is_OK_123 requests.storage-foo",
            &[&"a".repeat(63), &format!("{}/b", "a".repeat(253))],
        );
        invalid(
            is_qualified_name,
            "nospecialchars%^=@ cantendwithadash- -cantstartwithadash- only/one/slash Example.com/abc example_com/abc example.com/ /simple",
            &["", &"a".repeat(64), &format!("{}/b", "a".repeat(254))],
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec![
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ]
        );
        assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty".to_string()]);
        let errs = is_qualified_name("Example.com/");
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0], format!("prefix part {SUBDOMAIN_MSG}"));
        assert_eq!(errs[1], "name part must be non-empty");
        assert!(errs[2].starts_with("name part must consist of alphanumeric characters"));
        let errs = is_qualified_name(&"a".repeat(64));
        assert_eq!(errs, vec!["name part must be no more than 63 characters".to_string()]);
    }

    #[test]
    fn label_value() {
        valid(
            is_valid_label_value,
            "simple now-with-dashes 1-starts-with-num end-with-num-1 1234 A.B_C-d",
            &["", &"a".repeat(63)],
        );
        invalid(
            is_valid_label_value,
            "nospecialchars%^=@ Tama-nui-te-rā -leading trailing- _x x_ a/b",
            &["a b", &"a".repeat(64)],
        );
        assert_eq!(
            is_valid_label_value("-x"),
            vec![
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ]
        );
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
    }

    #[test]
    fn ports() {
        for p in [1i64, 1000, 8080, 65535] {
            assert!(is_valid_port_num(p).is_empty());
        }
        assert!(is_valid_port_num(8080i32).is_empty());
        assert!(is_valid_port_num(443u16).is_empty());
        for p in [0i64, -1, 65536, i64::MAX] {
            assert_eq!(is_valid_port_num(p), vec!["must be between 1 and 65535, inclusive".to_string()]);
        }
        valid(is_valid_port_name, "telnet re-mail-ck pop3 a a-1 1-a a-1-b-2-c 1-a-2-b-3", &[]);
        invalid(
            is_valid_port_name,
            "longerthan15characters do-not-end-with- -do-not-start-with 1234 a--b Upper a_b",
            &[""],
        );
        assert_eq!(is_valid_port_name("1234"), vec!["must contain at least one letter (a-z)".to_string()]);
        assert_eq!(
            is_valid_port_name(""),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
                "must contain at least one letter (a-z)".to_string()
            ]
        );
        assert_eq!(
            is_valid_port_name("-a--"),
            vec![
                "must not contain consecutive hyphens".to_string(),
                "must not begin or end with a hyphen".to_string()
            ]
        );
    }

    #[test]
    fn identifiers_and_keys() {
        valid(
            is_c_identifier,
            "a ab abc a1 _a a_ a_b a_1 a__1__2__b __abc_123 A AB AbC A1 _A A_ A_B A_1 A__1__2__B __123_ABC",
            &[],
        );
        invalid(
            is_c_identifier,
            "1 123 1a - a- -a 1- -1 1_ 1_2 . a. .a a.b 1. .1 1.2 #a#",
            &["", " ", "a ", " a", "a b", "1 ", " 1", "1 2"],
        );
        valid(
            is_env_var_name,
            "a ab abc a1 _a a_ a_b a_1 a__1__2__b __abc_123 A AB AbC A1 _A A_ A_B A_1 A__1__2__B __123_ABC a.b a-b a. -a .a",
            &[],
        );
        invalid(is_env_var_name, "1 123 1a a=b . .. ..a é", &["", "a b"]);
        assert_eq!(is_env_var_name(".").last().map(String::as_str), Some("must not be '.'"));
        assert_eq!(is_env_var_name("..").last().map(String::as_str), Some("must not be '..'"));
        assert_eq!(is_env_var_name("..a"), vec!["must not start with '..'".to_string()]);
        valid(is_relaxed_env_var_name, "1 a.b:c ..", &["a b", "$HOME", "~!@#"]);
        invalid(is_relaxed_env_var_name, "a=b é", &["\t", "a\u{7f}"]);
        assert_eq!(
            is_relaxed_env_var_name(""),
            vec!["environment variable name must be non-empty".to_string()]
        );
        assert_eq!(
            is_relaxed_env_var_name("a=b"),
            vec![
                "a valid environment variable name must consist only of printable ASCII characters other than '='"
            ]
        );
        valid(is_config_map_key, "a ab abc a1 _a a_ a_b A a-b a.b 1 .a a..b", &[&"a".repeat(253)]);
        invalid(is_config_map_key, ". .. ..a a/b a=b", &["", "a b", &"a".repeat(254)]);
        assert_eq!(is_config_map_key(".."), vec!["must not be '..'".to_string()]);
        assert_eq!(
            is_config_map_key("a b"),
            vec![
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
    }

    #[test]
    fn regex_error_wording() {
        assert_eq!(regex_error("m", "re", &[]), "m (regex used for validation is 're')");
        assert_eq!(regex_error("m", "re", &["x"]), "m (e.g. 'x', regex used for validation is 're')");
        assert_eq!(
            regex_error("m", "re", &["x", "y"]),
            "m (e.g. 'x',  or 'y', regex used for validation is 're')"
        );
    }
}
