//! [`FieldSet`]: a set of field paths, kept as a trie.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::path::{Path, PathElement};

/// A set of field paths, stored as structured-merge-diff stores one: a trie whose nodes hold
/// the elements that end a member path here (`members`) and the sub-tries under each element
/// (`children`).
///
/// A node can be both a member and a parent: `.metadata.labels` is a member and
/// `.metadata.labels.app` is another when a manager owns the map and one of its keys. The
/// empty path is never a member. A child trie is never empty, so two sets are equal exactly
/// when they hold the same paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// The number of paths in the set.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(FieldSet::len).sum::<usize>()
    }

    /// Adds a path; the empty path is ignored (it names the whole object, which no one owns).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.contains(rest)),
        }
    }

    /// Whether `path` or any path below it is a member.
    pub fn contains_prefix(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => {
                (rest.is_empty() && self.members.contains(first))
                    || self.children.get(first).is_some_and(|child| child.contains_prefix(rest))
            }
        }
    }

    /// The paths below `element`, relative to it.
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Every path in either set.
    #[must_use]
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other` to this set.
    pub fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            self.children.entry(element.clone()).or_default().union_with(child);
        }
    }

    /// The paths of this set that `other` lacks.
    #[must_use]
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths of this set that are neither in `other` nor below a member of `other`:
    /// removing `.status` this way removes `.status.phase` too.
    #[must_use]
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(element, _)| !other.members.contains(element))
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(theirs) => child.recursive_difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths in both sets.
    #[must_use]
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let both = child.intersection(other.children.get(element)?);
                (!both.is_empty()).then(|| (element.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Every path of the set, in order (a path before the paths below it).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::with_capacity(self.len());
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        let mut members = self.members.iter().peekable();
        for (element, child) in &self.children {
            while let Some(member) = members.next_if(|member| *member <= element) {
                out.push(Path(prefix.iter().cloned().chain([member.clone()]).collect()));
            }
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
        for member in members {
            out.push(Path(prefix.iter().cloned().chain([member.clone()]).collect()));
        }
    }

    /// The elements that end a member path at this node.
    pub(crate) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    /// The sub-tries of this node.
    pub(crate) fn children(&self) -> &BTreeMap<PathElement, FieldSet> {
        &self.children
    }

    /// Builds a node from its parts, dropping empty children.
    pub(crate) fn from_parts(
        members: BTreeSet<PathElement>,
        mut children: BTreeMap<PathElement, FieldSet>,
    ) -> Self {
        children.retain(|_, child| !child.is_empty());
        FieldSet { members, children }
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(paths: I) -> Self {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path.elements());
        }
        set
    }
}

impl fmt::Display for FieldSet {
    /// One path per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.paths().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{path}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn set(paths: &[&[&str]]) -> FieldSet {
        paths.iter().map(|p| Path::fields(p.iter().copied())).collect()
    }

    #[test]
    fn insert_contains_and_prefixes() {
        let s = set(&[&["spec", "replicas"], &["metadata", "labels"], &["metadata", "labels", "app"]]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(Path::fields(["metadata", "labels"]).elements()));
        assert!(!s.contains(Path::fields(["spec"]).elements()));
        assert!(s.contains_prefix(Path::fields(["spec"]).elements()));
        assert!(s.contains_prefix(Path::fields(["spec", "replicas"]).elements()));
        assert!(!s.contains_prefix(Path::fields(["spec", "replicas", "x"]).elements()));
        assert!(!s.contains(&[]));
        let mut empty = FieldSet::new();
        empty.insert(&[]);
        assert!(empty.is_empty());
    }

    #[test]
    fn algebra_on_small_sets() {
        let a = set(&[&["a"], &["b", "c"], &["b", "d"]]);
        let b = set(&[&["b", "c"], &["e"]]);
        assert_eq!(a.union(&b), set(&[&["a"], &["b", "c"], &["b", "d"], &["e"]]));
        assert_eq!(a.difference(&b), set(&[&["a"], &["b", "d"]]));
        assert_eq!(a.intersection(&b), set(&[&["b", "c"]]));
        assert_eq!(b.difference(&b), FieldSet::new());
        assert_eq!(a.recursive_difference(&set(&[&["b"]])), set(&[&["a"]]));
        assert_eq!(a.difference(&set(&[&["b"]])), a);
    }

    #[test]
    fn paths_iterate_in_order_and_display_one_per_line() {
        let mut s = set(&[&["spec", "replicas"], &["metadata", "labels"], &["metadata", "labels", "app"]]);
        s.insert(
            Path::fields(["spec", "containers"])
                .child(PathElement::key([("name", json!("c"))]))
                .child(PathElement::field("image"))
                .elements(),
        );
        assert_eq!(
            s.to_string(),
            ".metadata.labels\n.metadata.labels.app\n.spec.containers[name=\"c\"].image\n.spec.replicas"
        );
    }

    /// Sets of paths up to three elements deep over a small alphabet, so that generated sets
    /// share prefixes and members often.
    pub(crate) fn arb_element() -> impl Strategy<Value = PathElement> {
        prop_oneof![
            4 => "[a-c]{1}".prop_map(PathElement::Field),
            1 => (0usize..3).prop_map(PathElement::Index),
            1 => "[xy]".prop_map(|v| PathElement::Value(json!(v))),
            1 => (0i64..2).prop_map(|v| PathElement::Value(json!(v))),
            1 => ("[ab]", 0i64..2).prop_map(|(n, p)| PathElement::key([("name", json!(n)), ("port", json!(p))])),
        ]
    }

    pub(crate) fn arb_set() -> impl Strategy<Value = FieldSet> {
        prop::collection::vec(prop::collection::vec(arb_element(), 1..4), 0..12)
            .prop_map(|paths| paths.into_iter().map(Path).collect())
    }

    /// The model: a plain set of paths.
    fn model(s: &FieldSet) -> BTreeSet<Path> {
        s.paths().into_iter().collect()
    }

    proptest! {
        #[test]
        fn algebra_matches_a_set_of_paths(a in arb_set(), b in arb_set()) {
            let (ma, mb) = (model(&a), model(&b));
            prop_assert_eq!(model(&a.union(&b)), ma.union(&mb).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(model(&a.difference(&b)), ma.difference(&mb).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(model(&a.intersection(&b)), ma.intersection(&mb).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(a.len(), ma.len());
            prop_assert_eq!(a.paths().len(), ma.len());
            prop_assert!(a.paths().windows(2).all(|w| w[0] < w[1]));
        }

        #[test]
        fn union_and_difference_laws(a in arb_set(), b in arb_set(), c in arb_set()) {
            prop_assert_eq!(a.union(&b), b.union(&a));
            prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
            prop_assert_eq!(a.union(&b).difference(&b), a.difference(&b));
            prop_assert!(a.difference(&b).intersection(&b).is_empty());
            prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
            prop_assert_eq!(a.difference(&a), FieldSet::new());
            prop_assert_eq!(a.intersection(&a.union(&b)), a.clone());
            // Every remaining path avoids every member of `b` as a prefix.
            let rest = a.recursive_difference(&b);
            for path in rest.paths() {
                let elements = path.elements();
                prop_assert!((1..=elements.len()).all(|n| !b.contains(&elements[..n])));
                prop_assert!(a.contains(elements));
            }
        }
    }
}
