//! Table tests of strategic merge patch, through [`apply_patch`], and property tests of every
//! patch type.

use serde_json::{Map, Value, json};

use super::{MergeSchema, PatchError, PatchType, apply_patch, builtin_schema};

mod errors;
mod properties;

/// A schema for the generic cases: `items` merge by `name` (and so do their `parts`), `tags`
/// is a set, `plain` has no strategy, `union` retains keys.
fn test_schema() -> MergeSchema {
    MergeSchema::new()
        .with(
            "items",
            MergeSchema::new().merged_by("name").with("parts", MergeSchema::new().merged_by("name")),
        )
        .with("tags", MergeSchema::set())
        .with("plain", MergeSchema::new())
        .with("union", MergeSchema::new().retaining_keys())
}

fn smp(schema: Option<&MergeSchema>, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    apply_patch(original, PatchType::StrategicMerge, patch.to_string().as_bytes(), schema)
}

fn deployment() -> &'static MergeSchema {
    builtin_schema("apps", "v1", "Deployment").expect("built in")
}

/// `(description, original, patch, expected)` applied with `schema`.
fn check(schema: Option<&MergeSchema>, cases: &[(&str, Value, Value, Value)]) {
    for (description, original, patch, expected) in cases {
        match smp(schema, original, patch) {
            Ok(patched) => assert_eq!(&patched, expected, "{description}"),
            Err(err) => panic!("{description}: {err}"),
        }
    }
}

/// The Deployment of Kubernetes' "Update API Objects in Place Using kubectl patch" task.
fn patch_demo() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}]
                }
            }
        }
    })
}

fn template_spec(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]
}

#[test]
fn kubectl_patch_task_containers_merge_by_name() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}});
    let patched = smp(Some(deployment()), &patch_demo(), &patch).expect("applies");
    // As in the task's output: the new container first, the existing one kept.
    assert_eq!(
        template_spec(&patched)["containers"],
        json!([{"name": "patch-demo-ctr-2", "image": "redis"}, {"name": "patch-demo-ctr", "image": "nginx"}])
    );
    assert_eq!(patched["spec"]["replicas"], 2);

    // A merge patch replaces the list.
    let merged =
        apply_patch(&patch_demo(), PatchType::Merge, patch.to_string().as_bytes(), None).expect("applies");
    assert_eq!(template_spec(&merged)["containers"], json!([{"name": "patch-demo-ctr-2", "image": "redis"}]));
    assert_eq!(template_spec(&merged)["tolerations"], template_spec(&patch_demo())["tolerations"]);
}

#[test]
fn kubectl_patch_task_tolerations_are_replaced() {
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}
    ]}}}});
    let patched = smp(Some(deployment()), &patch_demo(), &patch).expect("applies");
    assert_eq!(
        template_spec(&patched)["tolerations"],
        json!([{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}])
    );
    assert_eq!(template_spec(&patched)["containers"], template_spec(&patch_demo())["containers"]);
}

