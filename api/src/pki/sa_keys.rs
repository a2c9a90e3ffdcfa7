//! The ServiceAccount token keys kept in the PKI directory.
//!
//! | file | content |
//! |------|---------|
//! | `sa.key` | the key new tokens are signed with (ECDSA P-256, PKCS#8 PEM) |
//! | `sa.pub` | optional: more public keys tokens are accepted from (PEM `PUBLIC KEY` blocks, P-256) |
//!
//! Tokens are accepted when signed by `sa.key` or by a key of `sa.pub`. Rotating the signing
//! key without refusing the tokens already out is therefore: add the new key's public key to
//! `sa.pub` on every server, then make it `sa.key` (the old one's public key going to
//! `sa.pub`), and once the old tokens have expired, drop it from `sa.pub`. A running
//! [`SecureApi`](crate::secure::SecureApi) picks the files up again on
//! [`reload_service_account_keys`](crate::secure::SecureApi::reload_service_account_keys);
//! `flotilla sa-key` does all of it across a cluster.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::{PemObject, SectionKind};

use super::{Error, Result, issue, read};

/// The signing key's file name.
pub const SA_SIGNING_KEY: &str = "sa.key";
/// The file of the other public keys tokens are accepted from.
pub const SA_PUBLIC_KEYS: &str = "sa.pub";

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The length of an uncompressed P-256 point (0x04, x, y).
const P256_POINT_LEN: usize = 65;

/// The keys ServiceAccount tokens are signed and verified with.
#[derive(Clone)]
pub struct ServiceAccountKeys {
    /// The signing key, PKCS#8 DER.
    signing_pkcs8: Vec<u8>,
    /// Its public key (an uncompressed point).
    signing_public: Vec<u8>,
    /// The other accepted public keys, in file order, without the signing key's or repeats.
    others: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ServiceAccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("ServiceAccountKeys").field("others", &self.others.len()).finish_non_exhaustive()
    }
}

impl ServiceAccountKeys {
    /// Reads `sa.key` (which must exist) and `sa.pub` (if it exists) from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let key_path = dir.join(SA_SIGNING_KEY);
        let signing = read(&key_path)?.ok_or_else(|| Error::Read {
            path: key_path.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let others = read(&dir.join(SA_PUBLIC_KEYS))?;
        Self::parse(dir, &signing, others.as_deref())
    }

    /// The keys of `sa.key`'s and `sa.pub`'s contents; errors name the files as if in `dir`.
    pub fn parse(dir: &Path, signing_key_pem: &[u8], public_keys_pem: Option<&[u8]>) -> Result<Self> {
        let key_path = dir.join(SA_SIGNING_KEY);
        let der = PrivateKeyDer::from_pem_slice(signing_key_pem).map_err(|source| Error::Pem {
            path: key_path.clone(),
            what: "private key",
            source,
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(Error::ServiceAccountKeyKind { path: key_path });
        };
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|_| Error::ServiceAccountKeyKind { path: key_path })?;
        let signing_public = key_pair.public_key().as_ref().to_vec();
        let mut others: Vec<Vec<u8>> = Vec::new();
        if let Some(text) = public_keys_pem {
            for key in parse_public_keys(&dir.join(SA_PUBLIC_KEYS), text)? {
                if key != signing_public && !others.contains(&key) {
                    others.push(key);
                }
            }
        }
        Ok(ServiceAccountKeys { signing_pkcs8: pkcs8.secret_pkcs8_der().to_vec(), signing_public, others })
    }

    /// The signing key, PKCS#8 DER.
    pub fn signing_pkcs8(&self) -> &[u8] {
        &self.signing_pkcs8
    }

    /// The signing key's public key (an uncompressed P-256 point).
    pub fn signing_public_key(&self) -> &[u8] {
        &self.signing_public
    }

    /// The other public keys tokens are accepted from (`sa.pub`'s, less the signing key's).
    pub fn other_public_keys(&self) -> &[Vec<u8>] {
        &self.others
    }

    /// Every public key tokens are accepted from: the signing key's first.
    pub fn verifying_keys(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.signing_public.clone()).chain(self.others.iter().cloned()).collect()
    }
}

/// A new ServiceAccount signing key (ECDSA P-256), PKCS#8 PEM: what `sa.key` holds.
pub fn generate_signing_key_pem() -> Result<String> {
    let key = issue::new_key()
        .map_err(|source| Error::Generate { what: "a service-account signing key".into(), source })?;
    Ok(key.serialize_pem())
}

/// The public key of a signing key in PKCS#8 PEM (what `sa.key` holds), as an uncompressed
/// point; errors name the file as `path`.
pub fn signing_public_key(path: &Path, signing_key_pem: &[u8]) -> Result<Vec<u8>> {
    let dir = path.parent().unwrap_or(Path::new(""));
    ServiceAccountKeys::parse(dir, signing_key_pem, None).map(|k| k.signing_public)
}

