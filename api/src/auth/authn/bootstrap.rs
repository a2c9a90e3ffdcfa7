//! Bootstrap tokens, as Kubernetes keeps them: a Secret of type
//! `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>` in `kube-system`, holding
//! `token-id`, `token-secret`, `expiration` (RFC 3339), `usage-bootstrap-authentication`,
//! `usage-bootstrap-signing`, `auth-extra-groups` and `description`. The token itself is
//! `<id>.<secret>`, 6 and 16 characters of `[a-z0-9]`.
//!
//! Everything here is pure: parsing a token, reading and writing its Secret, and deciding
//! whether a presented token authenticates (`system:bootstrap:<id>` in
//! `system:bootstrappers` plus the Secret's extra groups). [`BootstrapTokens`](super::BootstrapTokens)
//! keeps the Secrets in memory for the authenticator.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::{BOOTSTRAPPERS_GROUP, UserInfo};

/// The Secret type of bootstrap tokens.
pub const BOOTSTRAP_TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The name prefix of bootstrap token Secrets (`bootstrap-token-<id>`).
pub const BOOTSTRAP_TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
/// The namespace bootstrap token Secrets live in.
pub const BOOTSTRAP_TOKEN_NAMESPACE: &str = "kube-system";
/// Extra groups of a bootstrap token must start with this.
pub const BOOTSTRAP_GROUP_PREFIX: &str = "system:bootstrappers:";

const KEY_ID: &str = "token-id";
const KEY_SECRET: &str = "token-secret";
const KEY_EXPIRATION: &str = "expiration";
const KEY_DESCRIPTION: &str = "description";
const KEY_EXTRA_GROUPS: &str = "auth-extra-groups";
const KEY_USAGE_AUTHENTICATION: &str = "usage-bootstrap-authentication";
const KEY_USAGE_SIGNING: &str = "usage-bootstrap-signing";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
/// The alphabet of token ids and secrets.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a bootstrap token or its Secret was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The string is not `<6 of [a-z0-9]>.<16 of [a-z0-9]>`.
    #[error(
        "a bootstrap token has the form [a-z0-9]{{6}}.[a-z0-9]{{16}} (for example abcdef.0123456789abcdef)"
    )]
    Malformed,
    /// The token's secret does not match its Secret's.
    #[error("bootstrap token {id}: the secret part does not match")]
    WrongSecret {
        /// The token id.
        id: String,
    },
    /// The token has expired.
    #[error("bootstrap token {id} expired at {expiration}")]
    Expired {
        /// The token id.
        id: String,
        /// When it expired.
        expiration: Timestamp,
    },
    /// The Secret does not allow the token to authenticate.
    #[error("bootstrap token {id} is not marked for authentication (usage-bootstrap-authentication)")]
    NotForAuthentication {
        /// The token id.
        id: String,
    },
    /// The Secret is not a valid bootstrap token Secret.
    #[error("secret {name}: {field}: {message}")]
    InvalidSecret {
        /// The Secret's name.
        name: String,
        /// The offending field (`type`, `data.token-id`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A bootstrap token: `<id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The public part, which names the Secret.
    pub id: String,
    /// The private part.
    pub secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("BootstrapToken").field("id", &self.id).finish_non_exhaustive()
    }
}

impl fmt::Display for BootstrapToken {
    /// The whole token, secret included: for printing it to its owner only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn is_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl BootstrapToken {
    /// Parses `<id>.<secret>`.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let (id, secret) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if !is_part(id, ID_LEN) || !is_part(secret, SECRET_LEN) {
            return Err(TokenError::Malformed);
        }
        Ok(BootstrapToken { id: id.to_string(), secret: secret.to_string() })
    }

    /// A new random token.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut part = |len: usize| -> String {
            (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
        };
        BootstrapToken { id: part(ID_LEN), secret: part(SECRET_LEN) }
    }

    /// The name of this token's Secret: `bootstrap-token-<id>`.
    pub fn secret_name(&self) -> String {
        format!("{BOOTSTRAP_TOKEN_SECRET_PREFIX}{}", self.id)
    }
}

