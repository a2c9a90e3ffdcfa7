//! The README's five-minute quickstart, end to end, with the real `kubectl` and Docker: build
//! two versions of a busybox web server image, deploy 3 replicas and a Service, reach every
//! replica through the ClusterIP and the NodePort, read the requests in `kubectl logs`, scale,
//! update the image, roll back, restart `flotilla up` and find everything intact, delete the
//! namespace and see every container gone from Docker.
//!
//! The commands are the README's (`curl` is an HTTP GET here); the test adds only flags that
//! isolate it (free ports, a node name of its own). Needs Docker: skipped with the reason
//! printed, or failed under `FLOTILLA_REQUIRE_DOCKER=1`. ClusterIPs need root (the proxy adds
//! them to an interface): without it they are skipped, said on stderr, and NodePorts checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_node::testing::{REQUIRE_DOCKER_ENV, docker_or_skip, remove_node_objects, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

use crate::{KUBECTL, Up, free_port, kubectl, start, stop, wait_for};

/// The quickstart's files.
const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/quickstart/Dockerfile");
const WEB_YAML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/quickstart/web.yaml");
/// The static busybox copied into the image.
const BUSYBOX: &str = "/bin/busybox";
/// The label the Docker runtime puts on everything it creates, naming the node.
const NODE_LABEL: &str = "flotilla.dev/node";
/// Everything, from the first build to the last container gone.
const WALK_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the service may take to answer as expected after a change.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The live (not terminating) pods: `name=image=phase ` each.
const LIVE_PODS: &str = "go-template={{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}=\
                         {{(index .spec.containers 0).image}}={{.status.phase}} {{end}}{{end}}";

fn required() -> bool {
    std::env::var(REQUIRE_DOCKER_ENV).is_ok_and(|v| v == "1")
}

/// Whether this process may add addresses (`CAP_NET_ADMIN`, bit 12 of `CapEff`).
fn privileged() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 12) != 0)
    })
}

/// Runs `program args`; its stdout, or an error with its stderr.
async fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    ensure!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn the_quickstart_serves_scales_updates_rolls_back_survives_a_restart_and_cleans_up() -> Result<()> {
    let Some(docker) = docker_or_skip("up e2e").await else { return Ok(()) };
    for (what, present) in [
        (KUBECTL, Path::new(KUBECTL).exists()),
        ("the docker CLI", run("docker", &["version", "--format", "{{.Client.Version}}"]).await.is_ok()),
        (BUSYBOX, Path::new(BUSYBOX).exists()),
    ] {
        if !present {
            ensure!(!required(), "up e2e: {what} is required ({REQUIRE_DOCKER_ENV}=1) but missing");
            eprintln!("skipping up e2e: {what} is missing");
            return Ok(());
        }
    }
    let node = unique_name("e2e");
    let walked = tokio::time::timeout(WALK_TIMEOUT, walk(&node)).await;
    // Whatever happened, leave no container of this node behind (none, when the walk passed).
    let left = remove_node_objects(&docker, &node).await;
    walked.with_context(|| format!("the quickstart did not finish within {WALK_TIMEOUT:?}"))??;
    ensure!(left? == 0, "containers of node {node} were left behind");
    Ok(())
}

