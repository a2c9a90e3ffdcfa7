//! The node side of TLS bootstrapping (what kubelet's `--bootstrap-kubeconfig` does): find
//! and pin the cluster CA, trade a bootstrap token for a node client certificate through a
//! CertificateSigningRequest, then ask for the node's serving certificate with it. The
//! credentials are kept in a directory and reused while valid.
//!
//! Files in [`JoinConfig::dir`]: `ca.crt`, `kubelet-client.crt`/`.key` (user
//! `system:node:<name>` in `system:nodes`), `kubelet.crt`/`.key` (serving, for the node's
//! addresses). Keys are 0600 and every file is written atomically. A client certificate
//! expiring within the hour is renewed with itself (the approver's `selfnodeclient` path).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotilla_core::client::{Api, Client};
use flotilla_core::registry;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::Mutex;
use rand::Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;
use x509_parser::prelude::FromDer;

use super::approver::{SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, has_condition};
use crate::auth::authn::{BootstrapToken, NODE_USER_PREFIX, NODES_GROUP};
use crate::client::{ClientConfig, RemoteClient};
use crate::kubeconfig::ClientCertificate;
use crate::pki::{self, ca_hash};

const CA_FILE: &str = "ca.crt";
const CLIENT_CERT: &str = "kubelet-client.crt";
const CLIENT_KEY: &str = "kubelet-client.key";
const SERVING_CERT: &str = "kubelet.crt";
const SERVING_KEY: &str = "kubelet.key";
/// A stored certificate expiring sooner than this is replaced.
const RENEW_BEFORE: Duration = Duration::from_secs(3600);
/// A client certificate valid at least this long yet renews itself; an older one needs a
/// bootstrap token again.
const STILL_VALID: Duration = Duration::from_secs(60);
/// How often a pending request is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long the pinned-CA handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl std::fmt::Debug for JoinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinConfig")
            .field("server", &self.server.as_str())
            .field("node_name", &self.node_name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A joined node's credentials (PEM).
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster CA.
    pub ca_pem: String,
    /// The node's client certificate and key.
    pub client: ClientCertificate,
    /// The node's serving certificate and key.
    pub serving: ClientCertificate,
    /// Whether they were issued now (rather than loaded).
    pub issued: bool,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials").field("issued", &self.issued).finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// A client configuration for `server` authenticating as the node.
    pub fn client_config(&self, server: Url) -> ClientConfig {
        let mut config = ClientConfig::new(server);
        config.ca_pem = Some(self.ca_pem.as_bytes().to_vec());
        config.client_certificate = Some(self.client.clone());
        config
    }

    /// A TLS server configuration for the node's log endpoint: its serving certificate, and
    /// only clients with a certificate from the cluster CA.
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
        let chain = CertificateDer::pem_slice_iter(&self.serving.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crypto(&e))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&self.serving.key_pem)
            .map_err(|e| crypto(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| crypto(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| crypto(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Joins the cluster (or loads the credentials of an earlier join): see the module docs.
pub async fn join(config: &JoinConfig) -> Result<NodeCredentials> {
    let dir = &config.dir;
    pki::create_private_dir(dir).map_err(|e| file_error("writing", dir, &e))?;
    let user = format!("{NODE_USER_PREFIX}{}", config.node_name);
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

    let client = match load_pair(dir, CLIENT_CERT, CLIENT_KEY)? {
        Some(pair) if cert_usable(&pair.cert_pem, &user, &[], RENEW_BEFORE) => pair,
        // Expiring soon but still valid: the node renews it itself (`selfnodeclient`).
        Some(old) if cert_usable(&old.cert_pem, &user, &[], STILL_VALID) => {
            let remote = node_client(config, &ca_pem, &old)?;
            let pair = ask(remote, SIGNER_KUBELET_CLIENT, &user, &[], config.timeout).await?;
            write(dir, CLIENT_KEY, &pair.key_pem, pki::PRIVATE)?;
            write(dir, CLIENT_CERT, &pair.cert_pem, 0o644)?;
            tracing::info!(user, "node client certificate renewed");
            issued = true;
            pair
        }
        _ => {
            let token = BootstrapToken::parse(&config.token)?;
            let mut bootstrap = ClientConfig::new(config.server.clone());
            bootstrap.failover = config.failover.clone();
            bootstrap.ca_pem = Some(ca_pem.as_bytes().to_vec());
            bootstrap.token = Some(config.token.clone());
            let remote = RemoteClient::new(bootstrap)
                .map_err(|e| JoinError::Crypto(format!("bootstrap client: {e}")))?;
            let asked = ask(Arc::new(remote), SIGNER_KUBELET_CLIENT, &user, &[], config.timeout).await;
            let pair = asked.map_err(|e| token_refused(e, &token))?;
            write(dir, CLIENT_KEY, &pair.key_pem, pki::PRIVATE)?;
            write(dir, CLIENT_CERT, &pair.cert_pem, 0o644)?;
            tracing::info!(user, "node client certificate issued");
            issued = true;
            pair
        }
    };

    let serving = match load_pair(dir, SERVING_CERT, SERVING_KEY)? {
        Some(pair) if cert_usable(&pair.cert_pem, &user, &config.node_ips, RENEW_BEFORE) => pair,
        _ => {
            let remote = node_client(config, &ca_pem, &client)?;
            let mut names: Vec<rcgen::SanType> =
                config.node_ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)).collect();
            if let Ok(dns) = config.node_name.as_str().try_into() {
                names.push(rcgen::SanType::DnsName(dns));
            }
            let pair = ask(remote, SIGNER_KUBELET_SERVING, &user, &names, config.timeout).await?;
            write(dir, SERVING_KEY, &pair.key_pem, pki::PRIVATE)?;
            write(dir, SERVING_CERT, &pair.cert_pem, 0o644)?;
            tracing::info!(user, "node serving certificate issued");
            issued = true;
            pair
        }
    };
    Ok(NodeCredentials { ca_pem, client, serving, issued })
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
/// `client` and waits for its certificate. Returns the certificate with its new key.
pub async fn ask(
    client: Arc<dyn Client>,
    signer: &str,
    user: &str,
    names: &[rcgen::SanType],
    timeout: Duration,
) -> Result<ClientCertificate> {
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
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: signer.to_string(),
            usages: Some(vec!["digital signature".into(), usage.into()]),
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

/// [`fetch_pinned_ca`] from the first of the config's servers that can be reached.
async fn fetch_ca(config: &JoinConfig, pin: &str) -> Result<String> {
    let mut fetched = fetch_pinned_ca(&config.server, pin).await;
    for server in &config.failover {
        if !matches!(fetched, Err(JoinError::FetchCa { .. })) {
            break;
        }
        fetched = fetch_pinned_ca(server, pin).await;
    }
    fetched
}

/// Connects to `server` without trusting it, and returns (PEM) the certificate it presents
/// whose public key has pin `pin`. Nothing is sent over that connection.
pub async fn fetch_pinned_ca(server: &Url, pin: &str) -> Result<String> {
    let fail = |message: String| JoinError::FetchCa { server: server.to_string(), message };
    let host = server.host_str().ok_or_else(|| fail("the URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = server.port_or_known_default().unwrap_or(443);
    let provider = crate::tls::crypto_provider();
    let capture = Arc::new(Capture { provider: provider.clone(), chain: Mutex::new(Vec::new()) });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| fail(e.to_string()))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(_stream)) => {}
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail(format!("no TLS handshake within {}s", CONNECT_TIMEOUT.as_secs()))),
    }
    let chain = capture.chain.lock().clone();
    let mut offered = Vec::new();
    for cert in chain {
        let hash = ca_hash(cert.as_ref()).map_err(|e| fail(e.to_string()))?;
        if hash.eq_ignore_ascii_case(pin) {
            return Ok(certificate_pem(cert.as_ref()));
        }
        offered.push(hash);
    }
    Err(JoinError::PinMismatch { server: server.to_string(), pin: pin.to_string(), offered })
}

/// Records the chain a server presents and accepts it (its handshake signature is still
/// checked); only for [`fetch_pinned_ca`], which sends nothing over the connection.
#[derive(Debug)]
struct Capture {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock();
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn certificate_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn pem_matches_pin(pem: &[u8], pin: &str) -> bool {
    CertificateDer::from_pem_slice(pem)
        .ok()
        .and_then(|der| ca_hash(der.as_ref()).ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(pin))
}

/// Whether certificate `pem` is for `user`, covers `ips`, and is valid for `margin` yet.
fn cert_usable(pem: &[u8], user: &str, ips: &[IpAddr], margin: Duration) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(pem) else { return false };
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()) else {
        return false;
    };
    let cn_ok = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()) == Some(user);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let fresh =
        u64::try_from(cert.validity().not_after.timestamp()).is_ok_and(|t| t > now + margin.as_secs());
    let covered: Vec<IpAddr> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    cn_ok && fresh && ips.iter().all(|ip| covered.contains(ip))
}

