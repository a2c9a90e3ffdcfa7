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
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Result, SERVICE_ACCOUNTS_GROUP, UserInfo, service_account_username};

/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
const LEEWAY_SECONDS: i64 = 60;
/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
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

/// Kubernetes' key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
fn key_id(public_key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(P256_SPKI_PREFIX);
    hasher.update(public_key);
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Signs ServiceAccount tokens.
pub struct TokenIssuer {
    issuer: String,
    key_pair: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("issuer", &self.issuer).field("key_id", &self.key_id).finish()
    }
}

impl TokenIssuer {
    /// An issuer named `issuer` (the `iss` claim) signing with the P-256 key in PKCS#8 form.
    pub fn from_pkcs8(issuer: impl Into<String>, pkcs8: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| Error::SigningKey { message: e.to_string() })?;
        let key_id = key_id(key_pair.public_key().as_ref());
        Ok(TokenIssuer { issuer: issuer.into(), key_pair, key_id, rng })
    }

    /// The `iss` claim of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key (an uncompressed SEC1 point), for a [`ServiceAccountVerifier`].
    pub fn public_key(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The `kid` header of the tokens.
    pub fn key_id(&self) -> &str {
        &self.key_id
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
        let header = Header { alg: "ES256".into(), kid: Some(self.key_id.clone()) };
        let signing_input = format!(
            "{}.{}",
            b64_json(&header).map_err(|e| fail(e.to_string()))?,
            b64_json(&claims).map_err(|e| fail(e.to_string()))?
        );
        let signature = self
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

/// Verifies ServiceAccount tokens.
#[derive(Clone)]
pub struct ServiceAccountVerifier {
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// (key id, uncompressed point).
    keys: Vec<(String, Vec<u8>)>,
    clock: Clock,
}

impl std::fmt::Debug for ServiceAccountVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountVerifier")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceAccountVerifier {
    /// Accepts tokens from `issuers`, for at least one of `audiences` (the API server's own;
    /// a token without `aud` counts as for them), signed by one of `public_keys` (uncompressed
    /// P-256 points, e.g. [`TokenIssuer::public_key`]). The clock is the system's.
    pub fn new(issuers: Vec<String>, audiences: Vec<String>, public_keys: Vec<Vec<u8>>) -> Self {
        let keys = public_keys.into_iter().map(|k| (key_id(&k), k)).collect();
        ServiceAccountVerifier { issuers, audiences, keys, clock: Arc::new(SystemTime::now) }
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
        let keys: Vec<&(String, Vec<u8>)> = match &header.kid {
            Some(kid) if !kid.is_empty() => self.keys.iter().filter(|(k, _)| k == kid).collect(),
            _ => self.keys.iter().collect(),
        };
        if keys.is_empty() {
            return Err(unauthorized("invalid signature, no keys found".into()));
        }
        if header.alg != "ES256" {
            return Err(unauthorized(format!("unexpected signature algorithm {:?}", header.alg)));
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = keys.iter().any(|(_, key)| {
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
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    const ISSUER: &str = "https://flotilla.local";
    const AUDIENCE: &str = "https://flotilla.local";

    fn pkcs8() -> Vec<u8> {
        let rng = SystemRandom::new();
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generates")
            .as_ref()
            .to_vec()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(seconds)
    }

    fn spec() -> ServiceAccountTokenSpec {
        ServiceAccountTokenSpec {
            namespace: "team".into(),
            name: "builder".into(),
            uid: "sa-uid".into(),
            audiences: vec![AUDIENCE.into()],
            expiration_seconds: 3600,
            pod: Some(ObjectRef { name: "web-1".into(), uid: "pod-uid".into() }),
            secret: None,
            node: Some(ObjectRef { name: "n1".into(), uid: "node-uid".into() }),
        }
    }

    fn verifier(issuer: &TokenIssuer, now: u64) -> ServiceAccountVerifier {
        ServiceAccountVerifier::new(
            vec![ISSUER.into()],
            vec![AUDIENCE.into()],
            vec![issuer.public_key().to_vec()],
        )
        .with_clock(Arc::new(move || at(now)))
    }

    fn decode_claims(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).expect("three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
    }

    #[test]
    fn issued_tokens_have_kubernetes_claims() {
        let issuer = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let token = issuer.issue(&spec(), at(1_000_000)).expect("signs");
        let claims = decode_claims(&token);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "system:serviceaccount:team:builder");
        assert_eq!(claims["aud"], AUDIENCE, "one audience is written as a string");
        assert_eq!((claims["iat"].as_i64(), claims["nbf"].as_i64()), (Some(1_000_000), Some(1_000_000)));
        assert_eq!(claims["exp"].as_i64(), Some(1_003_600));
        assert_eq!(claims["kubernetes.io"]["namespace"], "team");
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web-1");
        assert!(claims["kubernetes.io"].get("secret").is_none());
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(token.split('.').next().expect("header")).expect("base64url"),
        )
        .expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], issuer.key_id());
        assert_eq!(issuer.key_id().len(), 43, "base64url of a SHA-256");
    }

    #[test]
    fn verified_token_gives_the_service_account_user() {
        let issuer = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let token = issuer.issue(&spec(), at(1_000_000)).expect("signs");
        let user = verifier(&issuer, 1_000_100).verify(&token).expect("valid").expect("ours");
        assert_eq!(user.name, "system:serviceaccount:team:builder");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:team"]);
        assert_eq!(user.extra[EXTRA_POD_NAME], ["web-1"]);
        assert_eq!(user.extra[EXTRA_POD_UID], ["pod-uid"]);
        assert_eq!(user.extra[EXTRA_NODE_NAME], ["n1"]);
        assert!(user.extra[EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));
    }

    /// (verifier time, expected error) around a token issued at 1_000_000 for an hour.
    #[test]
    fn validity_period_with_leeway() {
        let issuer = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let token = issuer.issue(&spec(), at(1_000_000)).expect("signs");
        let cases: &[(u64, Option<&str>)] = &[
            (1_000_000, None),
            (1_003_600 + 60, None),
            (1_003_600 + 61, Some("service account token has expired")),
            (1_000_000 - 60, None),
            (1_000_000 - 61, Some("service account token is not valid yet")),
        ];
        for (now, want) in cases {
            let got = verifier(&issuer, *now).verify(&token);
            match want {
                None => assert!(got.expect("valid").is_some(), "at {now}"),
                Some(msg) => assert_eq!(got.expect_err("invalid").to_string(), *msg, "at {now}"),
            }
        }
    }

    #[test]
    fn forged_and_foreign_tokens() {
        let issuer = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let other = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let now = 1_000_000;
        let v = verifier(&issuer, now + 1);
        let token = issuer.issue(&spec(), at(now)).expect("signs");

        // Signed by another key with the same issuer: no key has that kid.
        let forged = other.issue(&spec(), at(now)).expect("signs");
        assert_eq!(v.verify(&forged).expect_err("forged").to_string(), "invalid signature, no keys found");

        // Claims changed after signing.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = decode_claims(&token);
        claims["kubernetes.io"]["serviceaccount"]["name"] = "admin".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json")),
            parts[2]
        );
        assert_eq!(v.verify(&tampered).expect_err("tampered").to_string(), "invalid signature");

        // Someone else's signature pasted onto our header and claims.
        let foreign_sig = forged.split('.').nth(2).expect("signature");
        let spliced = format!("{}.{}.{foreign_sig}", parts[0], parts[1]);
        assert_eq!(v.verify(&spliced).expect_err("spliced").to_string(), "invalid signature");

        // Another issuer: not ours at all (no error, another authenticator may know it).
        let stranger = TokenIssuer::from_pkcs8("https://elsewhere", &pkcs8()).expect("key");
        let foreign = stranger.issue(&spec(), at(now)).expect("signs");
        assert_eq!(v.verify(&foreign).expect("not an error"), None);
        for junk in ["", "abc", "a.b", "a.b.c", "{\"iss\":\"x\"}", "..."] {
            assert_eq!(v.verify(junk).expect("not an error"), None, "{junk:?}");
        }

        // Another audience.
        let mut wrong_aud = spec();
        wrong_aud.audiences = vec!["vault".into()];
        let t = issuer.issue(&wrong_aud, at(now)).expect("signs");
        assert_eq!(
            v.verify(&t).expect_err("audience").to_string(),
            "token audiences [\"vault\"] is invalid for the target audiences [\"https://flotilla.local\"]"
        );
        // No audience: the API server's own (legacy tokens).
        let mut no_aud = spec();
        no_aud.audiences.clear();
        let t = issuer.issue(&no_aud, at(now)).expect("signs");
        assert!(v.verify(&t).expect("valid").is_some());
        // Several audiences, one of them ours.
        let mut many = spec();
        many.audiences = vec!["vault".into(), AUDIENCE.into()];
        let t = issuer.issue(&many, at(now)).expect("signs");
        assert_eq!(decode_claims(&t)["aud"], serde_json::json!(["vault", AUDIENCE]));
        assert!(v.verify(&t).expect("valid").is_some());
    }

    #[test]
    fn key_rotation_and_bad_keys() {
        let old = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let new = TokenIssuer::from_pkcs8(ISSUER, &pkcs8()).expect("key");
        let v = ServiceAccountVerifier::new(
            vec![ISSUER.into()],
            vec![AUDIENCE.into()],
            vec![old.public_key().to_vec(), new.public_key().to_vec()],
        )
        .with_clock(Arc::new(|| at(1_000_001)));
        for issuer in [&old, &new] {
            let token = issuer.issue(&spec(), at(1_000_000)).expect("signs");
            assert!(v.verify(&token).expect("valid").is_some());
        }
        let err = TokenIssuer::from_pkcs8(ISSUER, b"not a key").expect_err("refused");
        assert!(matches!(err, Error::SigningKey { .. }));
    }
}
