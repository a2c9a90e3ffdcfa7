//! Create, update, status, patch and delete.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::json;

use super::support::{Game, call, create_pod, namespace, obj, pod, rv};
use crate::object::Resource;
use crate::patch::PatchType;
use crate::registry::{
    DeleteOptions, Error, FieldValidation, GetOptions, ListOptions, Precondition, PropagationPolicy,
    Registry, Subresource, WriteOptions,
};

fn deployment(name: &str, replicas: i32) -> crate::object::DynamicObject {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}, {"name": "side", "image": "busybox"}]},
            },
        },
    }))
}

/// uid, creationTimestamp, generation 1, a numeric resourceVersion, defaults; a second
/// create of the name is AlreadyExists.
pub async fn create_sets_system_fields_and_defaults(r: Registry) {
    namespace(&r, "ns1").await;
    let p = create_pod(&r, "ns1", pod("web", json!({"app": "web"}), &["c"])).await.expect("created");
    assert_eq!(p.metadata.uid.as_deref().map(str::len), Some(36), "uid is a UUID");
    assert!(p.metadata.creation_timestamp.is_some());
    assert_eq!(p.metadata.generation, Some(1));
    assert!(rv(&p) > 0);
    assert_eq!(p.namespace(), "ns1");
    assert_eq!(p.data["spec"]["restartPolicy"], "Always");
    assert_eq!(p.data["spec"]["containers"][0]["imagePullPolicy"], "Always", "untagged images pull always");
    assert_eq!(p.data["status"]["phase"], "Pending");
    let got =
        call("get", r.get(&Pod::TYPE, Some("ns1"), "web", &GetOptions::default())).await.expect("found");
    assert_eq!(got, p);
    let again = create_pod(&r, "ns1", pod("web", json!({}), &["c"])).await.expect_err("duplicate refused");
    assert!(matches!(again, Error::AlreadyExists { .. }), "{again:?}");
    assert_eq!((again.code(), again.to_string().as_str()), (409, "pods \"web\" already exists"));
    let missing = call("get", r.get(&Pod::TYPE, Some("ns1"), "nope", &GetOptions::default())).await;
    let e = missing.expect_err("absent");
    assert_eq!((e.code(), e.reason(), e.to_string().as_str()), (404, "NotFound", "pods \"nope\" not found"));
}

/// generateName gives each create its own name.
pub async fn generate_name_gives_distinct_names(r: Registry) {
    namespace(&r, "gen").await;
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let p = obj(
            json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}),
        );
        let p = create_pod(&r, "gen", p).await.expect("created");
        assert!(p.name().starts_with("web-") && p.name().len() == 9, "{}", p.name());
        names.insert(p.name().to_string());
    }
    assert_eq!(names.len(), 5);
}

/// Creating in a missing namespace is NotFound; in a terminating one Forbidden.
pub async fn create_needs_an_open_namespace(r: Registry) {
    let e = create_pod(&r, "nope", pod("a", json!({}), &["c"])).await.expect_err("no namespace");
    assert_eq!(e.to_string(), "namespaces \"nope\" not found");
    namespace(&r, "closing").await;
    let fin = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    call(
        "patch ns",
        r.patch(
            &Namespace::TYPE,
            None,
            "closing",
            PatchType::Merge,
            fin.to_string().as_bytes(),
            Subresource::Main,
            &WriteOptions::default(),
        ),
    )
    .await
    .expect("finalizer added");
    let d = call("delete ns", r.delete(&Namespace::TYPE, None, "closing", &DeleteOptions::default()))
        .await
        .expect("deleting");
    assert!(!d.gone && d.object.is_deleting());
    let e = create_pod(&r, "closing", pod("a", json!({}), &["c"])).await.expect_err("terminating");
    assert_eq!(e.code(), 403, "{e}");
}

