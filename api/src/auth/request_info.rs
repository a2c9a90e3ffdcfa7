//! [`RequestInfo`]: what a request asks for, in authorization's terms (Kubernetes'
//! `RequestInfoFactory`): resource requests under `/api/<version>` and
//! `/apis/<group>/<version>` get a Kubernetes verb (`list`, `watch`, `deletecollection`, ...),
//! namespace, resource, subresource and name; everything else is a non-resource request whose
//! verb is the lower-case HTTP method.

use flotilla_core::selector::{FieldSelector, LabelSelector};
use http::Method;

/// Path prefixes of resource requests.
const API_PREFIXES: [&str; 2] = ["api", "apis"];
/// Prefixes whose next segment is the version rather than a group.
const GROUPLESS_API_PREFIXES: [&str; 1] = ["api"];
/// Verbs that can appear in the path (deprecated `/watch/...` and `/proxy/...` forms).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// Path verbs after which the parts are not a subresource.
const SPECIAL_VERBS_NO_SUBRESOURCES: [&str; 1] = ["proxy"];
/// Subresources of a namespace (so `/namespaces/x/status` is not a resource named `status`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];
/// Verbs whose field and label selectors authorization may see.
const VERBS_WITH_SELECTORS: [&str; 3] = ["list", "watch", "deletecollection"];

/// What a request asks for, parsed from its method, path and query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the request is for an API resource or subresource.
    pub is_resource_request: bool,
    /// The URL path, percent-decoded.
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`) for resource requests; the lower-case HTTP method otherwise.
    pub verb: String,
    /// `api` or `apis` for resource requests.
    pub api_prefix: String,
    /// The API group; empty for the core group.
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The namespace; empty for cluster-scoped requests and requests across all namespaces.
    pub namespace: String,
    /// The resource (`pods`), not the kind.
    pub resource: String,
    /// The subresource (`status`, `scale`, `log`, ...).
    pub subresource: String,
    /// The object's name, when the path names one (or a list selects one with
    /// `fieldSelector=metadata.name=<name>`).
    pub name: String,
    /// The path parts from the resource on: `[resource, name, subresource, ...]`.
    pub parts: Vec<String>,
    /// The raw field selector of a `list`, `watch` or `deletecollection`.
    pub field_selector: String,
    /// The raw label selector of a `list`, `watch` or `deletecollection`.
    pub label_selector: String,
}

impl RequestInfo {
    /// Parses a request as Kubernetes does. `path` may be percent-encoded (it is decoded
    /// first); `query` is the raw query string without `?`.
    ///
    /// ```
    /// use flotilla_api::auth::RequestInfo;
    ///
    /// let info = RequestInfo::parse(&http::Method::GET, "/api/v1/namespaces/default/pods", "watch=1");
    /// assert_eq!((info.verb.as_str(), info.namespace.as_str(), info.resource.as_str()), ("watch", "default", "pods"));
    /// assert!(!RequestInfo::parse(&http::Method::GET, "/healthz", "").is_resource_request);
    /// ```
    pub fn parse(method: &Method, path: &str, query: &str) -> RequestInfo {
        let path = percent_decode(path);
        let mut info =
            RequestInfo { path: path.clone(), verb: method.as_str().to_lowercase(), ..Default::default() };
        let mut parts: Vec<&str> = split_path(&path);
        if parts.len() < 3 || !API_PREFIXES.contains(&parts[0]) {
            return info;
        }
        info.api_prefix = parts[0].to_string();
        parts.remove(0);
        if !GROUPLESS_API_PREFIXES.contains(&info.api_prefix.as_str()) {
            // The prefix is consumed: a grouped path needs group, version and a resource.
            if parts.len() < 3 {
                return info;
            }
            info.api_group = parts.remove(0).to_string();
        }
        info.is_resource_request = true;
        info.api_version = parts.remove(0).to_string();

        let mut verb_via_path = false;
        if SPECIAL_VERBS.contains(&parts[0]) {
            if parts.len() < 2 {
                // Kubernetes fails here ("unable to determine kind and namespace"); the info
                // stays as far as it was parsed, naming no resource.
                return info;
            }
            info.verb = parts.remove(0).to_string();
            verb_via_path = true;
        } else {
            info.verb = match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_string();
        }

        if parts[0] == "namespaces" && parts.len() > 1 {
            info.namespace = parts[1].to_string();
            // `/namespaces/<ns>/<resource>/...` is a namespaced resource, unless the step after
            // the namespace is one of the namespace's own subresources.
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts.drain(..2);
            }
        }
        info.parts = parts.iter().map(|p| p.to_string()).collect();
        if info.parts.len() >= 3 && !SPECIAL_VERBS_NO_SUBRESOURCES.contains(&info.verb.as_str()) {
            info.subresource = info.parts[2].clone();
        }
        if info.parts.len() >= 2 {
            info.name = info.parts[1].clone();
        }
        if let Some(resource) = info.parts.first() {
            info.resource = resource.clone();
        }

        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let first = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());

        if info.name.is_empty() && info.verb == "get" {
            let options = decode_list_options(first);
            info.verb = if options.watch { "watch" } else { "list" }.to_string();
            if let Some(name) = options.selected_name.filter(|n| is_valid_path_segment_name(n)) {
                info.name = name;
            }
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_string();
        }
        // The deprecated `/watch/...` form does not support selectors consistently.
        if !verb_via_path && VERBS_WITH_SELECTORS.contains(&info.verb.as_str()) {
            info.field_selector = first("fieldSelector").unwrap_or_default().to_string();
            info.label_selector = first("labelSelector").unwrap_or_default().to_string();
        }
        info
    }
}

