//! Requests as the API server reads them: Kubernetes' URLs for every resource type, the query
//! parameters of each option, and the bodies of deletes and bindings.

use flotilla_core::object::ResourceType;
use flotilla_core::registry::{
    DeleteOptions, Error, FieldValidation, GetOptions, ListOptions, PropagationPolicy, ResourceVersionMatch,
    Result, Subresource, WriteOptions,
};
use serde_json::{Map, Value, json};
use url::Url;

/// `pods` for the core group, `deployments.apps` otherwise (how the server names a resource
/// in its messages).
pub(crate) fn qualified(t: &ResourceType) -> String {
    if t.group.is_empty() { t.plural.to_string() } else { format!("{}.{}", t.plural, t.group) }
}

/// The namespace segment of an object's URL: `None` for cluster-scoped kinds, an error for a
/// namespaced kind without one (what the registry answers too).
pub(crate) fn object_namespace<'a>(t: &ResourceType, namespace: Option<&'a str>) -> Result<Option<&'a str>> {
    match (t.namespaced, namespace.filter(|n| !n.is_empty())) {
        (false, _) => Ok(None),
        (true, Some(ns)) => Ok(Some(ns)),
        (true, None) => {
            Err(Error::BadRequest(format!("{} is namespaced: a namespace is required", t.plural)))
        }
    }
}

/// Refuses an empty object name (it would address the collection).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::BadRequest("resource name may not be empty".into()));
    }
    Ok(())
}

/// A URL under the server's base: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
/// otherwise, then `namespaces/<ns>` for namespaced kinds given a namespace, the plural, the
/// name and the subresource. Segments are percent-encoded.
pub(crate) fn resource_url(
    base: &Url,
    t: &ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let mut segments: Vec<&str> =
        if t.group.is_empty() { vec!["api", t.version] } else { vec!["apis", t.group, t.version] };
    if let Some(ns) = namespace.filter(|n| t.namespaced && !n.is_empty()) {
        segments.extend(["namespaces", ns]);
    }
    segments.push(t.plural);
    segments.extend(name);
    segments.extend(subresource);
    match url.path_segments_mut() {
        Ok(mut path) => {
            path.pop_if_empty().extend(segments);
        }
        // The configuration only accepts http(s) URLs, which always have a path.
        Err(()) => unreachable!("an http(s) URL can be a base"),
    }
    url
}

/// The path segment of a subresource.
pub(crate) fn subresource_segment(sub: Subresource) -> Option<&'static str> {
    match sub {
        Subresource::Main => None,
        Subresource::Status => Some("status"),
        Subresource::Finalize => Some("finalize"),
    }
}

/// Sets the query of `url` to `pairs` (none: no `?` at all).
pub(crate) fn with_query(mut url: Url, pairs: &[(&str, String)]) -> Url {
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    }
    url
}

/// The query of a get.
pub(crate) fn get_query(opts: &GetOptions) -> Vec<(&'static str, String)> {
    opts.resource_version
        .iter()
        .filter(|rv| !rv.is_empty())
        .map(|rv| ("resourceVersion", rv.clone()))
        .collect()
}

/// The query of a list, a watch (`watch` adds `watch=true`) or a deletecollection.
pub(crate) fn list_query(opts: &ListOptions, watch: bool) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut text = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            q.push((k, v.clone()));
        }
    };
    text("labelSelector", &opts.label_selector);
    text("fieldSelector", &opts.field_selector);
    text("continue", &opts.continue_token);
    text("resourceVersion", &opts.resource_version);
    if let Some(limit) = opts.limit.filter(|l| *l > 0) {
        q.push(("limit", limit.to_string()));
    }
    if let Some(m) = opts.resource_version_match {
        let m = match m {
            ResourceVersionMatch::NotOlderThan => "NotOlderThan",
            ResourceVersionMatch::Exact => "Exact",
        };
        q.push(("resourceVersionMatch", m.to_string()));
    }
    if watch {
        q.push(("watch", "true".into()));
        if opts.allow_watch_bookmarks {
            q.push(("allowWatchBookmarks", "true".into()));
        }
    }
    q
}

/// The query of a create, update or patch.
pub(crate) fn write_query(opts: &WriteOptions) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if opts.dry_run {
        q.push(("dryRun", "All".to_string()));
    }
    let validation = match opts.field_validation {
        FieldValidation::Ignore => "Ignore",
        FieldValidation::Warn => "Warn",
        FieldValidation::Strict => "Strict",
    };
    q.push(("fieldValidation", validation.to_string()));
    if let Some(m) = opts.field_manager.as_ref().filter(|m| !m.is_empty()) {
        q.push(("fieldManager", m.clone()));
    }
    if opts.force {
        q.push(("force", "true".to_string()));
    }
    q
}

/// A `DeleteOptions` (meta/v1) body, as kubectl sends it.
pub(crate) fn delete_body(opts: &DeleteOptions) -> Value {
    let mut body = Map::new();
    body.insert("kind".into(), "DeleteOptions".into());
    body.insert("apiVersion".into(), "v1".into());
    if let Some(g) = opts.grace_period_seconds {
        body.insert("gracePeriodSeconds".into(), g.into());
    }
    if let Some(p) = opts.propagation_policy {
        let p = match p {
            PropagationPolicy::Orphan => "Orphan",
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
        };
        body.insert("propagationPolicy".into(), p.into());
    }
    let pre = &opts.preconditions;
    if pre.uid.is_some() || pre.resource_version.is_some() {
        let mut p = Map::new();
        if let Some(uid) = &pre.uid {
            p.insert("uid".into(), uid.clone().into());
        }
        if let Some(rv) = &pre.resource_version {
            p.insert("resourceVersion".into(), rv.clone().into());
        }
        body.insert("preconditions".into(), Value::Object(p));
    }
    if opts.dry_run {
        body.insert("dryRun".into(), json!(["All"]));
    }
    Value::Object(body)
}

