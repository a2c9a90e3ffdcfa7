//! The decision of the namespace controller (Kubernetes' `pkg/controller/namespace/deletion`):
//! given a terminating namespace and what each kind left in it after a delete, the status to
//! write (phase and the deletion conditions) and whether to finalize, wait or retry.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::util;
use crate::object::{DynamicObject, ResourceType};

/// The `spec.finalizers` entry this controller removes once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";

/// How soon to look again while content remains (Kubernetes waits an estimate of the
/// remaining grace periods and finalizers, at least several seconds).
pub const CONTENT_RECHECK: Duration = Duration::from_secs(5);

/// Condition: the server's resources could not all be discovered (never true here: the kinds
/// are given).
pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
/// Condition: some group versions could not be parsed (never true here).
pub const GROUP_VERSION_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
/// Condition: deleting or listing some kind failed.
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
/// Condition: objects remain in the namespace.
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
/// Condition: remaining objects wait for finalizers.
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Every condition type the controller maintains, in the order it writes them, with the
/// reason and message of its "all is well" (status `False`) form.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (DISCOVERY_FAILURE, "ResourcesDiscovered", "All resources successfully discovered"),
    (GROUP_VERSION_PARSING_FAILURE, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (CONTENT_FAILURE, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    (CONTENT_REMAINING, "ContentRemoved", "All content successfully removed"),
    (FINALIZERS_REMAINING, "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// What one kind left in the namespace after its content was deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindContent {
    /// The kind as Kubernetes names it in messages: `resource.group` (`pods.` for the core
    /// group, whose name is empty).
    pub resource: String,
    /// How many objects remain.
    pub remaining: usize,
    /// How many of them each finalizer holds.
    pub finalizers: BTreeMap<String, usize>,
    /// How many remain with no finalizer and no deletion under way: they should be gone.
    pub unexpected: usize,
    /// Why deleting or listing the kind failed, if it did.
    pub error: Option<String>,
}

impl KindContent {
    /// How Kubernetes names kind `t` in the conditions.
    pub fn resource_name(t: &ResourceType) -> String {
        format!("{}.{}", t.plural, t.group)
    }

    /// What remains of `t`: the objects still listed after the delete.
    pub fn remaining(t: &ResourceType, objects: &[DynamicObject]) -> KindContent {
        let mut content =
            KindContent { resource: Self::resource_name(t), remaining: objects.len(), ..Default::default() };
        for obj in objects {
            for f in obj.finalizers() {
                *content.finalizers.entry(f.clone()).or_default() += 1;
            }
            // An object being deleted without finalizers waits out a grace period (a pod
            // stopping on its node): it goes by itself.
            if obj.finalizers().is_empty() && !obj.is_deleting() {
                content.unexpected += 1;
            }
        }
        content
    }

    /// Deleting or listing `t` failed with `error`.
    pub fn failed(t: &ResourceType, error: String) -> KindContent {
        KindContent { resource: Self::resource_name(t), error: Some(error), ..Default::default() }
    }
}

/// What comes after the status write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The namespace is empty: set `spec.finalizers` to this list (without [`FINALIZER`])
    /// through the `finalize` subresource.
    Finalize(Vec<String>),
    /// Content remains that goes by itself: look again after this long.
    Wait(Duration),
    /// Some kinds could not be deleted, for these reasons: retry with backoff.
    Retry(Vec<String>),
}

/// What to write for a terminating namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct NamespacePlan {
    /// The namespace with its new status, when the status changes.
    pub status: Option<Namespace>,
    /// What to do next.
    pub next: Next,
}

fn spec_finalizers(ns: &Namespace) -> &[String] {
    ns.spec.as_ref().and_then(|s| s.finalizers.as_deref()).unwrap_or(&[])
}

/// Whether the namespace is being deleted and still waits for this controller to empty it.
pub fn needs_cleanup(ns: &Namespace) -> bool {
    util::is_deleting(&ns.metadata) && spec_finalizers(ns).iter().any(|f| f == FINALIZER)
}

fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    }
}