#[test]
fn kubectl_patch_task_retain_keys_switches_strategy() {
    let original =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%"}}}});
    check(
        Some(deployment()),
        &[
            (
                "$retainKeys clears the other members of the union",
                original.clone(),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
            (
                "without $retainKeys the union keeps its other member",
                original.clone(),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
                json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": "30%"}}}}),
            ),
            (
                "a null in the patch is allowed whether listed or not",
                original,
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
            ),
        ],
    );
}

#[test]
fn pod_lists_follow_their_tags() {
    let pod = builtin_schema("", "v1", "Pod").expect("built in");
    let original = json!({
        "metadata": {"finalizers": ["a", "b"], "ownerReferences": [{"uid": "1", "name": "rs"}]},
        "spec": {
            "containers": [{
                "name": "app",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "name": "http"}],
                "args": ["x"]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "c"}}]
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}
    });
    check(
        Some(pod),
        &[
            (
                "env merges by name, ports by containerPort, args replace",
                original.clone(),
                json!({"spec": {"containers": [{
                    "name": "app",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 80.0, "protocol": "TCP"}],
                    "args": ["y"]
                }]}}),
                json!({
                    "metadata": original["metadata"],
                    "spec": {
                        "containers": [{
                            "name": "app",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                            "ports": [{"containerPort": 80.0, "name": "http", "protocol": "TCP"}],
                            "args": ["y"]
                        }],
                        "volumes": original["spec"]["volumes"]
                    },
                    "status": original["status"]
                }),
            ),
            (
                "$patch: delete removes the element with that key",
                original.clone(),
                json!({"spec": {"containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}}),
                {
                    let mut expected = original.clone();
                    expected["spec"]["containers"][0]["env"] = json!([{"name": "B", "value": "2"}]);
                    expected
                },
            ),
            (
                "a volume's $retainKeys switches its source",
                original.clone(),
                json!({"spec": {"volumes": [
                    {"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/d"}}
                ]}}),
                {
                    let mut expected = original.clone();
                    expected["spec"]["volumes"][0] = json!({"name": "data", "hostPath": {"path": "/d"}});
                    expected
                },
            ),
            (
                "conditions merge by type; owner references by uid",
                original.clone(),
                json!({
                    "metadata": {"ownerReferences": [{"uid": "2", "name": "other"}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}]}
                }),
                {
                    let mut expected = original.clone();
                    expected["metadata"]["ownerReferences"] =
                        json!([{"uid": "2", "name": "other"}, {"uid": "1", "name": "rs"}]);
                    expected["status"]["conditions"] =
                        json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}]);
                    expected
                },
            ),
            (
                "$deleteFromPrimitiveList/finalizers removes values",
                original.clone(),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}),
                {
                    let mut expected = original.clone();
                    expected["metadata"]["finalizers"] = json!(["b"]);
                    expected
                },
            ),
            (
                "finalizers are a set: a new value goes before the next value the patch names",
                original.clone(),
                json!({"metadata": {"finalizers": ["c", "b"]}}),
                {
                    let mut expected = original.clone();
                    expected["metadata"]["finalizers"] = json!(["c", "a", "b"]);
                    expected
                },
            ),
        ],
    );
}

#[test]
fn service_ports_merge_by_port_and_node_addresses_by_type() {
    let service = builtin_schema("", "v1", "Service").expect("built in");
    check(
        Some(service),
        &[(
            "ports merge by port",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
        )],
    );
    let node = builtin_schema("", "v1", "Node").expect("built in");
    check(
        Some(node),
        &[(
            "addresses merge by type; taints replace",
            json!({"spec": {"taints": [{"key": "a"}]}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}),
            json!({"spec": {"taints": [{"key": "b"}]}, "status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            json!({"spec": {"taints": [{"key": "b"}]}, "status": {"addresses": [
                {"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}
            ]}}),
        )],
    );
}

#[test]
fn maps_merge_and_null_deletes() {
    check(
        Some(&test_schema()),
        &[
            (
                "fields merge recursively; null deletes; a null for a missing field is ignored",
                json!({"a": {"b": 1, "c": 2}, "d": 3}),
                json!({"a": {"b": null, "e": 4}, "d": null, "missing": null}),
                json!({"a": {"c": 2, "e": 4}}),
            ),
            (
                "added content is cleaned of nulls and directives",
                json!({}),
                json!({"new": {"x": null, "y": {"$patch": "delete"}, "z": [{"k": null, "v": 1}]}}),
                json!({"new": {"z": [{"v": 1}]}}),
            ),
            (
                "a value of another type replaces",
                json!({"a": {"b": 1}, "items": [{"name": "x"}], "s": "t"}),
                json!({"a": [1], "items": {"name": "y"}, "s": {"u": 1}}),
                json!({"a": [1], "items": {"name": "y"}, "s": {"u": 1}}),
            ),
            (
                "$patch: replace takes the map as it is",
                json!({"union": {"a": 1, "b": {"c": 2}}, "keep": 1}),
                json!({"union": {"$patch": "replace", "b": {"d": 3}}}),
                json!({"union": {"b": {"d": 3}}, "keep": 1}),
            ),
            (
                "$patch: delete removes the map",
                json!({"union": {"a": 1}, "keep": 1}),
                json!({"union": {"$patch": "delete"}}),
                json!({"keep": 1}),
            ),
            (
                "$patch: merge is the default",
                json!({"union": {"a": 1}}),
                json!({"union": {"$patch": "merge", "b": 2}}),
                json!({"union": {"a": 1, "b": 2}}),
            ),
            (
                "$patch: replace at the top",
                json!({"a": 1}),
                json!({"$patch": "replace", "b": 2}),
                json!({"b": 2}),
            ),
            ("$patch: delete at the top", json!({"a": 1}), json!({"$patch": "delete"}), json!({})),
            (
                "JSON schema keywords are fields, not directives",
                json!({"schema": {"$ref": "#/a"}}),
                json!({"schema": {"$schema": "s", "$ref": "#/b"}}),
                json!({"schema": {"$ref": "#/b", "$schema": "s"}}),
            ),
        ],
    );
}

