//! The node's credential files in [`JoinConfig::dir`](super::join::JoinConfig::dir): names,
//! atomic writes (keys 0600) of a key and certificate through a staged copy of both, loading
//! (finishing a write a crash cut short), and the checks a stored certificate must pass.

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
/// they do not make an identity (unreadable, or a key that is not the certificate's): then
/// they are asked for again.
///
/// A pair whose [`store_pair`] was cut short by a crash is finished first: its staged copy
/// (`<cert>.next`, key and certificate in one file) is complete, so the new pair is written
/// out from it, and the node keeps the credential it was issued rather than needing its
/// bootstrap token again.
pub(super) fn load_identity(dir: &Path, cert: &str, key: &str) -> Result<Option<TlsIdentity>> {
    let staged = dir.join(staged_name(cert));
    if let Some(bytes) = read_optional(&staged)? {
        match split_staged(&bytes).map(|pair| (TlsIdentity::from_pem(&pair), pair)) {
            Some((Ok(identity), pair)) => {
                tracing::info!(dir = %dir.display(), cert, "finishing a credential write cut short");
                store_pair(dir, cert, key, &pair)?;
                return Ok(Some(identity));
            }
            _ => {
                tracing::warn!(path = %staged.display(), "staged credential is unusable; removing it");
                remove(&staged)?;
            }
        }
    }
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

/// Writes `pair` as `key` (0600) and `cert` (0644) in `dir`, each atomically, through a
/// staged copy of both (`<cert>.next`, 0600) that is removed once both are written: a crash
/// part-way leaves either the old pair or a staged copy [`load_identity`] finishes.
pub(super) fn store_pair(dir: &Path, cert: &str, key: &str, pair: &ClientCertificate) -> Result<()> {
    let staged = staged_name(cert);
    let mut both = pair.key_pem.clone();
    if !both.ends_with(b"\n") {
        both.push(b'\n');
    }
    both.extend_from_slice(&pair.cert_pem);
    write(dir, &staged, &both, pki::PRIVATE)?;
    write(dir, key, &pair.key_pem, pki::PRIVATE)?;
    write(dir, cert, &pair.cert_pem, 0o644)?;
    remove(&dir.join(staged))
}

/// The staged copy's file name.
fn staged_name(cert: &str) -> String {
    format!("{cert}.next")
}

/// The key (everything before the first certificate) and certificate of a staged copy.
fn split_staged(bytes: &[u8]) -> Option<ClientCertificate> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    let at = bytes.windows(BEGIN.len()).position(|w| w == BEGIN)?;
    Some(ClientCertificate { key_pem: bytes[..at].to_vec(), cert_pem: bytes[at..].to_vec() })
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_error("removing", path, &e)),
        _ => Ok(()),
    }
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
        assert!(!node.join(staged_name(CLIENT_CERT)).exists(), "the staged copy is removed");
        write(&node, CLIENT_KEY, short_key.as_bytes(), pki::PRIVATE).expect("write");
        assert!(load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").is_none());
    }

    #[test]
    fn a_pair_write_cut_short_is_finished_from_its_staged_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let issue = || {
            let (cert, key) = pki
                .issue_client_cert("system:node:n1", &[NODES_GROUP.into()], Duration::from_secs(7200))
                .expect("cert");
            ClientCertificate { cert_pem: cert.into_bytes(), key_pem: key.into_bytes() }
        };
        let (old, new) = (issue(), issue());
        let node = dir.path().join("node");
        std::fs::create_dir(&node).expect("dir");
        store_pair(&node, CLIENT_CERT, CLIENT_KEY, &old).expect("store");
        let staged = node.join(staged_name(CLIENT_CERT));
        let mut both = new.key_pem.clone();
        both.extend_from_slice(&new.cert_pem);

        // A crash after the staged copy and the new key, before the new certificate: the
        // new key and the old certificate do not match, and the staged copy finishes the write.
        write(&node, &staged_name(CLIENT_CERT), &both, pki::PRIVATE).expect("stage");
        write(&node, CLIENT_KEY, &new.key_pem, pki::PRIVATE).expect("key");
        let loaded = load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").expect("finished");
        assert_eq!(loaded.pem(), &new);
        assert!(!staged.exists());
        let read = |f: &str| std::fs::read(node.join(f)).expect("read");
        assert_eq!((read(CLIENT_CERT), read(CLIENT_KEY)), (new.cert_pem.clone(), new.key_pem.clone()));

        // A crash right after staging: the staged (newer) pair wins over the old one.
        store_pair(&node, CLIENT_CERT, CLIENT_KEY, &old).expect("store");
        write(&node, &staged_name(CLIENT_CERT), &both, pki::PRIVATE).expect("stage");
        assert_eq!(load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").expect("new").pem(), &new);

        // A damaged staged copy is removed and the stored pair used.
        store_pair(&node, CLIENT_CERT, CLIENT_KEY, &old).expect("store");
        write(&node, &staged_name(CLIENT_CERT), b"junk", pki::PRIVATE).expect("stage");
        assert_eq!(load_identity(&node, CLIENT_CERT, CLIENT_KEY).expect("load").expect("old").pem(), &old);
        assert!(!staged.exists());
    }
}
