//! The pod template hash that names a Deployment's ReplicaSets, and template comparison that
//! ignores it. See the [module docs](super) for why the hash differs from Kubernetes'.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::POD_TEMPLATE_HASH_LABEL;

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// Kubernetes' `SafeEncodeString` alphabet: no vowels (no words) and no look-alike characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-32a, the hash Kubernetes uses for pod templates.
struct Fnv32a(u32);

impl Fnv32a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(FNV32_PRIME);
        }
    }
}

/// The `pod-template-hash` of `template` given the Deployment's `status.collisionCount`:
/// FNV-32a over the template's JSON, then (if set) the collision count as Kubernetes'
/// `ComputeHash` appends it (an 8-byte buffer holding it as a little-endian `u32`), rendered in
/// decimal and mapped through `SafeEncodeString`.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h = Fnv32a(FNV32_OFFSET);
    let json = serde_json::to_vec(template).expect("a pod template has string map keys, so it serializes");
    h.write(&json);
    if let Some(count) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(count as u32).to_le_bytes());
        h.write(&buf);
    }
    safe_encode(&h.0.to_string())
}

/// Kubernetes' `rand.SafeEncodeString`: each character replaced by one of [`ALPHANUMS`].
fn safe_encode(s: &str) -> String {
    s.chars().map(|c| char::from(ALPHANUMS[c as usize % ALPHANUMS.len()])).collect()
}

/// Whether two pod templates are equal once their `pod-template-hash` labels are removed
/// (Kubernetes' `EqualIgnoreHash`). As with Kubernetes' semantic equality, an absent field and
/// an empty one (map, list or object) compare equal.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    prune(&mut v);
    v
}

/// Removes nulls, empty lists and empty objects, bottom-up.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(items) => {
            for item in items.iter_mut() {
                if !prune(item) {
                    *item = Value::Null;
                }
            }
            !items.is_empty()
        }
        Value::Object(fields) => {
            fields.retain(|_, field| prune(field));
            !fields.is_empty()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).expect("test template")
    }

    fn web() -> PodTemplateSpec {
        template(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "web:1"}]}
        }))
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let h = compute_hash(&web(), None);
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)), "{h}");
        // Pinned: a change here renames the ReplicaSets every existing Deployment would create,
        // and breaks nothing else (new ReplicaSets are found by template). The value is
        // FNV-32a of `{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":
        // "web:1","name":"c"}]}}`, checked independently.
        assert_eq!(h, "5d98bb5557");
        assert_eq!(compute_hash(&web(), Some(1)), "7c99bd6484");
    }

    #[test]
    fn hash_changes_with_template_and_collision_count() {
        let mut other = web();
        other.spec.as_mut().expect("spec").containers[0].image = Some("web:2".into());
        let h = compute_hash(&web(), None);
        assert_ne!(h, compute_hash(&other, None));
        let c0 = compute_hash(&web(), Some(0));
        let c1 = compute_hash(&web(), Some(1));
        assert_ne!(h, c0, "a collision count of 0 is still hashed, as in Kubernetes");
        assert_ne!(c0, c1);
    }

    #[test]
    fn fnv32a_matches_reference_vectors() {
        let mut h = Fnv32a(FNV32_OFFSET);
        h.write(b"");
        assert_eq!(h.0, 0x811c_9dc5);
        let mut h = Fnv32a(FNV32_OFFSET);
        h.write(b"a");
        assert_eq!(h.0, 0xe40c_292c);
        let mut h = Fnv32a(FNV32_OFFSET);
        h.write(b"foobar");
        assert_eq!(h.0, 0xbf9c_f968);
    }

    #[test]
    fn safe_encode_maps_digits_like_kubernetes() {
        // '0' is 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
    }

    #[test]
    fn equality_ignores_the_hash_label_and_empty_fields() {
        let mut labelled = web();
        labelled
            .metadata
            .as_mut()
            .expect("meta")
            .labels
            .as_mut()
            .expect("labels")
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        assert!(equal_ignore_hash(&web(), &labelled));
        let with_empty = template(json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "web:1", "env": []}]}
        }));
        assert!(equal_ignore_hash(&web(), &with_empty));
        let mut other = web();
        other.spec.as_mut().expect("spec").containers[0].image = Some("web:2".into());
        assert!(!equal_ignore_hash(&web(), &other));
    }
}
