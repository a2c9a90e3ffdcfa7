//! The node's credential files in [`JoinConfig::dir`](super::join::JoinConfig::dir): names,
//! atomic writes (keys 0600), loading, and the checks a stored certificate must pass.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;

use super::identity::TlsIdentity;
use super::join::{JoinError, Result};
use crate::kubeconfig::ClientCertificate;
use crate::pki;

/// The cluster CA.
pub(super) const CA_FILE: &str = "ca.crt";
/// The node client certificate.
pub(super) const CLIENT_CERT: &str = "kubelet-client.crt";
/// Its key.
pub(super) const CLIENT_KEY: &str = "kubelet-client.key";
/// The node serving certificate.
pub(super) const SERVING_CERT: &str = "kubelet.crt";
/// Its key.
pub(super) const SERVING_KEY: &str = "kubelet.key";

pub(super) fn file_error(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> JoinError {
    JoinError::File { what, path: path.to_path_buf(), message: e.to_string() }
}

/// The file's bytes; `None` if it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_error("reading", path, &e)),
    }
}

/// The certificate `cert` and key `key` of `dir`; `None` when either is missing, or when
/// they do not make an identity (unreadable, or a key that is not the certificate's, as a
/// crash between writing the two leaves it): then they are asked for again.
pub(super) fn load_identity(dir: &Path, cert: &str, key: &str) -> Result<Option<TlsIdentity>> {
    let (Some(cert_pem), Some(key_pem)) = (read_optional(&dir.join(cert))?, read_optional(&dir.join(key))?)
    else {
        return Ok(None);
    };
    match TlsIdentity::from_pem(&ClientCertificate { cert_pem, key_pem }) {
        Ok(identity) => Ok(Some(identity)),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), cert, %error, "stored credential is unusable; asking for a new one");
            Ok(None)
        }
    }
}

/// Writes `pair` as `key` (0600) then `cert` (0644) in `dir`, each atomically.
pub(super) fn store_pair(dir: &Path, cert: &str, key: &str, pair: &ClientCertificate) -> Result<()> {
    write(dir, key, &pair.key_pem, pki::PRIVATE)?;
    write(dir, cert, &pair.cert_pem, 0o644)
}

/// Writes `bytes` to `dir/name` atomically with `mode`.
pub(super) fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(name);
    pki::write_atomic(&path, bytes, mode).map_err(|e| file_error("writing", &path, &e))
}

/// Whether certificate `pem` is for `user`, covers `ips`, and is valid for `margin` yet.
pub(super) fn cert_usable(pem: &[u8], user: &str, ips: &[IpAddr], margin: Duration) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(pem) else { return false };
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()) else {
        return false;
    };
    let cn_ok = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()) == Some(user);
    let now =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let fresh = u64::try_from(cert.validity().not_after.timestamp())
        .is_ok_and(|t| t > now.saturating_add(margin.as_secs()));
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

#[cfg(test)]
mod tests {
    use super::super::join::{RENEW_BEFORE, STILL_VALID};
    use super::*;
    use crate::auth::authn::NODES_GROUP;

    #[test]
    fn stored_certificates_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let (cert, key) = pki
            .issue_client_cert("system:node:n1", &[NODES_GROUP.into()], Duration::from_secs(7200))
            .expect("cert");
        let renew = RENEW_BEFORE;
        assert!(cert_usable(cert.as_bytes(), "system:node:n1", &[], renew));
        assert!(!cert_usable(cert.as_bytes(), "system:node:n2", &[], renew), "another node's");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(!cert_usable(cert.as_bytes(), "system:node:n1", &[ip], renew), "does not cover the address");
        let (short, short_key) = pki
            .issue_client_cert("system:node:n1", &[NODES_GROUP.into()], Duration::from_secs(600))
            .expect("cert");
        assert!(!cert_usable(short.as_bytes(), "system:node:n1", &[], renew), "expires too soon");
        assert!(cert_usable(short.as_bytes(), "system:node:n1", &[], STILL_VALID), "but may renew itself");
        assert!(!cert_usable(b"junk", "system:node:n1", &[], STILL_VALID));

        // Stored pairs: written with their modes, loaded; a key that is not the
        // certificate's (a crash between the two writes) counts as missing.
        let node = dir.path().join("node");
        std::fs::create_dir(&node).expect("dir");
        assert!(load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").is_none());
        let pair = ClientCertificate { cert_pem: cert.clone().into_bytes(), key_pem: key.into_bytes() };
        store_pair(&node, CLIENT_CERT, CLIENT_KEY, &pair).expect("store");
        let loaded = load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").expect("stored");
        assert_eq!(loaded.pem(), &pair);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |f: &str| std::fs::metadata(node.join(f)).expect("stat").permissions().mode() & 0o777;
        assert_eq!((mode(CLIENT_KEY), mode(CLIENT_CERT)), (0o600, 0o644));
        write(&node, CLIENT_KEY, short_key.as_bytes(), pki::PRIVATE).expect("write");
        assert!(load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").is_none());
    }
}
