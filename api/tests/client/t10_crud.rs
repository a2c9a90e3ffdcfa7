//! Every `Client` call through the typed `Api` (and the dynamic client for the options the
//! typed one does not expose), checked against the server's registry.

use anyhow::{Context, Result, ensure};
use flotilla_core::client::Api;
use flotilla_core::object::{DynamicObject, Resource};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{
    DeleteOptions, Error, GetOptions, ListOptions, Precondition, PropagationPolicy, Subresource, WriteOptions,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use serde_json::json;

use crate::harness::{Cluster, obj, pod, within};

#[tokio::test]
async fn pods_through_the_typed_api() -> Result<()> {
    let cluster = Cluster::start().await?;
    within("pod calls over https", async {
        let pods = Api::<Pod>::namespaced(cluster.remote.clone(), "default");
        let web = pods.create(&pod("web", "web")).await?;
        ensure!(web.metadata.uid.is_some() && web.metadata.resource_version.is_some(), "{web:?}");
        ensure!(pods.get("web").await? == web, "get returns what create returned");
        ensure!(pods.get_opt("nope").await?.is_none());
        pods.create(&pod("db", "db")).await?;

        // Lists: selectors, pages, all namespaces.
        let selected = ListOptions { label_selector: Some("app=web".into()), ..Default::default() };
        let names = |l: &[Pod]| l.iter().filter_map(|p| p.metadata.name.clone()).collect::<Vec<_>>();
        ensure!(names(&pods.list(&selected).await?.items) == ["web"]);
        let first = pods.list(&ListOptions { limit: Some(1), ..Default::default() }).await?;
        let token = first.continue_token.clone().context("a continue token")?;
        let page = ListOptions { limit: Some(1), continue_token: Some(token), ..Default::default() };
        let second = pods.list(&page).await?;
        ensure!(names(&first.items) == ["db"] && names(&second.items) == ["web"], "pages in name order");
        ensure!(second.continue_token.is_none() && second.resource_version == first.resource_version);
        let one = ListOptions { limit: Some(1), ..Default::default() };
        ensure!(
            cluster.remote.list(&Pod::TYPE, Some("default"), &one).await?.remaining_item_count == Some(1)
        );
        let ns = Namespace { metadata: named("other"), ..Default::default() };
        Api::<Namespace>::all(cluster.remote.clone()).create(&ns).await?;
        Api::<Pod>::namespaced(cluster.remote.clone(), "other").create(&pod("elsewhere", "web")).await?;
        let everywhere = Api::<Pod>::all(cluster.remote.clone()).list(&selected).await?;
        ensure!(names(&everywhere.items) == ["web", "elsewhere"], "{:?}", names(&everywhere.items));

        // Replace, status, patches.
        let mut changed = pods.get("web").await?;
        changed.metadata.labels.get_or_insert_default().insert("tier".into(), "front".into());
        let replaced = pods.replace("web", &changed).await?;
        ensure!(replaced.metadata.labels.as_ref().and_then(|l| l.get("tier")).is_some());
        let mut status = replaced.clone();
        status.status.get_or_insert_default().message = Some("hello".into());
        let with_status = pods.replace_status("web", &status).await?;
        ensure!(with_status.status.and_then(|s| s.message).as_deref() == Some("hello"));
        let merged =
            pods.patch("web", PatchType::Merge, &json!({"metadata": {"labels": {"m": "1"}}})).await?;
        ensure!(merged.metadata.labels.as_ref().and_then(|l| l.get("m")).map(String::as_str) == Some("1"));
        let ops = json!([{"op": "add", "path": "/metadata/annotations", "value": {"j": "2"}}]);
        let patched = pods.patch("web", PatchType::Json, &ops).await?;
        ensure!(patched.metadata.annotations.as_ref().and_then(|a| a.get("j")).is_some());
        let labels = json!({"metadata": {"labels": {"s": "3"}}});
        let smp = pods.patch("web", PatchType::StrategicMerge, &labels).await?;
        ensure!(smp.metadata.labels.as_ref().and_then(|l| l.get("s")).is_some());
        let phase = pods.patch_status("web", PatchType::Merge, &json!({"status": {"reason": "R"}})).await?;
        ensure!(phase.status.and_then(|s| s.reason).as_deref() == Some("R"));

        // Bind, then delete: pending (a bound pod's grace period), then gone.
        let bound = pods.bind("web", "node-1").await?;
        ensure!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"));
        let again = pods.bind("web", "node-2").await.expect_err("already bound");
        ensure!(matches!(again, Error::Conflict { .. }), "{again:?}");
        let uid = pods.get("db").await?.metadata.uid;
        let stale = cluster.remote.bind("default", "db", "node-1", Some("not-the-uid")).await;
        ensure!(matches!(stale, Err(Error::Conflict { .. })), "uid precondition: {stale:?}");
        let db = cluster.remote.bind("default", "db", "node-1", uid.as_deref()).await?;
        ensure!(db.data["spec"]["nodeName"] == "node-1");
        let pending = pods.delete("web", &DeleteOptions::default()).await?.context("a bound pod waits")?;
        ensure!(pending.metadata.deletion_timestamp.is_some());
        let now = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        ensure!(pods.delete("web", &now).await?.is_none(), "grace 0 removes it");
        ensure!(pods.get_opt("web").await?.is_none());

        // Delete a collection by selector.
        pods.create(&pod("db-2", "db")).await?;
        let by_app = ListOptions { label_selector: Some("app=db".into()), ..Default::default() };
        let deleted = pods.delete_collection(&by_app, &now).await?;
        ensure!(names(&deleted.items) == ["db", "db-2"], "{:?}", names(&deleted.items));
        ensure!(pods.list(&ListOptions::default()).await?.items.is_empty());
        Ok(())
    })
    .await?;
    cluster.stop().await
}

fn named(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn deployments_config_maps_and_cluster_kinds() -> Result<()> {
    let cluster = Cluster::start().await?;
    within("deployment, config map, node and namespace calls", async {
        let deployments = Api::<Deployment>::namespaced(cluster.remote.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}},
        }))?;
        let created = deployments.create(&d).await?;
        ensure!(created.metadata.generation == Some(1));
        let scaled = deployments.scale("web", 4).await?;
        ensure!(
            scaled.spec.as_ref().and_then(|s| s.replicas) == Some(4) && scaled.metadata.generation == Some(2)
        );
        let mut status = scaled.clone();
        status.status.get_or_insert_default().ready_replicas = Some(3);
        let s = deployments.replace_status("web", &status).await?;
        ensure!(s.status.and_then(|s| s.ready_replicas) == Some(3));
        // Orphan deletion waits on its finalizer (202), then goes once it is removed (200).
        let orphan =
            DeleteOptions { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
        let pending = deployments.delete("web", &orphan).await?.context("orphaning waits")?;
        ensure!(pending.metadata.finalizers.as_deref() == Some(&["orphan".to_string()][..]));
        deployments.patch("web", PatchType::Merge, &json!({"metadata": {"finalizers": null}})).await?;
        ensure!(deployments.get_opt("web").await?.is_none(), "gone once finalized");

        let maps = Api::<ConfigMap>::namespaced(cluster.remote.clone(), "default");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}}))?;
        maps.create(&cm).await?;
        let mut got = maps.get("cfg").await?;
        got.data.get_or_insert_default().insert("k".into(), "w".into());
        ensure!(
            maps.replace("cfg", &got).await?.data.and_then(|d| d.get("k").cloned()).as_deref() == Some("w")
        );
        ensure!(maps.delete("cfg", &DeleteOptions::default()).await?.is_none(), "config maps go at once");

        // Cluster-scoped kinds ignore the namespace.
        let nodes = Api::<Node>::all(cluster.remote.clone());
        nodes.create(&Node { metadata: named("n1"), ..Default::default() }).await?;
        let n = cluster.remote.get(&Node::TYPE, Some("ignored"), "n1", &GetOptions::default()).await?;
        ensure!(n.name() == "n1" && n.namespace().is_empty());
        ensure!(nodes.list(&ListOptions::default()).await?.items.len() == 1);
        Ok(())
    })
    .await?;
    cluster.stop().await
}

