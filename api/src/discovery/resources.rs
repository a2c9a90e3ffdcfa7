//! The resource lists of each group-version, built from the kind registry plus the facts
//! Kubernetes itself fixes per resource (subresources, categories) and the resources served
//! without a kind in the registry.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use flotilla_core::object::ResourceType;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};

/// The verbs of every registered resource: the server serves all of them for every kind.
pub(crate) const RESOURCE_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The verbs of a `status` subresource (and of `scale`).
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

/// Whose kind a subresource's requests and responses carry.
#[derive(Clone, Copy)]
enum SubKind {
    /// The parent resource's own kind (`pods/status` is a `Pod`).
    Parent,
    /// Another kind, as `(group, version, kind)` (`deployments/scale` is an autoscaling/v1
    /// `Scale`).
    Other(&'static str, &'static str, &'static str),
}

/// A subresource the server serves for one resource, besides `status`.
struct Subresource {
    /// The parent's group.
    group: &'static str,
    /// The parent's resource name.
    plural: &'static str,
    /// The subresource's name (`scale`).
    name: &'static str,
    verbs: &'static [&'static str],
    kind: SubKind,
}

/// Subresources besides `status`, as kube-apiserver names and types them. Only those the
/// server implements are listed: advertising one it does not serve would send kubectl to a 404.
const SUBRESOURCES: &[Subresource] = &[
    Subresource {
        group: "",
        plural: "namespaces",
        name: "finalize",
        verbs: &["update"],
        kind: SubKind::Parent,
    },
    Subresource {
        group: "",
        plural: "pods",
        name: "binding",
        verbs: &["create"],
        kind: SubKind::Other("", "v1", "Binding"),
    },
    Subresource {
        group: "",
        plural: "pods",
        name: "eviction",
        verbs: &["create"],
        kind: SubKind::Other("policy", "v1", "Eviction"),
    },
    Subresource { group: "", plural: "pods", name: "log", verbs: &["get"], kind: SubKind::Parent },
    Subresource {
        group: "",
        plural: "serviceaccounts",
        name: "token",
        verbs: &["create"],
        kind: SubKind::Other("authentication.k8s.io", "v1", "TokenRequest"),
    },
    Subresource {
        group: "certificates.k8s.io",
        plural: "certificatesigningrequests",
        name: "approval",
        verbs: GET_PATCH_UPDATE,
        kind: SubKind::Parent,
    },
    Subresource {
        group: "apps",
        plural: "deployments",
        name: "scale",
        verbs: GET_PATCH_UPDATE,
        kind: SubKind::Other("autoscaling", "v1", "Scale"),
    },
    Subresource {
        group: "apps",
        plural: "replicasets",
        name: "scale",
        verbs: GET_PATCH_UPDATE,
        kind: SubKind::Other("autoscaling", "v1", "Scale"),
    },
];

/// The categories Kubernetes puts its own resources in (`kubectl get all` expands `all` from
/// discovery). Listed by `(group, resource)`; a kind this server does not register is simply
/// not found here.
const CATEGORIES: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["all"]),
    ("", "replicationcontrollers", &["all"]),
    ("", "services", &["all"]),
    ("apps", "daemonsets", &["all"]),
    ("apps", "deployments", &["all"]),
    ("apps", "replicasets", &["all"]),
    ("apps", "statefulsets", &["all"]),
    ("autoscaling", "horizontalpodautoscalers", &["all"]),
    ("batch", "cronjobs", &["all"]),
    ("batch", "jobs", &["all"]),
];

/// A resource the server serves without a kind in the registry (reviews are not stored).
struct VirtualResource {
    group: &'static str,
    version: &'static str,
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
}

/// Every resource served outside the kind registry.
const VIRTUAL: &[VirtualResource] = &[VirtualResource {
    group: "authorization.k8s.io",
    version: "v1",
    name: "selfsubjectaccessreviews",
    singular: "selfsubjectaccessreview",
    kind: "SelfSubjectAccessReview",
    namespaced: false,
    verbs: &["create"],
}];

/// `group/version`, or `version` alone for the core group.
pub(crate) fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// `None` for an empty list: kube-apiserver leaves empty `shortNames`/`categories` out.
fn non_empty(s: &[&str]) -> Option<Vec<String>> {
    if s.is_empty() { None } else { Some(strings(s)) }
}

