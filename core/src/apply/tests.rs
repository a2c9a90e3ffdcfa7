//! Scenarios of server-side apply: field sets of real objects, and the update and apply
//! stories of Kubernetes' "Server-Side Apply" documentation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::object::compare;
use super::*;
use crate::patch::{MergeSchema, builtin_schema};

fn deployment_schema() -> Option<&'static MergeSchema> {
    builtin_schema("apps", "v1", "Deployment")
}

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).expect("in range"))
}

fn path(p: &str) -> Path {
    // Test paths of fields only, or fields and one `[name="x"]` key: `spec.containers[x].image`.
    let mut elements = Vec::new();
    for part in p.split('.') {
        match part.split_once('[') {
            Some((field, key)) => {
                elements.push(PathElement::field(field));
                elements.push(PathElement::key([("name", json!(key.trim_end_matches(']')))]));
            }
            None => elements.push(PathElement::field(part)),
        }
    }
    Path(elements)
}

fn owners(managed: &ManagedFields, p: &str) -> Vec<String> {
    managed.owners(path(p).elements()).into_iter().map(|id| id.manager.clone()).collect()
}

fn deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]},
            },
        },
    })
}

#[test]
fn field_set_of_a_deployment() {
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7",
            "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "x"}],
            "labels": {"app": "web"}, "annotations": {},
            "finalizers": ["example.com/a", "example.com/b"],
        },
        "spec": {
            "replicas": 2,
            "paused": null,
            "template": {"spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]},
                    {"name": "log", "image": "busybox", "args": ["-f"]},
                ],
                "tolerations": [{"key": "k"}],
            }},
        },
        "status": {"replicas": 2},
    });
    let set = FieldSet::from_object(&object, deployment_schema());
    let expected = [
        ".metadata.annotations",
        ".metadata.finalizers[=\"example.com/a\"]",
        ".metadata.finalizers[=\"example.com/b\"]",
        ".metadata.labels.app",
        ".spec.paused",
        ".spec.replicas",
        ".spec.template.spec.containers[name=\"log\"]",
        ".spec.template.spec.containers[name=\"log\"].args",
        ".spec.template.spec.containers[name=\"log\"].image",
        ".spec.template.spec.containers[name=\"log\"].name",
        ".spec.template.spec.containers[name=\"nginx\"]",
        ".spec.template.spec.containers[name=\"nginx\"].image",
        ".spec.template.spec.containers[name=\"nginx\"].name",
        ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80]",
        ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80].containerPort",
        ".spec.template.spec.tolerations",
    ];
    assert_eq!(set.to_string(), expected.join("\n"));

    // Without a schema every list is atomic.
    let plain = FieldSet::from_object(&object, None);
    assert!(plain.contains(path("spec.template.spec.containers").elements()));
    assert!(plain.contains(path("metadata.finalizers").elements()));
    // A keyed list whose item lacks the key is atomic too.
    let keyless = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let set = FieldSet::from_object(&keyless, deployment_schema());
    assert_eq!(set.to_string(), ".spec.template.spec.containers");
}

