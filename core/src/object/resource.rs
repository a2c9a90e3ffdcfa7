//! What a kind is: its names and scope ([`ResourceType`]) and the [`Resource`] trait that
//! built-in and user-defined kinds implement alike.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The names and scope of a kind, as discovery and URLs use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group; empty for the core group (`v1` Pods).
    pub group: &'static str,
    /// API version within the group (`v1`).
    pub version: &'static str,
    /// The kind (`Pod`).
    pub kind: &'static str,
    /// The resource name in URLs and storage keys (`pods`).
    pub plural: &'static str,
    /// The singular, lower-case name (`pod`).
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`po`).
    pub short_names: &'static [&'static str],
    /// Whether the kind has a `status` subresource: a main update then keeps the stored status
    /// and a status update changes nothing else.
    pub has_status: bool,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of this kind's list (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group as it appears in storage keys: `core` for the core group.
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() { "core" } else { self.group }
    }

    /// A type registered at run time (a user kind loaded from configuration): its strings are
    /// leaked once, as registrations live for the whole process.
    #[allow(clippy::too_many_arguments)]
    pub fn leak(
        group: String,
        version: String,
        kind: String,
        plural: String,
        namespaced: bool,
        short_names: Vec<String>,
        has_status: bool,
    ) -> Self {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let singular = leak(kind.to_lowercase());
        let short: Vec<&'static str> = short_names.into_iter().map(leak).collect();
        ResourceType {
            group: leak(group),
            version: leak(version),
            kind: leak(kind),
            plural: leak(plural),
            singular,
            namespaced,
            short_names: Box::leak(short.into_boxed_slice()),
            has_status,
        }
    }
}

/// A kind of object the registry stores: serializable, with standard object metadata.
///
/// Built-in kinds (the `k8s-openapi` types) implement it in this module; a user kind
/// implements it the same way and is then registered with
/// [`KindRegistry::register`](super::KindRegistry::register):
///
/// ```
/// use flotilla_core::object::{Kind, Resource, ResourceType};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// struct Game {
///     #[serde(default, rename = "apiVersion")]
///     api_version: String,
///     #[serde(default)]
///     kind: String,
///     #[serde(default)]
///     metadata: ObjectMeta,
///     #[serde(default)]
///     spec: serde_json::Value,
/// }
///
/// impl Resource for Game {
///     const TYPE: ResourceType = ResourceType {
///         group: "games.example.com",
///         version: "v1",
///         kind: "Game",
///         plural: "games",
///         singular: "game",
///         namespaced: true,
///         short_names: &["gm"],
///         has_status: false,
///     };
///     fn meta(&self) -> &ObjectMeta { &self.metadata }
///     fn meta_mut(&mut self) -> &mut ObjectMeta { &mut self.metadata }
/// }
/// impl Kind for Game {}
/// ```
pub trait Resource: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The kind's names and scope.
    const TYPE: ResourceType;

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;

    /// The object's metadata, for changing.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

/// Implements [`Resource`] for `k8s-openapi` types, taking the names from its own traits.
macro_rules! builtin {
    ($($ty:ty => $singular:literal, [$($short:literal),*], status: $status:literal;)*) => {$(
        impl Resource for $ty {
            const TYPE: ResourceType = ResourceType {
                group: <$ty as k8s_openapi::Resource>::GROUP,
                version: <$ty as k8s_openapi::Resource>::VERSION,
                kind: <$ty as k8s_openapi::Resource>::KIND,
                plural: <$ty as k8s_openapi::Resource>::URL_PATH_SEGMENT,
                singular: $singular,
                namespaced: is_namespaced::<<$ty as k8s_openapi::Resource>::Scope>(),
                short_names: &[$($short),*],
                has_status: $status,
            };
            fn meta(&self) -> &ObjectMeta {
                k8s_openapi::Metadata::metadata(self)
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                k8s_openapi::Metadata::metadata_mut(self)
            }
        }
    )*};
}

/// Whether a `k8s-openapi` scope marker is the namespaced one.
const fn is_namespaced<S: ScopeMarker>() -> bool {
    S::NAMESPACED
}

/// Maps `k8s-openapi`'s scope markers to a constant.
trait ScopeMarker {
    const NAMESPACED: bool;
}
impl ScopeMarker for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeMarker for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

use k8s_openapi::api::{apps, certificates, coordination, core, discovery, rbac, scheduling, storage};

builtin! {
    core::v1::Namespace => "namespace", ["ns"], status: true;
    core::v1::Node => "node", ["no"], status: true;
    core::v1::Pod => "pod", ["po"], status: true;
    core::v1::Service => "service", ["svc"], status: true;
    core::v1::Endpoints => "endpoints", ["ep"], status: false;
    core::v1::PersistentVolume => "persistentvolume", ["pv"], status: true;
    core::v1::PersistentVolumeClaim => "persistentvolumeclaim", ["pvc"], status: true;
    core::v1::ConfigMap => "configmap", ["cm"], status: false;
    core::v1::Secret => "secret", [], status: false;
    core::v1::ServiceAccount => "serviceaccount", ["sa"], status: false;
    core::v1::Event => "event", ["ev"], status: false;
    core::v1::ResourceQuota => "resourcequota", ["quota"], status: true;
    apps::v1::ReplicaSet => "replicaset", ["rs"], status: true;
    apps::v1::Deployment => "deployment", ["deploy"], status: true;
    discovery::v1::EndpointSlice => "endpointslice", [], status: false;
    storage::v1::StorageClass => "storageclass", ["sc"], status: false;
    coordination::v1::Lease => "lease", [], status: false;
    rbac::v1::Role => "role", [], status: false;
    rbac::v1::ClusterRole => "clusterrole", [], status: false;
    rbac::v1::RoleBinding => "rolebinding", [], status: false;
    rbac::v1::ClusterRoleBinding => "clusterrolebinding", [], status: false;
    certificates::v1::CertificateSigningRequest => "certificatesigningrequest", ["csr"], status: true;
    scheduling::v1::PriorityClass => "priorityclass", ["pc"], status: false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_and_scopes() {
        let pod = core::v1::Pod::TYPE;
        assert_eq!((pod.group, pod.version, pod.kind, pod.plural), ("", "v1", "Pod", "pods"));
        assert_eq!((pod.namespaced, pod.has_status), (true, true));
        assert_eq!(pod.api_version(), "v1");
        assert_eq!(pod.storage_group(), "core");
        let deploy = apps::v1::Deployment::TYPE;
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.plural, "deployments");
        let scopes = [core::v1::Namespace::TYPE.namespaced, rbac::v1::ClusterRole::TYPE.namespaced];
        assert_eq!(scopes, [false, false]);
        assert_eq!(core::v1::Endpoints::TYPE.plural, "endpoints");
        assert_eq!(core::v1::Pod::TYPE.list_kind(), "PodList");
    }
}
