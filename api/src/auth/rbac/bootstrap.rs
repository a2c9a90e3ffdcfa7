//! The default RBAC policy a new cluster starts with: a simplified form of kube-apiserver's
//! bootstrap roles, with the same names, labels, aggregation and bindings.

use std::collections::BTreeMap;

use flotilla_core::object::DynamicObject;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rules::{rule, url_rule};
use crate::auth::authn::{
    ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, BOOTSTRAPPERS_GROUP, NODES_GROUP, SYSTEM_PRIVILEGED_GROUP,
};

/// The RBAC API group.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The CertificateSigningRequest API group.
const CERTIFICATES_GROUP: &str = "certificates.k8s.io";
/// The ClusterRole letting a bootstrap token ask for a node client certificate.
const NODE_CLIENT_ROLE: &str = "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
/// The ClusterRole letting a node renew its own client certificate.
const SELF_NODE_CLIENT_ROLE: &str = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
/// Label of every bootstrap object.
const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// Annotation telling the API server it may reconcile the object on start.
const AUTOUPDATE_ANNOTATION: (&str, &str) = ("rbac.authorization.kubernetes.io/autoupdate", "true");
/// Labels that aggregate a ClusterRole into `admin`, `edit` and `view`.
const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The bootstrap ClusterRoles and ClusterRoleBindings.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapPolicy {
    /// `cluster-admin`, `admin`, `edit`, `view`, the `system:aggregate-to-*` roles,
    /// `system:discovery`, `system:basic-user`, `system:public-info-viewer`, `system:node`.
    pub cluster_roles: Vec<ClusterRole>,
    /// Their bindings to `system:masters`, `system:authenticated`, `system:unauthenticated` and
    /// `system:nodes`.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl BootstrapPolicy {
    /// The objects to create, ClusterRoles first.
    pub fn objects(&self) -> Vec<DynamicObject> {
        let roles = self.cluster_roles.iter().map(DynamicObject::from_typed);
        let bindings = self.cluster_role_bindings.iter().map(DynamicObject::from_typed);
        roles.chain(bindings).map(|o| o.expect("RBAC objects always convert to JSON objects")).collect()
    }
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> =
        BTreeMap::from([(BOOTSTRAPPING_LABEL.0.into(), BOOTSTRAPPING_LABEL.1.into())]);
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(AUTOUPDATE_ANNOTATION.0.into(), AUTOUPDATE_ANNOTATION.1.into())])),
        ..Default::default()
    }
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: meta(name, labels), rules: Some(rules), aggregation_rule: None }
}

/// An aggregated ClusterRole selecting roles labelled `label: "true"`.
fn aggregated(name: &str, labels: &[(&str, &str)], label: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: Some(Vec::new()),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(label.to_string(), "true".to_string())])),
                ..Default::default()
            }]),
        }),
    }
}

