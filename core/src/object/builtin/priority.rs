//! PriorityClass (`scheduling.k8s.io/v1`): the names pods use for their scheduling priority.
//! The registry's Priority admission (`registry::priority`) turns a pod's
//! `priorityClassName` into `spec.priority`.

use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;

use super::json;
use crate::object::Kind;
use crate::object::table::{AGE, Column};
use crate::validation::{ErrorList, FieldError, FieldPath};

/// The highest value a user-defined PriorityClass may have (Kubernetes'
/// `HighestUserDefinablePriority`); higher values are for the system classes.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The built-in class of pods that the cluster needs to work.
pub const SYSTEM_CLUSTER_CRITICAL: &str = "system-cluster-critical";
/// The built-in class of pods a node needs to work (the highest priority).
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";
/// The prefix of class names reserved for the system.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The preemption policy that lets a pod evict pods of lower priority (the default).
pub const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";
/// The preemption policy of pods that never evict others.
pub const PREEMPT_NEVER: &str = "Never";

/// The built-in classes and their values: they exist without being stored.
pub fn system_priority_class(name: &str) -> Option<i32> {
    match name {
        SYSTEM_CLUSTER_CRITICAL => Some(2 * HIGHEST_USER_DEFINABLE_PRIORITY),
        SYSTEM_NODE_CRITICAL => Some(2 * HIGHEST_USER_DEFINABLE_PRIORITY + 1000),
        _ => None,
    }
}

const COLUMNS: &[Column] = &[
    Column { name: "Value", type_: "integer", description: "The value of the class.", priority: 0 },
    Column {
        name: "Global-Default",
        type_: "boolean",
        description: "Whether pods without a class get this one.",
        priority: 0,
    },
    AGE,
    Column::text("PreemptionPolicy", "Whether its pods may evict pods of lower priority."),
];

impl Kind for PriorityClass {
    fn set_defaults(&mut self) {
        self.preemption_policy.get_or_insert_with(|| PREEMPT_LOWER_PRIORITY.into());
    }

    fn validate(&self, old: Option<&Self>) -> ErrorList {
        let mut errs = ErrorList::new();
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
            if system_priority_class(name) != Some(self.value) {
                errs.push(FieldError::forbidden(
                    FieldPath::new("metadata").child("name"),
                    "priority class names with 'system-' prefix are reserved",
                ));
            }
        } else if self.value > HIGHEST_USER_DEFINABLE_PRIORITY {
            errs.push(FieldError::forbidden(
                FieldPath::new("value"),
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
                ),
            ));
        }
        if let Some(policy) = self.preemption_policy.as_deref()
            && policy != PREEMPT_LOWER_PRIORITY
            && policy != PREEMPT_NEVER
        {
            errs.push(FieldError::not_supported(
                FieldPath::new("preemptionPolicy"),
                json(policy),
                &[PREEMPT_LOWER_PRIORITY, PREEMPT_NEVER],
            ));
        }
        if let Some(old) = old {
            if old.value != self.value {
                errs.push(FieldError::forbidden(FieldPath::new("value"), "may not be changed in an update."));
            }
            if old.preemption_policy != self.preemption_policy {
                errs.push(FieldError::forbidden(FieldPath::new("preemptionPolicy"), "field is immutable"));
            }
        }
        errs
    }

    fn printer_columns() -> &'static [Column] {
        COLUMNS
    }

    fn printer_cells(&self) -> Vec<Value> {
        vec![
            Value::from(self.value),
            Value::from(self.global_default.unwrap_or(false)),
            Value::Null,
            json(self.preemption_policy.clone().unwrap_or_default()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn class(name: &str, value: i32, policy: Option<&str>) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            value,
            preemption_policy: policy.map(Into::into),
            ..Default::default()
        }
    }

    fn fields(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn validation_cases() {
        let cases: [(&str, PriorityClass, Option<PriorityClass>, &[&str]); 7] = [
            ("a user class", class("high", 1000, Some(PREEMPT_NEVER)), None, &[]),
            ("the highest user value", class("top", HIGHEST_USER_DEFINABLE_PRIORITY, None), None, &[]),
            (
                "above the user range",
                class("top", HIGHEST_USER_DEFINABLE_PRIORITY + 1, None),
                None,
                &["value"],
            ),
            ("a reserved name", class("system-mine", 10, None), None, &["metadata.name"]),
            ("a built-in class with its value", class(SYSTEM_NODE_CRITICAL, 2_000_001_000, None), None, &[]),
            ("an unknown policy", class("p", 1, Some("Sometimes")), None, &["preemptionPolicy"]),
            (
                "value and policy are immutable",
                class("p", 2, Some(PREEMPT_NEVER)),
                Some(class("p", 1, Some(PREEMPT_LOWER_PRIORITY))),
                &["value", "preemptionPolicy"],
            ),
        ];
        for (name, c, old, want) in cases {
            assert_eq!(fields(&c.validate(old.as_ref())), want, "{name}");
        }
    }

    #[test]
    fn the_policy_defaults_to_preempting() {
        let mut c = class("p", 1, None);
        c.set_defaults();
        assert_eq!(c.preemption_policy.as_deref(), Some(PREEMPT_LOWER_PRIORITY));
    }
}
