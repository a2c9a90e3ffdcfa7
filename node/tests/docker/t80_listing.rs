//! Listing inspects only containers whose state changed since they were last inspected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::{ContainerRuntime, ContainerState};

use crate::with_docker;

/// Whether a request path is a container inspect (`/containers/<id>/json`), not the list
/// (`/containers/json`).
fn is_inspect(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    let path = path.split_once('/').filter(|(version, _)| version.starts_with('v')).map_or(path, |(_, p)| p);
    matches!(path.split('/').collect::<Vec<_>>().as_slice(), ["containers", id, "json"] if *id != "json")
}

#[test]
fn inspect_paths_are_told_from_the_list() {
    assert!(is_inspect("/v1.47/containers/0123abcd/json"));
    assert!(is_inspect("/containers/0123abcd/json"));
    assert!(!is_inspect("/v1.47/containers/json"));
    assert!(!is_inspect("/v1.47/containers/0123abcd/logs"));
}

#[tokio::test]
async fn an_unchanged_container_is_not_inspected_again() {
    with_docker(
        "an_unchanged_container_is_not_inspected_again",
        "containers list or stop",
        |env| async move {
            let inspects = Arc::new(AtomicUsize::new(0));
            let counted = inspects.clone();
            let client = env.docker.clone().with_request_modifier(move |request| {
                if is_inspect(request.uri().path()) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                request
            });
            let runtime = DockerRuntime::with_client(client, DockerConfig::new(env.node.clone()));
            let (_pod, sandbox) = env.pod("listing").await;
            // It exits with 3 on SIGTERM: a SIGKILL exit (137) is read again for a while, in
            // case Docker reports an OOM kill late.
            let script = "trap 'exit 3' TERM; while :; do sleep 1; done";
            let id = env.run(&sandbox, &env.config(&sandbox.pod, "sleeper", &["sh", "-c", script])).await;
            env.wait_for(&id, "running", |s| matches!(s, ContainerState::Running { .. })).await;

            let first = runtime.containers().await.expect("listed");
            assert_eq!(inspects.load(Ordering::SeqCst), 1, "the first list inspects the container");
            for _ in 0..3 {
                assert_eq!(runtime.containers().await.expect("listed"), first);
            }
            assert_eq!(inspects.load(Ordering::SeqCst), 1, "a running container is not inspected again");

            env.runtime.stop_container(&id, Duration::from_secs(10)).await.expect("stopped");
            let exited = runtime.containers().await.expect("listed");
            match &exited[..] {
                [c] => assert!(
                    matches!(&c.state, ContainerState::Exited { exit_code: 3, finished_at: Some(_), .. }),
                    "the exit is inspected: {:?}",
                    c.state
                ),
                other => panic!("one container expected: {other:?}"),
            }
            assert_eq!(inspects.load(Ordering::SeqCst), 2);
            runtime.containers().await.expect("listed");
            assert_eq!(inspects.load(Ordering::SeqCst), 2, "an exited container is not inspected again");
        },
    )
    .await;
}
