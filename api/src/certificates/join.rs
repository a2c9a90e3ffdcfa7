//! The node side of TLS bootstrapping (what kubelet's `--bootstrap-kubeconfig` does): find
//! and pin the cluster CA, trade a bootstrap token for a node client certificate through a
//! CertificateSigningRequest, then ask for the node's serving certificate with it. The
//! credentials are kept in a directory and reused while valid.
//!
//! Files in [`JoinConfig::dir`]: `ca.crt`, `kubelet-client.crt`/`.key` (user
//! `system:node:<name>` in `system:nodes`), `kubelet.crt`/`.key` (serving, for the node's
//! addresses). Keys are 0600 and every file is written atomically. A client certificate
//! expiring within the hour is renewed with itself (the approver's `selfnodeclient` path).
//!
//! The [`NodeCredentials`] hold the certificates as [`LiveIdentity`]s, which
//! [`rotate_certificates`](super::rotate::rotate_certificates) replaces while the node runs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Client};
use flotilla_core::registry;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::Rng;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use url::Url;

use super::approver::{SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, has_condition};
use super::files::{
    CA_FILE, CLIENT_CERT, CLIENT_KEY, SERVING_CERT, SERVING_KEY, cert_usable, file_error, load_identity,
    read_optional, store_pair, write,
};
use super::identity::{IdentityError, LiveIdentity, TlsIdentity, hex_serial};
use super::pin::{fetch_ca, pem_matches_pin};
use crate::auth::authn::{BootstrapToken, NODE_USER_PREFIX, NODES_GROUP};
use crate::client::{ClientConfig, RemoteClient};
use crate::kubeconfig::ClientCertificate;
use crate::pki;

pub use super::pin::fetch_pinned_ca;

/// A stored certificate expiring sooner than this is replaced.
pub(super) const RENEW_BEFORE: Duration = Duration::from_secs(3600);
/// A client certificate valid at least this long yet renews itself; an older one needs a
/// bootstrap token again.
pub(super) const STILL_VALID: Duration = Duration::from_secs(60);
/// How often a pending request is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long the pinned-CA handshake may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest certificate lifetime a request may ask for (the API refuses shorter).
pub const MIN_CERT_LIFETIME: Duration = Duration::from_secs(600);

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The bootstrap token is malformed.
    #[error("bootstrap token: {0}")]
    Token(#[from] crate::auth::authn::TokenError),
    /// Neither a CA pin nor a CA file was given.
    #[error(
        "no way to trust the API server: pass the CA hash printed by `flotilla token create` (--ca-hash) or a CA file (--ca-file)"
    )]
    NoCa,
    /// The CA could not be fetched from the server.
    #[error("fetching the cluster CA from {server}: {message}")]
    FetchCa {
        /// The server.
        server: String,
        /// What failed.
        message: String,
    },
    /// No certificate the server presented matches the pin.
    #[error(
        "the API server at {server} presented no CA matching {pin} (it offered {offered:?}): wrong server or wrong hash"
    )]
    PinMismatch {
        /// The server.
        server: String,
        /// The expected pin.
        pin: String,
        /// The pins of the certificates presented.
        offered: Vec<String>,
    },
    /// The API server refused the credential.
    #[error(
        "the API server refused bootstrap token {id}: {message} (an unknown, expired or revoked token; create one with `flotilla token create`)"
    )]
    TokenRefused {
        /// The token id.
        id: String,
        /// The server's answer.
        message: String,
    },
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: registry::Error,
    },
    /// The certificate signing request was denied or failed.
    #[error("certificate signing request {name} was {state}: {message}")]
    NotIssued {
        /// The request's name.
        name: String,
        /// `denied` or `failed`.
        state: &'static str,
        /// The condition's message.
        message: String,
    },
    /// No certificate arrived in time.
    #[error(
        "certificate signing request {name} was not issued within {seconds}s (is it waiting for approval? `kubectl get csr`)"
    )]
    Timeout {
        /// The request's name.
        name: String,
        /// How long was waited.
        seconds: u64,
    },
    /// A credential file could not be read or written.
    #[error("{what} {path}: {message}")]
    File {
        /// `reading` or `writing`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// Generating a key or a request, or building a TLS configuration, failed.
    #[error("{0}")]
    Crypto(String),
    /// A certificate and key could not be used as a TLS identity.
    #[error("the {what} certificate: {source}")]
    Identity {
        /// `client` or `serving`.
        what: &'static str,
        /// The cause.
        #[source]
        source: IdentityError,
    },
    /// The certificate issued is not what was asked for.
    #[error("the {what} certificate issued is not for {user} and the node's addresses, or is not valid now")]
    Unusable {
        /// `client` or `serving`.
        what: &'static str,
        /// The node's user.
        user: String,
    },
    /// The node client certificate expired, and there is no bootstrap token to ask for another.
    #[error(
        "the node client certificate expired at {not_after}; a new one needs a bootstrap token (restart the agent with --token)"
    )]
    ClientExpired {
        /// When it expired (RFC 3339).
        not_after: String,
    },
}

