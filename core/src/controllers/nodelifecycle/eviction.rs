//! Taint-based eviction (Kubernetes' `pkg/controller/tainteviction`): when a pod must leave a
//! node for the node's `NoExecute` taints.
//!
//! A pod that does not tolerate every `NoExecute` taint of its node is evicted at once. A pod
//! that tolerates them all stays for as long as the tolerations used allow: for each taint,
//! the first toleration that tolerates it, counted from the taint's `timeAdded`; a toleration
//! without `tolerationSeconds` tolerates forever. Kubernetes counts from when its taint manager
//! saw the taint, which it remembers; counting from `timeAdded` gives the same answer without
//! memory, so the decision survives a restart or a change of leader.
//!
//! Kubernetes' `DefaultTolerationSeconds` admission plugin gives every pod created without a
//! toleration of `node.kubernetes.io/not-ready:NoExecute` (or of
//! `node.kubernetes.io/unreachable:NoExecute`) one for 300 seconds. Flotilla has no such
//! admission step, so the decision applies it instead: [`effective_tolerations`] appends the
//! same tolerations, with the same test, to a pod's own. The pod object is not changed.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;

use super::health::NO_EXECUTE;
use super::{NodeLifecycleConfig, TAINT_NOT_READY, TAINT_UNREACHABLE};
use crate::scheduler::plugins::tolerates;

/// Whether one of `tolerations` covers `key`'s `NoExecute` taint the way the
/// `DefaultTolerationSeconds` admission plugin tests it: same key or an empty key, and effect
/// `NoExecute` or none.
fn has_toleration_for(tolerations: &[Toleration], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty() || k == key);
        let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == NO_EXECUTE);
        key_ok && effect_ok
    })
}

/// The pod's tolerations, plus the default tolerations of the not-ready and unreachable
/// taints it lacks (`DefaultTolerationSeconds`; the seconds come from `config`).
pub fn effective_tolerations(pod: &Pod, config: &NodeLifecycleConfig) -> Vec<Toleration> {
    let mut tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let defaults = [
        (TAINT_NOT_READY, config.default_not_ready_toleration_seconds),
        (TAINT_UNREACHABLE, config.default_unreachable_toleration_seconds),
    ];
    for (key, seconds) in defaults {
        if !has_toleration_for(&tolerations, key) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(NO_EXECUTE.into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    tolerations
}

/// When the pod must be evicted from a node with `taints`: `None` never (no `NoExecute` taint,
/// or all tolerated forever), `Some(now)` at once (one not tolerated, or a toleration of zero
/// or fewer seconds), otherwise the earliest expiry of the tolerations used. A taint without
/// `timeAdded` counts from `now` (the reconciler stamps one on it).
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    now: Timestamp,
    config: &NodeLifecycleConfig,
) -> Option<Timestamp> {
    let tolerations = effective_tolerations(pod, config);
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(now);
        };
        let Some(seconds) = used.toleration_seconds else { continue };
        let since = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = if seconds <= 0 {
            now
        } else {
            since.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
        };
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}
