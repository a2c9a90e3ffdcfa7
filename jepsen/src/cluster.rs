//! A cluster of real `flotilla server` processes, one per host of a [`Network`].
//!
//! [`Cluster::start`] creates the network, starts member 0 (which creates the cluster), reads
//! the join token with `flotilla token server`, joins the other members through member 0 one at
//! a time and waits until every member is a voter and all agree on a leader. Members listen on
//! fixed ports of their host's address ([`API_PORT`], [`ETCD_PORT`], [`RAFT_PORT`]) and keep
//! their data in `<dir>/n<i>` (in `<dir>/n<i>/disk`, a lossy disk, with
//! [`ClusterSpec::power_loss`]), with standard output and error appended to
//! `<dir>/n<i>/server.log`. Members are named `n<i>` by their 0-based index everywhere.
//!
//! The raft ids of members are read from the store's member list once it is ready (each
//! member's transport address tells which host it is), not assumed from the join order.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;
use tokio::time::Instant;

use crate::lossyfs::LossyFs;
use crate::net::Network;

mod clock;
mod disk;
mod etcd;
mod membership;

pub use clock::{FAKETIME_LIB, faketime_unavailable, offset_spec};
pub(crate) use etcd::connect;
use etcd::{majority, members, status};

/// The API server's port on every host.
pub const API_PORT: u16 = 6443;
/// The etcd-compatible endpoint's port on every host.
pub const ETCD_PORT: u16 = 2379;
/// The member transport's (Raft) port on every host.
pub const RAFT_PORT: u16 = 2380;
/// How long a member may take to print its `export KUBECONFIG=` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new cluster may take until all members are voters with a leader.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long members may take to exit after SIGTERM in [`Cluster::stop`].
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `flotilla` or `kill` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member may take to exit after SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a removed member may take to exit after SIGTERM before it is SIGKILLed.
pub const MEMBER_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rejoined member may take, once up, to show as a voter in the member list.
pub const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one etcd status or member-list request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Members snapshot every this many applied entries (the server's default is 100 000), so
/// snapshots, log purges and catch-ups from snapshots happen in every run, not only in
/// [`FaultKind::Snapshot`](crate::nemesis::FaultKind::Snapshot) faults.
pub const SNAPSHOT_EVERY: u64 = 2_000;
/// Log entries members keep behind a snapshot (the server's default is 1 000).
pub const SNAPSHOT_KEEP_LOGS: u64 = 100;
/// How many lines of a member's log an error quotes.
const LOG_TAIL_LINES: usize = 40;

/// What cluster to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `flotilla` binary.
    pub flotilla: PathBuf,
    /// How many members (and hosts).
    pub members: usize,
    /// Where member `i` keeps its data directory `n<i>`.
    pub dir: PathBuf,
    /// The run tag the network's names derive from (see [`Network::create`]).
    pub tag: String,
    /// Start members under libfaketime so that [`Cluster::skew_clock`] can shift their wall
    /// clocks (see [`FAKETIME_LIB`]; monotonic clocks are never shifted).
    pub clock_skew: bool,
    /// Spare hosts after the members (indexes `members..members + spares`): not started, and
    /// counted as removed, until [`Cluster::rejoin`] adds one as a new member.
    pub spares: usize,
    /// Keep each member's data directory on its own [`LossyFs`] (`<dir>/n<i>/disk`, in
    /// memory; see [`Cluster::data_dir`]), so that [`Cluster::power_loss`] can cut its power.
    pub power_loss: bool,
}

/// What one member's etcd Maintenance.Status said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The raft id of the member that answered.
    pub raft_id: u64,
    /// The raft id of the leader it knows (`None` during an election).
    pub leader: Option<u64>,
    /// Its raft term.
    pub raft_term: u64,
    /// Its applied index.
    pub applied_index: u64,
}

#[derive(Debug, Default)]
struct Member {
    /// The running process; `None` once killed (and reaped).
    child: Option<Child>,
    paused: bool,
    /// Removed from the membership by [`Cluster::remove_member`] and not rejoined yet.
    removed: bool,
    /// Wall-clock offset in seconds set by [`Cluster::skew_clock`].
    clock_offset: i64,
}

/// Running `flotilla server` members. Dropping it kills them and destroys the network.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    net: Network,
    members: Vec<Member>,
    raft_ids: Vec<u64>,
    /// The join token read from member 0 at start, for members that rejoin.
    token: String,
    /// Each host's lossy disk once mounted ([`ClusterSpec::power_loss`]). Declared after
    /// `members`, so that members are killed before their disks are unmounted.
    disks: Vec<Option<LossyFs>>,
}

