//! Certificate requests: reading a PKCS#10 request ([`CertificateRequest::parse`]), issuing a
//! certificate for one from the cluster CA ([`ClusterPki::sign_request`], what a
//! CertificateSigningRequest signer does), and the CA pin a joining node checks
//! ([`ca_hash`], kubeadm's `--discovery-token-ca-cert-hash`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;

use super::{ClusterPki, der, issue};

/// The shortest certificate this signer issues.
pub const MIN_SIGNED_VALIDITY: Duration = Duration::from_secs(600);
/// Certificates start this long in the past (clock skew between machines).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Why a certificate request could not be read or signed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is not a PEM `CERTIFICATE REQUEST`.
    #[error("the request is not a PEM-encoded CERTIFICATE REQUEST: {0}")]
    Pem(String),
    /// The request could not be parsed, or its signature does not verify.
    #[error("the certificate request is invalid: {0}")]
    Invalid(String),
    /// A certificate could not be issued.
    #[error("issuing the certificate: {0}")]
    Issue(String),
    /// A CA certificate could not be read.
    #[error("the CA certificate cannot be parsed: {0}")]
    Ca(String),
}

/// A PKCS#10 request, parsed and with its signature verified.
#[derive(Clone, Debug)]
pub struct CertificateRequest {
    /// The subject's common name.
    pub common_name: String,
    /// The subject's organizations (Kubernetes' groups), in order.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Email and URI subject alternative names (which Kubernetes' node profiles refuse).
    pub other_names: Vec<String>,
    der: Vec<u8>,
}

impl CertificateRequest {
    /// Parses a PEM request (the first `CERTIFICATE REQUEST` block) and verifies that it is
    /// signed by its own key.
    pub fn parse(pem: &[u8]) -> Result<Self, RequestError> {
        let der = CertificateSigningRequestDer::from_pem_slice(pem)
            .map_err(|e| RequestError::Pem(e.to_string()))?;
        let params = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .map_err(|e| RequestError::Invalid(e.to_string()))?;
        let subject = &parsed.certification_request_info.subject;
        let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().map(str::to_string);
        let common_name = subject
            .iter_common_name()
            .next()
            .map(|a| text(a).map_err(|e| RequestError::Invalid(format!("common name: {e}"))))
            .transpose()?
            .unwrap_or_default();
        let organizations = subject
            .iter_organization()
            .map(|a| text(a).map_err(|e| RequestError::Invalid(format!("organization: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut request = CertificateRequest {
            common_name,
            organizations,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            other_names: Vec::new(),
            der: der.as_ref().to_vec(),
        };
        for san in &params.params.subject_alt_names {
            match san {
                SanType::DnsName(name) => request.dns_names.push(name.as_str().to_string()),
                SanType::IpAddress(ip) => request.ip_addresses.push(*ip),
                other => request.other_names.push(format!("{other:?}")),
            }
        }
        Ok(request)
    }
}

/// What a signed certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A client certificate (`client auth`): subject as requested, no alternative names.
    Client,
    /// A serving certificate (`server auth`) for the request's DNS names and IP addresses.
    Serving,
}

impl ClusterPki {
    /// Issues a certificate from the cluster CA for `request`: its subject (common name and
    /// every organization) and key, `profile`'s usages, valid for `validity` (at least
    /// [`MIN_SIGNED_VALIDITY`], at most the CA's remaining life is not checked). Returns PEM.
    pub fn sign_request(
        &self,
        request: &CertificateRequest,
        profile: Profile,
        validity: Duration,
    ) -> Result<String, RequestError> {
        let issue_error = |e: rcgen::Error| RequestError::Issue(e.to_string());
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            request.der.as_slice(),
        ))
        .map_err(|e| RequestError::Invalid(e.to_string()))?;
        let validity = validity.clamp(MIN_SIGNED_VALIDITY, issue::MAX_VALIDITY);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Placeholder: the request's subject (several O attributes) is spliced in below.
        params.distinguished_name.push(DnType::CommonName, request.common_name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.use_authority_key_identifier_extension = true;
        match profile {
            Profile::Client => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::Serving => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names = csr
                    .params
                    .subject_alt_names
                    .iter()
                    .filter(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)))
                    .cloned()
                    .collect();
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + now.saturating_sub(BACKDATE);
        params.not_after = epoch + now + validity;
        let cert = params.signed_by(&csr.public_key, &self.ca.issuer).map_err(issue_error)?;
        let subject = der::encode_subject(&request.common_name, &request.organizations);
        let signed = der::replace_subject(cert.der(), &subject, self.ca.issuer.key()).map_err(issue_error)?;
        tracing::info!(
            subject = %request.common_name,
            groups = ?request.organizations,
            ?profile,
            days = issue::days(validity),
            "signed certificate request"
        );
        Ok(der::certificate_pem(&signed))
    }

