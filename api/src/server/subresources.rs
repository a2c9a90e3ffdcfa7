//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale), `pods/binding` and
//! `pods/eviction`.

use axum::response::Response;
use flotilla_core::object::DynamicObject;
use flotilla_core::patch::{PatchType, apply_patch};
use flotilla_core::registry::{self, DeleteOptions, Precondition, Subresource, WriteOptions};
use flotilla_core::selector::LabelSelector;
use flotilla_core::validation::{ErrorList, FieldError, FieldPath};
use http::StatusCode;
use k8s_openapi::api::core::v1::Binding;
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Value, json};

use super::body;
use super::resources::{Request, patch_type, success};
use super::respond;
use super::{Error, Result, Shared};

/// How many times a scale change re-reads the object after losing a race.
const SCALE_RETRIES: usize = 8;

/// The Scale of a workload object.
fn scale_of(obj: &DynamicObject) -> Value {
    let spec = obj.data.get("spec");
    let replicas = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64).unwrap_or(1);
    let status_replicas =
        obj.data.get("status").and_then(|s| s.get("replicas")).and_then(Value::as_i64).unwrap_or(0);
    let selector = spec
        .and_then(|s| s.get("selector"))
        .and_then(|s| serde_json::from_value::<meta::LabelSelector>(s.clone()).ok())
        .and_then(|s| LabelSelector::from_k8s(&s, &FieldPath::new("spec.selector")).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut metadata = json!({
        "name": obj.name(),
        "uid": obj.uid(),
        "resourceVersion": obj.resource_version(),
    });
    if !obj.namespace().is_empty() {
        metadata["namespace"] = obj.namespace().into();
    }
    if let Some(ts) = &obj.metadata.creation_timestamp {
        metadata["creationTimestamp"] = serde_json::to_value(ts).unwrap_or(Value::Null);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": { "replicas": replicas },
        "status": { "replicas": status_replicas, "selector": selector },
    })
}

/// `spec.replicas` of a Scale, checked.
fn replicas_of(scale: &Value, name: &str) -> Result<i64> {
    let path = FieldPath::new("spec").child("replicas");
    let invalid = |value: Value, detail: &str| {
        let mut errors = ErrorList::new();
        errors.push(FieldError::invalid(path.clone(), value, detail));
        Error::Registry(registry::Error::Invalid { kind: "Scale".into(), name: name.into(), errors })
    };
    match scale.get("spec").and_then(|s| s.get("replicas")) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => Err(invalid(v.clone(), "must be greater than or equal to 0")),
            Some(n) if i32::try_from(n).is_err() => Err(invalid(v.clone(), "must fit in a 32-bit integer")),
            Some(n) => Ok(n),
            None => Err(invalid(v.clone(), "must be an integer")),
        },
    }
}

/// `GET .../scale`
pub(crate) async fn get_scale(shared: &Shared, req: &Request) -> Result<Response> {
    let obj = shared.registry.get(&req.t, req.namespace(), req.name(), &req.query.get_options()).await?;
    Ok(respond::json(StatusCode::OK, &scale_of(&obj), &[]))
}

