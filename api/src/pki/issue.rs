//! Certificate profiles (CA, serving, client) and the checks that decide whether a stored
//! certificate can be kept.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use ring::signature::{self, VerificationAlgorithm};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry;

use super::der;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the cluster CA is valid.
pub(crate) const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How long the serving and admin certificates are valid; they are renewed on start.
pub(crate) const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// A stored leaf certificate expiring sooner than this is reissued on start.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The longest validity [`ClusterPki::issue_client_cert`](super::ClusterPki::issue_client_cert)
/// accepts; longer would overflow certificate time encoding long before it is useful.
pub(crate) const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
/// Certificates start this long in the past, so a client whose clock is slightly behind
/// accepts a certificate issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A host a serving certificate is valid for: an IP SAN or a (lower-cased) DNS SAN.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl Host {
    /// Parses `localhost`, `10.0.0.1`, `::1` or `[::1]`; `None` if it is neither an IP address
    /// nor a plausible DNS name (wildcards allowed).
    pub(crate) fn parse(host: &str) -> Option<Host> {
        let trimmed = host.trim();
        let unbracketed = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let valid = !trimmed.is_empty()
            && trimmed.len() <= 253
            && trimmed.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*' || b == b'_')
            });
        valid.then(|| Host::Dns(trimmed.to_ascii_lowercase()))
    }

    fn san(&self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            Host::Ip(ip) => SanType::IpAddress(*ip),
            Host::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Dns(name) => name.fmt(f),
        }
    }
}

/// A certificate with its private key, as PEM and as the DER rustls wants.
pub(crate) struct Credential {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) key: KeyPair,
}

impl Credential {
    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// The cluster CA: its certificate and the issuer (name, key identifier, key) that signs.
pub(crate) struct Ca {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

/// A new ECDSA P-256 key, the only kind this PKI generates.
pub(crate) fn new_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// A new self-signed CA named `common_name`.
pub(crate) fn new_ca(common_name: &str) -> Result<Ca, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_VALIDITY);
    let key = new_key()?;
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: Issuer::new(params, key) })
}

/// A serving certificate for `hosts`, signed by `ca`.
pub(crate) fn issue_serving(
    ca: &Ca,
    common_name: &str,
    hosts: &BTreeSet<Host>,
) -> Result<Credential, rcgen::Error> {
    let mut params = leaf_params(LEAF_VALIDITY);
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.subject_alt_names = hosts.iter().map(Host::san).collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = new_key()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(Credential { cert_pem: cert.pem(), cert_der: cert.der().clone(), key })
}

/// A client certificate for user `common_name` in `groups`, signed by `ca`.
pub(crate) fn issue_client(
    ca: &Ca,
    common_name: &str,
    groups: &[String],
    validity: Duration,
) -> Result<Credential, rcgen::Error> {
    let mut params = leaf_params(validity);
    // Placeholder: the real subject (several O attributes) is spliced in below.
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = new_key()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    let der = der::replace_subject(cert.der(), &der::encode_subject(common_name, groups), ca.issuer.key())?;
    Ok(Credential { cert_pem: der::certificate_pem(&der), cert_der: CertificateDer::from(der), key })
}

fn leaf_params(validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity);
    params
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    // Before 1970 only on a badly broken clock; the certificate then starts at the epoch.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + validity;
}

/// Why a stored leaf certificate must be reissued, if it must.
pub(crate) fn leaf_problem(
    cert: &X509Certificate<'_>,
    key: &KeyPair,
    ca: &X509Certificate<'_>,
) -> Option<&'static str> {
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Some("key does not match certificate");
    }
    if !signed_by(cert, ca) {
        return Some("not signed by the cluster CA");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let renew_at = now.saturating_add(RENEW_BEFORE).as_secs();
    if cert.validity().not_after.timestamp() < i64::try_from(renew_at).unwrap_or(i64::MAX) {
        return Some("expires soon");
    }
    None
}

/// Whether `cert` names `ca` as issuer and carries a valid signature by `ca`'s key.
pub(crate) fn signed_by(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> bool {
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return false;
    }
    let oid = &cert.signature_algorithm.algorithm;
    let candidates: &[&dyn VerificationAlgorithm] = if *oid == oid_registry::OID_SIG_ECDSA_WITH_SHA256 {
        &[&signature::ECDSA_P256_SHA256_ASN1, &signature::ECDSA_P384_SHA256_ASN1]
    } else if *oid == oid_registry::OID_SIG_ECDSA_WITH_SHA384 {
        &[&signature::ECDSA_P256_SHA384_ASN1, &signature::ECDSA_P384_SHA384_ASN1]
    } else if *oid == oid_registry::OID_PKCS1_SHA256WITHRSA {
        &[&signature::RSA_PKCS1_2048_8192_SHA256]
    } else {
        // An algorithm we never issue with: treat as foreign and reissue.
        return false;
    };
    let public_key = ca.public_key().subject_public_key.data.as_ref();
    candidates.iter().any(|alg| {
        signature::UnparsedPublicKey::new(*alg, public_key)
            .verify(cert.tbs_certificate.as_ref(), cert.signature_value.data.as_ref())
            .is_ok()
    })
}

/// The IP and DNS SANs of a serving certificate.
pub(crate) fn cert_hosts(cert: &X509Certificate<'_>) -> BTreeSet<Host> {
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Host::parse(dns),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| Host::Ip(IpAddr::from(b))),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| Host::Ip(IpAddr::from(b))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Whole days in `d`, for log fields.
pub(crate) fn days(d: Duration) -> u64 {
    d.as_secs() / DAY.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_ips_names_and_reject_garbage() {
        assert_eq!(Host::parse("[::1]"), Some(Host::Ip("::1".parse().expect("ip"))));
        assert_eq!(Host::parse("10.0.0.1"), Some(Host::Ip("10.0.0.1".parse().expect("ip"))));
        assert_eq!(Host::parse("Node-1.Example"), Some(Host::Dns("node-1.example".into())));
        for bad in ["", "a b", "bad..name", "http://x", "é.example"] {
            assert_eq!(Host::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leaf_checks_detect_foreign_ca_and_wrong_key() -> Result<(), Box<dyn std::error::Error>> {
        let ca = new_ca("one")?;
        let other = new_ca("two")?;
        let hosts = BTreeSet::from([Host::Dns("localhost".into())]);
        let leaf = issue_serving(&ca, "server", &hosts)?;
        let (_, leaf_x509) = x509_parser::parse_x509_certificate(&leaf.cert_der)?;
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.cert_der)?;
        let (_, other_x509) = x509_parser::parse_x509_certificate(&other.cert_der)?;
        assert_eq!(leaf_problem(&leaf_x509, &leaf.key, &ca_x509), None);
        assert_eq!(leaf_problem(&leaf_x509, &leaf.key, &other_x509), Some("not signed by the cluster CA"));
        assert_eq!(leaf_problem(&leaf_x509, &new_key()?, &ca_x509), Some("key does not match certificate"));
        assert_eq!(cert_hosts(&leaf_x509), hosts);
        Ok(())
    }

    #[test]
    fn short_lived_leaf_is_due_for_renewal() -> Result<(), Box<dyn std::error::Error>> {
        let ca = new_ca("ca")?;
        let leaf = issue_client(&ca, "user", &[], DAY)?;
        let (_, leaf_x509) = x509_parser::parse_x509_certificate(&leaf.cert_der)?;
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.cert_der)?;
        assert_eq!(leaf_problem(&leaf_x509, &leaf.key, &ca_x509), Some("expires soon"));
        Ok(())
    }
}
