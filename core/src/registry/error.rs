//! The registry's error: each variant is one Kubernetes `Status` reason, with the HTTP code
//! and message the API server sends.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use crate::object::ResourceType;
use crate::store;
use crate::validation::ErrorList;

/// `pods` for the core group, `deployments.apps` otherwise: how Kubernetes names a resource
/// in messages.
pub(crate) fn qualified(t: &ResourceType) -> String {
    if t.group.is_empty() { t.plural.to_string() } else { format!("{}.{}", t.plural, t.group) }
}

/// A failed registry operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The object does not exist (404 NotFound).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object's name.
        name: String,
    },
    /// The resource is not served (404 NotFound).
    #[error("the server could not find the requested resource ({resource})")]
    UnknownResource {
        /// What was asked for.
        resource: String,
    },
    /// An object of that name exists (409 AlreadyExists).
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object's name.
        name: String,
    },
    /// The object changed since the caller read it, or a precondition failed (409 Conflict).
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object's name.
        name: String,
        /// What conflicted.
        reason: String,
    },
    /// The object failed validation (422 Invalid).
    #[error("{kind} \"{name}\" is invalid: {errors}")]
    Invalid {
        /// The kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Every problem, with its field path.
        errors: ErrorList,
    },
    /// The request is malformed (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The request is not allowed in this state (403 Forbidden).
    #[error("{0}")]
    Forbidden(String),
    /// A resourceVersion or continue token older than the retained history (410 Expired).
    #[error("{0}")]
    Expired(String),
    /// The operation did not finish in time (504 Timeout).
    #[error("{0}")]
    Timeout(String),
    /// The store cannot serve now; retry (503 ServiceUnavailable).
    #[error("{0}")]
    Unavailable(String),
    /// A stored object could not be decoded, or another internal failure (500).
    #[error("{0}")]
    Internal(String),
}

/// The registry's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn not_found(t: &ResourceType, name: &str) -> Self {
        Error::NotFound { resource: qualified(t), name: name.to_string() }
    }

    pub(crate) fn conflict(t: &ResourceType, name: &str) -> Self {
        Error::Conflict {
            resource: qualified(t),
            name: name.to_string(),
            reason:
                "the object has been modified; please apply your changes to the latest version and try again"
                    .into(),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Error::NotFound { .. } | Error::UnknownResource { .. } => 404,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => 409,
            Error::Invalid { .. } => 422,
            Error::BadRequest(_) => 400,
            Error::Forbidden(_) => 403,
            Error::Expired(_) => 410,
            Error::Timeout(_) => 504,
            Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The Kubernetes `Status` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound { .. } | Error::UnknownResource { .. } => "NotFound",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } => "Conflict",
            Error::Invalid { .. } => "Invalid",
            Error::BadRequest(_) => "BadRequest",
            Error::Forbidden(_) => "Forbidden",
            Error::Expired(_) => "Expired",
            Error::Timeout(_) => "Timeout",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::Internal(_) => "InternalError",
        }
    }

    /// This error as a Kubernetes `Status` object.
    pub fn to_status(&self) -> Status {
        let (name, group, kind, causes) = match self {
            Error::NotFound { resource, name }
            | Error::AlreadyExists { resource, name }
            | Error::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                (Some(name.clone()), Some(group.to_string()), Some(kind.to_string()), None)
            }
            Error::Invalid { kind, name, errors } => {
                let causes = errors
                    .iter()
                    .map(|e| StatusCause {
                        field: Some(e.path.to_string()),
                        message: Some(e.to_string()),
                        reason: Some(e.kind.cause_type().to_string()),
                    })
                    .collect();
                (Some(name.clone()), None, Some(kind.clone()), Some(causes))
            }
            _ => (None, None, None, None),
        };
        let details = (name.is_some() || kind.is_some()).then_some(StatusDetails {
            name,
            group,
            kind,
            causes,
            retry_after_seconds: None,
            uid: None,
        });
        Status {
            code: Some(i32::from(self.code())),
            details,
            message: Some(self.to_string()),
            metadata: Default::default(),
            reason: Some(self.reason().to_string()),
            status: Some("Failure".into()),
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Compacted { .. } => Error::Expired(format!("too old resource version: {e}")),
            store::Error::FutureRevision { .. } => Error::Timeout(format!("Too large resource version: {e}")),
            store::Error::InvalidArgument { .. } => Error::BadRequest(e.to_string()),
            store::Error::Unavailable { .. } => Error::Unavailable(e.to_string()),
            // Not 503: clients retry a 503 (kube-rs does by default, PUTs included), and a
            // write that may have been applied must not be sent again as if it had not: the
            // retry would fail its own precondition and answer 409 for an applied update.
            // kube-apiserver answers such etcd errors with 500 too.
            store::Error::Indeterminate { .. } => Error::Internal(e.to_string()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_store_that_did_nothing_answers_503() {
        let unavailable = Error::from(store::Error::Unavailable { reason: "no leader".into() });
        assert_eq!(unavailable.code(), 503, "{unavailable:?}");
        let unknown = Error::from(store::Error::Indeterminate { reason: "leader lost".into() });
        assert_eq!((unknown.code(), unknown.reason()), (500, "InternalError"), "{unknown:?}");
        assert!(unknown.to_string().contains("request outcome unknown"), "{unknown}");
    }
}
