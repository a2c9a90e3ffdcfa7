//! `POST serviceaccounts/<name>/token`: the TokenRequest subresource (what `kubectl create
//! token` calls), with kube-apiserver's semantics (`pkg/registry/core/serviceaccount/storage`):
//!
//! - the body is an `authentication.k8s.io/v1` TokenRequest; its `metadata.name`,
//!   `namespace` and `uid`, when given, must be the ServiceAccount's (422, 409 for the uid);
//! - the ServiceAccount must exist (404); its uid goes into the token;
//! - `spec.audiences` defaults to the server's own, `spec.expirationSeconds` to an hour, and
//!   must lie between 10 minutes and 2^32 seconds (422 naming the field; no server maximum);
//! - `spec.boundObjectRef` binds the token to a Pod or Secret of the namespace or to a Node:
//!   it must exist (404), have the uid given (409), and a pod must run as this ServiceAccount
//!   (400); a pod's node is named in the token too;
//! - the answer (201) echoes the request with the defaults filled, the ServiceAccount's name,
//!   namespace and uid, the creation time, and `status.token` and `status.expirationTimestamp`.
//!
//! As in Kubernetes, `dryRun=All` is accepted and still issues a token: nothing is stored
//! either way. A server without a signing key (the bare router) answers 501.

use std::sync::Arc;
use std::time::SystemTime;

use axum::response::Response;
use flotilla_core::object::{DynamicObject, Resource, ResourceType};
use flotilla_core::registry::{self, GetOptions};
use flotilla_core::validation::{ErrorList, FieldError, FieldPath};
use http::StatusCode;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::resources::Request;
use super::{Error, Result, Shared, body, respond};
use crate::auth::authn::{ObjectRef, ServiceAccountTokenSpec, TokenIssuer};

/// `spec.expirationSeconds` when the request leaves it out (Kubernetes' v1 default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a token may be asked for.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime a token may be asked for.
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The API version of TokenRequests.
const API_VERSION: &str = "authentication.k8s.io/v1";
/// The group-qualified kind, as validation errors name it.
const GROUP_KIND: &str = "TokenRequest.authentication.k8s.io";
/// The ServiceAccount of pods that name none (what Kubernetes' ServiceAccount admission
/// would have set).
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What the TokenRequest subresource signs with: the ServiceAccount key and the audiences
/// tokens get when the request names none (the server's own, which its authenticator
/// accepts).
#[derive(Clone, Debug)]
pub struct ServiceAccountTokens {
    /// Signs the tokens; the server's ServiceAccount authenticator must trust its key.
    pub issuer: Arc<TokenIssuer>,
    /// `spec.audiences` when the request leaves it empty.
    pub audiences: Vec<String>,
}

/// The objects a token is bound to, as its claims name them.
#[derive(Debug, Default)]
struct Bindings {
    pod: Option<ObjectRef>,
    secret: Option<ObjectRef>,
    node: Option<ObjectRef>,
}

/// `POST serviceaccounts/<name>/token`.
pub(crate) async fn create(shared: &Shared, req: &Request) -> Result<Response> {
    let Some(tokens) = &shared.config.service_account_tokens else {
        return Err(Error::NotImplemented(
            "serviceaccounts/token is not available: this server has no service account signing key".into(),
        ));
    };
    // Checked for bad values (400); a dry run changes nothing here, as nothing is stored.
    req.query.write_options()?;
    let namespace = req.namespace().unwrap_or_default().to_string();
    let name = req.name().to_string();
    let mut tr = decode(req)?;
    check_name_and_namespace(&tr, &name, &namespace)?;

    let sa = shared.registry.get(&req.t, Some(&namespace), &name, &GetOptions::default()).await?;
    match tr.metadata.uid.as_deref() {
        None | Some("") => tr.metadata.uid = Some(sa.uid().to_string()),
        Some(uid) if uid == sa.uid() => {}
        Some(uid) => {
            return Err(conflict(
                GROUP_KIND,
                &name,
                format!(
                    "the UID in the token request ({uid}) does not match the UID of the service account ({})",
                    sa.uid()
                ),
            ));
        }
    }
    if tr.spec.audiences.is_empty() {
        tr.spec.audiences = tokens.audiences.clone();
    }
    tr.metadata.name = Some(name.clone());
    tr.metadata.namespace = Some(namespace.clone());
    let now = SystemTime::now();
    let now_ts = Timestamp::try_from(now).map_err(|e| Error::Internal(format!("the clock: {e}")))?;
    tr.metadata.creation_timestamp = Some(Time(now_ts));
    let expiration = *tr.spec.expiration_seconds.get_or_insert(DEFAULT_EXPIRATION_SECONDS);
    validate_expiration(expiration)?;

    let bindings = match &tr.spec.bound_object_ref {
        Some(r) => bind(shared, r, &name, &namespace).await?,
        None => Bindings::default(),
    };
    let spec = ServiceAccountTokenSpec {
        namespace,
        name,
        uid: sa.uid().to_string(),
        audiences: tr.spec.audiences.clone(),
        expiration_seconds: expiration,
        pod: bindings.pod,
        secret: bindings.secret,
        node: bindings.node,
    };
    let token = tokens
        .issuer
        .issue(&spec, now)
        .map_err(|e| Error::Internal(format!("failed to generate token: {e}")))?;
    let expires = now_ts
        .checked_add(SignedDuration::from_secs(expiration))
        .map_err(|e| Error::Internal(format!("expiration time: {e}")))?;
    tr.status = Some(TokenRequestStatus { token, expiration_timestamp: Time(expires) });
    Ok(respond::json(StatusCode::CREATED, &tr, &[]))
}

