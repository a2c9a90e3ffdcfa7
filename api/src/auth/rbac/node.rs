//! Node restriction: what a node identity (`system:node:<name>` in `system:nodes`) may do,
//! a simplification of Kubernetes' Node authorizer and NodeRestriction admission plugin.
//!
//! A node may read nodes, pods, services, endpoints, endpointslices, configmaps, secrets and
//! volumes; create, update and patch its own Node (and its status) and its own Lease in
//! `kube-node-lease`; create, update and patch events; and update or patch the status of pods
//! bound to it, and delete them. Writes to another node's Node or Lease, or to the status of a pod bound
//! elsewhere, are refused even if RBAC would allow them (as NodeRestriction does). Anything
//! else is left to RBAC.
//!
//! Whether a pod is bound to the node is not in the request: [`node_decision`] answers
//! [`NodeDecision::NeedsPodNode`] and the caller finishes with [`pod_status_decision`] once it
//! has looked the pod up — no I/O here.

use crate::auth::authn::{NODE_USER_PREFIX, NODES_GROUP, UserInfo};
use crate::auth::authorizer::{Attributes, Decision};

/// The namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the node rules say about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeDecision {
    /// Not a node, or nothing the node rules govern: RBAC decides.
    NoOpinion,
    /// Decided by the node rules.
    Decided(Decision),
    /// A pod status write or a pod deletion: allowed only if pod `namespace`/`name` is bound to the node; see
    /// [`pod_status_decision`].
    NeedsPodNode {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
}

/// The node name of a node identity: `Some` for a user named `system:node:<name>` in group
/// `system:nodes` (the name may be empty, which identifies no node), `None` otherwise.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.in_group(NODES_GROUP).then_some(name)
}

/// Resources a node may read: (group, resource).
const READABLE: [(&str, &str); 9] = [
    ("", "nodes"),
    ("", "pods"),
    ("", "services"),
    ("", "endpoints"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "persistentvolumes"),
    ("", "persistentvolumeclaims"),
    ("discovery.k8s.io", "endpointslices"),
];

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const WRITE_VERBS: [&str; 3] = ["create", "update", "patch"];

fn allow() -> NodeDecision {
    NodeDecision::Decided(Decision::allow(""))
}

fn deny(reason: String) -> NodeDecision {
    NodeDecision::Decided(Decision::deny(reason))
}

/// The node rules' decision on `attrs`.
pub fn node_decision(attrs: &Attributes) -> NodeDecision {
    let Some(node) = node_identity(&attrs.user) else {
        return NodeDecision::NoOpinion;
    };
    let decision = governed(node, attrs);
    if !node.is_empty() {
        return decision;
    }
    // `system:node:` names no node: it is granted nothing here, and refused what the rules
    // restrict (as NodeRestriction refuses a node it cannot identify).
    match decision {
        NodeDecision::NoOpinion | NodeDecision::Decided(Decision::Allow { .. }) => NodeDecision::NoOpinion,
        _ => deny(format!("could not determine node from user {:?}", attrs.user.name)),
    }
}

/// The node rules for node `node`.
fn governed(node: &str, attrs: &Attributes) -> NodeDecision {
    if !attrs.resource_request {
        return NodeDecision::NoOpinion;
    }
    let (group, resource, sub, verb) =
        (attrs.api_group.as_str(), attrs.resource.as_str(), attrs.subresource.as_str(), attrs.verb.as_str());
    match (group, resource) {
        ("", "nodes") if sub.is_empty() || sub == "status" => node_object(node, attrs),
        ("coordination.k8s.io", "leases") if attrs.namespace == NODE_LEASE_NAMESPACE => {
            node_lease(node, attrs)
        }
        ("", "pods") if sub == "status" && (verb == "update" || verb == "patch") => {
            NodeDecision::NeedsPodNode { namespace: attrs.namespace.clone(), name: attrs.name.clone() }
        }
        // A node deletes a pod for good once its containers are gone (kubelet does the same).
        ("", "pods") if sub.is_empty() && verb == "delete" => {
            NodeDecision::NeedsPodNode { namespace: attrs.namespace.clone(), name: attrs.name.clone() }
        }
        ("", "events") | ("events.k8s.io", "events") if sub.is_empty() && WRITE_VERBS.contains(&verb) => {
            allow()
        }
        _ if READABLE.contains(&(group, resource))
            && (sub.is_empty() || sub == "status")
            && READ_VERBS.contains(&verb) =>
        {
            allow()
        }
        _ => NodeDecision::NoOpinion,
    }
}