#[test]
fn keyed_lists() {
    let items = |names: &[&str]| -> Value { names.iter().map(|n| json!({"name": n})).collect() };
    check(
        Some(&test_schema()),
        &[
            (
                "matched elements merge in place, nested keyed lists too",
                json!({"items": [{"name": "a", "v": 1, "parts": [{"name": "p", "w": 1}]}, {"name": "b"}]}),
                json!({"items": [{"name": "a", "v": 2, "parts": [{"name": "q"}]}]}),
                json!({"items": [{"name": "a", "v": 2, "parts": [{"name": "q"}, {"name": "p", "w": 1}]}, {"name": "b"}]}),
            ),
            (
                "new elements go before the next element the patch names",
                json!({"items": items(&["a", "b", "c"])}),
                json!({"items": items(&["b", "x", "c", "y"])}),
                json!({"items": items(&["a", "b", "x", "c", "y"])}),
            ),
            (
                "$patch: delete removes every element with the key",
                json!({"items": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}]}),
                json!({"items": [{"name": "a", "$patch": "delete"}, {"name": "zz", "$patch": "delete"}]}),
                json!({"items": items(&["b"])}),
            ),
            (
                "$patch: replace makes the other elements the list",
                json!({"items": [{"name": "a", "v": 1}, {"name": "b"}]}),
                json!({"items": [{"name": "c", "gone": null}, {"$patch": "replace"}, {"name": "a"}]}),
                json!({"items": items(&["c", "a"])}),
            ),
            (
                "a keyed list the object lacks is taken as it is",
                json!({}),
                json!({"items": [{"name": "a"}, {"$patch": "delete", "name": "b"}, {"v": 1}]}),
                json!({"items": [{"name": "a"}, {"v": 1}]}),
            ),
            ("empty lists stay empty", json!({"items": []}), json!({"items": []}), json!({"items": []})),
            (
                "a list without strategy replaces, cleaned of markers",
                json!({"plain": [1, 2]}),
                json!({"plain": [{"a": null, "b": 1}, {"$patch": "replace"}]}),
                json!({"plain": [{"b": 1}]}),
            ),
        ],
    );
}

