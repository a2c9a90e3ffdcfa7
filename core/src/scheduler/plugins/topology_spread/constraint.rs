//! A pod's topology spread constraints, parsed once per scheduling cycle.

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};

use crate::scheduler::plugins::pod_affinity_terms::pod_labels;
use crate::selector::{LabelSelector, Operator, Requirement};
use crate::validation::FieldPath;

/// One constraint, parsed (kube-scheduler's `topologySpreadConstraint`).
#[derive(Clone, Debug)]
pub(super) struct Constraint {
    pub(super) max_skew: i64,
    pub(super) topology_key: String,
    pub(super) selector: LabelSelector,
    pub(super) min_domains: i64,
    pub(super) honor_node_affinity: bool,
    pub(super) honor_taints: bool,
    /// Whether the constraint counts any existing pod: an empty selector counts none
    /// (kube-scheduler's `countPodsMatchSelector`), and neither does one matching nothing.
    pub(super) counts_pods: bool,
}

impl Constraint {
    /// The pod's constraints with `whenUnsatisfiable: when`; an invalid selector or policy is an
    /// error naming its field.
    pub(super) fn all(pod: &Pod, when: &str) -> Result<Vec<Constraint>, String> {
        let list = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or(&[]);
        let base = FieldPath::new("spec").child("topologySpreadConstraints");
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate().filter(|(_, c)| c.when_unsatisfiable == when) {
            out.push(Constraint::parse(pod, c, &base.index(i))?);
        }
        Ok(out)
    }

    fn parse(pod: &Pod, c: &TopologySpreadConstraint, path: &FieldPath) -> Result<Constraint, String> {
        let mut selector = LabelSelector::from_k8s(c.label_selector.as_ref(), &path.child("labelSelector"))
            .map_err(|errs| errs.to_string())?;
        let labels = pod_labels(pod);
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                let r = Requirement::new(key.clone(), Operator::Equals, vec![value.clone()])
                    .map_err(|e| format!("{}: {e}", path.child("matchLabelKeys")))?;
                selector = selector.with(r);
            }
        }
        let policy = |p: &Option<String>, field: &str, default: bool| match p.as_deref() {
            None => Ok(default),
            Some("Honor") => Ok(true),
            Some("Ignore") => Ok(false),
            Some(other) => Err(format!("{}: unsupported value {other:?}", path.child(field))),
        };
        let counts_pods = !selector.is_empty() && !selector.matches_nothing();
        Ok(Constraint {
            counts_pods,
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: policy(&c.node_affinity_policy, "nodeAffinityPolicy", true)?,
            honor_taints: policy(&c.node_taints_policy, "nodeTaintsPolicy", false)?,
        })
    }
}
