//! Tests of ServiceAccount token signing and verification.

use ring::rand::SystemRandom;

use super::*;

const ISSUER: &str = "https://flotilla.local";
const AUDIENCE: &str = "https://flotilla.local";

fn pkcs8() -> Vec<u8> {
    let rng = SystemRandom::new();
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generates").as_ref().to_vec()
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
    ServiceAccountVerifier::new(vec![ISSUER.into()], vec![AUDIENCE.into()], vec![issuer.public_key()])
        .with_clock(Arc::new(move || at(now)))
}

fn decode_part(token: &str, part: usize) -> serde_json::Value {
    let segment = token.split('.').nth(part).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

fn decode_claims(token: &str) -> serde_json::Value {
    decode_part(token, 1)
}

fn decode_header(token: &str) -> serde_json::Value {
    decode_part(token, 0)
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
    let header = decode_header(&token);
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
        vec![old.public_key(), new.public_key()],
    )
    .with_clock(Arc::new(|| at(1_000_001)));
    for issuer in [&old, &new] {
        let token = issuer.issue(&spec(), at(1_000_000)).expect("signs");
        assert!(v.verify(&token).expect("valid").is_some());
    }
    let err = TokenIssuer::from_pkcs8(ISSUER, b"not a key").expect_err("refused");
    assert!(matches!(err, Error::SigningKey { .. }));
}

#[test]
fn keys_replaced_while_shared_take_effect_for_every_holder() {
    let (old_key, new_key) = (pkcs8(), pkcs8());
    let issuer = TokenIssuer::from_pkcs8(ISSUER, &old_key).expect("key");
    let old_public = issuer.public_key();
    let v = verifier(&issuer, 1_000_001);
    let shared = v.clone();
    let before = issuer.issue(&spec(), at(1_000_000)).expect("signs");

    issuer.set_key(&new_key).expect("a valid key");
    let new_public = issuer.public_key();
    assert_ne!(old_public, new_public);
    let after = issuer.issue(&spec(), at(1_000_000)).expect("signs");
    assert_eq!(decode_header(&after)["kid"], key_id(&new_public));
    // Not trusted yet: named by its kid, the new key is unknown to the verifier.
    assert_eq!(v.verify(&after).expect_err("unknown key").to_string(), "invalid signature, no keys found");

    // Trusting both through one clone trusts both in the other.
    shared.set_public_keys(vec![new_public.clone(), old_public.clone()]);
    assert_eq!(v.key_ids(), vec![key_id(&new_public), key_id(&old_public)]);
    for token in [&before, &after] {
        assert!(v.verify(token).expect("valid").is_some());
    }
    // Retiring the old key refuses what it signed.
    shared.set_public_keys(vec![new_public]);
    assert!(v.verify(&before).is_err());
    assert!(v.verify(&after).expect("valid").is_some());

    // A refused key leaves the current one signing.
    assert!(issuer.set_key(b"not a key").is_err());
    let again = issuer.issue(&spec(), at(1_000_000)).expect("signs");
    assert!(v.verify(&again).expect("valid").is_some());
}