/// The conditions that report a problem, by type.
fn problems(
    ns: &str,
    content: &[KindContent],
    now: Timestamp,
) -> (BTreeMap<&'static str, NamespaceCondition>, Vec<String>) {
    let mut failures: Vec<String> = content.iter().filter_map(|c| c.error.clone()).collect();
    failures.extend(
        content
            .iter()
            .filter(|c| c.error.is_none() && c.unexpected > 0)
            .map(|c| format!("unexpected items still remain in namespace {ns} for resource {}", c.resource)),
    );
    failures.sort();
    let mut remaining: Vec<String> = content
        .iter()
        .filter(|c| c.remaining > 0)
        .map(|c| format!("{} has {} resource instances", c.resource, c.remaining))
        .collect();
    remaining.sort();
    let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
    for (f, n) in content.iter().flat_map(|c| &c.finalizers) {
        *by_finalizer.entry(f).or_default() += n;
    }
    let held: Vec<String> = by_finalizer
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();

    let mut found = BTreeMap::new();
    if !failures.is_empty() {
        let message = format!(
            "Failed to delete all resource types, {} remaining: {}",
            failures.len(),
            failures.join(", ")
        );
        found.insert(
            CONTENT_FAILURE,
            condition(CONTENT_FAILURE, "True", "ContentDeletionFailed", message, now),
        );
    }
    if !remaining.is_empty() {
        let message = format!("Some resources are remaining: {}", remaining.join(", "));
        found.insert(
            CONTENT_REMAINING,
            condition(CONTENT_REMAINING, "True", "SomeResourcesRemain", message, now),
        );
    }
    if !held.is_empty() {
        let message = format!("Some content in the namespace has finalizers remaining: {}", held.join(", "));
        found.insert(
            FINALIZERS_REMAINING,
            condition(FINALIZERS_REMAINING, "True", "SomeFinalizersRemain", message, now),
        );
    }
    (found, failures)
}