/// A node's own Node object: writable by it alone.
fn node_object(node: &str, attrs: &Attributes) -> NodeDecision {
    let verb = attrs.verb.as_str();
    let other = || deny(format!("node {node:?} is not allowed to modify node {:?}", attrs.name));
    match verb {
        "get" | "list" | "watch" => allow(),
        // The name of a create is in the body: see [`node_create_admission`].
        "create" if attrs.name.is_empty() || attrs.name == node => allow(),
        "update" | "patch" if attrs.name == node => allow(),
        "create" | "update" | "patch" => other(),
        "delete" if attrs.name == node => NodeDecision::NoOpinion,
        "delete" => other(),
        "deletecollection" => deny(format!("node {node:?} is not allowed to modify other nodes")),
        _ => NodeDecision::NoOpinion,
    }
}

/// A node's heartbeat Lease in `kube-node-lease`: only its own.
fn node_lease(node: &str, attrs: &Attributes) -> NodeDecision {
    let verb = attrs.verb.as_str();
    let own = attrs.name == node || (verb == "create" && attrs.name.is_empty());
    match verb {
        "get" | "create" | "update" | "patch" | "delete" if own => allow(),
        "create" | "update" | "patch" | "delete" => {
            deny("can only access node lease with the same name as the requesting node".into())
        }
        _ => NodeDecision::NoOpinion,
    }
}

/// Finishes a [`NodeDecision::NeedsPodNode`]: `pod_node` is the pod's `spec.nodeName`
/// (`None` if the pod is unknown).
pub fn pod_status_decision(attrs: &Attributes, pod_node: Option<&str>) -> Decision {
    let node = node_identity(&attrs.user).unwrap_or_default();
    match pod_node {
        Some(bound) if !node.is_empty() && bound == node => Decision::allow(""),
        Some(_) => Decision::deny(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        )),
        None => Decision::deny(format!(
            "node {node:?} cannot update the status of unknown pod {}/{}",
            attrs.namespace, attrs.name
        )),
    }
}

/// The node rules with the pod lookup done by `pod_node(namespace, name)` (the pod's
/// `spec.nodeName`, `None` if unknown); `None` when they have no opinion.
pub fn node_authorize(
    attrs: &Attributes,
    pod_node: impl Fn(&str, &str) -> Option<String>,
) -> Option<Decision> {
    match node_decision(attrs) {
        NodeDecision::NoOpinion => None,
        NodeDecision::Decided(d) => Some(d),
        NodeDecision::NeedsPodNode { namespace, name } => {
            Some(pod_status_decision(attrs, pod_node(&namespace, &name).as_deref()))
        }
    }
}

