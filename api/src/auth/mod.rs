//! Authentication and authorization, with kube-apiserver's semantics.
//!
//! A request goes through three steps:
//!
//! 1. [`RequestInfo::parse`] reads what it asks for from the method, path and query (verb,
//!    namespace, resource, subresource, name; or a non-resource path).
//! 2. [`Authenticator::authenticate`] finds who sent it ([`UserInfo`]): a verified client
//!    certificate, a static or run-time bearer token, or a ServiceAccount JWT ([`authn`]).
//! 3. An [`Authorizer`] decides on the [`Attributes`] built from both: [`RbacAuthorizer`]
//!    (RBAC, the node rules and the `system:masters` superuser group, see [`rbac`]) or
//!    [`AlwaysAllow`]. A refusal is answered with [`forbidden_status`].
//!
//! [`review`] answers the review APIs (`kubectl auth can-i`, `kubectl auth whoami`) from the
//! same decisions, and [`rbac::bootstrap_policy`] is the RBAC policy a new cluster starts with.

pub mod authn;
mod authorizer;
pub mod rbac;
mod request_info;
pub mod review;

pub use authn::{Authenticator, AuthenticatorConfig, StaticTokens, TokenIssuer, UserInfo};
pub use authorizer::{
    AlwaysAllow, Attributes, Authorizer, Decision, forbidden_message, forbidden_status,
    forbidden_status_message,
};
pub use rbac::RbacAuthorizer;
pub use request_info::RequestInfo;
