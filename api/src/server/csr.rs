//! What CertificateSigningRequests need beyond generic handling: on create, who asked is
//! recorded from the request's credentials (`spec.username`, `uid`, `groups`, `extra`, as
//! kube-apiserver's strategy does; whatever the body said is replaced) and any status is
//! dropped. `approval` is served as the status subresource (RBAC tells them apart).

use flotilla_core::object::{DynamicObject, ResourceType};
use serde_json::{Map, Value};

use crate::auth::Attributes;

/// The CertificateSigningRequest API group.
const GROUP: &str = "certificates.k8s.io";
/// Its resource name.
const PLURAL: &str = "certificatesigningrequests";

/// Whether `t` is CertificateSigningRequests.
pub(crate) fn is_csr(t: &ResourceType) -> bool {
    t.group == GROUP && t.plural == PLURAL
}

/// Records the requesting user in a CertificateSigningRequest about to be created; other
/// kinds are left alone.
pub(crate) fn prepare_create(t: &ResourceType, attrs: Option<&Attributes>, obj: &mut DynamicObject) {
    if !is_csr(t) {
        return;
    }
    obj.data.remove("status");
    let spec = obj.data.entry("spec").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(spec) = spec else { return };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    let Some(user) = attrs.map(|a| &a.user) else { return };
    spec.insert("username".into(), Value::String(user.name.clone()));
    if !user.uid.is_empty() {
        spec.insert("uid".into(), Value::String(user.uid.clone()));
    }
    spec.insert("groups".into(), Value::from(user.groups.clone()));
    if !user.extra.is_empty() {
        let extra: Map<String, Value> =
            user.extra.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
        spec.insert("extra".into(), Value::Object(extra));
    }
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::Resource;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;
    use crate::auth::UserInfo;

    #[test]
    fn records_the_requestor() {
        let t = CertificateSigningRequest::TYPE;
        let mut obj = DynamicObject { api_version: "certificates.k8s.io/v1".into(), ..Default::default() };
        obj.data.insert(
            "spec".into(),
            json!({"signerName": "s/x", "username": "admin", "groups": ["system:masters"]}),
        );
        obj.data.insert("status".into(), json!({"certificate": "Zm9v"}));
        let user = UserInfo::new("system:bootstrap:abcdef", ["system:bootstrappers", "system:authenticated"]);
        let attrs = Attributes::resource(user, "create", GROUP, PLURAL, "", "");
        prepare_create(&t, Some(&attrs), &mut obj);
        assert_eq!(
            obj.data["spec"],
            json!({
                "signerName": "s/x",
                "username": "system:bootstrap:abcdef",
                "groups": ["system:bootstrappers", "system:authenticated"],
            })
        );
        assert!(!obj.data.contains_key("status"), "a request is created without status");

        let mut pod = DynamicObject::default();
        pod.data.insert("spec".into(), json!({"username": "x"}));
        prepare_create(&Pod::TYPE, Some(&attrs), &mut pod);
        assert_eq!(pod.data["spec"], json!({"username": "x"}), "other kinds untouched");
    }
}
