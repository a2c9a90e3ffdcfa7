//! The clusters under test: three Flotilla store members (this binary's `member`
//! subcommand) or three etcd members, each a child process on loopback, started on fresh data
//! directories and stopped with SIGTERM (SIGKILL after a grace period); and the members' CPU
//! time and peak memory, read from `/proc/<pid>`.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use etcd_client::{Client, ConnectOptions};
use flotilla_benches::process::{cpu_secs_of, peak_rss_kib_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Members per cluster.
pub(crate) const MEMBERS: usize = 3;
/// How long a new cluster may take until every member answers and a leader exists.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long one readiness probe of one member may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between rounds of readiness probes.
const PROBE_PAUSE: Duration = Duration::from_millis(200);
/// How long a member may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Lines of a member's log printed when it fails.
const LOG_TAIL_LINES: usize = 30;

/// Which store a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum System {
    /// Three bare Flotilla store members (raft over RocksDB, etcd v3 API).
    Flotilla,
    /// Three etcd members.
    Etcd,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Flotilla => "flotilla",
            System::Etcd => "etcd",
        })
    }
}

/// One member process.
struct Member {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

/// A running three-member cluster. Dropping it kills the members (`kill_on_drop`); call
/// [`stop`](Cluster::stop) to stop them gracefully.
pub(crate) struct Cluster {
    system: System,
    members: Vec<Member>,
    endpoints: Vec<String>,
}

/// `n` distinct free loopback ports: all are bound at once (so none repeats), then released.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding loopback ports to find free ones")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl Cluster {
    /// Starts a fresh cluster of `system` with its data and logs under `dir` (which must
    /// not exist yet) and waits until every member answers and a leader exists.
    pub(crate) async fn start(system: System, etcd_bin: &Path, dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = free_ports(2 * MEMBERS)?;
        let (client_ports, peer_ports) = ports.split_at(MEMBERS);
        let endpoints = client_ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        let mut cluster = Cluster { system, members: Vec::new(), endpoints };
        for i in 0..MEMBERS {
            let name = format!("m{}", i + 1);
            let log = dir.join(format!("{name}.log"));
            let mut cmd = match system {
                System::Flotilla => flotilla_command(i, dir, client_ports, peer_ports)?,
                System::Etcd => etcd_command(etcd_bin, i, dir, client_ports, peer_ports),
            };
            let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).kill_on_drop(true);
            // Its own process group: a terminal's Ctrl-C reaches only the harness, which then
            // stops the members in order.
            cmd.process_group(0);
            let child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    cluster.stop().await;
                    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
                    return Err(e).with_context(|| format!("starting {system} member {name} ({program})"));
                }
            };
            let pid = child.id().context("a just-spawned child has a pid")?;
            cluster.members.push(Member { name, child, pid, log });
        }
        if let Err(e) = cluster.wait_ready().await {
            for m in &cluster.members {
                eprintln!("--- last lines of {} ({}) ---\n{}", m.name, m.log.display(), log_tail(&m.log));
            }
            cluster.stop().await;
            return Err(e.context(format!("starting the {system} cluster")));
        }
        Ok(cluster)
    }

    /// The members' etcd v3 client endpoints (`http://127.0.0.1:port`), member 1 first.
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Polls every member until all answer a status request and a linearizable get, and
    /// agree on one leader; fails after [`READY_DEADLINE`] or when a member exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            for m in &mut self.members {
                if let Some(status) = m.child.try_wait()? {
                    anyhow::bail!("member {} exited during startup ({status})", m.name);
                }
            }
            let results = futures::future::join_all(self.endpoints.iter().map(|ep| probe(ep))).await;
            let mut leaders = Vec::new();
            let mut problems = Vec::new();
            for (m, r) in self.members.iter().zip(results) {
                match r {
                    Ok(0) => problems.push(format!("{} knows no leader", m.name)),
                    Ok(leader) => leaders.push(leader),
                    Err(e) => problems.push(format!("{}: {e:#}", m.name)),
                }
            }
            leaders.sort_unstable();
            leaders.dedup();
            if problems.is_empty() && leaders.len() == 1 {
                return Ok(());
            }
            if leaders.len() > 1 {
                problems.push(format!("members name different leaders {leaders:?}"));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} members not ready within {READY_DEADLINE:?}: {}",
                self.system,
                problems.join("; ")
            );
            tokio::time::sleep(PROBE_PAUSE).await;
        }
    }

    /// CPU seconds (user + system) the members have used so far.
    pub(crate) fn cpu_secs(&self) -> f64 {
        self.members.iter().filter_map(|m| cpu_secs_of(m.pid)).sum()
    }

    /// The sum of the members' peak resident sets (`VmHWM`), in MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        self.members.iter().filter_map(|m| peak_rss_kib_of(m.pid)).sum::<u64>() as f64 / 1024.0
    }

    /// Sends every member SIGTERM, waits up to [`STOP_GRACE`] for each, then kills the rest.
    pub(crate) async fn stop(mut self) {
        for m in &self.members {
            if let Ok(pid) = i32::try_from(m.pid) {
                // Fails only when the member has exited already, which is what we want.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for m in &mut self.members {
            match tokio::time::timeout_at(deadline, m.child.wait()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("waiting for {} member {}: {e}", self.system, m.name),
                Err(_) => {
                    eprintln!(
                        "{} member {} still running {STOP_GRACE:?} after SIGTERM; killing it",
                        self.system, m.name
                    );
                    if let Err(e) = m.child.kill().await {
                        eprintln!("killing {} member {}: {e}", self.system, m.name);
                    }
                }
            }
        }
    }
}

