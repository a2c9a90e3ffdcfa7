//! `flotilla server` clusters as processes on loopback addresses: three servers joined with
//! a token survive SIGKILL of the leader, a killed member catches up after a restart, a
//! member that lost its member file refuses to start on its own and re-joins with its old id; `flotilla status` and
//! `flotilla snapshot save|restore` against a running server. The commands are the ones
//! docs/operations.md shows.

mod member;
mod sa_key;
mod upgrade;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KUBECTL: &str = "/usr/bin/kubectl";
const FLOTILLA: &str = env!("CARGO_BIN_EXE_flotilla");

/// A free port on `ip` (bound and released).
fn free_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Where one server listens.
#[derive(Clone)]
struct Addrs {
    ip: String,
    api: u16,
    etcd: u16,
    raft: u16,
}

impl Addrs {
    fn new(ip: &str) -> Result<Self> {
        Ok(Addrs { ip: ip.into(), api: free_port(ip)?, etcd: free_port(ip)?, raft: free_port(ip)? })
    }

    fn raft(&self) -> String {
        format!("{}:{}", self.ip, self.raft)
    }
}

struct Server {
    child: Child,
    dir: PathBuf,
    addrs: Addrs,
}

impl Server {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

/// Starts `flotilla server` and waits for its `export KUBECONFIG=` line.
async fn start(dir: &Path, addrs: &Addrs, extra: &[&str]) -> Result<Server> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log"))?;
    let mut child = Command::new(FLOTILLA)
        .args(["server", "--data-dir"])
        .arg(dir)
        .args(["--api-listen", &format!("{}:{}", addrs.ip, addrs.api)])
        .args(["--etcd-listen", &format!("{}:{}", addrs.ip, addrs.etcd)])
        .args(["--raft-listen", &addrs.raft()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The server logs to stdout; keep its lines in the data directory.
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log"))?;
    let up = async {
        loop {
            let line = lines.next_line().await?;
            if let Some(l) = &line {
                writeln!(out, "{l}")?;
            }
            match line {
                Some(line) if line.starts_with("export KUBECONFIG=") => return Ok(()),
                Some(_) => {}
                None => anyhow::bail!("flotilla server in {} exited before it was up", dir.display()),
            }
        }
    };
    step(START_SECS, &format!("starting the server in {}", dir.display()), up).await?;
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if writeln!(out, "{l}").is_err() {
                break;
            }
        }
    });
    Ok(Server { child, dir: dir.to_path_buf(), addrs: addrs.clone() })
}

/// Three servers on 127.0.0.1-3 under `root` (`s1`, `s2`, `s3`): the first starts a cluster,
/// the others join it with a server token, which is returned with them.
async fn three_servers(root: &Path) -> Result<([Server; 3], String)> {
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.join(format!("s{i}"))).collect();
    let addrs = [Addrs::new("127.0.0.1")?, Addrs::new("127.0.0.2")?, Addrs::new("127.0.0.3")?];
    let s1 = start(&dirs[0], &addrs[0], &[]).await?;
    let token = flotilla(&["token", "server", "--data-dir", path(&dirs[0])?]).await?;
    let seed = addrs[0].raft();
    let join = ["--join", seed.as_str(), "--token", token.as_str()];
    let s2 = start(&dirs[1], &addrs[1], &join).await?;
    let s3 = start(&dirs[2], &addrs[2], &join).await?;
    Ok(([s1, s2, s3], token))
}

/// Sends `signal` to the server and waits for it to exit.
async fn kill(server: &mut Server, signal: &str) -> Result<()> {
    let pid = server.child.id().context("no pid")?;
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().await?;
    anyhow::ensure!(status.success(), "kill {signal} failed");
    let what = format!("the server in {} exiting after kill {signal}", server.dir.display());
    step(EXIT_SECS, &what, async { Ok(server.child.wait().await?) }).await?;
    Ok(())
}

/// How long a server may take to print its kubeconfig line.
const START_SECS: u64 = 120;
/// How long a server may take to exit after a signal (its drain is bounded well below this).
const EXIT_SECS: u64 = 60;
/// How long one `kubectl` or `flotilla` command may run.
const COMMAND_SECS: u64 = 60;

