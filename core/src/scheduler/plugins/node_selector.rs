//! Node selector terms (`nodeAffinity` terms of pods and of PersistentVolumes), parsed and
//! matched as Kubernetes' `nodeaffinity.NodeSelector` does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::validation::{is_qualified_name, is_valid_label_value};

/// The only node field a term's `matchFields` may name.
const NAME_FIELD: &str = "metadata.name";

#[derive(Clone, Debug)]
enum LabelOp {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// A parsed, valid node selector term: label requirements and `metadata.name` requirements
/// (`true` for `In`, `false` for `NotIn`), all of which must hold.
#[derive(Clone, Debug)]
pub(crate) struct Term {
    labels: Vec<(String, LabelOp)>,
    names: Vec<(String, bool)>,
}

impl Term {
    /// The term, or `None` if it is empty or invalid: such a term matches no node, as
    /// Kubernetes drops it.
    pub(crate) fn parse(term: &NodeSelectorTerm) -> Option<Term> {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels = exprs.iter().map(label_requirement).collect::<Option<Vec<_>>>()?;
        let names = fields.iter().map(field_requirement).collect::<Option<Vec<_>>>()?;
        Some(Term { labels, names })
    }

    /// Whether a node with these labels and this name matches every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        self.labels.iter().all(|(key, op)| {
            let value = labels.get(key);
            match op {
                LabelOp::In(values) => value.is_some_and(|v| values.contains(v)),
                LabelOp::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::Gt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
                LabelOp::Lt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            }
        }) && self.names.iter().all(|(value, equal)| (name == value) == *equal)
    }
}

/// A label requirement, checked as Kubernetes' `labels.NewRequirement` checks it.
fn label_requirement(r: &NodeSelectorRequirement) -> Option<(String, LabelOp)> {
    let values = r.values.clone().unwrap_or_default();
    if !is_qualified_name(&r.key).is_empty() || values.iter().any(|v| !is_valid_label_value(v).is_empty()) {
        return None;
    }
    let single_int = || match values.as_slice() {
        [v] => v.parse::<i64>().ok(),
        _ => None,
    };
    let op = match r.operator.as_str() {
        "In" if !values.is_empty() => LabelOp::In(values.clone()),
        "NotIn" if !values.is_empty() => LabelOp::NotIn(values.clone()),
        "Exists" if values.is_empty() => LabelOp::Exists,
        "DoesNotExist" if values.is_empty() => LabelOp::DoesNotExist,
        "Gt" => LabelOp::Gt(single_int()?),
        "Lt" => LabelOp::Lt(single_int()?),
        _ => return None,
    };
    Some((r.key.clone(), op))
}

/// A field requirement: only `metadata.name`, `In` or `NotIn`, with exactly one value.
fn field_requirement(r: &NodeSelectorRequirement) -> Option<(String, bool)> {
    let [value] = r.values.as_deref().unwrap_or(&[]) else { return None };
    if r.key != NAME_FIELD {
        return None;
    }
    match r.operator.as_str() {
        "In" => Some((value.clone(), true)),
        "NotIn" => Some((value.clone(), false)),
        _ => None,
    }
}