/// One readiness probe of one endpoint: a status request and a linearizable get, each
/// bounded by [`PROBE_TIMEOUT`]; the leader the member names (0 for none).
async fn probe(endpoint: &str) -> anyhow::Result<u64> {
    let attempt = async {
        let opts = ConnectOptions::new().with_connect_timeout(PROBE_TIMEOUT);
        let mut client = Client::connect([endpoint], Some(opts)).await?;
        let status = client.status().await?;
        client.get("/bench/ready-probe", None).await?;
        anyhow::Ok(status.leader())
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt).await.context("probe timed out")?
}

/// The command line of Flotilla member `i` (0-based): this binary's `member` subcommand;
/// member 1 bootstraps the cluster.
fn flotilla_command(
    i: usize,
    dir: &Path,
    client_ports: &[u16],
    peer_ports: &[u16],
) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding this binary to start flotilla members")?;
    let mut cmd = Command::new(exe);
    cmd.arg("member")
        .arg("--id")
        .arg((i + 1).to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("m{}", i + 1)))
        .arg("--raft-listen")
        .arg(format!("127.0.0.1:{}", peer_ports[i]))
        .arg("--etcd-listen")
        .arg(format!("127.0.0.1:{}", client_ports[i]));
    if i == 0 {
        let voters: Vec<String> =
            peer_ports.iter().enumerate().map(|(j, p)| format!("{}=127.0.0.1:{p}", j + 1)).collect();
        cmd.arg("--initialize").arg(voters.join(","));
    }
    Ok(cmd)
}

/// The command line of etcd member `i` (0-based), with etcd's defaults otherwise (fsync on).
fn etcd_command(etcd_bin: &Path, i: usize, dir: &Path, client_ports: &[u16], peer_ports: &[u16]) -> Command {
    let peer = |j: usize| format!("http://127.0.0.1:{}", peer_ports[j]);
    let client = format!("http://127.0.0.1:{}", client_ports[i]);
    let initial: Vec<String> = (0..MEMBERS).map(|j| format!("m{}={}", j + 1, peer(j))).collect();
    let mut cmd = Command::new(etcd_bin);
    cmd.arg("--name")
        .arg(format!("m{}", i + 1))
        .arg("--data-dir")
        .arg(dir.join(format!("m{}", i + 1)))
        .arg("--listen-client-urls")
        .arg(&client)
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(peer(i))
        .arg("--initial-advertise-peer-urls")
        .arg(peer(i))
        .arg("--initial-cluster")
        .arg(initial.join(","))
        .arg("--initial-cluster-token")
        .arg("bench")
        .arg("--initial-cluster-state")
        .arg("new");
    cmd
}

/// The last [`LOG_TAIL_LINES`] lines of a member's log.
fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// The voters (member id to raft address) of an `--initialize` list `id=addr,id=addr,...`.
pub(crate) fn parse_voters(list: &str) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
    list.split(',')
        .map(|pair| {
            let (id, addr) = pair.split_once('=').with_context(|| format!("`{pair}` is not id=address"))?;
            let id: u64 = id.trim().parse().with_context(|| format!("bad member id in `{pair}`"))?;
            let addr: SocketAddr = addr.trim().parse().with_context(|| format!("bad address in `{pair}`"))?;
            Ok((id, addr.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_bad_ones_are_named() {
        let v = parse_voters("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=127.0.0.1:7003").expect("valid list");
        assert_eq!(v.len(), 3);
        assert_eq!(v[&2], "127.0.0.1:7002");
        let err = parse_voters("1=127.0.0.1:7001,x=127.0.0.1:2").expect_err("bad id");
        assert!(format!("{err:#}").contains("x=127.0.0.1:2"), "{err:#}");
        assert!(parse_voters("1:127.0.0.1:7001").is_err());
    }
}
