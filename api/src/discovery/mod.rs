//! Discovery: the documents kubectl reads to learn which groups, versions and resources the
//! server has (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) and which Kubernetes
//! version it speaks (`/version`).
//!
//! [`Discovery::new`] computes every document once from a
//! [`KindRegistry`]: every registered kind, built-in or
//! not, appears the same way. The only per-resource knowledge here is what Kubernetes itself
//! fixes: which subresources exist besides `status` (`pods/log`, `deployments/scale`, ...), the
//! `all` category of pods, services and workloads, and resources served without a stored kind
//! (`selfsubjectaccessreviews`). [`routes`] serves them, with the
//! [`OpenApi`](crate::openapi::OpenApi) documents.
//!
//! # Legacy discovery only
//!
//! kubectl asks for aggregated discovery first (`Accept:
//! application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, ...,
//! application/json`) but decides by the *response's* `Content-Type`: only a content type
//! naming the `APIGroupDiscoveryList` GVK is read as aggregated; plain `application/json` is
//! read as the legacy `APIVersions`/`APIGroupList`, after which it fetches each group-version's
//! `APIResourceList` (client-go v0.32 `discovery/discovery_client.go`, `downloadLegacy`,
//! `downloadAPIs`, `ContentTypeIsGVK`). So the aggregated form is not served: every answer here
//! is plain `application/json`.
//!
//! The version is `v1.33.0+flotilla`: the Kubernetes API level of the `k8s-openapi` types
//! served, with Flotilla as semver build metadata. kubectl parses it with `ParseSemantic` for
//! its skew warning (kubectl v0.32 `pkg/cmd/version/skew_warning.go`) and fails on a version it
//! cannot parse; build metadata, unlike a pre-release suffix, keeps `>=1.33.0` range checks
//! (Helm's `kubeVersion`) true.

mod resources;
mod routes;

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_core::object::KindRegistry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResourceList, APIVersions, GroupVersionForDiscovery,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use serde::Serialize;

pub use routes::{Error, Result, routes};

/// The Kubernetes major version whose API the server speaks.
pub const KUBERNETES_MAJOR: &str = "1";
/// The Kubernetes minor version whose API the server speaks (that of the `k8s-openapi` types).
pub const KUBERNETES_MINOR: &str = "33";
/// The `gitVersion` the server reports: a semantic version kubectl's skew check parses.
pub const GIT_VERSION: &str = "v1.33.0+flotilla";

/// A document and its JSON encoding, computed once.
#[derive(Clone, Debug)]
pub(crate) struct Document<T> {
    value: T,
    json: Bytes,
}

impl<T: Serialize> Document<T> {
    fn new(value: T) -> Self {
        let json =
            serde_json::to_vec(&value).expect("discovery documents are plain data and always serialize");
        Document { value, json: Bytes::from(json) }
    }
}

/// Every discovery document of one server, computed from its kinds.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// `/api`.
    core_versions: Document<APIVersions>,
    /// `/apis`.
    groups: Document<APIGroupList>,
    /// `/api/v1`, `/apis/<group>/<version>`, by `(group, version)`; the core group is `""`.
    resources: BTreeMap<(String, String), Document<APIResourceList>>,
    /// `/version`.
    version: Document<Info>,
}

