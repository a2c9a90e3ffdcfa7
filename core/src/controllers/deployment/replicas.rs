//! Replica arithmetic: the strategy's surge and unavailability budgets, the new ReplicaSet's
//! next size, saturation, proportional shares, and the orders ReplicaSets are visited in
//! (Kubernetes' `deployment_util.go` and `controller_utils.go`).

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::annotations::{desired_replicas, max_replicas, revision};
use super::{Error, Result};
use crate::client::object_key;

/// `spec.replicas` of a ReplicaSet (defaulted to 1 as the API server does).
pub(super) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().map_or(0, |s| s.replicas.unwrap_or(1))
}

/// `status.replicas` of a ReplicaSet.
pub(super) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// `status.readyReplicas` of a ReplicaSet.
pub(super) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// `status.availableReplicas` of a ReplicaSet.
pub(super) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// A sum that saturates instead of overflowing: sizes come from users.
pub(super) fn total(values: impl IntoIterator<Item = i32>) -> i32 {
    values.into_iter().fold(0i32, i32::saturating_add)
}

/// The rollout strategy with its budgets resolved against `spec.replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Strategy {
    /// Replace pods gradually.
    RollingUpdate {
        /// Pods allowed above `spec.replicas` (rounded up from a percentage).
        surge: i32,
        /// Pods allowed below `spec.replicas` (rounded down; 1 if both resolve to 0).
        unavailable: i32,
    },
    /// Remove every old pod, then create the new ones.
    Recreate,
}

/// A Deployment's size and strategy, from which every budget follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sizing {
    /// `spec.replicas`.
    pub(super) replicas: i32,
    /// The strategy.
    pub(super) strategy: Strategy,
}

