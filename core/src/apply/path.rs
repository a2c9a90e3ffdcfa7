//! [`PathElement`] and [`Path`]: the steps from an object's root to one of its fields.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// One step of a field path, as structured-merge-diff names them.
///
/// Elements order as in structured-merge-diff (fields, then keys, then values, then
/// indexes), which is also the order a [`FieldSet`](super::FieldSet) iterates in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathElement {
    /// A field of an object (`.image`), or a key of a map (`.app` under `labels`).
    Field(String),
    /// An item of a list merged by key, named by its key fields (`[name="c"]`). The fields are
    /// sorted by name; build it with [`PathElement::key`] to keep that true.
    Key(Vec<(String, Value)>),
    /// An item of a list that is a set, named by its value (`[="foregroundDeletion"]`).
    Value(Value),
    /// A position in a list whose items have no identity (`[0]`).
    Index(usize),
}

impl PathElement {
    /// A field element.
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// A key element with the given key fields, sorted by name.
    pub fn key<N: Into<String>>(fields: impl IntoIterator<Item = (N, Value)>) -> Self {
        let mut fields: Vec<(String, Value)> = fields.into_iter().map(|(n, v)| (n.into(), v)).collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| compare_values(&a.1, &b.1)));
        PathElement::Key(fields)
    }

    /// The rank of the element's variant in structured-merge-diff's order.
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PathElement {
    /// structured-merge-diff's form: `.name`, `[k="v",n=1]`, `[="v"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={value}")?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path of [`PathElement`]s from the root of an object; displays as
/// `.spec.containers[name="c"].image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of field names only: `Path::fields(["spec", "replicas"])`.
    pub fn fields<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Path(names.into_iter().map(PathElement::field).collect())
    }

    /// The path's elements.
    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }

    /// This path with `element` appended.
    #[must_use]
    pub fn child(mut self, element: PathElement) -> Self {
        self.0.push(element);
        self
    }
}

impl From<Vec<PathElement>> for Path {
    fn from(elements: Vec<PathElement>) -> Self {
        Path(elements)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|element| element.fmt(f))
    }
}

/// A total order on JSON values, consistent with their equality: numbers, then strings,
/// booleans, arrays, objects, and `null` last (structured-merge-diff's order of kinds).
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (xi, yi) in x.iter().zip(y) {
                let c = compare_values(xi, yi);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // serde_json's maps iterate in key order (no `preserve_order`); sort to not rely on it.
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(&ys) {
                let c = xk.cmp(yk).then_with(|| compare_values(xv, yv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Numbers by value; an integer and a float of equal value order integer first, so that the
/// order only calls equal the numbers serde_json calls equal.
fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    let as_int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (as_int(x), as_int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (xi, yi) => {
            let (a, b) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            a.total_cmp(&b).then_with(|| yi.is_some().cmp(&xi.is_some()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_display_like_structured_merge_diff() {
        let path = Path::fields(["spec", "containers"])
            .child(PathElement::key([("name", json!("c"))]))
            .child(PathElement::field("image"));
        assert_eq!(path.to_string(), r#".spec.containers[name="c"].image"#);

        let ports = PathElement::key([("protocol", json!("TCP")), ("containerPort", json!(80))]);
        assert_eq!(ports.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::Value(json!("a")).to_string(), r#"[="a"]"#);
        assert_eq!(PathElement::Index(3).to_string(), "[3]");
    }

    #[test]
    fn elements_order_by_kind_then_content() {
        let mut elements = vec![
            PathElement::Index(0),
            PathElement::Value(json!("b")),
            PathElement::Value(json!(1)),
            PathElement::key([("name", json!("a"))]),
            PathElement::field("z"),
            PathElement::field("a"),
        ];
        elements.sort();
        assert_eq!(
            elements,
            [
                PathElement::field("a"),
                PathElement::field("z"),
                PathElement::key([("name", json!("a"))]),
                PathElement::Value(json!(1)),
                PathElement::Value(json!("b")),
                PathElement::Index(0),
            ]
        );
    }

    #[test]
    fn value_order_is_consistent_with_equality() {
        assert_eq!(compare_values(&json!(1), &json!(1)), Ordering::Equal);
        assert_eq!(compare_values(&json!(1), &json!(1.0)), Ordering::Less);
        assert_eq!(compare_values(&json!(2), &json!(1.5)), Ordering::Greater);
        assert_eq!(compare_values(&json!({"a": 1}), &json!({"a": 1})), Ordering::Equal);
        assert_eq!(compare_values(&json!(null), &json!({})), Ordering::Greater);
    }
}