#[tokio::test]
async fn write_options_and_subresources() -> Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.remote.clone();
    within("calls with options", async {
        // Dry run: checked and returned, not stored.
        let dry = WriteOptions { dry_run: true, ..Default::default() };
        let cm = obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}));
        let w = client.create(&ConfigMap::TYPE, Some("default"), cm, &dry).await?;
        ensure!(w.object.name() == "dry");
        let gone = client.get(&ConfigMap::TYPE, Some("default"), "dry", &GetOptions::default()).await;
        ensure!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");

        // The object's own namespace serves when the call names none (as in the registry).
        let cm = obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "own", "namespace": "default"}}));
        client.create(&ConfigMap::TYPE, None, cm, &WriteOptions::default()).await?;
        let rv0 = GetOptions { resource_version: Some("0".into()) };
        ensure!(client.get(&ConfigMap::TYPE, Some("default"), "own", &rv0).await?.name() == "own");

        // Server-side apply records the field manager; force takes fields over.
        let manager = |m: &str, force: bool| WriteOptions { field_manager: Some(m.into()), force, ..Default::default() };
        let apply = |data: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: {data}\n");
        let sub = Subresource::Main;
        let t = ConfigMap::TYPE;
        let apply_as = |data: &'static str, who: &'static str, force: bool| {
            let client = client.clone();
            async move {
                let (body, opts) = (apply(data), manager(who, force));
                client.patch(&t, Some("default"), "applied", PatchType::Apply, body.as_bytes(), sub, &opts).await
            }
        };
        let a = apply_as("a", "alice", false).await?.object;
        let owners = |o: &DynamicObject| -> Vec<String> {
            o.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect()
        };
        ensure!(owners(&a) == ["alice"], "{:?}", owners(&a));
        let b = apply_as("b", "bob", false).await;
        ensure!(matches!(b, Err(Error::Conflict { .. })), "bob does not own data.k: {b:?}");
        ensure!(apply_as("b", "bob", true).await?.object.data["data"]["k"] == "b");

        // Delete preconditions.
        let uid = Precondition { uid: Some("other".into()), resource_version: None };
        let pre = DeleteOptions { preconditions: uid, ..Default::default() };
        let refused = client.delete(&t, Some("default"), "applied", &pre).await;
        ensure!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
        let dry = DeleteOptions { dry_run: true, ..Default::default() };
        ensure!(client.delete(&t, Some("default"), "applied", &dry).await?.gone);
        ensure!(client.get(&t, Some("default"), "applied", &GetOptions::default()).await.is_ok(), "dry run kept it");

        // A namespace terminates until its finalize subresource empties spec.finalizers.
        let ns = Api::<Namespace>::all(client.clone());
        ns.create(&Namespace { metadata: named("doomed"), ..Default::default() }).await?;
        let d = client.delete(&Namespace::TYPE, None, "doomed", &DeleteOptions::default()).await?;
        ensure!(!d.gone && d.object.data["status"]["phase"] == "Terminating");
        let late = Api::<Pod>::namespaced(client.clone(), "doomed").create(&pod("late", "x")).await;
        ensure!(matches!(late, Err(Error::Forbidden(_))), "{late:?}");
        let mut fin = d.object.clone();
        fin.data.insert("spec".into(), json!({"finalizers": []}));
        client.replace(&Namespace::TYPE, None, "doomed", fin, Subresource::Finalize, &WriteOptions::default()).await?;
        ensure!(ns.get_opt("doomed").await?.is_none());
        Ok(())
    })
    .await?;
    cluster.stop().await
}