/// Every problem is reported with its field path, as 422 Invalid with causes.
pub async fn invalid_objects_report_every_field(r: Registry) {
    namespace(&r, "v").await;
    let bad = obj(json!({
        "metadata": {"name": "Bad_Name", "labels": {"ok": "has space"}},
        "spec": {
            "containers": [{"name": "a"}, {"name": "a", "image": "x", "resources": {
                "requests": {"cpu": "abc", "memory": "2Gi"}, "limits": {"memory": "1Gi"}}}],
            "restartPolicy": "Sometimes",
        },
    }));
    let e = create_pod(&r, "v", bad).await.expect_err("invalid");
    assert_eq!((e.code(), e.reason()), (422, "Invalid"));
    let status = e.to_status();
    let fields: Vec<String> = status
        .details
        .and_then(|d| d.causes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.field)
        .collect();
    for f in [
        "metadata.name",
        "metadata.labels",
        "spec.containers[0].image",
        "spec.containers[1].name",
        "spec.containers[1].resources.requests[cpu]",
        "spec.containers[1].resources.requests[memory]",
        "spec.restartPolicy",
    ] {
        assert!(fields.iter().any(|x| x.starts_with(f)), "no cause for {f} in {fields:?}");
    }
    assert!(e.to_string().starts_with("Pod \"Bad_Name\" is invalid: "), "{e}");
    let nothing = call("list", r.list(&Pod::TYPE, Some("v"), &ListOptions::default())).await.expect("lists");
    assert!(nothing.items.is_empty(), "an invalid object is not stored");
}

/// Unknown fields: dropped with a warning by default, refused under Strict.
pub async fn unknown_fields_warn_or_fail(r: Registry) {
    namespace(&r, "u").await;
    let mut p = pod("a", json!({}), &["c"]);
    p.data.get_mut("spec").expect("has spec")["bogus"] = json!(1);
    let strict = WriteOptions { field_validation: FieldValidation::Strict, ..Default::default() };
    let e = call("create", r.create(&Pod::TYPE, Some("u"), p.clone(), &strict)).await.expect_err("strict");
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("unknown field \"spec.bogus\""), "{e}");
    let w =
        call("create", r.create(&Pod::TYPE, Some("u"), p, &WriteOptions::default())).await.expect("warns");
    assert_eq!(w.warnings, vec!["unknown field \"spec.bogus\"".to_string()]);
    assert!(w.object.data["spec"].get("bogus").is_none(), "the unknown field is dropped");
}

/// A stale resourceVersion is 409 Conflict; the current one, or none, updates.
pub async fn update_checks_resource_version(r: Registry) {
    namespace(&r, "o").await;
    let p = create_pod(&r, "o", pod("a", json!({"v": "1"}), &["c"])).await.expect("created");
    let mut a = p.clone();
    a.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
    let opts = WriteOptions::default();
    let a = call("update", r.update(&Pod::TYPE, Some("o"), "a", a, Subresource::Main, &opts))
        .await
        .expect("current rv");
    assert!(rv(&a.object) > rv(&p));
    let mut stale = p.clone();
    stale.metadata.labels = Some([("v".to_string(), "3".to_string())].into());
    let e = call("update", r.update(&Pod::TYPE, Some("o"), "a", stale.clone(), Subresource::Main, &opts))
        .await
        .expect_err("stale");
    assert!(matches!(e, Error::Conflict { .. }) && e.code() == 409, "{e:?}");
    assert!(e.to_string().contains("the object has been modified"), "{e}");
    stale.metadata.resource_version = None;
    let u = call("update", r.update(&Pod::TYPE, Some("o"), "a", stale, Subresource::Main, &opts))
        .await
        .expect("unconditional");
    assert_eq!(u.object.metadata.labels.as_ref().and_then(|l| l.get("v")).map(String::as_str), Some("3"));
    assert_eq!(u.object.uid(), p.uid(), "uid never changes");
    assert_eq!(u.object.metadata.creation_timestamp, p.metadata.creation_timestamp);
}

