//! The measured phases: each writes one change to the Deployment, then waits until its
//! [`Goal`] is reached (printing progress meanwhile), checks a list of the pods, and returns
//! what it measured.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use flotilla_core::client::{Api, ListOptions};
use flotilla_core::controllers::{deployment, replicaset};
use flotilla_core::patch::PatchType;
use flotilla_core::scheduler::runtime::SchedulerStats;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::{Cluster, NAMESPACE};
use crate::goal::{Goal, Tally, View};
use crate::measure::cpu_secs;
use crate::observe::{PodObserver, Startup};

/// The Deployment's name.
const DEPLOYMENT: &str = "hollow";
/// How often a waiting phase reads the Deployment and its ReplicaSets.
const POLL: Duration = Duration::from_millis(50);
/// Pods per page when a finished phase lists them.
const PAGE: i64 = 1_000;

/// The Deployment of `replicas` pods, each requesting what kube-scheduler's scheduler_perf
/// pods request (100m CPU, 500Mi).
fn deployment(replicas: usize) -> anyhow::Result<Deployment> {
    let labels = json!({"app": DEPLOYMENT});
    Ok(serde_json::from_value(json!({
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "replicas": i32::try_from(replicas).context("--replicas must fit an i32")?,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.local/hollow:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
                }]},
            },
        },
    }))?)
}

/// The work components did during a phase: differences of their counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Work {
    /// Scheduling cycles.
    pub(crate) sched_cycles: u64,
    /// Pods the scheduler bound.
    pub(crate) sched_bound: u64,
    /// Cycles that found no node.
    pub(crate) unschedulable: u64,
    /// Binds that failed.
    pub(crate) bind_failures: u64,
    /// ReplicaSet reconciles (successful, failed).
    pub(crate) rs_reconciles: (u64, u64),
    /// Deployment reconciles (successful, failed).
    pub(crate) deploy_reconciles: (u64, u64),
    /// Times the pod watcher had to retry.
    pub(crate) watch_retries: u64,
    /// Failed Lease renewals.
    pub(crate) lease_failures: u64,
    /// Raft elections won.
    pub(crate) elections: u64,
}

/// The counters behind [`Work`] at one moment.
#[derive(Clone, Copy)]
struct Counters {
    scheduler: SchedulerStats,
    rs: (u64, u64),
    deploy: (u64, u64),
    retries: u64,
    leases: u64,
    elections: u64,
}

impl Counters {
    fn read(cluster: &Cluster, observer: &PodObserver) -> Counters {
        let reconciles = |name| {
            let m = &cluster.controllers;
            (m.reconciles(name, "success"), m.reconciles(name, "error"))
        };
        Counters {
            scheduler: *cluster.scheduler.borrow(),
            rs: reconciles(replicaset::CONTROLLER_NAME),
            deploy: reconciles(deployment::CONTROLLER_NAME),
            retries: observer.counts().retries,
            leases: cluster.heartbeat_failures.load(Ordering::Relaxed),
            elections: cluster.elections.load(Ordering::Relaxed),
        }
    }

    fn since(&self, before: &Counters) -> Work {
        // Every counter only grows; saturating keeps a surprise from panicking mid-report.
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let (s, b) = (&self.scheduler, &before.scheduler);
        Work {
            sched_cycles: d(s.attempts, b.attempts),
            sched_bound: d(s.bound, b.bound),
            unschedulable: d(s.unschedulable, b.unschedulable),
            bind_failures: d(s.bind_failures, b.bind_failures),
            rs_reconciles: (d(self.rs.0, before.rs.0), d(self.rs.1, before.rs.1)),
            deploy_reconciles: (d(self.deploy.0, before.deploy.0), d(self.deploy.1, before.deploy.1)),
            watch_retries: d(self.retries, before.retries),
            lease_failures: d(self.leases, before.leases),
            elections: d(self.elections, before.elections),
        }
    }
}

/// What one phase measured.
pub(crate) struct PhaseReport {
    /// The phase's name.
    pub(crate) name: &'static str,
    /// Pods the phase started (created and rolled-out phases) or removed (scale to zero).
    pub(crate) pods: usize,
    /// From the write until the Deployment's status showed the goal.
    pub(crate) status_at: Duration,
    /// From the write until the pods settled too: the phase's time.
    pub(crate) elapsed: Duration,
    /// Startup of the pods created in the phase (none when scaling to zero).
    pub(crate) startup: Option<Startup>,
    /// CPU seconds this process used in the phase.
    pub(crate) cpu_secs: f64,
    /// What the components did.
    pub(crate) work: Work,
    /// The pods listed at the end.
    pub(crate) tally: Tally,
}

/// Runs the phases against one cluster.
pub(crate) struct Bench<'a> {
    /// The cluster.
    pub(crate) cluster: &'a Cluster,
    /// The watcher of the bench namespace's pods, started (and synced) before the phases.
    pub(crate) observer: &'a PodObserver,
    /// Pods of the Deployment.
    pub(crate) replicas: usize,
    /// How long each phase may take.
    pub(crate) timeout: Duration,
    /// How often a waiting phase prints its progress.
    pub(crate) progress_every: Duration,
}

