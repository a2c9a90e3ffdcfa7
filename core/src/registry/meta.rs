//! Metadata rules every kind shares: names, generated names, labels, annotations,
//! finalizers, owner references, and what an update may not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::object::ResourceType;
use crate::validation::{
    ErrorList, FieldError, FieldPath, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_qualified_name, validate_annotations, validate_labels,
};

/// Characters of generated name suffixes (Kubernetes avoids vowels and look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated name suffix.
const SUFFIX_LEN: usize = 5;
/// The longest generateName prefix kept (so prefix plus suffix stay within 63).
const MAX_PREFIX: usize = 58;

/// `prefix` plus a random suffix, as for `metadata.generateName`.
pub(crate) fn generate_name(prefix: &str) -> String {
    let prefix: String = prefix.chars().take(MAX_PREFIX).collect();
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes
        .iter()
        .take(SUFFIX_LEN)
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// The name rule of a kind: most use DNS subdomains; namespaces DNS labels; services
/// DNS-1035 labels; RBAC objects path segments (`system:node` is a valid ClusterRole name).
fn name_problems(t: &ResourceType, name: &str) -> Vec<String> {
    match (t.group, t.plural) {
        ("", "namespaces") => is_dns1123_label(name),
        ("", "services") => is_dns1035_label(name),
        ("rbac.authorization.k8s.io", _) => crate::validation::is_path_segment_name(name),
        _ => is_dns1123_subdomain(name),
    }
}

/// Checks metadata shared by every kind.
pub(crate) fn validate(t: &ResourceType, meta: &ObjectMeta) -> ErrorList {
    let mut errs = ErrorList::default();
    let path = FieldPath::new("metadata");
    match meta.name.as_deref() {
        None | Some("") => {
            errs.push(FieldError::required(path.child("name"), "name or generateName is required"))
        }
        Some(name) => {
            for msg in name_problems(t, name) {
                errs.push(FieldError::invalid(path.child("name"), Value::String(name.into()), &msg));
            }
        }
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, &path.child("annotations")));
    }
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        for msg in is_qualified_name(f) {
            errs.push(FieldError::invalid(path.child("finalizers").index(i), Value::String(f.clone()), &msg));
        }
    }
    let mut controllers = 0;
    for (i, o) in meta.owner_references.iter().flatten().enumerate() {
        let p = path.child("ownerReferences").index(i);
        for (field, value) in
            [("apiVersion", &o.api_version), ("kind", &o.kind), ("name", &o.name), ("uid", &o.uid)]
        {
            if value.is_empty() {
                errs.push(FieldError::required(p.child(field), ""));
            }
        }
        if o.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.push(FieldError::invalid(
            path.child("ownerReferences"),
            Value::Null,
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// Checks what an update changes in metadata: no new finalizers on an object being deleted.
pub(crate) fn validate_update(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let mut errs = ErrorList::default();
    if old.deletion_timestamp.is_some() {
        let old_f = old.finalizers.as_deref().unwrap_or(&[]);
        if new.finalizers.iter().flatten().any(|f| !old_f.contains(f)) {
            errs.push(FieldError::forbidden(
                FieldPath::new("metadata").child("finalizers"),
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    errs
}

/// Copies what an update may not change (uid, creation, deletion, generation) from `old`.
pub(crate) fn keep_system_fields(new: &mut ObjectMeta, old: &ObjectMeta) {
    new.uid = old.uid.clone();
    new.creation_timestamp = old.creation_timestamp.clone();
    new.deletion_timestamp = old.deletion_timestamp.clone();
    new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    new.generation = old.generation;
    new.generate_name = old.generate_name.clone();
    new.self_link = None;
}

/// Empty labels, annotations, finalizers and owner references are absent, as Kubernetes'
/// encoding (`omitempty`) makes them: an update that only empties them changes nothing.
pub(crate) fn drop_empty(meta: &mut ObjectMeta) {
    if meta.labels.as_ref().is_some_and(|m| m.is_empty()) {
        meta.labels = None;
    }
    if meta.annotations.as_ref().is_some_and(|m| m.is_empty()) {
        meta.annotations = None;
    }
    if meta.finalizers.as_ref().is_some_and(|m| m.is_empty()) {
        meta.finalizers = None;
    }
    if meta.owner_references.as_ref().is_some_and(|m| m.is_empty()) {
        meta.owner_references = None;
    }
    if meta.managed_fields.as_ref().is_some_and(|m| m.is_empty()) {
        meta.managed_fields = None;
    }
}