    /// The pin of this cluster's CA: see [`ca_hash`].
    pub fn ca_hash(&self) -> String {
        ca_hash(self.ca.cert_der.as_ref()).unwrap_or_default()
    }
}

/// `sha256:<hex>` of the DER SubjectPublicKeyInfo of CA certificate `ca_der`: the pin a node
/// checks before trusting a CA it fetched over an unauthenticated connection (kubeadm's
/// `--discovery-token-ca-cert-hash` format).
pub fn ca_hash(ca_der: &[u8]) -> Result<String, RequestError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ca_der)
        .map_err(|e| RequestError::Ca(e.to_string()))?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// [`ca_hash`] of the first certificate of a PEM bundle.
pub fn ca_hash_pem(pem: &[u8]) -> Result<String, RequestError> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .map_err(|e| RequestError::Ca(e.to_string()))?;
    ca_hash(der.as_ref())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};
    use x509_parser::certificate::X509Certificate;

    use super::*;

    fn request(cn: &str, orgs: &[&str], sans: Vec<SanType>) -> (String, KeyPair) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans;
        (params.serialize_request(&key).expect("csr").pem().expect("pem"), key)
    }

    #[test]
    fn signs_client_and_serving_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let (pem, _key) = request("system:node:n1", &["system:nodes"], vec![]);
        let req = CertificateRequest::parse(pem.as_bytes()).expect("parses");
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert!(req.dns_names.is_empty() && req.ip_addresses.is_empty());

        let cert = pki.sign_request(&req, Profile::Client, Duration::from_secs(3600)).expect("signed");
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        let (_, x509) = X509Certificate::from_der(der.as_ref()).expect("parses");
        let cn: Vec<_> = x509.subject().iter_common_name().filter_map(|a| a.as_str().ok()).collect();
        let o: Vec<_> = x509.subject().iter_organization().filter_map(|a| a.as_str().ok()).collect();
        assert_eq!((cn, o), (vec!["system:node:n1"], vec!["system:nodes"]));
        let (_, ca) = X509Certificate::from_der(pki.ca_der().as_ref()).expect("ca");
        assert!(issue::signed_by(&x509, &ca), "signed by the cluster CA");
        let eku = x509.extended_key_usage().expect("ok").expect("present").value;
        assert!(eku.client_auth && !eku.server_auth);

        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let (pem, _key) = request("system:node:n1", &["system:nodes"], vec![SanType::IpAddress(ip)]);
        let req = CertificateRequest::parse(pem.as_bytes()).expect("parses");
        assert_eq!(req.ip_addresses, [ip]);
        let cert = pki.sign_request(&req, Profile::Serving, Duration::from_secs(3600)).expect("signed");
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        let (_, x509) = X509Certificate::from_der(der.as_ref()).expect("parses");
        assert!(x509.extended_key_usage().expect("ok").expect("present").value.server_auth);
        assert!(issue::cert_hosts(&x509).contains(&issue::Host::Ip(ip)));
    }

    #[test]
    fn refuses_garbage_and_pins_the_ca() {
        assert!(matches!(CertificateRequest::parse(b"hello"), Err(RequestError::Pem(_))));
        let bad = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(CertificateRequest::parse(bad.as_bytes()), Err(RequestError::Invalid(_))));
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let hash = pki.ca_hash();
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64, "{hash}");
        let other = tempfile::tempdir().expect("tempdir");
        let other = ClusterPki::load_or_create(other.path(), &[]).expect("pki");
        assert_ne!(hash, other.ca_hash());
        assert!(ca_hash(b"junk").is_err());
        assert_eq!(ca_hash_pem(pki.ca_pem().as_bytes()).expect("pem"), hash);
    }
}