/// `fut`, failing with a message naming `what` if it runs past `secs` seconds: a hang
/// reports the step it hung in, not only the test's outer timeout.
async fn step<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: no result within {secs} s"))?
}

/// A test's scenario, failing if it runs past `secs` seconds; a failure carries the last
/// lines of every server log under `root`.
async fn scenario(root: &Path, secs: u64, fut: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    step(secs, "the scenario", fut).await.with_context(|| format!("server logs:{}", server_logs(root)))
}

/// The last lines of every `server.log` under `root`, for a failure message.
fn server_logs(root: &Path) -> String {
    let mut out = String::new();
    let Ok(dirs) = std::fs::read_dir(root) else { return out };
    let mut dirs: Vec<PathBuf> = dirs.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for d in dirs {
        let Ok(log) = std::fs::read_to_string(d.join("server.log")) else { continue };
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        out.push_str(&format!("\n--- {} (last {} lines)\n{}\n", d.display(), tail.len(), tail.join("\n")));
    }
    out
}

async fn run(program: &str, args: &[&str], envs: &[(&str, &Path)]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    let out = step(COMMAND_SECS, &format!("{program} {args:?}"), async { Ok(cmd.output().await?) }).await?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

async fn kubectl(server: &Server, home: &Path, args: &[&str]) -> Result<String> {
    run(KUBECTL, args, &[("KUBECONFIG", &server.kubeconfig()), ("HOME", home)]).await
}

async fn flotilla(args: &[&str]) -> Result<String> {
    run(FLOTILLA, args, &[]).await
}

#[derive(Debug, Deserialize)]
struct Member {
    id: u64,
    address: String,
    voter: bool,
    client_url: Option<String>,
    applied_index: Option<u64>,
    raft_term: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct NodeRow {
    name: String,
    ready: bool,
}

#[derive(Debug, Deserialize)]
struct Status {
    member: u64,
    leader: Option<u64>,
    raft_term: u64,
    applied_index: u64,
    members: Vec<Member>,
    nodes: Option<Vec<NodeRow>>,
}

async fn status(dir: &Path) -> Result<Status> {
    let out = flotilla(&["status", "--data-dir", path(dir)?, "--output", "json"]).await?;
    serde_json::from_str(&out).with_context(|| format!("status output: {out}"))
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Polls `f` until it returns `Ok(Some(_))`, for up to `secs` seconds; the last error says why not.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => format!("{e:#}"),
        };
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{what}: gave up after {secs} s: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates configmap `name` with `key=value` through `server`, retrying through an election
/// (an attempt that was applied but timed out makes the retry find it existing).
async fn create_configmap(server: &Server, home: &Path, name: &str, kv: &str) -> Result<()> {
    let (k, v) = kv.split_once('=').context("key=value")?;
    let file = home.join(format!("{name}.yaml"));
    let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {k}: \"{v}\"\n");
    std::fs::write(&file, yaml)?;
    let file = path(&file)?;
    eventually(30, &format!("creating configmap {name}"), || async {
        match kubectl(server, home, &["create", "-f", file]).await {
            Ok(_) => Ok(Some(())),
            Err(e) if format!("{e}").contains("AlreadyExists") => Ok(Some(())),
            Err(e) => Err(e),
        }
    })
    .await
}

async fn configmap_value(server: &Server, home: &Path, name: &str, key: &str) -> Result<String> {
    kubectl(server, home, &["get", "configmap", name, "-o", &format!("jsonpath={{.data.{key}}}")]).await
}

fn have_kubectl() -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    eprintln!("skipping: {KUBECTL} is not installed");
    false
}