async fn walk(node: &str) -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let home = home.path();

    // The images: FROM scratch around the static busybox, two versions.
    let context = tempfile::tempdir()?;
    std::fs::copy(BUSYBOX, context.path().join("busybox"))?;
    let context = context.path().to_str().context("context path")?;
    for v in ["1", "2"] {
        let tag = format!("flotilla-web:{v}");
        let arg = format!("VERSION={v}");
        run("docker", &["build", "-t", &tag, "--build-arg", &arg, "-f", DOCKERFILE, context]).await?;
    }

    let ports = [free_port()?, free_port()?, free_port()?];
    let kubelet = format!("127.0.0.1:{}", free_port()?);
    let cluster_ips = privileged();
    let mut flags = vec!["--runtime", "docker", "--node-name", node, "--kubelet-listen", &kubelet];
    if !cluster_ips {
        eprintln!("up e2e: not root, so ClusterIPs cannot be made local: --proxy on, NodePorts only");
        flags.extend(["--proxy", "on"]);
    }
    let up = start(dir.path(), &ports, &flags).await?;
    check_summary(&up, cluster_ips)?;
    let ready = ["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"];
    ensure!(wait_for(&up, home, &ready, |o| o == "True").await? == "True", "node {node} is not Ready");

    // Deploy, and reach every replica through both doors.
    let out = kubectl(&up, home, &["apply", "-f", WEB_YAML]).await?;
    ensure!(out.contains("deployment.apps/web created") && out.contains("service/web created"), "{out}");
    rollout(&up, home).await?;
    let pods = live_pods(&up, home, 3, "flotilla-web:1").await?;
    let cluster_ip =
        kubectl(&up, home, &["-n", "web", "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
            .await?;
    let node_port = kubectl(
        &up,
        home,
        &["-n", "web", "get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"],
    )
    .await?;
    let doors = doors(&cluster_ip, &node_port, cluster_ips);
    let mut served = BTreeMap::new();
    for door in &doors {
        answers(door, "v1", &pods, &mut served).await?;
    }

    // Each replica logged exactly the requests it answered (the readiness probe sends none).
    let all = kubectl(&up, home, &["-n", "web", "logs", "-l", "app=web", "--prefix"]).await?;
    for (pod, count) in &served {
        ensure!(all.contains(&format!("[pod/{pod}/web]")), "no log lines of {pod}:\n{all}");
        let own = kubectl(&up, home, &["-n", "web", "logs", pod]).await?;
        let requests = own.lines().filter(|l| l.ends_with(": url:/")).count();
        ensure!(requests == *count, "{pod} answered {count} requests but logged {requests}:\n{own}");
    }

    // Scale to 5.
    kubectl(&up, home, &["-n", "web", "scale", "deployment/web", "--replicas=5"]).await?;
    rollout(&up, home).await?;
    let pods = live_pods(&up, home, 5, "flotilla-web:1").await?;
    answers(doors.last().context("a door")?, "v1", &pods, &mut served).await?;

    // Restart flotilla up: nothing lost, running containers adopted, not restarted.
    let containers =
        ["-n", "web", "get", "pods", "-o", "jsonpath={.items[*].status.containerStatuses[0].containerID}"];
    let before = kubectl(&up, home, &containers).await?;
    stop(up).await?;
    if cluster_ips {
        let addresses = run("ip", &["-o", "addr", "show"]).await?;
        ensure!(
            !addresses.contains(&format!("inet {cluster_ip}/")),
            "a graceful stop releases the ClusterIP:\n{addresses}"
        );
    }
    let up = start(dir.path(), &ports, &flags).await?;
    check_summary(&up, cluster_ips)?;
    let replicas =
        ["-n", "web", "get", "deployment", "web", "-o", "jsonpath={.spec.replicas} {.status.readyReplicas}"];
    ensure!(
        wait_for(&up, home, &replicas, |o| o == "5 5").await? == "5 5",
        "the deployment after the restart"
    );
    ensure!(live_pods(&up, home, 5, "flotilla-web:1").await? == pods, "the same pods after the restart");
    ensure!(kubectl(&up, home, &containers).await? == before, "the same containers after the restart");
    for door in &doors {
        answers(door, "v1", &pods, &mut served).await?;
    }

    // Update the image, then roll back.
    kubectl(&up, home, &["-n", "web", "set", "image", "deployment/web", "web=flotilla-web:2"]).await?;
    rollout(&up, home).await?;
    let v2 = live_pods(&up, home, 5, "flotilla-web:2").await?;
    ensure!(v2.is_disjoint(&pods), "new pods for the new image: {v2:?} {pods:?}");
    answers(doors.last().context("a door")?, "v2", &v2, &mut served).await?;
    let out = kubectl(&up, home, &["-n", "web", "rollout", "undo", "deployment/web"]).await?;
    ensure!(out.contains("rolled back"), "{out}");
    rollout(&up, home).await?;
    let back = live_pods(&up, home, 5, "flotilla-web:1").await?;
    for door in &doors {
        answers(door, "v1", &back, &mut served).await?;
    }

    // Delete the namespace: every container of the node goes, and the ClusterIP with them.
    kubectl(&up, home, &["delete", "namespace", "web"]).await?;
    let label = format!("label={NODE_LABEL}={node}");
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let left = run("docker", &["ps", "-a", "-q", "--filter", &label]).await?;
        if left.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "containers of {node} left after deleting the namespace: {left}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if cluster_ips {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while run("ip", &["-o", "addr", "show"]).await?.contains(&format!("inet {cluster_ip}/")) {
            ensure!(Instant::now() < deadline, "the ClusterIP {cluster_ip} outlived its service");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop(up).await?;
    eprintln!("up e2e: the quickstart took {:?}", started.elapsed());
    Ok(())
}

/// The summary names the Docker runtime and the proxy's state.
fn check_summary(up: &Up, cluster_ips: bool) -> Result<()> {
    let line = |prefix: &str| up.summary.iter().find(|l| l.trim_start().starts_with(prefix)).cloned();
    let agent = line("node agent:").context("no node agent line")?;
    ensure!(agent.ends_with("docker runtime"), "{agent}");
    let proxy = line("proxy:").context("no proxy line")?;
    ensure!(proxy.contains("proxy:       on (") && proxy.contains("NodePorts on 127.0.0.1"), "{proxy}");
    ensure!(proxy.contains("ClusterIPs on ") == cluster_ips, "{proxy}");
    Ok(())
}

/// `kubectl -n web rollout status deployment/web`, successful.
async fn rollout(up: &Up, home: &Path) -> Result<()> {
    let out = kubectl(up, home, &["-n", "web", "rollout", "status", "deployment/web"]).await?;
    ensure!(out.contains("successfully rolled out"), "{out}");
    Ok(())
}

/// Waits until the deployment's live pods are `count`, all Running `image`; their names.
async fn live_pods(up: &Up, home: &Path, count: usize, image: &str) -> Result<BTreeSet<String>> {
    let args = ["-n", "web", "get", "pods", "-l", "app=web", "-o", LIVE_PODS];
    let want = |out: &str| {
        let pods: Vec<&str> = out.split_whitespace().collect();
        pods.len() == count && pods.iter().all(|p| p.ends_with(&format!("={image}=Running")))
    };
    let out = wait_for(up, home, &args, want).await?;
    ensure!(want(&out), "want {count} pods Running {image}, have {out:?}");
    Ok(out.split_whitespace().filter_map(|p| p.split('=').next()).map(str::to_string).collect())
}

/// The addresses to reach the service at: its ClusterIP (when it can be local) and its
/// NodePort on the node's address.
fn doors(cluster_ip: &str, node_port: &str, cluster_ips: bool) -> Vec<String> {
    let mut doors = Vec::new();
    if cluster_ips {
        doors.push(format!("{cluster_ip}:80"));
    }
    doors.push(format!("127.0.0.1:{node_port}"));
    doors
}

/// Fetches from `door` until one round of twice as many requests as pods was answered by
/// exactly `pods`, each page naming `version`. Counts every answer per pod in `served`.
async fn answers(
    door: &str,
    version: &str,
    pods: &BTreeSet<String>,
    served: &mut BTreeMap<String, usize>,
) -> Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let mut seen = BTreeSet::new();
        let mut last = String::new();
        for _ in 0..2 * pods.len() {
            match fetch(door).await {
                Ok(page) => {
                    if let Some(pod) = page.strip_prefix(&format!("{version} ")) {
                        *served.entry(pod.to_string()).or_default() += 1;
                        seen.insert(pod.to_string());
                    } else {
                        // Another version (still draining): counted by pod all the same.
                        if let Some((_, pod)) = page.split_once(' ') {
                            *served.entry(pod.to_string()).or_default() += 1;
                        }
                        seen.insert(page.clone());
                    }
                    last = page;
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        if seen == *pods {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{door}: want answers {version} from {pods:?}, got {seen:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `curl http://<door>/`: the page, trimmed.
async fn fetch(door: &str) -> Result<String> {
    let limit = Duration::from_secs(5);
    let mut stream = tokio::time::timeout(limit, tokio::net::TcpStream::connect(door))
        .await
        .with_context(|| format!("connecting to {door}"))??;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut response = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut response))
        .await
        .with_context(|| format!("reading from {door}"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("{door}: not HTTP: {text:?}"))?;
    ensure!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{door}: {head}");
    Ok(body.trim().to_string())
}