/// generation moves with the spec only.
pub async fn generation_follows_spec_changes(r: Registry) {
    namespace(&r, "g").await;
    let t = Deployment::TYPE;
    let opts = WriteOptions::default();
    let d =
        call("create", r.create(&t, Some("g"), deployment("web", 1), &opts)).await.expect("created").object;
    assert_eq!(d.metadata.generation, Some(1));
    let label = json!({"metadata": {"labels": {"x": "y"}}}).to_string();
    let d = call(
        "patch",
        r.patch(&t, Some("g"), "web", PatchType::Merge, label.as_bytes(), Subresource::Main, &opts),
    )
    .await
    .expect("labels")
    .object;
    assert_eq!(d.metadata.generation, Some(1), "metadata changes keep generation");
    let scale = json!({"spec": {"replicas": 3}}).to_string();
    let d = call(
        "patch",
        r.patch(&t, Some("g"), "web", PatchType::Merge, scale.as_bytes(), Subresource::Main, &opts),
    )
    .await
    .expect("scale")
    .object;
    assert_eq!(d.metadata.generation, Some(2));
    let status = json!({"status": {"replicas": 3, "observedGeneration": 2}}).to_string();
    let d = call(
        "patch",
        r.patch(&t, Some("g"), "web", PatchType::Merge, status.as_bytes(), Subresource::Status, &opts),
    )
    .await
    .expect("status")
    .object;
    assert_eq!(d.metadata.generation, Some(2), "status changes keep generation");
    assert_eq!(d.data["status"]["replicas"], 3);
}

/// A main update keeps the stored status; a status update keeps everything else.
pub async fn status_subresource_is_separate(r: Registry) {
    namespace(&r, "s").await;
    let opts = WriteOptions::default();
    let p = create_pod(&r, "s", pod("a", json!({}), &["c"])).await.expect("created");
    let mut st = p.clone();
    st.data.insert("status".into(), json!({"phase": "Running", "podIP": "10.0.0.5"}));
    st.metadata.labels = Some([("sneaky".to_string(), "yes".to_string())].into());
    let s = call("status", r.update(&Pod::TYPE, Some("s"), "a", st, Subresource::Status, &opts))
        .await
        .expect("status");
    assert_eq!(s.object.data["status"]["phase"], "Running");
    assert!(
        s.object.metadata.labels.as_ref().is_none_or(|l| !l.contains_key("sneaky")),
        "status update changes only status"
    );
    let mut main = s.object.clone();
    main.data.insert("status".into(), json!({"phase": "Failed"}));
    main.metadata.labels = Some([("ok".to_string(), "yes".to_string())].into());
    let m = call("update", r.update(&Pod::TYPE, Some("s"), "a", main, Subresource::Main, &opts))
        .await
        .expect("main");
    assert_eq!(m.object.data["status"]["phase"], "Running", "main update keeps status");
    assert_eq!(m.object.metadata.labels.as_ref().and_then(|l| l.get("ok")).map(String::as_str), Some("yes"));
}

/// JSON patch, merge patch and strategic merge patch.
pub async fn patches_of_every_type(r: Registry) {
    namespace(&r, "p").await;
    let (t, opts) = (Deployment::TYPE, WriteOptions::default());
    call("create", r.create(&t, Some("p"), deployment("web", 1), &opts)).await.expect("created");
    let patch = |ty, body: serde_json::Value| {
        let (r, opts) = (r.clone(), opts.clone());
        async move {
            r.patch(&t, Some("p"), "web", ty, body.to_string().as_bytes(), Subresource::Main, &opts).await
        }
    };
    let d = call(
        "json patch",
        patch(PatchType::Json, json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])),
    )
    .await
    .expect("json patch")
    .object;
    assert_eq!(d.data["spec"]["replicas"], 4);
    let smp =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}});
    let d = call("strategic", patch(PatchType::StrategicMerge, smp.clone())).await.expect("smp").object;
    let containers = d.data["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 2, "strategic merge merges containers by name");
    assert_eq!(containers[0]["image"], "busybox:2");
    let d = call("merge", patch(PatchType::Merge, smp)).await.expect("merge").object;
    let containers = d.data["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
    assert_eq!(containers.len(), 1, "merge patch replaces lists");
    let e =
        call("bad", patch(PatchType::Json, json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}])))
            .await
            .expect_err("bad path");
    assert_eq!((e.code(), e.reason()), (422, "Invalid"), "{e}");
    let e = call("invalid", patch(PatchType::Merge, json!({"spec": {"replicas": -1}})))
        .await
        .expect_err("invalid");
    assert_eq!(e.code(), 422, "{e}");
}

