use std::sync::Arc;

use flotilla_core::object::{KindRegistry, ResourceType, SchemalessKind};
use serde_json::Value;

use super::*;

fn openapi() -> anyhow::Result<OpenApi> {
    let mut kinds = KindRegistry::builtin();
    let game = ResourceType::leak(
        "games.example.com".into(),
        "v1".into(),
        "Game".into(),
        "games".into(),
        true,
        vec![],
        false,
    );
    kinds.register_strategy(Arc::new(SchemalessKind(game)))?;
    Ok(OpenApi::new(&Discovery::new(&kinds)))
}

fn doc(o: &OpenApi, path: &str) -> anyhow::Result<Value> {
    let d = o.document(path).ok_or_else(|| anyhow::anyhow!("no document {path}"))?;
    Ok(serde_json::from_slice(d.json())?)
}

/// cli-runtime's `supportsQueryParamV3`: the first PATCH operation of the GVK decides.
fn supports_field_validation(doc: &Value, group: &str, version: &str, kind: &str) -> Option<bool> {
    let gvk = serde_json::json!({ "group": group, "version": version, "kind": kind });
    let paths = doc["paths"].as_object()?;
    let mut answers = paths
        .values()
        .filter_map(|p| p.get("patch"))
        .filter(|op| op["x-kubernetes-group-version-kind"] == gvk)
        .map(|op| {
            op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"))
        });
    let first = answers.next()?;
    // Map order is random in Go: every PATCH operation of the GVK must answer the same.
    answers.all(|a| a == first).then_some(first)
}

#[test]
fn the_index_names_every_group_version_with_its_hash() -> anyhow::Result<()> {
    let o = openapi()?;
    let index: Value = serde_json::from_slice(o.index())?;
    let paths = index["paths"].as_object().ok_or_else(|| anyhow::anyhow!("paths is an object"))?;
    for key in ["api/v1", "apis/apps/v1", "apis/authorization.k8s.io/v1", "apis/games.example.com/v1"] {
        let url = paths[key]["serverRelativeURL"].as_str().unwrap_or_default();
        let d = o.document(key).ok_or_else(|| anyhow::anyhow!("no document {key}"))?;
        assert_eq!(url, format!("/openapi/v3/{key}?hash={}", d.hash()));
        assert_eq!(d.hash().len(), 64);
        assert!(d.hash().bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
    }
    assert_eq!(paths.len(), o.documents().count());
    Ok(())
}

#[test]
fn every_kind_supports_field_validation_as_kubectl_checks_it() -> anyhow::Result<()> {
    let o = openapi()?;
    let d = Discovery::new(&KindRegistry::builtin());
    let mut checked = 0;
    for (group, version, list) in d.resource_lists() {
        let doc = doc(&o, paths::prefix(group, version).trim_start_matches('/'))?;
        for r in list.resources.iter().filter(|r| r.verbs.iter().any(|v| v == "patch")) {
            let (g, v) = (r.group.as_deref().unwrap_or(group), r.version.as_deref().unwrap_or(version));
            assert_eq!(supports_field_validation(&doc, g, v, &r.kind), Some(true), "{g}/{v} {}", r.kind);
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} resources checked");
    let games = doc(&o, "apis/games.example.com/v1")?;
    assert_eq!(supports_field_validation(&games, "games.example.com", "v1", "Game"), Some(true));
    Ok(())
}

#[test]
fn pod_operations_carry_kubernetes_extensions() -> anyhow::Result<()> {
    let o = openapi()?;
    let v1 = doc(&o, "api/v1")?;
    let item = &v1["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    for method in ["get", "put", "delete"] {
        assert!(item[method].is_object(), "{method} on a pod");
    }
    let collection = &v1["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(collection["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(collection["delete"]["x-kubernetes-action"], "deletecollection");
    assert_eq!(v1["paths"]["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
    assert_eq!(
        v1["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"],
        "readCoreV1NamespacedPodLog"
    );
    let binding = &v1["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"];
    assert_eq!(binding["operationId"], "createCoreV1NamespacedPodBinding");
    assert_eq!(binding["x-kubernetes-group-version-kind"]["kind"], "Binding");
    let finalize = &v1["paths"]["/api/v1/namespaces/{name}/finalize"];
    assert!(finalize["put"].is_object() && finalize["patch"].is_null());
    // Cluster-scoped: no namespace parameter, no all-namespaces list.
    let nodes = &v1["paths"]["/api/v1/nodes/{name}"]["patch"]["parameters"];
    assert!(nodes.as_array().is_some_and(|p| p.iter().all(|p| p["name"] != "namespace")));

    let apps = doc(&o, "apis/apps/v1")?;
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");

    let authz = doc(&o, "apis/authorization.k8s.io/v1")?;
    let review = &authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
    assert_eq!(review["post"]["x-kubernetes-group-version-kind"]["kind"], "SelfSubjectAccessReview");
    assert!(review["get"].is_null(), "reviews are create-only");
    Ok(())
}

/// The decision the module documentation explains: kubectl must not compute a strategic merge
/// patch from these documents, so none declares that patch type or carries a kind's schema.
#[test]
fn no_document_invites_a_schema_based_strategic_merge_patch() -> anyhow::Result<()> {
    let o = openapi()?;
    for d in o.documents() {
        let doc: Value = serde_json::from_slice(d.json())?;
        assert_eq!(doc["openapi"], "3.0.0");
        assert!(doc.get("components").is_none(), "{}: no schemas", d.path());
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let Some(content) = item["patch"]["requestBody"]["content"].as_object() else {
                continue;
            };
            assert!(!content.contains_key("application/strategic-merge-patch+json"), "{path}");
            assert!(content.contains_key("application/merge-patch+json"), "{path}");
        }
    }
    Ok(())
}

#[test]
fn openapi_v2_is_an_empty_document() -> anyhow::Result<()> {
    let o = openapi()?;
    let mut expected = vec![0x0a, 3];
    expected.extend_from_slice(b"2.0");
    let info_len = 2 + TITLE.len() + 2 + GIT_VERSION.len();
    expected.extend_from_slice(&[0x12, info_len as u8, 0x0a, TITLE.len() as u8]);
    expected.extend_from_slice(TITLE.as_bytes());
    expected.extend_from_slice(&[0x12, GIT_VERSION.len() as u8]);
    expected.extend_from_slice(GIT_VERSION.as_bytes());
    assert_eq!(o.v2_protobuf().as_ref(), expected.as_slice());
    let v2: Value = serde_json::from_slice(o.v2_json())?;
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(v2["paths"], serde_json::json!({}));

    let mut long = Vec::new();
    field(&mut long, 1, &[b'x'; 300]);
    assert_eq!(&long[..3], &[0x0a, 0xac, 0x02]);
    Ok(())
}