impl Sizing {
    /// Reads the size and strategy of `d`; an unknown strategy or a malformed budget is an error.
    pub(super) fn of(d: &Deployment) -> Result<Sizing> {
        let spec = d.spec.as_ref();
        let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
        let strategy = spec.and_then(|s| s.strategy.as_ref());
        let kind = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate");
        let strategy = match kind {
            "Recreate" => Strategy::Recreate,
            "RollingUpdate" => {
                let ru = strategy.and_then(|s| s.rolling_update.as_ref());
                let default = IntOrString::String("25%".into());
                let surge_v = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
                let unavailable_v = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&default);
                let invalid = |field: &'static str, v: &IntOrString, reason: &'static str| {
                    Error::InvalidRollingUpdate {
                        deployment: object_key(d),
                        field,
                        value: match v {
                            IntOrString::Int(i) => i.to_string(),
                            IntOrString::String(s) => s.clone(),
                        },
                        reason,
                    }
                };
                let surge =
                    scaled_value(surge_v, replicas, true).map_err(|r| invalid("maxSurge", surge_v, r))?;
                let unavailable = scaled_value(unavailable_v, replicas, false)
                    .map_err(|r| invalid("maxUnavailable", unavailable_v, r))?;
                // Both zero would block every rollout; rounding down may produce it from
                // percentages, so one pod may go unavailable (surge might be refused by quota).
                let unavailable = if surge == 0 && unavailable == 0 { 1 } else { unavailable };
                Strategy::RollingUpdate { surge, unavailable }
            }
            other => {
                return Err(Error::UnknownStrategy { deployment: object_key(d), kind: other.to_string() });
            }
        };
        Ok(Sizing { replicas, strategy })
    }

    /// Whether the strategy is `RollingUpdate`.
    pub(super) fn is_rolling(&self) -> bool {
        matches!(self.strategy, Strategy::RollingUpdate { .. })
    }

    /// Kubernetes' `MaxSurge`: 0 for `Recreate`.
    pub(super) fn max_surge(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate { surge, .. } => surge,
            Strategy::Recreate => 0,
        }
    }

    /// Kubernetes' `MaxUnavailable`: 0 for `Recreate` or no replicas, never above `replicas`.
    pub(super) fn max_unavailable(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate { unavailable, .. } if self.replicas > 0 => {
                unavailable.min(self.replicas)
            }
            _ => 0,
        }
    }

    /// What the new ReplicaSet should grow to (Kubernetes' `NewRSNewReplicas`): within the
    /// surge budget for `RollingUpdate` (never above `replicas`), everything for `Recreate`.
    pub(super) fn new_rs_replicas(&self, total_spec: i32, new_spec: i32) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate { surge, .. } => {
                let max_total = self.replicas.saturating_add(surge);
                if total_spec >= max_total {
                    return new_spec;
                }
                new_spec.saturating_add(
                    (max_total.saturating_sub(total_spec)).min(self.replicas.saturating_sub(new_spec)),
                )
            }
            Strategy::Recreate => self.replicas,
        }
    }

    /// Whether `rs` holds the whole Deployment, all available, and knows it (Kubernetes'
    /// `IsSaturated`).
    pub(super) fn is_saturated(&self, rs: &ReplicaSet) -> bool {
        desired_replicas(rs) == Some(self.replicas)
            && spec_replicas(rs) == self.replicas
            && available_replicas(rs) == self.replicas
    }

    /// How many replicas `rs` gains (or loses, negative) of the `to_add` the Deployment
    /// distributes, `added` of which are already given out (Kubernetes' `GetProportion`).
    /// `status_replicas` is the Deployment's `status.replicas`, the base when `rs` has no
    /// `max-replicas` annotation.
    pub(super) fn proportion(&self, rs: &ReplicaSet, status_replicas: i32, to_add: i32, added: i32) -> i32 {
        let size = spec_replicas(rs);
        if size == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs, status_replicas);
        let allowed = to_add.saturating_sub(added);
        if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
    }

    /// The change that keeps `rs` at the same share of the Deployment's new maximum size.
    fn fraction(&self, rs: &ReplicaSet, status_replicas: i32) -> i32 {
        let size = spec_replicas(rs);
        if self.replicas == 0 {
            return -size;
        }
        let new_max = f64::from(self.replicas) + f64::from(self.max_surge());
        let old_max = max_replicas(rs).unwrap_or(status_replicas);
        if old_max == 0 {
            // No base to take a share of; the leftover goes to the largest ReplicaSet instead.
            return 0;
        }
        let share = f64::from(size) * new_max / f64::from(old_max);
        // Go's math.Round: halves away from zero, as f64::round.
        (share.round() as i32).saturating_sub(size)
    }
}

/// Kubernetes' `GetValueFromIntOrPercent` for a non-negative budget.
fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, &'static str> {
    match v {
        IntOrString::Int(i) if *i < 0 => Err("must be greater than or equal to 0"),
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%').ok_or("must be an integer or a percentage")?;
            let percent: i64 = digits.parse().map_err(|_| "must be an integer or a percentage")?;
            if percent < 0 {
                return Err("must be greater than or equal to 0");
            }
            let scaled = percent * i64::from(total.max(0));
            let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            i32::try_from(value).map_err(|_| "is too large")
        }
    }
}

/// Oldest first, by creation time then name (Kubernetes' `ReplicaSetsByCreationTimestamp`); a
/// missing timestamp counts as the oldest, as Go's zero time does.
pub(super) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Largest first; among equals, newest first (scaling up favours new ReplicaSets).
pub(super) fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(b, a))
}

/// Largest first; among equals, oldest first (scaling down favours old ReplicaSets).
pub(super) fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(a, b))
}

