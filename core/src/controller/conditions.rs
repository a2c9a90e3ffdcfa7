//! Status-condition helpers with Kubernetes' rules: one condition per type, and
//! `lastTransitionTime` moves only when the status changes.

use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{
    NamespaceCondition, NodeCondition, PersistentVolumeClaimCondition, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A status condition of any kind.
pub trait StatusCondition: Clone + PartialEq {
    /// The condition's type.
    fn type_(&self) -> &str;
    /// `True`, `False` or `Unknown`.
    fn status(&self) -> &str;
    /// When the status last changed.
    fn last_transition_time(&self) -> Option<&Time>;
    /// Sets when the status last changed.
    fn set_last_transition_time(&mut self, t: Option<Time>);
}

macro_rules! status_condition {
    ($($ty:ty),*) => {$(
        impl StatusCondition for $ty {
            fn type_(&self) -> &str { &self.type_ }
            fn status(&self) -> &str { &self.status }
            fn last_transition_time(&self) -> Option<&Time> { self.last_transition_time.as_ref() }
            fn set_last_transition_time(&mut self, t: Option<Time>) { self.last_transition_time = t; }
        }
    )*};
}

status_condition!(
    DeploymentCondition,
    ReplicaSetCondition,
    PodCondition,
    NodeCondition,
    NamespaceCondition,
    PersistentVolumeClaimCondition
);

impl StatusCondition for Condition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn last_transition_time(&self) -> Option<&Time> {
        Some(&self.last_transition_time)
    }
    fn set_last_transition_time(&mut self, t: Option<Time>) {
        if let Some(t) = t {
            self.last_transition_time = t;
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a, C: StatusCondition>(conditions: &'a [C], type_: &str) -> Option<&'a C> {
    conditions.iter().find(|c| c.type_() == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true<C: StatusCondition>(conditions: &[C], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status() == "True")
}

/// Sets `new` in place of any condition of its type. Keeps the old transition time when the
/// status is unchanged, and stamps `now` when it changed (or the condition is new). Returns
/// whether anything changed, so callers write status only when needed.
pub fn set<C: StatusCondition>(conditions: &mut Vec<C>, mut new: C, now: &Time) -> bool {
    match conditions.iter().position(|c| c.type_() == new.type_()) {
        Some(i) => {
            let old = &conditions[i];
            let transition = if old.status() == new.status() {
                old.last_transition_time().cloned()
            } else {
                Some(now.clone())
            };
            new.set_last_transition_time(transition.or_else(|| Some(now.clone())));
            if conditions[i] == new {
                return false;
            }
            conditions[i] = new;
        }
        None => {
            new.set_last_transition_time(Some(now.clone()));
            conditions.push(new);
        }
    }
    true
}

/// Removes the condition of type `type_`; whether there was one.
pub fn remove<C: StatusCondition>(conditions: &mut Vec<C>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_() != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("time"))
    }

    fn cond(status: &str, reason: &str) -> ReplicaSetCondition {
        ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: status.into(),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut cs = Vec::new();
        assert!(set(&mut cs, cond("True", "FailedCreate"), &at(10)));
        assert_eq!(cs[0].last_transition_time, Some(at(10)));
        // Same everything: no change reported.
        assert!(!set(&mut cs, cond("True", "FailedCreate"), &at(20)));
        // Another reason, same status: changed, but the transition time stays.
        assert!(set(&mut cs, cond("True", "FailedDelete"), &at(30)));
        assert_eq!(cs[0].last_transition_time, Some(at(10)));
        assert_eq!(cs[0].reason.as_deref(), Some("FailedDelete"));
        // Status flips: new transition time.
        assert!(set(&mut cs, cond("False", "FailedDelete"), &at(40)));
        assert_eq!(cs[0].last_transition_time, Some(at(40)));
        assert_eq!(cs.len(), 1);
        assert!(!is_true(&cs, "ReplicaFailure"));
        assert!(remove(&mut cs, "ReplicaFailure"));
        assert!(!remove(&mut cs, "ReplicaFailure"));
    }

    #[test]
    fn meta_v1_conditions_work_too() {
        let c = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Up".into(),
            message: String::new(),
            last_transition_time: at(0),
            observed_generation: Some(1),
        };
        let mut cs = Vec::new();
        assert!(set(&mut cs, c.clone(), &at(5)));
        assert!(is_true(&cs, "Ready"));
        assert_eq!(find(&cs, "Ready").map(|c| c.last_transition_time.clone()), Some(at(5)));
        assert!(!set(&mut cs, c, &at(9)));
    }
}
