//! A TLS identity that can be replaced while it is in use: a node's certificates are rotated
//! without rebuilding its API client or restarting its log endpoint.
//!
//! [`TlsIdentity`] is one certificate chain with its key, parsed and checked. [`LiveIdentity`]
//! holds the current one behind a lock and is a rustls [`ResolvesClientCert`] and
//! [`ResolvesServerCert`]: every handshake asks it for the certificate to present, so after
//! [`LiveIdentity::replace`] each new connection (client side) and each new handshake (server
//! side) uses the new certificate. Connections already open keep the one they started with.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::FromDer;

use crate::kubeconfig::ClientCertificate;

/// Why a certificate and key could not be used as a TLS identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The certificate PEM could not be read.
    #[error("reading the certificate PEM: {0}")]
    CertificatePem(#[source] rustls::pki_types::pem::Error),
    /// The certificate PEM holds no certificate.
    #[error("the certificate PEM holds no certificate")]
    NoCertificate,
    /// The first certificate is not valid X.509.
    #[error("the certificate is not a valid X.509 certificate: {0}")]
    Certificate(String),
    /// The key PEM could not be read.
    #[error("reading the private key PEM: {0}")]
    KeyPem(#[source] rustls::pki_types::pem::Error),
    /// The key is unusable, or is not the certificate's.
    #[error("the private key is unusable or does not belong to the certificate: {0}")]
    Key(#[source] rustls::Error),
}

/// When a certificate is valid: from `not_before` to `not_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The start of its validity.
    pub not_before: SystemTime,
    /// The end of its validity.
    pub not_after: SystemTime,
}

impl Validity {
    /// How long the certificate is valid in all (zero if it ends before it starts).
    pub fn lifetime(&self) -> Duration {
        self.not_after.duration_since(self.not_before).unwrap_or_default()
    }
}

/// A certificate chain and its private key, parsed, with the key checked to be the
/// certificate's.
pub struct TlsIdentity {
    key: Arc<CertifiedKey>,
    pem: ClientCertificate,
    validity: Validity,
    serial: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("TlsIdentity")
            .field("serial", &hex_serial(&self.serial))
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads a certificate chain (leaf first) and its private key, both PEM.
    pub fn from_pem(pem: &ClientCertificate) -> Result<TlsIdentity, IdentityError> {
        let chain = CertificateDer::pem_slice_iter(&pem.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(IdentityError::CertificatePem)?;
        let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
        let (_, x509) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let validity = Validity {
            not_before: system_time(x509.validity().not_before.timestamp()),
            not_after: system_time(x509.validity().not_after.timestamp()),
        };
        let serial = x509.raw_serial().to_vec();
        let key = PrivateKeyDer::from_pem_slice(&pem.key_pem).map_err(IdentityError::KeyPem)?;
        let certified =
            CertifiedKey::from_der(chain, key, &crate::tls::crypto_provider()).map_err(IdentityError::Key)?;
        Ok(TlsIdentity { key: Arc::new(certified), pem: pem.clone(), validity, serial })
    }

    /// The certificate and key, PEM (as read).
    pub fn pem(&self) -> &ClientCertificate {
        &self.pem
    }

    /// When the (leaf) certificate is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// The (leaf) certificate's serial number, big-endian.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The chain and key, as rustls presents them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

/// The serial number as colon-separated hex (as `openssl x509 -serial` groups it).
pub fn hex_serial(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A second count since the Unix epoch as a [`SystemTime`] (the epoch if out of range).
fn system_time(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    let time =
        if seconds >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
    time.unwrap_or(UNIX_EPOCH)
}

/// The TLS identity in use, replaceable while clients and servers use it. Clones share it.
///
/// As a [`ResolvesClientCert`] (in a client's rustls configuration) and a
/// [`ResolvesServerCert`] (in a server's) it presents the current identity at every handshake.
#[derive(Clone)]
pub struct LiveIdentity {
    current: Arc<RwLock<Arc<TlsIdentity>>>,
}

impl std::fmt::Debug for LiveIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveIdentity").field(&*self.current()).finish()
    }
}

/// Two live identities are equal when they are the same one (clones of each other).
impl PartialEq for LiveIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.current, &other.current)
    }
}

