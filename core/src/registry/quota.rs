//! ResourceQuota admission (Kubernetes' `ResourceQuota` admission plugin), done in the same
//! store transaction as the create it charges.
//!
//! A create in a namespace with quotas is checked against each quota that counts it (see
//! [`crate::quota`]). If it fits, the quotas' `status.used` grows by what it uses, and the
//! create's transaction also writes the quotas, conditional on their mod revisions: two
//! creates racing for the last unit cannot both win, and a create that fails charges nothing.
//! If it does not fit, it is refused with 403 Forbidden and Kubernetes' message (`exceeded
//! quota: <quota>, requested: ..., used: ..., limited: ...`, or `failed quota: <quota>: must
//! specify ...`).
//!
//! - Quotas are read from the ResourceQuota watch cache when one is enabled (no store read per
//!   create), else from the store; after a lost race they are read from the store.
//! - A quota whose usage was never counted (just created, or a name added to `spec.hard`) is
//!   counted from the namespace's objects on first use.
//! - Only creates are charged: updates cannot change what Flotilla counts. Deletions and
//!   finished pods are released by the ResourceQuota controller's recount.
//! - A dry run is checked but charges nothing.

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use tracing::warn;

use super::encoding::{decode, encode, key, prefix};
use super::list::Filter;
use super::{Error, Registry, Result};
use crate::object::{DynamicObject, Resource, ResourceType};
use crate::quota::{self, QuotaRules, pods};
use crate::store::{Compare, CompareOp, KeyRange, PutRequest, RangeRequest, RequestOp, Revision};

/// The quota writes that go with a create.
#[derive(Debug, Default)]
pub(super) struct Charges {
    /// Each charged quota unchanged since it was read.
    pub(super) compares: Vec<Compare>,
    /// The charged quotas, written with their new usage.
    pub(super) ops: Vec<RequestOp>,
    /// The charged quotas' keys and the mod revisions they were read at.
    read: Vec<(String, Revision)>,
}

impl From<quota::Error> for Error {
    fn from(e: quota::Error) -> Self {
        Error::BadRequest(e.to_string())
    }
}

/// `<resource> "<name>" is forbidden: <why>`, naming a `generateName` create by its prefix.
fn forbidden(t: &ResourceType, obj: &DynamicObject, why: &str) -> Error {
    let name = match obj.name() {
        "" => obj.metadata.generate_name.as_deref().unwrap_or(""),
        n => n,
    };
    Error::Forbidden(format!("{} \"{name}\" is forbidden: {why}", t.plural))
}

impl Registry {
    /// The quotas of `namespace`: from the watch cache unless `fresh` or none is enabled.
    async fn namespace_quotas(&self, namespace: &str, fresh: bool) -> Result<Vec<DynamicObject>> {
        if !fresh && let Some(cache) = self.caches.get(&ResourceQuota::TYPE) {
            return Ok(cache.list(Some(namespace), &Filter::everything()).0);
        }
        let range = KeyRange::prefix(prefix(&ResourceQuota::TYPE, Some(namespace)));
        let resp = self.store.range(RangeRequest::new(range)).await?;
        resp.kvs.iter().map(decode).collect()
    }

    /// Counts what the objects of `namespace` use of `rules`, reading them from the store.
    async fn count_usage(&self, rules: &QuotaRules, namespace: &str) -> Result<quota::ResourceList> {
        let kinds: Vec<ResourceType> = rules
            .counted_kinds()
            .into_iter()
            .filter_map(|(group, plural)| self.kinds.get(group, plural).map(|s| s.resource_type()))
            .collect();
        let mut objects = Vec::new();
        for t in &kinds {
            let range = KeyRange::prefix(prefix(t, Some(namespace)));
            let resp = self.store.range(RangeRequest::new(range)).await?;
            for kv in &resp.kvs {
                objects.push((t.group, t.plural, decode(kv)?));
            }
        }
        Ok(rules.usage(objects.iter().map(|(g, p, o)| (*g, *p, o)), (self.clock)())?)
    }

    /// Checks a create of `obj` (of `t`, in `namespace`) against the namespace's quotas and
    /// returns the quota writes that charge it (none for a dry run); see the
    /// [module docs](self).
    pub(super) async fn charge_quotas(
        &self,
        t: &ResourceType,
        namespace: &str,
        obj: &DynamicObject,
        fresh: bool,
        dry_run: bool,
    ) -> Result<Charges> {
        let mut charges = Charges::default();
        if !t.namespaced {
            return Ok(charges);
        }
        let quotas = self.namespace_quotas(namespace, fresh).await?;
        if quotas.is_empty() {
            return Ok(charges);
        }
        let now = (self.clock)();
        let is_pod = *t == Pod::TYPE;
        let pod: Option<Pod> = match is_pod {
            true => Some(obj.to_typed().map_err(|e| Error::BadRequest(e.to_string()))?),
            false => None,
        };
        for stored in quotas {
            let typed: ResourceQuota = match stored.to_typed() {
                Ok(q) => q,
                Err(e) => {
                    warn!(quota = stored.name(), namespace, error = %e, "stored quota does not decode; not enforced");
                    continue;
                }
            };
            let rules = match QuotaRules::of(&typed) {
                Ok(r) => r,
                Err(e) => {
                    warn!(quota = stored.name(), namespace, error = %e, "stored quota is invalid; not enforced");
                    continue;
                }
            };
            let requested = match &pod {
                Some(pod) => rules.pod_usage(pod, now)?,
                None => rules.usage_of(t.group, t.plural, obj, now)?,
            };
            let Some(requested) = requested else { continue };
            if let Some(pod) = &pod
                && let Some(missing) = pods::missing_requests(pod, &rules.tracked_for("", "pods"))
            {
                return Err(forbidden(t, obj, &format!("failed quota: {}: {missing}", rules.name)));
            }
            let status = typed.status.clone().unwrap_or_default();
            let old_used = quota::parse_list(status.used.as_ref());
            let used = match rules.hard.keys().all(|k| old_used.contains_key(k)) {
                true => old_used.clone(),
                false => self.count_usage(&rules, namespace).await?,
            };
            let new_used = match rules.charge(&used, &requested)? {
                Ok(u) => u,
                Err(why) => return Err(forbidden(t, obj, &why)),
            };
            let hard = quota::to_wire(&rules.hard);
            if dry_run || (new_used == old_used && status.hard.as_ref() == Some(&hard)) {
                continue;
            }
            let mut written = stored.clone();
            let mut new_status = status;
            new_status.hard = Some(hard);
            new_status.used = Some(quota::to_wire(&new_used));
            let value = serde_json::to_value(&new_status).map_err(|e| Error::Internal(e.to_string()))?;
            written.data.insert("status".into(), value);
            let revision: Revision = stored.resource_version().parse().unwrap_or(0);
            let k = key(&ResourceQuota::TYPE, namespace, stored.name());
            charges.compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, revision));
            charges.ops.push(RequestOp::Put(PutRequest::new(k.clone(), encode(&written)?)));
            charges.read.push((k, revision));
        }
        Ok(charges)
    }

    /// Whether every quota `charges` was computed from is still as it was read (when not, a
    /// failed create transaction lost a race for the quota and should be tried again).
    pub(super) async fn charges_current(&self, charges: &Charges) -> Result<bool> {
        for (k, revision) in &charges.read {
            let now = self.store.get(k.as_bytes()).await?.map(|kv| kv.mod_revision).unwrap_or(0);
            if now != *revision {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
