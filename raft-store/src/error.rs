//! Why a member could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::db::DbError;

/// Why [`RaftStore::open`](crate::RaftStore::open) failed. A member with corrupt or
/// unknown-format data refuses to start with [`OpenError::Db`], naming the file and record.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database is unusable.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The member transport could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The raft configuration is invalid.
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// raft failed to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
}
