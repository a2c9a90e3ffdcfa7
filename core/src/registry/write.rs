//! Create, update, patch and delete.

use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;

use super::encoding::{decode, encode, key};
use super::options::{DeleteOptions, FieldValidation, PropagationPolicy, Subresource, WriteOptions};
use super::services::{self, Allocation};
use super::{Error, Registry, Result, kind_of, meta, scope_namespace};
use crate::object::{DynamicObject, KindStrategy, Resource, ResourceType};
use crate::patch::{PatchType, apply_patch, builtin_schema};
use crate::store::{
    Compare, CompareOp, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// How many times a patch or an unconditional update re-reads and retries after losing a race.
const MAX_RETRIES: usize = 8;
/// How many names a `generateName` create tries before giving up.
const MAX_GENERATE_ATTEMPTS: usize = 8;
/// How many times a create re-charges its namespace's quotas after another write changed
/// them first.
const MAX_QUOTA_RACES: usize = 64;

/// The result of a create, update or patch.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: DynamicObject,
    /// Warnings for the client (unknown fields under `FieldValidation::Warn`).
    pub warnings: Vec<String>,
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Deleted {
    /// The object: its last state if gone, or with `deletionTimestamp` set if not yet.
    pub object: DynamicObject,
    /// Whether it is gone from the store.
    pub gone: bool,
}

impl Registry {
    /// Normalizes (decode, defaults, unknown fields), then validates metadata and the kind.
    fn admit(
        &self,
        s: &dyn KindStrategy,
        t: &ResourceType,
        obj: DynamicObject,
        old: Option<&DynamicObject>,
        opts: &WriteOptions,
    ) -> Result<(DynamicObject, Vec<String>)> {
        let name = obj.name().to_string();
        let invalid = |errors| Error::Invalid { kind: t.kind.to_string(), name: name.clone(), errors };
        let (mut obj, unknown) = s.normalize(obj).map_err(invalid)?;
        meta::drop_empty(&mut obj.metadata);
        let warnings = match opts.field_validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                let list: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                return Err(Error::BadRequest(format!("strict decoding error: {}", list.join(", "))));
            }
            FieldValidation::Warn => unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect(),
            _ => Vec::new(),
        };
        let mut errs = meta::validate(t, &obj.metadata);
        if let Some(old) = old {
            errs.extend(meta::validate_update(&obj.metadata, &old.metadata));
        }
        errs.extend(s.validate(&obj, old));
        if !errs.is_empty() {
            return Err(invalid(errs));
        }
        Ok((obj, warnings))
    }

    /// Creates `obj` in `namespace` (ignored for cluster-scoped kinds).
    pub async fn create(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        mut obj: DynamicObject,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let s = self.strategy(t)?;
        let ns = scope_namespace(
            t,
            namespace.or(obj.metadata.namespace.as_deref()).map(str::to_owned).as_deref(),
        )?
        .to_string();
        check_type(t, &mut obj)?;
        if t.namespaced {
            if obj.metadata.namespace.as_deref().is_some_and(|n| !n.is_empty() && n != ns) {
                return Err(Error::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                ));
            }
            obj.metadata.namespace = Some(ns.clone());
            self.check_namespace_open(&ns).await?;
        } else {
            obj.metadata.namespace = None;
        }
        if obj.metadata.resource_version.as_deref().is_some_and(|rv| !rv.is_empty()) {
            return Err(Error::BadRequest(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        obj.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
        obj.metadata.creation_timestamp = Some(self.now());
        obj.metadata.generation = Some(1);
        obj.metadata.deletion_timestamp = None;
        obj.metadata.deletion_grace_period_seconds = None;
        obj.metadata.self_link = None;
        if t.has_status {
            obj.data.remove("status");
        }
        self.admit_pod_priority(t, &mut obj).await?;
        self.admit_priority_class(t, &obj).await?;
        let generate =
            obj.name().is_empty() && obj.metadata.generate_name.as_deref().is_some_and(|g| !g.is_empty());
        let (mut attempts, mut quota_races) = (0, 0);
        while attempts < MAX_GENERATE_ATTEMPTS {
            attempts += 1;
            let mut candidate = obj.clone();
            if generate {
                candidate.metadata.name =
                    Some(meta::generate_name(obj.metadata.generate_name.as_deref().unwrap_or("")));
            }
            let (mut candidate, warnings) = self.admit(s.as_ref(), t, candidate, None, opts)?;
            if let Some(manager) = opts.field_manager.as_deref().filter(|m| !m.is_empty()) {
                self.track_update(t, manager, None, &mut candidate);
            }
            let k = key(t, &ns, candidate.name());
            let alloc = if Self::is_service(t) {
                self.allocate_service(&mut candidate, None).await?
            } else {
                Allocation::default()
            };
            let charges = self.charge_quotas(t, &ns, &candidate, quota_races > 0, opts.dry_run).await?;
            if opts.dry_run {
                return Ok(Written { object: candidate, warnings });
            }
            let mut compare = vec![Compare::absent(k.clone())];
            compare.extend(alloc.compares);
            compare.extend(charges.compares.iter().cloned());
            let mut success = vec![RequestOp::Put(PutRequest::new(k.clone(), encode(&candidate)?))];
            success.extend(alloc.ops);
            success.extend(charges.ops.iter().cloned());
            let resp = self.store.txn(TxnRequest { compare, success, failure: vec![] }).await?;
            if resp.succeeded {
                candidate.metadata.resource_version = Some(resp.header.revision.to_string());
                return Ok(Written { object: candidate, warnings });
            }
            let name_taken = self.store.get(k.as_bytes()).await?.is_some();
            if !name_taken && !self.charges_current(&charges).await? {
                // Another write changed a quota this create was charged to: charge it again
                // against what is there now (not counted as a name attempt).
                quota_races += 1;
                if quota_races >= MAX_QUOTA_RACES {
                    return Err(Error::Conflict {
                        resource: "resourcequotas".into(),
                        name: ns.clone(),
                        reason: format!(
                            "the namespace's quotas changed {MAX_QUOTA_RACES} times while this create \
                             was charged to them; please try again"
                        ),
                    });
                }
                attempts -= 1;
                continue;
            }
            if !name_taken {
                // An address was taken meanwhile: a clash with what the user asked for is
                // theirs to fix; a clash with one we chose is retried with another.
                if alloc.explicit {
                    return Err(Error::Invalid {
                        kind: t.kind.to_string(),
                        name: candidate.name().to_string(),
                        errors: crate::validation::ErrorList(vec![crate::validation::FieldError::invalid(
                            crate::validation::FieldPath::new("spec"),
                            Value::Null,
                            "provided IP or port is already allocated",
                        )]),
                    });
                }
                continue;
            }
            if !generate {
                return Err(Error::AlreadyExists {
                    resource: super::error::qualified(t),
                    name: candidate.name().into(),
                });
            }
        }
        Err(Error::AlreadyExists {
            resource: super::error::qualified(t),
            name: obj.metadata.generate_name.unwrap_or_default(),
        })
    }

    /// Refuses creates in a namespace that does not exist or is being deleted.
    async fn check_namespace_open(&self, ns: &str) -> Result<()> {
        let nt = Namespace::TYPE;
        let Some(kv) = self.store.get(key(&nt, "", ns).as_bytes()).await? else {
            return Err(Error::not_found(&nt, ns));
        };
        let obj = decode(&kv)?;
        let phase = obj.data.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str);
        if obj.is_deleting() || phase == Some("Terminating") {
            return Err(Error::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Reads the current object, linearizably.
    pub(crate) async fn read_current(&self, t: &ResourceType, ns: &str, name: &str) -> Result<DynamicObject> {
        let resp = self.store.range(RangeRequest::new(KeyRange::key(key(t, ns, name)))).await?;
        let kv = resp.kvs.first().ok_or_else(|| Error::not_found(t, name))?;
        decode(kv)
    }

    /// Replaces an object (or only its status). A non-empty `metadata.resourceVersion` must
    /// match the stored one (409 Conflict otherwise); an empty one updates unconditionally.
    pub async fn update(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut obj: DynamicObject,
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        check_type(t, &mut obj)?;
        if !obj.name().is_empty() && obj.name() != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj.name()
            )));
        }
        let ns = scope_namespace(t, namespace)?;
        let want_rv = obj.metadata.resource_version.clone().filter(|rv| !rv.is_empty());
        for _ in 0..MAX_RETRIES {
            let old = self.read_current(t, ns, name).await?;
            if let Some(rv) = &want_rv
                && rv != old.resource_version()
            {
                return Err(Error::conflict(t, name));
            }
            let track = opts.field_manager.as_deref();
            match self.write_over(t, ns, name, &old, obj.clone(), subresource, opts, track).await? {
                Some(w) => return Ok(w),
                None if want_rv.is_some() => return Err(Error::conflict(t, name)),
                None => continue,
            }
        }
        Err(Error::conflict(t, name))
    }

    /// Applies a patch to the current object and writes it, retrying on races unless the
    /// patch itself names a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        subresource: Subresource,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let ns = scope_namespace(t, namespace)?;
        if patch_type == PatchType::Apply {
            return self.server_side_apply(t, ns, name, patch, subresource, opts).await;
        }
        let schema = builtin_schema(t.group, t.version, t.kind);
        for _ in 0..MAX_RETRIES {
            let old = self.read_current(t, ns, name).await?;
            let patched = apply_patch(&old.to_value(), patch_type, patch, schema).map_err(|e| {
                if e.status_code() == 422 {
                    let mut errors = crate::validation::ErrorList::default();
                    errors.push(crate::validation::FieldError::invalid(
                        crate::validation::FieldPath::new("patch"),
                        Value::Null,
                        e.to_string(),
                    ));
                    Error::Invalid { kind: t.kind.to_string(), name: name.to_string(), errors }
                } else {
                    Error::BadRequest(e.to_string())
                }
            })?;
            let mut new: DynamicObject = serde_json::from_value(patched)
                .map_err(|e| Error::BadRequest(format!("the patched object does not decode: {e}")))?;
            check_type(t, &mut new)?;
            let want_rv = new.resource_version().to_string();
            if !want_rv.is_empty() && want_rv != old.resource_version() {
                return Err(Error::conflict(t, name));
            }
            if new.name() != name {
                return Err(Error::BadRequest("a patch may not change metadata.name".into()));
            }
            let track = opts.field_manager.as_deref();
            if let Some(w) = self.write_over(t, ns, name, &old, new, subresource, opts, track).await? {
                return Ok(w);
            }
        }
        Err(Error::conflict(t, name))
    }

    /// Writes `new` over `old` if `old` is still current: `None` when it is not.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_over(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        old: &DynamicObject,
        mut new: DynamicObject,
        subresource: Subresource,
        opts: &WriteOptions,
        track: Option<&str>,
    ) -> Result<Option<Written>> {
        let s = self.strategy(t)?;
        let served = match subresource {
            Subresource::Main => true,
            Subresource::Status => t.has_status,
            Subresource::Finalize => t.group.is_empty() && t.plural == "namespaces",
        };
        if !served {
            return Err(Error::UnknownResource {
                resource: format!("{}/{subresource:?}", super::error::qualified(t)),
            });
        }
        new.metadata.namespace = old.metadata.namespace.clone();
        new.metadata.name = Some(name.to_string());
        match subresource {
            Subresource::Status => {
                let status = new.data.remove("status");
                let mut merged = old.clone();
                match status {
                    Some(st) => merged.data.insert("status".into(), st),
                    None => merged.data.remove("status"),
                };
                new = merged;
            }
            Subresource::Finalize => {
                // Only a namespace's spec.finalizers change.
                let finalizers = new.data.get("spec").and_then(|s| s.get("finalizers")).cloned();
                let mut merged = old.clone();
                let spec = merged.data.entry("spec").or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(spec) = spec {
                    match finalizers {
                        Some(f) => spec.insert("finalizers".into(), f),
                        None => spec.remove("finalizers"),
                    };
                }
                new = merged;
            }
            Subresource::Main if t.has_status => {
                match old.data.get("status") {
                    Some(st) => new.data.insert("status".into(), st.clone()),
                    None => new.data.remove("status"),
                };
            }
            Subresource::Main => {}
        }
        meta::keep_system_fields(&mut new.metadata, &old.metadata);
        Self::keep_pod_priority(t, &mut new, old);
        let (mut new, warnings) = self.admit(s.as_ref(), t, new, Some(old), opts)?;
        self.admit_priority_class(t, &new).await?;
        let alloc = if Self::is_service(t) && subresource == Subresource::Main {
            self.allocate_service(&mut new, Some(old)).await?
        } else {
            Allocation::default()
        };
        let annotations_count = t.group == "apps" && t.plural == "deployments";
        if !new.same_spec(old) || annotations_count && new.metadata.annotations != old.metadata.annotations {
            new.metadata.generation = Some(old.metadata.generation.unwrap_or(0) + 1);
        }
        if let Some(manager) = track.filter(|m| !m.is_empty()) {
            self.track_update(t, manager, Some(old), &mut new);
        }
        new.metadata.resource_version = old.metadata.resource_version.clone();
        let k = key(t, ns, name);
        let old_rev: i64 = old.resource_version().parse().unwrap_or(0);
        // The last finalizer removed from an object being deleted: the object goes.
        if new.is_deleting()
            && new.finalizers().is_empty()
            && spec_finalizers(t, &new).is_empty()
            && !opts.dry_run
        {
            let release = if Self::is_service(t) { services::release_ops(old) } else { Vec::new() };
            let written = self
                .write_if_unchanged_with(k, old_rev, None, Allocation { ops: release, ..Default::default() })
                .await?;
            let Some(rev) = written else { return Ok(None) };
            new.metadata.resource_version = Some(rev.to_string());
            return Ok(Some(Written { object: new, warnings }));
        }
        if new == *old || opts.dry_run {
            return Ok(Some(Written { object: new, warnings }));
        }
        let written = self.write_if_unchanged_with(k, old_rev, Some(&new), alloc).await?;
        let Some(rev) = written else { return Ok(None) };
        new.metadata.resource_version = Some(rev.to_string());
        Ok(Some(Written { object: new, warnings }))
    }

    /// Deletes an object: at once when it has no finalizers and no grace period, otherwise
    /// by setting `deletionTimestamp` (the object goes when its finalizers are removed, or
    /// when its node agent confirms a pod has stopped).
    pub async fn delete(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let ns = scope_namespace(t, namespace)?;
        for _ in 0..MAX_RETRIES {
            let old = self.read_current(t, ns, name).await?;
            if let Some(uid) = &opts.preconditions.uid
                && uid != old.uid()
            {
                return Err(Error::Conflict {
                    resource: super::error::qualified(t),
                    name: name.into(),
                    reason: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old.uid()
                    ),
                });
            }
            if let Some(rv) = &opts.preconditions.resource_version
                && rv != old.resource_version()
            {
                return Err(Error::Conflict {
                    resource: super::error::qualified(t),
                    name: name.into(),
                    reason: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old.resource_version()
                    ),
                });
            }
            let grace = grace_period(t, &old, opts.grace_period_seconds);
            let mut new = old.clone();
            let finalizers = new.metadata.finalizers.get_or_insert_with(Vec::new);
            match opts.propagation_policy {
                Some(PropagationPolicy::Orphan) if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into())
                }
                Some(PropagationPolicy::Foreground)
                    if !finalizers.iter().any(|f| f == "foregroundDeletion") =>
                {
                    finalizers.push("foregroundDeletion".into())
                }
                _ => {}
            }
            if finalizers.is_empty() {
                new.metadata.finalizers = None;
            }
            let k = key(t, ns, name);
            let old_rev: i64 = old.resource_version().parse().unwrap_or(0);
            let namespace_finalizers = spec_finalizers(t, &new);
            if !namespace_finalizers.is_empty() {
                // A namespace with spec.finalizers terminates: its content is deleted by the
                // namespace controller, which then finalizes it.
                let status = new.data.entry("status").or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(status) = status {
                    status.insert("phase".into(), Value::String("Terminating".into()));
                }
            }
            if new.finalizers().is_empty() && namespace_finalizers.is_empty() && grace == 0 {
                if opts.dry_run {
                    return Ok(Deleted { object: old, gone: true });
                }
                let release = if Self::is_service(t) { services::release_ops(&old) } else { Vec::new() };
                let extra = Allocation { ops: release, ..Default::default() };
                let written = self.write_if_unchanged_with(k, old_rev, None, extra).await?;
                if let Some(rev) = written {
                    // The last state, at the revision of its deletion (as Kubernetes answers).
                    let mut last = old;
                    last.metadata.resource_version = Some(rev.to_string());
                    return Ok(Deleted { object: last, gone: true });
                }
                continue;
            }
            // Deferred deletion: start it, or shorten an already running grace period.
            let now = self.now();
            let shorter = old.metadata.deletion_grace_period_seconds.is_none_or(|g| grace < g);
            if !old.is_deleting() || shorter {
                new.metadata.deletion_grace_period_seconds = Some(grace);
                let at =
                    now.0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace)).unwrap_or(now.0);
                new.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
                // Starting (or hurrying) deletion is a change of intent: generation moves.
                if let Some(g) = new.metadata.generation.filter(|g| *g > 0) {
                    new.metadata.generation = Some(g + 1);
                }
            }
            if new == old || opts.dry_run {
                return Ok(Deleted { object: new, gone: false });
            }
            let written = self.write_if_unchanged(k, old_rev, Some(&new)).await?;
            if let Some(rev) = written {
                new.metadata.resource_version = Some(rev.to_string());
                return Ok(Deleted { object: new, gone: false });
            }
        }
        Err(Error::conflict(t, name))
    }
}