/// `status` with every maintained condition set: a problem found, else the "all is well"
/// form. A condition keeps its transition time unless its status flips. Returns whether
/// anything changed.
fn set_conditions(
    status: &mut NamespaceStatus,
    mut found: BTreeMap<&'static str, NamespaceCondition>,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for (type_, reason, message) in CONDITIONS {
        let want = found
            .remove(type_)
            .unwrap_or_else(|| condition(type_, "False", reason, message.to_string(), now));
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(want);
                changed = true;
            }
            Some(old)
                if (&old.status, &old.reason, &old.message)
                    != (&want.status, &want.reason, &want.message) =>
            {
                if old.status != want.status {
                    old.last_transition_time = want.last_transition_time;
                }
                (old.status, old.reason, old.message) = (want.status, want.reason, want.message);
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

/// The plan for a namespace that [`needs_cleanup`], given what each kind left in it.
pub fn plan_namespace(ns: &Namespace, content: &[KindContent], now: Timestamp) -> NamespacePlan {
    let name = ns.metadata.name.as_deref().unwrap_or("");
    let (found, failures) = problems(name, content, now);
    let mut updated = ns.clone();
    let status = updated.status.get_or_insert_with(Default::default);
    let mut changed = status.phase.as_deref() != Some("Terminating");
    status.phase = Some("Terminating".into());
    changed |= set_conditions(status, found, now);
    let next = if !failures.is_empty() {
        Next::Retry(failures)
    } else if content.iter().any(|c| c.remaining > 0) {
        Next::Wait(CONTENT_RECHECK)
    } else {
        let mut rest: Vec<String> = spec_finalizers(ns).iter().filter(|f| *f != FINALIZER).cloned().collect();
        rest.sort();
        rest.dedup();
        Next::Finalize(rest)
    };
    NamespacePlan { status: changed.then_some(updated), next }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;
    use crate::object::Resource;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn terminating(finalizers: &[&str]) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": "ns", "deletionTimestamp": "2027-01-15T08:00:00Z"},
            "spec": {"finalizers": finalizers},
            "status": {"phase": "Terminating"},
        }))
        .expect("namespace")
    }

    fn obj(finalizers: &[&str], deleting: bool) -> DynamicObject {
        let mut meta = json!({"name": "x", "finalizers": finalizers});
        if deleting {
            meta["deletionTimestamp"] = json!("2027-01-15T08:00:00Z");
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta})).expect("object")
    }

    fn find<'a>(ns: &'a Namespace, type_: &str) -> &'a NamespaceCondition {
        let conditions = ns.status.as_ref().and_then(|s| s.conditions.as_ref()).expect("conditions");
        conditions.iter().find(|c| c.type_ == type_).expect("condition")
    }

    #[test]
    fn only_deleting_namespaces_with_our_finalizer_need_cleanup() {
        assert!(needs_cleanup(&terminating(&["kubernetes"])));
        assert!(!needs_cleanup(&terminating(&["other"])));
        let mut live = terminating(&["kubernetes"]);
        live.metadata.deletion_timestamp = None;
        assert!(!needs_cleanup(&live));
    }

    #[test]
    fn an_empty_namespace_is_finalized_with_every_condition_clear() {
        let ns = terminating(&["kubernetes", "z.example.com/x", "a.example.com/y"]);
        let plan = plan_namespace(&ns, &[KindContent::remaining(&Pod::TYPE, &[])], at(0));
        assert_eq!(plan.next, Next::Finalize(vec!["a.example.com/y".into(), "z.example.com/x".into()]));
        let status = plan.status.expect("conditions written");
        let conditions = status.status.as_ref().and_then(|s| s.conditions.as_ref()).expect("conditions");
        assert_eq!(conditions.len(), 5);
        assert!(conditions.iter().all(|c| c.status == "False"));
        assert_eq!(find(&status, CONTENT_REMAINING).reason.as_deref(), Some("ContentRemoved"));
        // Written once: the next pass changes nothing.
        let again = plan_namespace(&status, &[], at(10));
        assert_eq!(again.status, None);
    }

    #[test]
    fn finalizers_keep_the_namespace_terminating_and_are_named() {
        let ns = terminating(&["kubernetes"]);
        let pods = KindContent::remaining(&Pod::TYPE, &[obj(&["example.com/hold"], true), obj(&[], true)]);
        let plan = plan_namespace(&ns, std::slice::from_ref(&pods), at(0));
        assert_eq!(plan.next, Next::Wait(CONTENT_RECHECK));
        let status = plan.status.expect("conditions written");
        let remaining = find(&status, CONTENT_REMAINING);
        assert_eq!(
            (remaining.status.as_str(), remaining.reason.as_deref()),
            ("True", Some("SomeResourcesRemain"))
        );
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances")
        );
        let held = find(&status, FINALIZERS_REMAINING);
        assert_eq!(
            held.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        assert_eq!(find(&status, CONTENT_FAILURE).status, "False");
        assert_eq!(plan_namespace(&status, &[pods], at(5)).status, None, "nothing new to write");

        // The finalizer goes: the conditions flip back, with new transition times.
        let plan = plan_namespace(&status, &[KindContent::remaining(&Pod::TYPE, &[])], at(60));
        assert!(matches!(plan.next, Next::Finalize(_)));
        let cleared = plan.status.expect("conditions written");
        assert_eq!(find(&cleared, FINALIZERS_REMAINING).last_transition_time, Some(Time(at(60))));
        assert_eq!(
            find(&cleared, DISCOVERY_FAILURE).last_transition_time,
            Some(Time(at(0))),
            "unchanged one kept"
        );
    }

    #[test]
    fn failures_are_reported_and_retried() {
        let ns = terminating(&["kubernetes"]);
        let content = [
            KindContent::failed(&Pod::TYPE, "pods.: the store is unavailable".into()),
            KindContent::remaining(&Pod::TYPE, &[obj(&[], false)]),
        ];
        let plan = plan_namespace(&ns, &content, at(0));
        let Next::Retry(failures) = &plan.next else { panic!("expected a retry, got {:?}", plan.next) };
        assert_eq!(failures.len(), 2);
        let status = plan.status.expect("conditions written");
        let failed = find(&status, CONTENT_FAILURE);
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_deref()),
            ("True", Some("ContentDeletionFailed"))
        );
        let message = failed.message.as_deref().unwrap_or_default();
        assert!(message.starts_with("Failed to delete all resource types, 2 remaining: "), "{message}");
        assert!(
            message.contains("unexpected items still remain in namespace ns for resource pods."),
            "{message}"
        );
    }

    #[test]
    fn the_phase_is_set_to_terminating() {
        let mut ns = terminating(&["kubernetes"]);
        ns.status = None;
        let plan = plan_namespace(&ns, &[], at(0));
        let phase = plan.status.and_then(|n| n.status).and_then(|s| s.phase);
        assert_eq!(phase.as_deref(), Some("Terminating"));
    }
}
