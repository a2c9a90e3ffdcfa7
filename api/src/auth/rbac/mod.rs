//! Authorization with Kubernetes' RBAC, the node rules and the superuser group.
//!
//! The decision is a pure function: [`decide`] over an [`RbacSnapshot`] (Roles, ClusterRoles
//! with aggregation resolved, RoleBindings, ClusterRoleBindings) and a pod lookup for the node
//! rules, in kube-apiserver's order — `system:masters` is allowed everything, node identities
//! are held to [`node`]'s rules, and everything else is [`authorize`]d by RBAC. Rule matching
//! is in [`rules`]; the policy a new cluster starts with is [`bootstrap_policy`].
//!
//! [`RbacAuthorizer`] is the live form: it follows the RBAC objects (and bound pods) with
//! reflectors and decides against their current state.

mod bootstrap;
mod live;
pub mod node;
pub mod rules;
mod snapshot;

pub use bootstrap::{BootstrapPolicy, bootstrap_policy};
pub use live::RbacAuthorizer;
pub use snapshot::{RbacSnapshot, authorize};

use crate::auth::authn::SYSTEM_PRIVILEGED_GROUP;
pub use crate::auth::authorizer::{AlwaysAllow, Attributes, Authorizer, Decision, forbidden_message};

/// The whole decision: `system:masters` first, then the node rules (with `pod_node(namespace,
/// name)` giving a pod's `spec.nodeName`, `None` if unknown), then RBAC.
pub fn decide(
    snapshot: &RbacSnapshot,
    attrs: &Attributes,
    pod_node: impl Fn(&str, &str) -> Option<String>,
) -> Decision {
    if attrs.user.in_group(SYSTEM_PRIVILEGED_GROUP) {
        return Decision::allow("");
    }
    match node::node_authorize(attrs, pod_node) {
        Some(decision) => decision,
        None => authorize(snapshot, attrs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::{NODES_GROUP, UserInfo};

    #[test]
    fn masters_then_nodes_then_rbac() {
        let policy = bootstrap_policy();
        // A careless binding: cluster-admin for every node.
        let mut bindings = policy.cluster_role_bindings.clone();
        let mut all_nodes = bindings[0].clone();
        all_nodes.metadata.name = Some("nodes-are-admins".into());
        if let Some(subjects) = all_nodes.subjects.as_mut() {
            subjects[0].name = NODES_GROUP.into();
        }
        bindings.push(all_nodes);
        let s = RbacSnapshot::new(
            Vec::<k8s_openapi::api::rbac::v1::Role>::new(),
            policy.cluster_roles,
            Vec::<k8s_openapi::api::rbac::v1::RoleBinding>::new(),
            bindings,
        );
        let n1 = UserInfo::new("system:node:n1", [NODES_GROUP]);
        let pods = |_: &str, name: &str| Some(if name == "mine" { "n1" } else { "n2" }.to_string());
        let at = |verb: &str, resource: &str, name: &str| {
            Attributes::resource(n1.clone(), verb, "", resource, "", name)
        };
        let cases: &[(Attributes, bool)] = &[
            (at("patch", "nodes", "n1"), true),
            // NodeRestriction refuses what RBAC would allow.
            (at("patch", "nodes", "n2"), false),
            (Attributes::resource(n1.clone(), "patch", "", "pods/status", "ns", "mine"), true),
            (Attributes::resource(n1.clone(), "patch", "", "pods/status", "ns", "theirs"), false),
            // Not governed by the node rules: RBAC (cluster-admin here) decides.
            (at("delete", "nodes", "n1"), true),
            (Attributes::resource(n1.clone(), "create", "apps", "deployments", "ns", ""), true),
        ];
        for (attrs, want) in cases {
            assert_eq!(decide(&s, attrs, pods).is_allowed(), *want, "{attrs:?}");
        }
        let root = UserInfo::new("system:node:n1", [NODES_GROUP, SYSTEM_PRIVILEGED_GROUP]);
        let attrs = Attributes::resource(root, "patch", "", "nodes", "", "n2");
        assert!(decide(&s, &attrs, pods).is_allowed(), "masters come first");
    }
}
