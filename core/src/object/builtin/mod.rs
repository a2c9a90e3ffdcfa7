//! Defaults, validation and selectable fields of the built-in kinds, following Kubernetes'
//! rules for the fields Flotilla's components act on.

mod csr;
mod pods;
pub mod priority;
mod quota;
mod workloads;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::{apps, certificates, coordination, core, discovery, rbac, scheduling, storage};
use serde_json::Value;

use super::{Kind, KindRegistry};
use crate::validation::{ErrorList, FieldError, FieldPath, is_valid_port_num};

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
        core::v1::ResourceQuota,
        apps::v1::ReplicaSet,
        apps::v1::Deployment,
        discovery::v1::EndpointSlice,
        storage::v1::StorageClass,
        coordination::v1::Lease,
        rbac::v1::Role,
        rbac::v1::ClusterRole,
        rbac::v1::RoleBinding,
        rbac::v1::ClusterRoleBinding,
        certificates::v1::CertificateSigningRequest,
        scheduling::v1::PriorityClass
    );
}

/// A JSON string, for error values.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a kind declares for field selectors are exactly the fields it reports.
    fn declared_fields_match<K: Kind + Default>() {
        let reported: Vec<&str> = K::default().selectable_fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(reported, K::selectable_field_names(), "{}", K::TYPE.kind);
    }

    #[test]
    fn selectable_field_names_match_the_fields() {
        declared_fields_match::<core::v1::Namespace>();
        declared_fields_match::<core::v1::Node>();
        declared_fields_match::<core::v1::Secret>();
        declared_fields_match::<core::v1::Event>();
        declared_fields_match::<core::v1::Pod>();
        declared_fields_match::<core::v1::ConfigMap>();
        declared_fields_match::<apps::v1::ReplicaSet>();
        declared_fields_match::<apps::v1::Deployment>();
        declared_fields_match::<Service>();
    }
}
