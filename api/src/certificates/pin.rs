//! Finding the cluster CA before trusting anything: connect to an API server without
//! verifying it, send nothing, and keep the certificate of the presented chain whose public
//! key has the pinned hash (kubeadm's `--discovery-token-ca-cert-hash`).

use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use super::join::{CONNECT_TIMEOUT, JoinConfig, JoinError, Result};
use crate::pki::ca_hash;

/// [`fetch_pinned_ca`] from the first of the config's servers that can be reached.
pub(super) async fn fetch_ca(config: &JoinConfig, pin: &str) -> Result<String> {
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

/// Whether the certificate in `pem` has pin `pin`.
pub(super) fn pem_matches_pin(pem: &[u8], pin: &str) -> bool {
    CertificateDer::from_pem_slice(pem)
        .ok()
        .and_then(|der| ca_hash(der.as_ref()).ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_matched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let ca = pki.ca_pem().as_bytes();
        assert!(pem_matches_pin(ca, &pki.ca_hash()));
        assert!(pem_matches_pin(ca, &pki.ca_hash().to_uppercase().replace("SHA256", "sha256")));
        assert!(!pem_matches_pin(ca, "sha256:00"));
        let der = CertificateDer::from_pem_slice(ca).expect("pem");
        assert_eq!(certificate_pem(der.as_ref()).trim(), pki.ca_pem().trim());
    }
}
