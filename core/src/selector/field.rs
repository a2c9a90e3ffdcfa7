//! Field selectors: equality conditions on fields of an object (`metadata.name=web`), with the
//! grammar and escaping of Kubernetes' `fields.ParseSelector`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::{Result, SelectorError, char_position};

/// How a [`FieldRequirement`] compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One condition of a field selector.
///
/// An absent field compares as the empty string, as in Kubernetes: `spec.nodeName=` selects
/// unscheduled pods and `spec.nodeName!=` scheduled ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field, e.g. `metadata.name`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field whose value is `actual` (`None` when absent) meets this requirement.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    /// `field=value` or `field!=value`, with the value escaped by [`escape_value`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Inner {
    Nothing,
    Terms(Vec<FieldRequirement>),
}

/// A field selector: the objects whose fields meet every one of its [`FieldRequirement`]s.
///
/// The string form is a comma-separated list of `field=value`, `field==value` and
/// `field!=value` terms. Nothing is trimmed: spaces belong to fields and values. In values, `\`,
/// `,` and `=` are escaped with a backslash (see [`escape_value`]). Empty terms are skipped.
///
/// Which fields exist depends on the kind of object; a registry checks them with
/// [`requirements`](Self::requirements) or [`check_supported`](Self::check_supported).
///
/// ```
/// use std::collections::BTreeMap;
/// use flotilla_core::selector::FieldSelector;
///
/// let sel: FieldSelector = "status.phase==Running,metadata.name=web,spec.nodeName!=".parse()?;
/// assert_eq!(sel.to_string(), "metadata.name=web,spec.nodeName!=,status.phase=Running");
/// let fields = BTreeMap::from([
///     ("metadata.name".to_string(), "web".to_string()),
///     ("spec.nodeName".to_string(), "node-1".to_string()),
///     ("status.phase".to_string(), "Running".to_string()),
/// ]);
/// assert!(sel.matches(&fields));
/// assert!(sel.check_supported(&["metadata.name", "spec.nodeName", "status.phase"]).is_ok());
/// # Ok::<(), flotilla_core::selector::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    inner: Inner,
}

impl FieldSelector {
    /// The selector that selects every object.
    pub fn everything() -> Self {
        FieldSelector { inner: Inner::Terms(Vec::new()) }
    }

    /// The selector that selects no object; it prints as the empty string.
    pub fn nothing() -> Self {
        FieldSelector { inner: Inner::Nothing }
    }

    /// Parses the string form.
    ///
    /// A term whose field and value are both empty (`=`) is dropped, as Kubernetes drops it.
    /// Terms are kept sorted by their printed form, so the selector prints canonically.
    pub fn parse(input: &str) -> Result<Self> {
        let mut terms = Vec::new();
        for (start, term) in split_terms(input) {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, value_start)) = split_term(term) else {
                return Err(SelectorError::FieldTerm {
                    input: input.to_string(),
                    position: char_position(input, start),
                    term: term.to_string(),
                });
            };
            let value =
                unescape(&term[value_start..]).map_err(|e| e.into_error(input, start + value_start))?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        Ok(Self::from_requirements(terms))
    }

    /// The selector that requires every one of `requirements`.
    pub fn from_requirements(requirements: impl IntoIterator<Item = FieldRequirement>) -> Self {
        let mut terms: Vec<(String, FieldRequirement)> =
            requirements.into_iter().map(|r| (r.to_string(), r)).collect();
        terms.sort_by(|a, b| a.0.cmp(&b.0));
        FieldSelector { inner: Inner::Terms(terms.into_iter().map(|(_, r)| r).collect()) }
    }

    /// The selector that requires each field of `fields` to equal its value; an empty map gives
    /// [`everything`](Self::everything).
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Self {
        Self::from_requirements(fields.iter().map(|(field, value)| FieldRequirement {
            field: field.clone(),
            operator: FieldOperator::Equals,
            value: value.clone(),
        }))
    }

    /// The requirements, in printed order; none for both [`everything`](Self::everything) and
    /// [`nothing`](Self::nothing).
    pub fn requirements(&self) -> &[FieldRequirement] {
        match &self.inner {
            Inner::Nothing => &[],
            Inner::Terms(terms) => terms,
        }
    }

    /// Whether this selector restricts nothing, i.e. is [`everything`](Self::everything).
    pub fn is_empty(&self) -> bool {
        matches!(&self.inner, Inner::Terms(t) if t.is_empty())
    }

    /// Whether this is [`nothing`](Self::nothing).
    pub fn matches_nothing(&self) -> bool {
        self.inner == Inner::Nothing
    }

    /// Whether an object, whose fields `get` returns (`None` when absent), meets every requirement.
    pub fn matches_with(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        match &self.inner {
            Inner::Nothing => false,
            Inner::Terms(terms) => terms.iter().all(|t| t.matches(get(&t.field).as_deref())),
        }
    }

    /// Whether an object with these field values meets every requirement.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        match &self.inner {
            Inner::Nothing => false,
            Inner::Terms(terms) => terms.iter().all(|t| t.matches(fields.get(&t.field).map(String::as_str))),
        }
    }

    /// The value `field` must equal, if a requirement pins it: lets a store look an object up
    /// (by name, by node) instead of scanning.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements()
            .iter()
            .find(|t| t.field == field && t.operator == FieldOperator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Fails on the first field that is not in `supported`, as the API server rejects a field
    /// selector on a field that the kind does not index.
    pub fn check_supported(&self, supported: &[&str]) -> Result<()> {
        match self.requirements().iter().find(|t| !supported.contains(&t.field.as_str())) {
            Some(t) => Err(SelectorError::UnsupportedField { field: t.field.clone() }),
            None => Ok(()),
        }
    }
}

