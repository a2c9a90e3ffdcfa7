//! Criterion benches of the registry on the memory store: create, get, update (replace) and
//! a 1,000-pod list, through the typed in-process client.

#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::client::{Api, Client, ListOptions, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use flotilla_core::store::MemStore;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pod(name: String) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(name), ..Default::default() },
        spec: Some(PodSpec {
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

fn objects(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // The memory store starts its lease task on the current runtime.
    let _in_runtime = rt.enter();
    let client: Arc<dyn Client> =
        Arc::new(LocalClient::new(Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin())));
    let pods = Api::<Pod>::namespaced(client.clone(), "bench");
    rt.block_on(async {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some("bench".into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
        for i in 0..1_000 {
            pods.create(&pod(format!("seed-{i}"))).await.expect("seed pod");
        }
    });
    c.bench_function("registry/get_pod", |b| b.iter(|| rt.block_on(pods.get("seed-500")).expect("get")));
    let mut p = rt.block_on(pods.get("seed-1")).expect("get");
    c.bench_function("registry/replace_pod", |b| {
        b.iter(|| {
            p.metadata.resource_version = None;
            let l = p.metadata.labels.get_or_insert_with(Default::default);
            let v = l.get("n").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            l.insert("n".into(), v.to_string());
            rt.block_on(pods.replace("seed-1", &p)).expect("replace")
        })
    });
    c.bench_function("registry/list_1000_pods", |b| {
        let opts = ListOptions { label_selector: Some("app!=none".into()), ..Default::default() };
        b.iter(|| rt.block_on(pods.list(&opts)).expect("list"))
    });
    // Last: it adds pods, which would change what the list above measures.
    let mut n = 0u64;
    c.bench_function("registry/create_pod", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(pods.create(&pod(format!("new-{n}")))).expect("create")
        })
    });
}

criterion_group!(benches, objects);
criterion_main!(benches);
