//! Authentication: who sent a request, as a [`UserInfo`], with kube-apiserver's conventions.
//!
//! The [`Authenticator`] tries, in Kubernetes' order: the client certificate the TLS layer
//! verified (user = common name, groups = organizations), then a bearer token — the static
//! token file ([`StaticTokens`], kube-apiserver's `--token-auth-file`), tokens added at run
//! time ([`Authenticator::add_token`], e.g. bootstrap tokens), and ServiceAccount JWTs
//! ([`ServiceAccountVerifier`], signed by a [`TokenIssuer`]). Every authenticated user gets
//! group `system:authenticated`; with anonymous requests allowed, a request without
//! credentials is `system:anonymous` in `system:unauthenticated`.

mod bootstrap;
mod bootstrap_cache;
mod bound_objects;
mod service_account;
mod token_file;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use http::HeaderMap;
use parking_lot::RwLock;

pub use bootstrap::{
    BOOTSTRAP_GROUP_PREFIX, BOOTSTRAP_TOKEN_NAMESPACE, BOOTSTRAP_TOKEN_SECRET_PREFIX,
    BOOTSTRAP_TOKEN_SECRET_TYPE, BootstrapToken, TokenError, TokenSecret, valid_extra_group,
};
pub use bootstrap_cache::BootstrapTokens;
pub use bound_objects::BoundObjects;
pub use service_account::{
    BoundRefs, Clock, ObjectRef, ServiceAccountTokenSpec, ServiceAccountVerifier, TokenIssuer,
    key_id as service_account_key_id,
};
pub use token_file::StaticTokens;

/// The user name of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group of every authenticated user.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The superuser group: always authorized.
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
/// The group of node identities.
pub const NODES_GROUP: &str = "system:nodes";
/// The user name prefix of node identities (`system:node:<node name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The user name prefix of ServiceAccounts (`system:serviceaccount:<namespace>:<name>`).
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
/// The group of every ServiceAccount (and, with `:<namespace>`, of one namespace's).
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The group of bootstrap-token users.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The user name prefix of bootstrap-token users (`system:bootstrap:<token id>`).
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";

/// Why authentication failed or could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token file could not be read.
    #[error("reading token file {path}")]
    ReadTokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the token file is malformed.
    #[error("token file {source_name}, line {line}: {message}")]
    TokenFile {
        /// The file (or other source) name.
        source_name: String,
        /// The 1-based line the bad record starts on.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The ServiceAccount signing key was refused.
    #[error("service account signing key: {message}")]
    SigningKey {
        /// Why ring refused it.
        message: String,
    },
    /// Signing or encoding a ServiceAccount token failed.
    #[error("issuing a service account token for {subject}: {message}")]
    Issue {
        /// The token's subject.
        subject: String,
        /// What failed.
        message: String,
    },
    /// Credentials were presented but are not valid: the request is answered 401.
    #[error("{reason}")]
    Unauthorized {
        /// Why (safe to log; not meant for the client).
        reason: String,
    },
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is a rejection of presented credentials (HTTP 401).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    fn unauthorized(reason: impl Into<String>) -> Self {
        Error::Unauthorized { reason: reason.into() }
    }
}

