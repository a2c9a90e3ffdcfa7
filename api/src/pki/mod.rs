//! The cluster's public-key infrastructure: a CA, the API server's serving certificate, the
//! admin client credential and the service-account token signing key, created on first start
//! and loaded on every later one.
//!
//! [`ClusterPki::load_or_create`] keeps these files in its directory:
//!
//! | file | content |
//! |------|---------|
//! | `ca.crt`, `ca.key` | the cluster CA (ECDSA P-256, 10 years, CN `flotilla-ca`) |
//! | `apiserver.crt`, `apiserver.key` | the serving certificate, signed by the CA |
//! | `admin.crt`, `admin.key` | the admin client certificate (CN `flotilla-admin`, O `system:masters`) |
//! | `sa.key` | the service-account token signing key (ECDSA P-256, PKCS#8) |
//! | `sa.pub` | optional: more public keys service-account tokens are accepted from ([`sa_keys`]) |
//!
//! Keys are mode 0600, and every file is written atomically, so a crash leaves either the
//! old or the new credential. On a later start the CA is loaded as is (without it every
//! issued credential would be void, so a damaged CA is an error, never silently replaced);
//! a leaf certificate is reissued when missing, not signed by the CA, not matching its key,
//! expiring within 30 days, or (serving) missing a requested host. One process at a time
//! owns the directory.
//!
//! While a server runs, [`renew_until`] renews the serving and admin certificates (rewriting
//! the admin kubeconfigs registered with [`ClusterPki::keep_admin_kubeconfig`]) and the
//! in-memory client certificates of [`ClusterPki::live_client_cert`] before they end.

mod der;
mod fs;
mod issue;
mod renew;
pub mod sa_keys;
mod sign;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use tracing::info;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;

pub(crate) use fs::{PRIVATE, create_private_dir, write_atomic};
use issue::{Ca, Credential, Host};

use crate::certificates::identity::{LiveIdentity, TlsIdentity};
use crate::kubeconfig::ClientCertificate;
pub use renew::{RENEW_CHECK, renew_until};
pub use sign::{CertificateRequest, MIN_SIGNED_VALIDITY, Profile, RequestError, ca_hash, ca_hash_pem};

/// The CA's common name.
pub const CA_COMMON_NAME: &str = "flotilla-ca";
/// The serving certificate's common name.
pub const SERVING_COMMON_NAME: &str = "flotilla-apiserver";
/// The admin user's name: the common name of the admin client certificate.
pub const ADMIN_COMMON_NAME: &str = "flotilla-admin";
/// The admin user's group, which Kubernetes RBAC grants everything.
pub const ADMIN_GROUP: &str = "system:masters";
/// Hosts every serving certificate is valid for, besides the requested ones.
pub const DEFAULT_SERVER_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVING_CERT: &str = "apiserver.crt";
const SERVING_KEY: &str = "apiserver.key";
const ADMIN_CERT: &str = "admin.crt";
const ADMIN_KEY: &str = "admin.key";
const SA_KEY: &str = sa_keys::SA_SIGNING_KEY;

