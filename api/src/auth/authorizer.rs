//! What authorization decides on ([`Attributes`]), what it answers ([`Decision`]), the
//! [`Authorizer`] trait, and the messages of a 403 as kube-apiserver writes them.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use super::authn::UserInfo;
use super::request_info::RequestInfo;

/// A request as authorization sees it (Kubernetes' `authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// The Kubernetes verb of a resource request, the lower-case HTTP method otherwise.
    pub verb: String,
    /// The namespace; empty for cluster-scoped requests and requests across namespaces.
    pub namespace: String,
    /// The API group; empty for the core group.
    pub api_group: String,
    /// The API version (informational: RBAC ignores it).
    pub api_version: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`status`).
    pub subresource: String,
    /// The object's name, when the request names one.
    pub name: String,
    /// The URL path (what non-resource rules match).
    pub path: String,
    /// Whether this is a resource request (else a non-resource one, matched by path).
    pub resource_request: bool,
}

impl Attributes {
    /// The attributes of a parsed request by `user`.
    pub fn from_request(user: UserInfo, info: &RequestInfo) -> Self {
        Attributes {
            user,
            verb: info.verb.clone(),
            namespace: info.namespace.clone(),
            api_group: info.api_group.clone(),
            api_version: info.api_version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
            path: info.path.clone(),
            resource_request: info.is_resource_request,
        }
    }

    /// A resource request: `verb` on `resource` (`pods` or `pods/status`) of `api_group`, in
    /// `namespace` (empty: cluster-wide), naming `name` (empty: none).
    pub fn resource(
        user: UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user,
            verb: verb.into(),
            namespace: namespace.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            resource_request: true,
            ..Default::default()
        }
    }

    /// A non-resource request: `verb` (`get`, `post`, ...) on `path`.
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Self {
        Attributes { user, verb: verb.into(), path: path.into(), ..Default::default() }
    }
}

/// An authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the reason names what allowed it (may be empty).
    Allow {
        /// E.g. `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "alice"`.
        reason: String,
    },
    /// Not allowed; the reason is empty unless something specific denied it or rules could
    /// not be resolved.
    Deny {
        /// E.g. `RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found`.
        reason: String,
    },
}

impl Decision {
    /// An allow with `reason`.
    pub fn allow(reason: impl Into<String>) -> Self {
        Decision::Allow { reason: reason.into() }
    }

    /// A deny with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny { reason: reason.into() }
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::Deny { reason } => reason,
        }
    }
}

/// Decides whether a request may proceed. Synchronous: implementations decide from memory.
pub trait Authorizer: Send + Sync {
    /// The decision on `attrs`.
    fn authorize(&self, attrs: &Attributes) -> Decision;
}

impl<T: Authorizer + ?Sized> Authorizer for Arc<T> {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        (**self).authorize(attrs)
    }
}

/// Allows everything (kube-apiserver's `--authorization-mode=AlwaysAllow`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _attrs: &Attributes) -> Decision {
        Decision::allow("")
    }
}

/// kube-apiserver's description of a refused request: `User "alice" cannot list resource
/// "pods" in API group "" in the namespace "default"`, `... at the cluster scope`, or
/// `User "alice" cannot get path "/metrics"`.
pub fn forbidden_message(attrs: &Attributes) -> String {
    let user = &attrs.user.name;
    if !attrs.resource_request {
        return format!("User {user:?} cannot {} path {:?}", attrs.verb, attrs.path);
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    if attrs.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            attrs.verb, attrs.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            attrs.verb, attrs.api_group, attrs.namespace
        )
    }
}

/// The message of the 403 `Status` (Kubernetes' `NewForbidden` over [`forbidden_message`],
/// with the decision's reason appended): `pods "web" is forbidden: User "alice" cannot get
/// resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden_status_message(attrs: &Attributes, reason: &str) -> String {
    let mut detail = forbidden_message(attrs);
    if !reason.is_empty() {
        detail = format!("{detail}: {reason}");
    }
    let qualified = qualified_resource(attrs);
    if qualified.is_empty() {
        format!("forbidden: {detail}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} {:?} is forbidden: {detail}", attrs.name)
    }
}

