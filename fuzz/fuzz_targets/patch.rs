//! Patch application (`patch::apply_patch`, what `PATCH` requests go through): JSON patch,
//! JSON merge patch and strategic merge patch with a built-in kind's schema.
//!
//! Input: a selector byte (patch type and kind), then the stored object's JSON and the patch
//! body separated by the first NUL byte. Properties: nothing panics (JSON patch, merge
//! patch, strategic merge patch with each schema, apply patch refused); a merge patch is
//! idempotent (RFC 7386: applying it twice equals applying it once).
#![no_main]

use flotilla_core::patch::{PatchType, apply_patch, builtin_schema};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// (group, version, kind) of every built-in kind with a strategic merge schema, plus none.
const KINDS: &[(&str, &str, &str)] = &[
    ("", "v1", "Pod"),
    ("", "v1", "Service"),
    ("", "v1", "Node"),
    ("", "v1", "ConfigMap"),
    ("", "v1", "Namespace"),
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "ReplicaSet"),
    ("", "v1", "Endpoints"),
    ("", "", ""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (original, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b"{}"[..], rest),
    };
    let Ok(original) = serde_json::from_slice::<Value>(original) else { return };
    let patch_type = match selector & 3 {
        0 => PatchType::Json,
        1 => PatchType::Merge,
        2 => PatchType::StrategicMerge,
        _ => PatchType::Apply,
    };
    let (group, version, kind) = KINDS[usize::from(selector >> 2) % KINDS.len()];
    let schema = builtin_schema(group, version, kind);
    let Ok(once) = apply_patch(&original, patch_type, body, schema) else { return };
    if patch_type == PatchType::Merge {
        let twice =
            apply_patch(&once, patch_type, body, schema).expect("a merge patch that applied applies again");
        assert_eq!(twice, once, "merge patch is idempotent");
    }
});
