//! Object decoding: a request body in JSON or YAML, decoded the way the API server decodes it
//! (`serde_json`/`serde_yaml_ng` into `DynamicObject`, as `flotilla-api`'s `server::body::object`
//! does), then handed to a built-in kind's strategy as the registry does on create and update:
//! normalize (typed decode, defaults, re-encode), validate, selectable fields, table row.
//!
//! Properties: nothing panics; a normalized object normalizes to itself (defaults are
//! idempotent, so an update that changes nothing stays unchanged); the JSON encoding of a
//! decoded object decodes back to the same object.
#![no_main]

use std::sync::OnceLock;

use flotilla_core::object::{DynamicObject, KindRegistry, KindStrategy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use libfuzzer_sys::fuzz_target;

fn strategies() -> &'static Vec<std::sync::Arc<dyn KindStrategy>> {
    static S: OnceLock<Vec<std::sync::Arc<dyn KindStrategy>>> = OnceLock::new();
    S.get_or_init(|| {
        let kinds = KindRegistry::builtin();
        let types: Vec<_> = kinds.types().collect();
        types.iter().filter_map(|t| kinds.get(t.group, t.plural).cloned()).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // First byte: bit 0 picks YAML, the rest picks the kind when the body names none we know.
    let Some((&selector, body)) = data.split_first() else { return };
    let decoded: Option<DynamicObject> = if selector & 1 == 1 {
        serde_yaml_ng::from_slice(body).ok()
    } else {
        serde_json::from_slice(body).ok()
    };
    let Some(obj) = decoded else { return };

    // The encoded object decodes back to itself.
    let bytes = serde_json::to_vec(&obj).expect("a decoded object encodes");
    let again: DynamicObject = serde_json::from_slice(&bytes).expect("an encoded object decodes");
    assert_eq!(again, obj, "JSON round trip of {}", String::from_utf8_lossy(&bytes));

    let all = strategies();
    let strategy = all
        .iter()
        .find(|s| s.resource_type().kind == obj.kind)
        .unwrap_or(&all[usize::from(selector >> 1) % all.len()]);
    let now = Time(Default::default());
    let Ok((normalized, _unknown)) = strategy.normalize(obj.clone()) else {
        // The registry stops here with a 400/422; the other calls must still not panic.
        let _ = strategy.validate(&obj, None);
        let _ = strategy.selectable_fields(&obj);
        let _ = strategy.row(&obj, &now);
        return;
    };
    let _ = strategy.validate(&normalized, None);
    let _ = strategy.validate(&normalized, Some(&obj));
    let _ = strategy.selectable_fields(&normalized);
    let row = strategy.row(&normalized, &now);
    assert_eq!(row.len(), strategy.columns().len(), "one cell per column");
    let (twice, unknown) = strategy.normalize(normalized.clone()).expect("a normalized object decodes");
    assert!(unknown.is_empty(), "normalized object has unknown fields {unknown:?}");
    assert_eq!(twice, normalized, "normalize is idempotent for {}", strategy.resource_type().kind);
});