impl Default for FieldSelector {
    /// [`FieldSelector::everything`].
    fn default() -> Self {
        Self::everything()
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    /// The terms joined by `,`; `==` prints as `=`, as in Kubernetes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.requirements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

/// Escapes a literal value for a field selector: `\` becomes `\\`, `,` becomes `\,` and `=`
/// becomes `\=` (Kubernetes' `fields.EscapeValue`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`] (Kubernetes' `fields.UnescapeValue`): fails on a backslash not
/// followed by `\`, `,` or `=`, and on an unescaped `,` or `=`.
pub fn unescape_value(value: &str) -> Result<String> {
    unescape(value).map_err(|e| e.into_error(value, 0))
}

/// What [`unescape`] found wrong, at a byte offset into the value.
enum UnescapeError {
    InvalidEscape { at: usize, sequence: String },
    Unescaped { at: usize, character: char },
}

impl UnescapeError {
    /// The error for `input`, in which the value starts at byte `offset`.
    fn into_error(self, input: &str, offset: usize) -> SelectorError {
        match self {
            UnescapeError::InvalidEscape { at, sequence } => SelectorError::InvalidEscape {
                input: input.to_string(),
                position: char_position(input, offset + at),
                sequence,
            },
            UnescapeError::Unescaped { at, character } => SelectorError::UnescapedCharacter {
                input: input.to_string(),
                position: char_position(input, offset + at),
                character,
            },
        }
    }
}

fn unescape(value: &str) -> std::result::Result<String, UnescapeError> {
    let mut out = String::with_capacity(value.len());
    let mut escape_at = None;
    for (i, c) in value.char_indices() {
        if let Some(at) = escape_at.take() {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(UnescapeError::InvalidEscape { at, sequence: format!("\\{c}") });
            }
            out.push(c);
            continue;
        }
        match c {
            '\\' => escape_at = Some(i),
            ',' | '=' => return Err(UnescapeError::Unescaped { at: i, character: c }),
            c => out.push(c),
        }
    }
    match escape_at {
        Some(at) => Err(UnescapeError::InvalidEscape { at, sequence: "\\".to_string() }),
        None => Ok(out),
    }
}

/// Splits at commas that are not escaped, giving each term with its byte offset.
fn split_terms(input: &str) -> Vec<(usize, &str)> {
    let mut terms = Vec::new();
    if input.is_empty() {
        return terms;
    }
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push((start, &input[start..i]));
            start = i + 1;
        }
    }
    terms.push((start, &input[start..]));
    terms
}