fn file_error(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> JoinError {
    JoinError::File { what, path: path.to_path_buf(), message: e.to_string() }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error("reading", path, &e)),
    }
}

fn load_pair(dir: &Path, cert: &str, key: &str) -> Result<Option<ClientCertificate>> {
    match (read_optional(&dir.join(cert))?, read_optional(&dir.join(key))?) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some(ClientCertificate { cert_pem, key_pem })),
        _ => Ok(None),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(name);
    pki::write_atomic(&path, bytes, mode).map_err(|e| file_error("writing", &path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_certificates_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let (cert, _key) = pki
            .issue_client_cert("system:node:n1", &[NODES_GROUP.into()], Duration::from_secs(7200))
            .expect("cert");
        let renew = RENEW_BEFORE;
        assert!(cert_usable(cert.as_bytes(), "system:node:n1", &[], renew));
        assert!(!cert_usable(cert.as_bytes(), "system:node:n2", &[], renew), "another node's");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(!cert_usable(cert.as_bytes(), "system:node:n1", &[ip], renew), "does not cover the address");
        let (short, _key) = pki
            .issue_client_cert("system:node:n1", &[NODES_GROUP.into()], Duration::from_secs(600))
            .expect("cert");
        assert!(!cert_usable(short.as_bytes(), "system:node:n1", &[], renew), "expires too soon");
        assert!(cert_usable(short.as_bytes(), "system:node:n1", &[], STILL_VALID), "but may renew itself");
        assert!(!cert_usable(b"junk", "system:node:n1", &[], STILL_VALID));

        let ca = pki.ca_pem().as_bytes();
        assert!(pem_matches_pin(ca, &pki.ca_hash()));
        assert!(pem_matches_pin(ca, &pki.ca_hash().to_uppercase().replace("SHA256", "sha256")));
        assert!(!pem_matches_pin(ca, "sha256:00"));
        let der = CertificateDer::from_pem_slice(ca).expect("pem");
        assert_eq!(certificate_pem(der.as_ref()).trim(), pki.ca_pem().trim());
    }
}
