//! The review APIs, as pure functions over an [`Authorizer`] (or an [`RbacSnapshot`]):
//! `SelfSubjectAccessReview` (`kubectl auth can-i`), `SubjectAccessReview`,
//! `SelfSubjectRulesReview` (`kubectl auth can-i --list`) and `SelfSubjectReview`
//! (`kubectl auth whoami`). Each takes the decoded request and returns it with its status
//! filled, or the errors kube-apiserver would answer.

use flotilla_core::validation::{ErrorList, FieldError, FieldPath};
use k8s_openapi::api::authentication::v1 as authn_api;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, NonResourceRule, ResourceAttributes, ResourceRule, SelfSubjectAccessReview,
    SelfSubjectRulesReview, SubjectAccessReview, SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::authn::{SYSTEM_PRIVILEGED_GROUP, UserInfo};
use super::authorizer::{Attributes, Authorizer};
use super::rbac::RbacSnapshot;
use super::rbac::node::node_identity;

/// Why a review request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The review fails validation (HTTP 422).
    #[error("{kind}.authorization.k8s.io \"\" is invalid: {errors}")]
    Invalid {
        /// The review's kind.
        kind: &'static str,
        /// What is wrong, by field.
        errors: ErrorList,
    },
    /// The request cannot be served as sent (HTTP 400).
    #[error("{message}")]
    BadRequest {
        /// Why.
        message: String,
    },
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kubernetes' spec check: exactly one of the two attribute kinds.
fn check_attributes(
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
    errors: &mut ErrorList,
) {
    let spec = FieldPath::new("spec");
    let json = |v: Option<&NonResourceAttributes>| serde_json::to_value(v).unwrap_or_default();
    if resource.is_some() && non_resource.is_some() {
        errors.push(FieldError::invalid(
            spec.child("nonResourceAttributes"),
            json(non_resource),
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if resource.is_none() && non_resource.is_none() {
        errors.push(FieldError::invalid(
            spec.child("resourceAttributes"),
            json(non_resource),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
}

/// Metadata must be empty (managed fields aside).
fn check_metadata(metadata: &ObjectMeta, errors: &mut ErrorList) {
    let mut shallow = metadata.clone();
    shallow.managed_fields = None;
    if shallow != ObjectMeta::default() {
        let value = serde_json::to_value(metadata).unwrap_or_default();
        errors.push(FieldError::invalid(FieldPath::new("metadata"), value, "must be empty"));
    }
}

/// The attributes a review asks about, for `user` (Kubernetes' `ResourceAttributesFrom` and
/// `NonResourceAttributesFrom`).
fn attributes_of(
    user: UserInfo,
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Attributes {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    match (resource, non_resource) {
        (Some(r), _) => Attributes {
            user,
            verb: s(&r.verb),
            namespace: s(&r.namespace),
            api_group: s(&r.group),
            api_version: r.version.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| "*".into()),
            resource: s(&r.resource),
            subresource: s(&r.subresource),
            name: s(&r.name),
            path: String::new(),
            resource_request: true,
        },
        (None, Some(n)) => Attributes::non_resource(user, &s(&n.verb), &s(&n.path)),
        (None, None) => Attributes { user, ..Default::default() },
    }
}

fn status_of(authorizer: &dyn Authorizer, attrs: &Attributes) -> SubjectAccessReviewStatus {
    let decision = authorizer.authorize(attrs);
    SubjectAccessReviewStatus {
        allowed: decision.is_allowed(),
        // Only an explicit deny sets `denied`; RBAC only ever has no opinion.
        denied: None,
        evaluation_error: None,
        reason: Some(decision.reason().to_string()).filter(|r| !r.is_empty()),
    }
}

/// Answers a `SelfSubjectAccessReview` sent by `user`: may I do this?
///
/// ```
/// use flotilla_api::auth::{AlwaysAllow, UserInfo, review};
/// use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
///
/// let sent: SelfSubjectAccessReview = serde_json::from_str(r#"{
///     "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
///     "metadata": {"creationTimestamp": null},
///     "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
///     "status": {"allowed": false}
/// }"#)?;
/// let answered = review::self_subject_access_review(&AlwaysAllow, &UserInfo::new("alice", ["dev"]), sent)?;
/// assert!(answered.status.expect("filled").allowed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn self_subject_access_review(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    mut review: SelfSubjectAccessReview,
) -> Result<SelfSubjectAccessReview> {
    let (resource, non_resource) =
        (review.spec.resource_attributes.as_ref(), review.spec.non_resource_attributes.as_ref());
    let mut errors = ErrorList::new();
    check_attributes(resource, non_resource, &mut errors);
    check_metadata(&review.metadata, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Invalid { kind: "SelfSubjectAccessReview", errors });
    }
    let attrs = attributes_of(user.clone(), resource, non_resource);
    review.status = Some(status_of(authorizer, &attrs));
    Ok(review)
}

/// Answers a `SubjectAccessReview`: may the user the spec describes do this?
pub fn subject_access_review(
    authorizer: &dyn Authorizer,
    mut review: SubjectAccessReview,
) -> Result<SubjectAccessReview> {
    let spec = &review.spec;
    let (resource, non_resource) = (spec.resource_attributes.as_ref(), spec.non_resource_attributes.as_ref());
    let mut errors = ErrorList::new();
    check_attributes(resource, non_resource, &mut errors);
    let user_name = spec.user.clone().unwrap_or_default();
    let groups = spec.groups.clone().unwrap_or_default();
    if user_name.is_empty() && groups.is_empty() {
        errors.push(FieldError::invalid(
            FieldPath::new("spec").child("user"),
            user_name.clone(),
            "at least one of user or group must be specified",
        ));
    }
    check_metadata(&review.metadata, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Invalid { kind: "SubjectAccessReview", errors });
    }
    let user = UserInfo {
        name: user_name,
        uid: spec.uid.clone().unwrap_or_default(),
        groups,
        extra: spec.extra.clone().unwrap_or_default(),
    };
    let attrs = attributes_of(user, resource, non_resource);
    review.status = Some(status_of(authorizer, &attrs));
    Ok(review)
}

/// Answers a `SelfSubjectRulesReview` sent by `user`: what may I do in the spec's namespace?
/// Node identities get `incomplete` (their rules depend on the objects), as in Kubernetes.
pub fn self_subject_rules_review(
    snapshot: &RbacSnapshot,
    user: &UserInfo,
    mut review: SelfSubjectRulesReview,
) -> Result<SelfSubjectRulesReview> {
    let namespace = review.spec.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        return Err(Error::BadRequest { message: "no namespace on request".into() });
    }
    let mut status = SubjectRulesReviewStatus::default();
    let mut errors = Vec::new();
    if user.in_group(SYSTEM_PRIVILEGED_GROUP) {
        let all = || Some(vec!["*".to_string()]);
        status.resource_rules.push(ResourceRule {
            verbs: vec!["*".into()],
            api_groups: all(),
            resources: all(),
            resource_names: None,
        });
        status.non_resource_rules.push(NonResourceRule { verbs: vec!["*".into()], non_resource_urls: all() });
    }
    if node_identity(user).is_some() {
        status.incomplete = true;
        errors.push("node authorizer does not support user rule resolution".to_string());
    }
    let (rules, rbac_errors) = snapshot.rules_for(user, &namespace);
    for rule in rules {
        if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
            status.resource_rules.push(ResourceRule {
                verbs: rule.verbs.clone(),
                api_groups: rule.api_groups.clone(),
                resources: rule.resources.clone(),
                resource_names: rule.resource_names.clone(),
            });
        }
        if rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            status
                .non_resource_rules
                .push(NonResourceRule { verbs: rule.verbs, non_resource_urls: rule.non_resource_urls });
        }
    }
    errors.extend(rbac_errors);
    if !errors.is_empty() {
        status.evaluation_error = Some(match errors.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        });
    }
    review.status = Some(status);
    Ok(review)
}