/// The grace period of a delete: pods that run on a node get theirs (from the request or
/// the spec) so the node agent can stop them; everything else goes at once.
fn grace_period(t: &ResourceType, obj: &DynamicObject, requested: Option<i64>) -> i64 {
    if !t.group.is_empty() || t.plural != "pods" {
        return 0;
    }
    let spec = obj.data.get("spec");
    let scheduled =
        spec.and_then(|s| s.get("nodeName")).and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let phase = obj.data.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str);
    if !scheduled || matches!(phase, Some("Succeeded" | "Failed")) {
        return 0;
    }
    let from_spec =
        spec.and_then(|s| s.get("terminationGracePeriodSeconds")).and_then(Value::as_i64).unwrap_or(30);
    requested.unwrap_or(from_spec).max(0)
}

/// A namespace's `spec.finalizers` (empty for every other kind).
fn spec_finalizers(t: &ResourceType, obj: &DynamicObject) -> Vec<String> {
    if !t.group.is_empty() || t.plural != "namespaces" {
        return Vec::new();
    }
    obj.data
        .get("spec")
        .and_then(|s| s.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Fills in or checks `apiVersion` and `kind`.
fn check_type(t: &ResourceType, obj: &mut DynamicObject) -> Result<()> {
    let api_version = t.api_version();
    if !obj.api_version.is_empty() && obj.api_version != api_version {
        return Err(Error::BadRequest(format!(
            "the API version in the data ({}) does not match the expected API version ({api_version})",
            obj.api_version
        )));
    }
    if !obj.kind.is_empty() && obj.kind != t.kind {
        return Err(Error::BadRequest(format!(
            "the kind in the data ({}) does not match the expected kind ({})",
            kind_of(t, obj),
            t.kind
        )));
    }
    obj.api_version = api_version;
    obj.kind = t.kind.to_string();
    Ok(())
}

impl Registry {
    /// Writes `obj` at `key` (deletes the key for `None`) if the key is still at revision
    /// `rev`, in one store transaction: the optimistic-concurrency primitive of every update.
    /// Returns the new revision, or `None` when the key moved on.
    pub(crate) async fn write_if_unchanged(
        &self,
        key: String,
        rev: i64,
        obj: Option<&DynamicObject>,
    ) -> Result<Option<i64>> {
        self.write_if_unchanged_with(key, rev, obj, Allocation::default()).await
    }

    /// [`write_if_unchanged`](Self::write_if_unchanged), taking and releasing a Service's
    /// addresses in the same transaction. A taken address fails the write like a changed
    /// object does, and the caller's retry reallocates.
    pub(crate) async fn write_if_unchanged_with(
        &self,
        key: String,
        rev: i64,
        obj: Option<&DynamicObject>,
        extra: Allocation,
    ) -> Result<Option<i64>> {
        let op = match obj {
            Some(o) => RequestOp::Put(PutRequest::new(key.clone(), encode(o)?)),
            None => RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::key(key.clone()),
                prev_kv: false,
            }),
        };
        let resp = self
            .store
            .txn(TxnRequest {
                compare: std::iter::once(Compare::mod_revision(key, CompareOp::Equal, rev))
                    .chain(extra.compares)
                    .collect(),
                success: std::iter::once(op).chain(extra.ops).collect(),
                failure: vec![],
            })
            .await?;
        Ok(resp.succeeded.then_some(resp.header.revision))
    }

    /// Deletes every object of `t` (in `namespace`, or all) that the selectors of `list`
    /// select, each as [`delete`](Self::delete) would; returns them (their last state, or
    /// marked for deletion). Objects that vanish meanwhile are skipped.
    pub async fn delete_collection(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        list: &super::ListOptions,
        opts: &DeleteOptions,
    ) -> Result<super::ObjectList> {
        let mut page = self.list(t, namespace, &list.selectors()).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for obj in std::mem::take(&mut page.items) {
            let ns = obj.metadata.namespace.clone();
            match self.delete(t, ns.as_deref(), obj.name(), opts).await {
                Ok(d) => items.push(d.object),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        page.items = items;
        Ok(page)
    }
}