/// NodeRestriction at create time, when the object's name (in the body) is known: a node may
/// create only its own Node and its own Lease in `kube-node-lease`. `Err` carries the reason.
pub fn node_create_admission(attrs: &Attributes, object_name: &str) -> Result<(), String> {
    let Some(node) = node_identity(&attrs.user) else { return Ok(()) };
    if attrs.verb != "create" || object_name == node {
        return Ok(());
    }
    match (attrs.api_group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") if attrs.subresource.is_empty() => {
            Err(format!("node {node:?} is not allowed to modify node {object_name:?}"))
        }
        ("coordination.k8s.io", "leases") if attrs.namespace == NODE_LEASE_NAMESPACE => {
            Err("can only access node lease with the same name as the requesting node".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n1() -> UserInfo {
        UserInfo::new("system:node:n1", [NODES_GROUP, "system:authenticated"])
    }

    fn req(user: UserInfo, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(user, verb, group, resource, ns, name)
    }

    #[test]
    fn identities() {
        assert_eq!(node_identity(&n1()), Some("n1"));
        assert_eq!(node_identity(&UserInfo::new("system:node:n1", ["dev"])), None, "not in system:nodes");
        assert_eq!(node_identity(&UserInfo::new("bob", [NODES_GROUP])), None, "not a node name");
        assert_eq!(node_identity(&UserInfo::new("system:node:", [NODES_GROUP])), Some(""));
    }

    /// (what, verb, group, resource, namespace, name, expected: 'A'llow, 'D'eny, 'N'o opinion, 'P'od lookup).
    #[test]
    fn node_rules() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str, &str, &str, char)] = &[
            ("read nodes", "list", "", "nodes", "", "", 'A'),
            ("read another node", "get", "", "nodes", "", "n2", 'A'),
            ("read pods", "watch", "", "pods", "", "", 'A'),
            ("read secrets", "get", "", "secrets", "ns", "s", 'A'),
            ("read configmaps", "list", "", "configmaps", "ns", "", 'A'),
            ("read services", "list", "", "services", "", "", 'A'),
            ("read endpoints", "watch", "", "endpoints", "", "", 'A'),
            ("read endpointslices", "list", "discovery.k8s.io", "endpointslices", "", "", 'A'),
            ("write secrets", "update", "", "secrets", "ns", "s", 'N'),
            ("create own node", "create", "", "nodes", "", "", 'A'),
            ("patch own node", "patch", "", "nodes", "", "n1", 'A'),
            ("update own node", "update", "", "nodes", "", "n1", 'A'),
            ("patch own node status", "patch", "", "nodes/status", "", "n1", 'A'),
            ("update own node status", "update", "", "nodes/status", "", "n1", 'A'),
            ("patch another node", "patch", "", "nodes", "", "n2", 'D'),
            ("patch another node status", "patch", "", "nodes/status", "", "n2", 'D'),
            ("update another node", "update", "", "nodes", "", "n2", 'D'),
            ("delete another node", "delete", "", "nodes", "", "n2", 'D'),
            ("delete own node: rbac", "delete", "", "nodes", "", "n1", 'N'),
            ("delete all nodes", "deletecollection", "", "nodes", "", "", 'D'),
            ("node proxy: rbac", "get", "", "nodes/proxy", "", "n1", 'N'),
            ("own lease", "update", "coordination.k8s.io", "leases", "kube-node-lease", "n1", 'A'),
            ("get own lease", "get", "coordination.k8s.io", "leases", "kube-node-lease", "n1", 'A'),
            ("create a lease", "create", "coordination.k8s.io", "leases", "kube-node-lease", "", 'A'),
            ("another lease", "patch", "coordination.k8s.io", "leases", "kube-node-lease", "n2", 'D'),
            ("get another lease: rbac", "get", "coordination.k8s.io", "leases", "kube-node-lease", "n2", 'N'),
            ("list leases: rbac", "list", "coordination.k8s.io", "leases", "kube-node-lease", "", 'N'),
            ("lease elsewhere: rbac", "update", "coordination.k8s.io", "leases", "kube-system", "n1", 'N'),
            ("create events", "create", "", "events", "default", "", 'A'),
            ("patch events", "patch", "events.k8s.io", "events", "default", "e", 'A'),
            ("delete events: rbac", "delete", "", "events", "default", "e", 'N'),
            ("pod status", "patch", "", "pods/status", "ns", "p", 'P'),
            ("pod status update", "update", "", "pods/status", "ns", "p", 'P'),
            ("pod spec: rbac", "patch", "", "pods", "ns", "p", 'N'),
            ("delete a pod: its node", "delete", "", "pods", "ns", "p", 'P'),
            ("delete all pods: rbac", "deletecollection", "", "pods", "ns", "", 'N'),
            ("create pods: rbac", "create", "", "pods", "ns", "", 'N'),
            ("deployments: rbac", "get", "apps", "deployments", "ns", "d", 'N'),
        ];
        for (what, verb, group, resource, ns, name, want) in cases {
            let got = node_decision(&req(n1(), verb, group, resource, ns, name));
            let kind = match &got {
                NodeDecision::Decided(Decision::Allow { .. }) => 'A',
                NodeDecision::Decided(Decision::Deny { .. }) => 'D',
                NodeDecision::NoOpinion => 'N',
                NodeDecision::NeedsPodNode { .. } => 'P',
            };
            assert_eq!(kind, *want, "{what}: {got:?}");
        }
    }

    #[test]
    fn not_nodes_get_no_opinion() {
        let alice = UserInfo::new("alice", ["system:nodes"]);
        assert_eq!(node_decision(&req(alice, "patch", "", "nodes", "", "n2")), NodeDecision::NoOpinion);
        let unknown = UserInfo::new("system:node:", [NODES_GROUP]);
        assert_eq!(node_decision(&req(unknown.clone(), "get", "", "pods", "", "")), NodeDecision::NoOpinion);
        let d = node_decision(&req(unknown.clone(), "patch", "", "nodes", "", "n2"));
        assert_eq!(d, deny("could not determine node from user \"system:node:\"".into()));
        let d = node_decision(&req(unknown, "patch", "", "pods/status", "ns", "p"));
        assert_eq!(d, deny("could not determine node from user \"system:node:\"".into()));
        let nonres = Attributes::non_resource(n1(), "get", "/healthz");
        assert_eq!(node_decision(&nonres), NodeDecision::NoOpinion);
    }

    #[test]
    fn messages() {
        let d = node_decision(&req(n1(), "patch", "", "nodes", "", "n2"));
        assert_eq!(d, deny(r#"node "n1" is not allowed to modify node "n2""#.into()));
    }

    #[test]
    fn pod_status_needs_the_pods_node() {
        let attrs = req(n1(), "patch", "", "pods/status", "ns", "web");
        assert_eq!(
            node_decision(&attrs),
            NodeDecision::NeedsPodNode { namespace: "ns".into(), name: "web".into() }
        );
        assert!(pod_status_decision(&attrs, Some("n1")).is_allowed());
        let other = pod_status_decision(&attrs, Some("n2"));
        assert_eq!(
            other,
            Decision::deny(
                r#"node "n1" can only update pod status for pods with spec.nodeName set to itself"#
            )
        );
        assert!(!pod_status_decision(&attrs, Some("")).is_allowed(), "unbound pod");
        assert!(!pod_status_decision(&attrs, None).is_allowed(), "unknown pod");

        let lookup = |ns: &str, name: &str| (ns == "ns" && name == "web").then(|| "n1".to_string());
        assert_eq!(node_authorize(&attrs, lookup).map(|d| d.is_allowed()), Some(true));
        let elsewhere = req(n1(), "patch", "", "pods/status", "ns", "db");
        assert_eq!(node_authorize(&elsewhere, lookup).map(|d| d.is_allowed()), Some(false));
        assert_eq!(node_authorize(&req(n1(), "create", "", "pods", "ns", ""), lookup), None);
    }

    #[test]
    fn create_admission_checks_the_body_name() {
        let create_node = req(n1(), "create", "", "nodes", "", "");
        assert_eq!(node_create_admission(&create_node, "n1"), Ok(()));
        assert_eq!(
            node_create_admission(&create_node, "n2"),
            Err(r#"node "n1" is not allowed to modify node "n2""#.into())
        );
        let create_lease = req(n1(), "create", "coordination.k8s.io", "leases", NODE_LEASE_NAMESPACE, "");
        assert_eq!(node_create_admission(&create_lease, "n1"), Ok(()));
        assert!(node_create_admission(&create_lease, "n2").is_err());
        let other_ns = req(n1(), "create", "coordination.k8s.io", "leases", "default", "");
        assert_eq!(node_create_admission(&other_ns, "n2"), Ok(()));
        let admin = req(UserInfo::new("admin", ["system:masters"]), "create", "", "nodes", "", "");
        assert_eq!(node_create_admission(&admin, "n2"), Ok(()));
    }
}