/// What authorization needs of a list's options.
struct ListOptionsSeen {
    watch: bool,
    /// The name an exact `metadata.name` field selector selects.
    selected_name: Option<String>,
}

/// Decodes the list options as Kubernetes' parameter codec does: when any of them fails to
/// decode, only `watch` is kept (and no name is taken from the field selector).
fn decode_list_options<'a>(first: impl Fn(&str) -> Option<&'a str>) -> ListOptionsSeen {
    let watch = first("watch").is_some_and(query_bool);
    let ints_ok =
        ["limit", "timeoutSeconds"].iter().all(|k| first(k).is_none_or(|v| v.parse::<i64>().is_ok()));
    let labels_ok = first("labelSelector").is_none_or(|s| LabelSelector::parse(s).is_ok());
    let fields = first("fieldSelector").map(FieldSelector::parse);
    if !ints_ok || !labels_ok || matches!(fields, Some(Err(_))) {
        return ListOptionsSeen { watch, selected_name: None };
    }
    let selected_name = match fields {
        Some(Ok(selector)) => selector.requires_exact_match("metadata.name").map(str::to_string),
        _ => None,
    };
    ListOptionsSeen { watch, selected_name }
}

/// A query boolean as Kubernetes reads it: only `false` (any case) and `0` are false, even
/// the empty string is true.
fn query_bool(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// Whether `name` can be a path segment (Kubernetes' `IsValidPathSegmentName`).
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// The non-empty segments between the outer slashes (`/a/b/` gives `[a, b]`).
fn split_path(path: &str) -> Vec<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() }
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is.
fn percent_decode(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, url: &str) -> RequestInfo {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        RequestInfo::parse(&method, path, query)
    }

    /// (method, url, verb, prefix, group, version, namespace, resource, subresource, name, parts).
    type Case = (
        Method,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    );

    /// Kubernetes' `TestGetAPIRequestInfo` success cases, and a few more.
    #[test]
    fn resource_requests() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (Method::GET, "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
            (Method::GET, "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"]),
            (Method::GET, "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
            (Method::HEAD, "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
            (Method::GET, "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
            (Method::HEAD, "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
            // special verbs
            (Method::GET, "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
            (Method::GET, "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"]),
            (Method::GET, "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods?watch=FALSE", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods?watch=", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            // subresource identification
            (Method::GET, "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"]),
            (Method::GET, "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"]),
            (Method::PUT, "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"]),
            (Method::PUT, "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"]),
            // verb identification
            (Method::PATCH, "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
            (Method::DELETE, "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
            (Method::POST, "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::OPTIONS, "/api/v1/namespaces/other/pods", "", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            // deletecollection verb identification
            (Method::DELETE, "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"]),
            (Method::DELETE, "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
            (Method::DELETE, "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::DELETE, "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
            // api group and version identification
            (Method::POST, "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
            (Method::POST, "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"]),
            (Method::PUT, "/apis/apps/v1/namespaces/ns/deployments/web/scale", "update", "apis", "apps", "v1", "ns", "deployments", "scale", "web", &["deployments", "web", "scale"]),
            // trailing slashes and escapes
            (Method::GET, "/api/v1/namespaces/other/pods/", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
            (Method::GET, "/api/v1/namespaces/other/pods/a%62c", "get", "api", "", "v1", "other", "pods", "", "abc", &["pods", "abc"]),
        ];
        for (method, url, verb, prefix, group, version, ns, resource, sub, name, parts) in cases {
            let info = parse(method.clone(), url);
            let want = RequestInfo {
                is_resource_request: true,
                path: info.path.clone(),
                verb: verb.to_string(),
                api_prefix: prefix.to_string(),
                api_group: group.to_string(),
                api_version: version.to_string(),
                namespace: ns.to_string(),
                resource: resource.to_string(),
                subresource: sub.to_string(),
                name: name.to_string(),
                parts: parts.iter().map(|p| p.to_string()).collect(),
                field_selector: String::new(),
                label_selector: String::new(),
            };
            assert_eq!(info, want, "{method} {url}");
        }
    }

    #[test]
    fn non_resource_requests() {
        let cases: &[(&str, bool)] = &[
            ("/api/version/resource", true),
            ("/apis/group/version/resource/name/subresource", true),
            ("/api/version/resource/name/subresource", true),
            ("/apis/batch/v1/job", true),
            ("/apis/batch/v1/job/foo", true),
            ("/apis/batch/v1/job/foo/scale", true),
            ("/not-api/version/resource", false),
            ("/apis/extensions/v1beta1", false),
            ("/apis/extensions/v1beta1/", false),
            ("/api/version", false),
            ("/api/version/", false),
            ("/apis/group/version/", false),
            ("/apis/version/resource", false),
            ("/badprefix/version/resource", false),
            ("/api", false),
            ("/apis", false),
            ("/", false),
            ("", false),
            ("/healthz", false),
            ("/openapi/v3", false),
            ("/openapi/v3/apis/apps/v1", false),
        ];
        for (url, resource) in cases {
            assert_eq!(parse(Method::GET, url).is_resource_request, *resource, "{url}");
        }
        let info = parse(Method::GET, "/healthz");
        assert_eq!((info.verb.as_str(), info.path.as_str()), ("get", "/healthz"));
        assert_eq!(parse(Method::POST, "/version").verb, "post");
        assert_eq!(parse(Method::PUT, "/openapi/v3").verb, "put");
        assert_eq!(parse(Method::HEAD, "/livez").verb, "head");
    }

    /// Kubernetes' `TestSelectorParsing`: (method, url, name, verb, field selector, label selector).
    #[test]
    fn selectors() {
        #[rustfmt::skip]
        let cases: &[(Method, &str, &str, &str, &str, &str)] = &[
            (Method::GET, "/apis/group/version/resource", "", "list", "", ""),
            (Method::GET, "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list", "metadata.name=name1", ""),
            (Method::GET, "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch", "metadata.name=name1", ""),
            (Method::GET, "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "list", "foo=bar", "baz=qux"),
            (Method::GET, "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list", "metadata.name=name1,foo", ""),
            (Method::GET, "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch", "metadata.name=name1,foo", ""),
            (Method::GET, "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list", "metadata.name=name1,foo", ""),
            (Method::DELETE, "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "deletecollection", "foo=bar", "baz=qux"),
            (Method::GET, "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz", "foo", "list", "metadata.name=foo", "foo=bar"),
            (Method::GET, "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar", "name", "get", "", ""),
            (Method::GET, "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "", "watch", "", ""),
            (Method::GET, "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "name", "watch", "", ""),
            // a name that cannot be a path segment is not taken
            (Method::GET, "/api/v1/pods?fieldSelector=metadata.name%3D..", "", "list", "metadata.name=..", ""),
            // an option that fails to decode drops the selected name but keeps watch
            (Method::GET, "/api/v1/pods?fieldSelector=metadata.name%3Dweb&limit=x&watch=1", "", "watch", "metadata.name=web", ""),
            (Method::GET, "/api/v1/pods?fieldSelector=metadata.name%3Dweb&labelSelector=a%20in", "", "list", "metadata.name=web", "a in"),
        ];
        for (method, url, name, verb, fields, labels) in cases {
            let info = parse(method.clone(), url);
            assert_eq!(
                (
                    info.name.as_str(),
                    info.verb.as_str(),
                    info.field_selector.as_str(),
                    info.label_selector.as_str()
                ),
                (*name, *verb, *fields, *labels),
                "{method} {url}"
            );
        }
    }

    #[test]
    fn watch_without_resource_names_nothing() {
        let info = parse(Method::GET, "/api/v1/watch");
        assert!(info.is_resource_request);
        assert_eq!((info.resource.as_str(), info.name.as_str()), ("", ""));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2Fb"), "/a/b");
        assert_eq!(percent_decode("/a%zz%4"), "/a%zz%4");
        assert_eq!(percent_decode("/x%41"), "/xA");
    }
}