/// Results of this module.
pub type Result<T, E = JoinError> = std::result::Result<T, E>;

/// How to join.
#[derive(Clone)]
pub struct JoinConfig {
    /// The API server, `https://host:port`.
    pub server: Url,
    /// Other API servers of the cluster, tried in order when one cannot be reached.
    pub failover: Vec<Url>,
    /// The bootstrap token (`<id>.<secret>`).
    pub token: String,
    /// The CA pin (`sha256:<hex>`), checked against what the server presents.
    pub ca_hash: Option<String>,
    /// The CA certificate (PEM), when known beforehand.
    pub ca_pem: Option<Vec<u8>>,
    /// The node's name.
    pub node_name: String,
    /// The node's addresses, for its serving certificate.
    pub node_ips: Vec<IpAddr>,
    /// Where the credentials are kept.
    pub dir: PathBuf,
    /// How long to wait for each certificate.
    pub timeout: Duration,
    /// The lifetime to ask for (the request's `expirationSeconds`; at least
    /// [`MIN_CERT_LIFETIME`], and the signer caps it at a year). `None` leaves it to the
    /// signer (a year).
    pub cert_lifetime: Option<Duration>,
}

impl std::fmt::Debug for JoinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinConfig")
            .field("server", &self.server.as_str())
            .field("node_name", &self.node_name)
            .field("dir", &self.dir)
            .field("cert_lifetime", &self.cert_lifetime)
            .finish_non_exhaustive()
    }
}

impl JoinConfig {
    /// The node's user, `system:node:<name>`.
    pub fn node_user(&self) -> String {
        format!("{NODE_USER_PREFIX}{}", self.node_name)
    }
}

