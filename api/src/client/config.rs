//! What a [`RemoteClient`](super::RemoteClient) connects to and with: [`ClientConfig`], its
//! [`RetryPolicy`], and the rustls configuration built from them.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use url::Url;

use super::{Error, Result};
use crate::certificates::LiveIdentity;
use crate::kubeconfig::{ClientCertificate, ResolvedContext};

/// The user agent sent when the configuration names none.
pub const DEFAULT_USER_AGENT: &str = concat!("flotilla/", env!("CARGO_PKG_VERSION"));
/// How long one attempt of a request may take when the configuration does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How failed requests are retried.
///
/// Reads (`GET`, and the request that opens a watch) are retried on 429, on 5xx other than
/// 501, and on connection failures. Writes are retried only on 429 (the server refused them
/// before doing anything) and on failures to connect (the request was never sent). A 429's
/// `Retry-After` is honoured; otherwise the delay starts at `initial_backoff`, doubles up to
/// `max_backoff`, and is jittered (each delay is drawn between half of it and all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The delay before the first retry.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// How to reach and authenticate to a Flotilla (or Kubernetes) API server.
#[derive(Clone, PartialEq)]
pub struct ClientConfig {
    /// The server: `https://host:port` (or `http://` for tests), optionally with a path
    /// prefix the API is served under.
    pub server: Url,
    /// Other servers of the same cluster (same CA, same credentials, same path prefix), in
    /// the order to fail over to. Requests go to one server at a time: the client moves to
    /// the next (after the last, back to `server`) when an attempt cannot connect, breaks off
    /// or times out, and stays there while it answers.
    pub failover: Vec<Url>,
    /// The PEM CA bundle the server's certificate must chain to (required for `https://`
    /// unless `insecure`).
    pub ca_pem: Option<Vec<u8>>,
    /// The name to verify the server's certificate against, if not the URL's host.
    pub tls_server_name: Option<String>,
    /// Do not verify the server's certificate at all (kubeconfig's
    /// `insecure-skip-tls-verify`).
    pub insecure: bool,
    /// A client certificate and key (PEM) to authenticate with.
    pub client_certificate: Option<ClientCertificate>,
    /// A client certificate that may change while the client runs (a node's rotated
    /// certificate): each new connection presents the one current then, and sessions are not
    /// resumed (a resumed session would keep the old one). Used instead of
    /// `client_certificate` when set.
    pub client_identity: Option<LiveIdentity>,
    /// A bearer token to authenticate with.
    pub token: Option<String>,
    /// How long one attempt of a request may take, response body included; `None` waits
    /// for ever. For a watch it bounds only the wait for the response's head.
    pub timeout: Option<Duration>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials stay out of logs.
        f.debug_struct("ClientConfig")
            .field("server", &self.server.as_str())
            .field("failover", &self.failover.iter().map(Url::as_str).collect::<Vec<_>>())
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("tls_server_name", &self.tls_server_name)
            .field("insecure", &self.insecure)
            .field("client_certificate", &self.client_certificate.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .field("token", &self.token.is_some())
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientConfig {
    /// An anonymous client of `server` with the defaults: no CA, no credentials,
    /// [`DEFAULT_TIMEOUT`], [`DEFAULT_USER_AGENT`], the default [`RetryPolicy`].
    pub fn new(server: Url) -> Self {
        ClientConfig {
            server,
            failover: Vec::new(),
            ca_pem: None,
            tls_server_name: None,
            insecure: false,
            client_certificate: None,
            client_identity: None,
            token: None,
            timeout: Some(DEFAULT_TIMEOUT),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            retry: RetryPolicy::default(),
        }
    }

    /// The configuration a kubeconfig context describes (its namespace aside).
    pub fn from_context(context: &ResolvedContext) -> Self {
        ClientConfig {
            ca_pem: context.ca_pem.clone(),
            tls_server_name: context.tls_server_name.clone(),
            insecure: context.insecure_skip_tls_verify,
            client_certificate: context.client_certificate.clone(),
            token: context.token.clone(),
            ..ClientConfig::new(context.server.clone())
        }
    }

    /// Whether the server is reached over TLS; an error for a URL that is neither http nor https.
    pub(crate) fn is_tls(&self) -> Result<bool> {
        let unsupported = || Error::UnsupportedServer { server: self.server.to_string() };
        if self.server.cannot_be_a_base() || self.server.host_str().is_none_or(str::is_empty) {
            return Err(unsupported());
        }
        let tls = match self.server.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(unsupported()),
        };
        for other in &self.failover {
            let refused = |reason: String| Error::Failover { server: other.to_string(), reason };
            if other.cannot_be_a_base() || other.host_str().is_none_or(str::is_empty) {
                return Err(refused("it must be an http:// or https:// URL with a host".into()));
            }
            if other.scheme() != self.server.scheme() {
                return Err(refused(format!(
                    "its scheme must be the first server's ({})",
                    self.server.scheme()
                )));
            }
            if other.path() != self.server.path() {
                return Err(refused(format!("its path must be the first server's ({})", self.server.path())));
            }
        }
        Ok(tls)
    }

    /// The name the server's certificate is verified against, when it is not the URL's host.
    pub(crate) fn server_name(&self) -> Result<Option<ServerName<'static>>> {
        self.tls_server_name
            .as_deref()
            .map(|n| ServerName::try_from(n.to_string()).map_err(|_| Error::ServerName { name: n.into() }))
            .transpose()
    }

