//! Built-in strategic-merge schemas of the kinds Flotilla serves.
//!
//! Each entry mirrors the `patchStrategy`/`patchMergeKey` struct tags of the Go types in
//! `k8s.io/api` (`core/v1`, `apps/v1`, `batch/v1`) and `k8s.io/apimachinery` (`ObjectMeta`).
//! Lists not named here have no tag there and are replaced whole: `tolerations`,
//! `readinessGates`, `containerStatuses`, `resizePolicy`, Node `taints`, Endpoints `subsets`,
//! RBAC `rules` and `subjects`, `managedFields`, StatefulSet `volumeClaimTemplates`.
//!
//! Kubernetes merges Service `ports` and container `ports` by the port number alone, although
//! server-side apply keys them by port and protocol; strategic merge keeps the Go tag.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::schema::MergeSchema;

/// The strategic-merge schema of a built-in kind, or `None` for a kind this table does not
/// know (custom resources among them): patch those with no schema, like a merge patch.
///
/// ```
/// use flotilla_core::patch::builtin_schema;
///
/// let deployment = builtin_schema("apps", "v1", "Deployment").expect("built in");
/// let containers = deployment.lookup(&["spec", "template", "spec", "containers"]);
/// assert_eq!(containers.and_then(|c| c.merge_key()), Some("name"));
/// assert!(builtin_schema("example.com", "v1", "Widget").is_none());
/// ```
pub fn builtin_schema(group: &str, version: &str, kind: &str) -> Option<&'static MergeSchema> {
    let versions = BUILTIN.get(kind)?;
    versions.iter().find(|(g, v, _)| *g == group && *v == version).map(|(.., schema)| schema)
}

