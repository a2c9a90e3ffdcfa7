//! Priority admission over the in-memory store: a pod's `priorityClassName` becomes its
//! `spec.priority` and `spec.preemptionPolicy`, the global default class applies to pods
//! naming none, and what Kubernetes refuses is refused with its messages.

use std::sync::Arc;

use flotilla_core::client::{Api, Client, Error, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use flotilla_core::store::MemStore;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

async fn apis() -> (Api<PriorityClass>, Api<Pod>) {
    let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    Api::<Namespace>::all(client.clone())
        .create(&Namespace { metadata: meta("default"), ..Default::default() })
        .await
        .expect("namespace");
    (Api::all(client.clone()), Api::namespaced(client, "default"))
}

fn class(name: &str, value: i32, global_default: bool, policy: Option<&str>) -> PriorityClass {
    PriorityClass {
        metadata: meta(name),
        value,
        global_default: Some(global_default),
        preemption_policy: policy.map(Into::into),
        ..Default::default()
    }
}

fn pod(name: &str, class: Option<&str>, priority: Option<i32>) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            priority_class_name: class.map(Into::into),
            priority,
            containers: vec![Container {
                name: "c".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn scheduling(p: &Pod) -> (Option<String>, Option<i32>, Option<String>) {
    let s = p.spec.as_ref().expect("spec");
    (s.priority_class_name.clone(), s.priority, s.preemption_policy.clone())
}

fn forbidden(e: Error) -> String {
    match e {
        Error::Forbidden(message) => message,
        other => panic!("want 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn a_pod_gets_its_class_value_and_policy() {
    let (classes, pods) = apis().await;
    classes.create(&class("batch", 100, false, Some("Never"))).await.expect("class");
    let p = pods.create(&pod("p", Some("batch"), None)).await.expect("pod");
    assert_eq!(scheduling(&p), (Some("batch".into()), Some(100), Some("Never".into())));
    let plain = pods.create(&pod("plain", None, None)).await.expect("pod");
    assert_eq!(scheduling(&plain), (None, Some(0), Some("PreemptLowerPriority".into())));
    let critical =
        pods.create(&pod("agent", Some("system-node-critical"), None)).await.expect("built-in class");
    assert_eq!(scheduling(&critical).1, Some(2_000_001_000));
}

#[tokio::test]
async fn the_global_default_applies_to_pods_naming_no_class_and_only_one_may_exist() {
    let (classes, pods) = apis().await;
    classes.create(&class("base", 5, true, None)).await.expect("default class");
    let p = pods.create(&pod("p", None, None)).await.expect("pod");
    assert_eq!(scheduling(&p), (Some("base".into()), Some(5), Some("PreemptLowerPriority".into())));
    let second = classes.create(&class("other", 6, true, None)).await.expect_err("a second default");
    assert_eq!(
        forbidden(second),
        "PriorityClass base is already marked as default. Only one default can exist"
    );
}

#[tokio::test]
async fn what_kubernetes_refuses_is_refused() {
    let (classes, pods) = apis().await;
    classes.create(&class("high", 1000, false, None)).await.expect("class");
    let missing = pods.create(&pod("p", Some("nope"), None)).await.expect_err("no such class");
    assert_eq!(forbidden(missing), "no PriorityClass with name nope was found");
    let mismatch = pods.create(&pod("p", Some("high"), Some(5))).await.expect_err("a different priority");
    assert!(
        forbidden(mismatch).starts_with("the integer value of priority (5) must not be provided in pod spec")
    );
    let unclassed = pods.create(&pod("p", None, Some(10))).await.expect_err("a priority without a class");
    assert!(forbidden(unclassed).contains("computed 0"));
    pods.create(&pod("same", Some("high"), Some(1000))).await.expect("the class's own value is fine");
    let too_high = classes.create(&class("huge", 1_000_000_001, false, None)).await.expect_err("above 1e9");
    assert!(matches!(too_high, Error::Invalid { .. }), "{too_high}");
    let reserved = classes.create(&class("system-mine", 1, false, None)).await.expect_err("reserved name");
    assert!(matches!(reserved, Error::Invalid { .. }), "{reserved}");
}
