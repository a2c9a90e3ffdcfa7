//! The server join token, and the cluster PKI sealed with it.
//!
//! `flotilla server` creates the token when it initializes a new cluster and keeps it in
//! `<data-dir>/token` (mode 0600); `flotilla token server` prints it. Its form follows k3s:
//!
//! ```text
//! F10<sha256 of the cluster CA certificate, hex>::server:<32 random bytes, hex>
//! ```
//!
//! The secret never crosses the network. Two keys are derived from it (HMAC-SHA256 of the
//! secret over a fixed label): one signs join requests on the member transport
//! ([`flotilla_raft_store::JoinKey`]); the other seals the cluster's CA certificate and key and
//! the ServiceAccount signing key (ChaCha20-Poly1305), which the first server stores in the
//! replicated store under [`PKI_BUNDLE_KEY`]. A joining server reads the sealed bundle from
//! its own copy of the store once it has caught up, opens it with its token and checks the CA
//! against the hash in the token before it serves anything with it.

use std::path::{Path, PathBuf};

use flotilla_raft_store::JoinKey;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

/// The token's file name inside a server's data directory.
pub(crate) const TOKEN_FILE: &str = "token";
/// Where the sealed PKI bundle is kept in the replicated store.
pub(crate) const PKI_BUNDLE_KEY: &[u8] = b"/flotilla/bootstrap/pki-bundle";
/// The PKI files a joining server needs (names as `flotilla_api::pki` keeps them).
pub(crate) const PKI_FILES: [(&str, u32); 3] = [("ca.key", 0o600), ("ca.crt", 0o644), ("sa.key", 0o600)];
/// The PKI files sealed with them when they exist: the other ServiceAccount public keys.
pub(crate) const OPTIONAL_PKI_FILES: [(&str, u32); 1] = [("sa.pub", 0o644)];

const PREFIX: &str = "F10";
const SEPARATOR: &str = "::server:";
const BUNDLE_MAGIC: &[u8; 4] = b"FPB1";
const JOIN_LABEL: &[u8] = b"flotilla raft join v1";
const BUNDLE_LABEL: &[u8] = b"flotilla pki bundle v1";

/// Why a token or a bundle could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token text is not of the expected form.
    #[error("malformed server token: {0} (expected F10<ca hash>::server:<secret>)")]
    Malformed(&'static str),
    /// A token or PKI file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The sealed bundle does not open with this token.
    #[error("the cluster PKI bundle does not open with this token: {0}")]
    Bundle(&'static str),
    /// The CA does not match the hash the token pins.
    #[error("the cluster CA does not match the hash in the token")]
    CaMismatch,
}

/// A parsed server token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ServerToken {
    ca_hash: [u8; 32],
    secret: [u8; 32],
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerToken").field("ca_hash", &hex::encode(self.ca_hash)).finish_non_exhaustive()
    }
}

/// The files a joining server needs to serve with the cluster's CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PkiBundle {
    /// File name to contents.
    pub(crate) files: Vec<(String, String)>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn hex32(s: &str, what: &'static str) -> Result<[u8; 32], TokenError> {
    let bytes = hex::decode(s).map_err(|_| TokenError::Malformed(what))?;
    bytes.try_into().map_err(|_| TokenError::Malformed(what))
}

impl ServerToken {
    /// A new token pinning the CA certificate `ca_crt` (its file's bytes).
    pub(crate) fn generate(ca_crt: &[u8]) -> Self {
        ServerToken { ca_hash: sha256(ca_crt), secret: rand::random() }
    }