type Gvk = (&'static str, &'static str, &'static str);

/// Group, version and schema of each kind's entries.
type ByKind = HashMap<&'static str, Vec<(&'static str, &'static str, MergeSchema)>>;

/// The table below, by kind.
static BUILTIN: LazyLock<ByKind> = LazyLock::new(|| {
    let mut by_kind: HashMap<_, Vec<_>> = HashMap::new();
    for ((group, version, kind), schema) in table() {
        by_kind.entry(kind).or_default().push((group, version, schema));
    }
    by_kind
});

/// Every built-in kind and its schema.
fn table() -> Vec<(Gvk, MergeSchema)> {
    vec![
        // core/v1
        (("", "v1", "Pod"), object().with("spec", pod_spec()).with("status", pod_status())),
        (("", "v1", "PodTemplate"), object().with("template", pod_template())),
        (("", "v1", "ReplicationController"), workload(with_conditions())),
        (
            ("", "v1", "Service"),
            object()
                .with("spec", MergeSchema::new().with("ports", by("port")))
                .with("status", with_conditions()),
        ),
        (("", "v1", "Endpoints"), object()),
        (
            ("", "v1", "Node"),
            object()
                .with("spec", MergeSchema::new().with("podCIDRs", MergeSchema::set()))
                .with("status", with_conditions().with("addresses", by("type"))),
        ),
        (("", "v1", "Namespace"), object().with("status", with_conditions())),
        (("", "v1", "ConfigMap"), object()),
        (("", "v1", "Secret"), object()),
        (("", "v1", "ServiceAccount"), object().with("secrets", by("name"))),
        (("", "v1", "PersistentVolumeClaim"), object().with("status", with_conditions())),
        (("", "v1", "PersistentVolume"), object()),
        (("", "v1", "Event"), object()),
        // apps/v1
        (
            ("apps", "v1", "Deployment"),
            object()
                .with(
                    "spec",
                    MergeSchema::new()
                        .with("template", pod_template())
                        .with("strategy", MergeSchema::new().retaining_keys()),
                )
                .with("status", with_conditions()),
        ),
        (("apps", "v1", "ReplicaSet"), workload(with_conditions())),
        (("apps", "v1", "StatefulSet"), workload(with_conditions())),
        (("apps", "v1", "DaemonSet"), workload(with_conditions())),
        (("apps", "v1", "ControllerRevision"), object()),
        // batch/v1
        (("batch", "v1", "Job"), workload(with_conditions())),
        (
            ("batch", "v1", "CronJob"),
            object().with(
                "spec",
                MergeSchema::new().with(
                    "jobTemplate",
                    MergeSchema::new()
                        .with("metadata", object_meta())
                        .with("spec", MergeSchema::new().with("template", pod_template())),
                ),
            ),
        ),
        // Kinds whose lists all replace: only their metadata merges specially.
        (("coordination.k8s.io", "v1", "Lease"), object()),
        (("events.k8s.io", "v1", "Event"), object()),
        (("discovery.k8s.io", "v1", "EndpointSlice"), object()),
        (("rbac.authorization.k8s.io", "v1", "Role"), object()),
        (("rbac.authorization.k8s.io", "v1", "ClusterRole"), object()),
        (("rbac.authorization.k8s.io", "v1", "RoleBinding"), object()),
        (("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"), object()),
    ]
}

/// A list of objects merged by `key`.
fn by(key: &'static str) -> MergeSchema {
    MergeSchema::new().merged_by(key)
}

/// Any top-level object: its `metadata`.
fn object() -> MergeSchema {
    MergeSchema::new().with("metadata", object_meta())
}

/// A status whose `conditions` merge by `type` (apps, batch, core and metav1 conditions alike).
fn with_conditions() -> MergeSchema {
    MergeSchema::new().with("conditions", by("type"))
}

/// An object with a pod template at `spec.template`, and the given status.
fn workload(status: MergeSchema) -> MergeSchema {
    object().with("spec", MergeSchema::new().with("template", pod_template())).with("status", status)
}

/// `ObjectMeta`.
fn object_meta() -> MergeSchema {
    MergeSchema::new().with("ownerReferences", by("uid")).with("finalizers", MergeSchema::set())
}

/// `PodTemplateSpec`.
fn pod_template() -> MergeSchema {
    MergeSchema::new().with("metadata", object_meta()).with("spec", pod_spec())
}

/// `Container` and `EphemeralContainer` (whose common fields carry the same tags).
fn container() -> MergeSchema {
    MergeSchema::new()
        .with("ports", by("containerPort"))
        .with("env", by("name"))
        .with("volumeMounts", by("mountPath"))
        .with("volumeDevices", by("devicePath"))
}

/// `PodSpec`.
fn pod_spec() -> MergeSchema {
    MergeSchema::new()
        .with("volumes", by("name").retaining_keys())
        .with("initContainers", container().merged_by("name"))
        .with("containers", container().merged_by("name"))
        .with("ephemeralContainers", container().merged_by("name"))
        .with("imagePullSecrets", by("name"))
        .with("hostAliases", by("ip"))
        .with("topologySpreadConstraints", by("topologyKey"))
        .with("schedulingGates", by("name"))
        .with("resourceClaims", by("name").retaining_keys())
}

/// `PodStatus`.
fn pod_status() -> MergeSchema {
    with_conditions()
        .with("hostIPs", by("ip"))
        .with("podIPs", by("ip"))
        .with("resourceClaimStatuses", by("name").retaining_keys())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::ListStrategy;

    fn key_at(group: &str, kind: &str, path: &[&str]) -> Option<&'static str> {
        builtin_schema(group, "v1", kind).and_then(|s| s.lookup(path)).and_then(MergeSchema::merge_key)
    }

    #[test]
    fn pod_template_is_shared_by_every_workload() {
        for (group, kind) in [
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            let at = |rest: &[&str]| {
                let mut path = vec!["spec", "template"];
                path.extend_from_slice(rest);
                key_at(group, kind, &path)
            };
            assert_eq!(at(&["spec", "containers"]), Some("name"), "{kind}");
            assert_eq!(at(&["spec", "containers", "env"]), Some("name"), "{kind}");
            assert_eq!(at(&["spec", "volumes"]), Some("name"), "{kind}");
            assert_eq!(at(&["metadata", "ownerReferences"]), Some("uid"), "{kind}");
            assert_eq!(key_at(group, kind, &["status", "conditions"]), Some("type"), "{kind}");
        }
        assert_eq!(
            key_at(
                "batch",
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec", "initContainers"]
            ),
            Some("name")
        );
    }

    #[test]
    fn tags_match_kubernetes() {
        let pod = |path: &[&str]| key_at("", "Pod", path);
        assert_eq!(pod(&["spec", "containers", "ports"]), Some("containerPort"));
        assert_eq!(pod(&["spec", "containers", "volumeMounts"]), Some("mountPath"));
        assert_eq!(pod(&["spec", "ephemeralContainers", "volumeDevices"]), Some("devicePath"));
        assert_eq!(pod(&["spec", "hostAliases"]), Some("ip"));
        assert_eq!(pod(&["spec", "topologySpreadConstraints"]), Some("topologyKey"));
        assert_eq!(pod(&["status", "podIPs"]), Some("ip"));
        assert_eq!(pod(&["spec", "tolerations"]), None);
        assert_eq!(pod(&["status", "containerStatuses"]), None);
        assert_eq!(key_at("", "Service", &["spec", "ports"]), Some("port"));
        assert_eq!(key_at("", "Node", &["status", "addresses"]), Some("type"));
        assert_eq!(key_at("", "Node", &["spec", "taints"]), None);
        assert_eq!(key_at("", "ServiceAccount", &["secrets"]), Some("name"));

        let finalizers =
            builtin_schema("", "v1", "ConfigMap").and_then(|s| s.lookup(&["metadata", "finalizers"]));
        assert_eq!(finalizers.map(MergeSchema::list_strategy), Some(&ListStrategy::Set));
        let pod = builtin_schema("", "v1", "Pod").expect("built in");
        assert!(pod.lookup(&["spec", "volumes"]).is_some_and(MergeSchema::retain_keys));
        let deployment = builtin_schema("apps", "v1", "Deployment").expect("built in");
        assert!(deployment.lookup(&["spec", "strategy"]).is_some_and(MergeSchema::retain_keys));
    }

    #[test]
    fn unknown_kinds_and_versions_have_no_schema() {
        assert!(builtin_schema("apps", "v1beta1", "Deployment").is_none());
        assert!(builtin_schema("", "v1", "Deployment").is_none());
        assert!(builtin_schema("rbac.authorization.k8s.io", "v1", "Role").is_some());
    }
}