/// The discovery entries of one registered kind: the resource, then its subresources.
fn entries(t: &ResourceType) -> Vec<APIResource> {
    let categories = CATEGORIES
        .iter()
        .find(|(g, p, _)| *g == t.group && *p == t.plural)
        .map(|(.., c)| *c)
        .unwrap_or_default();
    let mut out = vec![APIResource {
        name: t.plural.to_string(),
        singular_name: t.singular.to_string(),
        namespaced: t.namespaced,
        kind: t.kind.to_string(),
        verbs: strings(RESOURCE_VERBS),
        short_names: non_empty(t.short_names),
        categories: non_empty(categories),
        ..APIResource::default()
    }];
    let sub = |name: &str, verbs: &[&str], kind: SubKind| {
        let (group, version, kind) = match kind {
            SubKind::Parent => (None, None, t.kind),
            // kube-apiserver names the group and version only when they differ from the list's.
            SubKind::Other(g, v, k) if (g, v) == (t.group, t.version) => (None, None, k),
            SubKind::Other(g, v, k) => (Some(g.to_string()), Some(v.to_string()), k),
        };
        APIResource {
            name: format!("{}/{name}", t.plural),
            singular_name: String::new(),
            namespaced: t.namespaced,
            kind: kind.to_string(),
            verbs: strings(verbs),
            group,
            version,
            ..APIResource::default()
        }
    };
    if t.has_status {
        out.push(sub("status", GET_PATCH_UPDATE, SubKind::Parent));
    }
    for s in SUBRESOURCES.iter().filter(|s| s.group == t.group && s.plural == t.plural) {
        out.push(sub(s.name, s.verbs, s.kind));
    }
    out
}

/// The resource lists of every group-version, keyed by `(group, version)`, resources sorted by
/// name as kube-apiserver sorts them (so `pods/status` follows `pods`).
pub(crate) fn resource_lists(
    types: impl Iterator<Item = ResourceType>,
) -> BTreeMap<(String, String), APIResourceList> {
    let mut lists: BTreeMap<(String, String), Vec<APIResource>> = BTreeMap::new();
    for t in types {
        lists.entry((t.group.to_string(), t.version.to_string())).or_default().extend(entries(&t));
    }
    for v in VIRTUAL {
        let list = lists.entry((v.group.to_string(), v.version.to_string())).or_default();
        // A registered kind of the same name wins: it is what the resource routes serve.
        if list.iter().any(|r| r.name == v.name) {
            continue;
        }
        list.push(APIResource {
            name: v.name.to_string(),
            singular_name: v.singular.to_string(),
            namespaced: v.namespaced,
            kind: v.kind.to_string(),
            verbs: strings(v.verbs),
            ..APIResource::default()
        });
    }
    lists
        .into_iter()
        .map(|((group, version), mut resources)| {
            resources.sort_by(|a, b| a.name.cmp(&b.name));
            let group_version = group_version(&group, &version);
            ((group, version), APIResourceList { group_version, resources })
        })
        .collect()
}

/// The parts of a Kubernetes-style version (`v2beta1` is `(2, Beta, 1)`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stability {
    Alpha,
    Beta,
    Ga,
}

fn kube_version(v: &str) -> Option<(u64, Stability, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (major, rest) = rest.split_at(digits);
    let major = major.parse().ok().filter(|m| *m > 0)?;
    if rest.is_empty() {
        return Some((major, Stability::Ga, 0));
    }
    let (stability, minor) = if let Some(m) = rest.strip_prefix("beta") {
        (Stability::Beta, m)
    } else if let Some(m) = rest.strip_prefix("alpha") {
        (Stability::Alpha, m)
    } else {
        return None;
    };
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((major, stability, minor.parse().ok()?))
}

/// Kubernetes' version priority (`CompareKubeAwareVersionStrings`): GA before beta before
/// alpha, higher numbers first, and versions of another form last, alphabetically. The first
/// version of a group in this order is its preferred version.
pub(crate) fn version_priority(a: &str, b: &str) -> Ordering {
    match (kube_version(a), kube_version(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sb.cmp(&sa).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec![
            "foo1",
            "v1alpha1",
            "v10",
            "v1",
            "v2beta1",
            "v11alpha2",
            "v2",
            "v1beta2",
            "v12alpha1",
            "foo10",
        ];
        v.sort_by(|a, b| version_priority(a, b));
        let expected =
            ["v10", "v2", "v1", "v2beta1", "v1beta2", "v12alpha1", "v11alpha2", "v1alpha1", "foo1", "foo10"];
        assert_eq!(v, expected);
        assert_eq!(version_priority("v1", "v1"), Ordering::Equal);
        assert!(kube_version("v0").is_none());
        assert!(kube_version("v1gamma1").is_none());
        assert!(kube_version("v1beta").is_none());
    }

    #[test]
    fn subresources_name_another_group_only_when_it_differs() {
        let t = ResourceType {
            group: "apps",
            version: "v1",
            kind: "Deployment",
            plural: "deployments",
            singular: "deployment",
            namespaced: true,
            short_names: &["deploy"],
            has_status: true,
        };
        let e = entries(&t);
        let names: Vec<_> = e.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["deployments", "deployments/status", "deployments/scale"]);
        assert_eq!(e[2].group.as_deref(), Some("autoscaling"));
        assert_eq!(e[2].version.as_deref(), Some("v1"));
        assert_eq!(e[2].kind, "Scale");
        assert_eq!(e[1].group, None);
        assert_eq!(e[0].categories, Some(vec!["all".to_string()]));
    }
}
