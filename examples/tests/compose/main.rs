//! The multi-host cluster of `deploy/docker`: three servers and two agents, each a container
//! on a private Docker network, started by `deploy/docker/cluster.sh up` from this build's
//! binaries and driven from the host with the real `kubectl`.
//!
//! A Deployment with one replica per node (required anti-affinity) runs as processes inside
//! the agent containers; its NodePort answers from both agents' addresses with both
//! replicas, its ClusterIP answers inside an agent container (the agent's proxy), and
//! `kubectl logs` reaches each agent through the API server. Then the first server (the one
//! that created the cluster) is killed: the two others keep serving reads and writes and the
//! controllers act, the agent that talked to it fails over to another server (its pod,
//! deleted, is stopped and replaced), and once it is started again it serves what was
//! written while it was down.
//!
//! Needs Docker, `docker-compose`, `kubectl` and Debian's busybox-static: skipped with the
//! reason printed, or failed under `FLOTILLA_REQUIRE_DOCKER=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_node::testing::{REQUIRE_DOCKER_ENV, docker_or_skip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

const KUBECTL: &str = "/usr/bin/kubectl";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/docker/cluster.sh");
/// From `cluster.sh up` to `down`.
const TEST_TIMEOUT: Duration = Duration::from_secs(480);
/// How long one expected change may take to show.
/// Generous: an agent notices a server that vanished (no RST) by HTTP/2 keep-alive, within
/// 50 s, before it fails over.
const WAIT: Duration = Duration::from_secs(150);

/// The Deployment and its NodePort Service: each replica answers with its node's host name.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: busybox
        command: [/bin/sh, -c, 'mkdir -p www && hostname > www/index.html && echo "serving on $(hostname)" && exec httpd -f -p 8080 -h www']
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// A cluster of `cluster.sh`, taken down (containers, volumes, network) when dropped.
struct Cluster {
    project: String,
    net: String,
    state: tempfile::TempDir,
    home: tempfile::TempDir,
    bins: PathBuf,
}

impl Cluster {
    fn new() -> Result<Self> {
        let n = std::process::id() % 250 + 1;
        let bins = Path::new(env!("CARGO_BIN_EXE_flotilla")).parent().context("bin dir")?.to_path_buf();
        Ok(Self {
            project: format!("flotilla-test-{}", std::process::id()),
            net: format!("10.213.{n}"),
            state: tempfile::tempdir()?,
            home: tempfile::tempdir()?,
            bins,
        })
    }

    fn script(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(SCRIPT);
        cmd.args(args)
            .env("FLOTILLA_BIN_DIR", &self.bins)
            .env("FLOTILLA_PROJECT", &self.project)
            .env("FLOTILLA_NET", &self.net)
            .env("FLOTILLA_STATE", self.state.path())
            .env("FLOTILLA_TIMEOUT", "120")
            .env("HOME", self.home.path());
        cmd
    }