    /// Parses the token text (surrounding whitespace ignored).
    pub(crate) fn parse(text: &str) -> Result<Self, TokenError> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(TokenError::Malformed("missing the F10 prefix"))?;
        let (hash, secret) =
            rest.split_once(SEPARATOR).ok_or(TokenError::Malformed("missing the ::server: separator"))?;
        Ok(ServerToken { ca_hash: hex32(hash, "bad CA hash")?, secret: hex32(secret, "bad secret")? })
    }

    /// The key join requests are signed with.
    pub(crate) fn join_key(&self) -> JoinKey {
        JoinKey::new(self.derive(JOIN_LABEL).as_ref())
    }

    fn derive(&self, label: &[u8]) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.secret), label)
    }

    fn bundle_key(&self) -> Result<LessSafeKey, TokenError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, self.derive(BUNDLE_LABEL).as_ref())
            .map_err(|_| TokenError::Bundle("key derivation"))?;
        Ok(LessSafeKey::new(key))
    }

    fn aad(&self) -> Vec<u8> {
        [BUNDLE_MAGIC.as_slice(), self.ca_hash.as_slice()].concat()
    }

    /// Whether `ca_crt` (a CA certificate file's bytes) is the CA this token pins.
    pub(crate) fn pins(&self, ca_crt: &[u8]) -> bool {
        sha256(ca_crt) == self.ca_hash
    }

    /// Seals `bundle` with this token.
    pub(crate) fn seal(&self, bundle: &PkiBundle) -> Result<Vec<u8>, TokenError> {
        let mut data = serde_json::to_vec(bundle).map_err(|_| TokenError::Bundle("encoding"))?;
        let nonce: [u8; 12] = rand::random();
        self.bundle_key()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(self.aad()), &mut data)
            .map_err(|_| TokenError::Bundle("sealing"))?;
        Ok([BUNDLE_MAGIC.as_slice(), nonce.as_slice(), &data].concat())
    }

    /// Opens a sealed bundle and checks that its CA is the one the token pins.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<PkiBundle, TokenError> {
        let rest =
            sealed.strip_prefix(BUNDLE_MAGIC.as_slice()).ok_or(TokenError::Bundle("unknown format"))?;
        if rest.len() < aead::NONCE_LEN {
            return Err(TokenError::Bundle("truncated"));
        }
        let (nonce, ciphertext) = rest.split_at(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| TokenError::Bundle("bad nonce"))?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .bundle_key()?
            .open_in_place(nonce, Aad::from(self.aad()), &mut data)
            .map_err(|_| TokenError::Bundle("wrong token or altered bundle"))?;
        let bundle: PkiBundle =
            serde_json::from_slice(plain).map_err(|_| TokenError::Bundle("bad contents"))?;
        let ca = bundle.files.iter().find(|(n, _)| n == "ca.crt").ok_or(TokenError::Bundle("no ca.crt"))?;
        if !self.pins(ca.1.as_bytes()) {
            return Err(TokenError::CaMismatch);
        }
        Ok(bundle)
    }
}

impl std::fmt::Display for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}{SEPARATOR}{}", hex::encode(self.ca_hash), hex::encode(self.secret))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` with `mode`, surviving a crash or a power loss whole or not at all
/// ([`flotilla_core::durable_fs::write_atomic`]: a synced temporary file, a rename, and the
/// directory synced).
pub(crate) fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TokenError> {
    flotilla_core::durable_fs::write_atomic(path, bytes, mode).map_err(io(path))
}

/// The token kept in `data_dir`, if any.
pub(crate) fn load(data_dir: &Path) -> Result<Option<ServerToken>, TokenError> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => ServerToken::parse(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenError::Io { path, source }),
    }
}

/// Keeps `token` in `data_dir` (mode 0600).
pub(crate) fn save(data_dir: &Path, token: &ServerToken) -> Result<(), TokenError> {
    write_private(&data_dir.join(TOKEN_FILE), format!("{token}\n").as_bytes(), 0o600)
}

