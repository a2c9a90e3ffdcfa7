//! A node's health from its heartbeats: when it last heartbeat, the conditions the controller
//! sets once it has been silent for the grace period, and the `NoExecute` taints its `Ready`
//! condition calls for.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{
    NEVER_POSTED_MESSAGE, NODE_STATUS_NEVER_UPDATED, NODE_STATUS_UNKNOWN, STOPPED_POSTING_MESSAGE,
    TAINT_NOT_READY, TAINT_UNREACHABLE,
};

/// The conditions a silent node gets `Unknown` (Kubernetes leaves `NetworkUnavailable`, which
/// the network plugin owns, alone).
pub const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The `NoExecute` taint effect.
pub const NO_EXECUTE: &str = "NoExecute";

/// The node's `Ready` condition, if it has one.
pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// The node's most recent heartbeat: the later of its Lease's `renewTime` and its `Ready`
/// condition's `lastHeartbeatTime`; `None` if it has never sent either.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
    let posted = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
    renewed.max(posted)
}

/// When the grace period of a node runs out: its last heartbeat, or (never heard from) its
/// creation, plus `grace`. `None` when neither is known, which never expires.
pub fn heartbeat_expiry(node: &Node, lease: Option<&Lease>, grace: std::time::Duration) -> Option<Timestamp> {
    let since =
        last_heartbeat(node, lease).or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    Some(since.checked_add(grace).unwrap_or(Timestamp::MAX))
}

/// The node's conditions after the grace period ran out (Kubernetes' `tryUpdateNodeHealth`):
/// each of [`MONITORED_CONDITIONS`] not yet `Unknown` becomes `Unknown` with reason
/// [`NODE_STATUS_UNKNOWN`], keeping its last heartbeat; a missing one is added with reason
/// [`NODE_STATUS_NEVER_UPDATED`]. `None` when nothing changes.
pub fn unknown_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(NODE_STATUS_UNKNOWN.into());
                c.message = Some(STOPPED_POSTING_MESSAGE.into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some(NODE_STATUS_NEVER_UPDATED.into()),
                    message: Some(NEVER_POSTED_MESSAGE.into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// A `NoExecute` taint with key `key`, added at `now`.
pub fn no_execute_taint(key: &str, now: &Time) -> Taint {
    Taint { key: key.into(), effect: NO_EXECUTE.into(), value: None, time_added: Some(now.clone()) }
}

/// Whether `taint` is the `NoExecute` taint with key `key`.
pub fn is_no_execute(taint: &Taint, key: &str) -> bool {
    taint.key == key && taint.effect == NO_EXECUTE
}

/// The `NoExecute` taint keys a `Ready` status calls for and forbids (Kubernetes'
/// `doNoExecuteTaintingPass`): `False` wants not-ready, `Unknown` unreachable, `True`
/// neither. A node without a `Ready` condition (not yet past its grace period) is left as it is.
pub fn wanted_taints(ready: Option<&str>) -> (Option<&'static str>, Vec<&'static str>) {
    match ready {
        Some("False") => (Some(TAINT_NOT_READY), vec![TAINT_UNREACHABLE]),
        Some("Unknown") => (Some(TAINT_UNREACHABLE), vec![TAINT_NOT_READY]),
        Some("True") => (None, vec![TAINT_NOT_READY, TAINT_UNREACHABLE]),
        _ => (None, Vec::new()),
    }
}

/// `taints` without those matching (key and effect) any of `remove`, plus `add`.
pub fn apply_taints(taints: &[Taint], add: &[Taint], remove: &[Taint]) -> Vec<Taint> {
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut out: Vec<Taint> = taints.iter().filter(|t| !remove.iter().any(|r| same(t, r))).cloned().collect();
    for t in add {
        if !out.iter().any(|o| same(o, t)) {
            out.push(t.clone());
        }
    }
    out
}