impl Cluster {
    /// Starts the cluster `spec` describes and waits until it is ready (see the module
    /// documentation). On failure everything started is killed and the network destroyed;
    /// the error names the member and step, with the tail of its log when it failed to start.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        anyhow::ensure!(spec.members >= 1, "a cluster needs at least one member");
        anyhow::ensure!(spec.flotilla.is_file(), "no flotilla binary at {}", spec.flotilla.display());
        std::fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
        let net = Network::create(&spec.tag, spec.members + spec.spares)
            .await
            .with_context(|| format!("creating the network of run {}", spec.tag))?;
        let (n, hosts) = (spec.members, spec.members + spec.spares);
        let mut cluster = Cluster {
            spec,
            net,
            members: (0..hosts).map(|i| Member { removed: i >= n, ..Member::default() }).collect(),
            raft_ids: vec![0; hosts],
            token: String::new(),
            disks: (0..hosts).map(|_| None).collect(),
        };
        cluster.members[0].child = Some(cluster.spawn(0, None).await?);
        let dir0 = cluster.data_dir(0);
        let token = cluster
            .flotilla(&["token".as_ref(), "server".as_ref(), "--data-dir".as_ref(), dir0.as_os_str()])
            .await
            .context("member n0: reading the join token")?;
        let seed = format!("{}:{RAFT_PORT}", cluster.net.hosts()[0].ip);
        for i in 1..n {
            cluster.members[i].child = Some(cluster.spawn(i, Some((&seed, &token))).await?);
        }
        cluster.token = token;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Starts member `i`'s server on its data directory and waits for its `export KUBECONFIG=`
    /// line; its output keeps going to `server.log` afterwards.
    async fn spawn(&mut self, i: usize, join: Option<(&str, &str)>) -> anyhow::Result<Child> {
        self.mount_disk(i)?;
        self.launch(i, join).await
    }

