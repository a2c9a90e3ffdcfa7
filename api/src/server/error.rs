//! The API server's error: the registry's errors plus what only HTTP can get wrong. Every
//! variant becomes a Kubernetes `Status` with its HTTP code.

use flotilla_core::registry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry refused or failed the operation.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such path or resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource does not support the method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The response cannot be given in any media type the client accepts (406).
    #[error("only application/json (and its Table form) is served; the request accepts {0}")]
    NotAcceptable(String),
    /// The body's media type is not one the request takes (415).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (patches: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml); got {0:?}"
    )]
    UnsupportedMediaType(String),
    /// The body is larger than the server takes (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Too many requests in flight (429, with `Retry-After`).
    #[error("too many requests, please try again later")]
    TooManyRequests {
        /// When to retry.
        retry_after_seconds: u64,
    },
    /// A review or other non-object request failed validation (422).
    #[error("{0}")]
    Invalid(String),
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The operation is not available (501).
    #[error("{0}")]
    NotImplemented(String),
    /// A failure inside the server (500).
    #[error("{0}")]
    Internal(String),
    /// Something the server depends on (a node agent) cannot be reached (503).
    #[error("{0}")]
    ServiceUnavailable(String),
}

/// The API server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Error::Registry(e) => e.code(),
            Error::BadRequest(_) => 400,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::NotAcceptable(_) => 406,
            Error::UnsupportedMediaType(_) => 415,
            Error::PayloadTooLarge { .. } => 413,
            Error::TooManyRequests { .. } => 429,
            Error::Invalid(_) => 422,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotImplemented(_) => 501,
            Error::Internal(_) => 500,
            Error::ServiceUnavailable(_) => 503,
        }
    }

    /// This error as a Kubernetes `Status`.
    pub fn to_status(&self) -> Status {
        let reason = match self {
            Error::Registry(e) => return e.to_status(),
            Error::BadRequest(_) => "BadRequest",
            Error::NotFound(_) => "NotFound",
            Error::MethodNotAllowed(_) => "MethodNotAllowed",
            Error::NotAcceptable(_) => "NotAcceptable",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::PayloadTooLarge { .. } => "RequestEntityTooLarge",
            Error::TooManyRequests { .. } => "TooManyRequests",
            Error::Invalid(_) => "Invalid",
            Error::Unauthorized(_) => "Unauthorized",
            Error::Forbidden(_) => "Forbidden",
            Error::NotImplemented(_) => "NotImplemented",
            Error::Internal(_) => "InternalError",
            Error::ServiceUnavailable(_) => "ServiceUnavailable",
        };
        let details = match self {
            Error::TooManyRequests { retry_after_seconds } => Some(StatusDetails {
                retry_after_seconds: i32::try_from(*retry_after_seconds).ok(),
                ..Default::default()
            }),
            _ => None,
        };
        Status {
            code: Some(i32::from(self.code())),
            details,
            message: Some(self.to_string()),
            metadata: Default::default(),
            reason: Some(reason.to_string()),
            status: Some("Failure".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        for (e, code, reason) in [
            (Error::PayloadTooLarge { limit: 10 }, 413, "RequestEntityTooLarge"),
            (Error::UnsupportedMediaType("text/plain".into()), 415, "UnsupportedMediaType"),
            (Error::TooManyRequests { retry_after_seconds: 1 }, 429, "TooManyRequests"),
            (
                Error::Registry(registry::Error::NotFound { resource: "pods".into(), name: "x".into() }),
                404,
                "NotFound",
            ),
        ] {
            let s = e.to_status();
            assert_eq!((s.code, s.reason.as_deref()), (Some(code), Some(reason)), "{e}");
        }
    }
}
