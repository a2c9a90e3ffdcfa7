//! `flotilla up` end to end: start, drive with kubectl, stop with SIGTERM, restart and find
//! everything intact.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KUBECTL: &str = "/usr/bin/kubectl";
/// Pods stay on their (fake) nodes: no agent runs them.
const NO_AGENT: &[&str] = &["--runtime", "none"];

mod agent;
mod e2e;

/// A free loopback port (bound and released; the race with other processes is harmless here).
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) struct Up {
    child: Child,
    kubeconfig: String,
    /// The startup summary: the lines printed before the `export KUBECONFIG=` line.
    summary: Vec<String>,
}

/// `flotilla up` with `extra` flags (the node agent's, usually).
pub(crate) async fn start(dir: &Path, ports: &[u16; 3], extra: &[&str]) -> Result<Up> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(extra)
        .args(["--api-listen", &format!("127.0.0.1:{}", ports[0])])
        .args(["--etcd-listen", &format!("127.0.0.1:{}", ports[1])])
        .args(["--raft-listen", &format!("127.0.0.1:{}", ports[2])])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting flotilla up")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut summary = Vec::new();
    loop {
        let line = lines.next_line().await?.with_context(|| {
            format!("flotilla up exited before printing its kubeconfig, after: {summary:?}")
        })?;
        if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(Up { child, kubeconfig: path.to_string(), summary });
        }
        summary.push(line);
    }
}

pub(crate) async fn kubectl(up: &Up, home: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(KUBECTL)
        .args(args)
        .env("KUBECONFIG", &up.kubeconfig)
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// How long [`wait_for`] polls: generous, since CI runs tests in parallel on two cores.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `kubectl args` until `done` accepts its output (or [`WAIT`] passes); the last output.
pub(crate) async fn wait_for(
    up: &Up,
    home: &Path,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = kubectl(up, home, args).await?;
        if done(&out) || tokio::time::Instant::now() >= deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn stop(mut up: Up) -> Result<()> {
    let pid = up.child.id().context("no pid")?;
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let exit = up.child.wait().await?;
    anyhow::ensure!(exit.success(), "flotilla up exited with {exit} after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn up_serves_kubectl_and_resumes_after_restart() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    tokio::time::timeout(Duration::from_secs(180), async {
        let dir = tempfile::tempdir()?;
        let home = tempfile::tempdir()?;
        let ports = [free_port()?, free_port()?, free_port()?];
        let up = start(dir.path(), &ports, NO_AGENT).await?;
        let proxy = up.summary.iter().find(|l| l.contains("proxy:")).cloned().unwrap_or_default();
        assert!(proxy.ends_with("proxy:       off: no node agent runs pods here (--runtime none); --proxy on starts it anyway"), "{proxy}");
        let ns = kubectl(&up, home.path(), &["get", "namespaces", "-o", "name"]).await?;
        for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(&format!("namespace/{want}")), "{ns}");
        }
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  a: \"1\"\n";
        let path = home.path().join("cm.yaml");
        std::fs::write(&path, cm)?;
        let out = kubectl(&up, home.path(), &["apply", "-f", path.to_str().context("path")?]).await?;
        assert_eq!(out, "configmap/kept created");

        // The scheduler binds a pod to a node that fits it.
        let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n";
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        for (name, text) in [("node.yaml", node), ("pod.yaml", pod)] {
            let path = home.path().join(name);
            std::fs::write(&path, text)?;
            kubectl(&up, home.path(), &["create", "-f", path.to_str().context("path")?]).await?;
            if name == "node.yaml" {
                // A node's status is its own subresource (a node agent reports it).
                let status = r#"{"status":{"allocatable":{"cpu":"2","memory":"4Gi","pods":"10"}}}"#;
                let args = ["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", status];
                kubectl(&up, home.path(), &args).await?;
            }
        }
        let mut bound = String::new();
        for _ in 0..200 {
            bound = kubectl(&up, home.path(), &["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]).await?;
            if !bound.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(bound, "n1", "the scheduler did not bind the pod");

        // The controllers: a Deployment makes a ReplicaSet and its pods (bound by the
        // scheduler), a Service gets a cluster IP, and deleting the Deployment collects both.
        let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  \
                      selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
                      app: web\n    spec:\n      containers:\n      - name: c\n        image: busybox\n---\n\
                      apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  \
                      ports:\n  - port: 80\n";
        let path = home.path().join("web.yaml");
        std::fs::write(&path, deploy)?;
        kubectl(&up, home.path(), &["apply", "-f", path.to_str().context("path")?]).await?;
        let nodes_of_web = ["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"];
        let placed = wait_for(&up, home.path(), &nodes_of_web, |out| out == "n1 n1").await?;
        assert_eq!(placed, "n1 n1", "two pods of the deployment, bound");
        let rs = kubectl(&up, home.path(), &["get", "rs", "-l", "app=web", "-o", "name"]).await?;
        assert!(rs.starts_with("replicaset.apps/web-"), "{rs}");
        let ip = kubectl(&up, home.path(), &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]).await?;
        assert!(ip.starts_with("10.") && ip.parse::<std::net::Ipv4Addr>().is_ok(), "cluster IP {ip:?}");
        // Three pods bound so far: p and the deployment's two.
        let scheduled = r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 3"#;
        let raw_metrics = ["get", "--raw", "/metrics"];
        let metrics = wait_for(&up, home.path(), &raw_metrics, |m| m.lines().any(|l| l == scheduled)).await?;
        assert!(metrics.lines().any(|l| l == scheduled), "the API server serves the scheduler's metrics:\n{metrics}");
        let reconciled = r#"flotilla_controller_reconciles_total{controller="deployment-controller",result="success"}"#;
        assert!(metrics.contains(reconciled), "the API server serves the controllers' metrics:\n{metrics}");
        kubectl(&up, home.path(), &["delete", "deployment", "web"]).await?;
        let rs_of_web = ["get", "rs", "-l", "app=web", "-o", "name"];
        let left = wait_for(&up, home.path(), &rs_of_web, str::is_empty).await?;
        assert_eq!(left, "", "the garbage collector removes the ReplicaSet");
        // Bound pods terminate gracefully: with no node agent here they stay Terminating.
        let deleting = ["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.deletionTimestamp}"];
        let marked = wait_for(&up, home.path(), &deleting, |o| o.split_whitespace().count() == 2).await?;
        assert_eq!(marked.split_whitespace().count(), 2, "both pods are being deleted: {marked:?}");
        stop(up).await?;

        let up = start(dir.path(), &ports, NO_AGENT).await?;
        let a = kubectl(&up, home.path(), &["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]).await?;
        assert_eq!(a, "1");
        stop(up).await?;
        anyhow::Ok(())
    })
    .await
    .context("timed out: flotilla up did not start, serve or stop")?
}
