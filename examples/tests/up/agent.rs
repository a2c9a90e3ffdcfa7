//! `flotilla up` with its node agent on the process runtime: a pod scheduled to the node runs,
//! `kubectl logs` reads its output through the API server and the agent's endpoint (mutual
//! TLS), `kubectl get --raw .../nodes/<node>/proxy/metrics` reads the agent's metrics the same
//! way, and deleting the pod stops its process.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{KUBECTL, free_port, kubectl, start, stop, wait_for};

#[tokio::test]
async fn up_runs_pods_on_its_node_and_serves_their_logs() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    tokio::time::timeout(Duration::from_secs(180), async {
        let dir = tempfile::tempdir()?;
        let home = tempfile::tempdir()?;
        let ports = [free_port()?, free_port()?, free_port()?];
        let kubelet = format!("127.0.0.1:{}", free_port()?);
        // No proxy: another test's proxy may own service addresses on this machine.
        let flags =
            ["--runtime", "process", "--proxy", "off", "--node-name", "up-node", "--kubelet-listen", &kubelet];
        let up = start(dir.path(), &ports, &flags).await?;
        let ready = ["get", "node", "up-node", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"];
        let status = wait_for(&up, home.path(), &ready, |o| o == "True").await?;
        assert_eq!(status, "True", "the agent registered its node, Ready");

        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: busybox\n    command: [\"/bin/sh\", \"-c\", \"echo hello from $HOSTNAME_GREETING; exec sleep 600\"]\n    env:\n    - name: HOSTNAME_GREETING\n      value: flotilla\n";
        let path = home.path().join("pod.yaml");
        std::fs::write(&path, pod)?;
        kubectl(&up, home.path(), &["apply", "-f", path.to_str().context("path")?]).await?;
        let phase = ["get", "pod", "hello", "-o", "jsonpath={.status.phase} {.spec.nodeName}"];
        let running = wait_for(&up, home.path(), &phase, |o| o == "Running up-node").await?;
        assert_eq!(running, "Running up-node");
        let metrics = ["get", "--raw", "/api/v1/nodes/up-node/proxy/metrics"];
        let scraped = wait_for(&up, home.path(), &metrics, |o| o.lines().any(|l| l == "kubelet_running_pods 1")).await?;
        assert!(scraped.lines().any(|l| l == "kubelet_running_pods 1"), "one running pod:\n{scraped}");
        assert!(
            scraped.lines().any(|l| l.starts_with("kubelet_runtime_operations_total{operation_type=\"start_container\"}")),
            "the agent's metrics through the API server's node proxy:\n{scraped}"
        );
        let logs = wait_for(&up, home.path(), &["logs", "hello"], |o| !o.is_empty()).await?;
        assert_eq!(logs, "hello from flotilla", "kubectl logs through the agent's endpoint");

        kubectl(&up, home.path(), &["delete", "pod", "hello", "--wait=false"]).await?;
        let pods = ["get", "pods", "-o", "name"];
        let left = wait_for(&up, home.path(), &pods, str::is_empty).await?;
        assert_eq!(left, "", "the agent stopped the container and finished the deletion");
        stop(up).await
    })
    .await
    .context("flotilla up with a node agent: timed out")?
}