/// An object with finalizers stays, marked deleting, until they are removed.
pub async fn finalizers_defer_deletion(r: Registry) {
    namespace(&r, "f").await;
    let opts = WriteOptions::default();
    let mut p = pod("a", json!({}), &["c"]);
    p.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    create_pod(&r, "f", p).await.expect("created");
    let d = call("delete", r.delete(&Pod::TYPE, Some("f"), "a", &DeleteOptions::default()))
        .await
        .expect("deleting");
    assert!(!d.gone && d.object.is_deleting());
    let still =
        call("get", r.get(&Pod::TYPE, Some("f"), "a", &GetOptions::default())).await.expect("still there");
    assert!(still.is_deleting());
    let add = json!({"metadata": {"finalizers": ["example.com/keep", "example.com/more"]}}).to_string();
    let e = call(
        "patch",
        r.patch(&Pod::TYPE, Some("f"), "a", PatchType::Merge, add.as_bytes(), Subresource::Main, &opts),
    )
    .await
    .expect_err("no new finalizers while deleting");
    assert_eq!(e.code(), 422, "{e}");
    let clear = json!({"metadata": {"finalizers": null}}).to_string();
    call(
        "patch",
        r.patch(&Pod::TYPE, Some("f"), "a", PatchType::Merge, clear.as_bytes(), Subresource::Main, &opts),
    )
    .await
    .expect("finalizers removed");
    let gone = call("get", r.get(&Pod::TYPE, Some("f"), "a", &GetOptions::default())).await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
}

/// A scheduled pod gets its grace period; an unscheduled one goes at once.
pub async fn pod_grace_period_defers_deletion(r: Registry) {
    namespace(&r, "gp").await;
    let mut p = pod("bound", json!({}), &["c"]);
    p.data.get_mut("spec").expect("spec")["nodeName"] = json!("node-1");
    create_pod(&r, "gp", p).await.expect("created");
    create_pod(&r, "gp", pod("free", json!({}), &["c"])).await.expect("created");
    let d = call("delete", r.delete(&Pod::TYPE, Some("gp"), "free", &DeleteOptions::default()))
        .await
        .expect("deleted");
    assert!(d.gone, "unscheduled pods go at once");
    let d = call("delete", r.delete(&Pod::TYPE, Some("gp"), "bound", &DeleteOptions::default()))
        .await
        .expect("deleting");
    assert!(!d.gone);
    assert_eq!(d.object.metadata.deletion_grace_period_seconds, Some(30));
    let now = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    let d = call("delete", r.delete(&Pod::TYPE, Some("gp"), "bound", &now)).await.expect("forced");
    assert!(d.gone, "grace 0 (the node agent's confirmation) removes the pod");
}

