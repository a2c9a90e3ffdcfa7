//! Label selectors: requirements on an object's labels, with Kubernetes' semantics.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::{Result, SelectorError};
use crate::validation::{ErrorList, FieldError, FieldPath, is_qualified_name, is_valid_label_value};

/// How a [`Requirement`] relates a label's value to its values.
///
/// [`Operator::as_str`] gives Kubernetes' name of each (`selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`: the label exists and has the value.
    Equals,
    /// `key==value`: the same as [`Operator::Equals`], kept apart so the selector prints as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label exists and has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>5`: the label exists, is an integer, and is greater than the value.
    GreaterThan,
    /// `key<5`: the label exists, is an integer, and is less than the value.
    LessThan,
}

impl Operator {
    /// Kubernetes' name of this operator: `=`, `==`, `!=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One condition of a label selector: a key, an [`Operator`] and its values.
///
/// A `Requirement` is always valid: its key is a qualified name, its values are label values and
/// their number suits the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// A checked requirement (Kubernetes' `NewRequirement`).
    ///
    /// `In` and `NotIn` need at least one value; `Equals`, `DoubleEquals` and `NotEquals` exactly
    /// one; `Exists` and `DoesNotExist` none; `GreaterThan` and `LessThan` one integer. The empty
    /// string is a valid value. Errors are at paths `key`, `values`, `values[0]`, `values[0][key]`.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self> {
        Self::checked(key.into(), operator, values, &FieldPath::root())
            .map_err(|errors| SelectorError::InvalidLabelSelector { errors })
    }

    /// Checks a requirement, reporting problems below `path`.
    pub(crate) fn checked(
        key: String,
        operator: Operator,
        values: Vec<String>,
        path: &FieldPath,
    ) -> std::result::Result<Self, ErrorList> {
        let mut errs = ErrorList::new();
        if let Some(err) = check_key(&key, &path.child("key")) {
            errs.push(err);
        }
        let values_path = path.child("values");
        let problem = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            errs.push(FieldError::invalid(&values_path, values.clone(), problem));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        values_path.index(i),
                        value.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, value) in values.iter().enumerate() {
            let msgs = is_valid_label_value(value);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    values_path.index(i).key(key.as_str()),
                    value.as_str(),
                    msgs.join("; "),
                ));
            }
        }
        errs.into_result()?;
        Ok(Requirement { key, operator, values })
    }

    /// A requirement whose parts were checked already.
    pub(crate) fn unchecked(key: String, operator: Operator, values: Vec<String>) -> Self {
        Requirement { key, operator, values }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and without repeats when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether labels, seen through `get`, satisfy this requirement.
    ///
    /// `NotEquals`, `NotIn` and `DoesNotExist` match when the label is absent; every other
    /// operator needs the label. `GreaterThan` and `LessThan` need the label to be an integer.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let actual = get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                actual.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotIn | Operator::NotEquals => {
                actual.is_none_or(|v| self.values.iter().all(|x| x != v))
            }
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (actual, self.values.as_slice()) else {
                    return false;
                };
                match (actual.parse::<i64>(), wanted.parse::<i64>()) {
                    (Ok(actual), Ok(wanted)) if self.operator == Operator::GreaterThan => actual > wanted,
                    (Ok(actual), Ok(wanted)) => actual < wanted,
                    _ => false,
                }
            }
        }
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }
}

/// Kubernetes reports a bad key as one error joining all its problems.
fn check_key(key: &str, path: &FieldPath) -> Option<FieldError> {
    let msgs = is_qualified_name(key);
    (!msgs.is_empty()).then(|| FieldError::invalid(path, key, msgs.join("; ")))
}

pub(crate) fn key_error(key: &str) -> Option<FieldError> {
    check_key(key, &FieldPath::root().child("key"))
}