#[test]
fn compare_reports_added_nodes_and_modified_leaves() {
    let old = deployment(1);
    let mut new = deployment(2);
    new["metadata"]["annotations"] = json!({"note": "x"});
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    new["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "log", "image": "busybox"}));
    new["metadata"]["labels"] = json!(null);
    let c = compare(&old, &new, deployment_schema());
    assert_eq!(
        c.modified.to_string(),
        ".spec.replicas\n.spec.template.spec.containers[name=\"nginx\"].image"
    );
    // A map replaced by `null` is removed with its keys, and the `null` is added.
    assert_eq!(
        c.added.to_string(),
        ".metadata.annotations\n.metadata.annotations.note\n.metadata.labels\n\
         .spec.template.spec.containers[name=\"log\"]\n\
         .spec.template.spec.containers[name=\"log\"].image\n.spec.template.spec.containers[name=\"log\"].name"
    );
    assert_eq!(c.removed.to_string(), ".metadata.labels\n.metadata.labels.app");
    assert!(compare(&old, &old, deployment_schema()).added.is_empty());
}

#[test]
fn create_then_update_moves_changed_fields_to_the_writer() {
    let mut managed = ManagedFields::new();
    let created = deployment(1);
    update(&mut managed, "kubectl-create", &Value::Null, &created, deployment_schema(), at(10));
    let fields = managed.encode()[0].fields_v1.clone().expect("set").0;
    // The shape Kubernetes records for a create: new maps are members (`.`), the always
    // present top-level structs are not, and identity fields are not owned.
    assert_eq!(fields["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields["f:spec"]["f:selector"], json!({".": {}, "f:matchLabels": {".": {}, "f:app": {}}}));
    assert!(fields.get("f:apiVersion").is_none() && fields["f:spec"].get(".").is_none());

    let scaled = deployment(3);
    update(&mut managed, "hpa", &created, &scaled, deployment_schema(), at(20));
    assert_eq!(owners(&managed, "spec.replicas"), ["hpa"]);
    assert_eq!(owners(&managed, "spec.template.spec.containers[nginx].image"), ["kubectl-create"]);
    let hpa = managed.get(&ManagerId::new("hpa", Operation::Update)).expect("hpa owns replicas");
    assert_eq!((hpa.api_version.as_str(), hpa.time.clone()), ("apps/v1", Some(at(20))));

    // Removing a field takes it from everyone, and a writer that ends up owning nothing goes.
    let mut unlabelled = scaled.clone();
    unlabelled["spec"].as_object_mut().expect("object").remove("replicas");
    update(&mut managed, "editor", &scaled, &unlabelled, deployment_schema(), at(30));
    assert!(owners(&managed, "spec.replicas").is_empty());
    assert!(managed.get(&ManagerId::new("hpa", Operation::Update)).is_none());
    assert!(managed.get(&ManagerId::new("editor", Operation::Update)).is_none());
}

/// The documentation's example: a Deployment created by client-side apply, then applied
/// server-side with a different replica count.
#[test]
fn apply_conflicts_with_another_managers_field_until_forced() {
    let mut managed = ManagedFields::new();
    let live = deployment(3);
    update(&mut managed, "kubectl-client-side-apply", &Value::Null, &live, deployment_schema(), at(1));
    let before = managed.clone();

    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 5}});
    let conflicts = apply(&mut managed, "kubectl", &live, &config, deployment_schema(), false, at(2))
        .expect_err("replicas belong to client-side apply");
    assert_eq!(
        conflicts.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(managed, before, "a failed apply changes nothing");
    let as_error = ApplyError::from(conflicts.clone());
    assert_eq!(as_error.to_string(), conflicts.to_string());

    let result =
        apply(&mut managed, "kubectl", &live, &config, deployment_schema(), true, at(2)).expect("forced");
    assert_eq!(result["spec"]["replicas"], 5);
    assert_eq!(result["spec"]["template"], live["spec"]["template"]);
    assert_eq!(owners(&managed, "spec.replicas"), ["kubectl"]);
    assert_eq!(owners(&managed, "spec.selector.matchLabels.app"), ["kubectl-client-side-apply"]);
    let entries = managed.encode();
    assert_eq!(entries[0].operation.as_deref(), Some("Apply"));
    assert_eq!(entries[0].fields_v1.as_ref().map(|f| &f.0), Some(&json!({"f:spec": {"f:replicas": {}}})));
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let mut managed = ManagedFields::new();
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1", "b": "2", "c": "3"}});
    update(&mut managed, "ctl", &Value::Null, &live, None, at(1));
    apply(&mut managed, "ops", &live, &json!({"apiVersion": "v1", "data": {"c": "3"}}), None, false, at(2))
        .expect("same value: shared");
    let config = json!({"apiVersion": "v1", "data": {"a": "x", "b": "y", "c": "z"}});
    let err = apply(&mut managed, "dev", &live, &config, None, false, at(3)).expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 4 conflicts: conflicts with \"ctl\" using v1:\n- .data.a\n- .data.b\n- .data.c\n\
         conflicts with \"ops\":\n- .data.c"
    );
}

#[test]
fn applying_the_same_value_shares_ownership() {
    let mut managed = ManagedFields::new();
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 2}});
    let live = apply(&mut managed, "alice", &Value::Null, &config, deployment_schema(), false, at(1))
        .expect("first apply");
    assert_eq!(
        live,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                            "spec": {"replicas": 2}})
    );
    let again =
        apply(&mut managed, "bob", &live, &config, deployment_schema(), false, at(2)).expect("no change");
    assert_eq!(again, live);
    assert_eq!(owners(&managed, "spec.replicas"), ["alice", "bob"]);

    // Now either changing it conflicts with the other.
    let mut four = config.clone();
    four["spec"]["replicas"] = json!(4);
    let err =
        apply(&mut managed, "bob", &live, &four, deployment_schema(), false, at(3)).expect_err("shared");
    assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas");

    // One of them dropping the field leaves it with the other, and in the object.
    let dropped = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let kept = apply(&mut managed, "bob", &live, &dropped, deployment_schema(), false, at(4)).expect("drops");
    assert_eq!(kept["spec"]["replicas"], 2);
    assert_eq!(owners(&managed, "spec.replicas"), ["alice"]);
    assert!(managed.get(&ManagerId::new("bob", Operation::Apply)).is_none(), "owns nothing");
}