/// A joined node's credentials. Clones share the live identities, so a rotation
/// ([`rotate_certificates`](super::rotate::rotate_certificates)) shows in every clone.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// The node's client certificate and key, as presented now.
    pub client: LiveIdentity,
    /// The node's serving certificate and key, as presented now.
    pub serving: LiveIdentity,
    /// Whether a certificate was issued at join (rather than all loaded).
    pub issued: bool,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("client", &hex_serial(self.client.current().serial()))
            .field("serving", &hex_serial(self.serving.current().serial()))
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// A client configuration for `server` authenticating as the node, with the client
    /// certificate current at each new connection (it follows rotations).
    pub fn client_config(&self, server: Url) -> ClientConfig {
        let mut config = ClientConfig::new(server);
        config.ca_pem = Some(self.ca_pem.as_bytes().to_vec());
        config.client_identity = Some(self.client.clone());
        config
    }

    /// A TLS server configuration for the node's log endpoint: its serving certificate
    /// current at each handshake (it follows rotations), and only clients with a certificate
    /// from the cluster CA. Sessions are not resumed, so every handshake presents the current
    /// certificate.
    pub fn serving_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let crypto = |e: &dyn std::fmt::Display| JoinError::Crypto(format!("node serving TLS: {e}"));
        let provider = crate::tls::crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.map_err(|e| crypto(&e))?).map_err(|e| crypto(&e))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| crypto(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| crypto(&e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(self.serving.clone()));
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Joins the cluster (or loads the credentials of an earlier join): see the module docs.
pub async fn join(config: &JoinConfig) -> Result<NodeCredentials> {
    let dir = &config.dir;
    pki::create_private_dir(dir).map_err(|e| file_error("writing", dir, &e))?;
    let user = config.node_user();
    let mut issued = false;

    let stored_ca = read_optional(&dir.join(CA_FILE))?;
    let ca_pem = match (&config.ca_pem, &stored_ca, &config.ca_hash) {
        (Some(ca), _, _) => ca.clone(),
        (None, Some(ca), Some(pin)) if pem_matches_pin(ca, pin) => ca.clone(),
        (None, Some(ca), None) => ca.clone(),
        (None, _, Some(pin)) => fetch_ca(config, pin).await?.into_bytes(),
        (None, _, None) => return Err(JoinError::NoCa),
    };
    let ca_pem =
        String::from_utf8(ca_pem).map_err(|_| JoinError::Crypto("the CA PEM is not UTF-8".into()))?;
    if stored_ca.as_deref() != Some(ca_pem.as_bytes()) {
        write(dir, CA_FILE, ca_pem.as_bytes(), 0o644)?;
    }

    let client = match load_identity(dir, CLIENT_CERT, CLIENT_KEY)? {
        Some(id) if cert_usable(&id.pem().cert_pem, &user, &[], RENEW_BEFORE) => id,
        // Expiring soon but still valid: the node renews it itself (`selfnodeclient`).
        Some(old) if cert_usable(&old.pem().cert_pem, &user, &[], STILL_VALID) => {
            issued = true;
            new_client_certificate(config, &ca_pem, ClientVia::Itself(old.pem())).await?
        }
        _ => {
            issued = true;
            new_client_certificate(config, &ca_pem, ClientVia::Token).await?
        }
    };

    let serving = match load_identity(dir, SERVING_CERT, SERVING_KEY)? {
        Some(id) if cert_usable(&id.pem().cert_pem, &user, &config.node_ips, RENEW_BEFORE) => id,
        _ => {
            issued = true;
            new_serving_certificate(config, &ca_pem, client.pem()).await?
        }
    };
    Ok(NodeCredentials {
        ca_pem,
        client: LiveIdentity::new(client),
        serving: LiveIdentity::new(serving),
        issued,
    })
}

/// With what a node client certificate is asked for.
#[derive(Clone, Copy, Debug)]
pub(super) enum ClientVia<'a> {
    /// The bootstrap token (`nodeclient`).
    Token,
    /// The node's current, still valid, client certificate (`selfnodeclient`).
    Itself(&'a ClientCertificate),
}

/// Asks for a node client certificate through `via`, checks it, and stores it where [`join`]
/// keeps it (through a staged copy of key and certificate: `files::store_pair`).
pub(super) async fn new_client_certificate(
    config: &JoinConfig,
    ca_pem: &str,
    via: ClientVia<'_>,
) -> Result<TlsIdentity> {
    let user = config.node_user();
    let (pair, how) = match via {
        ClientVia::Itself(current) => {
            let remote = node_client(config, ca_pem, current)?;
            (ask(remote, SIGNER_KUBELET_CLIENT, &user, &[], config).await?, "renewed")
        }
        ClientVia::Token => {
            let token = BootstrapToken::parse(&config.token)?;
            let mut bootstrap = ClientConfig::new(config.server.clone());
            bootstrap.failover = config.failover.clone();
            bootstrap.ca_pem = Some(ca_pem.as_bytes().to_vec());
            bootstrap.token = Some(config.token.clone());
            let remote = RemoteClient::new(bootstrap)
                .map_err(|e| JoinError::Crypto(format!("bootstrap client: {e}")))?;
            let asked = ask(Arc::new(remote), SIGNER_KUBELET_CLIENT, &user, &[], config).await;
            (asked.map_err(|e| token_refused(e, &token))?, "issued")
        }
    };
    let identity = checked("client", &pair, &user, &[])?;
    store_pair(&config.dir, CLIENT_CERT, CLIENT_KEY, &pair)?;
    tracing::info!(user, serial = hex_serial(identity.serial()), "node client certificate {how}");
    Ok(identity)
}

/// Asks for the node's serving certificate with client certificate `client`, checks it, and
/// stores it where [`join`] keeps it (through a staged copy: `files::store_pair`).
pub(super) async fn new_serving_certificate(
    config: &JoinConfig,
    ca_pem: &str,
    client: &ClientCertificate,
) -> Result<TlsIdentity> {
    let user = config.node_user();
    let remote = node_client(config, ca_pem, client)?;
    let mut names: Vec<rcgen::SanType> =
        config.node_ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)).collect();
    if let Ok(dns) = config.node_name.as_str().try_into() {
        names.push(rcgen::SanType::DnsName(dns));
    }
    let pair = ask(remote, SIGNER_KUBELET_SERVING, &user, &names, config).await?;
    let identity = checked("serving", &pair, &user, &config.node_ips)?;
    store_pair(&config.dir, SERVING_CERT, SERVING_KEY, &pair)?;
    tracing::info!(user, serial = hex_serial(identity.serial()), "node serving certificate issued");
    Ok(identity)
}