impl fmt::Display for Requirement {
    /// Kubernetes' string form: `!key`, `key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
    /// `key notin (a,b)`, `key>1`, `key<1`, with set values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Inner {
    /// Selects no object at all (an API selector that is absent).
    Nothing,
    /// Selects the objects that meet every requirement, sorted by key.
    Requirements(Vec<Requirement>),
}

/// A label selector: the objects whose labels meet every one of its [`Requirement`]s.
///
/// Two selectors are special, as in Kubernetes: [`everything`](Self::everything) (no
/// requirement; the empty string, an empty API selector) selects every object, and
/// [`nothing`](Self::nothing) (an absent API selector) selects none.
///
/// ```
/// use std::collections::BTreeMap;
/// use flotilla_core::selector::LabelSelector;
///
/// let sel: LabelSelector = "tier!=db, app=web,env in (staging, prod),!canary,track".parse()?;
/// assert_eq!(sel.to_string(), "app=web,!canary,env in (prod,staging),tier!=db,track");
/// let labels = BTreeMap::from([
///     ("app".to_string(), "web".to_string()),
///     ("env".to_string(), "prod".to_string()),
///     ("track".to_string(), "stable".to_string()),
/// ]);
/// assert!(sel.matches(&labels));
/// # Ok::<(), flotilla_core::selector::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    inner: Inner,
}

impl LabelSelector {
    /// The selector that selects every object.
    pub fn everything() -> Self {
        LabelSelector { inner: Inner::Requirements(Vec::new()) }
    }

    /// The selector that selects no object. It prints as the empty string, like Kubernetes'
    /// `labels.Nothing()`, so its string form does not parse back to it.
    pub fn nothing() -> Self {
        LabelSelector { inner: Inner::Nothing }
    }

    /// Parses Kubernetes' string form, e.g. `app=web,tier!=db,env in (prod, staging),!canary,track`.
    ///
    /// Requirements are sorted by key (stably); set values are sorted and repeats dropped.
    pub fn parse(input: &str) -> Result<Self> {
        Ok(LabelSelector { inner: Inner::Requirements(super::parser::parse(input)?) })
    }

    /// The selector that requires every one of `requirements`.
    pub fn from_requirements(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { inner: Inner::Requirements(requirements) }
    }