    /// The rustls configuration: trust anchors (or none, if insecure), client certificate
    /// (live or fixed), ALPN `h2` then `http/1.1`, Flotilla's crypto provider.
    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let provider = crate::tls::crypto_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?;
        let builder = if self.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            let ca = self
                .ca_pem
                .as_deref()
                .ok_or_else(|| Error::NoTrustAnchors { server: self.server.to_string() })?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "CA bundle")? {
                roots.add(cert).map_err(Error::Tls)?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.client_identity, &self.client_certificate) {
            (Some(identity), _) => {
                let mut config = builder.with_client_cert_resolver(Arc::new(identity.clone()));
                config.resumption = rustls::client::Resumption::disabled();
                config
            }
            (None, Some(c)) => {
                let chain = certificates(&c.cert_pem, "client certificate")?;
                let key = PrivateKeyDer::from_pem_slice(&c.key_pem)
                    .map_err(|source| Error::Pem { what: "client key", source })?;
                builder.with_client_auth_cert(chain, key).map_err(Error::Tls)?
            }
            (None, None) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Every certificate of a PEM bundle; at least one.
fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem { what, source })?;
    if certs.is_empty() {
        return Err(Error::EmptyPem { what });
    }
    Ok(certs)
}

/// `insecure-skip-tls-verify`: any certificate is accepted, but the handshake signatures are
/// still checked (so the connection is at least to whoever holds that certificate's key).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server: &str) -> ClientConfig {
        ClientConfig::new(Url::parse(server).expect("a valid URL"))
    }

    #[test]
    fn schemes() {
        assert!(matches!(config("https://127.0.0.1:6443").is_tls(), Ok(true)));
        assert!(matches!(config("http://localhost:8080/prefix").is_tls(), Ok(false)));
        for bad in ["ftp://host", "unix:/var/run/x.sock", "data:text/plain,x"] {
            assert!(matches!(config(bad).is_tls(), Err(Error::UnsupportedServer { .. })), "{bad}");
        }
    }

    #[test]
    fn https_needs_a_ca_unless_insecure() {
        let mut c = config("https://127.0.0.1:6443");
        assert!(matches!(c.rustls_config(), Err(Error::NoTrustAnchors { .. })));
        c.ca_pem = Some(b"not pem".to_vec());
        assert!(matches!(c.rustls_config(), Err(Error::EmptyPem { what: "CA bundle" })));
        c.insecure = true;
        let tls = c.rustls_config().expect("insecure needs no CA");
        assert_eq!(tls.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        c.tls_server_name = Some("not a name!".into());
        assert!(matches!(c.server_name(), Err(Error::ServerName { .. })));
    }

    #[test]
    fn a_live_identity_is_presented_as_it_is_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let pair = |user: &str| {
            let (cert, key) =
                pki.issue_client_cert(user, &[], Duration::from_secs(3600)).expect("a client certificate");
            ClientCertificate { cert_pem: cert.into_bytes(), key_pem: key.into_bytes() }
        };
        let (first, second) = (pair("first"), pair("second"));
        let live = LiveIdentity::from_pem(&first).expect("identity");
        let mut c = config("https://127.0.0.1:6443");
        c.ca_pem = Some(pki.ca_pem().as_bytes().to_vec());
        c.client_certificate = Some(second.clone());
        c.client_identity = Some(live.clone());
        let tls = c.rustls_config().expect("config");
        let presented = || {
            let key = tls.client_auth_cert_resolver.resolve(&[], &[]).expect("a certificate");
            key.cert[0].as_ref().to_vec()
        };
        let der = |p: &ClientCertificate| CertificateDer::from_pem_slice(&p.cert_pem).expect("pem").to_vec();
        assert_eq!(presented(), der(&first), "the live identity wins over client_certificate");
        live.replace(crate::certificates::TlsIdentity::from_pem(&second).expect("identity"));
        assert_eq!(presented(), der(&second), "the same configuration presents the replacement");
        assert!(format!("{c:?}").contains("client_identity: true"));
    }

    #[test]
    fn debug_hides_credentials() {
        let mut c = config("https://127.0.0.1:6443");
        c.token = Some("s3cr3t".into());
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