/// `PUT .../scale`: a Scale whose `metadata.resourceVersion`, when set, must be current.
pub(crate) async fn update_scale(shared: &Shared, req: &Request) -> Result<Response> {
    let opts = req.query.write_options()?;
    let (bytes, format) = (&req.body, req.format()?);
    let scale: Value = body::document(bytes, format, "Scale")?;
    let name = req.name().to_string();
    let replicas = replicas_of(&scale, &name)?;
    let rv = scale.get("metadata").and_then(|m| m.get("resourceVersion")).and_then(Value::as_str);
    let mut patch = json!({ "spec": { "replicas": replicas } });
    if let Some(rv) = rv.filter(|rv| !rv.is_empty()) {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    let obj = write_replicas(shared, req, &name, &patch, &opts).await?;
    Ok(respond::json(StatusCode::OK, &scale_of(&obj), &[]))
}

/// `PATCH .../scale`: the patch applies to the Scale; its replicas go to the object.
pub(crate) async fn patch_scale(shared: &Shared, req: &Request) -> Result<Response> {
    let opts = req.query.write_options()?;
    let pt = patch_type(&req.headers)?;
    if pt == PatchType::Apply {
        return Err(Error::UnsupportedMediaType(
            "application/apply-patch+yaml (server-side apply of a scale subresource is not supported)".into(),
        ));
    }
    let bytes = &req.body;
    let name = req.name().to_string();
    for _ in 0..SCALE_RETRIES {
        let obj = shared.registry.get(&req.t, req.namespace(), &name, &Default::default()).await?;
        let current = scale_of(&obj);
        let patched = apply_patch(&current, pt, bytes, None).map_err(|e| Error::BadRequest(e.to_string()))?;
        let replicas = replicas_of(&patched, &name)?;
        let asked_rv = patched.get("metadata").and_then(|m| m.get("resourceVersion")).and_then(Value::as_str);
        // A patch naming a resourceVersion is a precondition; otherwise we guard against races
        // ourselves and retry.
        let (rv, retry) = match asked_rv {
            Some(rv) if rv != obj.resource_version() => {
                return Err(registry::Error::Conflict {
                    resource: format!("{}.{}", req.t.plural, req.t.group),
                    name,
                    reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
                }
                .into());
            }
            Some(rv) => (rv.to_string(), false),
            None => (obj.resource_version().to_string(), true),
        };
        let patch = json!({ "metadata": { "resourceVersion": rv }, "spec": { "replicas": replicas } });
        match write_replicas(shared, req, &name, &patch, &opts).await {
            Ok(obj) => return Ok(respond::json(StatusCode::OK, &scale_of(&obj), &[])),
            Err(Error::Registry(registry::Error::Conflict { .. })) if retry => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Registry(registry::Error::Conflict {
        resource: req.t.plural.to_string(),
        name,
        reason: "the object kept changing; try again".into(),
    }))
}

async fn write_replicas(
    shared: &Shared,
    req: &Request,
    name: &str,
    patch: &Value,
    opts: &WriteOptions,
) -> Result<DynamicObject> {
    let bytes = serde_json::to_vec(patch).map_err(|e| Error::Internal(e.to_string()))?;
    let w = shared
        .registry
        .patch(&req.t, req.namespace(), name, PatchType::Merge, &bytes, Subresource::Main, opts)
        .await?;
    Ok(w.object)
}

/// `POST pods/<name>/binding`: binds the pod to the target node (what schedulers do).
pub(crate) async fn bind(shared: &Shared, req: &Request) -> Result<Response> {
    let (bytes, format) = (&req.body, req.format()?);
    let b: Binding = body::document(bytes, format, "Binding")?;
    let name = req.name().to_string();
    if let Some(n) = b.metadata.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        return Err(Error::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let ns = req.namespace().unwrap_or_default().to_string();
    let node = b.target.name.unwrap_or_default();
    shared.registry.bind(&ns, &name, &node, b.metadata.uid.as_deref()).await?;
    Ok(success(StatusCode::CREATED))
}

/// `POST pods/<name>/eviction`: deletes the pod with the eviction's delete options
/// (PodDisruptionBudgets are not served, so no budget can refuse it).
pub(crate) async fn evict(shared: &Shared, req: &Request) -> Result<Response> {
    let (bytes, format) = (&req.body, req.format()?);
    let e: Eviction = body::document(bytes, format, "Eviction")?;
    let name = req.name().to_string();
    if let Some(n) = e.metadata.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        return Err(Error::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let mut opts = DeleteOptions::default();
    if let Some(d) = e.delete_options {
        opts.grace_period_seconds = d.grace_period_seconds;
        opts.dry_run = d.dry_run.iter().flatten().any(|d| d == "All");
        if let Some(p) = d.preconditions {
            opts.preconditions = Precondition { uid: p.uid, resource_version: p.resource_version };
        }
    }
    shared.registry.delete(&req.t, req.namespace(), &name, &opts).await?;
    Ok(success(StatusCode::CREATED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_read_replicas_and_selector() -> Result<()> {
        let d: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "5"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2},
        }))
        .map_err(|e| Error::Internal(e.to_string()))?;
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["resourceVersion"], "5");
        assert_eq!(replicas_of(&json!({"spec": {"replicas": 4}}), "web")?, 4);
        let err = replicas_of(&json!({"spec": {"replicas": -1}}), "web").expect_err("negative");
        assert_eq!(err.code(), 422);
        assert!(err.to_string().contains("spec.replicas"), "{err}");
        Ok(())
    }
}
