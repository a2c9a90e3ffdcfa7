//! Get and list: resourceVersion semantics, selectors and consistent pagination.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::encoding::{decode, key, prefix};
use super::options::{GetOptions, ListOptions, ResourceVersionMatch};
use super::{Error, Registry, Result, scope_namespace};
use crate::object::{DynamicObject, KindStrategy, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{KeyRange, RangeRequest, Revision, prefix_end};

/// Keys read per store round trip while filtering a list with selectors.
const LIST_BATCH: i64 = 500;

/// One page of a list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectList {
    /// The store revision the list was read at.
    pub resource_version: String,
    /// The token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// How many more objects the rest of the list holds (lists without selectors only).
    pub remaining_item_count: Option<i64>,
    /// The objects, in key order (namespace, then name).
    pub items: Vec<DynamicObject>,
}

/// What a continue token carries: the revision of the first page and where to go on.
#[derive(Debug, Serialize, Deserialize)]
struct Continue {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &[u8]) -> String {
    let c = Continue { rv, start: String::from_utf8_lossy(start).into_owned() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<Continue> {
    let bad = |why: String| Error::BadRequest(format!("invalid continue token: {why}"));
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|e| bad(e.to_string()))?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // A forged negative revision would read the latest state unpinned and be echoed back.
    if c.rv < 0 {
        return Err(bad(format!("negative resource version {}", c.rv)));
    }
    Ok(c)
}

/// Parses a resourceVersion parameter.
pub(crate) fn parse_rv(rv: &str) -> Result<Revision> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| Error::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// The selectors of a list, parsed and checked against the kind's fields.
pub(crate) struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    /// A filter that selects everything.
    pub(crate) fn everything() -> Self {
        Filter { labels: None, fields: None }
    }

    pub(crate) fn new(s: &dyn KindStrategy, opts: &ListOptions) -> Result<Self> {
        let labels = match opts.label_selector.as_deref().filter(|l| !l.trim().is_empty()) {
            Some(l) => Some(LabelSelector::parse(l).map_err(|e| Error::BadRequest(e.to_string()))?),
            None => None,
        };
        let fields = match opts.field_selector.as_deref().filter(|f| !f.trim().is_empty()) {
            Some(f) => {
                let sel = FieldSelector::parse(f).map_err(|e| Error::BadRequest(e.to_string()))?;
                let known = s.selectable_field_names();
                for r in sel.requirements() {
                    let field = r.field.as_str();
                    if field != "metadata.name" && field != "metadata.namespace" && !known.contains(&field) {
                        return Err(Error::BadRequest(format!(
                            "field label not supported: {field} (the kind supports metadata.name, \
                             metadata.namespace{})",
                            known.iter().map(|k| format!(", {k}")).collect::<String>()
                        )));
                    }
                }
                Some(sel)
            }
            None => None,
        };
        Ok(Filter { labels, fields })
    }

    /// Whether nothing is filtered out.
    pub(crate) fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub(crate) fn matches(&self, s: &dyn KindStrategy, obj: &DynamicObject) -> bool {
        if !self.matches_labels(obj) {
            return false;
        }
        match &self.fields {
            None => true,
            Some(_) => self.matches_fields(&selectable_fields(s, obj)),
        }
    }

    /// Whether the object's labels match (true without a label selector).
    pub(crate) fn matches_labels(&self, obj: &DynamicObject) -> bool {
        let empty = BTreeMap::new();
        self.matches_label_map(obj.metadata.labels.as_ref().unwrap_or(&empty))
    }

    /// Whether these labels match (true without a label selector).
    pub(crate) fn matches_label_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.as_ref().is_none_or(|l| l.matches(labels))
    }

    /// Whether precomputed field values match (true without a field selector).
    pub(crate) fn matches_fields(&self, fields: &BTreeMap<String, String>) -> bool {
        self.fields.as_ref().is_none_or(|f| f.matches(fields))
    }
}

/// Every field value a field selector may name: the kind's own plus `metadata.name` and
/// `metadata.namespace`.
pub(crate) fn selectable_fields(s: &dyn KindStrategy, obj: &DynamicObject) -> BTreeMap<String, String> {
    let mut values = s.selectable_fields(obj);
    values.insert("metadata.name".into(), obj.name().into());
    values.insert("metadata.namespace".into(), obj.namespace().into());
    values
}

impl Registry {
    /// Reads one object.
    pub async fn get(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &GetOptions,
    ) -> Result<DynamicObject> {
        self.strategy(t)?;
        let ns = scope_namespace(t, namespace)?;
        let mut req = RangeRequest::new(KeyRange::key(key(t, ns, name)));
        match opts.resource_version.as_deref() {
            None | Some("") => {}
            Some("0") if self.watch_cache(t).is_some() => {
                let cache = self.watch_cache(t).expect("checked just above");
                return cache.get(&key(t, ns, name)).ok_or_else(|| Error::not_found(t, name));
            }
            Some(rv) => {
                // "0" or a revision to be not older than: this member's state will do.
                parse_rv(rv)?;
                req.serializable = true;
            }
        }
        let resp = self.store.range(req).await?;
        let kv = resp.kvs.first().ok_or_else(|| Error::not_found(t, name))?;
        decode(kv)
    }