/// A bootstrap token Secret, read.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// The token it holds.
    pub token: BootstrapToken,
    /// When it stops being valid; never if `None`.
    pub expiration: Option<Timestamp>,
    /// Whether the token may authenticate to the API server.
    pub usage_authentication: bool,
    /// Whether the token may sign the cluster-info ConfigMap.
    pub usage_signing: bool,
    /// Groups the token's user is in besides `system:bootstrappers`.
    pub extra_groups: Vec<String>,
    /// A note for humans.
    pub description: String,
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSecret")
            .field("token", &self.token)
            .field("expiration", &self.expiration)
            .field("usage_authentication", &self.usage_authentication)
            .field("extra_groups", &self.extra_groups)
            .finish_non_exhaustive()
    }
}

/// Whether `group` may be an extra group of a bootstrap token (kube's
/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`).
pub fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix(BOOTSTRAP_GROUP_PREFIX) else { return false };
    !rest.is_empty()
        && rest.len() <= 256
        && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl TokenSecret {
    /// A token valid until `expiration` for authentication, with `extra_groups`.
    pub fn new(token: BootstrapToken, expiration: Option<Timestamp>, extra_groups: Vec<String>) -> Self {
        TokenSecret {
            token,
            expiration,
            usage_authentication: true,
            usage_signing: true,
            extra_groups,
            description: String::new(),
        }
    }

    /// Reads a bootstrap token Secret; errors name the field that is wrong.
    pub fn from_secret(secret: &Secret) -> Result<Self, TokenError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let invalid = |field: &str, message: String| TokenError::InvalidSecret {
            name: name.clone(),
            field: field.to_string(),
            message,
        };
        let type_ = secret.type_.as_deref().unwrap_or_default();
        if type_ != BOOTSTRAP_TOKEN_SECRET_TYPE {
            return Err(invalid("type", format!("is {type_:?}, not {BOOTSTRAP_TOKEN_SECRET_TYPE:?}")));
        }
        let value = |key: &str| -> Result<Option<String>, TokenError> {
            if let Some(s) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
                return Ok(Some(s.clone()));
            }
            match secret.data.as_ref().and_then(|d| d.get(key)) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.0.clone())
                    .map(Some)
                    .map_err(|_| invalid(&format!("data.{key}"), "is not UTF-8".into())),
            }
        };
        let id = value(KEY_ID)?.unwrap_or_default();
        let token_secret = value(KEY_SECRET)?.unwrap_or_default();
        if !is_part(&id, ID_LEN) {
            return Err(invalid("data.token-id", "must be 6 characters of [a-z0-9]".into()));
        }
        if !is_part(&token_secret, SECRET_LEN) {
            return Err(invalid("data.token-secret", "must be 16 characters of [a-z0-9]".into()));
        }
        if name != format!("{BOOTSTRAP_TOKEN_SECRET_PREFIX}{id}") {
            return Err(invalid("metadata.name", format!("must be {BOOTSTRAP_TOKEN_SECRET_PREFIX}{id}")));
        }
        let expiration = match value(KEY_EXPIRATION)? {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(
                s.parse::<Timestamp>()
                    .map_err(|e| invalid("data.expiration", format!("{s:?} is not an RFC 3339 time: {e}")))?,
            ),
        };
        let mut extra_groups = Vec::new();
        for group in value(KEY_EXTRA_GROUPS)?.unwrap_or_default().split(',').map(str::trim) {
            if group.is_empty() {
                continue;
            }
            if !valid_extra_group(group) {
                return Err(invalid(
                    "data.auth-extra-groups",
                    format!("{group:?} does not match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]"),
                ));
            }
            extra_groups.push(group.to_string());
        }
        let flag = |key: &str| -> Result<bool, TokenError> { Ok(value(key)?.as_deref() == Some("true")) };
        Ok(TokenSecret {
            token: BootstrapToken { id, secret: token_secret },
            expiration,
            usage_authentication: flag(KEY_USAGE_AUTHENTICATION)?,
            usage_signing: flag(KEY_USAGE_SIGNING)?,
            extra_groups,
            description: value(KEY_DESCRIPTION)?.unwrap_or_default(),
        })
    }

    /// The Secret holding this token (in `data`, as the API server stores it).
    pub fn to_secret(&self) -> Secret {
        let mut data = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            data.insert(key.to_string(), ByteString(value.as_bytes().to_vec()));
        };
        put(KEY_ID, &self.token.id);
        put(KEY_SECRET, &self.token.secret);
        if let Some(e) = &self.expiration {
            put(KEY_EXPIRATION, &e.to_string());
        }
        if !self.description.is_empty() {
            put(KEY_DESCRIPTION, &self.description);
        }
        if !self.extra_groups.is_empty() {
            put(KEY_EXTRA_GROUPS, &self.extra_groups.join(","));
        }
        if self.usage_authentication {
            put(KEY_USAGE_AUTHENTICATION, "true");
        }
        if self.usage_signing {
            put(KEY_USAGE_SIGNING, "true");
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(self.token.secret_name()),
                namespace: Some(BOOTSTRAP_TOKEN_NAMESPACE.to_string()),
                ..Default::default()
            },
            type_: Some(BOOTSTRAP_TOKEN_SECRET_TYPE.to_string()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiration.is_some_and(|e| e <= now)
    }

    /// The user `presented` authenticates as at `now`, if this Secret accepts it.
    pub fn authenticate(&self, presented: &BootstrapToken, now: Timestamp) -> Result<UserInfo, TokenError> {
        let id = || self.token.id.clone();
        // Compared as digests, so the time taken says nothing about how much matched.
        let digest = |s: &str| Sha256::digest(s.as_bytes());
        if presented.id != self.token.id || digest(&presented.secret) != digest(&self.token.secret) {
            return Err(TokenError::WrongSecret { id: presented.id.clone() });
        }
        if let Some(expiration) = self.expiration
            && self.is_expired(now)
        {
            return Err(TokenError::Expired { id: id(), expiration });
        }
        if !self.usage_authentication {
            return Err(TokenError::NotForAuthentication { id: id() });
        }
        let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
        for g in &self.extra_groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        Ok(UserInfo::new(format!("{}{}", super::BOOTSTRAP_USER_PREFIX, self.token.id), groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdef.0123456789abcdef";

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a valid time")
    }

    #[test]
    fn token_parsing() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            (TOKEN, true),
            ("a1b2c3.z9y8x7w6v5u4t3s2", true),
            ("abcde.0123456789abcdef", false),     // id too short
            ("abcdefg.0123456789abcdef", false),   // id too long
            ("abcdef.0123456789abcde", false),     // secret too short
            ("abcdef.0123456789abcdef0", false),   // secret too long
            ("ABCDEF.0123456789abcdef", false),    // upper case
            ("abcdef:0123456789abcdef", false),    // wrong separator
            ("abcdef0123456789abcdef", false),     // no separator
            ("abc-ef.0123456789abcdef", false),    // punctuation
            ("abcdef.0123456789abcdef.x", false),  // trailing part
            ("", false),
        ];
        for (token, ok) in cases {
            let got = BootstrapToken::parse(token);
            assert_eq!(got.is_ok(), *ok, "{token:?}: {got:?}");
            if *ok {
                assert_eq!(got.expect("parsed").to_string(), *token);
            } else {
                assert_eq!(got, Err(TokenError::Malformed));
            }
        }
        let generated = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&generated.to_string()), Ok(generated.clone()));
        assert_ne!(generated, BootstrapToken::generate());
        assert!(!format!("{generated:?}").contains(&generated.secret), "Debug hides the secret");
    }

    #[test]
    fn secret_round_trip() {
        let token = BootstrapToken::parse(TOKEN).expect("valid");
        let mut s =
            TokenSecret::new(token, Some(ts("2030-01-02T03:04:05Z")), vec!["system:bootstrappers:x".into()]);
        s.description = "for node-2".into();
        let secret = s.to_secret();
        assert_eq!(secret.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(secret.type_.as_deref(), Some(BOOTSTRAP_TOKEN_SECRET_TYPE));
        let data = secret.data.as_ref().expect("data");
        assert_eq!(data["expiration"].0, b"2030-01-02T03:04:05Z");
        assert_eq!(data["usage-bootstrap-authentication"].0, b"true");
        assert_eq!(TokenSecret::from_secret(&secret), Ok(s));
    }

    #[test]
    fn invalid_secrets_name_the_field() {
        let good = TokenSecret::new(BootstrapToken::parse(TOKEN).expect("valid"), None, vec![]).to_secret();
        let with = |key: &str, value: &str| {
            let mut s = good.clone();
            s.data.get_or_insert_with(Default::default).insert(key.into(), ByteString(value.into()));
            s
        };
        let mut wrong_type = good.clone();
        wrong_type.type_ = Some("Opaque".into());
        let mut wrong_name = good.clone();
        wrong_name.metadata.name = Some("bootstrap-token-zzzzzz".into());
        let cases: Vec<(Secret, &str)> = vec![
            (wrong_type, "type"),
            (wrong_name, "metadata.name"),
            (with("token-id", "ABC"), "data.token-id"),
            (with("token-secret", "short"), "data.token-secret"),
            (with("expiration", "tomorrow"), "data.expiration"),
            (with("auth-extra-groups", "system:masters"), "data.auth-extra-groups"),
        ];
        for (secret, field) in cases {
            match TokenSecret::from_secret(&secret) {
                Err(TokenError::InvalidSecret { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // stringData is read too (a Secret written by hand, before the server folds it in).
        let mut by_hand = good.clone();
        by_hand.string_data =
            Some(BTreeMap::from([("usage-bootstrap-authentication".into(), "false".into())]));
        assert!(!TokenSecret::from_secret(&by_hand).expect("valid").usage_authentication);
    }

    /// (what, the Secret, the presented token, the groups or the error message).
    type Case<'a> = (&'a str, TokenSecret, &'a BootstrapToken, Result<Vec<&'a str>, &'a str>);

    #[test]
    fn authentication_decisions() {
        let token = BootstrapToken::parse(TOKEN).expect("valid");
        let now = ts("2030-01-01T00:00:00Z");
        let secret = |expiration: Option<&str>, auth: bool, groups: &[&str]| {
            let mut s = TokenSecret::new(
                token.clone(),
                expiration.map(ts),
                groups.iter().map(|g| g.to_string()).collect(),
            );
            s.usage_authentication = auth;
            s
        };
        let other = BootstrapToken::parse("abcdef.ffffffffffffffff").expect("valid");
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("valid, no expiry", secret(None, true, &[]), &token, Ok(vec!["system:bootstrappers"])),
            ("valid until later", secret(Some("2030-01-02T00:00:00Z"), true, &[]), &token, Ok(vec!["system:bootstrappers"])),
            ("extra groups", secret(None, true, &["system:bootstrappers:nodes"]), &token,
                Ok(vec!["system:bootstrappers", "system:bootstrappers:nodes"])),
            ("expired", secret(Some("2029-12-31T00:00:00Z"), true, &[]), &token,
                Err("bootstrap token abcdef expired at 2029-12-31T00:00:00Z")),
            ("expires now", secret(Some("2030-01-01T00:00:00Z"), true, &[]), &token,
                Err("bootstrap token abcdef expired at 2030-01-01T00:00:00Z")),
            ("not for authentication", secret(None, false, &[]), &token,
                Err("bootstrap token abcdef is not marked for authentication (usage-bootstrap-authentication)")),
            ("wrong secret", secret(None, true, &[]), &other,
                Err("bootstrap token abcdef: the secret part does not match")),
        ];
        for (what, s, presented, want) in cases {
            let got = s.authenticate(presented, now);
            match want {
                Ok(groups) => {
                    let user = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(user.name, "system:bootstrap:abcdef", "{what}");
                    assert_eq!(user.groups, groups, "{what}");
                }
                Err(message) => {
                    assert_eq!(got.map_err(|e| e.to_string()), Err(message.to_string()), "{what}")
                }
            }
        }
    }

    #[test]
    fn extra_group_names() {
        for (g, ok) in [
            ("system:bootstrappers:kubeadm:default-node-token", true),
            ("system:bootstrappers:a", true),
            ("system:bootstrappers:", false),
            ("system:bootstrappers:a-", false),
            ("system:nodes", false),
            ("system:bootstrappers:A", false),
        ] {
            assert_eq!(valid_extra_group(g), ok, "{g}");
        }
    }
}
