//! Field paths: where in an object a validation error was found.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A named field (`spec`, `containers`).
    Field(String),
    /// A position in a list (`[0]`).
    Index(usize),
    /// A key in a map (`[app]`).
    Key(String),
}

/// The path from an object's root to one of its fields, as Kubernetes prints it in errors:
/// `spec.containers[0].image`, `metadata.labels[app]`.
///
/// Paths are built from a root and never mutated: each builder method returns a new path, so
/// one parent can be extended in several directions.
///
/// ```
/// use flotilla_core::validation::FieldPath;
///
/// let spec = FieldPath::new("spec");
/// assert_eq!(spec.child("containers").index(0).child("image").to_string(), "spec.containers[0].image");
/// assert_eq!(FieldPath::new("metadata").child("labels").key("app").to_string(), "metadata.labels[app]");
/// ```
///
/// The empty path ([`FieldPath::root`]) names no field; it prints as an empty string, and a
/// [`FieldError`](super::FieldError) at the empty path prints without a field prefix. (Kubernetes
/// prints a nil path as `<nil>`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<PathSegment>,
}

impl FieldPath {
    /// A path whose first element is the field `name`.
    pub fn new(name: impl Into<String>) -> Self {
        FieldPath { segments: vec![PathSegment::Field(name.into())] }
    }

    /// The empty path, for errors that belong to no particular field.
    pub fn root() -> Self {
        FieldPath::default()
    }

    /// This path extended by the field `name`.
    #[must_use]
    pub fn child(&self, name: impl Into<String>) -> Self {
        self.with(PathSegment::Field(name.into()))
    }

    /// This path extended by a list position.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        self.with(PathSegment::Index(index))
    }

    /// This path extended by a map key.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        self.with(PathSegment::Key(key.into()))
    }

    /// Whether this is the empty path.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The steps of this path, from the root.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    fn with(&self, segment: PathSegment) -> Self {
        let mut segments = Vec::with_capacity(self.segments.len() + 1);
        segments.extend(self.segments.iter().cloned());
        segments.push(segment);
        FieldPath { segments }
    }
}

impl From<&FieldPath> for FieldPath {
    fn from(path: &FieldPath) -> Self {
        path.clone()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                // Like Kubernetes, an unnamed field prints as an empty subscript.
                PathSegment::Field(name) if name.is_empty() => f.write_str("[]")?,
                PathSegment::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Index(index) => write!(f, "[{index}]")?,
                PathSegment::Key(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_kubernetes() {
        let cases = [
            (FieldPath::new("spec"), "spec"),
            (FieldPath::new("spec").child("containers").index(0).child("image"), "spec.containers[0].image"),
            (FieldPath::new("metadata").child("labels").key("app"), "metadata.labels[app]"),
            (
                FieldPath::new("metadata").child("annotations").key("example.com/x"),
                "metadata.annotations[example.com/x]",
            ),
            (FieldPath::new("a").index(1).index(2).key("k").child("b"), "a[1][2][k].b"),
            (FieldPath::root(), ""),
            (FieldPath::root().child("values").index(0).key("x"), "values[0][x]"),
            (FieldPath::root().child("key"), "key"),
        ];
        for (path, want) in cases {
            assert_eq!(path.to_string(), want);
        }
    }

    #[test]
    fn builders_do_not_mutate_the_parent() {
        let spec = FieldPath::new("spec");
        let a = spec.child("a");
        let b = spec.child("b").index(3);
        assert_eq!(spec.to_string(), "spec");
        assert_eq!(a.to_string(), "spec.a");
        assert_eq!(b.to_string(), "spec.b[3]");
        assert_eq!(b.segments().len(), 3);
        assert!(!spec.is_empty());
        assert!(FieldPath::root().is_empty());
    }
}