/// An authenticated (or anonymous) user, as Kubernetes' `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (`alice`, `system:node:n1`, `system:serviceaccount:ns:sa`).
    pub name: String,
    /// A unique, stable id, when the authenticator knows one.
    pub uid: String,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
    /// Other attributes (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user named `name` in `groups`.
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        UserInfo {
            name: name.into(),
            groups: groups.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// The anonymous user: `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, [ALL_UNAUTHENTICATED])
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated`, as kube-apiserver does after authentication: not for the
    /// anonymous user, nor when `system:authenticated` or `system:unauthenticated` is present.
    pub fn with_authenticated_group(mut self) -> Self {
        if self.name != ANONYMOUS && !self.in_group(ALL_AUTHENTICATED) && !self.in_group(ALL_UNAUTHENTICATED)
        {
            self.groups.push(ALL_AUTHENTICATED.to_string());
        }
        self
    }

    /// The user of bootstrap token `token` (`<id>.<secret>`, 6 and 16 characters of `[a-z0-9]`):
    /// `system:bootstrap:<id>` in `system:bootstrappers`; `None` if `token` has not that form.
    pub fn bootstrap(token: &str, extra_groups: &[String]) -> Option<Self> {
        let (id, secret) = token.split_once('.')?;
        let ok = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !ok(id, 6) || !ok(secret, 16) {
            return None;
        }
        let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
        for group in extra_groups {
            if !groups.contains(group) {
                groups.push(group.clone());
            }
        }
        Some(UserInfo::new(format!("{BOOTSTRAP_USER_PREFIX}{id}"), groups))
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// Whether `username` is ServiceAccount `namespace`/`name` (Kubernetes' `MatchesUsername`).
pub fn matches_service_account(namespace: &str, name: &str, username: &str) -> bool {
    username
        .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == name)
}

/// The bearer token of an `Authorization` header, exactly as Kubernetes reads it: the value
/// trimmed, split at single spaces, the first part `bearer` in any case and the second part
/// non-empty. Anything else is no token (not an invalid one).
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let value = String::from_utf8_lossy(value.as_bytes());
    let mut parts = value.trim().split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// How to authenticate requests.
#[derive(Default)]
pub struct AuthenticatorConfig {
    /// Tokens of the token file.
    pub static_tokens: StaticTokens,
    /// Verifies ServiceAccount tokens, if they are accepted.
    pub service_accounts: Option<ServiceAccountVerifier>,
    /// Whether a request without credentials is served as `system:anonymous`.
    pub allow_anonymous: bool,
}

/// Authenticates requests; see the [module](self) documentation for the order.
pub struct Authenticator {
    static_tokens: StaticTokens,
    /// Tokens added at run time, by SHA-256 of the token.
    runtime_tokens: RwLock<HashMap<[u8; 32], UserInfo>>,
    service_accounts: Option<ServiceAccountVerifier>,
    /// Bootstrap token Secrets, if bootstrap tokens are accepted.
    bootstrap: Option<BootstrapTokens>,
    /// The objects ServiceAccount tokens name, if their deletion revokes the tokens.
    bound_objects: Option<BoundObjects>,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("static_tokens", &self.static_tokens.len())
            .field("runtime_tokens", &self.runtime_tokens.read().len())
            .field("service_accounts", &self.service_accounts.is_some())
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl Authenticator {
    /// An authenticator with `config`.
    pub fn new(config: AuthenticatorConfig) -> Self {
        Authenticator {
            static_tokens: config.static_tokens,
            runtime_tokens: RwLock::new(HashMap::new()),
            service_accounts: config.service_accounts,
            bootstrap: None,
            bound_objects: None,
            allow_anonymous: config.allow_anonymous,
        }
    }

    /// Accepts the bootstrap tokens `tokens` holds too (after the static and run-time tokens,
    /// before ServiceAccount tokens).
    pub fn with_bootstrap_tokens(mut self, tokens: BootstrapTokens) -> Self {
        self.bootstrap = Some(tokens);
        self
    }

    /// Accepts a ServiceAccount token only while the objects it names exist with the uids it
    /// names (its ServiceAccount, and the pod, Secret or node it is bound to), as
    /// kube-apiserver does: deleting them revokes their tokens.
    pub fn with_bound_objects(mut self, objects: BoundObjects) -> Self {
        self.bound_objects = Some(objects);
        self
    }

    /// Accepts `token` as `user` from now on (a bootstrap token, a generated admin token).
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.runtime_tokens.write().insert(token_file::token_hash(token), user);
    }

    /// Stops accepting a token added with [`add_token`](Self::add_token); whether it was there.
    pub fn remove_token(&self, token: &str) -> bool {
        self.runtime_tokens.write().remove(&token_file::token_hash(token)).is_some()
    }

    /// Who sent a request with `headers`, over a connection whose client certificate (if any)
    /// the TLS layer verified and gives as `(common name, organizations)`.
    ///
    /// `Ok(None)`: no credentials were presented and anonymous requests are not allowed (answer
    /// 401). `Err(Error::Unauthorized)`: credentials were presented but are invalid (401 too,
    /// even when anonymous requests are allowed). `Ok(Some(user))` otherwise, with
    /// `system:authenticated` added to authenticated users.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_cert: Option<(&str, &[String])>,
    ) -> Result<Option<UserInfo>> {
        if let Some((common_name, organizations)) = client_cert {
            // A certificate without a common name identifies nobody; other credentials may.
            if !common_name.is_empty() {
                let user = UserInfo::new(common_name, organizations.iter().cloned());
                return Ok(Some(user.with_authenticated_group()));
            }
        }
        match bearer_token(headers) {
            Some(token) => self.authenticate_token(&token).await.map(Some),
            None if self.allow_anonymous => Ok(Some(UserInfo::anonymous())),
            None => Ok(None),
        }
    }

    /// Who bearer token `token` identifies (with `system:authenticated` added), or why it does
    /// not identify anyone.
    pub async fn authenticate_token(&self, token: &str) -> Result<UserInfo> {
        if let Some(user) = self.static_tokens.get(token) {
            return Ok(user.clone().with_authenticated_group());
        }
        if let Some(user) = self.runtime_tokens.read().get(&token_file::token_hash(token)) {
            return Ok(user.clone().with_authenticated_group());
        }
        if let Some(tokens) = &self.bootstrap
            && let Some(result) = tokens.authenticate(token, k8s_openapi::jiff::Timestamp::now())
        {
            return result.map(UserInfo::with_authenticated_group).map_err(|e| {
                tracing::info!(error = %e, "bootstrap token refused");
                Error::unauthorized(e.to_string())
            });
        }
        if let Some(verifier) = &self.service_accounts
            && let Some((user, bound)) = verifier.verify_bound(token)?
        {
            if let Some(objects) = &self.bound_objects
                && let Err(reason) = objects.check(&bound).await
            {
                tracing::info!(user = %user.name, %reason, "service account token refused");
                return Err(Error::unauthorized(reason));
            }
            return Ok(user.with_authenticated_group());
        }
        Err(Error::unauthorized("invalid bearer token"))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(authorization).expect("valid header"));
        h
    }

    #[test]
    fn bearer_token_parsing() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("  Bearer abc  ", Some("abc")),
            ("Bearer abc def", Some("abc")),
            ("Bearer  abc", None),
            ("Bearer ", None),
            ("Bearer", None),
            ("Basic YWxpY2U6cHc=", None),
            ("Bearerabc", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer_token(&headers(value)).as_deref(), *want, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    fn authenticator(allow_anonymous: bool) -> Authenticator {
        let tokens =
            StaticTokens::parse("t1,alice,uid-1,\"dev,ops\"\nt2,bob,uid-2\n", "tokens.csv").expect("parses");
        Authenticator::new(AuthenticatorConfig {
            static_tokens: tokens,
            service_accounts: None,
            allow_anonymous,
        })
    }

    #[tokio::test]
    async fn static_and_runtime_tokens() {
        let a = authenticator(false);
        let alice = a.authenticate(&headers("Bearer t1"), None).await.expect("valid").expect("a user");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "uid-1");
        assert_eq!(alice.groups, ["dev", "ops", ALL_AUTHENTICATED]);
        let bob = a.authenticate(&headers("Bearer t2"), None).await.expect("valid").expect("a user");
        assert_eq!(bob.groups, [ALL_AUTHENTICATED]);

        let err = a.authenticate(&headers("Bearer nope"), None).await.expect_err("unknown token");
        assert!(err.is_unauthorized());
        assert_eq!(err.to_string(), "invalid bearer token");

        let boot = UserInfo::bootstrap("abcdef.0123456789abcdef", &[]).expect("bootstrap form");
        a.add_token("abcdef.0123456789abcdef", boot);
        let user = a
            .authenticate(&headers("Bearer abcdef.0123456789abcdef"), None)
            .await
            .expect("ok")
            .expect("user");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(user.groups, [BOOTSTRAPPERS_GROUP, ALL_AUTHENTICATED]);
        assert!(a.remove_token("abcdef.0123456789abcdef"));
        assert!(a.authenticate(&headers("Bearer abcdef.0123456789abcdef"), None).await.is_err());
        assert!(!a.remove_token("abcdef.0123456789abcdef"));
    }

    #[test]
    fn bootstrap_token_form() {
        assert!(UserInfo::bootstrap("abcdef.0123456789abcdef", &[]).is_some());
        for bad in
            ["abcde.0123456789abcdef", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", "abcdef.0123"]
        {
            assert!(UserInfo::bootstrap(bad, &[]).is_none(), "{bad}");
        }
        let extra = ["system:bootstrappers:kubeadm".to_string()];
        let user = UserInfo::bootstrap("abcdef.0123456789abcdef", &extra).expect("valid");
        assert_eq!(user.groups, [BOOTSTRAPPERS_GROUP, "system:bootstrappers:kubeadm"]);
    }

    #[tokio::test]
    async fn anonymous_and_missing_credentials() {
        assert_eq!(authenticator(false).authenticate(&HeaderMap::new(), None).await.expect("no error"), None);
        let anon =
            authenticator(true).authenticate(&HeaderMap::new(), None).await.expect("ok").expect("anonymous");
        assert_eq!(anon, UserInfo::anonymous());
        assert_eq!(anon.groups, [ALL_UNAUTHENTICATED]);
        // An empty bearer token is no credential: anonymous when allowed.
        let anon = authenticator(true).authenticate(&headers("Bearer "), None).await.expect("ok");
        assert_eq!(anon, Some(UserInfo::anonymous()));
        // A bad token is refused even when anonymous requests are allowed.
        assert!(authenticator(true).authenticate(&headers("Bearer bad"), None).await.is_err());
    }

    #[tokio::test]
    async fn client_certificates() {
        let a = authenticator(false);
        let orgs = vec!["system:masters".to_string()];
        let user =
            a.authenticate(&HeaderMap::new(), Some(("admin", &orgs))).await.expect("ok").expect("user");
        assert_eq!(user.name, "admin");
        assert_eq!(user.groups, ["system:masters", ALL_AUTHENTICATED]);
        // The certificate wins over a token (x509 comes first in kube-apiserver's union).
        let user =
            a.authenticate(&headers("Bearer bad"), Some(("admin", &orgs))).await.expect("ok").expect("user");
        assert_eq!(user.name, "admin");
        // No common name: the token decides.
        let user = a.authenticate(&headers("Bearer t2"), Some(("", &orgs))).await.expect("ok").expect("user");
        assert_eq!(user.name, "bob");
        assert_eq!(a.authenticate(&HeaderMap::new(), Some(("", &orgs))).await.expect("ok"), None);
    }

    #[test]
    fn authenticated_group_adder() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("alice", &[], &[ALL_AUTHENTICATED]),
            ("alice", &["dev"], &["dev", ALL_AUTHENTICATED]),
            ("alice", &[ALL_AUTHENTICATED, "dev"], &[ALL_AUTHENTICATED, "dev"]),
            ("odd", &[ALL_UNAUTHENTICATED], &[ALL_UNAUTHENTICATED]),
            (ANONYMOUS, &[], &[]),
        ];
        for (name, groups, want) in cases {
            let user = UserInfo::new(*name, groups.iter().copied()).with_authenticated_group();
            assert_eq!(user.groups, *want, "{name} {groups:?}");
        }
    }

    #[test]
    fn service_account_names() {
        assert_eq!(service_account_username("ns", "sa"), "system:serviceaccount:ns:sa");
        assert!(matches_service_account("ns", "sa", "system:serviceaccount:ns:sa"));
        assert!(!matches_service_account("ns", "sa", "system:serviceaccount:ns:sa2"));
        assert!(!matches_service_account("ns", "sa", "system:serviceaccount:ns2:sa"));
        assert!(!matches_service_account("n", "s:sa", "system:serviceaccount:ns:sa"));
        assert!(!matches_service_account("ns", "sa", "serviceaccount:ns:sa"));
    }
}
