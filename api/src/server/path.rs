//! Resource paths: what `/api/v1/namespaces/default/pods/web/status` addresses.

/// What a resource URL addresses, after the `/api/v1` or `/apis/<group>/<version>` prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The namespace segment, if the path has one.
    pub namespace: Option<String>,
    /// The resource (`pods`).
    pub resource: String,
    /// The object's name; `None` addresses the collection.
    pub name: Option<String>,
    /// The subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
}

/// Subresources of a namespace, which would otherwise read as a resource inside it
/// (`namespaces/ns1/status` is the status of ns1, not the resource `status` in ns1).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Parses the path segments after the group-version prefix, as kube-apiserver's request info
/// resolver does. `None` for a path that is no resource path (empty, too long, or with empty
/// segments).
pub(crate) fn parse(rest: &str) -> Option<Target> {
    // Only trailing slashes go: `/api/v1//pods` leaves `/pods`, whose empty first segment
    // authorization (`RequestInfo`) reads as the resource.
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (namespace, parts) = match parts.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) => {
            (Some(ns.to_string()), tail)
        }
        _ => (None, parts.as_slice()),
    };
    // `namespaces/<name>` and `namespaces/<name>/status` address a namespace object.
    let namespace = match (namespace, parts) {
        (None, ["namespaces", name, ..]) => Some(name.to_string()),
        (ns, _) => ns,
    };
    let target = |resource: &str, name: Option<&str>, sub: Option<&str>| Target {
        namespace: namespace.clone(),
        resource: resource.to_string(),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    };
    match parts {
        [resource] => Some(target(resource, None, None)),
        [resource, name] => Some(target(resource, Some(name), None)),
        [resource, name, sub] => Some(target(resource, Some(name), Some(sub))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ns: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>) -> Option<Target> {
        Some(Target {
            namespace: ns.map(str::to_string),
            resource: resource.into(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    }

    #[test]
    fn paths_resolve_like_kube_apiserver() {
        let cases = [
            ("pods", t(None, "pods", None, None)),
            ("nodes/n1", t(None, "nodes", Some("n1"), None)),
            ("nodes/n1/status", t(None, "nodes", Some("n1"), Some("status"))),
            ("namespaces", t(None, "namespaces", None, None)),
            ("namespaces/ns1", t(Some("ns1"), "namespaces", Some("ns1"), None)),
            ("namespaces/ns1/status", t(Some("ns1"), "namespaces", Some("ns1"), Some("status"))),
            ("namespaces/ns1/finalize", t(Some("ns1"), "namespaces", Some("ns1"), Some("finalize"))),
            ("namespaces/ns1/pods", t(Some("ns1"), "pods", None, None)),
            ("namespaces/ns1/pods/web", t(Some("ns1"), "pods", Some("web"), None)),
            ("namespaces/ns1/pods/web/log", t(Some("ns1"), "pods", Some("web"), Some("log"))),
            ("namespaces/ns1/pods/web/log/extra", None),
            ("pods//x", None),
            ("pods/", t(None, "pods", None, None)),
            // What axum extracts from `/api/v1//namespaces/ns1/pods` (found by fuzz/http_request).
            ("/namespaces/ns1/pods", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
