//! ResourceQuota's rules: what a namespace's objects use of a quota, and whether a new object
//! fits (Kubernetes' quota evaluators, as pure functions).
//!
//! The registry charges each create against the quotas of its namespace in the same store
//! transaction that writes the object (see `docs/api-server.md`, "ResourceQuota"); the
//! ResourceQuota controller recounts usage from the objects themselves, which releases what
//! deleted and finished objects held. Both use this module.
//!
//! Counted (see [`names::parse`]):
//! - `pods`/`count/pods`: pods not finished and not past their deletion grace period;
//! - `cpu`, `memory`, `ephemeral-storage`, `requests.<resource>` (including hugepages and
//!   extended resources) and `limits.{cpu,memory,ephemeral-storage}`: the sums of those
//!   pods' requests and limits, computed as the scheduler computes them (init containers,
//!   sidecars, overhead). A pod must state a request (or limit) for each of cpu and memory
//!   that a quota tracks, or it is refused with the containers that leave it out;
//! - `services`, `secrets`, `configmaps`, `persistentvolumeclaims`, `resourcequotas` and
//!   `count/<resource>[.<group>]`: objects of that kind.
//!
//! Scopes (`Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`, and a
//! `scopeSelector` on `PriorityClass`) limit a quota to the pods they select; a scoped quota
//! may track pod resources only.

pub mod names;
pub mod pods;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::jiff::Timestamp;

pub use names::{Scope, ScopeOp, Tracked};

use crate::object::DynamicObject;
use crate::quantity::{Format, Quantity};
use crate::validation::FieldPath;

/// Amounts by resource name, as in a quota's `hard` and `used`.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Why usage could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A quantity in an object does not parse.
    #[error("{field}: {message}")]
    Quantity {
        /// The field, such as `spec.containers[0].resources.requests[cpu]`.
        field: String,
        /// Why it does not parse.
        message: String,
    },
    /// A sum left the range quantities can hold.
    #[error("the usage of {name} overflows")]
    Overflow {
        /// The resource name.
        name: String,
    },
    /// An object could not be read as its kind.
    #[error("{0}")]
    Decode(String),
}

/// The result type of quota evaluation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds `other` into `into`, name by name.
pub(crate) fn add_into(into: &mut ResourceList, other: &ResourceList) -> Result<()> {
    for (name, q) in other {
        let sum = match into.get(name) {
            Some(have) => have.add(q).map_err(|_| Error::Overflow { name: name.clone() })?,
            None => *q,
        };
        into.insert(name.clone(), sum);
    }
    Ok(())
}

fn zero() -> Quantity {
    Quantity::from_value(0, Format::DecimalSI)
}

/// `name=value` pairs in name order, comma separated (as Kubernetes prints them in refusals).
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A quota's rules, parsed from its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaRules {
    /// The quota's name.
    pub name: String,
    /// `spec.hard`, parsed.
    pub hard: ResourceList,
    /// Each hard name with what it counts.
    pub tracked: Vec<(String, Tracked)>,
    /// The pod scopes (empty: every pod).
    pub scopes: Vec<Scope>,
}

impl QuotaRules {
    /// Parses `quota`'s spec; a name or quantity that validation would refuse is an error
    /// naming it.
    pub fn of(quota: &ResourceQuota) -> Result<QuotaRules, String> {
        let spec = quota.spec.clone().unwrap_or_default();
        let mut hard = ResourceList::new();
        let mut tracked = Vec::new();
        for (name, q) in spec.hard.iter().flatten() {
            let parsed = Quantity::try_from(q).map_err(|e| format!("spec.hard[{name}]: {e}"))?;
            tracked.push((name.clone(), names::parse(name).map_err(|e| format!("spec.hard[{name}]: {e}"))?));
            hard.insert(name.clone(), parsed);
        }
        let (scopes, errs) = names::scopes(&spec, &FieldPath::new("spec"));
        if let Some(e) = errs.0.first() {
            return Err(e.to_string());
        }
        Ok(QuotaRules { name: quota.metadata.name.clone().unwrap_or_default(), hard, tracked, scopes })
    }

