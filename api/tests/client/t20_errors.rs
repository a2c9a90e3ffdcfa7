//! Errors over HTTP are the errors of the registry: the same operation through the remote and
//! the in-process client fails with the same variant and message. Warnings likewise.

use std::sync::Arc;

use anyhow::{Result, ensure};
use flotilla_api::auth::{Attributes, Authenticator, AuthenticatorConfig, Authorizer, Decision, UserInfo};
use flotilla_api::client::RemoteClient;
use flotilla_api::server::Security;
use flotilla_core::client::{Api, Client};
use flotilla_core::object::{DynamicObject, Resource, ResourceType};
use flotilla_core::registry::{
    self, Error, FieldValidation, GetOptions, ListOptions, Subresource, WriteOptions,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;

use crate::harness::{Cluster, Options, obj, within};

/// Runs `op` through both clients; their results must be equal (compared as text, since an
/// `Invalid` error read back carries each offending value only inside its message). Returns
/// the remote result.
async fn same<T: std::fmt::Debug, F>(
    cluster: &Cluster,
    what: &str,
    op: impl Fn(Arc<dyn Client>) -> F,
) -> Result<registry::Result<T>>
where
    F: Future<Output = registry::Result<T>>,
{
    let local = op(cluster.local.clone()).await;
    let remote = op(cluster.remote.clone()).await;
    let text = |r: &registry::Result<T>| match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({} {}: {e})", e.code(), e.reason()),
    };
    ensure!(text(&local) == text(&remote), "{what}:\n local: {}\nremote: {}", text(&local), text(&remote));
    Ok(remote)
}

/// The message of an expected error.
fn message<T: std::fmt::Debug>(r: registry::Result<T>) -> String {
    r.expect_err("an error").to_string()
}

fn config_map(name: &str) -> DynamicObject {
    obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}))
}

#[tokio::test]
async fn registry_errors_come_back_unchanged() -> Result<()> {
    let cluster = Cluster::start().await?;
    within("error calls", async {
        let t = ConfigMap::TYPE;
        let (t, w, get) = (&t, &WriteOptions::default(), &GetOptions::default());

        let absent =
            same(&cluster, "get absent", |c| async move { c.get(t, Some("default"), "nope", get).await });
        ensure!(absent.await? == Err(Error::NotFound { resource: "configmaps".into(), name: "nope".into() }));

        cluster.local.create(t, Some("default"), config_map("dup"), w).await?;
        let dup = same(&cluster, "create twice", |c| async move {
            c.create(t, Some("default"), config_map("dup"), w).await.map(|_| ())
        });
        ensure!(
            dup.await? == Err(Error::AlreadyExists { resource: "configmaps".into(), name: "dup".into() })
        );

        // A stale update: the resourceVersion read is no longer current.
        let stale = cluster.remote.get(t, Some("default"), "dup", get).await?;
        let mut fresh = stale.clone();
        fresh.data.insert("data".into(), json!({"k": "w"}));
        cluster.remote.replace(t, Some("default"), "dup", fresh, Subresource::Main, w).await?;
        let conflict = same(&cluster, "stale replace", |c| {
            let stale = stale.clone();
            async move { c.replace(t, Some("default"), "dup", stale, Subresource::Main, w).await.map(|_| ()) }
        });
        let conflict = conflict.await?;
        ensure!(
            matches!(&conflict, Err(Error::Conflict { resource, name, reason })
                if resource == "configmaps" && name == "dup" && reason.contains("has been modified")),
            "{conflict:?}"
        );

        // Invalid objects: every field error, with its path and kind.
        let bad = obj(json!({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": "Bad_Name", "labels": {"a/b/c": "x"}},
                             "spec": {"containers": [{"name": "c"}], "restartPolicy": "Sometimes"}}));
        let invalid = same(&cluster, "invalid pod", |c| {
            let bad = bad.clone();
            async move { c.create(&Pod::TYPE, Some("default"), bad, w).await.map(|_| ()) }
        });
        let remote = invalid.await?;
        let local = cluster.local.create(&Pod::TYPE, Some("default"), bad.clone(), w).await;
        let (Err(Error::Invalid { errors: want, .. }), Err(Error::Invalid { errors: got, kind, name })) =
            (local, remote)
        else {
            anyhow::bail!("both must be Invalid");
        };
        ensure!((kind.as_str(), name.as_str()) == ("Pod", "Bad_Name"));
        ensure!(want.len() == got.len() && want.len() >= 3, "{want} / {got}");
        for (w, g) in want.iter().zip(got.iter()) {
            ensure!((w.kind, &w.path, w.to_string()) == (g.kind, &g.path, g.to_string()), "{w} / {g}");
        }

        // Bad requests: a bad selector, strict validation, a missing namespace, an unknown kind.
        let bad_selector = &ListOptions { label_selector: Some("app in (".into()), ..Default::default() };
        let e =
            same(&cluster, "bad selector", |c| async move { c.list(t, Some("default"), bad_selector).await });
        ensure!(matches!(e.await?, Err(Error::BadRequest(_))));
        let strict = &WriteOptions { field_validation: FieldValidation::Strict, ..Default::default() };
        let unknown =
            obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "bogus": 1}));
        let e = same(&cluster, "strict validation", |c| {
            let u = unknown.clone();
            async move { c.create(t, Some("default"), u, strict).await.map(|_| ()) }
        });
        ensure!(message(e.await?).contains("bogus"));
        let e = same(&cluster, "no namespace", |c| async move { c.get(t, None, "dup", get).await });
        ensure!(message(e.await?).contains("namespace is required"));
        let widgets = &ResourceType {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            singular: "widget",
            namespaced: true,
            short_names: &[],
            has_status: false,
        };
        let e = same(&cluster, "unknown kind", |c| async move {
            c.list(widgets, Some("default"), &ListOptions::default()).await
        });
        ensure!(e.await? == Err(Error::UnknownResource { resource: "widgets.example.com".into() }));
        Ok(())
    })
    .await?;
    cluster.stop().await
}