/// Answers a `SelfSubjectReview` (`kubectl auth whoami`): the requesting user's attributes.
pub fn self_subject_review(user: &UserInfo) -> authn_api::SelfSubjectReview {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    authn_api::SelfSubjectReview {
        metadata: ObjectMeta::default(),
        status: Some(authn_api::SelfSubjectReviewStatus {
            user_info: Some(authn_api::UserInfo {
                username: some(&user.name),
                uid: some(&user.uid),
                groups: Some(user.groups.clone()).filter(|g| !g.is_empty()),
                extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authorization::v1::{
        SelfSubjectAccessReviewSpec, SelfSubjectRulesReviewSpec, SubjectAccessReviewSpec,
    };
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    use super::*;
    use crate::auth::authorizer::Decision;
    use crate::auth::rbac::{authorize, bootstrap_policy};

    /// Allows only `list pods` in `default` and `get /healthz`, and says why.
    struct Fixed;

    impl Authorizer for Fixed {
        fn authorize(&self, a: &Attributes) -> Decision {
            let ok =
                (a.resource_request && a.verb == "list" && a.resource == "pods" && a.namespace == "default")
                    || (!a.resource_request && a.verb == "get" && a.path == "/healthz");
            if ok { Decision::allow(format!("ok for {}", a.user.name)) } else { Decision::deny("") }
        }
    }

    fn alice() -> UserInfo {
        UserInfo::new("alice", ["dev"])
    }

    /// Exactly what `kubectl auth can-i list pods` sends.
    const KUBECTL_CAN_I: &str = r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}},"status":{"allowed":false}}"#;

    #[test]
    fn kubectl_can_i() {
        let sent: SelfSubjectAccessReview =
            serde_json::from_str(KUBECTL_CAN_I).expect("kubectl's JSON decodes");
        let answered = self_subject_access_review(&Fixed, &alice(), sent.clone()).expect("valid");
        let status = answered.status.clone().expect("status");
        assert!(status.allowed);
        assert_eq!(status.reason.as_deref(), Some("ok for alice"));
        assert_eq!(answered.spec, sent.spec, "the spec is echoed");
        let json = serde_json::to_value(&answered).expect("encodes");
        assert_eq!(json["status"], serde_json::json!({"allowed": true, "reason": "ok for alice"}));
        assert_eq!(json["apiVersion"], "authorization.k8s.io/v1");

        let mut other_ns = sent;
        if let Some(r) = other_ns.spec.resource_attributes.as_mut() {
            r.namespace = Some("prod".into());
        }
        let status =
            self_subject_access_review(&Fixed, &alice(), other_ns).expect("valid").status.expect("status");
        assert_eq!((status.allowed, status.reason, status.denied), (false, None, None));

        let non_resource = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/healthz".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let status = self_subject_access_review(&Fixed, &alice(), non_resource)
            .expect("valid")
            .status
            .expect("status");
        assert!(status.allowed);
    }

    #[test]
    fn invalid_reviews() {
        let none = SelfSubjectAccessReview::default();
        let err = self_subject_access_review(&Fixed, &alice(), none).expect_err("no attributes");
        assert_eq!(
            err.to_string(),
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: null: \
             exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let both = SelfSubjectAccessReview {
            metadata: ObjectMeta { name: Some("x".into()), ..Default::default() },
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes::default()),
                non_resource_attributes: Some(NonResourceAttributes::default()),
            },
            ..Default::default()
        };
        match self_subject_access_review(&Fixed, &alice(), both).expect_err("both") {
            Error::Invalid { errors, .. } => {
                let paths: Vec<String> = errors.iter().map(|e| e.path.to_string()).collect();
                assert_eq!(paths, ["spec.nonResourceAttributes", "metadata"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let nobody = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes::default()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = subject_access_review(&Fixed, nobody).expect_err("no user");
        assert!(
            err.to_string()
                .contains("spec.user: Invalid value: \"\": at least one of user or group must be specified")
        );
    }

    #[test]
    fn subject_access_review_uses_the_spec_user() {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("bob".into()),
                groups: Some(vec!["ops".into()]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("default".into()),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let status = subject_access_review(&Fixed, review).expect("valid").status.expect("status");
        assert_eq!((status.allowed, status.reason.as_deref()), (true, Some("ok for bob")));
    }

    #[test]
    fn rules_review() {
        let p = bootstrap_policy();
        let s = RbacSnapshot::new(
            Vec::<Role>::new(),
            p.cluster_roles.into_iter().collect::<Vec<ClusterRole>>(),
            Vec::<RoleBinding>::new(),
            p.cluster_role_bindings.into_iter().collect::<Vec<ClusterRoleBinding>>(),
        );
        let review = |ns: &str| SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec { namespace: Some(ns.to_string()).filter(|n| !n.is_empty()) },
            ..Default::default()
        };
        let user = UserInfo::new("alice", ["system:authenticated"]);
        let status =
            self_subject_rules_review(&s, &user, review("default")).expect("ok").status.expect("status");
        assert!(!status.incomplete);
        assert!(status.resource_rules.iter().any(|r| r.resources.as_deref()
            == Some(&["selfsubjectaccessreviews".to_string(), "selfsubjectrulesreviews".to_string()][..])));
        assert!(
            status
                .non_resource_rules
                .iter()
                .any(|r| r.non_resource_urls.as_ref().is_some_and(|u| u.contains(&"/healthz".to_string())))
        );
        // Every listed rule really is granted.
        for rule in &status.resource_rules {
            let resource = rule.resources.as_ref().and_then(|r| r.first()).expect("a resource");
            let group = rule.api_groups.as_ref().and_then(|g| g.first()).expect("a group");
            let attrs = Attributes::resource(user.clone(), &rule.verbs[0], group, resource, "default", "");
            assert!(authorize(&s, &attrs).is_allowed(), "{rule:?}");
        }

        let node = UserInfo::new("system:node:n1", ["system:nodes"]);
        let status =
            self_subject_rules_review(&s, &node, review("default")).expect("ok").status.expect("status");
        assert!(status.incomplete);
        assert_eq!(
            status.evaluation_error.as_deref(),
            Some("node authorizer does not support user rule resolution")
        );

        let root = UserInfo::new("root", ["system:masters"]);
        let status =
            self_subject_rules_review(&s, &root, review("default")).expect("ok").status.expect("status");
        assert_eq!(status.resource_rules[0].verbs, ["*"]);

        let err = self_subject_rules_review(&s, &user, review("")).expect_err("no namespace");
        assert_eq!(err.to_string(), "no namespace on request");
    }

    #[test]
    fn whoami() {
        let mut user = UserInfo::new("system:serviceaccount:ns:sa", ["system:serviceaccounts"]);
        user.uid = "u-1".into();
        user.extra.insert("authentication.kubernetes.io/pod-name".into(), vec!["p".into()]);
        let json = serde_json::to_value(self_subject_review(&user)).expect("encodes");
        assert_eq!(json["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(json["kind"], "SelfSubjectReview");
        assert_eq!(json["status"]["userInfo"]["username"], "system:serviceaccount:ns:sa");
        assert_eq!(json["status"]["userInfo"]["uid"], "u-1");
        assert_eq!(json["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"][0], "p");
    }
}