impl Discovery {
    /// Computes every document for the kinds of `kinds`.
    ///
    /// ```
    /// use flotilla_api::discovery::Discovery;
    /// use flotilla_core::object::KindRegistry;
    ///
    /// let d = Discovery::new(&KindRegistry::builtin());
    /// let pods = d.resources("", "v1").and_then(|l| l.resources.iter().find(|r| r.name == "pods"));
    /// assert_eq!(pods.map(|r| r.kind.as_str()), Some("Pod"));
    /// ```
    pub fn new(kinds: &KindRegistry) -> Self {
        let lists = resources::resource_lists(kinds.types());

        let core: Vec<&str> = {
            let mut v: Vec<&str> =
                lists.keys().filter(|(g, _)| g.is_empty()).map(|(_, v)| v.as_str()).collect();
            v.sort_by(|a, b| resources::version_priority(a, b));
            v
        };
        let core_versions = APIVersions {
            versions: core.iter().map(|v| v.to_string()).collect(),
            server_address_by_client_cidrs: Vec::new(),
        };

        let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (g, v) in lists.keys().filter(|(g, _)| !g.is_empty()) {
            by_group.entry(g).or_default().push(v);
        }
        let groups = by_group
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by(|a, b| resources::version_priority(a, b));
                let versions: Vec<GroupVersionForDiscovery> = versions
                    .into_iter()
                    .map(|v| GroupVersionForDiscovery {
                        group_version: resources::group_version(name, v),
                        version: v.to_string(),
                    })
                    .collect();
                APIGroup {
                    name: name.to_string(),
                    preferred_version: versions.first().cloned(),
                    server_address_by_client_cidrs: None,
                    versions,
                }
            })
            .collect();

        Discovery {
            core_versions: Document::new(core_versions),
            groups: Document::new(APIGroupList { groups }),
            resources: lists.into_iter().map(|(k, l)| (k, Document::new(l))).collect(),
            version: Document::new(version_info()),
        }
    }

    /// `/api`: the versions of the core group.
    pub fn core_versions(&self) -> &APIVersions {
        &self.core_versions.value
    }

    /// `/apis`: every named group, its versions, and its preferred version.
    pub fn groups(&self) -> &APIGroupList {
        &self.groups.value
    }

    /// The resources of one group-version (`""` is the core group), if the server has it.
    pub fn resources(&self, group: &str, version: &str) -> Option<&APIResourceList> {
        self.resources.get(&(group.to_string(), version.to_string())).map(|d| &d.value)
    }

    /// Every group-version's resources, as `(group, version, list)`, core group first.
    pub fn resource_lists(&self) -> impl Iterator<Item = (&str, &str, &APIResourceList)> {
        self.resources.iter().map(|((g, v), d)| (g.as_str(), v.as_str(), &d.value))
    }

    /// `/version`.
    pub fn version(&self) -> &Info {
        &self.version.value
    }

    pub(crate) fn core_versions_json(&self) -> &Bytes {
        &self.core_versions.json
    }

    pub(crate) fn groups_json(&self) -> &Bytes {
        &self.groups.json
    }

    pub(crate) fn resources_json(&self, group: &str, version: &str) -> Option<&Bytes> {
        self.resources.get(&(group.to_string(), version.to_string())).map(|d| &d.json)
    }

    pub(crate) fn version_json(&self) -> &Bytes {
        &self.version.json
    }
}

/// Go's name for the target architecture, as `version.Info.platform` spells it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        other => other,
    }
}

