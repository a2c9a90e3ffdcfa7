//! The `paths` of one group-version's OpenAPI v3 document, generated from its discovery
//! `APIResourceList`: one operation per verb, with the parameters kube-apiserver declares and
//! the `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use serde_json::{Map, Value, json};

/// The patch types the `PATCH` operations declare. Strategic merge patch is left out on
/// purpose: declaring it makes kubectl look for the kind's schema in this document instead of
/// using its compiled-in types (see the module documentation of [`super`]).
pub(crate) const PATCH_CONTENT_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];

/// Where an operation sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `.../<plural>`, in one namespace for a namespaced resource.
    Collection,
    /// `.../<plural>` across every namespace (lists of a namespaced resource only).
    AllNamespaces,
    /// `.../<plural>/{name}` or `.../<plural>/{name}/<subresource>`.
    Item,
}

/// The URL prefix of a group-version: `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") }
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`, `GamesExampleComV1`: the group-version part of
/// kube-apiserver's operation ids.
fn id_infix(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.strip_suffix(".k8s.io").unwrap_or(group) };
    group.split(['.', '-']).chain([version]).map(upper_first).collect()
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": ty }, "uniqueItems": true })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": { "type": "string" }, "uniqueItems": true })
}

/// The query parameters of a write (`create`, `update`, `patch`).
fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query(
            "dryRun",
            "When present, modifications are not persisted. The only valid value is All.",
            "string",
        ),
        query("fieldManager", "The name of the actor or entity making these changes.", "string"),
        query(
            "fieldValidation",
            "How the server handles unknown or duplicate fields in the body: Ignore, Warn or Strict.",
            "string",
        ),
    ];
    if patch {
        p.push(query(
            "force",
            "Forces apply requests to take conflicting fields (apply patches only).",
            "boolean",
        ));
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "Requests watch events of type BOOKMARK.", "boolean"),
        query("continue", "The continue token of the previous page.", "string"),
        query("fieldSelector", "Restricts the list by object fields.", "string"),
        query("labelSelector", "Restricts the list by object labels.", "string"),
        query("limit", "The largest number of items to return.", "integer"),
        query("resourceVersion", "Which resource version to read at.", "string"),
        query("resourceVersionMatch", "How resourceVersion applies to list calls.", "string"),
        query("sendInitialEvents", "Starts a watch with the current objects.", "boolean"),
        query("timeoutSeconds", "How long a list or watch call may last.", "integer"),
        query("watch", "Watches for changes instead of listing.", "boolean"),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, modifications are not persisted. The only valid value is All.",
            "string",
        ),
        query("gracePeriodSeconds", "Seconds before the object should be deleted.", "integer"),
        query("propagationPolicy", "Whether and how garbage collection is performed.", "string"),
    ]
}

fn object_schema() -> Value {
    json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// One operation: HTTP method (lower case) and its body.
struct Operation {
    method: &'static str,
    id: String,
    action: &'static str,
    params: Vec<Value>,
    body: Option<Value>,
}

/// The operation a verb has at `target`, if any (`create` is on the collection, or on the item
/// for a subresource such as `pods/binding`).
fn operation_of(verb: &str, target: Target, subresource: bool, name: &str) -> Option<Operation> {
    let op = |method, id_verb: &str, action, params, body| Operation {
        method,
        id: format!("{id_verb}{name}"),
        action,
        params,
        body,
    };
    let body = || Some(json!({ "required": true, "content": { "*/*": { "schema": object_schema() } } }));
    let patch_body = || {
        let content: Map<String, Value> = PATCH_CONTENT_TYPES
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": object_schema() })))
            .collect();
        Some(json!({ "required": true, "content": content }))
    };
    let o = match (verb, target) {
        ("list", Target::Collection) => op("get", "list", "list", list_params(), None),
        ("list", Target::AllNamespaces) => {
            let mut o = op("get", "list", "list", list_params(), None);
            o.id.push_str("ForAllNamespaces");
            o
        }
        ("create", Target::Collection | Target::Item) if subresource == (target == Target::Item) => {
            op("post", "create", "post", write_params(false), body())
        }
        ("deletecollection", Target::Collection) => {
            let mut params = delete_params();
            params.extend(list_params().into_iter().filter(|p| p["name"] != "watch"));
            op("delete", "deleteCollection", "deletecollection", params, None)
        }
        ("get", Target::Item) => op("get", "read", "get", Vec::new(), None),
        ("update", Target::Item) => op("put", "replace", "put", write_params(false), body()),
        ("patch", Target::Item) => op("patch", "patch", "patch", write_params(true), patch_body()),
        ("delete", Target::Item) => op("delete", "delete", "delete", delete_params(), None),
        _ => return None,
    };
    Some(o)
}

/// Adds the paths of `list` to `paths`.
pub(crate) fn add_paths(group: &str, version: &str, list: &APIResourceList, paths: &mut Map<String, Value>) {
    let prefix = prefix(group, version);
    let infix = id_infix(group, version);
    let parent_kind = |plural: &str| {
        list.resources
            .iter()
            .find(|r| r.name == plural)
            .map(|r| r.kind.clone())
            .unwrap_or_else(|| upper_first(plural))
    };
    for r in &list.resources {
        let (plural, sub) = match r.name.split_once('/') {
            Some((p, s)) => (p, Some(s)),
            None => (r.name.as_str(), None),
        };
        let scope = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{plural}")
        } else {
            format!("{prefix}/{plural}")
        };
        let mut targets = vec![(Target::Item, format!("{scope}/{{name}}"))];
        match sub {
            Some(s) => targets[0].1 = format!("{scope}/{{name}}/{s}"),
            None => {
                targets.push((Target::Collection, scope.clone()));
                if r.namespaced {
                    targets.push((Target::AllNamespaces, format!("{prefix}/{plural}")));
                }
            }
        }
        let gvk = json!({
            "group": r.group.as_deref().unwrap_or(group),
            "version": r.version.as_deref().unwrap_or(version),
            "kind": r.kind,
        });
        for (target, path) in targets {
            let kind_name = format!(
                "{infix}{}{}{}",
                if r.namespaced && target != Target::AllNamespaces { "Namespaced" } else { "" },
                parent_kind(plural),
                sub.map(upper_first).unwrap_or_default()
            );
            let mut item = Map::new();
            for verb in &r.verbs {
                if let Some(o) = operation_of(verb, target, sub.is_some(), &kind_name) {
                    item.insert(o.method.to_string(), to_json(o, &gvk, r, target));
                }
            }
            if !item.is_empty() {
                paths.insert(path, Value::Object(item));
            }
        }
    }
}

/// The OpenAPI form of `o`, with the path parameters of `target`.
fn to_json(o: Operation, gvk: &Value, r: &APIResource, target: Target) -> Value {
    let mut params = Vec::new();
    if target == Target::Item {
        params.push(path_param("name", &format!("name of the {}", r.kind)));
    }
    if r.namespaced && target != Target::AllNamespaces {
        params.push(path_param("namespace", "object name and auth scope, such as for teams and projects"));
    }
    params.push(query("pretty", "If 'true', then the output is pretty printed.", "string"));
    params.extend(o.params);
    let mut op = json!({
        "operationId": o.id,
        "parameters": params,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": object_schema() } } },
            "401": { "description": "Unauthorized" },
        },
        "x-kubernetes-action": o.action,
        "x-kubernetes-group-version-kind": gvk,
    });
    if let (Some(body), Some(m)) = (o.body, op.as_object_mut()) {
        m.insert("requestBody".into(), body);
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_kube_apiserver() {
        assert_eq!(id_infix("", "v1"), "CoreV1");
        assert_eq!(id_infix("apps", "v1"), "AppsV1");
        assert_eq!(id_infix("rbac.authorization.k8s.io", "v1"), "RbacAuthorizationV1");
        assert_eq!(id_infix("games.example.com", "v1beta1"), "GamesExampleComV1beta1");
    }
}