/// A `Binding` of pod `namespace/name` to `node`, with the pod's `uid` as a precondition.
pub(crate) fn binding_body(namespace: &str, name: &str, node: &str, uid: Option<&str>) -> Value {
    let mut metadata = json!({ "name": name, "namespace": namespace });
    if let (Some(uid), Value::Object(m)) = (uid, &mut metadata) {
        m.insert("uid".into(), uid.into());
    }
    json!({
        "kind": "Binding",
        "apiVersion": "v1",
        "metadata": metadata,
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    })
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::Resource;
    use flotilla_core::registry::Precondition;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};

    use super::*;

    fn base(s: &str) -> Url {
        Url::parse(s).expect("a valid URL")
    }

    #[test]
    fn urls_follow_kubernetes_layout() {
        let b = base("https://127.0.0.1:6443");
        let cases = [
            (resource_url(&b, &Pod::TYPE, Some("default"), None, None), "/api/v1/namespaces/default/pods"),
            (resource_url(&b, &Pod::TYPE, None, None, None), "/api/v1/pods"),
            (
                resource_url(&b, &Pod::TYPE, Some("ns"), Some("web"), Some("status")),
                "/api/v1/namespaces/ns/pods/web/status",
            ),
            (
                resource_url(&b, &Deployment::TYPE, Some("ns"), Some("web"), None),
                "/apis/apps/v1/namespaces/ns/deployments/web",
            ),
            (resource_url(&b, &Deployment::TYPE, None, None, None), "/apis/apps/v1/deployments"),
            (resource_url(&b, &Node::TYPE, Some("ignored"), Some("n1"), None), "/api/v1/nodes/n1"),
            (
                resource_url(&b, &Namespace::TYPE, Some("x"), Some("x"), Some("finalize")),
                "/api/v1/namespaces/x/finalize",
            ),
        ];
        for (url, path) in cases {
            assert_eq!(url.path(), path);
            assert_eq!(url.query(), None);
        }
        let prefixed = base("https://host/k8s/clusters/c1/");
        assert_eq!(
            resource_url(&prefixed, &Pod::TYPE, Some("a"), None, None).as_str(),
            "https://host/k8s/clusters/c1/api/v1/namespaces/a/pods"
        );
        let odd = resource_url(&b, &Pod::TYPE, Some("a"), Some("x/y z"), None);
        assert_eq!(odd.path(), "/api/v1/namespaces/a/pods/x%2Fy%20z");
    }

    #[test]
    fn namespaced_objects_need_a_namespace() {
        assert_eq!(object_namespace(&Pod::TYPE, Some("a")), Ok(Some("a")));
        assert!(matches!(object_namespace(&Pod::TYPE, Some("")), Err(Error::BadRequest(_))));
        assert!(matches!(object_namespace(&Pod::TYPE, None), Err(Error::BadRequest(_))));
        assert_eq!(object_namespace(&Node::TYPE, Some("a")), Ok(None));
        assert!(check_name("").is_err());
    }

    #[test]
    fn options_become_kubernetes_parameters() {
        let opts = ListOptions {
            label_selector: Some("app in (a,b)".into()),
            field_selector: Some("spec.nodeName=n1".into()),
            limit: Some(50),
            continue_token: Some("tok".into()),
            resource_version: Some("12".into()),
            resource_version_match: Some(ResourceVersionMatch::Exact),
            allow_watch_bookmarks: true,
        };
        let url = with_query(base("http://h/api/v1/pods"), &list_query(&opts, true));
        assert_eq!(
            url.query(),
            Some(
                "labelSelector=app+in+%28a%2Cb%29&fieldSelector=spec.nodeName%3Dn1&continue=tok\
                 &resourceVersion=12&limit=50&resourceVersionMatch=Exact&watch=true&allowWatchBookmarks=true"
            )
        );
        assert_eq!(with_query(base("http://h/x"), &list_query(&ListOptions::default(), false)).query(), None);
        let get = GetOptions { resource_version: Some("0".into()) };
        assert_eq!(get_query(&get), vec![("resourceVersion", "0".to_string())]);
        let write = WriteOptions {
            dry_run: true,
            field_validation: FieldValidation::Strict,
            field_manager: Some("me".into()),
            force: true,
        };
        let url = with_query(base("http://h/x"), &write_query(&write));
        assert_eq!(url.query(), Some("dryRun=All&fieldValidation=Strict&fieldManager=me&force=true"));
    }

    #[test]
    fn delete_options_body() {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Precondition { uid: Some("u1".into()), resource_version: Some("7".into()) },
            dry_run: true,
        };
        assert_eq!(
            delete_body(&opts),
            json!({
                "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground",
                "preconditions": {"uid": "u1", "resourceVersion": "7"}, "dryRun": ["All"],
            })
        );
        assert_eq!(
            delete_body(&DeleteOptions::default()),
            json!({"kind": "DeleteOptions", "apiVersion": "v1"})
        );
        let b = binding_body("ns", "web", "n1", Some("u"));
        assert_eq!(b["metadata"], json!({"name": "web", "namespace": "ns", "uid": "u"}));
        assert_eq!(b["target"]["kind"], "Node");
    }
}
