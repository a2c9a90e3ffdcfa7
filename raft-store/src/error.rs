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
    /// The data directory belongs to another member: opening it as this one would vote and
    /// acknowledge writes in that member's name.
    #[error(
        "{path} holds the data of member {stored}, not of member {configured}: start member \
         {stored} from it, or give member {configured} a data directory of its own"
    )]
    WrongMember {
        /// The data directory.
        path: PathBuf,
        /// The member id recorded in it.
        stored: u64,
        /// The id the member was configured with.
        configured: u64,
    },
    /// raft failed to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
}