    /// `cluster.sh args`, its stdout, or an error with its stderr.
    async fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::from(self.script(args)).kill_on_drop(true).output().await?;
        ensure!(
            out.status.success(),
            "cluster.sh {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The address of server `i` (1-3) or agent `i` (21-22).
    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.net)
    }

    /// `kubectl args` against server `server` (1-3).
    async fn kubectl_at(&self, server: u8, args: &[&str]) -> Result<String> {
        let out = Command::new(KUBECTL)
            .arg(format!("--server=https://{}:6443", self.ip(10 + server)))
            .arg("--request-timeout=10s")
            .args(args)
            .env("KUBECONFIG", self.state.path().join("kubeconfig"))
            .env("HOME", self.home.path())
            .kill_on_drop(true)
            .output()
            .await?;
        ensure!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs `kubectl args` against `server` until `done` accepts its output; the last output
    /// or error after [`WAIT`].
    async fn wait_for(&self, server: u8, args: &[&str], done: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.kubectl_at(server, args).await;
            match out {
                Ok(ref text) if done(text) => return Ok(text.clone()),
                _ if Instant::now() >= deadline => {
                    bail!("kubectl {} never gave what was expected; last: {out:?}", args.join(" "))
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match self.script(&["down"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("cluster.sh down: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("cluster.sh down: {e}"),
        }
    }
}

/// One HTTP GET of `/` from `addr`; the body.
async fn get(addr: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("no end of headers")?;
    ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    Ok(body.trim().to_string())
}

/// GETs `/` from `addr` until both agents have answered (or [`WAIT`] passes).
async fn both_answer(addr: &str) -> Result<BTreeSet<String>> {
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeSet::new();
    let mut last = None;
    while seen.len() < 2 {
        if Instant::now() >= deadline {
            bail!("{addr}: only {seen:?} answered; last error: {last:?}");
        }
        match tokio::time::timeout(Duration::from_secs(5), get(addr)).await {
            Ok(Ok(body)) => {
                seen.insert(body);
            }
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some("timed out".into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(seen)
}

fn missing(what: &str) -> Result<()> {
    let required = std::env::var(REQUIRE_DOCKER_ENV).is_ok_and(|v| v == "1");
    ensure!(!required, "compose: {what} is required ({REQUIRE_DOCKER_ENV}=1) but missing");
    eprintln!("skipping compose: {what} is missing");
    Ok(())
}

#[tokio::test]
async fn three_servers_and_two_agents_on_a_docker_network_serve_and_survive_a_server_loss() -> Result<()> {
    if docker_or_skip("compose").await.is_none() {
        return Ok(());
    }
    for (what, present) in [
        (KUBECTL, Path::new(KUBECTL).exists()),
        ("/bin/busybox", Path::new("/bin/busybox").exists()),
        ("docker-compose", std::process::Command::new("docker-compose").arg("version").output().is_ok()),
    ] {
        if !present {
            return missing(what);
        }
    }
    let cluster = Cluster::new()?;
    tokio::time::timeout(TEST_TIMEOUT, walk(&cluster)).await.context("the walk timed out")?
}

async fn walk(c: &Cluster) -> Result<()> {
    // A cluster left by an earlier run of this process id would hold the network's addresses.
    c.run(&["down"]).await?;
    let out = c.run(&["up"]).await?;
    ensure!(
        out.ends_with(&format!("export KUBECONFIG={}", c.state.path().join("kubeconfig").display())),
        "{out}"
    );
    let nodes = c.kubectl_at(1, &["get", "nodes", "-o", "name"]).await?;
    assert_eq!(nodes, "node/agent-1\nnode/agent-2");
    let members = c
        .run(&["compose", "exec", "-T", "server-2", "/bin/flotilla", "member", "list", "--data-dir", "/data"])
        .await?;
    assert_eq!(members.matches("voter").count(), 3, "{members}");

    let manifest = c.home.path().join("web.yaml");
    std::fs::write(&manifest, WEB)?;
    c.kubectl_at(1, &["apply", "-f", manifest.to_str().context("path")?]).await?;
    c.wait_for(1, &["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"], |s| s == "2")
        .await?;
    let placed = c
        .kubectl_at(1, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"])
        .await?;
    let placed: BTreeSet<&str> = placed.split(' ').collect();
    assert_eq!(placed, BTreeSet::from(["agent-1", "agent-2"]));

    // The NodePort, on each agent's address, reaches both replicas.
    let port =
        c.kubectl_at(1, &["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]).await?;
    let want = BTreeSet::from(["agent-1".to_string(), "agent-2".to_string()]);
    for agent in [21, 22] {
        assert_eq!(both_answer(&format!("{}:{port}", c.ip(agent))).await?, want);
    }
    // The ClusterIP answers inside an agent's network namespace, from both replicas.
    let ip = c.kubectl_at(1, &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]).await?;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 2 && Instant::now() < deadline {
        let url = format!("http://{ip}/");
        // (busybox-static's `wget -T` crashes; the timeout is kept here instead.)
        let args = ["compose", "exec", "-T", "agent-2", "wget", "-q", "-O", "-", &url];
        let fetch = c.run(&args);
        if let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(10), fetch).await {
            seen.insert(body);
        }
    }
    assert_eq!(seen, want, "the ClusterIP {ip} inside agent-2");
    // kubectl logs goes API server -> agent, for the pod on each node.
    let pods = c.kubectl_at(2, &["get", "pods", "-l", "app=web", "-o", "name"]).await?;
    let mut logged = BTreeSet::new();
    for pod in pods.lines() {
        logged.insert(c.kubectl_at(2, &["logs", pod]).await?);
    }
    let want_logs = BTreeSet::from(["serving on agent-1".to_string(), "serving on agent-2".to_string()]);
    assert_eq!(logged, want_logs);

    // Lose the first server: the others elect a leader and go on serving.
    c.run(&["compose", "kill", "server-1"]).await?;
    // A linearizable read through server-2 answers once a leader is elected again.
    c.wait_for(2, &["get", "nodes", "-o", "name"], |s| s.lines().count() == 2).await?;
    c.kubectl_at(2, &["create", "configmap", "written-while-down", "--from-literal=a=1"]).await?;
    // Agent-1 talked to server-1. Its pod, deleted through server-3, is stopped and let go,
    // and the replacement the controllers (now led from server-2 or -3) create runs there:
    // agent-1 failed over to another server.
    let on_1 = r#"jsonpath={.items[?(@.spec.nodeName=="agent-1")].metadata.name}"#;
    let old = c.kubectl_at(3, &["get", "pods", "-l", "app=web", "-o", on_1]).await?;
    ensure!(!old.is_empty() && !old.contains(' '), "agent-1's pod: {old:?}");
    c.kubectl_at(3, &["delete", "pod", &old, "--wait=false"]).await?;
    let pods = "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}={.status.phase} {end}";
    let replaced = c
        .wait_for(3, &["get", "pods", "-l", "app=web", "-o", pods], |s| {
            !s.contains(&old) && s.contains("=agent-1=Running") && s.split_whitespace().count() == 2
        })
        .await?;
    assert!(replaced.contains("=agent-2=Running"), "{replaced}");
    let a = c.kubectl_at(3, &["get", "configmap", "written-while-down", "-o", "jsonpath={.data.a}"]).await?;
    assert_eq!(a, "1");
    // Back again, it catches up and serves what was written without it.
    c.run(&["compose", "start", "server-1"]).await?;
    let a = c
        .wait_for(1, &["get", "configmap", "written-while-down", "-o", "jsonpath={.data.a}"], |s| s == "1")
        .await?;
    assert_eq!(a, "1");
    c.wait_for(1, &["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"], |s| s == "2")
        .await?;
    c.wait_for(1, &["get", "nodes", "--no-headers"], |s| {
        s.lines().filter(|l| l.contains(" Ready ")).count() == 2
    })
    .await?;
    Ok(())
}