/// Orphan and Foreground deletion add their finalizers.
pub async fn propagation_policies_add_finalizers(r: Registry) {
    namespace(&r, "pp").await;
    let opts = WriteOptions::default();
    for (name, policy, finalizer) in [
        ("o", PropagationPolicy::Orphan, "orphan"),
        ("f", PropagationPolicy::Foreground, "foregroundDeletion"),
    ] {
        call("create", r.create(&Deployment::TYPE, Some("pp"), deployment(name, 1), &opts))
            .await
            .expect("created");
        let del = DeleteOptions { propagation_policy: Some(policy), ..Default::default() };
        let d = call("delete", r.delete(&Deployment::TYPE, Some("pp"), name, &del)).await.expect("deleting");
        assert!(!d.gone);
        assert_eq!(d.object.finalizers(), [finalizer.to_string()]);
    }
    call("create", r.create(&Deployment::TYPE, Some("pp"), deployment("b", 1), &opts))
        .await
        .expect("created");
    let del = DeleteOptions { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    assert!(call("delete", r.delete(&Deployment::TYPE, Some("pp"), "b", &del)).await.expect("deleted").gone);
}

/// Delete preconditions on uid and resourceVersion.
pub async fn delete_preconditions(r: Registry) {
    namespace(&r, "pc").await;
    let p = create_pod(&r, "pc", pod("a", json!({}), &["c"])).await.expect("created");
    for pre in [
        Precondition { uid: Some("other".into()), resource_version: None },
        Precondition { uid: None, resource_version: Some("1".into()) },
    ] {
        let del = DeleteOptions { preconditions: pre, ..Default::default() };
        let e = call("delete", r.delete(&Pod::TYPE, Some("pc"), "a", &del))
            .await
            .expect_err("precondition fails");
        assert_eq!(e.code(), 409, "{e}");
    }
    let pre = Precondition { uid: Some(p.uid().into()), resource_version: Some(p.resource_version().into()) };
    let del = DeleteOptions { preconditions: pre, ..Default::default() };
    assert!(call("delete", r.delete(&Pod::TYPE, Some("pc"), "a", &del)).await.expect("deleted").gone);
}

/// A kind registered from Rust: validated, selectable, listed.
pub async fn user_kinds_work_like_builtin_ones(r: Registry) {
    namespace(&r, "games").await;
    let opts = WriteOptions::default();
    let g = |name: &str, players: i32| obj(json!({"metadata": {"name": name}, "spec": {"players": players}}));
    let e =
        call("create", r.create(&Game::TYPE, Some("games"), g("zero", 0), &opts)).await.expect_err("invalid");
    assert!(e.to_string().contains("spec.players"), "{e}");
    for (n, p) in [("chess", 2), ("solitaire", 1)] {
        let w = call("create", r.create(&Game::TYPE, Some("games"), g(n, p), &opts)).await.expect("created");
        assert_eq!((w.object.api_version.as_str(), w.object.kind.as_str()), ("games.example.com/v1", "Game"));
    }
    let two = ListOptions { field_selector: Some("spec.players=2".into()), ..Default::default() };
    let l = call("list", r.list(&Game::TYPE, Some("games"), &two)).await.expect("lists");
    assert_eq!(l.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["chess"]);
    let typed: Game = l.items[0].to_typed().expect("typed");
    assert_eq!(typed.spec.players, 2);
}

/// Deleting a namespace makes it Terminating until its `spec.finalizers` are emptied through
/// the finalize subresource; then it goes.
pub async fn namespace_terminates_until_finalized(r: Registry) {
    namespace(&r, "doomed").await;
    let ns =
        call("get", r.get(&Namespace::TYPE, None, "doomed", &GetOptions::default())).await.expect("exists");
    assert_eq!(ns.data["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns.data["status"]["phase"], "Active");
    let d = call("delete", r.delete(&Namespace::TYPE, None, "doomed", &DeleteOptions::default()))
        .await
        .expect("deleting");
    assert!(!d.gone && d.object.is_deleting());
    assert_eq!(d.object.data["status"]["phase"], "Terminating");
    let e = create_pod(&r, "doomed", pod("late", json!({}), &["c"])).await.expect_err("terminating");
    assert_eq!(e.code(), 403, "{e}");
    let mut fin = d.object.clone();
    fin.data.insert("spec".into(), json!({"finalizers": []}));
    fin.metadata.labels = Some([("ignored".to_string(), "yes".to_string())].into());
    let opts = WriteOptions::default();
    call("finalize", r.update(&Namespace::TYPE, None, "doomed", fin, Subresource::Finalize, &opts))
        .await
        .expect("finalized");
    let gone = call("get", r.get(&Namespace::TYPE, None, "doomed", &GetOptions::default())).await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
}

/// Binding sets `spec.nodeName` and `PodScheduled` once; a second binding is a conflict.
pub async fn binding_assigns_a_pod_once(r: Registry) {
    namespace(&r, "b").await;
    let p = create_pod(&r, "b", pod("a", json!({}), &["c"])).await.expect("created");
    let bound = call("bind", r.bind("b", "a", "node-1", Some(p.uid()))).await.expect("bound");
    assert_eq!(bound.data["spec"]["nodeName"], "node-1");
    assert_eq!(bound.data["status"]["conditions"][0]["type"], "PodScheduled");
    assert!(rv(&bound) > rv(&p));
    assert_eq!(bound.metadata.generation, p.metadata.generation, "binding does not bump generation");
    let e = call("bind", r.bind("b", "a", "node-2", None)).await.expect_err("already bound");
    assert_eq!(e.code(), 409);
    assert!(e.to_string().contains("already assigned to node \"node-1\""), "{e}");
    let e = call("bind", r.bind("b", "nope", "node-1", None)).await.expect_err("absent");
    assert_eq!(e.code(), 404);
}

/// deletecollection deletes what the selectors select, and only that.
pub async fn delete_collection_follows_selectors(r: Registry) {
    namespace(&r, "dc").await;
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        create_pod(&r, "dc", pod(name, json!({"app": app}), &["c"])).await.expect("created");
    }
    let web = ListOptions { label_selector: Some("app=web".into()), ..Default::default() };
    let gone = call(
        "deletecollection",
        r.delete_collection(&Pod::TYPE, Some("dc"), &web, &DeleteOptions::default()),
    )
    .await
    .expect("deleted");
    assert_eq!(gone.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["a", "b"]);
    let left = call("list", r.list(&Pod::TYPE, Some("dc"), &ListOptions::default())).await.expect("lists");
    assert_eq!(left.items.iter().map(|o| o.name()).collect::<Vec<_>>(), ["c"]);
}

/// Server-side apply: creates, records owners, conflicts with another manager's field,
/// takes it with force, and removes what the applier stops specifying.
pub async fn server_side_apply_tracks_owners(r: Registry) {
    namespace(&r, "ssa").await;
    let t = Deployment::TYPE;
    let manager =
        |m: &str, force: bool| WriteOptions { field_manager: Some(m.into()), force, ..Default::default() };
    let config = |replicas: i32, label: bool| {
        let labels = if label { "\n  labels: {team: a}" } else { "" };
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web{labels}\nspec:\n  replicas: {replicas}\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec:\n      containers:\n      - name: main\n        image: busybox:1\n"
        )
    };
    let apply = |body: String, opts: WriteOptions| {
        let r = r.clone();
        async move {
            r.patch(&t, Some("ssa"), "web", PatchType::Apply, body.as_bytes(), Subresource::Main, &opts).await
        }
    };
    let e = call("apply", apply(config(2, true), WriteOptions::default())).await.expect_err("no manager");
    assert_eq!(e.code(), 400, "{e}");
    let d = call("apply", apply(config(2, true), manager("alice", false))).await.expect("created").object;
    assert_eq!(d.data["spec"]["replicas"], 2);
    let owners = |o: &crate::object::DynamicObject| -> Vec<String> {
        o.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect()
    };
    assert_eq!(owners(&d), ["alice"]);
    let scale = json!({"spec": {"replicas": 5}}).to_string();
    let d = call(
        "patch",
        r.patch(
            &t,
            Some("ssa"),
            "web",
            PatchType::Merge,
            scale.as_bytes(),
            Subresource::Main,
            &manager("hpa", false),
        ),
    )
    .await
    .expect("scaled")
    .object;
    assert_eq!(owners(&d), ["alice", "hpa"]);
    let e = call("apply", apply(config(2, true), manager("alice", false))).await.expect_err("conflict");
    assert_eq!(e.code(), 409, "{e}");
    assert!(
        e.to_string().contains("conflict with \"hpa\"") && e.to_string().contains(".spec.replicas"),
        "{e}"
    );
    let d = call("apply", apply(config(2, false), manager("alice", true))).await.expect("forced").object;
    assert_eq!(d.data["spec"]["replicas"], 2);
    assert!(
        d.metadata.labels.is_none(),
        "a label alice stopped applying is removed: {:?}",
        d.metadata.labels
    );
    assert_eq!(owners(&d), ["alice"], "hpa lost its only field");
}
