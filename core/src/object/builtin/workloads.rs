//! ReplicaSets and Deployments: defaults, selector and template validation, columns.

use k8s_openapi::api::apps;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::json;
use super::pods::{default_pod_spec, validate_pod_spec};
use crate::object::Kind;
use crate::selector::LabelSelector as Selector;
use crate::validation::{ErrorList, FieldError, FieldPath};

/// Checks a workload's selector and template: the selector is required and non-empty, and
/// must select the template's labels.
fn validate_workload(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    replicas: Option<i32>,
) -> ErrorList {
    let mut errs = ErrorList::default();
    let spec = FieldPath::new("spec");
    if let Some(r) = replicas
        && r < 0
    {
        errs.push(FieldError::invalid(
            spec.child("replicas"),
            Value::from(r),
            "must be greater than or equal to 0",
        ));
    }
    let sel_path = spec.child("selector");
    let selector = match selector.map(|s| Selector::from_k8s(s, &sel_path)) {
        None => {
            errs.push(FieldError::required(sel_path.clone(), ""));
            None
        }
        Some(Err(e)) => {
            errs.extend(e);
            None
        }
        Some(Ok(s)) if s.is_empty() => {
            errs.push(FieldError::invalid(
                sel_path.clone(),
                Value::Null,
                "empty selector is invalid for deployment",
            ));
            None
        }
        Some(Ok(s)) => Some(s),
    };
    let tpl = spec.child("template");
    match template {
        None => errs.push(FieldError::required(tpl, "")),
        Some(t) => {
            let labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            if let Some(sel) = &selector
                && !sel.matches(&labels)
            {
                errs.push(FieldError::invalid(
                    tpl.child("metadata").child("labels"),
                    serde_json::to_value(&labels).unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
            match &t.spec {
                None => errs.push(FieldError::required(tpl.child("spec"), "")),
                Some(ps) => errs.extend(validate_pod_spec(ps, &tpl.child("spec"))),
            }
        }
    }
    errs
}

impl Kind for apps::v1::ReplicaSet {
    fn set_defaults(&mut self) {
        if let Some(spec) = &mut self.spec {
            spec.replicas.get_or_insert(1);
            if let Some(ps) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
                default_pod_spec(ps);
            }
        }
    }

    fn validate(&self, old: Option<&Self>) -> ErrorList {
        let Some(spec) = &self.spec else {
            let mut errs = ErrorList::default();
            errs.push(FieldError::required(FieldPath::new("spec"), ""));
            return errs;
        };
        let mut errs = validate_workload(Some(&spec.selector), spec.template.as_ref(), spec.replicas);
        if let Some(o) = old.and_then(|o| o.spec.as_ref())
            && o.selector != spec.selector
        {
            errs.push(FieldError::invalid(
                FieldPath::new("spec").child("selector"),
                Value::Null,
                "field is immutable",
            ));
        }
        errs
    }

    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        vec![("status.replicas", self.status.as_ref().map_or(0, |s| s.replicas).to_string())]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn printer_columns() -> &'static [crate::object::table::Column] {
        crate::object::columns::REPLICA_SET
    }

    fn printer_cells(&self) -> Vec<Value> {
        crate::object::columns::replica_set(self)
    }
}

impl Kind for apps::v1::Deployment {
    fn set_defaults(&mut self) {
        use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        if let Some(spec) = &mut self.spec {
            spec.replicas.get_or_insert(1);
            spec.revision_history_limit.get_or_insert(10);
            spec.progress_deadline_seconds.get_or_insert(600);
            let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
            let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
            if kind == "RollingUpdate" {
                let ru = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
                ru.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
                ru.max_unavailable.get_or_insert_with(|| IntOrString::String("25%".into()));
            }
            if let Some(ps) = spec.template.spec.as_mut() {
                default_pod_spec(ps);
            }
        }
    }

    fn validate(&self, old: Option<&Self>) -> ErrorList {
        let Some(spec) = &self.spec else {
            let mut errs = ErrorList::default();
            errs.push(FieldError::required(FieldPath::new("spec"), ""));
            return errs;
        };
        let mut errs = validate_workload(Some(&spec.selector), Some(&spec.template), spec.replicas);
        if let Some(kind) = spec.strategy.as_ref().and_then(|s| s.type_.as_deref())
            && !["RollingUpdate", "Recreate"].contains(&kind)
        {
            errs.push(FieldError::not_supported(
                FieldPath::new("spec").child("strategy").child("type"),
                json(kind),
                &["Recreate", "RollingUpdate"],
            ));
        }
        if let Some(o) = old.and_then(|o| o.spec.as_ref())
            && o.selector != spec.selector
        {
            errs.push(FieldError::invalid(
                FieldPath::new("spec").child("selector"),
                Value::Null,
                "field is immutable",
            ));
        }
        errs
    }

    fn printer_columns() -> &'static [crate::object::table::Column] {
        crate::object::columns::DEPLOYMENT
    }

    fn printer_cells(&self) -> Vec<Value> {
        crate::object::columns::deployment(self)
    }
}
