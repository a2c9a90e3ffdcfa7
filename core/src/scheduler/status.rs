//! What a plugin says about a pod ([`Status`]) and why a pod fits nowhere ([`FitError`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A plugin's verdict (kube-scheduler's `framework.Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The pod may go on (pre-filter) or fits (filter).
    Success,
    /// The pod does not fit, for reasons that preempting pods could remove
    /// ("Insufficient cpu").
    Unschedulable {
        /// The reasons, as kube-scheduler words them.
        reasons: Vec<String>,
    },
    /// The pod does not fit, and preemption would not help ("node(s) were unschedulable").
    UnschedulableAndUnresolvable {
        /// The reasons, as kube-scheduler words them.
        reasons: Vec<String>,
    },
    /// The plugin could not decide: an internal error, which aborts the scheduling cycle.
    Error {
        /// What went wrong.
        message: String,
    },
}

impl Status {
    /// [`Status::Unschedulable`] with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::Unschedulable { reasons: vec![reason.into()] }
    }

    /// [`Status::UnschedulableAndUnresolvable`] with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::UnschedulableAndUnresolvable { reasons: vec![reason.into()] }
    }

    /// [`Status::Error`] with a message.
    pub fn error(message: impl Into<String>) -> Status {
        Status::Error { message: message.into() }
    }

    /// Whether this is [`Status::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }

    /// The reasons of an unschedulable verdict; the message of an error; nothing for success.
    pub fn reasons(&self) -> &[String] {
        match self {
            Status::Success => &[],
            Status::Unschedulable { reasons } | Status::UnschedulableAndUnresolvable { reasons } => reasons,
            Status::Error { message } => std::slice::from_ref(message),
        }
    }
}

/// Why one node was rejected: the first filter plugin that rejected it, and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node's name.
    pub node: String,
    /// The plugin that rejected the node.
    pub plugin: &'static str,
    /// Its verdict (unschedulable or unresolvable).
    pub status: Status,
}

/// No node can take the pod (kube-scheduler's `FitError` and `Diagnosis`).
///
/// Displays as kube-scheduler does: `0/<nodes> nodes are available: ` then either the
/// pre-filter's message, or every reason with the number of nodes that gave it, the
/// `"<count> <reason>"` strings sorted as strings and joined by `", "`, then a full stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes the snapshot has.
    pub num_all_nodes: usize,
    /// The plugin and message of a pre-filter that found the pod unschedulable; no node was
    /// filtered then.
    pub pre_filter: Option<(&'static str, String)>,
    /// Why each filtered node was rejected, in snapshot order.
    pub failures: Vec<NodeFailure>,
}

impl FitError {
    /// The plugins that made the pod unschedulable: the runtime re-queues the pod on the
    /// cluster events these plugins care about.
    pub fn unschedulable_plugins(&self) -> BTreeSet<&'static str> {
        let mut plugins: BTreeSet<&'static str> = self.failures.iter().map(|f| f.plugin).collect();
        if let Some((plugin, _)) = &self.pre_filter {
            plugins.insert(plugin);
        }
        plugins
    }

    /// How many nodes gave each reason.
    pub fn reason_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for failure in &self.failures {
            for reason in failure.status.reasons() {
                *counts.entry(reason.as_str()).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some((_, message)) = &self.pre_filter {
            // Every node would carry the same status, so only the pre-filter's message is
            // shown, as kube-scheduler does.
            return write!(f, " {message}.");
        }
        let mut histogram: Vec<String> =
            self.reason_counts().into_iter().map(|(reason, count)| format!("{count} {reason}")).collect();
        // Go's sort.Strings on "<count> <reason>": the count is part of the sort key.
        histogram.sort();
        if !histogram.is_empty() {
            write!(f, " {}.", histogram.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(node: &str, plugin: &'static str, status: Status) -> NodeFailure {
        NodeFailure { node: node.to_string(), plugin, status }
    }

    #[test]
    fn message_counts_and_sorts_reasons_like_kube_scheduler() {
        let taint = "node(s) had untolerated taint {key: value}";
        let err = FitError {
            num_all_nodes: 5,
            pre_filter: None,
            failures: vec![
                failure("a", "NodeResourcesFit", Status::unschedulable("Insufficient cpu")),
                failure("b", "TaintToleration", Status::unresolvable(taint)),
                failure("c", "NodeResourcesFit", Status::unschedulable("Insufficient cpu")),
                failure("d", "TaintToleration", Status::unresolvable(taint)),
                failure("e", "NodeResourcesFit", Status::unschedulable("Insufficient cpu")),
            ],
        };
        assert_eq!(
            err.to_string(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {key: value}, 3 Insufficient cpu."
        );
        assert_eq!(err.unschedulable_plugins(), BTreeSet::from(["NodeResourcesFit", "TaintToleration"]));
    }

    #[test]
    fn several_reasons_from_one_node_each_count() {
        let err = FitError {
            num_all_nodes: 2,
            pre_filter: None,
            failures: vec![
                failure(
                    "a",
                    "NodeResourcesFit",
                    Status::Unschedulable {
                        reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                    },
                ),
                failure("b", "NodeResourcesFit", Status::unschedulable("Insufficient memory")),
            ],
        };
        assert_eq!(err.to_string(), "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.");
    }

    #[test]
    fn counts_sort_as_strings_as_go_does() {
        let failures = (0..12)
            .map(|i| {
                let reason = if i < 10 { "node(s) were unschedulable" } else { "Too many pods" };
                failure(&format!("n{i}"), "x", Status::unschedulable(reason))
            })
            .collect();
        let err = FitError { num_all_nodes: 12, pre_filter: None, failures };
        assert_eq!(
            err.to_string(),
            "0/12 nodes are available: 10 node(s) were unschedulable, 2 Too many pods."
        );
    }

    #[test]
    fn pre_filter_message_replaces_the_histogram() {
        let err =
            FitError { num_all_nodes: 3, pre_filter: Some(("P", "pod is broken".into())), failures: vec![] };
        assert_eq!(err.to_string(), "0/3 nodes are available: pod is broken.");
        assert_eq!(err.unschedulable_plugins(), BTreeSet::from(["P"]));
    }
}
