//! The typed [`Api`] over the in-process client.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Client, Event, ListOptions, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{DeleteOptions, Registry};
use flotilla_core::store::MemStore;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

fn client() -> Arc<dyn Client> {
    Arc::new(LocalClient::new(Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin())))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox:1".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn typed_crud_scale_and_watch() {
    within("typed api case", async {
        let c = client();
        Api::<Namespace>::all(c.clone())
            .create(&Namespace { metadata: meta("demo"), ..Default::default() })
            .await
            .expect("ns");
        let pods = Api::<Pod>::namespaced(c.clone(), "demo");
        let mut watch = pods.watch(&ListOptions::default()).await.expect("watch").boxed();
        let created = pods
            .create(&Pod { metadata: meta("p"), spec: Some(pod_spec()), status: None })
            .await
            .expect("create");
        assert_eq!(created.spec.as_ref().and_then(|s| s.restart_policy.as_deref()), Some("Always"));
        assert!(
            matches!(watch.next().await, Some(Event::Added(p)) if p.metadata.name.as_deref() == Some("p"))
        );

        let mut changed = pods.get("p").await.expect("get");
        changed.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        let replaced = pods.replace("p", &changed).await.expect("replace");
        assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);
        assert!(matches!(watch.next().await, Some(Event::Modified(_))));
        assert!(pods.get_opt("nope").await.expect("get_opt").is_none());
        let bound = pods.bind("p", "node-1").await.expect("bind");
        assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("node-1"));
        assert!(matches!(watch.next().await, Some(Event::Modified(_))));
        assert_eq!(pods.list(&ListOptions::default()).await.expect("list").items.len(), 1);
        let now = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        assert!(pods.delete("p", &now).await.expect("delete").is_none());
        assert!(matches!(watch.next().await, Some(Event::Deleted(_))));

        let deploys = Api::<Deployment>::namespaced(c, "demo");
        let labels = Some([("app".to_string(), "web".to_string())].into());
        let d = Deployment {
            metadata: meta("web"),
            spec: Some(DeploymentSpec {
                selector: LabelSelector { match_labels: labels.clone(), ..Default::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels, ..Default::default() }),
                    spec: Some(pod_spec()),
                },
                ..Default::default()
            }),
            status: None,
        };
        let d = deploys.create(&d).await.expect("create deployment");
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1), "replicas default to 1");
        let scaled = deploys.scale("web", 5).await.expect("scale");
        assert_eq!(scaled.spec.as_ref().and_then(|s| s.replicas), Some(5));
        assert_eq!(scaled.metadata.generation, Some(2));
        let status = serde_json::json!({"status": {"readyReplicas": 2}});
        let s = deploys.patch_status("web", PatchType::Merge, &status).await.expect("status patch");
        assert_eq!(s.status.as_ref().and_then(|s| s.ready_replicas), Some(2));
    })
    .await;
}