    /// The names that count objects of `group`/`plural`.
    pub fn tracked_for(&self, group: &str, plural: &str) -> Vec<(String, Tracked)> {
        let pods = group.is_empty() && plural == "pods";
        self.tracked
            .iter()
            .filter(|(_, t)| match t {
                Tracked::Pods | Tracked::Requests(_) | Tracked::Limits(_) => pods,
                Tracked::Objects { group: g, plural: p } => g == group && p == plural,
            })
            .cloned()
            .collect()
    }

    /// What `obj` (of `group`/`plural`) uses of this quota at `now`: `None` when the quota
    /// does not count it (another kind, a pod its scopes leave out, a finished pod).
    pub fn usage_of(
        &self,
        group: &str,
        plural: &str,
        obj: &DynamicObject,
        now: Timestamp,
    ) -> Result<Option<ResourceList>> {
        let tracked = self.tracked_for(group, plural);
        if tracked.is_empty() {
            return Ok(None);
        }
        if !(group.is_empty() && plural == "pods") {
            if !self.scopes.is_empty() {
                return Ok(None);
            }
            let one = Quantity::from_value(1, Format::DecimalSI);
            return Ok(Some(tracked.into_iter().map(|(n, _)| (n, one)).collect()));
        }
        let pod: Pod = obj.to_typed().map_err(|e| Error::Decode(e.to_string()))?;
        self.pod_usage(&pod, now)
    }

    /// What `pod` uses of this quota at `now` (see [`usage_of`](Self::usage_of)), for callers
    /// that already hold the typed pod.
    pub fn pod_usage(&self, pod: &Pod, now: Timestamp) -> Result<Option<ResourceList>> {
        let tracked = self.tracked_for("", "pods");
        if tracked.is_empty() || !pods::is_counted(pod, now) || !pods::matches_scopes(pod, &self.scopes) {
            return Ok(None);
        }
        pods::pod_usage(pod, &tracked).map(Some)
    }

    /// The kinds this quota counts, as (group, plural), each once: what a recount lists.
    pub fn counted_kinds(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (_, tracked) in &self.tracked {
            let kind = match tracked {
                Tracked::Objects { group, plural } => (group.as_str(), plural.as_str()),
                _ => ("", "pods"),
            };
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        out
    }

    /// The usage of every hard name over `objects` (each with its group and plural), zero
    /// where nothing counts: what the quota's `status.used` should say.
    pub fn usage<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a str, &'a str, &'a DynamicObject)>,
        now: Timestamp,
    ) -> Result<ResourceList> {
        let mut used: ResourceList = self.hard.keys().map(|k| (k.clone(), zero())).collect();
        for (group, plural, obj) in objects {
            if let Some(u) = self.usage_of(group, plural, obj, now)? {
                add_into(&mut used, &u)?;
            }
        }
        Ok(used)
    }

    /// Charges `requested` (an object's usage) to `used`: the new usage of every hard name,
    /// or Kubernetes' refusal (`exceeded quota: <name>, requested: ..., used: ..., limited:
    /// ...`, naming only what is exceeded).
    pub fn charge(
        &self,
        used: &ResourceList,
        requested: &ResourceList,
    ) -> Result<Result<ResourceList, String>> {
        let requested: ResourceList = requested
            .iter()
            .filter(|(k, v)| !v.is_zero() && self.hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut new_used: ResourceList =
            self.hard.keys().map(|k| (k.clone(), used.get(k).copied().unwrap_or_else(zero))).collect();
        add_into(&mut new_used, &requested)?;
        let exceeded: Vec<&String> = requested
            .keys()
            .filter(|k| self.hard.get(*k).is_some_and(|h| new_used.get(*k).is_some_and(|n| n > h)))
            .collect();
        if exceeded.is_empty() {
            return Ok(Ok(new_used));
        }
        let mask = |l: &ResourceList| -> ResourceList {
            exceeded.iter().map(|k| ((*k).clone(), l.get(*k).copied().unwrap_or_else(zero))).collect()
        };
        Ok(Err(format!(
            "exceeded quota: {}, requested: {}, used: {}, limited: {}",
            self.name,
            pretty(&mask(&requested)),
            pretty(&mask(used)),
            pretty(&mask(&self.hard))
        )))
    }
}

/// `list` parsed from the wire form (a quota's `status.used`); names that do not parse are
/// left out, so they count as unknown.
pub fn parse_list(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::try_from(v).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// `list` in the wire form.
pub fn to_wire(
    list: &ResourceList,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    list.iter().map(|(k, v)| (k.clone(), v.into())).collect()
}
