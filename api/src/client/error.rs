//! Why a [`RemoteClient`](super::RemoteClient) could not be built. Failures of the calls
//! themselves are core's [`registry::Error`](flotilla_core::registry::Error), as for every
//! other `Client`.

use std::path::PathBuf;

/// A client configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or its current context resolved.
    #[error("loading kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::kubeconfig::Error,
    },
    /// The server URL is not `http://` or `https://`, or has no host.
    #[error("server {server} must be an http:// or https:// URL with a host")]
    UnsupportedServer {
        /// The URL as configured.
        server: String,
    },
    /// A failover server cannot stand in for the first one.
    #[error("failover server {server}: {reason}")]
    Failover {
        /// The failover URL as configured.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `https://` server without a CA to verify it against (and not `insecure`).
    #[error("no CA certificate to verify server {server} with: set a CA bundle or insecure")]
    NoTrustAnchors {
        /// The URL as configured.
        server: String,
    },
    /// A PEM input could not be read.
    #[error("reading the {what} PEM")]
    Pem {
        /// `CA bundle`, `client certificate`, `client key`.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM input holds no certificate.
    #[error("the {what} PEM holds no certificate")]
    EmptyPem {
        /// `CA bundle`, `client certificate`.
        what: &'static str,
    },
    /// rustls refused a certificate, a key or the configuration.
    #[error("building the TLS client configuration")]
    Tls(#[source] rustls::Error),
    /// The name to verify the server's certificate against is not a DNS name or IP address.
    #[error("TLS server name {name:?} is not a valid DNS name or IP address")]
    ServerName {
        /// The name as configured.
        name: String,
    },
    /// A value that goes into a header (the token, the user agent) is not a valid header value.
    #[error("the {what} is not a valid HTTP header value")]
    Header {
        /// `bearer token`, `user agent`.
        what: &'static str,
    },
}

/// Result of building a client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
