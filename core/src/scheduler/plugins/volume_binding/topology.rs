//! Where a volume can be used: a PersistentVolume's required node affinity, and the nodes a
//! StorageClass may provision for (`allowedTopologies`), as Kubernetes matches them.

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::scheduler::NodeInfo;
use crate::scheduler::plugins::node_selector::Term;

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