fn version_info() -> Info {
    Info {
        major: KUBERNETES_MAJOR.to_string(),
        minor: KUBERNETES_MINOR.to_string(),
        git_version: GIT_VERSION.to_string(),
        git_commit: String::new(),
        git_tree_state: String::new(),
        build_date: String::new(),
        // Not a Go program; kubectl prints the field and nothing reads it.
        go_version: String::new(),
        compiler: "rustc".to_string(),
        platform: format!("{}/{}", std::env::consts::OS, go_arch()),
        emulation_major: None,
        emulation_minor: None,
        min_compatibility_major: None,
        min_compatibility_minor: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_core::object::{ResourceType, SchemalessKind};
    use serde_json::Value;

    use super::*;

    fn find<'a>(
        d: &'a Discovery,
        group: &str,
        version: &str,
        name: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource {
        d.resources(group, version)
            .and_then(|l| l.resources.iter().find(|r| r.name == name))
            .unwrap_or_else(|| panic!("{group}/{version} {name} is listed"))
    }

    #[test]
    fn pods_are_listed_as_kube_apiserver_lists_them() {
        let d = Discovery::new(&KindRegistry::builtin());
        let pods = find(&d, "", "v1", "pods");
        assert_eq!(pods.singular_name, "pod");
        assert!(pods.namespaced);
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.short_names, Some(vec!["po".to_string()]));
        assert_eq!(pods.categories, Some(vec!["all".to_string()]));
        assert_eq!(
            pods.verbs,
            ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        );
        assert_eq!(pods.group, None);

        let status = find(&d, "", "v1", "pods/status");
        assert_eq!((status.kind.as_str(), status.singular_name.as_str()), ("Pod", ""));
        assert_eq!(status.verbs, ["get", "patch", "update"]);
        let eviction = find(&d, "", "v1", "pods/eviction");
        assert_eq!((eviction.group.as_deref(), eviction.kind.as_str()), (Some("policy"), "Eviction"));
        assert_eq!(eviction.verbs, ["create"]);
        let binding = find(&d, "", "v1", "pods/binding");
        assert_eq!((binding.group.as_deref(), binding.kind.as_str()), (None, "Binding"));
        assert_eq!(find(&d, "", "v1", "pods/log").verbs, ["get"]);
        assert_eq!(find(&d, "", "v1", "namespaces/finalize").verbs, ["update"]);
        assert!(!find(&d, "", "v1", "namespaces").namespaced);

        let scale = find(&d, "apps", "v1", "deployments/scale");
        assert_eq!((scale.group.as_deref(), scale.version.as_deref()), (Some("autoscaling"), Some("v1")));
        assert_eq!(find(&d, "apps", "v1", "deployments").short_names, Some(vec!["deploy".to_string()]));
        assert!(find(&d, "apps", "v1", "replicasets/scale").verbs.contains(&"patch".to_string()));

        // Kinds without a status subresource get none; a kind with no short names has none.
        let cm = d.resources("", "v1").map(|l| l.resources.iter().any(|r| r.name == "configmaps/status"));
        assert_eq!(cm, Some(false));
        assert_eq!(find(&d, "", "v1", "secrets").short_names, None);
        assert_eq!(find(&d, "", "v1", "configmaps").categories, None);
    }

    #[test]
    fn resources_are_sorted_by_name() {
        let d = Discovery::new(&KindRegistry::builtin());
        for (_, _, list) in d.resource_lists() {
            let names: Vec<_> = list.resources.iter().map(|r| r.name.clone()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{}", list.group_version);
        }
    }

    #[test]
    fn groups_versions_and_the_virtual_review() {
        let d = Discovery::new(&KindRegistry::builtin());
        assert_eq!(d.core_versions().versions, ["v1"]);
        let names: Vec<_> = d.groups().groups.iter().map(|g| g.name.as_str()).collect();
        assert!(names.contains(&"apps") && names.contains(&"authorization.k8s.io"), "{names:?}");
        assert!(!names.contains(&""), "the core group is served at /api only");
        let apps = d.groups().groups.iter().find(|g| g.name == "apps").expect("apps is a group");
        assert_eq!(apps.preferred_version.as_ref().map(|p| p.group_version.as_str()), Some("apps/v1"));
        assert_eq!(apps.versions[0].version, "v1");

        let review = find(&d, "authorization.k8s.io", "v1", "selfsubjectaccessreviews");
        assert_eq!((review.kind.as_str(), review.namespaced), ("SelfSubjectAccessReview", false));
        assert_eq!(review.verbs, ["create"]);
    }

    #[test]
    fn a_user_kind_appears_like_a_builtin_one() -> anyhow::Result<()> {
        let mut kinds = KindRegistry::builtin();
        let v1 = ResourceType::leak(
            "games.example.com".into(),
            "v1".into(),
            "Game".into(),
            "games".into(),
            true,
            vec!["gm".into()],
            true,
        );
        let v2alpha1 = ResourceType { version: "v2alpha1", plural: "tournaments", kind: "Tournament", ..v1 };
        kinds.register_strategy(Arc::new(SchemalessKind(v1)))?;
        kinds.register_strategy(Arc::new(SchemalessKind(v2alpha1)))?;
        let d = Discovery::new(&kinds);

        let games = find(&d, "games.example.com", "v1", "games");
        assert_eq!((games.singular_name.as_str(), games.kind.as_str()), ("game", "Game"));
        assert_eq!(games.short_names, Some(vec!["gm".to_string()]));
        assert_eq!(games.categories, None);
        assert_eq!(find(&d, "games.example.com", "v1", "games/status").verbs, ["get", "patch", "update"]);
        assert_eq!(find(&d, "games.example.com", "v2alpha1", "tournaments").kind, "Tournament");

        let group =
            d.groups().groups.iter().find(|g| g.name == "games.example.com").expect("group is listed");
        let versions: Vec<_> = group.versions.iter().map(|v| v.group_version.as_str()).collect();
        assert_eq!(versions, ["games.example.com/v1", "games.example.com/v2alpha1"]);
        assert_eq!(group.preferred_version.as_ref().map(|v| v.version.as_str()), Some("v1"));
        Ok(())
    }

    #[test]
    fn json_has_kubernetes_field_names() -> anyhow::Result<()> {
        let d = Discovery::new(&KindRegistry::builtin());
        let api: Value = serde_json::from_slice(d.core_versions_json())?;
        assert_eq!(api["kind"], "APIVersions");
        assert_eq!(api["versions"], serde_json::json!(["v1"]));
        let apis: Value = serde_json::from_slice(d.groups_json())?;
        assert_eq!(apis["kind"], "APIGroupList");
        assert!(apis["groups"][0]["preferredVersion"]["groupVersion"].is_string());
        let v1: Value = serde_json::from_slice(d.resources_json("", "v1").expect("core/v1 exists"))?;
        assert_eq!(v1["kind"], "APIResourceList");
        assert_eq!(v1["groupVersion"], "v1");
        let pods = v1["resources"].as_array().and_then(|r| r.iter().find(|r| r["name"] == "pods")).cloned();
        let pods = pods.unwrap_or_default();
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["shortNames"], serde_json::json!(["po"]));
        let version: Value = serde_json::from_slice(d.version_json())?;
        assert_eq!((version["major"].as_str(), version["minor"].as_str()), (Some("1"), Some("33")));
        assert_eq!(version["gitVersion"], GIT_VERSION);
        assert!(version["platform"].as_str().is_some_and(|p| p.contains('/')));
        assert!(version.get("goVersion").is_some());
        Ok(())
    }
}
