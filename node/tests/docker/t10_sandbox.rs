//! Sandboxes: the pod's network namespace, IP and hostname, shared by its containers.

use std::time::Duration;

use flotilla_node::runtime::{ContainerRuntime, Error, LogOptions, SandboxConfig};

use crate::{strings, with_docker};

/// Serves a page on the pod's loopback only.
const SERVE_ON_LOOPBACK: &str =
    "echo hello-from-server > /tmp/index.html && exec httpd -f -p 127.0.0.1:8080 -h /tmp";
/// Fetches the page from the pod's loopback, retrying while the server starts.
const FETCH_FROM_LOOPBACK: &str = "for i in $(seq 100); do \
    wget -q -O - http://127.0.0.1:8080/index.html && exit 0; sleep 0.1; done; exit 1";

#[tokio::test]
async fn containers_of_a_pod_share_localhost_and_hostname() {
    let test = "containers_of_a_pod_share_localhost_and_hostname";
    with_docker(test, "httpd or wget in the pod", |env| async move {
        let (_pod, sandbox) = env.pod("web").await;
        assert!(sandbox.running);
        let ip = sandbox.ip.expect("a running sandbox on the bridge network has an IP");
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        let listed = env.runtime.sandboxes().await.expect("sandboxes are listed");
        assert_eq!(listed, vec![sandbox.clone()]);

        // The server listens on the pod's loopback only: the client reaches it only if the two
        // containers share the sandbox's network namespace.
        let server = env.config(&sandbox.pod, "server", &["sh", "-c", SERVE_ON_LOOPBACK]);
        let server_id = env.run(&sandbox, &server).await;
        let client = env.config(&sandbox.pod, "client", &["sh", "-c", FETCH_FROM_LOOPBACK]);
        let client_id = env.run(&sandbox, &client).await;
        assert_eq!(env.wait_exited(&client_id).await, (0, "Completed".to_owned()));
        let fetched = env.logs(&client_id, LogOptions::default()).await;
        assert_eq!(fetched.trim(), "hello-from-server");

        let hostname = env.runtime.exec(&server_id, &strings(&["hostname"]), Duration::from_secs(10)).await;
        let hostname = hostname.expect("exec runs");
        assert_eq!((hostname.exit_code, String::from_utf8_lossy(&hostname.output).trim()), (0, "web"));
    })
    .await;
}

#[tokio::test]
async fn run_sandbox_is_idempotent_and_removal_is_final() {
    with_docker(
        "run_sandbox_is_idempotent_and_removal_is_final",
        "sandbox create or remove",
        |env| async move {
            let (pod, sandbox) = env.pod("again").await;
            let config = SandboxConfig {
                pod: pod.clone(),
                hostname: "again".to_owned(),
                labels: Default::default(),
                ports: Vec::new(),
            };
            let second = env.runtime.run_sandbox(&config).await.expect("the sandbox runs");
            assert_eq!(second, sandbox, "the running sandbox is returned, not duplicated");
            assert_eq!(env.runtime.sandboxes().await.expect("listed").len(), 1);

            // A stopped sandbox is replaced by a new one with a new IP namespace.
            env.docker.kill_container(&sandbox.id, None).await.expect("the sandbox is killed");
            let stopped = env.runtime.sandboxes().await.expect("listed");
            assert_eq!(stopped.len(), 1);
            assert!(!stopped[0].running && stopped[0].ip.is_none(), "{stopped:?}");
            let replaced = env.runtime.run_sandbox(&config).await.expect("the sandbox is replaced");
            assert_ne!(replaced.id, sandbox.id);
            assert!(replaced.running && replaced.ip.is_some());
            assert_eq!(env.runtime.sandboxes().await.expect("listed"), vec![replaced.clone()]);

            env.runtime.remove_sandbox(&replaced.id).await.expect("the sandbox is removed");
            assert!(env.runtime.sandboxes().await.expect("listed").is_empty());
            let again = env.runtime.remove_sandbox(&replaced.id).await.expect_err("it is gone");
            assert!(matches!(again, Error::NotFound { what: "sandbox", .. }), "{again:?}");
        },
    )
    .await;
}