/// `pair` as an identity, if its key is the certificate's, and the certificate is for
/// `user`, covers `ips` and has not expired.
fn checked(what: &'static str, pair: &ClientCertificate, user: &str, ips: &[IpAddr]) -> Result<TlsIdentity> {
    let identity = TlsIdentity::from_pem(pair).map_err(|source| JoinError::Identity { what, source })?;
    if !cert_usable(&pair.cert_pem, user, ips, Duration::ZERO) {
        return Err(JoinError::Unusable { what, user: user.to_string() });
    }
    Ok(identity)
}

/// A client of `server` authenticated by the node's certificate `cert`.
fn node_client(config: &JoinConfig, ca_pem: &str, cert: &ClientCertificate) -> Result<Arc<dyn Client>> {
    let mut node = ClientConfig::new(config.server.clone());
    node.failover = config.failover.clone();
    node.ca_pem = Some(ca_pem.as_bytes().to_vec());
    node.client_certificate = Some(cert.clone());
    let remote = RemoteClient::new(node).map_err(|e| JoinError::Crypto(format!("node client: {e}")))?;
    Ok(Arc::new(remote))
}

/// A 401/403 on the bootstrap token becomes [`JoinError::TokenRefused`].
fn token_refused(e: JoinError, token: &BootstrapToken) -> JoinError {
    match e {
        JoinError::Api { source: registry::Error::Forbidden(message), .. } => {
            JoinError::TokenRefused { id: token.id.clone(), message }
        }
        other => other,
    }
}

/// Creates a CertificateSigningRequest for `user` in `system:nodes` with `names` through
/// `client`, asking for `config`'s certificate lifetime, and waits (up to `config.timeout`)
/// for its certificate. Returns the certificate with its new key.
pub async fn ask(
    client: Arc<dyn Client>,
    signer: &str,
    user: &str,
    names: &[rcgen::SanType],
    config: &JoinConfig,
) -> Result<ClientCertificate> {
    let timeout = config.timeout;
    let crypto = |e: rcgen::Error| JoinError::Crypto(format!("generating a certificate request: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    params.subject_alt_names = names.to_vec();
    let request = params.serialize_request(&key).map_err(crypto)?.pem().map_err(crypto)?;
    let usage = if signer == SIGNER_KUBELET_SERVING { "server auth" } else { "client auth" };
    let suffix: String = {
        let mut rng = rand::rng();
        (0..10)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
            .collect()
    };
    let name = format!("node-csr-{suffix}");
    let expiration_seconds = config.cert_lifetime.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: signer.to_string(),
            usages: Some(vec!["digital signature".into(), usage.into()]),
            expiration_seconds,
            ..Default::default()
        },
        status: None,
    };
    let api = Api::<CertificateSigningRequest>::all(client);
    api.create(&csr).await.map_err(|source| JoinError::Api {
        what: format!("creating certificate signing request {name}"),
        source,
    })?;
    tracing::info!(csr = %name, signer, "created certificate signing request; waiting for its certificate");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = api.get(&name).await.map_err(|source| JoinError::Api {
            what: format!("reading certificate signing request {name}"),
            source,
        })?;
        let message = |t: &str| {
            current
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == t))
                .and_then(|c| c.message.clone())
                .unwrap_or_default()
        };
        if has_condition(&current, "Denied") {
            return Err(JoinError::NotIssued { name, state: "denied", message: message("Denied") });
        }
        if has_condition(&current, "Failed") {
            return Err(JoinError::NotIssued { name, state: "failed", message: message("Failed") });
        }
        if let Some(cert) =
            current.status.as_ref().and_then(|s| s.certificate.as_ref()).filter(|c| !c.0.is_empty())
        {
            return Ok(ClientCertificate {
                cert_pem: cert.0.clone(),
                key_pem: key.serialize_pem().into_bytes(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(JoinError::Timeout { name, seconds: timeout.as_secs() });
        }
        tokio::time::sleep(POLL).await;
    }
}