#[test]
fn omitting_a_field_from_the_next_apply_removes_it() {
    let mut managed = ManagedFields::new();
    let schema = deployment_schema();
    let first = json!({"apiVersion": "apps/v1", "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                       "spec": {"template": {"spec": {"containers": [
                           {"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]}}}});
    let live = apply(&mut managed, "me", &Value::Null, &first, schema, false, at(1)).expect("applies");
    // Someone else adds a container and a label of their own.
    let mut edited = live.clone();
    edited["metadata"]["labels"]["c"] = json!("3");
    edited["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "mesh", "image": "mesh:1"}));
    update(&mut managed, "injector", &live, &edited, schema, at(2));

    let second = json!({"apiVersion": "apps/v1", "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
                        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    let result = apply(&mut managed, "me", &edited, &second, schema, false, at(3)).expect("applies");
    assert_eq!(result["metadata"]["labels"], json!({"a": "1", "c": "3"}));
    assert_eq!(result["metadata"]["finalizers"], json!(["x"]));
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:2"}, {"name": "mesh", "image": "mesh:1"}])
    );
    let mine = managed.fields(&ManagerId::new("me", Operation::Apply)).expect("owns");
    assert_eq!(*mine, FieldSet::from_object(&second, schema));

    // Dropping everything removes the emptied maps and lists too, but keeps the top level.
    let third = json!({"apiVersion": "apps/v1"});
    let mut lone = ManagedFields::new();
    let live = apply(&mut lone, "me", &Value::Null, &second, schema, false, at(1)).expect("applies");
    let result = apply(&mut lone, "me", &live, &third, schema, false, at(2)).expect("applies");
    assert_eq!(result, json!({"apiVersion": "apps/v1", "metadata": {}, "spec": {}}));
    assert!(lone.is_empty());
}

#[test]
fn an_update_takes_fields_from_an_applier_without_conflict() {
    let mut managed = ManagedFields::new();
    let schema = deployment_schema();
    let config = json!({"apiVersion": "apps/v1", "spec": {"replicas": 2, "paused": false}});
    let live = apply(&mut managed, "kubectl", &Value::Null, &config, schema, false, at(1)).expect("applies");
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(6);
    update(&mut managed, "hpa", &live, &scaled, schema, at(2));
    assert_eq!(owners(&managed, "spec.replicas"), ["hpa"]);
    assert_eq!(owners(&managed, "spec.paused"), ["kubectl"]);

    // Re-applying the old value now conflicts; the documented fix is to stop applying it.
    let err = apply(&mut managed, "kubectl", &scaled, &config, schema, false, at(3)).expect_err("hpa's");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
    );
    let without = json!({"apiVersion": "apps/v1", "spec": {"paused": false}});
    let result = apply(&mut managed, "kubectl", &scaled, &without, schema, false, at(3)).expect("applies");
    assert_eq!(result["spec"]["replicas"], 6, "hpa still owns it");
}

#[test]
fn time_moves_only_when_the_set_changes() {
    let mut managed = ManagedFields::new();
    let config = json!({"apiVersion": "v1", "data": {"a": "1"}});
    let live = apply(&mut managed, "me", &Value::Null, &config, None, false, at(1)).expect("applies");
    let same = apply(&mut managed, "me", &live, &config, None, false, at(5)).expect("no-op");
    assert_eq!(same, live);
    let id = ManagerId::new("me", Operation::Apply);
    assert_eq!(managed.get(&id).and_then(|s| s.time.clone()), Some(at(1)));
    apply(&mut managed, "me", &live, &json!({"apiVersion": "v1", "data": {"b": "1"}}), None, false, at(9))
        .expect("applies");
    assert_eq!(managed.get(&id).and_then(|s| s.time.clone()), Some(at(9)));

    // And the encoded entries decode back to the same sets.
    let decoded = ManagedFields::decode(&managed.encode()).expect("decodes");
    assert_eq!(decoded, managed);
}

#[test]
fn merge_follows_each_lists_strategy_and_null_removes() {
    let mut managed = ManagedFields::new();
    let schema = deployment_schema();
    let live = json!({"apiVersion": "apps/v1",
                      "metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
                      "spec": {"template": {"spec": {
                          "containers": [{"name": "app", "image": "app:1", "args": ["-v"]}],
                          "tolerations": [{"key": "t1"}]}}}});
    let config = json!({"apiVersion": "apps/v1",
                        "metadata": {"finalizers": ["b", "a"], "labels": {"y": null}},
                        "spec": {"template": {"spec": {
                            "containers": [{"name": "app", "args": ["-q"]}],
                            "tolerations": [{"key": "t2"}]}}}});
    let result = apply(&mut managed, "me", &live, &config, schema, false, at(1)).expect("no owners yet");
    assert_eq!(result["metadata"], json!({"finalizers": ["a", "b"], "labels": {"x": "1"}}));
    assert_eq!(
        result["spec"]["template"]["spec"],
        json!({"containers": [{"name": "app", "image": "app:1", "args": ["-q"]}], "tolerations": [{"key": "t2"}]})
    );
    // The `null` is still a field the manager specifies.
    assert_eq!(owners(&managed, "metadata.labels.y"), ["me"]);
    assert_eq!(owners(&managed, "spec.template.spec.tolerations"), ["me"]);
}
