//! The store's error type.

use serde::{Deserialize, Serialize};

use super::types::{LeaseId, Revision};

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// Errors are serializable so a member can return them to another member that forwarded the
/// request; every variant says what was wrong with which input, and a request that fails
/// changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as a path (`put.key`, `txn.success[2].put.value`).
        field: String,
        /// What is wrong with it.
        reason: String,
        /// Which rule it broke, for callers that answer in another protocol's terms.
        #[serde(default)]
        problem: Problem,
    },
    /// The revision asked for has been compacted away.
    #[error("revision {requested} has been compacted; the oldest available is {compact_revision}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point: revisions below it are gone.
        compact_revision: Revision,
    },
    /// The revision asked for is later than the store's current revision.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// No lease has this id (it never existed, expired or was revoked).
    #[error("lease {0:#x} not found")]
    LeaseNotFound(LeaseId),
    /// A lease with this id already exists.
    #[error("lease {0:#x} already exists")]
    LeaseExists(LeaseId),
    /// A put with `ignore_value` or `ignore_lease` named a key that does not exist.
    #[error("key {key:?} not found")]
    KeyNotFound {
        /// The key, lossily decoded as UTF-8.
        key: String,
    },
    /// The store cannot serve the request now (no leader, shutting down); it may be retried.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The request was sent but its outcome is unknown (a write may or may not have been
    /// applied); retrying a non-idempotent write is the caller's decision.
    #[error("request outcome unknown: {reason}")]
    Indeterminate {
        /// Why.
        reason: String,
    },
    /// The store failed internally (disk, codec); the message says doing what.
    #[error("storage failure: {0}")]
    Storage(String),
}

/// The rule an `InvalidArgument` broke.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    /// A key is empty.
    EmptyKey,
    /// A key or value is over its size limit.
    TooLarge,
    /// A transaction has more compares and operations than allowed.
    TooManyOps,
    /// A transaction branch writes the same key twice.
    DuplicateKey,
    /// Any other invalid field.
    #[default]
    Other,
}

impl Error {
    /// An `InvalidArgument` for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::invalid_as(Problem::Other, field, reason)
    }

    /// An `InvalidArgument` for `field` that broke rule `problem`.
    pub fn invalid_as(problem: Problem, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { field: field.into(), reason: reason.into(), problem }
    }

    /// Whether the same request may succeed if sent again later, unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
