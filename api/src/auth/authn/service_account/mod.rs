//! ServiceAccount tokens: JWTs signed with ES256 (ECDSA P-256, SHA-256), with Kubernetes'
//! claims — `iss`, `sub` (`system:serviceaccount:<ns>:<name>`), `aud`, `exp`, `iat`, `nbf`,
//! `jti` and the private `kubernetes.io` claim naming the namespace, the ServiceAccount and
//! the pod, secret or node the token is bound to.
//!
//! A [`TokenIssuer`] signs; a [`ServiceAccountVerifier`] checks the issuer, the signature
//! (any of its keys, picked by `kid`), the audiences and the validity period (with go-jose's
//! one-minute leeway), and turns the claims into a [`UserInfo`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::RwLock;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Result, SERVICE_ACCOUNTS_GROUP, UserInfo, service_account_username};
use crate::pki::sa_keys::P256_SPKI_PREFIX;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
const LEEWAY_SECONDS: i64 = 60;
/// Extra keys of ServiceAccount users.
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// The current time, as the verifier sees it (tests pass a fixed one).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Seconds since the Unix epoch (negative before it), as JWT times are written.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A reference to the object a token is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its uid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// What a ServiceAccount token says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAccountTokenSpec {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub name: String,
    /// The ServiceAccount's uid.
    pub uid: String,
    /// Who the token is for (empty: the API server's own audiences, as legacy tokens).
    pub audiences: Vec<String>,
    /// How long the token is valid, from its issue time.
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub pod: Option<ObjectRef>,
    /// The secret the token is bound to.
    pub secret: Option<ObjectRef>,
    /// The node the token is bound to (or the pod's node).
    pub node: Option<ObjectRef>,
}

/// `aud`: one string or a list (go-jose writes a single audience as a string).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn from_vec(mut auds: Vec<String>) -> Self {
        match auds.len() {
            0 => Audience::None,
            1 => Audience::One(auds.remove(0)),
            _ => Audience::Many(auds),
        }
    }

    fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a.clone()],
            Audience::Many(a) => a.clone(),
        }
    }

    fn is_none(&self) -> bool {
        matches!(self, Audience::None)
    }
}

/// The objects a verified token names: its ServiceAccount, and the pod, Secret or node it is
/// bound to. The token is valid only while they exist with these uids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundRefs {
    /// The ServiceAccount's namespace (the pod's and Secret's too).
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: ObjectRef,
    /// The pod the token is bound to.
    pub pod: Option<ObjectRef>,
    /// The Secret the token is bound to.
    pub secret: Option<ObjectRef>,
    /// The node the token is bound to.
    pub node: Option<ObjectRef>,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default)]
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
}

/// The claims of a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default, skip_serializing_if = "Audience::is_none")]
    aud: Audience,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(rename = "kubernetes.io", default, skip_serializing_if = "Option::is_none")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Kubernetes' key id of a P-256 public key (an uncompressed point): base64url of the