/// The PKI files of `pki_dir`, for sealing.
pub(crate) fn read_bundle(pki_dir: &Path) -> Result<PkiBundle, TokenError> {
    let mut files = Vec::new();
    for (name, _) in PKI_FILES {
        let path = pki_dir.join(name);
        files.push((name.to_string(), std::fs::read_to_string(&path).map_err(io(&path))?));
    }
    for (name, _) in OPTIONAL_PKI_FILES {
        let path = pki_dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((name.to_string(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TokenError::Io { path, source }),
        }
    }
    Ok(PkiBundle { files })
}

/// Writes a bundle's files into `pki_dir` (created 0700), keys first; the optional files
/// only when the bundle has them.
pub(crate) fn write_bundle(pki_dir: &Path, bundle: &PkiBundle) -> Result<(), TokenError> {
    flotilla_core::durable_fs::create_dir_all(pki_dir, 0o700).map_err(io(pki_dir))?;
    let text = |name: &str| bundle.files.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    for (name, mode) in PKI_FILES {
        let text = text(name).ok_or(TokenError::Bundle("a PKI file is missing"))?;
        write_private(&pki_dir.join(name), text.as_bytes(), mode)?;
    }
    for (name, mode) in OPTIONAL_PKI_FILES {
        if let Some(text) = text(name) {
            write_private(&pki_dir.join(name), text.as_bytes(), mode)?;
        }
    }
    Ok(())
}

/// `flotilla token` subcommands.
#[derive(clap::Subcommand, Clone, Debug)]
pub(crate) enum TokenCmd {
    /// Print the server join token (for `flotilla server --join ADDR --token T`).
    Server {
        /// A server's data directory.
        #[arg(long, env = "FLOTILLA_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Create a bootstrap token for `flotilla agent` (a Secret in kube-system) and print it
    /// with the CA hash.
    Create(Box<crate::agent_token::CreateArgs>),
    /// List the bootstrap tokens.
    List(crate::agent_token::ClusterArgs),
}

/// Runs a `flotilla token` subcommand.
pub(crate) fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Server { data_dir } => print_server_token(&crate::data_dir(data_dir)?),
        // Asynchronous: main runs them on its runtime.
        TokenCmd::Create(_) | TokenCmd::List(_) => anyhow::bail!("bootstrap token commands run in main"),
    }
}

/// `flotilla token server`: prints the join token of the server in `data_dir`.
pub(crate) fn print_server_token(data_dir: &Path) -> anyhow::Result<()> {
    match load(data_dir)? {
        Some(token) => {
            println!("{token}");
            Ok(())
        }
        None => anyhow::bail!(
            "no server token in {} (has `flotilla server` or `flotilla up` initialized a cluster there?)",
            data_dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(ca: &str) -> PkiBundle {
        PkiBundle {
            files: vec![
                ("ca.key".into(), "KEY".into()),
                ("ca.crt".into(), ca.into()),
                ("sa.key".into(), "SA".into()),
            ],
        }
    }

    #[test]
    fn a_token_round_trips_through_its_text() -> Result<(), TokenError> {
        let token = ServerToken::generate(b"ca");
        let text = token.to_string();
        assert!(text.starts_with("F10") && text.contains("::server:"), "{text}");
        assert_eq!(ServerToken::parse(&format!(" {text}\n"))?, token);
        assert!(ServerToken::parse("K10abc::server:def").is_err());
        assert!(ServerToken::parse(&text.replace("::server:", "::agent:")).is_err());
        Ok(())
    }

    #[test]
    fn a_bundle_opens_only_with_its_token_and_pinned_ca() -> Result<(), TokenError> {
        let token = ServerToken::generate(b"CA PEM");
        let sealed = token.seal(&bundle("CA PEM"))?;
        assert_eq!(token.open(&sealed)?, bundle("CA PEM"));
        let other = ServerToken::generate(b"CA PEM");
        assert!(matches!(other.open(&sealed), Err(TokenError::Bundle(_))));
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(token.open(&altered).is_err());
        // A bundle sealed with the right secret but holding another CA is refused.
        let wrong_ca = token.seal(&bundle("ANOTHER CA"))?;
        assert!(matches!(token.open(&wrong_ca), Err(TokenError::CaMismatch)));
        Ok(())
    }

    #[test]
    fn join_keys_differ_between_tokens() {
        let a = ServerToken::generate(b"ca");
        let b = ServerToken::generate(b"ca");
        assert_ne!(a.derive(JOIN_LABEL).as_ref(), b.derive(JOIN_LABEL).as_ref());
        assert_ne!(a.derive(JOIN_LABEL).as_ref(), a.derive(BUNDLE_LABEL).as_ref());
    }
}