#[tokio::test]
async fn unknown_fields_warn_and_expired_versions_are_gone() -> Result<()> {
    let cluster = Cluster::start().await?;
    within("warnings and 410", async {
        let t = ConfigMap::TYPE;
        let (t, w) = (&t, &WriteOptions::default());
        let with_bogus = |name: &str| {
            obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "bogus": {"x": 1}}))
        };
        let local = cluster.local.create(t, Some("default"), with_bogus("a"), w).await?;
        let remote = cluster.remote.create(t, Some("default"), with_bogus("b"), w).await?;
        ensure!(!local.warnings.is_empty() && remote.warnings == local.warnings, "{:?} / {:?}", remote.warnings, local.warnings);
        ensure!(remote.warnings.iter().any(|w| w.contains("bogus")), "{:?}", remote.warnings);
        let ignore = WriteOptions { field_validation: FieldValidation::Ignore, ..Default::default() };
        ensure!(cluster.remote.create(t, Some("default"), with_bogus("c"), &ignore).await?.warnings.is_empty());

        // Compact past the revision after a list's: watching from the list is 410 Expired.
        let old = cluster.remote.list(t, Some("default"), &ListOptions::default()).await?.resource_version;
        for name in ["later", "later-still"] {
            cluster.remote.create(t, Some("default"), config_map(name), w).await?;
        }
        let now = cluster.remote.list(t, Some("default"), &ListOptions::default()).await?.resource_version;
        cluster.registry.store().compact(now.parse()?).await?;
        let from_old = &ListOptions { resource_version: Some(old), ..Default::default() };
        let e = same(&cluster, "watch from a compacted revision", |c| async move {
            c.watch(t, Some("default"), from_old).await.map(|_| ())
        });
        let e = e.await?;
        ensure!(matches!(&e, Err(Error::Expired(m)) if m.contains("too old resource version")), "{e:?}");
        Ok(())
    })
    .await?;
    cluster.stop().await
}

/// Allows user `bob` only to get and list, everyone else everything.
struct BobReadsOnly;

impl Authorizer for BobReadsOnly {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.name == "bob" && !matches!(attrs.verb.as_str(), "get" | "list") {
            Decision::deny("bob only reads")
        } else {
            Decision::allow("")
        }
    }
}

#[tokio::test]
async fn credentials_are_sent_and_refusals_are_forbidden() -> Result<()> {
    let authenticator = Arc::new(Authenticator::new(AuthenticatorConfig::default()));
    authenticator.add_token("bobs-token", UserInfo::new("bob", ["dev"]));
    let security = Security { authenticator, authorizer: Arc::new(BobReadsOnly) };
    let cluster = Cluster::with(Options { security: Some(security), ..Default::default() }).await?;
    within("authenticated calls", async {
        let t = ConfigMap::TYPE;
        let w = WriteOptions::default();
        // The admin kubeconfig's client certificate authenticates.
        cluster.remote.create(&t, Some("default"), config_map("cm"), &w).await?;

        let anonymous: Arc<dyn Client> = Arc::new(RemoteClient::new(cluster.anonymous_config()?)?);
        let e = anonymous.get(&t, Some("default"), "cm", &GetOptions::default()).await;
        ensure!(e == Err(Error::Forbidden("Unauthorized".into())), "401 becomes Forbidden: {e:?}");

        let mut bob = cluster.anonymous_config()?;
        bob.token = Some("bobs-token".into());
        let bob: Arc<dyn Client> = Arc::new(RemoteClient::new(bob)?);
        ensure!(bob.get(&t, Some("default"), "cm", &GetOptions::default()).await?.name() == "cm");
        let e = Api::<ConfigMap>::namespaced(bob.clone(), "default").delete("cm", &Default::default()).await;
        let Err(Error::Forbidden(msg)) = e else { anyhow::bail!("bob may not delete: {e:?}") };
        ensure!(msg.contains("User \"bob\" cannot delete"), "{msg}");
        Ok(())
    })
    .await?;
    cluster.stop().await
}
