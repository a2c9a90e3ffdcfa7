//! Labels: a restarted agent finds exactly what it owned; another node sees none of it.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;
use flotilla_node::runtime::docker::{DockerConfig, DockerRuntime};
use flotilla_node::runtime::{ContainerConfig, ContainerRuntime, labels};
use flotilla_node::testing;

use crate::with_docker;

#[tokio::test]
async fn a_restarted_agent_lists_the_same_objects_and_another_node_none() {
    with_docker(
        "a_restarted_agent_lists_the_same_objects_and_another_node_none",
        "listing",
        |env| async move {
            let (first_pod, first) = env.pod("first").await;
            let (_second_pod, second) = env.pod("second").await;
            let running = env.run(&first, &env.config(&first.pod, "app", &["sleep", "600"])).await;
            let retried = ContainerConfig { restart_count: 4, ..env.config(&first.pod, "job", &["true"]) };
            let exited = env.run(&first, &retried).await;
            env.wait_exited(&exited).await;
            let other = env.run(&second, &env.config(&second.pod, "app", &["sleep", "600"])).await;

            let mut sandboxes = env.runtime.sandboxes().await.expect("listed");
            let mut containers = env.runtime.containers().await.expect("listed");
            sandboxes.sort_by(|a, b| a.id.cmp(&b.id));
            containers.sort_by(|a, b| a.id.cmp(&b.id));
            let mut sandbox_ids: Vec<&str> = vec![&first.id, &second.id];
            sandbox_ids.sort();
            assert_eq!(sandboxes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), sandbox_ids);
            let mut container_ids: Vec<&str> = vec![&running, &exited, &other];
            container_ids.sort();
            assert_eq!(containers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), container_ids);
            let job = containers.iter().find(|c| c.id == exited).expect("listed");
            assert_eq!((job.name.as_str(), job.restart_count, &job.pod), ("job", 4, &first_pod));

            // A restarted agent: a new client, the same node name.
            let restarted =
                DockerRuntime::connect(DockerConfig::new(env.node.clone())).await.expect("connects");
            restarted.ping().await.expect("the daemon answers");
            let mut again = restarted.sandboxes().await.expect("listed");
            again.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(again, sandboxes);
            let mut again = restarted.containers().await.expect("listed");
            again.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(again, containers);

            let stranger = DockerRuntime::with_client(
                env.docker.clone(),
                DockerConfig::new(testing::unique_name("other")),
            );
            assert!(stranger.sandboxes().await.expect("listed").is_empty());
            assert!(stranger.containers().await.expect("listed").is_empty());
        },
    )
    .await;
}

#[tokio::test]
async fn every_object_carries_the_labels_and_cleanup_finds_them_all() {
    with_docker(
        "every_object_carries_the_labels_and_cleanup_finds_them_all",
        "listing or removal",
        |env| async move {
            let (pod, sandbox) = env.pod("labelled").await;
            let container = env.run(&sandbox, &env.config(&pod, "app", &["sleep", "600"])).await;

            let filters = HashMap::from([("label", vec![format!("{}={}", labels::NODE, env.node)])]);
            let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
            let found = env.docker.list_containers(Some(options)).await.expect("listed");
            assert_eq!(found.len(), 2);
            for summary in &found {
                let labels = summary.labels.clone().unwrap_or_default();
                let is_sandbox = summary.id.as_deref() == Some(sandbox.id.as_str());
                assert!(is_sandbox || summary.id.as_deref() == Some(container.as_str()));
                assert_eq!(labels.get(labels::POD_UID), Some(&pod.uid));
                assert_eq!(labels.get(labels::POD_NAMESPACE), Some(&pod.namespace));
                assert_eq!(labels.get(labels::POD_NAME), Some(&pod.name));
                assert_eq!(
                    labels.get(labels::ROLE).map(String::as_str),
                    Some(if is_sandbox { "sandbox" } else { "container" })
                );
                assert_eq!(
                    labels.get(labels::CONTAINER_NAME).map(String::as_str),
                    (!is_sandbox).then_some("app")
                );
                assert_eq!(
                    labels.get(labels::RESTART_COUNT).map(String::as_str),
                    (!is_sandbox).then_some("0")
                );
                let name = summary.names.clone().unwrap_or_default().concat();
                assert!(name.starts_with("/flotilla_default_"), "{name}");
            }

            let removed = testing::remove_node_objects(&env.docker, &env.node).await.expect("removed");
            assert_eq!(removed, 2);
            assert!(env.runtime.sandboxes().await.expect("listed").is_empty());
            assert!(env.runtime.containers().await.expect("listed").is_empty());
        },
    )
    .await;
}
