//! What a ResourceQuota's resource names count, and what its scopes select.

use k8s_openapi::api::core::v1::ResourceQuotaSpec;

use crate::validation::{ErrorList, FieldError, FieldPath};

/// What one name in a quota's `spec.hard` counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Pods that count (not finished, not past their deletion grace): `pods`, `count/pods`.
    Pods,
    /// The sum of counted pods' requests of a resource: `cpu`, `requests.cpu`,
    /// `requests.example.com/gpu`.
    Requests(String),
    /// The sum of counted pods' limits of a resource: `limits.cpu`, `limits.memory`.
    Limits(String),
    /// Objects of a kind in the namespace: `services`, `count/configmaps`,
    /// `count/deployments.apps` (group `""` for the core group).
    Objects {
        /// The kind's API group.
        group: String,
        /// The kind's plural resource name.
        plural: String,
    },
}

impl Tracked {
    /// Whether this name is counted from pods (and so may be scoped).
    pub fn is_pod_resource(&self) -> bool {
        !matches!(self, Tracked::Objects { .. })
    }
}

/// Core-group kinds quota may count by their bare plural, as Kubernetes allows.
const LEGACY_COUNTS: [&str; 5] =
    ["services", "secrets", "configmaps", "persistentvolumeclaims", "resourcequotas"];

/// Compute resources a pod may request or limit under a quota.
const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Whether `name` is an extended resource (`example.com/gpu`): a domain-qualified name
/// outside `kubernetes.io`, which pods may only request.
fn is_extended(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, rest)) => {
            !rest.is_empty()
                && !domain.is_empty()
                && !domain.ends_with("kubernetes.io")
                && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// Whether a pod may request `name` under a quota.
fn requestable(name: &str) -> bool {
    COMPUTE.contains(&name) || name.starts_with("hugepages-") || is_extended(name)
}

/// What `name` counts, or why Flotilla does not count it.
pub fn parse(name: &str) -> Result<Tracked, String> {
    if name == "pods" || name == "count/pods" {
        return Ok(Tracked::Pods);
    }
    if COMPUTE.contains(&name) {
        return Ok(Tracked::Requests(name.to_string()));
    }
    if let Some(r) = name.strip_prefix("requests.") {
        return match r {
            "storage" => Err("requests.storage (claims' storage) is not counted by Flotilla".into()),
            _ if requestable(r) => Ok(Tracked::Requests(r.to_string())),
            _ => Err(format!("{r} is not a resource pods request")),
        };
    }
    if let Some(r) = name.strip_prefix("limits.") {
        return match r {
            _ if COMPUTE.contains(&r) => Ok(Tracked::Limits(r.to_string())),
            _ => Err(format!("only cpu, memory and ephemeral-storage limits are counted, not {r}")),
        };
    }
    if LEGACY_COUNTS.contains(&name) {
        return Ok(Tracked::Objects { group: String::new(), plural: name.to_string() });
    }
    if let Some(r) = name.strip_prefix("count/") {
        let (plural, group) = r.split_once('.').unwrap_or((r, ""));
        if plural.is_empty() || plural.contains('/') {
            return Err(format!("{name} does not name a resource (count/<resource>[.<group>])"));
        }
        return Ok(Tracked::Objects { group: group.to_string(), plural: plural.to_string() });
    }
    if is_extended(name) {
        return Err(format!("extended resources are counted as requests.{name}"));
    }
    Err(format!(
        "Flotilla counts pods, cpu, memory, ephemeral-storage, requests.<resource>, limits.<resource>, \
         services, secrets, configmaps, persistentvolumeclaims, resourcequotas and count/<resource>[.<group>], \
         not {name}"
    ))
}

/// A pod scope a quota may be limited to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Pods with `spec.activeDeadlineSeconds` set.
    Terminating,
    /// Pods without `spec.activeDeadlineSeconds`.
    NotTerminating,
    /// Pods with no cpu or memory requests or limits in any container.
    BestEffort,
    /// Pods with some cpu or memory request or limit.
    NotBestEffort,
    /// Pods whose `spec.priorityClassName` satisfies the operator.
    PriorityClass(ScopeOp),
}

