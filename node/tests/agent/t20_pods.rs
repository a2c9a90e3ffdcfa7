//! Pods bound to the node run and report their status; others are ignored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_core::client::Event as WatchEvent;
use futures::StreamExt;

use flotilla_core::client::ListOptions;
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::{Container, Event, Pod};

use crate::fake::{Call, FakeRuntime};
use crate::support::{Agent, NODE, create_bound, get, phase, pod, within};

fn ready(p: &Pod) -> bool {
    p.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test(start_paused = true)]
async fn a_bound_pod_runs_and_reports_ready() {
    within("pod runs", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        let uid =
            create_bound(&kit, &pod("web", "Always", &[("app", "app"), ("side", "sidecar")]), NODE).await;
        let p = kit
            .eventually("the pod is Running and Ready", || async {
                let p = get(&kit, "web").await?;
                (p.status.as_ref()?.phase.as_deref() == Some("Running") && ready(&p)).then_some(p)
            })
            .await;
        let status = p.status.expect("a status");
        let ip = status.pod_ip.clone().expect("a pod IP");
        assert!(ip.starts_with("10.88.0."), "{ip}");
        assert_eq!(status.host_ip.as_deref(), Some("192.168.0.10"));
        assert!(status.start_time.is_some());
        let cs = status.container_statuses.expect("container statuses");
        assert_eq!(cs.len(), 2);
        for c in &cs {
            assert!(c.ready, "{c:?}");
            assert_eq!(c.restart_count, 0);
            assert!(c.container_id.as_deref().is_some_and(|id| id.starts_with("fake://")), "{c:?}");
            assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        }
        for t in ["Initialized", "ContainersReady", "PodScheduled", "PodReadyToStartContainers"] {
            let c = status.conditions.iter().flatten().find(|c| c.type_ == t).expect(t);
            assert_eq!(c.status, "True", "{t}");
        }
        assert_eq!(
            runtime.calls().iter().filter(|c| matches!(c, Call::RunSandbox(u) if *u == uid)).count(),
            1
        );
        assert_eq!(runtime.creates(), 2);
        let events = kit
            .eventually("Started events are written", || async {
                let list = kit.api::<Event>(Some("default")).list(&ListOptions::default()).await.ok()?;
                let started = list.items.iter().filter(|e| e.reason.as_deref() == Some("Started")).count();
                (started == 2).then_some(list.items)
            })
            .await;
        let started =
            events.iter().find(|e| e.reason.as_deref() == Some("Started")).expect("a Started event");
        assert_eq!(started.involved_object.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(started.source.as_ref().and_then(|s| s.component.as_deref()), Some("kubelet"));
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn status_is_written_only_when_it_changes() {
    within("status writes", async {
        let kit = TestKit::new().await;
        let agent = Agent::start(&kit, FakeRuntime::new(kit.clock()));
        // Count every write of the pod from its creation on.
        let opts = ListOptions { field_selector: Some("metadata.name=quiet".into()), ..Default::default() };
        let mut watch = Box::pin(kit.api::<Pod>(Some("default")).watch(&opts).await.expect("a watch"));
        let writes = Arc::new(AtomicUsize::new(0));
        let counter = writes.clone();
        kit.spawn_task(|stop| async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    ev = watch.next() => match ev {
                        Some(WatchEvent::Modified(_)) => { counter.fetch_add(1, Ordering::SeqCst); }
                        Some(_) => {}
                        None => return,
                    },
                }
            }
        });
        create_bound(&kit, &pod("quiet", "Always", &[("app", "app")]), NODE).await;
        kit.eventually("the pod is Running", || async {
            let p = get(&kit, "quiet").await?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running") && ready(&p)).then_some(p)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let settled = writes.load(Ordering::SeqCst);
        // The binding, then the agent's status: running at once with the fake runtime (a
        // Pending status first is allowed).
        assert!((2..=3).contains(&settled), "{settled} writes to reach Running");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(writes.load(Ordering::SeqCst), settled, "the pod was rewritten although nothing changed");
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn pods_of_other_nodes_are_ignored() {
    within("other nodes' pods", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("elsewhere", "Always", &[("app", "app")]), "node-2").await;
        create_bound(&kit, &pod("here", "Always", &[("app", "app")]), NODE).await;
        kit.eventually("our pod runs", || async { (phase(&kit, "here").await? == "Running").then_some(()) })
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let elsewhere = get(&kit, "elsewhere").await.expect("the pod").status.unwrap_or_default();
        assert!(elsewhere.container_statuses.is_none() && elsewhere.pod_ip.is_none(), "{elsewhere:?}");
        assert_eq!(runtime.creates(), 1);
        assert!(runtime.snapshot().iter().all(|c| c.pod.name == "here"));
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_before_the_others() {
    within("init containers", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        let mut p = pod("staged", "Always", &[("app", "app")]);
        if let Some(spec) = p.spec.as_mut() {
            let init =
                |n: &str| Container { name: n.into(), image: Some("complete".into()), ..Default::default() };
            spec.init_containers = Some(vec![init("first"), init("second")]);
        }
        create_bound(&kit, &p, NODE).await;
        let pod = kit
            .eventually("the pod runs after its init containers", || async {
                let p = get(&kit, "staged").await?;
                (p.status.as_ref()?.phase.as_deref() == Some("Running") && ready(&p)).then_some(p)
            })
            .await;
        let order: Vec<String> = runtime.created().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(order, vec!["first", "second", "app"]);
        let created = runtime.created();
        assert!(
            created[1].2 >= created[0].2 + Duration::from_secs(1),
            "second started before first finished"
        );
        let init = pod.status.and_then(|s| s.init_container_statuses).expect("init statuses");
        for s in &init {
            let t = s.state.as_ref().and_then(|st| st.terminated.as_ref()).expect("terminated");
            assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        }
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn runtime_calls_relists_and_running_pods_are_in_the_metrics() {
    within("metrics", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        create_bound(&kit, &pod("measured", "Always", &[("app", "app")]), NODE).await;
        kit.eventually("the pod is Running", || async {
            (phase(&kit, "measured").await.as_deref() == Some("Running")).then_some(())
        })
        .await;
        let mut registry = prometheus_client::registry::Registry::default();
        agent.metrics.register(&mut registry);
        let scrape = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
            text
        };
        let value = |text: &str, series: &str| -> Option<f64> {
            text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        };
        let text = kit
            .eventually("a relist saw the running pod", || async {
                let text = scrape();
                (value(&text, "kubelet_running_pods") == Some(1.0)).then_some(text)
            })
            .await;
        assert_eq!(
            value(&text, "kubelet_running_containers{container_state=\"running\"}"),
            Some(1.0),
            "{text}"
        );
        for series in [
            "kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"}",
            "kubelet_runtime_operations_total{operation_type=\"create_container\"}",
            "kubelet_runtime_operations_total{operation_type=\"start_container\"}",
        ] {
            assert_eq!(value(&text, series), Some(1.0), "{series} in:\n{text}");
        }
        let lists = value(&text, "kubelet_runtime_operations_total{operation_type=\"list_containers\"}");
        assert!(lists.is_some_and(|n| n >= 2.0), "worker syncs and relists list containers:\n{text}");
        assert!(
            value(&text, "kubelet_pleg_relist_duration_seconds_count").is_some_and(|n| n >= 1.0),
            "{text}"
        );
        assert!(
            value(&text, "kubelet_pod_worker_duration_seconds_count").is_some_and(|n| n >= 1.0),
            "{text}"
        );
        agent.stop().await;
        kit.shutdown().await;
    })
    .await;
}