/// The P-256 public keys of `text` (PEM `PUBLIC KEY` blocks; other PEM sections and text
/// between blocks are ignored), as uncompressed points; errors name the file as `path` and
/// the block by its position (1-based).
pub fn parse_public_keys(path: &Path, text: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text) {
        let (kind, der) =
            section.map_err(|source| Error::Pem { path: path.to_path_buf(), what: "public key", source })?;
        if kind != SectionKind::PublicKey {
            continue;
        }
        let index = keys.len() + 1;
        let point = der
            .strip_prefix(P256_SPKI_PREFIX.as_slice())
            .filter(|p| p.len() == P256_POINT_LEN && p[0] == 0x04)
            .ok_or_else(|| Error::ServiceAccountPublicKey { path: path.to_path_buf(), index })?;
        keys.push(point.to_vec());
    }
    Ok(keys)
}

/// `keys` (uncompressed P-256 points) as PEM `PUBLIC KEY` blocks: what `sa.pub` holds.
pub fn public_keys_pem(keys: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for key in keys {
        let der = [P256_SPKI_PREFIX.as_slice(), key].concat();
        out.push_str("-----BEGIN PUBLIC KEY-----\n");
        for line in STANDARD.encode(der).as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{fs, write};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn public_keys_round_trip_and_match_rcgen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (a, b) = (generate_signing_key_pem()?, generate_signing_key_pem()?);
        let (pa, pb) = (
            signing_public_key(Path::new("a"), a.as_bytes())?,
            signing_public_key(Path::new("b"), b.as_bytes())?,
        );
        let pem = public_keys_pem(&[pa.clone(), pb.clone()]);
        // rcgen writes the same SubjectPublicKeyInfo PEM for the key.
        let rcgen_pem = rcgen::KeyPair::from_pem(&a)?;
        assert!(pem.starts_with(&rcgen_pem.public_key_pem()), "{pem}");
        assert_eq!(parse_public_keys(Path::new("sa.pub"), pem.as_bytes())?, vec![pa.clone(), pb.clone()]);

        // The signing key's own public key and repeats are dropped from the others.
        let listed = [pem.as_str(), &public_keys_pem(std::slice::from_ref(&pa))].concat();
        let keys = ServiceAccountKeys::parse(dir.path(), a.as_bytes(), Some(listed.as_bytes()))?;
        assert_eq!(keys.signing_public_key(), pa.as_slice());
        assert_eq!(keys.other_public_keys(), [pb.clone()].as_slice());
        assert_eq!(keys.verifying_keys(), vec![pa, pb]);
        Ok(())
    }

    #[test]
    fn bad_public_keys_are_named_by_file_and_position() -> TestResult {
        let good = signing_public_key(Path::new("k"), generate_signing_key_pem()?.as_bytes())?;
        let mut other_curve = public_keys_pem(std::slice::from_ref(&good)).into_bytes();
        // A P-384 SubjectPublicKeyInfo: another curve OID and length.
        let p384 = [
            &[0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01][..],
            &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04],
            &[7u8; 96],
        ]
        .concat();
        other_curve.extend_from_slice(
            format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(p384))
                .as_bytes(),
        );
        let err = parse_public_keys(Path::new("/pki/sa.pub"), &other_curve).expect_err("P-384 refused");
        assert_eq!(err.to_string(), "reading /pki/sa.pub: public key 2 is not an ECDSA P-256 key");
        let err = parse_public_keys(
            Path::new("/pki/sa.pub"),
            b"-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----\n",
        )
        .expect_err("not base64");
        assert!(err.to_string().starts_with("reading /pki/sa.pub: no valid PEM public key"), "{err}");
        // Comments and other sections are skipped; an empty file lists no key.
        let commented = format!("# rotated out 2026-12-07\n{}", public_keys_pem(std::slice::from_ref(&good)));
        assert_eq!(parse_public_keys(Path::new("p"), commented.as_bytes())?, vec![good]);
        assert!(parse_public_keys(Path::new("p"), b"")?.is_empty());
        Ok(())
    }

    #[test]
    fn load_reads_the_directory_and_names_a_bad_signing_key() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert!(matches!(ServiceAccountKeys::load(dir.path()), Err(Error::Read { .. })));
        write(&dir.path().join(SA_SIGNING_KEY), generate_signing_key_pem()?.as_bytes(), fs::PRIVATE)?;
        let keys = ServiceAccountKeys::load(dir.path())?;
        assert!(keys.other_public_keys().is_empty());
        let other = signing_public_key(Path::new("k"), generate_signing_key_pem()?.as_bytes())?;
        write(
            &dir.path().join(SA_PUBLIC_KEYS),
            public_keys_pem(std::slice::from_ref(&other)).as_bytes(),
            fs::PUBLIC,
        )?;
        let keys = ServiceAccountKeys::load(dir.path())?;
        assert_eq!(keys.other_public_keys(), [other].as_slice());
        let err = ServiceAccountKeys::parse(dir.path(), b"junk", None).expect_err("no key");
        assert!(err.to_string().contains("sa.key: no valid PEM private key"), "{err}");
        Ok(())
    }
}
