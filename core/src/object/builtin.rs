//! Defaults, validation and selectable fields of the built-in kinds, following Kubernetes'
//! rules for the fields Flotilla's components act on.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::api::{apps, coordination, core, discovery, rbac, storage};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::{Kind, KindRegistry};
use crate::selector::LabelSelector as Selector;
use crate::validation::{ErrorList, FieldError, FieldPath, is_dns1123_label, is_valid_port_num};

/// Kinds with no behaviour beyond the registry's generic handling.
macro_rules! plain_kinds {
    ($($ty:ty),*) => {$( impl Kind for $ty {} )*};
}

plain_kinds!(
    core::v1::PersistentVolume,
    core::v1::PersistentVolumeClaim,
    core::v1::ServiceAccount,
    core::v1::Endpoints,
    discovery::v1::EndpointSlice,
    storage::v1::StorageClass,
    coordination::v1::Lease,
    rbac::v1::Role,
    rbac::v1::ClusterRole,
    rbac::v1::RoleBinding,
    rbac::v1::ClusterRoleBinding
);

/// Registers every built-in kind.
pub(super) fn register_all(r: &mut KindRegistry) {
    macro_rules! reg {
        ($($ty:ty),*) => {$(
            r.register::<$ty>().expect("built-in kinds have distinct resource names");
        )*};
    }
    reg!(
        core::v1::Namespace,
        core::v1::Node,
        core::v1::Pod,
        core::v1::Service,
        core::v1::Endpoints,
        core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::ServiceAccount,
        core::v1::Event,
        apps::v1::ReplicaSet,
        apps::v1::Deployment,
        discovery::v1::EndpointSlice,
        storage::v1::StorageClass,
        coordination::v1::Lease,
        rbac::v1::Role,
        rbac::v1::ClusterRole,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRoleBinding
    );
}

fn json(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

impl Kind for core::v1::Namespace {
    fn set_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.finalizers.get_or_insert_with(|| vec!["kubernetes".into()]);
        let status = self.status.get_or_insert_with(Default::default);
        status.phase.get_or_insert_with(|| "Active".into());
    }

    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        vec![("status.phase", self.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default())]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &["status.phase"]
    }

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::NAMESPACE
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::namespace(self)
    }
}

impl Kind for core::v1::Node {
    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        let unschedulable = self.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        vec![("spec.unschedulable", unschedulable.to_string())]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::NODE
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::node(self)
    }
}

impl Kind for core::v1::ConfigMap {
    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::CONFIG_MAP
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::config_map(self)
    }
}

impl Kind for core::v1::Secret {
    fn set_defaults(&mut self) {
        self.type_.get_or_insert_with(|| "Opaque".into());
    }

    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        vec![("type", self.type_.clone().unwrap_or_default())]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &["type"]
    }

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::SECRET
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::secret(self)
    }
}

impl Kind for core::v1::Event {
    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        let o = &self.involved_object;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("involvedObject.kind", s(&o.kind)),
            ("involvedObject.namespace", s(&o.namespace)),
            ("involvedObject.name", s(&o.name)),
            ("involvedObject.uid", s(&o.uid)),
            ("involvedObject.apiVersion", s(&o.api_version)),
            ("involvedObject.resourceVersion", s(&o.resource_version)),
            ("involvedObject.fieldPath", s(&o.field_path)),
            ("reason", s(&self.reason)),
            ("reportingComponent", s(&self.reporting_component)),
            ("source", self.source.as_ref().and_then(|x| x.component.clone()).unwrap_or_default()),
            ("type", s(&self.type_)),
        ]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
}

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

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::POD
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::pod(self)
    }
}

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

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::REPLICA_SET
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::replica_set(self)
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

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::DEPLOYMENT
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::deployment(self)
    }
}

impl Kind for Service {
    fn set_defaults(&mut self) {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        if let Some(spec) = &mut self.spec {
            spec.type_.get_or_insert_with(|| "ClusterIP".into());
            spec.session_affinity.get_or_insert_with(|| "None".into());
            for p in spec.ports.iter_mut().flatten() {
                p.protocol.get_or_insert_with(|| "TCP".into());
                p.target_port.get_or_insert(IntOrString::Int(p.port));
            }
        }
    }

    fn validate(&self, _old: Option<&Self>) -> ErrorList {
        let mut errs = ErrorList::default();
        let path = FieldPath::new("spec");
        let Some(spec) = &self.spec else {
            errs.push(FieldError::required(path, ""));
            return errs;
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
        if !types.contains(&kind) {
            errs.push(FieldError::not_supported(path.child("type"), json(kind), &types));
        }
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        if ports.is_empty() && kind != "ExternalName" && spec.cluster_ip.as_deref() != Some("None") {
            errs.push(FieldError::required(path.child("ports"), ""));
        }
        let mut names = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = path.child("ports").index(i);
            for msg in is_valid_port_num(p.port) {
                errs.push(FieldError::invalid(pp.child("port"), Value::from(p.port), &msg));
            }
            match p.name.as_deref() {
                None | Some("") if ports.len() > 1 => errs.push(FieldError::required(pp.child("name"), "")),
                Some(n) if names.contains(&n) => errs.push(FieldError::duplicate(pp.child("name"), json(n))),
                Some(n) => names.push(n),
                None => {}
            }
        }
        errs
    }

    fn printer_columns() -> &'static [super::table::Column] {
        super::columns::SERVICE
    }

    fn printer_cells(&self) -> Vec<Value> {
        super::columns::service(self)
    }
}