    /// Lists objects of `t` (in `namespace`, or in all namespaces), filtered by selectors, one
    /// page at a time when `limit` is set. Every page of a paginated list is read at the
    /// revision of the first, so the pages form one consistent snapshot.
    pub async fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList> {
        let s = self.strategy(t)?;
        let filter = Filter::new(s.as_ref(), opts)?;
        if let Some(list) = self.list_from_cache(t, namespace, opts, &filter).await? {
            return Ok(list);
        }
        let pfx = prefix(t, namespace);
        let end = prefix_end(pfx.as_bytes()).unwrap_or_default();
        let limit = opts.limit.filter(|l| *l > 0);
        let (mut start, mut revision, mut serializable) = (pfx.clone().into_bytes(), 0, false);
        if let Some(token) = opts.continue_token.as_deref().filter(|c| !c.is_empty()) {
            let c = decode_continue(token)?;
            if !c.start.starts_with(&pfx) {
                return Err(Error::BadRequest("invalid continue token: it belongs to another list".into()));
            }
            start = c.start.into_bytes();
            revision = c.rv;
        } else {
            match (opts.resource_version.as_deref(), opts.resource_version_match) {
                (None | Some(""), None) => {}
                (None | Some(""), Some(_)) => {
                    return Err(Error::BadRequest(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                    ));
                }
                (Some(rv), Some(ResourceVersionMatch::Exact)) => {
                    revision = parse_rv(rv)?;
                    if revision == 0 {
                        return Err(Error::BadRequest(
                            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
                        ));
                    }
                }
                (Some(rv), _) => {
                    parse_rv(rv)?;
                    serializable = true;
                }
            }
        }
        let mut items = Vec::new();
        loop {
            let want = match limit {
                Some(l) if filter.is_everything() => l - items.len() as i64,
                Some(_) => LIST_BATCH,
                None => 0,
            };
            let mut req =
                RangeRequest::new(KeyRange::range(start.clone(), end.clone())).at(revision).limit(want);
            req.serializable = serializable;
            let resp = self.store.range(req).await.map_err(|e| match e {
                crate::store::Error::Compacted { .. } if opts.continue_token.is_some() => Error::Expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter."
                        .into(),
                ),
                other => other.into(),
            })?;
            if revision == 0 {
                // Pin the revision of the first read: later batches and pages read at it.
                revision = resp.header.revision;
            }
            let (mut last_key, mut consumed) = (None, 0i64);
            for kv in &resp.kvs {
                last_key = Some(kv.key.clone());
                consumed += 1;
                let obj = decode(kv)?;
                if filter.matches(s.as_ref(), &obj) {
                    items.push(obj);
                }
                if limit.is_some_and(|l| items.len() as i64 >= l) {
                    break;
                }
            }
            let Some(last) = last_key else { break };
            let mut next = last;
            next.push(0);
            if limit.is_some_and(|l| items.len() as i64 >= l) {
                // The read counted every key from `start` on: what this page did not take is
                // left for the next.
                let rest = resp.count - consumed;
                let mut out =
                    ObjectList { resource_version: revision.to_string(), items, ..Default::default() };
                if rest > 0 {
                    out.continue_token = Some(encode_continue(revision, &next));
                    if filter.is_everything() {
                        out.remaining_item_count = Some(rest);
                    }
                }
                return Ok(out);
            }
            if !resp.more {
                break;
            }
            start = next;
        }
        Ok(ObjectList { resource_version: revision.to_string(), items, ..Default::default() })
    }
}

impl Registry {
    /// Serves a list from the watch cache when its semantics allow: resourceVersion `"0"`
    /// (any recent state; `limit` is ignored, as Kubernetes does), or a resourceVersion to
    /// be not older than (the cache must reach it within [`WAIT_FOR_REVISION`]). Pages,
    /// exact reads and linearizable reads go to the store.
    async fn list_from_cache(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
        filter: &Filter,
    ) -> Result<Option<ObjectList>> {
        let Some(cache) = self.watch_cache(t) else { return Ok(None) };
        if opts.continue_token.as_deref().is_some_and(|c| !c.is_empty())
            || opts.resource_version_match == Some(ResourceVersionMatch::Exact)
        {
            return Ok(None);
        }
        match opts.resource_version.as_deref() {
            Some("0") => {}
            Some(rv) if !rv.is_empty() && opts.limit.is_none() => {
                if !cache.wait_for(parse_rv(rv)?, super::WAIT_FOR_REVISION).await {
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }
        let (items, rev) = cache.list(namespace, filter);
        Ok(Some(ObjectList { resource_version: rev.to_string(), items, ..Default::default() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_forged_negative_revisions_are_refused() {
        let token = encode_continue(42, b"/registry/pods/default/web");
        let c = decode_continue(&token).expect("the server's own token");
        assert_eq!((c.rv, c.start.as_str()), (42, "/registry/pods/default/web"));
        // Found by fuzz/list_request: such a token read the latest state and echoed `-5`.
        let forged = URL_SAFE_NO_PAD.encode(r#"{"rv":-5,"start":"/registry/pods/"}"#);
        let err = decode_continue(&forged).expect_err("a negative revision");
        assert!(matches!(&err, Error::BadRequest(m) if m.contains("invalid continue token")), "{err}");
        assert!(decode_continue("not base64!").is_err());
    }
}
