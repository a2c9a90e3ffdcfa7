//! The run, phase by phase: start the control plane and the agent, let the node register,
//! read the idle figures, create the pods and wait for them to run, settle, read the steady
//! figures over the window; then [`Bench::teardown`], which runs whatever happened before.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_api::client::RemoteClient;
use flotilla_core::client::{Api, Client, DeleteOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::time::Instant;

use crate::docker::{DockerSide, Leftovers};
use crate::measure::{self, Reading};
use crate::pods::{self, CREATE_CONCURRENCY, NAMESPACE, Observer};
use crate::procs::{self, Proc, STOP_LIMIT};
use crate::report::{Idle, Ramp, Startup, Steady, Teardown, Window};
use crate::{Args, Bind};

/// How long the node may take to register Ready after the agent started.
const NODE_READY_LIMIT: Duration = Duration::from_secs(120);
/// How long deleted pods may take to go, and then their containers.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(180);
/// Readings during the steady window are this far apart.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The window's CPU is also reported for its busiest slice of this length.
pub(crate) const SLICE: Duration = Duration::from_secs(10);

/// Everything a run started, so that the teardown stops exactly that.
pub(crate) struct Bench {
    pub(crate) args: Args,
    pub(crate) flotilla: PathBuf,
    pub(crate) ticks_per_sec: u64,
    pub(crate) node: String,
    /// `/proc/loadavg`'s three averages when the run started.
    pub(crate) load_at_start: String,
    /// The image the pods run.
    image: String,
    dir: tempfile::TempDir,
    docker: Option<(DockerSide, Leftovers)>,
    pub(crate) up: Option<Proc>,
    pub(crate) agent: Option<Proc>,
    client: Option<Arc<dyn Client>>,
    observer: Option<Observer>,
}

impl Bench {
    /// A run of `args` using the `flotilla` binary at `flotilla`.
    pub(crate) fn new(args: Args, flotilla: PathBuf) -> anyhow::Result<Bench> {
        Ok(Bench {
            args,
            flotilla,
            ticks_per_sec: measure::clock_ticks_per_sec()?,
            node: flotilla_node::testing::unique_name("agent-bench"),
            image: String::new(),
            load_at_start: loadavg(),
            dir: tempfile::Builder::new()
                .prefix("agent-bench-")
                .tempdir()
                .context("a temporary directory")?,
            docker: None,
            up: None,
            agent: None,
            client: None,
            observer: None,
        })
    }

    fn pids(&self) -> anyhow::Result<(u32, u32)> {
        let agent = self.agent.as_ref().context("the agent is not running")?.pid;
        let up = self.up.as_ref().context("the control plane is not running")?.pid;
        Ok((agent, up))
    }

    fn observer(&self) -> anyhow::Result<&Observer> {
        self.observer.as_ref().context("the pod watch is not running")
    }

    /// Starts everything and waits for the node to be Ready and the pod watch synced.
    pub(crate) async fn start(&mut self) -> anyhow::Result<Startup> {
        let image = match self.args.runtime {
            crate::Runtime::Docker => {
                let (side, image) = DockerSide::prepare(&self.node, self.args.keep_images).await?;
                let guard = side.guard();
                self.docker = Some((side, guard));
                image
            }
            // The process runtime ignores the image (it runs the command on the host).
            crate::Runtime::Process => flotilla_node::testing::BUSYBOX_IMAGE.to_owned(),
        };
        self.image = image;
        let server_dir = self.dir.path().join("server");
        let [api, etcd, raft, kubelet] =
            [procs::free_port()?, procs::free_port()?, procs::free_port()?, procs::free_port()?];
        let loopback = |port: u16| format!("127.0.0.1:{port}");
        let up_args: Vec<String> = [
            "up",
            "--runtime",
            "none",
            "--proxy",
            "off",
            "--data-dir",
            &server_dir.display().to_string(),
            "--api-listen",
            &loopback(api),
            "--etcd-listen",
            &loopback(etcd),
            "--raft-listen",
            &loopback(raft),
        ]
        .map(String::from)
        .into();
        let log = self.dir.path().join("up.log");
        let filter = self.args.child_log.clone();
        self.up =
            Some(Proc::spawn("up", &self.flotilla, &up_args, &filter, log, "export KUBECONFIG=").await?);
        let token = procs::create_token(&self.flotilla, &server_dir).await?;

        let agent_args: Vec<String> = [
            "agent",
            "--server",
            &format!("https://{}", loopback(api)),
            "--token",
            &token.token,
            "--ca-hash",
            &token.ca_hash,
            "--data-dir",
            &self.dir.path().join("agent").display().to_string(),
            "--runtime",
            self.args.runtime.flag(),
            "--node-name",
            &self.node,
            "--kubelet-listen",
            &loopback(kubelet),
            "--proxy",
            "off",
            "--bootstrap-timeout",
            "60s",
        ]
        .map(String::from)
        .into();
        let started = Instant::now();
        let log = self.dir.path().join("agent.log");
        let (program, agent_args) = match &self.args.agent_bin {
            // The agent alone takes `flotilla agent`'s flags without the subcommand.
            Some(bin) => (bin.as_path(), &agent_args[1..]),
            None => (self.flotilla.as_path(), &agent_args[..]),
        };
        self.agent = Some(Proc::spawn("agent", program, agent_args, &filter, log, "  proxy:").await?);
        let joined = started.elapsed();

        let kubeconfig = server_dir.join("kubeconfig");
        let client: Arc<dyn Client> = Arc::new(
            RemoteClient::from_kubeconfig(&kubeconfig)
                .with_context(|| format!("a client from {}", kubeconfig.display()))?,
        );
        self.client = Some(client.clone());
        self.wait_node_ready(&client).await?;
        let ready = started.elapsed();
        let observer = Observer::start(client);
        self.observer = Some(observer);
        self.observer()?
            .wait("the pod watch's first list", NODE_READY_LIMIT, |s| s.synced, |_| String::new())
            .await?;
        Ok(Startup { joined, ready })
    }

    async fn wait_node_ready(&self, client: &Arc<dyn Client>) -> anyhow::Result<()> {
        let nodes = Api::<Node>::all(client.clone());
        let deadline = Instant::now() + NODE_READY_LIMIT;
        loop {
            let node =
                nodes.get_opt(&self.node).await.with_context(|| format!("reading node {}", self.node))?;
            let ready = node.and_then(|n| n.status?.conditions).is_some_and(|conditions| {
                conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.agent.as_ref().map(Proc::log_tail).unwrap_or_default();
                anyhow::bail!("node {} was not Ready within {NODE_READY_LIMIT:?}\n{tail}", self.node);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The agent and the server with no pods, over `--idle-secs`.
    pub(crate) async fn idle(&self) -> anyhow::Result<Option<Idle>> {
        if self.args.idle_secs == 0 {
            return Ok(None);
        }
        let window = self.window(Duration::from_secs(self.args.idle_secs)).await?;
        Ok(Some(Idle { window }))
    }

    /// Creates the pods and waits until all run.
    pub(crate) async fn ramp(&self) -> anyhow::Result<Ramp> {
        let (agent_pid, up_pid) = self.pids()?;
        let client = self.client.clone().context("no client")?;
        let (agent0, up0) = (measure::read(agent_pid)?, measure::read(up_pid)?);
        let node = (self.args.bind == Bind::NodeName).then_some(self.node.as_str());
        let api = Api::<Pod>::namespaced(client, NAMESPACE);
        let started = Instant::now();
        let creations = futures::stream::iter(0..self.args.pods).map(|i| {
            let api = api.clone();
            let image = self.image.clone();
            async move {
                let name = pods::pod_name(i);
                let pod = pods::pod(&name, &image, node)?;
                api.create(&pod).await.with_context(|| format!("creating pod {name}"))?;
                anyhow::Ok(())
            }
        });
        let results: Vec<anyhow::Result<()>> = creations.buffer_unordered(CREATE_CONCURRENCY).collect().await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        let created = started.elapsed();
        let n = self.args.pods;
        let limit = Duration::from_secs(self.args.timeout_secs);
        let progress = |s: &crate::pods::Seen| {
            let (bound, running, _) = s.counts();
            format!("{bound} bound, {running} running of {n}")
        };
        let waited = self.observer()?.wait("every pod running", limit, |s| s.counts().1 >= n, progress).await;
        if let Err(error) = waited {
            let tail = self.agent.as_ref().map(Proc::log_tail).unwrap_or_default();
            return Err(error.context(tail));
        }
        let (agent1, up1) = (measure::read(agent_pid)?, measure::read(up_pid)?);
        let seen = self.observer()?.seen();
        let elsewhere = seen.elsewhere(&self.node);
        anyhow::ensure!(elsewhere == 0, "{elsewhere} pod(s) were bound to a node other than {}", self.node);
        let last = seen.last_running().context("no pod ran")?;
        Ok(Ramp {
            created,
            bind_to_running: seen.bind_to_running(),
            create_to_all_running: last.checked_duration_since(started).unwrap_or_default(),
            bind_to_all_running: seen.first_bound().and_then(|b| last.checked_duration_since(b)),
            agent_cpu_secs: measure::cpu_secs(&agent0, &agent1, self.ticks_per_sec),
            server_cpu_secs: measure::cpu_secs(&up0, &up1, self.ticks_per_sec),
        })
    }

    /// Waits `--settle-secs`, then reads the window.
    pub(crate) async fn steady(&self) -> anyhow::Result<Steady> {
        // A settle period is the point here: the figures are those of a node left alone.
        tokio::time::sleep(Duration::from_secs(self.args.settle_secs)).await;
        let (restarts0, events0) = {
            let seen = self.observer()?.seen();
            (seen.restarts(), seen.events)
        };
        let window = self.window(Duration::from_secs(self.args.window_secs.max(1))).await?;
        let seen = self.observer()?.seen();
        let (_, running, deleted) = seen.counts();
        anyhow::ensure!(deleted == 0, "{deleted} pod(s) were deleted during the window");
        Ok(Steady {
            window,
            running,
            restarts: seen.restarts().saturating_sub(restarts0),
            watch_events: seen.events.saturating_sub(events0),
        })
    }

    /// Reads the agent, the server and (with Docker) the daemons over `length`.
    async fn window(&self, length: Duration) -> anyhow::Result<Window> {
        let (agent_pid, up_pid) = self.pids()?;
        let docker_groups: Vec<(&'static str, Vec<u32>)> = match self.args.runtime {
            crate::Runtime::Docker => vec![
                ("dockerd", measure::pids_named(|c| c == "dockerd")),
                ("containerd", measure::pids_named(|c| c == "containerd")),
                ("shims (all)", measure::pids_named(|c| c.starts_with("containerd-shim"))),
            ],
            crate::Runtime::Process => Vec::new(),
        };
        let groups0: Vec<u64> = docker_groups.iter().map(|(_, pids)| measure::ticks_of(pids)).collect();
        let started = Instant::now();
        let (mut agent, mut server) = (vec![measure::read(agent_pid)?], vec![measure::read(up_pid)?]);
        let mut tick = tokio::time::interval_at(started + SAMPLE_EVERY, SAMPLE_EVERY);
        while started.elapsed() < length {
            tick.tick().await;
            agent.push(measure::read(agent_pid).context("reading the agent (has it exited?)")?);
            server.push(measure::read(up_pid).context("reading the server (has it exited?)")?);
        }
        let wall = started.elapsed();
        let daemons = docker_groups
            .iter()
            .zip(groups0)
            .map(|((name, pids), t0)| {
                let ticks = measure::ticks_of(pids).saturating_sub(t0);
                (*name, pids.len(), measure::percent_of_core(ticks, self.ticks_per_sec, wall))
            })
            .collect();
        Ok(Window { length: wall, agent, server, daemons })
    }

    /// Deletes the pods, waits for them and their containers to go, stops the processes and
    /// cleans Docker up; runs whatever the run got to.
    pub(crate) async fn teardown(&mut self) -> Teardown {
        let mut out = Teardown::default();
        if let (Some(client), Some(observer)) = (self.client.clone(), self.observer.as_ref()) {
            let existing: Vec<String> = observer
                .seen()
                .pods
                .iter()
                .filter(|(_, s)| s.deleted.is_none())
                .map(|(n, _)| n.clone())
                .collect();
            let count = existing.len();
            let api = Api::<Pod>::namespaced(client, NAMESPACE);
            let started = Instant::now();
            let deletions = futures::stream::iter(existing).map(|name| {
                let api = api.clone();
                async move {
                    api.delete(&name, &DeleteOptions::default())
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{name}: {e}"))
                }
            });
            let results: Vec<Result<(), String>> =
                deletions.buffer_unordered(CREATE_CONCURRENCY).collect().await;
            out.errors
                .extend(results.into_iter().filter_map(Result::err).map(|e| format!("deleting pod {e}")));
            if count > 0 {
                let gone = observer
                    .wait(
                        "the deleted pods to go",
                        TEARDOWN_LIMIT,
                        |s| s.counts().2 >= s.pods.len(),
                        |s| format!("{} of {} gone", s.counts().2, s.pods.len()),
                    )
                    .await;
                match gone {
                    Ok(()) => {
                        out.pods_gone =
                            observer.seen().last_deleted().and_then(|t| t.checked_duration_since(started))
                    }
                    Err(e) => out.errors.push(format!("{e:#}")),
                }
                if let Some((docker, _)) = &self.docker {
                    out.containers_gone = wait_containers_gone(docker, started)
                        .await
                        .map_err(|e| out.errors.push(format!("{e:#}")))
                        .ok()
                        .flatten();
                }
            }
            out.deleted = count;
        }
        if let Some(observer) = self.observer.take() {
            observer.stop().await;
        }
        for proc in [self.agent.take(), self.up.take()].into_iter().flatten() {
            let name = proc.name;
            match proc.stop(STOP_LIMIT).await {
                Ok((status, killed)) => out.exits.push(format!(
                    "{name}: {status}{}",
                    if killed { " (killed after SIGTERM timed out)" } else { "" }
                )),
                Err(e) => out.errors.push(format!("stopping {name}: {e:#}")),
            }
        }
        if let Some((docker, mut guard)) = self.docker.take() {
            match docker.clean().await {
                Ok((containers, images)) => {
                    out.leftover_containers = Some(containers);
                    out.images_removed = images;
                    guard.disarm();
                }
                Err(e) => out.errors.push(format!("{e:#}")),
            }
        }
        out
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), for context.
pub(crate) fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Polls until the node's containers are gone; how long after `since` that was, or `None` if
/// they were still there after [`TEARDOWN_LIMIT`].
async fn wait_containers_gone(docker: &DockerSide, since: Instant) -> anyhow::Result<Option<Duration>> {
    let deadline = Instant::now() + TEARDOWN_LIMIT;
    loop {
        if docker.node_containers().await? == 0 {
            return Ok(Some(since.elapsed()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The busiest `slice` of `readings` (taken [`SAMPLE_EVERY`] apart), as % of one core.
pub(crate) fn busiest_slice(readings: &[Reading], slice: Duration, ticks_per_sec: u64) -> Option<f64> {
    let step = usize::try_from(slice.as_secs() / SAMPLE_EVERY.as_secs().max(1)).unwrap_or(1).max(1);
    if readings.len() <= step {
        return None;
    }
    readings
        .windows(step + 1)
        .step_by(step)
        .filter_map(|w| measure::cpu_percent(&w[0], &w[step], ticks_per_sec))
        .reduce(f64::max)
}
