//! Where a volume can be used: a PersistentVolume's required node affinity, and the nodes a
//! StorageClass may provision for (`allowedTopologies`), as Kubernetes matches them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::scheduler::NodeInfo;
use crate::validation::{is_qualified_name, is_valid_label_value};

/// The only node field a term's `matchFields` may name.
const NAME_FIELD: &str = "metadata.name";

#[derive(Clone, Debug)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

impl Op {
    fn holds(&self, value: Option<&String>) -> bool {
        let number = || value.and_then(|v| v.parse::<i64>().ok());
        match self {
            Op::In(values) => value.is_some_and(|v| values.contains(v)),
            Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt(n) => number().is_some_and(|v| v > *n),
            Op::Lt(n) => number().is_some_and(|v| v < *n),
        }
    }
}

/// A valid node selector term: every label requirement and every `metadata.name`
/// requirement (`true`: `In`, `false`: `NotIn`) must hold.
#[derive(Clone, Debug)]
struct Term {
    labels: Vec<(String, Op)>,
    names: Vec<(String, bool)>,
}

impl Term {
    /// `None` for an empty or invalid term, which matches no node (as Kubernetes' node
    /// selector treats it).
    fn parse(term: &NodeSelectorTerm) -> Option<Term> {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels = exprs.iter().map(label_requirement).collect::<Option<Vec<_>>>()?;
        let names = fields.iter().map(field_requirement).collect::<Option<Vec<_>>>()?;
        Some(Term { labels, names })
    }

    fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        self.labels.iter().all(|(key, op)| op.holds(labels.get(key)))
            && self.names.iter().all(|(value, equal)| (name == value) == *equal)
    }
}

fn label_requirement(r: &NodeSelectorRequirement) -> Option<(String, Op)> {
    let values = r.values.clone().unwrap_or_default();
    if !is_qualified_name(&r.key).is_empty() || values.iter().any(|v| !is_valid_label_value(v).is_empty()) {
        return None;
    }
    let single_int = || match values.as_slice() {
        [v] => v.parse::<i64>().ok(),
        _ => None,
    };
    let op = match r.operator.as_str() {
        "In" if !values.is_empty() => Op::In(values.clone()),
        "NotIn" if !values.is_empty() => Op::NotIn(values.clone()),
        "Exists" if values.is_empty() => Op::Exists,
        "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
        "Gt" => Op::Gt(single_int()?),
        "Lt" => Op::Lt(single_int()?),
        _ => return None,
    };
    Some((r.key.clone(), op))
}

fn field_requirement(r: &NodeSelectorRequirement) -> Option<(String, bool)> {
    let [value] = r.values.as_deref().unwrap_or(&[]) else { return None };
    match (r.key.as_str(), r.operator.as_str()) {
        (NAME_FIELD, "In") => Some((value.clone(), true)),
        (NAME_FIELD, "NotIn") => Some((value.clone(), false)),
        _ => None,
    }
}

/// The nodes a volume can be used on: `spec.nodeAffinity.required` (any of its terms).
#[derive(Clone, Debug)]
pub(super) struct Affinity {
    /// `None`: no required node affinity, every node. Otherwise the valid terms, one of
    /// which must match (none: every term was empty or invalid, so no node matches).
    terms: Option<Vec<Term>>,
}

impl Affinity {
    /// The volume's required node affinity.
    pub(super) fn of(volume: &PersistentVolume) -> Affinity {
        let required =
            volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
        Affinity { terms: required.map(|r| r.node_selector_terms.iter().filter_map(Term::parse).collect()) }
    }

    /// Whether the volume can be used on `node` (its labels and name).
    pub(super) fn matches(&self, node: &NodeInfo) -> bool {
        self.terms.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(node.labels(), node.name())))
    }
}

/// Whether the class may provision a volume for `node` (Kubernetes'
/// `MatchTopologySelectorTerms`): no `allowedTopologies` admits every node; otherwise one
/// term must have every label it names with one of its values (an empty term admits none).
pub(super) fn topology_allows(class: &StorageClass, node: &NodeInfo) -> bool {
    let terms = class.allowed_topologies.as_deref().unwrap_or(&[]);
    if terms.is_empty() {
        return true;
    }
    let labels = node.labels();
    terms.iter().any(|term| {
        let exprs = term.match_label_expressions.as_deref().unwrap_or(&[]);
        !exprs.is_empty() && exprs.iter().all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}