#[test]
fn sets_of_primitives() {
    check(
        Some(&test_schema()),
        &[
            (
                "union without duplicates",
                json!({"tags": ["a", "b", "a"]}),
                json!({"tags": ["b", "c", "c"]}),
                json!({"tags": ["a", "b", "c"]}),
            ),
            (
                "numbers compare as numbers",
                json!({"tags": [1, 2]}),
                json!({"tags": [2.0, 3]}),
                json!({"tags": [1, 2, 3]}),
            ),
            (
                "deletions apply after additions and delete duplicates",
                json!({"tags": ["a", "b", "b", "c"]}),
                json!({"tags": ["d"], "$deleteFromPrimitiveList/tags": ["b", "d"]}),
                json!({"tags": ["a", "c"]}),
            ),
            (
                "deleting from a missing list adds nothing; from a list without strategy works",
                json!({"plain": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/tags": ["x"], "$deleteFromPrimitiveList/plain": [2]}),
                json!({"plain": [1, 3]}),
            ),
        ],
    );
}

#[test]
fn set_element_order() {
    let items = |names: &[&str]| -> Value { names.iter().map(|n| json!({"name": n})).collect() };
    check(
        Some(&test_schema()),
        &[
            (
                "reorders a keyed list; the other elements keep their place",
                json!({"items": items(&["1", "2", "9", "3", "4"])}),
                json!({"$setElementOrder/items": items(&["2", "1", "4", "3"])}),
                json!({"items": items(&["2", "1", "9", "4", "3"])}),
            ),
            (
                "elements the object lacks and names the order lacks are ignored",
                json!({"items": items(&["1", "3"])}),
                json!({"$setElementOrder/items": items(&["3", "2", "1"]), "items": [{"name": "3", "v": 3}]}),
                json!({"items": [{"name": "3", "v": 3}, {"name": "1"}]}),
            ),
            (
                "orders elements the patch adds",
                json!({"items": items(&["1", "2"])}),
                json!({"$setElementOrder/items": items(&["1", "4", "2", "3"]), "items": items(&["4", "3"])}),
                json!({"items": items(&["1", "4", "2", "3"])}),
            ),
            (
                "duplicates stay together",
                json!({"items": [{"name": "1"}, {"name": "2", "v": "a"}, {"name": "3"}, {"name": "2", "v": "b"}]}),
                json!({"$setElementOrder/items": items(&["2", "1", "3"])}),
                json!({"items": [{"name": "2", "v": "a"}, {"name": "2", "v": "b"}, {"name": "1"}, {"name": "3"}]}),
            ),
            (
                "orders a set, with deletions",
                json!({"tags": ["a", "b", "c"]}),
                json!({"$setElementOrder/tags": ["c", "d", "a"], "tags": ["d"], "$deleteFromPrimitiveList/tags": ["b"]}),
                json!({"tags": ["c", "d", "a"]}),
            ),
            (
                "orders a list the object lacks",
                json!({}),
                json!({"$setElementOrder/tags": ["y", "x"], "tags": ["y", "x"]}),
                json!({"tags": ["y", "x"]}),
            ),
            (
                "an order for a list in neither is ignored",
                json!({"a": 1}),
                json!({"$setElementOrder/tags": ["x"]}),
                json!({"a": 1}),
            ),
        ],
    );
}

#[test]
fn without_schema_lists_replace_like_a_merge_patch() {
    let original = json!({"spec": {"containers": [{"name": "a"}], "labels": {"x": "1"}}, "metadata": {"finalizers": ["f"]}});
    let patch = json!({"spec": {"containers": [{"name": "b"}], "labels": {"y": "2"}}, "metadata": {"finalizers": ["g"]}});
    let merged =
        apply_patch(&original, PatchType::Merge, patch.to_string().as_bytes(), None).expect("applies");
    assert_eq!(smp(None, &original, &patch).expect("applies"), merged);
    assert_eq!(merged["spec"]["labels"], json!({"x": "1", "y": "2"}));
    // A field the schema does not name behaves the same.
    let unknown = builtin_schema("", "v1", "ConfigMap").expect("built in");
    let patched = smp(Some(unknown), &json!({"data": {"k": "v"}, "list": [1]}), &json!({"list": [2]}))
        .expect("applies");
    assert_eq!(patched, json!({"data": {"k": "v"}, "list": [2]}));
}

#[test]
fn original_is_left_unchanged() {
    let original = json!({"tags": ["a"], "items": [{"name": "x", "v": 1}]});
    let copy = original.clone();
    smp(Some(&test_schema()), &original, &json!({"tags": ["b"], "items": [{"name": "x", "v": 2}]}))
        .expect("applies");
    apply_patch(&original, PatchType::Merge, br#"{"tags": null}"#, None).expect("applies");
    apply_patch(&original, PatchType::Json, br#"[{"op": "remove", "path": "/tags"}]"#, None)
        .expect("applies");
    assert_eq!(original, copy);
}

/// A merge patch that turns `from` into `to`, for objects without `null` values.
fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(from), Value::Object(to)) => {
            let mut patch = Map::new();
            for key in from.keys().filter(|k| !to.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, new) in to {
                match from.get(key) {
                    Some(old) if old == new => {}
                    Some(old) if old.is_object() && new.is_object() => {
                        patch.insert(key.clone(), merge_diff(old, new));
                    }
                    _ => {
                        patch.insert(key.clone(), new.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}