    /// The selector that requires each label of `labels` (Kubernetes' `ValidatedSelectorFromSet`);
    /// an empty map gives [`everything`](Self::everything).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self> {
        let mut errors = ErrorList::new();
        let mut requirements = Vec::with_capacity(labels.len());
        for (key, value) in labels {
            match Requirement::checked(key.clone(), Operator::Equals, vec![value.clone()], &FieldPath::root())
            {
                Ok(requirement) => requirements.push(requirement),
                Err(errs) => errors.extend(errs),
            }
        }
        errors.into_result().map_err(|errors| SelectorError::InvalidLabelSelector { errors })?;
        Ok(Self::from_requirements(requirements))
    }

    /// This selector with one more requirement. [`nothing`](Self::nothing) stays nothing.
    #[must_use]
    pub fn with(self, requirement: Requirement) -> Self {
        match self.inner {
            Inner::Nothing => self,
            Inner::Requirements(requirements) => {
                Self::from_requirements(requirements.into_iter().chain([requirement]))
            }
        }
    }

    /// The requirements, sorted by key; none for both [`everything`](Self::everything) and
    /// [`nothing`](Self::nothing).
    pub fn requirements(&self) -> &[Requirement] {
        match &self.inner {
            Inner::Nothing => &[],
            Inner::Requirements(requirements) => requirements,
        }
    }

    /// Whether this selector restricts nothing, i.e. is [`everything`](Self::everything).
    pub fn is_empty(&self) -> bool {
        matches!(&self.inner, Inner::Requirements(r) if r.is_empty())
    }

    /// Whether this is [`nothing`](Self::nothing).
    pub fn matches_nothing(&self) -> bool {
        self.inner == Inner::Nothing
    }

    /// Whether labels, seen through `get`, meet every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match &self.inner {
            Inner::Nothing => false,
            Inner::Requirements(requirements) => requirements.iter().all(|r| r.matches_with(&get)),
        }
    }

    /// Whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// The value `key` must have, if a requirement (`=`, `==`, or `in` with one value) pins it:
    /// lets a store look objects up by label instead of scanning.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements().iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl Default for LabelSelector {
    /// [`LabelSelector::everything`].
    fn default() -> Self {
        Self::everything()
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    /// Kubernetes' canonical string form: requirements sorted by key, joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, op, values.iter().map(|v| v.to_string()).collect()).expect("valid requirement")
    }

    #[test]
    fn requirement_matching() {
        use Operator::*;
        let xy = labels(&[("x", "foo"), ("y", "baz")]);
        let empty_y = labels(&[("y", "")]);
        let cases = [
            (req("x", In, &["foo"]), &xy, true),
            (req("y", NotIn, &["alpha"]), &xy, true),
            (req("y", In, &["alpha"]), &xy, false),
            (req("x", NotIn, &[""]), &empty_y, true),
            (req("z", NotIn, &["a"]), &xy, true),
            (req("z", NotEquals, &["a"]), &xy, true),
            (req("x", NotEquals, &["foo"]), &xy, false),
            (req("z", In, &["a", ""]), &xy, false),
            (req("x", Equals, &[""]), &xy, false),
            (req("y", Equals, &[""]), &empty_y, true),
            (req("y", DoubleEquals, &[""]), &empty_y, true),
            (req("y", Exists, &[]), &empty_y, true),
            (req("x", DoesNotExist, &[]), &empty_y, true),
            (req("y", DoesNotExist, &[]), &empty_y, false),
            (req("x", Exists, &[]), &empty_y, false),
        ];
        for (r, l, want) in cases {
            assert_eq!(r.matches(l), want, "{r} on {l:?}");
        }
    }

    #[test]
    fn integer_comparisons() {
        use Operator::*;
        let cases = [
            ("2", GreaterThan, "1", true),
            ("1", GreaterThan, "1", false),
            ("0", LessThan, "1", true),
            ("2", LessThan, "1", false),
            ("v2", GreaterThan, "1", false),
            ("", GreaterThan, "-1", false),
            ("+5", GreaterThan, "4", true),
            ("-5", LessThan, "4", true),
            ("9223372036854775808", GreaterThan, "1", false),
        ];
        for (actual, op, wanted, want) in cases {
            let r = Requirement::unchecked("z".into(), op, vec![wanted.into()]);
            assert_eq!(r.matches(&labels(&[("z", actual)])), want, "{actual} {op:?} {wanted}");
        }
        assert!(!req("z", GreaterThan, &["1"]).matches(&labels(&[])), "absent label");
    }

    #[test]
    fn requirement_checks() {
        use Operator::*;
        let err = |key: &str, op, values: &[&str]| {
            let values = values.iter().map(|v| v.to_string()).collect();
            match Requirement::new(key, op, values) {
                Err(SelectorError::InvalidLabelSelector { errors }) => {
                    errors.iter().map(|e| e.path.to_string()).collect::<Vec<_>>()
                }
                other => panic!("expected an invalid requirement, got {other:?}"),
            }
        };
        assert_eq!(err("x1", In, &[]), ["values"]);
        assert_eq!(err("x2", NotIn, &[]), ["values"]);
        assert_eq!(err("x5", Equals, &["foo", "bar"]), ["values"]);
        assert_eq!(err("x8", Exists, &["foo"]), ["values"]);
        assert_eq!(err("x13", GreaterThan, &[]), ["values"]);
        assert_eq!(err("x14", GreaterThan, &["bar"]), ["values[0]"]);
        assert_eq!(err("x15", LessThan, &["-1"]), ["values[0][x15]"]);
        assert_eq!(err(&"a".repeat(254), Exists, &[]), ["key"]);
        assert_eq!(err("x16", Equals, &[&"a".repeat(254)]), ["values[0][x16]"]);
        assert_eq!(err("x17", Equals, &["a b"]), ["values[0][x17]"]);
        assert!(Requirement::new("x", In, vec!["".into()]).is_ok());
        assert!(Requirement::new("x", GreaterThan, vec!["6".into()]).is_ok());
        let msg = Requirement::new("x", Equals, vec!["a b".into()])
            .map(|_| ())
            .expect_err("invalid value")
            .to_string();
        assert!(
            msg.starts_with(
                "invalid label selector: values[0][x]: Invalid value: \"a b\": a valid label must be"
            ),
            "{msg}"
        );
    }

    #[test]
    fn displays_like_kubernetes() {
        use Operator::*;
        let cases = [
            (
                vec![req("x", In, &["def", "abc"]), req("y", NotIn, &["jkl"]), req("z", Exists, &[])],
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                vec![
                    req("x", NotIn, &["abc", "def"]),
                    req("y", NotEquals, &["jkl"]),
                    req("z", DoesNotExist, &[]),
                ],
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                vec![req("z", NotIn, &[""]), req("y", In, &["mno", "jkl"]), req("x", NotIn, &["abc"])],
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                vec![
                    req("x", Equals, &["abc"]),
                    req("y", DoubleEquals, &["jkl"]),
                    req("z", NotEquals, &["a"]),
                    req("z", Exists, &[]),
                ],
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                vec![req("x", GreaterThan, &["2"]), req("y", LessThan, &["8"]), req("z", Exists, &[])],
                "x>2,y<8,z",
            ),
            (vec![req("a", In, &["", "b"]), req("b", Equals, &[""])], "a in (,b),b="),
        ];
        for (requirements, want) in cases {
            assert_eq!(LabelSelector::from_requirements(requirements).to_string(), want);
        }
    }

    #[test]
    fn everything_and_nothing() {
        let any = labels(&[("x", "y")]);
        assert!(LabelSelector::everything().matches(&any));
        assert!(LabelSelector::everything().matches(&labels(&[])));
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::everything().matches_nothing());
        assert!(!LabelSelector::nothing().matches(&any));
        assert!(!LabelSelector::nothing().matches(&labels(&[])));
        assert!(!LabelSelector::nothing().is_empty());
        assert!(LabelSelector::nothing().matches_nothing());
        assert_eq!(LabelSelector::nothing().to_string(), "");
        assert!(LabelSelector::nothing().with(req("a", Operator::Exists, &[])).matches_nothing());
        assert_eq!(LabelSelector::default(), LabelSelector::everything());
    }

    #[test]
    fn from_labels_and_exact_match() {
        let set = labels(&[("foo", "bar"), ("baz", "blah")]);
        let sel = LabelSelector::from_labels(&set).expect("valid labels");
        assert_eq!(sel.to_string(), "baz=blah,foo=bar");
        assert!(sel.matches(&set));
        assert!(sel.matches(&labels(&[("foo", "bar"), ("baz", "blah"), ("extra", "x")])));
        assert!(!sel.matches(&labels(&[("foo", "bar")])));
        assert_eq!(sel.requires_exact_match("foo"), Some("bar"));
        assert_eq!(sel.requires_exact_match("nope"), None);
        assert!(LabelSelector::from_labels(&BTreeMap::new()).expect("empty").is_empty());
        assert!(LabelSelector::from_labels(&labels(&[("bad key", "v")])).is_err());
        let sel = LabelSelector::from_requirements([
            req("a", Operator::In, &["x"]),
            req("b", Operator::In, &["x", "y"]),
        ]);
        assert_eq!(sel.requires_exact_match("a"), Some("x"));
        assert_eq!(sel.requires_exact_match("b"), None);
    }
}