#[tokio::test]
async fn three_servers_survive_losing_the_leader() -> Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    scenario(root.path(), 300, async {
        let (mut servers, token) = three_servers(root.path()).await?;
        assert!(token.starts_with("F10") && token.contains("::server:"), "{token}");
        let seed = servers[0].addrs.raft();
        let join = ["--join", seed.as_str(), "--token", token.as_str()];
        let dirs: Vec<PathBuf> = servers.iter().map(|s| s.dir.clone()).collect();
        let addrs: Vec<Addrs> = servers.iter().map(|s| s.addrs.clone()).collect();

        // Three voters; every server serves with the one cluster CA.
        let st = status(&dirs[0]).await?;
        assert_eq!(st.members.len(), 3, "{st:?}");
        assert!(st.members.iter().all(|m| m.voter), "{st:?}");
        for (m, a) in st.members.iter().zip(&addrs) {
            assert_eq!(m.address, a.raft(), "{st:?}");
            // Each member's own progress, asked of it at the etcd endpoint the list gives.
            let etcd = format!("http://{}:{}", a.ip, a.etcd);
            assert_eq!(m.client_url.as_deref(), Some(etcd.as_str()), "{st:?}");
            assert!(m.applied_index.is_some_and(|i| i > 0) && m.raft_term.is_some_and(|t| t > 0), "{st:?}");
        }
        let ca = std::fs::read(dirs[0].join("pki/ca.crt"))?;
        for d in &dirs[1..] {
            assert_eq!(std::fs::read(d.join("pki/ca.crt"))?, ca, "{} has the cluster CA", d.display());
        }

        // A write through one API server is read through the others.
        create_configmap(&servers[0], home.path(), "before", "a=1").await?;
        for s in &servers[1..] {
            assert_eq!(configmap_value(s, home.path(), "before", "a").await?, "1");
        }

        // SIGKILL the leader; a surviving server takes writes.
        let leader = st.leader.context("no leader")?;
        let li = st.members.iter().position(|m| m.id == leader).context("leader not a member")?;
        kill(&mut servers[li], "-KILL").await?;
        let killed_at = tokio::time::Instant::now();
        let si = (li + 1) % 3;
        create_configmap(&servers[si], home.path(), "after", "b=2").await?;
        eprintln!(
            "a write through a survivor succeeded {:?} after SIGKILL of the leader",
            killed_at.elapsed()
        );
        let survivor = eventually(30, "a new leader", || async {
            let st = status(&servers[si].dir).await?;
            Ok(st.leader.filter(|l| *l != leader).map(|_| st))
        })
        .await?;
        assert!(survivor.raft_term > st.raft_term, "a new term: {survivor:?} after {st:?}");

        // The killed member restarts on its data directory (no --join) and catches up.
        let dir = servers[li].dir.clone();
        let a = servers[li].addrs.clone();
        servers[li] = start(&dir, &a, &[]).await?;
        assert_eq!(configmap_value(&servers[li], home.path(), "after", "b").await?, "2");
        let target = survivor.applied_index;
        let back = eventually(30, "the restarted member catching up", || async {
            let st = status(&dir).await?;
            Ok((st.applied_index >= target).then_some(st))
        })
        .await?;
        assert_eq!(back.member, leader, "{back:?}");

        // A joined member restarts on its data directory without joining again (the --join
        // flags are ignored once it is a voter).
        let ji = if li == 1 { 2 } else { 1 };
        let jid = status(&servers[ji].dir).await?.member;
        kill(&mut servers[ji], "-TERM").await?;
        let (dir, a) = (servers[ji].dir.clone(), servers[ji].addrs.clone());
        servers[ji] = start(&dir, &a, &join).await?;
        let st = status(&dir).await?;
        assert_eq!((st.member, st.members.len()), (jid, 3), "{st:?}");
        assert_eq!(configmap_value(&servers[ji], home.path(), "after", "b").await?, "2");
        let log = std::fs::read_to_string(dir.join("server.log"))?;
        assert!(log.contains("--join is ignored"), "the restart did not re-join:\n{log}");

        // A member whose member file was lost (a crash mid-join) joins again with its old id.
        let ri = (li + 2) % 3;
        let rid = status(&servers[ri].dir).await?.member;
        kill(&mut servers[ri], "-KILL").await?;
        std::fs::remove_file(servers[ri].dir.join("member.json"))?;
        // Without --join it would start as member 1 of a new cluster on member rid's data: it
        // refuses, and says how to rejoin.
        let (dir, a) = (servers[ri].dir.clone(), servers[ri].addrs.clone());
        let refused = start(&dir, &a, &[]).await;
        anyhow::ensure!(refused.is_err(), "a server with another member's data started as member 1");
        let log = std::fs::read_to_string(dir.join("server.log"))?;
        anyhow::ensure!(
            log.contains(&format!("holds the data of member {rid}, not of member 1"))
                && log.contains("--join"),
            "the refusal does not say why or how to rejoin:\n{log}"
        );
        let other = servers[(ri + 1) % 3].addrs.raft();
        let rejoin = ["--join", other.as_str(), "--token", token.as_str()];
        let (dir, a) = (servers[ri].dir.clone(), servers[ri].addrs.clone());
        servers[ri] = start(&dir, &a, &rejoin).await?;
        let st = status(&dir).await?;
        assert_eq!(st.member, rid, "{st:?}");
        assert_eq!(st.members.len(), 3, "no new member: {st:?}");
        assert!(st.members.iter().all(|m| m.voter), "{st:?}");
        assert_eq!(configmap_value(&servers[ri], home.path(), "before", "a").await?, "1");

        for s in &mut servers {
            kill(s, "-TERM").await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn status_and_snapshot_restore_into_a_new_cluster() -> Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    scenario(root.path(), 180, async {
        let (old, new) = (root.path().join("old"), root.path().join("new"));
        let mut s = start(&old, &Addrs::new("127.0.0.1")?, &[]).await?;

        create_configmap(&s, home.path(), "kept", "a=1").await?;
        let node = home.path().join("node.yaml");
        std::fs::write(&node, "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n")?;
        kubectl(&s, home.path(), &["create", "-f", path(&node)?]).await?;
        let st = status(&old).await?;
        assert_eq!(st.members.len(), 1, "{st:?}");
        assert_eq!((st.member, st.leader), (1, Some(1)), "{st:?}");
        assert!(st.members[0].voter && st.raft_term >= 1 && st.applied_index > 0, "{st:?}");
        let nodes = st.nodes.context("nodes listed")?;
        assert!(nodes.iter().any(|n| n.name == "n1" && !n.ready), "{nodes:?}");
        let ready = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}]}}"#;
        kubectl(
            &s,
            home.path(),
            &["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", ready],
        )
        .await?;
        let st = status(&old).await?;
        assert!(st.nodes.unwrap_or_default().iter().any(|n| n.name == "n1" && n.ready), "n1 is Ready");
        let text = flotilla(&["status", "--data-dir", path(&old)?]).await?;
        assert!(text.contains("voter (leader)") && text.contains("n1"), "{text}");

        // The same through the etcd endpoint of any member, with an explicit kubeconfig.
        let endpoints: serde_json::Value =
            serde_json::from_slice(&std::fs::read(old.join("endpoints.json"))?)?;
        let etcd = endpoints["etcd"].as_str().context("etcd endpoint")?;
        let kubeconfig = s.kubeconfig();
        let args = ["status", "--server", etcd, "--kubeconfig", path(&kubeconfig)?, "--output", "json"];
        let st: Status = serde_json::from_str(&flotilla(&args).await?)?;
        assert_eq!(st.leader, Some(1), "{st:?}");
        assert!(st.nodes.unwrap_or_default().iter().any(|n| n.name == "n1"), "nodes listed");
        let by_server = root.path().join("by-server.db");
        flotilla(&["snapshot", "save", path(&by_server)?, "--server", etcd]).await?;

        let file = root.path().join("backup.db");
        let out = flotilla(&["snapshot", "save", path(&file)?, "--data-dir", path(&old)?]).await?;
        assert!(out.starts_with("saved snapshot"), "{out}");
        kill(&mut s, "-TERM").await?;

        let out = flotilla(&["snapshot", "restore", path(&file)?, "--data-dir", path(&new)?]).await?;
        assert!(out.starts_with("restored revision"), "{out}");
        let again = flotilla(&["snapshot", "restore", path(&file)?, "--data-dir", path(&new)?]).await;
        assert!(again.is_err(), "restoring over an existing store is refused");

        let mut s = start(&new, &Addrs::new("127.0.0.1")?, &[]).await?;
        assert_eq!(configmap_value(&s, home.path(), "kept", "a").await?, "1");
        create_configmap(&s, home.path(), "fresh", "b=2").await?;
        let st = status(&new).await?;
        assert_eq!((st.member, st.members.len()), (1, 1), "a new one-member cluster: {st:?}");
        // The restored cluster has its own CA and token.
        assert_ne!(std::fs::read(old.join("pki/ca.crt"))?, std::fs::read(new.join("pki/ca.crt"))?);
        kill(&mut s, "-TERM").await?;
        Ok(())
    })
    .await
}
