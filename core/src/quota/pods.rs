//! What a pod uses of a quota: whether it counts, its requests and limits, which scopes
//! select it, and which requests it must state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::names::{Scope, ScopeOp, Tracked};
use super::{Error, ResourceList, Result, add_into};
use crate::quantity::Quantity;

/// Whether a pod counts against quota at `now`: not finished (`Succeeded`, `Failed`), and not
/// past the end of its deletion grace period (Kubernetes' `QuotaV1Pod`).
pub fn is_counted(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    match (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds) {
        (Some(at), Some(grace)) => {
            now <= at.0.saturating_add(SignedDuration::from_secs(grace)).unwrap_or(at.0)
        }
        _ => true,
    }
}

/// When a counted pod stops counting because its deletion grace period ends, if it will.
pub fn stops_counting_at(pod: &Pod) -> Option<Timestamp> {
    let at = pod.metadata.deletion_timestamp.as_ref()?;
    let grace = pod.metadata.deletion_grace_period_seconds?;
    at.0.saturating_add(SignedDuration::from_secs(grace)).ok()
}

/// Whether every scope selects `pod` (an empty list selects every pod).
pub fn matches_scopes(pod: &Pod, scopes: &[Scope]) -> bool {
    scopes.iter().all(|s| matches_scope(pod, s))
}

fn matches_scope(pod: &Pod, scope: &Scope) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec.and_then(|s| s.active_deadline_seconds).is_some_and(|d| d >= 0);
    let class = spec.and_then(|s| s.priority_class_name.as_deref()).filter(|c| !c.is_empty());
    match scope {
        Scope::Terminating => terminating,
        Scope::NotTerminating => !terminating,
        Scope::BestEffort => is_best_effort(pod),
        Scope::NotBestEffort => !is_best_effort(pod),
        Scope::PriorityClass(op) => match op {
            ScopeOp::In(values) => class.is_some_and(|c| values.iter().any(|v| v == c)),
            ScopeOp::NotIn(values) => class.is_none_or(|c| values.iter().all(|v| v != c)),
            ScopeOp::Exists => class.is_some(),
            ScopeOp::DoesNotExist => class.is_none(),
        },
    }
}

/// Every container of the pod, init containers first, with its field path.
fn containers(pod: &Pod) -> impl Iterator<Item = (String, &Container, bool)> {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or(&[]);
    let main = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let init = init.iter().enumerate().map(|(i, c)| (format!("spec.initContainers[{i}]"), c, true));
    init.chain(main.iter().enumerate().map(|(i, c)| (format!("spec.containers[{i}]"), c, false)))
}

/// Whether no container requests or limits any cpu or memory (the BestEffort QoS class).
pub fn is_best_effort(pod: &Pod) -> bool {
    let nonzero = |m: Option<&BTreeMap<String, WireQuantity>>| {
        m.into_iter().flatten().any(|(name, q)| {
            (name == "cpu" || name == "memory") && Quantity::try_from(q).map(|q| !q.is_zero()).unwrap_or(true)
        })
    };
    containers(pod).all(|(_, c, _)| {
        let r = c.resources.as_ref();
        !nonzero(r.and_then(|r| r.requests.as_ref())) && !nonzero(r.and_then(|r| r.limits.as_ref()))
    })
}

/// Requests (with limits standing in for missing requests, as pod defaulting sets them) or
/// limits of one container.
fn amounts(c: &Container, path: &str, limits: bool) -> Result<ResourceList> {
    let r = c.resources.as_ref();
    let parse = |m: Option<&BTreeMap<String, WireQuantity>>, field: &str| -> Result<ResourceList> {
        let mut out = ResourceList::new();
        for (name, q) in m.into_iter().flatten() {
            let parsed = Quantity::try_from(q).map_err(|e| Error::Quantity {
                field: format!("{path}.resources.{field}[{name}]"),
                message: e.to_string(),
            })?;
            out.insert(name.clone(), parsed);
        }
        Ok(out)
    };
    let lim = parse(r.and_then(|r| r.limits.as_ref()), "limits")?;
    if limits {
        return Ok(lim);
    }
    let mut req = parse(r.and_then(|r| r.requests.as_ref()), "requests")?;
    for (name, q) in lim {
        req.entry(name).or_insert(q);
    }
    Ok(req)
}