/// Splits a term at its first operator (`!=` before `==` before `=`); fields are never escaped.
/// Gives the field, the operator and the byte offset where the raw value starts.
fn split_term(term: &str) -> Option<(&str, FieldOperator, usize)> {
    const OPERATORS: [(&str, FieldOperator); 3] =
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS
            .iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|&(op, operator)| (&term[..i], operator, i + op.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse_ok(input: &str) -> FieldSelector {
        match FieldSelector::parse(input) {
            Ok(sel) => sel,
            Err(err) => panic!("{input:?} should parse: {err}"),
        }
    }

    #[test]
    fn parses_and_prints() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=c,y=b,x=a", "x=a,y=b,z=c"),
            ("x!=a,y=b", "x!=a,y=b"),
            ("spec.nodeName!=", "spec.nodeName!="),
            ("a=b,,c=d,", "a=b,c=d"),
            ("=", ""),
            ("=x", "=x"),
            ("a=!b", "a=!b"),
            (" a = b ", " a = b "),
            (r"a=b\,c\=d\\e", r"a=b\,c\=d\\e"),
            (
                "metadata.name=web,spec.nodeName!=,status.phase==Running",
                "metadata.name=web,spec.nodeName!=,status.phase=Running",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ok(input).to_string(), want, "{input:?}");
        }
        let sel = parse_ok(r"a=b\,c\=d\\e");
        assert_eq!(sel.requirements()[0].value, r"b,c=d\e");
        assert!(parse_ok("").is_empty());
        assert!(parse_ok("=").is_empty());
    }

    #[test]
    fn rejects_bad_terms_and_escapes() {
        let err = |input: &str| match FieldSelector::parse(input) {
            Ok(sel) => panic!("{input:?} parsed as {sel}"),
            Err(err) => err,
        };
        assert_eq!(
            err("a=b,nonsense").to_string(),
            r#"field selector "a=b,nonsense": can't understand 'nonsense' at position 4, expected: field=value, field==value or field!=value"#
        );
        assert_eq!(
            err(r"a=b\x").to_string(),
            r#"field selector "a=b\\x": invalid escape sequence '\x' at position 3, expected: \\, \, or \="#
        );
        assert!(matches!(err(r"a=b\"), SelectorError::InvalidEscape { position: 3, .. }));
        assert_eq!(
            err("é=a=b").to_string(),
            r#"field selector "é=a=b": unescaped '=' in value at position 3, expected: '\='"#
        );
        assert!(matches!(err("a"), SelectorError::FieldTerm { position: 0, .. }));
        assert!(matches!(err("a<b"), SelectorError::FieldTerm { .. }));
    }

    #[test]
    fn escaping() {
        let cases = [("", ""), ("abc", "abc"), (r"\", r"\\"), ("a,b=c", r"a\,b\=c"), (r"\,=", r"\\\,\=")];
        for (raw, escaped) in cases {
            assert_eq!(escape_value(raw), escaped);
            assert_eq!(unescape_value(escaped).ok().as_deref(), Some(raw));
        }
        assert!(matches!(unescape_value(r"\a"), Err(SelectorError::InvalidEscape { position: 0, .. })));
        assert!(matches!(
            unescape_value("a,b"),
            Err(SelectorError::UnescapedCharacter { position: 1, character: ',', .. })
        ));
    }

    #[test]
    fn matching() {
        let pod = fields(&[("metadata.name", "web"), ("status.phase", "Running"), ("spec.nodeName", "")]);
        let cases = [
            ("", true),
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name=db", false),
            ("metadata.name!=db", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("spec.missing=", true),
            ("spec.missing!=", false),
            ("spec.missing=x", false),
            ("spec.missing!=x", true),
            ("metadata.name=web,status.phase=Running", true),
            ("metadata.name=web,status.phase=Pending", false),
        ];
        for (input, want) in cases {
            let sel = parse_ok(input);
            assert_eq!(sel.matches(&pod), want, "{input:?}");
            let get = |f: &str| pod.get(f).cloned();
            assert_eq!(sel.matches_with(&get), want, "{input:?} through a lookup");
        }
        assert!(!FieldSelector::nothing().matches(&pod));
        assert!(FieldSelector::nothing().matches_nothing());
        assert!(FieldSelector::everything().matches(&BTreeMap::new()));
    }

    #[test]
    fn exact_match_and_supported_fields() {
        let sel = parse_ok("metadata.name!=a,spec.nodeName=n1,metadata.namespace=default");
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(sel.requires_exact_match("metadata.name"), None);
        assert!(sel.check_supported(&["metadata.name", "metadata.namespace", "spec.nodeName"]).is_ok());
        let err = sel.check_supported(&["metadata.name", "metadata.namespace"]).map_err(|e| e.to_string());
        assert_eq!(err, Err("field label not supported: spec.nodeName".to_string()));
        let from = FieldSelector::from_fields(&fields(&[("b", "x,y"), ("a", "1")]));
        assert_eq!(from.to_string(), r"a=1,b=x\,y");
        assert_eq!(parse_ok(&from.to_string()), from);
    }
}