fn binding(name: &str, role: &str, groups: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[]),
        role_ref: RoleRef { api_group: RBAC_GROUP.into(), kind: "ClusterRole".into(), name: role.into() },
        subjects: Some(
            groups
                .iter()
                .map(|g| Subject {
                    api_group: Some(RBAC_GROUP.into()),
                    kind: "Group".into(),
                    name: g.to_string(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "services",
                "services/status",
                "serviceaccounts",
                "events",
            ],
        ),
        rule(READ, &[""], &["namespaces", "namespaces/status"]),
        rule(
            READ,
            &["apps"],
            &[
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(READ, &["events.k8s.io"], &["events"]),
    ]
}

fn edit_rules() -> Vec<PolicyRule> {
    vec![
        rule(WRITE, &[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(READ, &[""], &["secrets"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(WRITE, &["apps"], &["deployments", "deployments/scale", "replicasets", "replicasets/scale"]),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

fn admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(READ_WRITE, &[RBAC_GROUP], &["rolebindings", "roles"]),
        rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
    ]
}

fn node_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "nodes",
                "persistentvolumeclaims",
                "persistentvolumes",
                "pods",
                "secrets",
                "services",
            ],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews", "subjectaccessreviews"]),
        rule(&["create", "get", "list", "watch"], &[CERTIFICATES_GROUP], &["certificatesigningrequests"]),
    ]
}

/// The default policy. Nodes' writes to their own Node, Lease and pods' status are granted by
/// the node rules ([`node`](super::node)), not by `system:node`, so binding it to the whole
/// `system:nodes` group grants no node power over another.
pub fn bootstrap_policy() -> BootstrapPolicy {
    let all = &["*"];
    let discovery_urls = &[
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let public_urls = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let cluster_roles = vec![
        cluster_role("cluster-admin", &[], vec![rule(all, all, all), url_rule(all, all)]),
        aggregated("admin", &[], TO_ADMIN),
        aggregated("edit", &[(TO_ADMIN, "true")], TO_EDIT),
        aggregated("view", &[(TO_EDIT, "true")], TO_VIEW),
        cluster_role("system:aggregate-to-admin", &[(TO_ADMIN, "true")], admin_rules()),
        cluster_role("system:aggregate-to-edit", &[(TO_EDIT, "true")], edit_rules()),
        cluster_role("system:aggregate-to-view", &[(TO_VIEW, "true")], view_rules()),
        cluster_role("system:discovery", &[], vec![url_rule(&["get"], discovery_urls)]),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role("system:public-info-viewer", &[], vec![url_rule(&["get"], public_urls)]),
        cluster_role("system:node", &[], node_rules()),
        // TLS bootstrapping (what kubeadm sets up for kubelets): bootstrap tokens may ask for
        // node client certificates, which the approver grants when these roles allow it.
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CERTIFICATES_GROUP],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            NODE_CLIENT_ROLE,
            &[],
            vec![rule(&["create"], &[CERTIFICATES_GROUP], &["certificatesigningrequests/nodeclient"])],
        ),
        cluster_role(
            SELF_NODE_CLIENT_ROLE,
            &[],
            vec![rule(&["create"], &[CERTIFICATES_GROUP], &["certificatesigningrequests/selfnodeclient"])],
        ),
    ];
    let cluster_role_bindings = vec![
        binding("cluster-admin", "cluster-admin", &[SYSTEM_PRIVILEGED_GROUP]),
        binding("system:discovery", "system:discovery", &[ALL_AUTHENTICATED]),
        binding("system:basic-user", "system:basic-user", &[ALL_AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED],
        ),
        binding("system:node", "system:node", &[NODES_GROUP]),
        binding("flotilla:kubelet-bootstrap", "system:node-bootstrapper", &[BOOTSTRAPPERS_GROUP]),
        binding("flotilla:node-autoapprove-bootstrap", NODE_CLIENT_ROLE, &[BOOTSTRAPPERS_GROUP]),
        binding("flotilla:node-autoapprove-certificate-rotation", SELF_NODE_CLIENT_ROLE, &[NODES_GROUP]),
    ];
    BootstrapPolicy { cluster_roles, cluster_role_bindings }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    use super::*;
    use crate::auth::authn::UserInfo;
    use crate::auth::authorizer::Attributes;
    use crate::auth::rbac::{RbacSnapshot, authorize};

    fn snapshot(extra: Vec<RoleBinding>) -> RbacSnapshot {
        let p = bootstrap_policy();
        RbacSnapshot::new(Vec::<Role>::new(), p.cluster_roles, extra, p.cluster_role_bindings)
    }

    fn bind_namespace(user: &str, role: &str, ns: &str) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{user}-{role}")),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            role_ref: RoleRef { api_group: RBAC_GROUP.into(), kind: "ClusterRole".into(), name: role.into() },
            subjects: Some(vec![Subject { kind: "User".into(), name: user.into(), ..Default::default() }]),
        }
    }

    #[test]
    fn objects_carry_kind_labels_and_annotations() {
        let objects = bootstrap_policy().objects();
        assert_eq!(objects.len(), 22);
        let admin =
            objects.iter().find(|o| o.name() == "cluster-admin" && o.kind == "ClusterRole").expect("role");
        assert_eq!(admin.api_version, "rbac.authorization.k8s.io/v1");
        let labels = admin.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/bootstrapping"], "rbac-defaults");
        let annotations = admin.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["rbac.authorization.kubernetes.io/autoupdate"], "true");
        assert!(objects.iter().any(|o| o.kind == "ClusterRoleBinding" && o.name() == "system:node"));
    }

    /// (what, user, attributes, allowed) against the bootstrap policy and two RoleBindings.
    #[test]
    fn default_permissions() {
        let s =
            snapshot(vec![bind_namespace("vera", "view", "team"), bind_namespace("ann", "admin", "team")]);
        let authed = |name: &str| UserInfo::new(name, [ALL_AUTHENTICATED]);
        let anonymous = UserInfo::anonymous();
        let node = UserInfo::new("system:node:n1", [NODES_GROUP, ALL_AUTHENTICATED]);
        let res = |u: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str, name: &str| {
            Attributes::resource(u.clone(), verb, group, resource, ns, name)
        };
        let url = |u: &UserInfo, path: &str| Attributes::non_resource(u.clone(), "get", path);
        let vera = authed("vera");
        let ann = authed("ann");
        let admin = UserInfo::new("root", [SYSTEM_PRIVILEGED_GROUP]);
        let boot = UserInfo::new("system:bootstrap:abcdef", [BOOTSTRAPPERS_GROUP, ALL_AUTHENTICATED]);
        #[rustfmt::skip]
        let cases: Vec<(&str, Attributes, bool)> = vec![
            ("anyone may read /healthz", url(&anonymous, "/healthz"), true),
            ("anyone may read /version", url(&anonymous, "/version"), true),
            ("anonymous may not discover", url(&anonymous, "/apis"), false),
            ("authenticated may discover", url(&authed("x"), "/apis/apps/v1"), true),
            ("authenticated may read openapi", url(&authed("x"), "/openapi/v3"), true),
            ("authenticated may not read /metrics", url(&authed("x"), "/metrics"), false),
            ("authenticated may review itself", res(&authed("x"), "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""), true),
            ("authenticated may whoami", res(&authed("x"), "create", "authentication.k8s.io", "selfsubjectreviews", "", ""), true),
            ("authenticated may not list pods", res(&authed("x"), "list", "", "pods", "team", ""), false),
            ("view reads pods", res(&vera, "list", "", "pods", "team", ""), true),
            ("view reads deployments/scale", res(&vera, "get", "apps", "deployments/scale", "team", "d"), true),
            ("view does not read secrets", res(&vera, "get", "", "secrets", "team", "s"), false),
            ("view does not write", res(&vera, "create", "", "pods", "team", ""), false),
            ("view only in its namespace", res(&vera, "list", "", "pods", "other", ""), false),
            ("admin (aggregated) writes pods", res(&ann, "delete", "", "pods", "team", "p"), true),
            ("admin reads secrets", res(&ann, "get", "", "secrets", "team", "s"), true),
            ("admin manages roles", res(&ann, "create", RBAC_GROUP, "rolebindings", "team", ""), true),
            ("admin reads (via edit via view)", res(&ann, "watch", "apps", "replicasets", "team", ""), true),
            ("admin is not cluster-wide", res(&ann, "list", "", "nodes", "", ""), false),
            ("masters do everything", res(&admin, "delete", "", "nodes", "", "n1"), true),
            ("system:node reads secrets", res(&node, "get", "", "secrets", "team", "s"), true),
            ("system:node creates events", res(&node, "create", "", "events", "team", ""), true),
            ("system:node has no node writes", res(&node, "patch", "", "nodes", "", "n2"), false),
            ("bootstrappers create CSRs", res(&boot, "create", "certificates.k8s.io", "certificatesigningrequests", "", ""), true),
            ("bootstrappers watch CSRs", res(&boot, "watch", "certificates.k8s.io", "certificatesigningrequests", "", ""), true),
            ("bootstrappers may get node client certs", res(&boot, "create", "certificates.k8s.io", "certificatesigningrequests/nodeclient", "", ""), true),
            ("bootstrappers may not renew", res(&boot, "create", "certificates.k8s.io", "certificatesigningrequests/selfnodeclient", "", ""), false),
            ("bootstrappers may not approve", res(&boot, "update", "certificates.k8s.io", "certificatesigningrequests/approval", "", "c"), false),
            ("bootstrappers may not read pods", res(&boot, "list", "", "pods", "", ""), false),
            ("nodes may renew", res(&node, "create", "certificates.k8s.io", "certificatesigningrequests/selfnodeclient", "", ""), true),
            ("nodes create CSRs", res(&node, "create", "certificates.k8s.io", "certificatesigningrequests", "", ""), true),
        ];
        for (what, attrs, want) in cases {
            let d = authorize(&s, &attrs);
            assert_eq!(d.is_allowed(), want, "{what}: {d:?}");
        }
        let view = s.cluster_role_rules("view").expect("view");
        assert_eq!(view, view_rules().as_slice());
    }
}