/// The larger amount per name.
fn max_into(into: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        let e = into.entry(name.clone()).or_insert(*q);
        if *q > *e {
            *e = *q;
        }
    }
}

/// The pod's requests (`limits == false`) or limits: the larger of its containers' sum and
/// its largest init container (restartable "sidecar" init containers run alongside and add
/// up), plus its overhead — for limits only where some limit is set.
pub fn pod_amounts(pod: &Pod, limits: bool) -> Result<ResourceList> {
    let mut total = ResourceList::new();
    let (mut init_max, mut sidecars) = (ResourceList::new(), ResourceList::new());
    for (path, c, init) in containers(pod) {
        let a = amounts(c, &path, limits)?;
        if !init {
            add_into(&mut total, &a)?;
        } else if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &a)?;
            add_into(&mut sidecars, &a)?;
            max_into(&mut init_max, &sidecars);
        } else {
            let mut with = a;
            add_into(&mut with, &sidecars)?;
            max_into(&mut init_max, &with);
        }
    }
    max_into(&mut total, &init_max);
    if let Some(overhead) = pod.spec.as_ref().and_then(|s| s.overhead.as_ref()) {
        for (name, q) in overhead {
            if limits && !total.contains_key(name) {
                continue;
            }
            let q = Quantity::try_from(q).map_err(|e| Error::Quantity {
                field: format!("spec.overhead[{name}]"),
                message: e.to_string(),
            })?;
            add_into(&mut total, &ResourceList::from([(name.clone(), q)]))?;
        }
    }
    Ok(total)
}

/// What a counted pod uses of each `tracked` name (keyed by the quota's name for it).
pub fn pod_usage(pod: &Pod, tracked: &[(String, Tracked)]) -> Result<ResourceList> {
    let mut out = ResourceList::new();
    let needs = |limits: bool| {
        tracked
            .iter()
            .any(|(_, t)| matches!((t, limits), (Tracked::Requests(_), false) | (Tracked::Limits(_), true)))
    };
    let requests = if needs(false) { pod_amounts(pod, false)? } else { ResourceList::new() };
    let limits = if needs(true) { pod_amounts(pod, true)? } else { ResourceList::new() };
    for (name, t) in tracked {
        let q = match t {
            Tracked::Pods => Some(Quantity::from_value(1, crate::quantity::Format::DecimalSI)),
            Tracked::Requests(r) => requests.get(r).copied(),
            Tracked::Limits(r) => limits.get(r).copied(),
            Tracked::Objects { .. } => None,
        };
        if let Some(q) = q {
            out.insert(name.clone(), q);
        }
    }
    Ok(out)
}

/// The requests and limits a pod must state because a quota tracks them (Kubernetes
/// enforces this for cpu and memory): `Some("must specify limits.cpu for: a; ...")` when a
/// container leaves one out.
pub fn missing_requests(pod: &Pod, tracked: &[(String, Tracked)]) -> Option<String> {
    let required: Vec<&str> = tracked
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            matches!(
                *n,
                "cpu" | "memory" | "requests.cpu" | "requests.memory" | "limits.cpu" | "limits.memory"
            )
        })
        .collect();
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (_, c, _) in containers(pod) {
        let r = c.resources.as_ref();
        let has = |m: Option<&BTreeMap<String, WireQuantity>>, k: &str| m.is_some_and(|m| m.contains_key(k));
        let (req, lim) = (r.and_then(|r| r.requests.as_ref()), r.and_then(|r| r.limits.as_ref()));
        for name in &required {
            let present = match *name {
                "cpu" | "requests.cpu" => has(req, "cpu") || has(lim, "cpu"),
                "memory" | "requests.memory" => has(req, "memory") || has(lim, "memory"),
                "limits.cpu" => has(lim, "cpu"),
                _ => has(lim, "memory"),
            };
            if !present {
                missing.entry(name).or_default().push(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(name, mut containers)| {
            containers.sort();
            containers.dedup();
            format!("{name} for: {}", containers.join(","))
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}