/// The TokenRequest in the body; a status sent along is dropped, as Kubernetes clears it.
fn decode(req: &Request) -> Result<TokenRequest> {
    let mut v: Value = body::document(&req.body, req.format()?, "TokenRequest")?;
    let Value::Object(map) = &mut v else {
        return Err(Error::BadRequest("the request body is not a TokenRequest object".into()));
    };
    if let Some(av) = map.get("apiVersion").and_then(Value::as_str).filter(|a| *a != API_VERSION) {
        return Err(Error::BadRequest(format!(
            "the API version in the data ({av}) does not match the expected API version ({API_VERSION})"
        )));
    }
    if let Some(kind) = map.get("kind").and_then(Value::as_str).filter(|k| *k != "TokenRequest") {
        return Err(Error::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (TokenRequest)"
        )));
    }
    map.remove("apiVersion");
    map.remove("kind");
    map.remove("status");
    serde_json::from_value(v)
        .map_err(|e| Error::BadRequest(format!("the request body is not a valid TokenRequest: {e}")))
}

/// A name or namespace in the body must be the ServiceAccount's (422).
fn check_name_and_namespace(tr: &TokenRequest, name: &str, namespace: &str) -> Result<()> {
    let mut errors = ErrorList::new();
    let meta = FieldPath::new("metadata");
    if let Some(n) = tr.metadata.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        errors.push(FieldError::invalid(
            meta.child("name"),
            n,
            "must match the service account name if specified",
        ));
    }
    if let Some(ns) = tr.metadata.namespace.as_deref().filter(|ns| !ns.is_empty() && *ns != namespace) {
        errors.push(FieldError::invalid(
            meta.child("namespace"),
            ns,
            "must match the service account namespace if specified",
        ));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(registry::Error::Invalid { kind: GROUP_KIND.into(), name: name.into(), errors }.into())
}

/// Kubernetes' limits on a token's lifetime (422 naming `spec.expirationSeconds`).
fn validate_expiration(seconds: i64) -> Result<()> {
    let detail = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    let path = FieldPath::new("spec").child("expirationSeconds");
    let errors = ErrorList::from(FieldError::invalid(path, seconds, detail));
    Err(registry::Error::Invalid { kind: GROUP_KIND.into(), name: String::new(), errors }.into())
}

/// A 409 Conflict on `resource` (Kubernetes names bound objects by kind: `Pod`).
fn conflict(resource: &str, name: &str, reason: String) -> Error {
    registry::Error::Conflict { resource: resource.into(), name: name.into(), reason }.into()
}

/// The group of an `apiVersion`, as Kubernetes reads it (`v1` and unparseable ones: core).
fn group_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, version)) if !version.contains('/') => group,
        _ => "",
    }
}

/// Looks up the object a token is to be bound to and names it (and a pod's node).
async fn bind(shared: &Shared, r: &BoundObjectReference, sa_name: &str, namespace: &str) -> Result<Bindings> {
    let api_version = r.api_version.as_deref().unwrap_or_default();
    let kind = r.kind.as_deref().unwrap_or_default();
    let name = r.name.as_deref().unwrap_or_default();
    let group = group_of(api_version);
    if group.is_empty() && matches!(kind, "Pod" | "Secret" | "Node") && name.is_empty() {
        return Err(Error::BadRequest("Name parameter required.".into()));
    }
    let mut out = Bindings::default();
    let object: DynamicObject = match (group, kind) {
        ("", "Pod") => {
            let pod = get(shared, &Pod::TYPE, Some(namespace), name).await?;
            let spec = pod.data.get("spec");
            let pod_sa = spec.and_then(|s| s.get("serviceAccountName")).and_then(Value::as_str);
            if pod_sa.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SERVICE_ACCOUNT) != sa_name {
                return Err(Error::BadRequest(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            let node = spec.and_then(|s| s.get("nodeName")).and_then(Value::as_str).filter(|n| !n.is_empty());
            if let Some(node) = node {
                out.node = Some(node_of_pod(shared, node).await?);
            }
            out.pod = Some(ObjectRef { name: name.into(), uid: pod.uid().into() });
            pod
        }
        ("", "Secret") => {
            let secret = get(shared, &Secret::TYPE, Some(namespace), name).await?;
            out.secret = Some(ObjectRef { name: name.into(), uid: secret.uid().into() });
            secret
        }
        ("", "Node") => {
            let node = get(shared, &Node::TYPE, None, name).await?;
            out.node = Some(ObjectRef { name: name.into(), uid: node.uid().into() });
            node
        }
        _ => {
            let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
            return Err(Error::BadRequest(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty() && *u != object.uid()) {
        return Err(conflict(
            kind,
            name,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(out)
}

/// One object the token is to be bound to.
async fn get(shared: &Shared, t: &ResourceType, ns: Option<&str>, name: &str) -> Result<DynamicObject> {
    Ok(shared.registry.get(t, ns, name, &GetOptions::default()).await?)
}

/// The node a bound pod runs on; a node that is gone is still named, without a uid.
async fn node_of_pod(shared: &Shared, node: &str) -> Result<ObjectRef> {
    match shared.registry.get(&Node::TYPE, None, node, &GetOptions::default()).await {
        Ok(n) => Ok(ObjectRef { name: node.into(), uid: n.uid().into() }),
        Err(registry::Error::NotFound { .. }) => Ok(ObjectRef { name: node.into(), uid: String::new() }),
        Err(e) => Err(Error::Internal(format!("reading node {node} of the bound pod: {e}"))),
    }
}

#[cfg(test)]
mod tests;