/// Lowest revision first (unparseable counts as 0), then oldest (Kubernetes'
/// `ReplicaSetsByRevision`).
pub(super) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let r = |rs: &ReplicaSet| revision(&rs.metadata).unwrap_or(0);
    r(a).cmp(&r(b)).then_with(|| by_creation(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn deployment(replicas: i32, strategy: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}, "strategy": strategy}
        }))
        .expect("deployment")
    }

    fn rolling(replicas: i32, surge: Value, unavailable: Value) -> Sizing {
        let strategy = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}});
        Sizing::of(&deployment(replicas, strategy)).expect("sizing")
    }

    #[test]
    fn fenceposts_resolve_like_kubernetes() {
        // Surge rounds up, unavailable rounds down.
        let s = rolling(10, json!("25%"), json!("25%"));
        assert_eq!((s.max_surge(), s.max_unavailable()), (3, 2));
        let s = rolling(3, json!(1), json!(0));
        assert_eq!((s.max_surge(), s.max_unavailable()), (1, 0));
        // Both zero after rounding: one may be unavailable.
        let s = rolling(1, json!("0%"), json!("10%"));
        assert_eq!((s.max_surge(), s.max_unavailable()), (0, 1));
        // Never more unavailable than replicas, and nothing with no replicas.
        let s = rolling(2, json!(0), json!(5));
        assert_eq!(s.max_unavailable(), 2);
        let s = rolling(0, json!(0), json!(5));
        assert_eq!(s.max_unavailable(), 0);
        let r = Sizing::of(&deployment(3, json!({"type": "Recreate"}))).expect("sizing");
        assert_eq!((r.max_surge(), r.max_unavailable(), r.is_rolling()), (0, 0, false));
    }

    #[test]
    fn malformed_budgets_and_strategies_are_errors() {
        let d = deployment(3, json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x"}}));
        let err = Sizing::of(&d).expect_err("bad surge");
        assert!(err.to_string().contains("maxSurge"), "{err}");
        let d = deployment(3, json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": -1}}));
        assert!(Sizing::of(&d).is_err());
        let d = deployment(3, json!({"type": "BlueGreen"}));
        assert!(matches!(Sizing::of(&d), Err(Error::UnknownStrategy { .. })));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let s = rolling(10, json!(3), json!(2));
        assert_eq!(s.new_rs_replicas(10, 0), 3);
        assert_eq!(s.new_rs_replicas(13, 3), 3, "at the limit");
        assert_eq!(s.new_rs_replicas(8, 3), 8, "old scaled down: fill up to the maximum");
        assert_eq!(s.new_rs_replicas(5, 5), 10, "never above replicas");
    }

    fn rs(name: &str, replicas: i32, max: Option<i32>, created: &str) -> ReplicaSet {
        let annotations = max.map(|m| json!({"deployment.kubernetes.io/max-replicas": m.to_string()}));
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
            "spec": {"replicas": replicas, "selector": {}}
        }))
        .expect("rs")
    }

    #[test]
    fn proportions_follow_the_annotated_maximum() {
        // 10 replicas with surge 3 grow to 20 (surge 5): a ReplicaSet of 6 of 13 gets 6*25/13.
        let s = rolling(20, json!(5), json!(2));
        let a = rs("a", 6, Some(13), "2026-01-01T00:00:00Z");
        assert_eq!(s.proportion(&a, 13, 12, 0), 6);
        assert_eq!(s.proportion(&a, 13, 12, 10), 2, "capped by what is left");
        let empty = rs("e", 0, Some(13), "2026-01-01T00:00:00Z");
        assert_eq!(s.proportion(&empty, 13, 12, 0), 0);
        // Scaling to zero removes everything.
        let zero = rolling(0, json!(5), json!(2));
        assert_eq!(zero.proportion(&a, 13, -13, 0), -6);
    }

    #[test]
    fn orders_break_ties_by_age() {
        let old = rs("old", 2, None, "2026-01-01T00:00:00Z");
        let new = rs("new", 2, None, "2026-01-02T00:00:00Z");
        assert_eq!(by_creation(&old, &new), Ordering::Less);
        assert_eq!(by_size_newer(&old, &new), Ordering::Greater, "newer first when scaling up");
        assert_eq!(by_size_older(&old, &new), Ordering::Less, "older first when scaling down");
        let big = rs("big", 5, None, "2026-01-03T00:00:00Z");
        assert_eq!(by_size_older(&big, &old), Ordering::Less, "larger first");
    }
}