/// SHA-256 of its DER SubjectPublicKeyInfo. Tokens name the key that signed them with it
/// (the `kid` header).
pub fn key_id(public_key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(P256_SPKI_PREFIX);
    hasher.update(public_key);
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Signs ServiceAccount tokens. Its key can be replaced while it is shared
/// ([`set_key`](Self::set_key)): tokens issued from then on are signed with the new one.
pub struct TokenIssuer {
    issuer: String,
    key: RwLock<Arc<SigningKey>>,
    rng: SystemRandom,
}

/// A signing key and its `kid`.
struct SigningKey {
    key_pair: EcdsaKeyPair,
    key_id: String,
}

impl SigningKey {
    fn from_pkcs8(pkcs8: &[u8], rng: &SystemRandom) -> Result<Self> {
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, rng)
            .map_err(|e| Error::SigningKey { message: e.to_string() })?;
        let key_id = key_id(key_pair.public_key().as_ref());
        Ok(SigningKey { key_pair, key_id })
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("issuer", &self.issuer).field("key_id", &self.key_id()).finish()
    }
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` claim) signing with the P-256 key in PKCS#8 form.
    pub fn from_pkcs8(issuer: impl Into<String>, pkcs8: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let key = SigningKey::from_pkcs8(pkcs8, &rng)?;
        Ok(TokenIssuer { issuer: issuer.into(), key: RwLock::new(Arc::new(key)), rng })
    }

    /// Signs with the P-256 key in PKCS#8 form from now on. A refused key leaves the current
    /// one in place.
    pub fn set_key(&self, pkcs8: &[u8]) -> Result<()> {
        let key = SigningKey::from_pkcs8(pkcs8, &self.rng)?;
        *self.key.write() = Arc::new(key);
        Ok(())
    }

    /// The `iss` claim of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current key's public key (an uncompressed SEC1 point), for a
    /// [`ServiceAccountVerifier`].
    pub fn public_key(&self) -> Vec<u8> {
        self.key.read().key_pair.public_key().as_ref().to_vec()
    }

    /// The `kid` header of the tokens the current key signs.
    pub fn key_id(&self) -> String {
        self.key.read().key_id.clone()
    }

    /// A token for `spec`, issued at `now`.
    pub fn issue(&self, spec: &ServiceAccountTokenSpec, now: SystemTime) -> Result<String> {
        let subject = service_account_username(&spec.namespace, &spec.name);
        let fail = |message: String| Error::Issue { subject: subject.clone(), message };
        let issued = unix_seconds(now);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.clone(),
            aud: Audience::from_vec(spec.audiences.clone()),
            exp: Some(issued + spec.expiration_seconds),
            iat: Some(issued),
            nbf: Some(issued),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            kubernetes: Some(KubernetesClaims {
                namespace: spec.namespace.clone(),
                serviceaccount: ObjectRef { name: spec.name.clone(), uid: spec.uid.clone() },
                pod: spec.pod.clone(),
                secret: spec.secret.clone(),
                node: spec.node.clone(),
            }),
        };
        let key = self.key.read().clone();
        let header = Header { alg: "ES256".into(), kid: Some(key.key_id.clone()) };
        let signing_input = format!(
            "{}.{}",
            b64_json(&header).map_err(|e| fail(e.to_string()))?,
            b64_json(&claims).map_err(|e| fail(e.to_string()))?
        );
        let signature = key
            .key_pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| fail("ECDSA signing failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

/// base64url(JSON(value)), a JWT segment.
fn b64_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_vec(value).map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
}

/// Public keys by id: (key id, uncompressed point).
type Keys = Vec<(String, Vec<u8>)>;

/// Verifies ServiceAccount tokens. Clones share their keys: replacing them
/// ([`set_public_keys`](Self::set_public_keys)) through one replaces them in every clone.
#[derive(Clone)]
pub struct ServiceAccountVerifier {
    issuers: Vec<String>,
    audiences: Vec<String>,
    keys: Arc<RwLock<Keys>>,
    clock: Clock,
}

impl std::fmt::Debug for ServiceAccountVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountVerifier")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("keys", &self.key_ids())
            .finish()
    }
}

impl ServiceAccountVerifier {
    /// Accepts tokens from `issuers`, for at least one of `audiences` (the API server's own;
    /// a token without `aud` counts as for them), signed by one of `public_keys` (uncompressed
    /// P-256 points, e.g. [`TokenIssuer::public_key`]). The clock is the system's.
    pub fn new(issuers: Vec<String>, audiences: Vec<String>, public_keys: Vec<Vec<u8>>) -> Self {
        let keys = Arc::new(RwLock::new(with_ids(public_keys)));
        ServiceAccountVerifier { issuers, audiences, keys, clock: Arc::new(SystemTime::now) }
    }

    /// Accepts tokens signed by one of `public_keys` from now on (and by no other key), in
    /// this verifier and every clone of it.
    pub fn set_public_keys(&self, public_keys: Vec<Vec<u8>>) {
        *self.keys.write() = with_ids(public_keys);
    }

    /// The `kid`s of the keys tokens are accepted from.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.read().iter().map(|(kid, _)| kid.clone()).collect()
    }

    /// The same verifier reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The user `token` identifies. `Ok(None)` if it is not a JWT from one of our issuers
    /// (another authenticator may know it); `Err(Unauthorized)` if it is ours but invalid.
    pub fn verify(&self, token: &str) -> Result<Option<UserInfo>> {
        Ok(self.verify_bound(token)?.map(|(user, _)| user))
    }

    /// [`verify`](Self::verify), with the objects the token names, which must still exist
    /// for it to be valid ([`BoundObjects`](super::BoundObjects) checks them).
    pub fn verify_bound(&self, token: &str) -> Result<Option<(UserInfo, BoundRefs)>> {
        let unauthorized = |r: String| Error::Unauthorized { reason: r };
        if token.trim_start().starts_with('{') {
            return Ok(None);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Ok(None);
        };
        // The issuer is read before the signature is checked, only to pick the authenticator.
        let Some(payload) = URL_SAFE_NO_PAD.decode(payload_b64).ok() else {
            return Ok(None);
        };
        let Ok(claims) = serde_json::from_slice::<Claims>(&payload) else {
            return Ok(None);
        };
        if !self.issuers.contains(&claims.iss) {
            return Ok(None);
        }
        let header: Option<Header> =
            URL_SAFE_NO_PAD.decode(header_b64).ok().and_then(|h| serde_json::from_slice(&h).ok());
        let (Some(header), Ok(signature)) = (header, URL_SAFE_NO_PAD.decode(signature_b64)) else {
            return Ok(None);
        };
        let keys: Vec<Vec<u8>> = {
            let all = self.keys.read();
            match &header.kid {
                Some(kid) if !kid.is_empty() => {
                    all.iter().filter(|(k, _)| k == kid).map(|(_, key)| key.clone()).collect()
                }
                _ => all.iter().map(|(_, key)| key.clone()).collect(),
            }
        };
        if keys.is_empty() {
            return Err(unauthorized("invalid signature, no keys found".into()));
        }
        if header.alg != "ES256" {
            return Err(unauthorized(format!("unexpected signature algorithm {:?}", header.alg)));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = keys.iter().any(|key| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
                .verify(signing_input.as_bytes(), &signature)
                .is_ok()
        });
        if !verified {
            return Err(unauthorized("invalid signature".into()));
        }

        let mut token_audiences = claims.aud.to_vec();
        if token_audiences.is_empty() {
            token_audiences = self.audiences.clone();
        }
        if !self.audiences.is_empty() && !token_audiences.iter().any(|a| self.audiences.contains(a)) {
            return Err(unauthorized(format!(
                "token audiences {token_audiences:?} is invalid for the target audiences {:?}",
                self.audiences
            )));
        }
        check_times(&claims, unix_seconds((self.clock)())).map_err(|r| unauthorized(r.into()))?;
        let user = user_of(&claims)
            .ok_or_else(|| unauthorized("service account token claims are incomplete".into()))?;
        let k = claims.kubernetes.unwrap_or_default();
        let bound = BoundRefs {
            namespace: k.namespace,
            service_account: k.serviceaccount,
            pod: k.pod,
            secret: k.secret,
            node: k.node,
        };
        Ok(Some((user, bound)))
    }
}

/// Public keys with their `kid`s.
fn with_ids(public_keys: Vec<Vec<u8>>) -> Keys {
    public_keys.into_iter().map(|k| (key_id(&k), k)).collect()
}

/// go-jose's time checks, with its leeway.
fn check_times(claims: &Claims, now: i64) -> std::result::Result<(), &'static str> {
    if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet");
    }
    if claims.exp.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
        return Err("service account token has expired");
    }
    if claims.iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token was issued in the future");
    }
    Ok(())
}

/// The ServiceAccount user of verified claims.
fn user_of(claims: &Claims) -> Option<UserInfo> {
    let k = claims.kubernetes.as_ref()?;
    if k.namespace.is_empty() || k.serviceaccount.name.is_empty() {
        return None;
    }
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        if !value.is_empty() {
            extra.insert(key.to_string(), vec![value.to_string()]);
        }
    };
    if let Some(pod) = &k.pod {
        put(EXTRA_POD_NAME, &pod.name);
        put(EXTRA_POD_UID, &pod.uid);
    }
    if let Some(node) = &k.node {
        put(EXTRA_NODE_NAME, &node.name);
        put(EXTRA_NODE_UID, &node.uid);
    }
    if let Some(jti) = &claims.jti {
        put(EXTRA_CREDENTIAL_ID, &format!("JTI={jti}"));
    }
    Some(UserInfo {
        name: service_account_username(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![SERVICE_ACCOUNTS_GROUP.to_string(), format!("{SERVICE_ACCOUNTS_GROUP}:{}", k.namespace)],
        extra,
    })
}

#[cfg(test)]
mod tests;