    /// [`Cluster::spawn`] once the directories are there.
    async fn launch(&self, i: usize, join: Option<(&str, &str)>) -> anyhow::Result<Child> {
        let dir = self.member_dir(i);
        let data_dir = self.data_dir(i);
        let log = dir.join("server.log");
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("member n{i}: opening {}", log.display()))
        };
        let ip = self.net.hosts()[i].ip;
        let mut cmd = self.net.command(i, &self.spec.flotilla);
        cmd.arg("server").arg("--data-dir").arg(&data_dir);
        cmd.args(["--api-listen", &format!("{ip}:{API_PORT}")]);
        cmd.args(["--etcd-listen", &format!("{ip}:{ETCD_PORT}")]);
        cmd.args(["--raft-listen", &format!("{ip}:{RAFT_PORT}")]);
        if self.spec.clock_skew {
            self.faketime_env(i, &mut cmd)?;
        }
        cmd.args(["--snapshot-every", &SNAPSHOT_EVERY.to_string()]);
        cmd.args(["--snapshot-keep-logs", &SNAPSHOT_KEEP_LOGS.to_string()]);
        if let Some((seed, token)) = join {
            cmd.args(["--join", seed, "--token", token]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(open_log()?)).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "member n{i}: running {} server in {}",
                self.spec.flotilla.display(),
                self.net.hosts()[i].ns
            )
        })?;
        let stdout = child.stdout.take().with_context(|| format!("member n{i}: no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut out = open_log()?;
        let up = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        let _ = writeln!(out, "{line}");
                        if line.starts_with("export KUBECONFIG=") {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Err("it exited before it was up".to_string()),
                    Err(e) => return Err(format!("reading its output: {e}")),
                }
            }
        };
        let failed = match tokio::time::timeout(START_TIMEOUT, up).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some(format!("no `export KUBECONFIG=` line within {START_TIMEOUT:?}")),
        };
        if let Some(why) = failed {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
            anyhow::bail!(
                "member n{i}: `flotilla server --data-dir {}` did not start: {why}\n{}",
                dir.display(),
                log_tail(&log)
            );
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
        });
        Ok(child)
    }

    /// Runs `flotilla <args>` in the root namespace; its trimmed standard output.
    async fn flotilla(&self, args: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
        let what =
            format!("`{} {}`", self.spec.flotilla.display(), args.join(" ".as_ref()).to_string_lossy());
        let mut cmd = tokio::process::Command::new(&self.spec.flotilla);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: no result within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("running {what}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until member 0's member list shows every host's member as a voter and every
    /// member reports the same leader; records the raft ids.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last;
        loop {
            match self.readiness().await {
                Ok(ids) => {
                    self.raft_ids = ids;
                    return Ok(());
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                let logs: String = (0..self.len())
                    .map(|i| format!("\n--- n{i}: {}", log_tail(&self.member_dir(i).join("server.log"))))
                    .collect();
                anyhow::bail!("the cluster was not ready within {READY_TIMEOUT:?}: {last}{logs}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The raft ids by member index if the cluster is ready; otherwise which member is not.
    async fn readiness(&self) -> Result<Vec<u64>, String> {
        let endpoints = self.etcd_endpoints();
        let listed = members(&endpoints[0]).await.map_err(|e| format!("member n0: member list: {e:#}"))?;
        let mut ids = vec![0; self.len()];
        let spare = |i: usize| i >= self.spec.members;
        for (id, addr, voter) in listed {
            let i = self
                .net
                .hosts()
                .iter()
                .position(|h| addr == format!("{}:{RAFT_PORT}", h.ip))
                .ok_or_else(|| format!("member list of n0 names raft member {id} at unknown {addr}"))?;
            if !voter {
                return Err(format!("member n{i} (raft id {id}) is not a voter yet"));
            }
            ids[i] = id;
        }
        if let Some(i) = ids.iter().enumerate().position(|(i, id)| *id == 0 && !spare(i)) {
            return Err(format!("member n{i} is not in n0's member list yet"));
        }
        let mut leaders = Vec::new();
        for (i, endpoint) in endpoints.iter().enumerate().filter(|(i, _)| !spare(*i)) {
            let st = status(endpoint).await.map_err(|e| format!("member n{i}: status: {e:#}"))?;
            if st.raft_id != 0 && st.raft_id != ids[i] {
                return Err(format!(
                    "member n{i} answers as raft id {} but the member list gives it {}",
                    st.raft_id, ids[i]
                ));
            }
            leaders.push(st.leader.ok_or_else(|| format!("member n{i} knows no leader"))?);
        }
        if leaders.iter().any(|l| *l != leaders[0]) {
            return Err(format!("members disagree on the leader: {leaders:?}"));
        }
        Ok(ids)
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The network the members run in.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The etcd endpoints of all members, by index (`http://10.A.B.<i+1>:2379`).
    /// (Spare hosts included: see [`Cluster::member_endpoints`] for the members alone.)
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.net.hosts().iter().map(|h| format!("http://{}:{ETCD_PORT}", h.ip)).collect()
    }

    /// The etcd endpoints of the members the cluster started with (no spares): what clients
    /// are given.
    pub fn member_endpoints(&self) -> Vec<String> {
        let mut all = self.etcd_endpoints();
        all.truncate(self.spec.members);
        all
    }

    /// Whether host `i` is a spare ([`ClusterSpec::spares`]), member or not at the moment.
    pub fn is_spare(&self, i: usize) -> bool {
        i >= self.spec.members && i < self.len()
    }

    /// Member `i`'s directory (`<dir>/n<i>`): its `server.log`, and its data directory
    /// unless it is on a lossy disk (see [`Cluster::data_dir`]).
    pub fn member_dir(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("n{i}"))
    }

    /// Member `i`'s raft id, as the member list reported it when the cluster became ready.
    pub fn raft_id(&self, i: usize) -> Option<u64> {
        self.raft_ids.get(i).copied()
    }

    /// The member index with raft id `id`.
    pub fn member_of(&self, raft_id: u64) -> Option<usize> {
        self.raft_ids.iter().position(|id| *id == raft_id)
    }

    /// Whether member `i` runs (started and not killed; it may be paused).
    pub fn is_running(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.child.is_some())
    }

    /// Whether member `i` was removed from the membership ([`Cluster::remove_member`]) and has
    /// not rejoined ([`Cluster::rejoin`]) yet.
    pub fn is_removed(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.removed)
    }

    /// Whether member `i` is paused (SIGSTOP).
    pub fn is_paused(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.paused)
    }

    /// Member `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members.get(i).and_then(|m| m.child.as_ref()).and_then(Child::id)
    }

    fn member_mut(&mut self, i: usize) -> anyhow::Result<&mut Member> {
        let n = self.members.len();
        self.members.get_mut(i).with_context(|| format!("no member n{i}: the cluster has {n}"))
    }

    /// Members that exited on their own (not killed by [`Cluster::kill`]), reaped and marked
    /// as not running, with their exit status.
    pub fn reap_exited(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(child) = &mut m.child {
                match child.try_wait() {
                    Ok(Some(status)) => exited.push((i, status.to_string())),
                    Ok(None) => continue,
                    Err(e) => exited.push((i, format!("cannot be waited for: {e}"))),
                }
                m.child = None;
                m.paused = false;
            }
        }
        exited
    }

    /// SIGKILLs member `i` and reaps it.
    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let m = self.member_mut(i)?;
        let mut child = m.child.take().with_context(|| format!("member n{i} is not running"))?;
        m.paused = false;
        child.start_kill().with_context(|| format!("member n{i}: sending SIGKILL"))?;
        tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("member n{i} did not exit within {EXIT_TIMEOUT:?} of SIGKILL"))?
            .with_context(|| format!("member n{i}: waiting for it to exit"))?;
        Ok(())
    }

    /// Starts killed member `i` again on its data directory (no `--join`) and waits, up to
    /// [`START_TIMEOUT`], for its `export KUBECONFIG=` line.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        match self.restart_all(&[i]).await.pop() {
            Some((_, result)) => result,
            None => anyhow::bail!("member n{i}: restart_all answered nothing"),
        }
    }

    /// Sends `signal` (a `kill -s` name) to member `i`.
    async fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid(i).with_context(|| format!("member n{i} is not running"))?;
        let what = format!("member n{i}: `kill -s {signal} {pid}`");
        let mut cmd = tokio::process::Command::new("kill");
        cmd.args(["-s", signal, &pid.to_string()]).stdin(Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: no result within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("{what}: cannot run"))?;
        anyhow::ensure!(
            out.status.success(),
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Sends member `i` SIGUSR1: it builds a snapshot and purges its log up to it (the
    /// server logs the outcome).
    pub async fn compact_log(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "USR1").await
    }

    /// Pauses running member `i` with SIGSTOP.
    pub async fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(!self.member_mut(i)?.paused, "member n{i} is already paused");
        self.signal(i, "STOP").await?;
        self.member_mut(i)?.paused = true;
        Ok(())
    }

    /// Resumes paused member `i` with SIGCONT.
    pub async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.member_mut(i)?.paused, "member n{i} is not paused");
        self.signal(i, "CONT").await?;
        self.member_mut(i)?.paused = false;
        Ok(())
    }

    /// Member `i`'s etcd Maintenance.Status, asked from the root namespace (bounded by a short
    /// timeout: a paused or unreachable member fails).
    pub async fn status(&self, i: usize) -> anyhow::Result<MemberStatus> {
        let endpoint = self.etcd_endpoints().into_iter().nth(i).with_context(|| format!("no member n{i}"))?;
        status(&endpoint).await.with_context(|| format!("member n{i}: status from {endpoint}"))
    }

    /// The member that a majority of the running, unpaused members that answer report as
    /// leader; `None` when they do not agree or none answers.
    pub async fn leader(&self) -> Option<usize> {
        let mut asked = tokio::task::JoinSet::new();
        for (i, endpoint) in self.etcd_endpoints().into_iter().enumerate() {
            if self.is_running(i) && !self.is_paused(i) {
                asked.spawn(async move { status(&endpoint).await.ok() });
            }
        }
        let answers: Vec<Option<u64>> =
            asked.join_all().await.into_iter().flatten().map(|s| s.leader).collect();
        let winner = majority(&answers)?;
        self.member_of(winner)
    }

    /// Stops the cluster: resumes paused members, sends SIGTERM to all, SIGKILLs those still
    /// running after [`STOP_TIMEOUT`], and destroys the network. Everything is cleaned up
    /// either way; the answer lists what went wrong (e.g. a member that needed SIGKILL) and is
    /// empty after a clean stop.
    pub async fn stop(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.len() {
            if self.is_paused(i)
                && let Err(e) = self.resume(i).await
            {
                problems.push(format!("{e:#}"));
            }
            if self.is_running(i)
                && let Err(e) = self.signal(i, "TERM").await
            {
                problems.push(format!("{e:#}"));
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (i, m) in self.members.iter_mut().enumerate() {
            let Some(mut child) = m.child.take() else { continue };
            m.paused = false;
            if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
                problems.push(format!("member n{i} did not exit within {STOP_TIMEOUT:?} of SIGTERM"));
                let _ = child.start_kill();
                let _ = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
            }
        }
        for disk in self.disks.iter_mut().filter_map(Option::take) {
            if let Err(e) = disk.unmount() {
                problems.push(e.to_string());
            }
        }
        self.net.destroy();
        for p in &problems {
            tracing::warn!("stopping the cluster: {p}");
        }
        problems
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = &mut m.child {
                // SIGKILL also ends a stopped process; tokio reaps it in the background.
                let _ = child.start_kill();
            }
        }
        self.net.destroy();
    }
}

/// The last lines of a member's log, for an error message.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            format!("last {} lines of {}:\n{}", tail.len(), log.display(), tail.join("\n"))
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}
