//! Authentication and authorization of every request, and the review endpoints that report
//! on them (`kubectl auth can-i`, `kubectl auth whoami`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;

use super::respond::{self, StatusBody};
use super::{Error, Result, Shared};
use super::{body, protobuf};
use crate::auth::{
    AlwaysAllow, Attributes, Authenticator, Authorizer, Decision, RequestInfo, UserInfo, forbidden_status,
    rbac, review,
};
use crate::tls::PeerCertificate;

/// Who may do what: the authenticator and authorizer an [`ApiServer`](super::ApiServer)
/// checks every request with.
#[derive(Clone)]
pub struct Security {
    /// Finds the user of a request (client certificate, bearer token, anonymous).
    pub authenticator: Arc<Authenticator>,
    /// Decides whether the user may make the request.
    pub authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").finish_non_exhaustive()
    }
}

/// The user a server without [`Security`] serves every request as (it allows everything).
fn unsecured_user() -> UserInfo {
    UserInfo::new("system:admin", ["system:masters", "system:authenticated"])
}

/// Authenticates and authorizes a request; the request continues with its [`Attributes`]
/// as an extension (handlers use them for node admission and reviews).
pub(crate) async fn check(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let info = match req.extensions().get::<RequestInfo>() {
        Some(info) => info.clone(),
        None => RequestInfo::parse(req.method(), req.uri().path(), req.uri().query().unwrap_or_default()),
    };
    let Some(security) = &shared.security else {
        req.extensions_mut().insert(Attributes::from_request(unsecured_user(), &info));
        return next.run(req).await;
    };
    let cert = req.extensions().get::<PeerCertificate>();
    let cert = cert.map(|c| (c.common_name.as_str(), c.organizations.as_slice()));
    let user = match security.authenticator.authenticate(req.headers(), cert).await {
        Ok(Some(user)) => user,
        Ok(None) => return Error::Unauthorized("Unauthorized".into()).into_response(),
        Err(e) => {
            tracing::debug!(error = %e, path = %req.uri().path(), "authentication failed");
            return Error::Unauthorized("Unauthorized".into()).into_response();
        }
    };
    let attrs = Attributes::from_request(user, &info);
    if let Decision::Deny { reason } = security.authorizer.authorize(&attrs) {
        let status = forbidden_status(&attrs, &reason);
        return respond::json(StatusCode::FORBIDDEN, &StatusBody(status), &[]);
    }
    req.extensions_mut().insert(attrs);
    next.run(req).await
}

/// Refuses a node credential creating a Node or Lease of another name (Kubernetes'
/// NodeRestriction admission; the name is only known from the body).
pub(crate) fn admit_create(attrs: Option<&Attributes>, name: &str) -> Result<()> {
    match attrs {
        Some(a) => rbac::node::node_create_admission(a, name).map_err(Error::Forbidden),
        None => Ok(()),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the caller do this?
pub(crate) fn self_subject_access_review(
    shared: &Shared,
    attrs: Option<&Attributes>,
    bytes: &[u8],
    headers: &http::HeaderMap,
) -> Result<Response> {
    let user = attrs.map(|a| a.user.clone()).unwrap_or_else(unsecured_user);
    let content_type =
        headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let review: SelfSubjectAccessReview = if protobuf::is_protobuf(content_type) {
        serde_json::from_value(protobuf::self_subject_access_review(bytes)?)
            .map_err(|e| Error::BadRequest(format!("SelfSubjectAccessReview: {e}")))?
    } else {
        body::document(bytes, body::format(headers)?, "SelfSubjectAccessReview")?
    };
    let authorizer: &dyn Authorizer = match &shared.security {
        Some(s) => s.authorizer.as_ref(),
        None => &AlwaysAllow,
    };
    let answered = review::self_subject_access_review(authorizer, &user, review).map_err(|e| match e {
        review::Error::Invalid { .. } => Error::Invalid(e.to_string()),
        review::Error::BadRequest { message } => Error::BadRequest(message),
    })?;
    let mut v = serde_json::to_value(&answered).map_err(|e| Error::Internal(e.to_string()))?;
    v["kind"] = "SelfSubjectAccessReview".into();
    v["apiVersion"] = "authorization.k8s.io/v1".into();
    Ok(respond::json(StatusCode::CREATED, &v, &[]))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who am I?
pub(crate) fn self_subject_review(attrs: Option<&Attributes>) -> Result<Response> {
    let user = attrs.map(|a| a.user.clone()).unwrap_or_else(unsecured_user);
    let mut v = serde_json::to_value(review::self_subject_review(&user))
        .map_err(|e| Error::Internal(e.to_string()))?;
    v["kind"] = "SelfSubjectReview".into();
    v["apiVersion"] = "authentication.k8s.io/v1".into();
    Ok(respond::json(StatusCode::CREATED, &v, &[]))
}
