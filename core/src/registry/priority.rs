//! Priority admission (Kubernetes' `Priority` admission plugin): a new pod's
//! `spec.priorityClassName` becomes its `spec.priority` and `spec.preemptionPolicy`, and only
//! one PriorityClass may be the global default.
//!
//! - A pod naming a class gets that class's value and policy; a class that does not exist is
//!   refused (403 Forbidden, Kubernetes' message). The built-in `system-cluster-critical`
//!   and `system-node-critical` exist without being stored.
//! - A pod naming none gets the `globalDefault` class (the lowest-valued, if several), or
//!   priority 0 and `PreemptLowerPriority` when there is none.
//! - A pod that sets `spec.priority` or `spec.preemptionPolicy` to anything but what its
//!   class gives is refused, as Kubernetes refuses it; setting the same values is allowed.
//! - Only pod creates are admitted: `spec.priority` cannot change afterwards (Flotilla's
//!   update validation keeps the pod spec's scheduling fields as created).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Map, Value};

use super::encoding::{decode, key};
use super::{Error, Registry, Result};
use crate::object::priority::{PREEMPT_LOWER_PRIORITY, system_priority_class};
use crate::object::{DynamicObject, Resource, ResourceType};
use crate::store::{KeyRange, RangeRequest};

/// What a pod's class gives it.
struct Resolved {
    class: Option<String>,
    value: i32,
    policy: String,
}

fn as_class(obj: &DynamicObject) -> (String, i32, bool, String) {
    let data = &obj.data;
    let value = data.get("value").and_then(Value::as_i64).and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
    let default = data.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
    let policy = data.get("preemptionPolicy").and_then(Value::as_str).unwrap_or(PREEMPT_LOWER_PRIORITY);
    (obj.name().to_string(), value, default, policy.to_string())
}

impl Registry {
    /// Every stored PriorityClass.
    async fn priority_classes(&self) -> Result<Vec<DynamicObject>> {
        let prefix = key(&PriorityClass::TYPE, "", "");
        let resp = self.store.range(RangeRequest::new(KeyRange::prefix(prefix))).await?;
        resp.kvs.iter().map(decode).collect()
    }

    async fn resolve_priority(&self, class: &str) -> Result<Resolved> {
        if class.is_empty() {
            let defaults =
                self.priority_classes().await?.iter().map(as_class).filter(|c| c.2).min_by_key(|c| c.1);
            return Ok(match defaults {
                Some((name, value, _, policy)) => Resolved { class: Some(name), value, policy },
                None => Resolved { class: None, value: 0, policy: PREEMPT_LOWER_PRIORITY.into() },
            });
        }
        let t = PriorityClass::TYPE;
        let resp = self.store.range(RangeRequest::new(KeyRange::key(key(&t, "", class)))).await?;
        if let Some(kv) = resp.kvs.first() {
            let (_, value, _, policy) = as_class(&decode(kv)?);
            return Ok(Resolved { class: None, value, policy });
        }
        match system_priority_class(class) {
            Some(value) => Ok(Resolved { class: None, value, policy: PREEMPT_LOWER_PRIORITY.into() }),
            None => Err(Error::Forbidden(format!("no PriorityClass with name {class} was found"))),
        }
    }

    /// Sets a new pod's priority from its class (see the [module docs](self)).
    pub(super) async fn admit_pod_priority(&self, t: &ResourceType, obj: &mut DynamicObject) -> Result<()> {
        if *t != Pod::TYPE {
            return Ok(());
        }
        // A spec that is not an object is refused by validation, with its path.
        let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
        let class = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
        let resolved = self.resolve_priority(&class).await?;
        check_and_set(spec, resolved)
    }

    /// Keeps the priority admission gave a pod when an update leaves it out (as Kubernetes'
    /// plugin does: a client that does not know the fields must not be refused for them).
    pub(super) fn keep_pod_priority(t: &ResourceType, new: &mut DynamicObject, old: &DynamicObject) {
        if *t != Pod::TYPE {
            return;
        }
        let Some(old_spec) = old.data.get("spec").and_then(Value::as_object) else { return };
        let Some(spec) = new.data.get_mut("spec").and_then(Value::as_object_mut) else { return };
        for field in ["priority", "preemptionPolicy"] {
            let missing = spec.get(field).is_none_or(Value::is_null);
            if let Some(kept) = old_spec.get(field).filter(|_| missing) {
                spec.insert(field.into(), kept.clone());
            }
        }
    }

    /// Refuses a second `globalDefault` PriorityClass (Kubernetes' message).
    pub(super) async fn admit_priority_class(&self, t: &ResourceType, obj: &DynamicObject) -> Result<()> {
        if *t != PriorityClass::TYPE
            || !obj.data.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
        {
            return Ok(());
        }
        let others = self.priority_classes().await?;
        if let Some((name, ..)) = others.iter().map(as_class).find(|c| c.2 && c.0 != obj.name()) {
            return Err(Error::Forbidden(format!(
                "PriorityClass {name} is already marked as default. Only one default can exist"
            )));
        }
        Ok(())
    }
}

fn check_and_set(spec: &mut Map<String, Value>, resolved: Resolved) -> Result<()> {
    if let Some(given) = spec.get("priority").filter(|v| !v.is_null())
        && given.as_i64() != Some(i64::from(resolved.value))
    {
        return Err(Error::Forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission \
             controller computed {} from the given PriorityClass name",
            resolved.value
        )));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != resolved.policy
    {
        return Err(Error::Forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority \
             admission controller computed {} from the given PriorityClass name",
            resolved.policy
        )));
    }
    if let Some(class) = resolved.class {
        spec.insert("priorityClassName".into(), Value::String(class));
    }
    spec.insert("priority".into(), Value::from(resolved.value));
    spec.insert("preemptionPolicy".into(), Value::String(resolved.policy));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn resolved(class: Option<&str>, value: i32, policy: &str) -> Resolved {
        Resolved { class: class.map(Into::into), value, policy: policy.into() }
    }

    #[test]
    fn the_class_sets_priority_and_policy() {
        let mut s = spec(json!({"priorityClassName": "high"}));
        check_and_set(&mut s, resolved(None, 1000, "Never")).expect("admitted");
        assert_eq!(
            Value::Object(s),
            json!({"priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never"})
        );
    }

    #[test]
    fn the_default_class_is_named_on_the_pod() {
        let mut s = spec(json!({}));
        check_and_set(&mut s, resolved(Some("base"), 5, PREEMPT_LOWER_PRIORITY)).expect("admitted");
        assert_eq!(s.get("priorityClassName"), Some(&json!("base")));
        assert_eq!(s.get("priority"), Some(&json!(5)));
    }

    #[test]
    fn a_given_priority_must_match_the_class() {
        let mut same = spec(json!({"priority": 7}));
        check_and_set(&mut same, resolved(None, 7, PREEMPT_LOWER_PRIORITY)).expect("the same value is fine");
        let mut other = spec(json!({"priority": 100}));
        let err = check_and_set(&mut other, resolved(None, 0, PREEMPT_LOWER_PRIORITY)).expect_err("refused");
        assert!(
            matches!(&err, Error::Forbidden(m) if m.starts_with("the integer value of priority (100) must not be provided")),
            "{err}"
        );
        let mut policy = spec(json!({"preemptionPolicy": "Never"}));
        let err = check_and_set(&mut policy, resolved(None, 0, PREEMPT_LOWER_PRIORITY)).expect_err("refused");
        assert!(matches!(&err, Error::Forbidden(m) if m.contains("PreemptionPolicy (Never)")), "{err}");
    }
}