impl LiveIdentity {
    /// Starts with `identity`.
    pub fn new(identity: TlsIdentity) -> LiveIdentity {
        LiveIdentity { current: Arc::new(RwLock::new(Arc::new(identity))) }
    }

    /// Starts with the certificate chain and key in `pem`.
    pub fn from_pem(pem: &ClientCertificate) -> Result<LiveIdentity, IdentityError> {
        TlsIdentity::from_pem(pem).map(LiveIdentity::new)
    }

    /// The identity presented now.
    pub fn current(&self) -> Arc<TlsIdentity> {
        self.current.read().clone()
    }

    /// Presents `identity` from now on (to every clone): in each handshake that starts later.
    pub fn replace(&self, identity: TlsIdentity) {
        *self.current.write() = Arc::new(identity);
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(&self, _root_hints: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::NODES_GROUP;

    fn issue(pki: &crate::pki::ClusterPki, user: &str, validity: Duration) -> ClientCertificate {
        let (cert, key) = pki.issue_client_cert(user, &[NODES_GROUP.into()], validity).expect("cert");
        ClientCertificate { cert_pem: cert.into_bytes(), key_pem: key.into_bytes() }
    }

    #[test]
    fn reads_checks_and_swaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let first = issue(&pki, "system:node:n1", Duration::from_secs(3600));
        let second = issue(&pki, "system:node:n1", Duration::from_secs(7200));

        let identity = TlsIdentity::from_pem(&first).expect("identity");
        let lifetime = identity.validity().lifetime().as_secs();
        // issue_client_cert backdates by five minutes.
        assert!((3600..=3600 + 360).contains(&lifetime), "{lifetime}");
        assert!(identity.validity().not_after > SystemTime::now());
        assert!(!identity.serial().is_empty());
        assert!(!format!("{identity:?}").contains("PRIVATE"), "the key stays out of Debug");

        // A key that is not the certificate's, and garbage, are refused.
        let mismatched =
            ClientCertificate { cert_pem: first.cert_pem.clone(), key_pem: second.key_pem.clone() };
        assert!(matches!(TlsIdentity::from_pem(&mismatched), Err(IdentityError::Key(_))));
        let empty = ClientCertificate { cert_pem: Vec::new(), key_pem: first.key_pem.clone() };
        assert!(matches!(TlsIdentity::from_pem(&empty), Err(IdentityError::NoCertificate)));
        let junk = ClientCertificate { cert_pem: first.cert_pem.clone(), key_pem: b"junk".to_vec() };
        assert!(matches!(TlsIdentity::from_pem(&junk), Err(IdentityError::KeyPem(_))));

        // Every clone resolves to the current identity; a replacement shows in all of them.
        let live = LiveIdentity::new(identity);
        let clone = live.clone();
        assert_eq!(live, clone);
        assert_ne!(live, LiveIdentity::from_pem(&first).expect("another"));
        let resolved = |l: &LiveIdentity| {
            ResolvesClientCert::resolve(l, &[], &[]).expect("a certificate").cert[0].as_ref().to_vec()
        };
        let first_der = CertificateDer::from_pem_slice(&first.cert_pem).expect("pem");
        assert_eq!(resolved(&clone), first_der.as_ref());
        live.replace(TlsIdentity::from_pem(&second).expect("identity"));
        let second_der = CertificateDer::from_pem_slice(&second.cert_pem).expect("pem");
        assert_eq!(resolved(&clone), second_der.as_ref());
        assert_eq!(clone.current().pem(), &second);
        assert!(ResolvesClientCert::has_certs(&clone));
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        assert_eq!(system_time(0), UNIX_EPOCH);
        assert_eq!(system_time(-5), UNIX_EPOCH - Duration::from_secs(5));
        assert!(system_time(i64::MAX) >= UNIX_EPOCH, "no overflow panic");
        assert!(system_time(i64::MIN) <= UNIX_EPOCH, "no underflow panic");
        let backwards = Validity { not_before: system_time(10), not_after: system_time(5) };
        assert_eq!(backwards.lifetime(), Duration::ZERO);
        assert_eq!(hex_serial(&[0x01, 0xab]), "01:ab");
    }
}