impl Bench<'_> {
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.cluster.client.clone(), NAMESPACE)
    }

    /// Creates the Deployment; done when all its pods are available.
    pub(crate) async fn create(&self) -> anyhow::Result<PhaseReport> {
        let d = deployment(self.replicas)?;
        let write =
            async { self.deployments().create(&d).await.map(drop).context("creating the deployment") };
        self.phase("create", Goal::Available(self.replicas), write, &BTreeSet::new()).await
    }

    /// Changes the pod template (an annotation); done when every pod runs the new template and
    /// the old ones are gone.
    pub(crate) async fn rollout(&self, previous: &BTreeSet<String>) -> anyhow::Result<PhaseReport> {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "bench.flotilla.dev/rollout": "2",
        }}}}});
        let write = async {
            let d = self.deployments().patch(DEPLOYMENT, PatchType::Merge, &patch).await;
            d.map(drop).context("changing the deployment's template")
        };
        self.phase("rollout", Goal::RolledOut(self.replicas), write, previous).await
    }

    /// Scales the Deployment to zero; done when no pod remains.
    pub(crate) async fn scale_to_zero(&self) -> anyhow::Result<PhaseReport> {
        let patch = json!({"spec": {"replicas": 0}});
        let write = async {
            let d = self.deployments().patch(DEPLOYMENT, PatchType::Merge, &patch).await;
            d.map(drop).context("scaling the deployment to zero")
        };
        self.phase("scale_to_zero", Goal::ScaledToZero, write, &BTreeSet::new()).await
    }

    async fn phase(
        &self,
        name: &'static str,
        goal: Goal,
        write: impl Future<Output = anyhow::Result<()>>,
        previous: &BTreeSet<String>,
    ) -> anyhow::Result<PhaseReport> {
        let live_before = self.observer.counts().live;
        let counters = Counters::read(self.cluster, self.observer);
        let cpu = cpu_secs();
        let start = Instant::now();
        write.await?;
        let status_at = self.wait(name, goal, start).await?;
        let elapsed = start.elapsed();
        let cpu_secs = cpu_secs() - cpu;
        let work = Counters::read(self.cluster, self.observer).since(&counters);
        let tally = self.tally().await?;
        tally
            .check(goal, previous)
            .map_err(|e| anyhow::anyhow!("phase {name}: pods listed at the end: {e}"))?;
        let (pods, startup) = match goal {
            Goal::ScaledToZero => (live_before, None),
            Goal::Available(_) | Goal::RolledOut(_) => {
                let startup = self.observer.startup(start);
                (startup.created, Some(startup))
            }
        };
        Ok(PhaseReport { name, pods, status_at, elapsed, startup, cpu_secs, work, tally })
    }

    /// Waits until `goal` is reached; returns when the Deployment's status first showed it.
    async fn wait(&self, name: &str, goal: Goal, start: Instant) -> anyhow::Result<Duration> {
        let deadline = start + self.timeout;
        let mut next_progress = start + self.progress_every;
        let mut status_at = None;
        let mut last = (View::default(), None::<String>);
        loop {
            let now = Instant::now();
            match self.view().await {
                Ok(view) => {
                    if status_at.is_none() && goal.status_reached(&view) {
                        status_at = Some(now - start);
                    }
                    if goal.reached(&view) {
                        return Ok(status_at.unwrap_or(now - start));
                    }
                    last = (view, None);
                }
                // Reads can fail while the store is overloaded; the deadline decides.
                Err(e) => last.1 = Some(format!("{e:#}")),
            }
            let stats = *self.cluster.scheduler.borrow();
            if now >= deadline {
                let error = last.1.map(|e| format!("; last read failed: {e}")).unwrap_or_default();
                anyhow::bail!(
                    "phase {name} timed out after {:?} (raise --timeout): {}; scheduler {}{error}",
                    self.timeout,
                    last.0,
                    scheduler_line(&stats)
                );
            }
            if now >= next_progress {
                let secs = (now - start).as_secs_f64();
                // Progress is a courtesy: a full disk or closed stderr must not end the run.
                let line = format!("# {name} {secs:.1}s: {}; scheduler {}", last.0, scheduler_line(&stats));
                let _ = writeln!(std::io::stderr(), "{line}");
                next_progress += self.progress_every;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The Deployment, its ReplicaSets and the watcher's counts now.
    async fn view(&self) -> anyhow::Result<View> {
        let d = self.deployments().get(DEPLOYMENT).await.context("reading the deployment")?;
        let rs = Api::<ReplicaSet>::namespaced(self.cluster.client.clone(), NAMESPACE);
        let rs = rs.list(&ListOptions::default()).await.context("listing replica sets")?;
        Ok(View::new(&d, &rs.items, self.observer.counts()))
    }

    /// Lists the pods of the bench namespace, page by page, and counts them.
    async fn tally(&self) -> anyhow::Result<Tally> {
        let pods = Api::<Pod>::namespaced(self.cluster.client.clone(), NAMESPACE);
        let mut opts = ListOptions { limit: Some(PAGE), ..Default::default() };
        let mut all = Vec::new();
        loop {
            let page = pods.list(&opts).await.context("listing the pods")?;
            all.extend(page.items);
            match page.continue_token {
                Some(token) => opts.continue_token = Some(token),
                None => return Ok(Tally::of(&all)),
            }
        }
    }
}

/// The scheduler's state in one line.
pub(crate) fn scheduler_line(s: &SchedulerStats) -> String {
    let q = &s.queue;
    format!(
        "nodes={} pods={} assumed={} queue active={} backoff={} unschedulable={} in_flight={} binding={} \
         cycles={} bound={} unschedulable_cycles={} bind_failures={}",
        s.nodes,
        s.pods,
        s.assumed,
        q.active,
        q.backoff,
        q.unschedulable,
        q.in_flight,
        s.binding,
        s.attempts,
        s.bound,
        s.unschedulable,
        s.bind_failures
    )
}