/// Why the PKI could not be loaded, created or used. Variants name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKI directory could not be created.
    #[error("creating PKI directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file does not hold the expected PEM block.
    #[error("reading {path}: no valid PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the file should hold: "certificate" or "private key".
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds PEM that is not a valid X.509 certificate.
    #[error("reading {path}: invalid certificate")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: X509Error,
    },
    /// A key file holds PEM that is not a usable private key.
    #[error("reading {path}: invalid private key")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The service-account key is a valid key of the wrong kind.
    #[error("reading {path}: the service-account signing key must be ECDSA P-256")]
    ServiceAccountKeyKind {
        /// The file.
        path: PathBuf,
    },
    /// A block of the ServiceAccount public keys file is not a P-256 public key.
    #[error("reading {path}: public key {index} is not an ECDSA P-256 key")]
    ServiceAccountPublicKey {
        /// The file.
        path: PathBuf,
        /// The block's position among the file's public keys, from 1.
        index: usize,
    },
    /// The CA certificate exists but its key does not.
    #[error("{cert} exists but {key} does not; restore the key, or remove both to create a new CA")]
    MissingCaKey {
        /// The CA certificate file.
        cert: PathBuf,
        /// The missing key file.
        key: PathBuf,
    },
    /// The CA key is not the key of the CA certificate.
    #[error("{key} is not the key of {cert}")]
    CaKeyMismatch {
        /// The CA certificate file.
        cert: PathBuf,
        /// The CA key file.
        key: PathBuf,
    },
    /// The CA certificate could not be used to issue certificates.
    #[error("reading {path}: unusable as an issuer")]
    CaIssuer {
        /// The CA certificate file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// Generating a key or certificate failed.
    #[error("generating {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A requested server host is neither an IP address nor a DNS name.
    #[error("server host {host:?} is neither an IP address nor a DNS name")]
    InvalidHost {
        /// The host as given.
        host: String,
    },
    /// A client certificate request was invalid.
    #[error("client certificate for {common_name:?}: {reason}")]
    InvalidClientRequest {
        /// The requested common name.
        common_name: String,
        /// What is wrong with the request.
        reason: &'static str,
    },
    /// The client certificate verifier could not be built.
    #[error("building the client certificate verifier")]
    ClientVerifier(#[source] VerifierBuilderError),
    /// The TLS server configuration could not be built.
    #[error("building the TLS server configuration")]
    Tls(#[source] rustls::Error),
    /// The serving certificate and key do not form a TLS identity.
    #[error("the serving certificate: {0}")]
    Identity(#[source] crate::certificates::identity::IdentityError),
    /// An issued client certificate and key do not form a TLS identity.
    #[error("the client certificate for {common_name:?}")]
    ClientIdentity {
        /// The certificate's common name.
        common_name: String,
        /// The cause.
        #[source]
        source: crate::certificates::identity::IdentityError,
    },
    /// An admin kubeconfig could not be written.
    #[error("rewriting the admin kubeconfig")]
    AdminKubeconfig(#[source] crate::kubeconfig::Error),
}

/// Result of PKI operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the TLS server asks clients for certificates; see [`ClusterPki::server_config`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Ask for a client certificate and verify it against the cluster CA if one is presented;
    /// clients without one (anonymous or bearer-token) are let through. What the API server uses.
    #[default]
    Optional,
    /// Refuse clients without a certificate from the cluster CA.
    Required,
    /// Do not ask for client certificates.
    Disabled,
}

/// The cluster's CA and credentials; see the [module docs](self) for the files it keeps.
pub struct ClusterPki {
    dir: PathBuf,
    ca: Ca,
    /// The serving certificate: replaced when renewed ([`ClusterPki::renew_serving_if_due`]).
    serving: parking_lot::RwLock<Arc<Credential>>,
    /// What every [`server_config`](ClusterPki::server_config) presents: the serving
    /// certificate and the CA, replaced with the serving certificate.
    serving_live: LiveIdentity,
    /// The admin certificate: replaced when renewed ([`ClusterPki::renew_admin_if_due`]).
    admin: parking_lot::RwLock<Arc<Credential>>,
    /// The admin kubeconfigs rewritten when the admin certificate is renewed; its lock is
    /// also held while the admin certificate is replaced, so a kubeconfig written under it
    /// embeds a certificate and key of one issuance.
    admin_kubeconfigs: parking_lot::Mutex<Vec<renew::KeptKubeconfig>>,
    /// The in-memory client certificates renewed while the PKI is used.
    live_clients: parking_lot::Mutex<Vec<renew::LiveClient>>,
    sa_key_pem: String,
    sa_public_key_pem: String,
    sa_key: EcdsaKeyPair,
}

impl fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("ClusterPki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ClusterPki {
    /// Loads the PKI kept in `dir`, creating what is missing: on first call a new CA and every
    /// credential; later, the same CA and credentials, with the serving certificate reissued
    /// if it lacks one of `server_hosts` (IP addresses become IP SANs, anything else DNS SANs;
    /// `localhost`, `127.0.0.1` and `::1` are always included). Hosts of the previous serving
    /// certificate are kept.
    pub fn load_or_create(dir: &Path, server_hosts: &[String]) -> Result<ClusterPki> {
        let mut hosts = BTreeSet::new();
        for host in DEFAULT_SERVER_HOSTS.iter().copied().chain(server_hosts.iter().map(String::as_str)) {
            hosts.insert(Host::parse(host).ok_or_else(|| Error::InvalidHost { host: host.to_string() })?);
        }
        fs::create_private_dir(dir).map_err(|source| Error::CreateDir { path: dir.to_path_buf(), source })?;

        let ca = load_or_create_ca(dir)?;
        let ca_x509 = parse_certificate(&dir.join(CA_CERT), &ca.cert_der)?;

        let serving = match load_leaf(dir, SERVING_CERT, SERVING_KEY, &ca_x509)? {
            Some(leaf) if leaf.problem.is_none() && leaf.hosts.is_superset(&hosts) => leaf.credential,
            existing => {
                let reason = match existing {
                    None => "missing",
                    Some(leaf) => {
                        hosts.extend(leaf.hosts);
                        leaf.problem.unwrap_or("missing a requested host")
                    }
                };
                let credential = issue::issue_serving(&ca, SERVING_COMMON_NAME, &hosts)
                    .map_err(|source| Error::Generate { what: "the serving certificate".into(), source })?;
                store_leaf(dir, SERVING_CERT, SERVING_KEY, &credential)?;
                let hosts = hosts.iter().map(Host::to_string).collect::<Vec<_>>().join(",");
                info!(dir = %dir.display(), reason, hosts, "issued serving certificate");
                credential
            }
        };

        let admin = match load_leaf(dir, ADMIN_CERT, ADMIN_KEY, &ca_x509)? {
            Some(leaf) if leaf.problem.is_none() => leaf.credential,
            existing => {
                let reason = existing.and_then(|leaf| leaf.problem).unwrap_or("missing");
                let credential =
                    issue::issue_client(&ca, ADMIN_COMMON_NAME, &[ADMIN_GROUP.into()], issue::LEAF_VALIDITY)
                        .map_err(|source| Error::Generate { what: "the admin certificate".into(), source })?;
                store_leaf(dir, ADMIN_CERT, ADMIN_KEY, &credential)?;
                info!(dir = %dir.display(), reason, "issued admin certificate");
                credential
            }
        };

        let sa_path = dir.join(SA_KEY);
        let sa = match read_key(&sa_path)? {
            Some(key) => key,
            None => {
                let key = issue::new_key()
                    .map_err(|source| Error::Generate { what: "the service-account key".into(), source })?;
                write(&sa_path, key.serialize_pem().as_bytes(), fs::PRIVATE)?;
                info!(path = %sa_path.display(), "created service-account signing key");
                key
            }
        };
        let sa_key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            sa.serialized_der(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| Error::ServiceAccountKeyKind { path: sa_path })?;

        let serving_live = LiveIdentity::new(serving_identity(&serving, &ca)?);
        Ok(ClusterPki {
            dir: dir.to_path_buf(),
            ca,
            serving: parking_lot::RwLock::new(Arc::new(serving)),
            serving_live,
            admin: parking_lot::RwLock::new(Arc::new(admin)),
            admin_kubeconfigs: parking_lot::Mutex::new(Vec::new()),
            live_clients: parking_lot::Mutex::new(Vec::new()),
            sa_key_pem: sa.serialize_pem(),
            sa_public_key_pem: sa.public_key_pem(),
            sa_key,
        })
    }

    /// The directory the PKI is kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca.cert_der
    }

    /// The serving certificate (the current one, if it was renewed), PEM.
    pub fn serving_cert_pem(&self) -> String {
        self.serving.read().cert_pem.clone()
    }

    /// The serving certificate's private key, PKCS#8 PEM.
    pub fn serving_key_pem(&self) -> String {
        self.serving.read().key_pem()
    }

    /// The admin client certificate (CN `flotilla-admin`, O `system:masters`; the current one,
    /// if it was renewed), PEM.
    pub fn admin_cert_pem(&self) -> String {
        self.admin.read().cert_pem.clone()
    }

    /// The admin client certificate's private key, PKCS#8 PEM.
    pub fn admin_key_pem(&self) -> String {
        self.admin.read().key_pem()
    }

    /// The admin client certificate and its key, PEM, read together: a renewal between two
    /// calls of [`admin_cert_pem`](Self::admin_cert_pem) and
    /// [`admin_key_pem`](Self::admin_key_pem) would pair a certificate with another key.
    pub fn admin_credential(&self) -> ClientCertificate {
        let admin = self.admin.read().clone();
        ClientCertificate {
            cert_pem: admin.cert_pem.clone().into_bytes(),
            key_pem: admin.key_pem().into_bytes(),
        }
    }

    /// Issues a client certificate for user `common_name` in `groups` (one subject
    /// Organization per group, as Kubernetes reads them), valid for `validity` from now, with a
    /// fresh ECDSA P-256 key. Returns `(certificate PEM, PKCS#8 key PEM)`. Nothing is stored.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        groups: &[String],
        validity: Duration,
    ) -> Result<(String, String)> {
        let invalid = |reason| Error::InvalidClientRequest { common_name: common_name.to_string(), reason };
        if common_name.is_empty() {
            return Err(invalid("the common name is empty"));
        }
        if groups.iter().any(String::is_empty) {
            return Err(invalid("a group name is empty"));
        }
        if validity.is_zero() || validity > issue::MAX_VALIDITY {
            return Err(invalid("validity must be between one second and 100 years"));
        }
        let credential = issue::issue_client(&self.ca, common_name, groups, validity).map_err(|source| {
            Error::Generate { what: format!("a client certificate for {common_name:?}"), source }
        })?;
        info!(user = common_name, ?groups, days = issue::days(validity), "issued client certificate");
        Ok((credential.cert_pem.clone(), credential.key_pem()))
    }

    /// The service-account token signing key as loaded, PKCS#8 PEM. After a rotation
    /// ([`sa_keys`]), [`sa_keys::ServiceAccountKeys::load`] reads the current one.
    pub fn sa_signing_key_pem(&self) -> &str {
        &self.sa_key_pem
    }

    /// The service-account token verification key, SubjectPublicKeyInfo PEM.
    pub fn sa_public_key_pem(&self) -> &str {
        &self.sa_public_key_pem
    }

    /// The service-account token signing key, for ES256 (fixed-length `r || s` signatures, as
    /// JWS wants). Verify with [`ring::signature::ECDSA_P256_SHA256_FIXED`] and
    /// `sa_signing_key().public_key()`.
    pub fn sa_signing_key(&self) -> &EcdsaKeyPair {
        &self.sa_key
    }

    /// A rustls server configuration presenting the serving certificate (the current one at
    /// each handshake, also after a renewal), with ALPN `h2` and
    /// `http/1.1`, using [`crate::tls::crypto_provider`] (never a process-wide default). Client
    /// certificates are checked against the cluster CA as `client_auth` says.
    pub fn server_config(&self, client_auth: ClientAuth) -> Result<Arc<ServerConfig>> {
        let provider = crate::tls::crypto_provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?;
        let builder = match client_auth {
            ClientAuth::Disabled => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Required => {
                let mut roots = RootCertStore::empty();
                roots.add(self.ca.cert_der.clone()).map_err(Error::Tls)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if client_auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(Error::ClientVerifier)?)
            }
        };
        // The current serving certificate at every handshake, so a renewal needs no restart.
        let mut config = builder.with_cert_resolver(Arc::new(self.serving_live.clone()));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The TLS identity of serving certificate `serving`: its chain with the CA (so a joining
/// node can pin the CA by hash before it trusts it) and its key.
fn serving_identity(serving: &Credential, ca: &Ca) -> Result<TlsIdentity> {
    let pem = ClientCertificate {
        cert_pem: format!("{}{}", serving.cert_pem, ca.cert_pem).into_bytes(),
        key_pem: serving.key_pem().into_bytes(),
    };
    TlsIdentity::from_pem(&pem).map_err(Error::Identity)
}

/// Loads the CA, or creates it if neither its certificate exists (a key without a
/// certificate is what a crash between the two writes leaves; it is replaced).
fn load_or_create_ca(dir: &Path) -> Result<Ca> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let Some(cert_der) = read_certificate(&cert_path)? else {
        let ca = issue::new_ca(CA_COMMON_NAME)
            .map_err(|source| Error::Generate { what: "the cluster CA".into(), source })?;
        // Key first: a certificate on disk always has its key next to it.
        write(&key_path, ca.issuer.key().serialize_pem().as_bytes(), fs::PRIVATE)?;
        write(&cert_path, ca.cert_pem.as_bytes(), fs::PUBLIC)?;
        info!(path = %cert_path.display(), "created cluster CA");
        return Ok(ca);
    };
    let Some(key) = read_key(&key_path)? else {
        return Err(Error::MissingCaKey { cert: cert_path, key: key_path });
    };
    let x509 = parse_certificate(&cert_path, &cert_der)?;
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(Error::CaKeyMismatch { cert: cert_path, key: key_path });
    }
    let issuer = Issuer::from_ca_cert_der(&cert_der, key)
        .map_err(|source| Error::CaIssuer { path: cert_path.clone(), source })?;
    let cert_pem = der::certificate_pem(&cert_der);
    Ok(Ca { cert_pem, cert_der, issuer })
}

/// A stored leaf certificate and what, if anything, is wrong with it.
struct StoredLeaf {
    credential: Credential,
    hosts: BTreeSet<Host>,
    problem: Option<&'static str>,
}

/// Loads a leaf credential; `None` if its certificate or key is missing. Files that exist
/// but cannot be parsed are errors: a damaged credential is not silently replaced.
fn load_leaf(dir: &Path, cert: &str, key: &str, ca: &X509Certificate<'_>) -> Result<Option<StoredLeaf>> {
    let (cert_path, key_path) = (dir.join(cert), dir.join(key));
    let (Some(cert_der), Some(key)) = (read_certificate(&cert_path)?, read_key(&key_path)?) else {
        return Ok(None);
    };
    let x509 = parse_certificate(&cert_path, &cert_der)?;
    let problem = issue::leaf_problem(&x509, &key, ca);
    let hosts = issue::cert_hosts(&x509);
    let cert_pem = der::certificate_pem(&cert_der);
    Ok(Some(StoredLeaf { credential: Credential { cert_pem, cert_der, key }, hosts, problem }))
}

fn store_leaf(dir: &Path, cert: &str, key: &str, credential: &Credential) -> Result<()> {
    // Key first: a crash in between leaves a certificate that does not match its key, which
    // the next start detects and reissues.
    write(&dir.join(key), credential.key_pem().as_bytes(), fs::PRIVATE)?;
    write(&dir.join(cert), credential.cert_pem.as_bytes(), fs::PUBLIC)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    fs::write_atomic(path, bytes, mode).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    fs::read_optional(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

fn read_certificate(path: &Path) -> Result<Option<CertificateDer<'static>>> {
    let Some(bytes) = read(path)? else { return Ok(None) };
    CertificateDer::from_pem_slice(&bytes).map(Some).map_err(|source| Error::Pem {
        path: path.to_path_buf(),
        what: "certificate",
        source,
    })
}

fn read_key(path: &Path) -> Result<Option<KeyPair>> {
    let Some(bytes) = read(path)? else { return Ok(None) };
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| Error::Pem {
        path: path.to_path_buf(),
        what: "private key",
        source,
    })?;
    KeyPair::try_from(&der).map(Some).map_err(|source| Error::Key { path: path.to_path_buf(), source })
}

fn parse_certificate<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, x509)) => Ok(x509),
        Err(x509_parser::nom::Err::Error(source) | x509_parser::nom::Err::Failure(source)) => {
            Err(Error::Certificate { path: path.to_path_buf(), source })
        }
        Err(x509_parser::nom::Err::Incomplete(_)) => {
            Err(Error::Certificate { path: path.to_path_buf(), source: X509Error::InvalidCertificate })
        }
    }
}