/// A `scopeSelector` operator over a pod's priority class name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeOp {
    /// The name is one of the values.
    In(Vec<String>),
    /// The name is none of the values (pods without a class match).
    NotIn(Vec<String>),
    /// The pod names a class.
    Exists,
    /// The pod names no class.
    DoesNotExist,
}

/// The scopes of `spec` (`scopes` and `scopeSelector` together), with every problem in them
/// named by field. An empty list selects every pod.
pub fn scopes(spec: &ResourceQuotaSpec, path: &FieldPath) -> (Vec<Scope>, ErrorList) {
    let mut errs = ErrorList::default();
    let mut out = Vec::new();
    let simple = ["Terminating", "NotTerminating", "BestEffort", "NotBestEffort"];
    for (i, s) in spec.scopes.iter().flatten().enumerate() {
        match simple_scope(s) {
            Some(scope) => out.push(scope),
            None => errs.push(FieldError::not_supported(
                path.child("scopes").index(i),
                serde_json::Value::String(s.clone()),
                &simple,
            )),
        }
    }
    let exprs = spec.scope_selector.as_ref().and_then(|s| s.match_expressions.as_deref()).unwrap_or(&[]);
    for (i, e) in exprs.iter().enumerate() {
        let p = path.child("scopeSelector").child("matchExpressions").index(i);
        let values = e.values.clone().unwrap_or_default();
        let value = |s: &str| serde_json::Value::String(s.to_string());
        if e.scope_name == "PriorityClass" {
            let op = match e.operator.as_str() {
                "In" if !values.is_empty() => ScopeOp::In(values),
                "NotIn" if !values.is_empty() => ScopeOp::NotIn(values),
                "In" | "NotIn" => {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be at least one value for In and NotIn",
                    ));
                    continue;
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    errs.push(FieldError::invalid(
                        p.child("values"),
                        serde_json::Value::from(values),
                        "must be no values for Exists and DoesNotExist",
                    ));
                    continue;
                }
                "Exists" => ScopeOp::Exists,
                "DoesNotExist" => ScopeOp::DoesNotExist,
                other => {
                    errs.push(FieldError::not_supported(
                        p.child("operator"),
                        value(other),
                        &["DoesNotExist", "Exists", "In", "NotIn"],
                    ));
                    continue;
                }
            };
            out.push(Scope::PriorityClass(op));
            continue;
        }
        let Some(scope) = simple_scope(&e.scope_name) else {
            let mut supported = simple.to_vec();
            supported.push("PriorityClass");
            errs.push(FieldError::not_supported(p.child("scopeName"), value(&e.scope_name), &supported));
            continue;
        };
        match e.operator.as_str() {
            "Exists" if values.is_empty() => out.push(scope),
            "Exists" => errs.push(FieldError::invalid(
                p.child("values"),
                serde_json::Value::from(values),
                "must be no values for Exists",
            )),
            other => errs.push(FieldError::not_supported(p.child("operator"), value(other), &["Exists"])),
        }
    }
    for pair in [(Scope::Terminating, Scope::NotTerminating), (Scope::BestEffort, Scope::NotBestEffort)] {
        if out.contains(&pair.0) && out.contains(&pair.1) {
            errs.push(FieldError::invalid(
                path.child("scopes"),
                serde_json::Value::Null,
                format!("conflicting scopes: {:?} and {:?}", pair.0, pair.1),
            ));
        }
    }
    (out, errs)
}

fn simple_scope(s: &str) -> Option<Scope> {
    match s {
        "Terminating" => Some(Scope::Terminating),
        "NotTerminating" => Some(Scope::NotTerminating),
        "BestEffort" => Some(Scope::BestEffort),
        "NotBestEffort" => Some(Scope::NotBestEffort),
        _ => None,
    }
}
