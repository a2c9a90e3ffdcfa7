//! Pods: defaults, validation (containers, images, ports, resources, restart policy, what an
//! update may change), selectable fields and columns.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::Value;

use super::json;
use crate::object::Kind;
use crate::validation::{ErrorList, FieldError, FieldPath, is_dns1123_label, is_valid_port_num};

fn default_container(c: &mut Container) {
    let image = c.image.as_deref().unwrap_or("");
    let tag_latest = !image.contains('@')
        && image.rsplit('/').next().is_some_and(|last| !last.contains(':') || last.ends_with(":latest"));
    c.image_pull_policy
        .get_or_insert_with(|| if tag_latest { "Always".into() } else { "IfNotPresent".into() });
    c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy.get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Kubernetes' pod spec defaults for the fields Flotilla acts on.
pub(crate) fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        default_container(c);
    }
}

fn validate_containers(list: &[Container], path: &FieldPath, names: &mut Vec<String>, errs: &mut ErrorList) {
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for msg in is_dns1123_label(&c.name) {
                errs.push(FieldError::invalid(p.child("name"), json(&c.name), &msg));
            }
            if names.contains(&c.name) {
                errs.push(FieldError::duplicate(p.child("name"), json(&c.name)));
            }
            names.push(c.name.clone());
        }
        if c.image.as_deref().is_none_or(|s| s.trim().is_empty()) {
            errs.push(FieldError::required(p.child("image"), ""));
        }
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let pp = p.child("ports").index(j);
            for msg in is_valid_port_num(port.container_port) {
                errs.push(FieldError::invalid(
                    pp.child("containerPort"),
                    Value::from(port.container_port),
                    &msg,
                ));
            }
            if let Some(proto) = &port.protocol
                && !["TCP", "UDP", "SCTP"].contains(&proto.as_str())
            {
                errs.push(FieldError::not_supported(
                    pp.child("protocol"),
                    json(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
        if let Some(r) = &c.resources {
            validate_resources(r, &p.child("resources"), errs);
        }
        if let Some(policy) = &c.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
        {
            errs.push(FieldError::not_supported(
                p.child("imagePullPolicy"),
                json(policy),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
}

/// Checks a container's requests and limits: valid, non-negative quantities, and no request
/// above its limit.
fn validate_resources(
    r: &k8s_openapi::api::core::v1::ResourceRequirements,
    path: &FieldPath,
    errs: &mut ErrorList,
) {
    use crate::quantity::Quantity;
    let parse = |map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                 field: &str,
                 errs: &mut ErrorList| {
        let mut out = std::collections::BTreeMap::new();
        for (name, q) in map.iter().flatten() {
            let at = path.child(field).key(name);
            match Quantity::parse(&q.0) {
                Ok(v) if v.is_negative() => {
                    errs.push(FieldError::invalid(at, json(&q.0), "must be greater than or equal to 0"))
                }
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(_) => errs.push(FieldError::invalid(
                    at,
                    json(&q.0),
                    "quantities must match the regular expression \
                     '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
            }
        }
        out
    };
    let requests = parse(&r.requests, "requests", errs);
    let limits = parse(&r.limits, "limits", errs);
    for (name, req) in &requests {
        if let Some(limit) = limits.get(name)
            && req > limit
        {
            errs.push(FieldError::invalid(
                path.child("requests").key(name),
                json(req.to_string()),
                format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

/// Checks a pod spec: containers, names, images, ports, restart policy.
pub(crate) fn validate_pod_spec(spec: &PodSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::default();
    let mut names = Vec::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(path.child("containers"), "must have at least one container"));
    }
    validate_containers(&spec.containers, &path.child("containers"), &mut names, &mut errs);
    validate_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &path.child("initContainers"),
        &mut names,
        &mut errs,
    );
    if let Some(policy) = &spec.restart_policy
        && !["Always", "OnFailure", "Never"].contains(&policy.as_str())
    {
        errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            json(policy),
            &["Always", "Never", "OnFailure"],
        ));
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        errs.push(FieldError::invalid(
            path.child("terminationGracePeriodSeconds"),
            Value::from(g),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// The parts of a pod spec an update may change (Kubernetes allows images, the active
/// deadline, added tolerations and the grace period); everything else must stay.
fn pod_spec_mutable_masked(spec: &PodSpec) -> PodSpec {
    let mut s = spec.clone();
    for c in s.containers.iter_mut().chain(s.init_containers.iter_mut().flatten()) {
        c.image = None;
    }
    s.active_deadline_seconds = None;
    s.tolerations = None;
    s.termination_grace_period_seconds = None;
    s
}

impl Kind for Pod {
    fn set_defaults(&mut self) {
        if let Some(spec) = &mut self.spec {
            default_pod_spec(spec);
        }
        let status = self.status.get_or_insert_with(Default::default);
        status.phase.get_or_insert_with(|| "Pending".into());
    }

    fn validate(&self, old: Option<&Self>) -> ErrorList {
        let path = FieldPath::new("spec");
        let Some(spec) = &self.spec else {
            let mut errs = ErrorList::default();
            errs.push(FieldError::required(path, ""));
            return errs;
        };
        let mut errs = validate_pod_spec(spec, &path);
        if let Some(old_spec) = old.and_then(|o| o.spec.as_ref())
            && pod_spec_mutable_masked(spec) != pod_spec_mutable_masked(old_spec)
        {
            errs.push(FieldError::forbidden(
                path,
                "pod updates may not change fields other than `spec.containers[*].image`, \
                 `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` \
                 (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
            ));
        }
        errs
    }

    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        vec![
            ("spec.nodeName", spec.node_name.unwrap_or_default()),
            ("spec.restartPolicy", spec.restart_policy.unwrap_or_default()),
            ("spec.schedulerName", spec.scheduler_name.unwrap_or_default()),
            ("spec.serviceAccountName", spec.service_account_name.unwrap_or_default()),
            ("spec.hostNetwork", spec.host_network.unwrap_or(false).to_string()),
            ("status.phase", status.phase.unwrap_or_default()),
            ("status.podIP", status.pod_ip.unwrap_or_default()),
            ("status.nominatedNodeName", status.nominated_node_name.unwrap_or_default()),
        ]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn printer_columns() -> &'static [crate::object::table::Column] {
        crate::object::columns::POD
    }

    fn printer_cells(&self) -> Vec<Value> {
        crate::object::columns::pod(self)
    }
}
