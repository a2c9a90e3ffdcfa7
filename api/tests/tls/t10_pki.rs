//! The PKI directory: created once, loaded unchanged, healed where a leaf needs reissuing,
//! refused (with the file named) where it is damaged.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flotilla_api::pki::{self, ClusterPki};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

/// The serving certificate's SANs as strings.
fn sans(pem: &str) -> anyhow::Result<BTreeSet<String>> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    let sans = cert.subject_alternative_name()?.expect("serving certificate has SANs");
    Ok(sans
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).expect("4")).to_string()
            }
            GeneralName::IPAddress(b) => {
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).expect("16")).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn second_load_returns_the_same_ca_and_credentials() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = ClusterPki::load_or_create(dir.path(), &[])?;
    let second = ClusterPki::load_or_create(dir.path(), &[])?;
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
    assert_eq!(first.serving_key_pem(), second.serving_key_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.admin_key_pem(), second.admin_key_pem());
    assert_eq!(first.sa_signing_key_pem(), second.sa_signing_key_pem());
    assert_eq!(sans(&first.serving_cert_pem())?, set(&["localhost", "127.0.0.1", "::1"]));

    let der = CertificateDer::from_pem_slice(first.ca_pem().as_bytes())?;
    let (_, ca) = x509_parser::parse_x509_certificate(&der)?;
    assert_eq!(ca.subject().to_string(), "CN=flotilla-ca");
    assert!(ca.is_ca());
    let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
    assert!(lifetime > 3649 * 86_400, "the CA lives ten years, not {lifetime} s");
    Ok(())
}

#[test]
fn a_new_host_reissues_the_serving_certificate_with_the_union() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = ClusterPki::load_or_create(dir.path(), &["api.example".into()])?;
    let second = ClusterPki::load_or_create(dir.path(), &["10.1.2.3".into(), "[fd00::1]".into()])?;
    assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
    assert_eq!(
        sans(&second.serving_cert_pem())?,
        set(&["localhost", "api.example", "127.0.0.1", "10.1.2.3", "::1", "fd00::1"])
    );
    // Nothing else changes.
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.sa_signing_key_pem(), second.sa_signing_key_pem());

    // Hosts already covered (in any spelling) do not reissue.
    let third = ClusterPki::load_or_create(dir.path(), &["API.example".into(), "10.1.2.3".into()])?;
    assert_eq!(second.serving_cert_pem(), third.serving_cert_pem());
    Ok(())
}

#[test]
fn keys_are_private_and_no_temporary_files_remain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki_dir = dir.path().join("nested/pki");
    ClusterPki::load_or_create(&pki_dir, &[])?;
    let mut names: Vec<_> = fs::read_dir(&pki_dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(
        names,
        ["admin.crt", "admin.key", "apiserver.crt", "apiserver.key", "ca.crt", "ca.key", "sa.key"]
    );
    for key in ["ca.key", "apiserver.key", "admin.key", "sa.key"] {
        assert_eq!(mode(&pki_dir.join(key))?, 0o600, "{key}");
    }
    assert_eq!(mode(&pki_dir)?, 0o700);
    Ok(())
}

#[test]
fn a_corrupted_key_is_an_error_naming_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    ClusterPki::load_or_create(dir.path(), &[])?;
    for (file, garbage) in [
        ("ca.key", "not a key".to_string()),
        // Valid PEM framing, invalid key inside.
        ("admin.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string()),
        ("sa.key", String::new()),
    ] {
        let path = dir.path().join(file);
        let original = fs::read(&path)?;
        fs::write(&path, garbage)?;
        let err = ClusterPki::load_or_create(dir.path(), &[]).expect_err("corrupted key");
        let message = err.to_string();
        assert!(message.starts_with(&format!("reading {}", path.display())), "{file}: {message}");
        fs::write(&path, original)?;
    }
    // Restored, the directory loads again.
    ClusterPki::load_or_create(dir.path(), &[])?;
    Ok(())
}

#[test]
fn a_missing_ca_key_is_refused_but_a_missing_ca_starts_over() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = ClusterPki::load_or_create(dir.path(), &[])?;
    let key = fs::read(dir.path().join("ca.key"))?;
    fs::remove_file(dir.path().join("ca.key"))?;
    let err = ClusterPki::load_or_create(dir.path(), &[]).expect_err("CA key missing");
    assert!(matches!(err, pki::Error::MissingCaKey { .. }), "{err}");

    // A key without a certificate (a crash between the two writes) is a fresh start, and the
    // leaves signed by the old CA are reissued.
    fs::write(dir.path().join("ca.key"), key)?;
    fs::remove_file(dir.path().join("ca.crt"))?;
    let second = ClusterPki::load_or_create(dir.path(), &[])?;
    assert_ne!(first.ca_pem(), second.ca_pem());
    assert_ne!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_ne!(first.serving_cert_pem(), second.serving_cert_pem());
    Ok(())
}

#[test]
fn a_leaf_whose_key_was_replaced_is_reissued() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = ClusterPki::load_or_create(dir.path(), &[])?;
    // What a crash after writing the new key but before the new certificate leaves.
    fs::copy(dir.path().join("apiserver.key"), dir.path().join("admin.key"))?;
    let second = ClusterPki::load_or_create(dir.path(), &[])?;
    assert_ne!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
    Ok(())
}

#[test]
fn invalid_requests_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let err = ClusterPki::load_or_create(dir.path(), &["not a host".into()]).expect_err("bad host");
    assert_eq!(err.to_string(), r#"server host "not a host" is neither an IP address nor a DNS name"#);
    let pki = ClusterPki::load_or_create(dir.path(), &[])?;
    assert!(pki.issue_client_cert("", &[], Duration::from_secs(60)).is_err());
    assert!(pki.issue_client_cert("u", &[], Duration::ZERO).is_err());
    Ok(())
}

#[test]
fn service_account_key_signs_verifiably() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = ClusterPki::load_or_create(dir.path(), &[])?;
    let rng = ring::rand::SystemRandom::new();
    let message = b"header.payload";
    let signature =
        pki.sa_signing_key().sign(&rng, message).map_err(|_| anyhow::anyhow!("signing failed"))?;
    assert_eq!(signature.as_ref().len(), 64, "ES256 signatures are r || s");
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        ring::signature::KeyPair::public_key(pki.sa_signing_key()).as_ref().to_vec(),
    );
    assert!(public.verify(message, signature.as_ref()).is_ok());
    assert!(pki.sa_public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    // Reloaded, it is the same key.
    let again = ClusterPki::load_or_create(dir.path(), &[])?;
    assert!(
        public
            .verify(
                message,
                again.sa_signing_key().sign(&rng, message).map_err(|_| anyhow::anyhow!("sign"))?.as_ref()
            )
            .is_ok()
    );
    Ok(())
}

#[test]
fn the_pki_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<ClusterPki>();
}
