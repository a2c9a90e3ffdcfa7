//! Which protobuf message holds each `apiVersion`/`kind`: an index over the descriptor set
//! that `build.rs` compiles from Kubernetes' published `generated.proto` files (one file per
//! API group version), built once on first use.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

/// The descriptor set written by `build.rs`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// The group whose kinds (`DeleteOptions`, `Status`, ...) may be sent under any group.
const META_GROUP: &str = "meta.k8s.io";

/// Messages by group, version and kind.
#[derive(Default)]
pub(super) struct Catalog {
    messages: HashMap<(String, String, String), MessageDescriptor>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let mut c = Catalog::default();
    // The set is compiled by protox at build time; should it not decode, every kind is
    // unknown (415s that name the kind) rather than a panic.
    let Ok(pool) = DescriptorPool::decode(DESCRIPTORS) else {
        tracing::error!("the built-in Kubernetes protobuf descriptors do not decode");
        return c;
    };
    for file in pool.files() {
        let Some((group, version)) = group_version(file.package_name()) else { continue };
        for m in file.messages() {
            c.messages.insert((group.clone(), version.to_string(), m.name().to_string()), m);
        }
    }
    c
});

/// The catalog of every kind with a protobuf schema.
pub(super) fn catalog() -> &'static Catalog {
    &CATALOG
}

impl Catalog {
    /// The message of `kind` in `api_version` (`v1`, `apps/v1`, ...), if its schema is known.
    pub(super) fn message(&self, api_version: &str, kind: &str) -> Option<&MessageDescriptor> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let key = |g: &str| (g.to_string(), version.to_string(), kind.to_string());
        self.messages.get(&key(group)).or_else(|| self.messages.get(&key(META_GROUP)))
    }
}

/// The API group and version a proto package serves: `api.apps.v1` is `apps/v1`,
/// `api.rbac.v1` is `rbac.authorization.k8s.io/v1`, `api.core.v1` is the core group `v1`.
pub(super) fn group_version(package: &str) -> Option<(String, &str)> {
    let (prefix, version) = package.rsplit_once('.')?;
    let group = match prefix.split('.').collect::<Vec<_>>().as_slice() {
        ["api", "core"] => String::new(),
        ["api", g @ ("apps" | "batch" | "autoscaling" | "policy" | "extensions")] => (*g).to_string(),
        ["api", "rbac"] => "rbac.authorization.k8s.io".into(),
        ["api", "flowcontrol"] => "flowcontrol.apiserver.k8s.io".into(),
        ["api", "apiserverinternal"] => "internal.apiserver.k8s.io".into(),
        ["api", g] => format!("{g}.k8s.io"),
        ["apiextensions_apiserver", "pkg", "apis", "apiextensions"] => "apiextensions.k8s.io".into(),
        ["kube_aggregator", "pkg", "apis", "apiregistration"] => "apiregistration.k8s.io".into(),
        ["metrics", "pkg", "apis", g] => format!("{}.k8s.io", g.replace('_', ".")),
        ["apimachinery", "pkg", "apis", "meta"] => META_GROUP.into(),
        _ => return None,
    };
    Some((group, version))
}

/// The full name of a message in the catalog (for tests).
#[cfg(test)]
pub(super) fn full_name(api_version: &str, kind: &str) -> Option<String> {
    catalog().message(api_version, kind).map(|m| m.full_name().to_string())
}
