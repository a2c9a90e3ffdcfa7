//! Request body decoding as the API server does it (`flotilla_api::server::fuzzing`): the
//! media type from `Content-Type`, then the body as JSON, YAML or Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`: the `k8s\0` envelope, the object decoded with the
//! descriptor of its `apiVersion`/`kind` and transcoded to JSON), into what each handler
//! reads: an object (create, update), DeleteOptions merged with the query's, or a Binding,
//! Eviction, Scale, TokenRequest or SelfSubjectAccessReview. A decoded object then goes
//! through its kind's `normalize` and `validate`, as the registry takes it.
//!
//! Input: a byte choosing the `Content-Type`, a byte choosing the document, then the body.
//!
//! Properties: nothing panics; a refusal is a 400 or 415 `Status`; a decoded object's JSON
//! encoding decodes back to it; a protobuf body decodes to the same object as the JSON it
//! transcodes to sent as `application/json` (both paths agree); a DeleteOptions body keeps
//! the query's grace period unless it sets one, and its `dryRun` makes the delete a dry run.
#![no_main]

use std::sync::{Arc, OnceLock};

use flotilla_api::server::fuzzing::{self, Format};
use flotilla_core::object::{DynamicObject, KindRegistry, KindStrategy};
use flotilla_core::registry::{DeleteOptions, PropagationPolicy};
use http::{HeaderMap, HeaderValue, header};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::api::policy::v1::Eviction;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `Content-Type`s clients send (`None`: no header, which means JSON).
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/yaml"),
    Some("application/vnd.kubernetes.protobuf"),
    Some("application/json; charset=utf-8"),
    Some("application/x-yaml"),
    Some("text/yaml"),
    Some("application/vnd.kubernetes.protobuf; charset=binary"),
    Some("*/*"),
    Some("text/plain"),
    Some(""),
    Some("APPLICATION/YAML"),
];

fn strategies() -> &'static Vec<Arc<dyn KindStrategy>> {
    static S: OnceLock<Vec<Arc<dyn KindStrategy>>> = OnceLock::new();
    S.get_or_init(|| {
        let kinds = KindRegistry::builtin();
        let types: Vec<_> = kinds.types().collect();
        types.iter().filter_map(|t| kinds.get(t.group, t.plural).cloned()).collect()
    })
}

fn refused(what: &str, e: &flotilla_api::server::Error) {
    assert!(matches!(e.code(), 400 | 415), "{what} refused with {}: {e}", e.code());
}

/// The object body of a create or update.
fn object(body: &[u8], format: Format) {
    let obj = match fuzzing::decode_object(body, format) {
        Ok(obj) => obj,
        Err(e) => return refused("object", &e),
    };
    let json = serde_json::to_vec(&obj).expect("a decoded object encodes");
    let again: DynamicObject = serde_json::from_slice(&json).expect("an encoded object decodes");
    assert_eq!(again, obj, "JSON round trip of {}", String::from_utf8_lossy(&json));
    if format == Format::Protobuf {
        let transcoded = fuzzing::protobuf_to_json(body).expect("a body that decoded transcodes");
        let bytes = serde_json::to_vec(&transcoded).expect("JSON encodes");
        let as_json = fuzzing::decode_object(&bytes, Format::Json).expect("the transcoded JSON decodes");
        assert_eq!(as_json, obj, "protobuf and JSON decode differently");
    }
    let Some(strategy) = strategies().iter().find(|s| {
        let t = s.resource_type();
        t.kind == obj.kind && t.api_version() == obj.api_version
    }) else {
        return;
    };
    // The registry refuses what does not normalize (400/422); either way nothing panics.
    if let Ok((normalized, _unknown)) = strategy.normalize(obj.clone()) {
        let _ = strategy.validate(&normalized, None);
        let _ = strategy.validate(&normalized, Some(&obj));
    }
}

/// A DELETE body merged into the query's options (`gracePeriodSeconds=3&propagationPolicy=Background`).
fn delete_options(body: &[u8], format: Format) {
    let query = DeleteOptions {
        grace_period_seconds: Some(3),
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let merged = match fuzzing::decode_delete_options(body, format, query.clone()) {
        Ok(m) => m,
        Err(e) => return refused("DeleteOptions", &e),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(merged, query, "an empty body changes nothing");
        return;
    }
    if format != Format::Json {
        return;
    }
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(body) else { return };
    let grace = b.get("gracePeriodSeconds").and_then(Value::as_i64).or(query.grace_period_seconds);
    assert_eq!(merged.grace_period_seconds, grace, "grace period of {b:?}");
    let dry_run = b.get("dryRun").and_then(Value::as_array).is_some_and(|d| !d.is_empty());
    assert_eq!(merged.dry_run, dry_run, "dryRun of {b:?}");
}

fn document<T: for<'de> serde::Deserialize<'de>>(body: &[u8], format: Format, what: &str) {
    if let Err(e) = fuzzing::decode_document::<T>(body, format, what) {
        refused(what, &e);
    }
}

/// `kubectl auth can-i` sends its review in protobuf; the server reads it through the envelope.
fn access_review(body: &[u8], format: Format) {
    if format != Format::Protobuf {
        return document::<SelfSubjectAccessReview>(body, format, "SelfSubjectAccessReview");
    }
    match fuzzing::protobuf_to_json(body) {
        Ok(v) => {
            let _ = serde_json::from_value::<SelfSubjectAccessReview>(v);
        }
        Err(e) => refused("SelfSubjectAccessReview", &e),
    }
}

fuzz_target!(|data: &[u8]| {
    let [ct, what, body @ ..] = data else { return };
    let mut headers = HeaderMap::new();
    if let Some(ct) = CONTENT_TYPES[usize::from(*ct) % CONTENT_TYPES.len()] {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let format = match fuzzing::body_format(&headers) {
        Ok(f) => f,
        Err(e) => return refused("Content-Type", &e),
    };
    match what % 7 {
        0 => object(body, format),
        1 => delete_options(body, format),
        2 => document::<Binding>(body, format, "Binding"),
        3 => document::<Eviction>(body, format, "Eviction"),
        4 => document::<Value>(body, format, "Scale"),
        5 => document::<Value>(body, format, "TokenRequest"),
        _ => access_review(body, format),
    }
});