/// The 403 `Status` kube-apiserver answers a refused request with.
pub fn forbidden_status(attrs: &Attributes, reason: &str) -> Status {
    let details = (!attrs.resource.is_empty() || !attrs.name.is_empty()).then(|| StatusDetails {
        group: Some(attrs.api_group.clone()).filter(|g| !g.is_empty()),
        kind: Some(attrs.resource.clone()).filter(|r| !r.is_empty()),
        name: Some(attrs.name.clone()).filter(|n| !n.is_empty()),
        ..Default::default()
    });
    Status {
        status: Some("Failure".into()),
        message: Some(forbidden_status_message(attrs, reason)),
        reason: Some("Forbidden".into()),
        details,
        code: Some(403),
        ..Default::default()
    }
}

/// `resource.group`, `resource` for the core group, empty for non-resource requests.
fn qualified_resource(attrs: &Attributes) -> String {
    match (attrs.resource.as_str(), attrs.api_group.as_str()) {
        ("", "") => String::new(),
        (resource, "") => resource.to_string(),
        (resource, group) => format!("{resource}.{group}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo::new("alice", ["dev"])
    }

    #[test]
    fn forbidden_messages() {
        let cases: &[(Attributes, &str, &str)] = &[
            (
                Attributes::resource(alice(), "list", "", "pods", "default", ""),
                r#"User "alice" cannot list resource "pods" in API group "" in the namespace "default""#,
                r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#,
            ),
            (
                Attributes::resource(alice(), "get", "", "pods", "default", "web"),
                r#"User "alice" cannot get resource "pods" in API group "" in the namespace "default""#,
                r#"pods "web" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default""#,
            ),
            (
                Attributes::resource(alice(), "patch", "apps", "deployments/scale", "prod", "web"),
                r#"User "alice" cannot patch resource "deployments/scale" in API group "apps" in the namespace "prod""#,
                r#"deployments.apps "web" is forbidden: User "alice" cannot patch resource "deployments/scale" in API group "apps" in the namespace "prod""#,
            ),
            (
                Attributes::resource(alice(), "list", "", "nodes", "", ""),
                r#"User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#,
                r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#,
            ),
            (
                Attributes::non_resource(alice(), "get", "/metrics"),
                r#"User "alice" cannot get path "/metrics""#,
                r#"forbidden: User "alice" cannot get path "/metrics""#,
            ),
        ];
        for (attrs, message, status) in cases {
            assert_eq!(forbidden_message(attrs), *message);
            assert_eq!(forbidden_status_message(attrs, ""), *status);
        }
        let attrs = Attributes::resource(alice(), "get", "", "pods", "default", "web");
        assert!(forbidden_status_message(&attrs, "RBAC: x").ends_with(r#""default": RBAC: x"#));
        let status = forbidden_status(&attrs, "");
        assert_eq!((status.code, status.reason.as_deref()), (Some(403), Some("Forbidden")));
        let details = status.details.expect("details");
        assert_eq!(
            (details.kind.as_deref(), details.name.as_deref(), details.group),
            (Some("pods"), Some("web"), None)
        );
    }

    #[test]
    fn attributes_from_request_info() {
        let info =
            RequestInfo::parse(&http::Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/web/scale", "");
        let attrs = Attributes::from_request(alice(), &info);
        assert_eq!(attrs, {
            let mut want = Attributes::resource(alice(), "patch", "apps", "deployments/scale", "a", "web");
            want.api_version = "v1".into();
            want.path = "/apis/apps/v1/namespaces/a/deployments/web/scale".into();
            want
        });
        let decision = AlwaysAllow.authorize(&attrs);
        assert!(decision.is_allowed());
        assert_eq!(Decision::deny("no").reason(), "no");
    }
}
