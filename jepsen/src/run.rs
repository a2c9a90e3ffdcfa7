//! One run: a cluster, the register workload and a nemesis schedule side by side, then the
//! checker over the recorded history, and a report in the run's directory:
//!
//! - `history.jsonl`: every operation's invocation and completion ([`crate::history`]);
//! - `watches.json`: what each member's watcher saw of the keys' changes;
//! - `report.json`: the seed, the settings, the nemesis schedule and what it did, the
//!   operation counts and the checker's verdict with any anomaly's minimal operations;
//! - `n<i>/server.log`: each member's log.
//!
//! The seed fixes the nemesis schedule and every client's sequence of operations; the real
//! processes' timing is not under the harness's control, so a re-run repeats the same faults
//! and requests, not the same interleaving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;

use crate::append::{self, AppendRecorder, AppendSpec, AppendStats, AppendVerdict};
use crate::checker::{self, CheckLimits, Validity, Verdict};
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::Recorder;
use crate::lease::{self, LeaseRecorder, LeaseSpec, LeaseStats, LeaseVerdict};
use crate::nemesis::{self, FaultKind, NemesisRecord, Schedule};
use crate::objects::{self, ObjectRecorder, ObjectSpec, ObjectStats, ObjectVerdict};
use crate::watch::{self, WatchVerdict};
use crate::workload::{self, WorkloadSpec, WorkloadStats};

mod results;

pub use results::{Recheck, ResultLine, recheck};

/// What a run does.
#[derive(Clone, Debug, Serialize)]
pub struct RunSpec {
    /// Seeds the nemesis schedule and the clients.
    pub seed: u64,
    /// Cluster members (3 or 5 are the usual choices).
    pub members: usize,
    /// How long the workload runs with faults; a quiet period follows.
    pub time: Duration,
    /// Healed time at the end, with the clients still running, so the history ends with the
    /// cluster available.
    pub quiet: Duration,
    /// The faults the schedule picks from (empty: no faults).
    pub faults: Vec<FaultKind>,
    /// Gap between faults (drawn from this range).
    pub interval: (Duration, Duration),
    /// How long each fault lasts (drawn from this range).
    pub fault_len: (Duration, Duration),
    /// The clients.
    pub workload: WorkloadSpec,
    /// The lease clients (`None`: none), on keys outside the watched prefix.
    pub lease: Option<LeaseSpec>,
    /// The list-append clients (`None`: none), on keys outside the watched prefix.
    pub append: Option<AppendSpec>,
    /// The object clients and watchers, through the API servers (`None`: none).
    pub objects: Option<ObjectSpec>,
    /// The `flotilla` binary.
    #[serde(skip)]
    pub flotilla: PathBuf,
    /// Where the run's files go (created; must be empty or missing).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl RunSpec {
    /// A run with the default settings: 3 members, all fault kinds, 5 to 10 s between faults
    /// lasting 3 to 8 s, 5 s of quiet at the end, the default workload.
    pub fn new(seed: u64, time: Duration, flotilla: PathBuf, dir: PathBuf) -> Self {
        RunSpec {
            seed,
            members: 3,
            time,
            quiet: Duration::from_secs(5),
            faults: FaultKind::all().to_vec(),
            interval: (Duration::from_secs(5), Duration::from_secs(10)),
            fault_len: (Duration::from_secs(3), Duration::from_secs(8)),
            workload: WorkloadSpec::new(&format!("jepsen/{seed}"), seed),
            lease: Some(LeaseSpec::new(&format!("jepsen/{seed}-lease"), seed)),
            append: Some(AppendSpec::new(&format!("jepsen/{seed}-append"), seed)),
            objects: Some(ObjectSpec::new(&format!("jepsen-{seed}"), seed)),
            flotilla,
            dir,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The settings.
    pub spec: RunSpec,
    /// The planned faults.
    pub schedule: Schedule,
    /// What the nemesis did, with times since the workload started.
    pub nemesis: Vec<NemesisRecord>,
    /// What the clients did.
    pub ops: WorkloadStats,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// The watch checker's verdict (`None` when no member gave the final revision).
    pub watch: Option<WatchVerdict>,
    /// Why the watches were not checked.
    pub watch_error: Option<String>,
    /// What the lease clients did (`None` without them).
    pub lease_ops: Option<LeaseStats>,
    /// The lease checker's verdict (`None` without lease clients).
    pub lease: Option<LeaseVerdict>,
    /// What the list-append clients did (`None` without them).
    pub append_ops: Option<AppendStats>,
    /// The list-append checker's verdict (`None` without list-append clients).
    pub append: Option<AppendVerdict>,
    /// What the object clients and watchers did (`None` without them).
    pub object_ops: Option<ObjectStats>,
    /// The object checker's verdict (`None` without object clients).
    pub objects: Option<ObjectVerdict>,
    /// Members that exited on their own during the run (a crash is a finding too).
    pub crashes: Vec<String>,
    /// Problems stopping the cluster at the end.
    pub stop_problems: Vec<String>,
    /// Wall-clock seconds from the cluster's start to the verdict.
    pub elapsed_secs: f64,
}

impl RunReport {
    /// Whether the history was found linearizable, every watcher saw the same complete stream
    /// of changes agreeing with it, the list-append transactions were strictly serializable,
    /// leases expired neither early nor never, no acknowledged object update was lost and
    /// every object watcher replayed exactly the committed versions to the end, and no member
    /// crashed on its own.
    pub fn valid(&self) -> bool {
        self.verdict.valid == Validity::Valid
            && self.watch.as_ref().is_some_and(|w| w.valid && w.complete)
            && self.lease.as_ref().is_none_or(|l| l.valid)
            && self.append.as_ref().is_none_or(|a| a.valid)
            && self.objects.as_ref().is_none_or(|o| o.valid && o.complete)
            && self.crashes.is_empty()
    }

    /// A few lines for a terminal.
    pub fn summary(&self) -> String {
        let anomalies = self
            .verdict
            .keys
            .iter()
            .filter(|k| matches!(k.outcome, checker::KeyOutcome::NotLinearizable(_)))
            .count();
        format!(
            "seed {} members {} time {:?}: {:?}; {} ops ({} ok, {} fail, {} info) on {} keys, {} anomalies; watches: {}; append: {}; {}; objects: {}; {} nemesis actions ({} failed); {} crashes; {:.1} s",
            self.spec.seed,
            self.spec.members,
            self.spec.time,
            self.verdict.valid,
            self.ops.invoked,
            self.ops.ok,
            self.ops.fail,
            self.ops.info,
            self.verdict.keys.len(),
            anomalies,
            self.watch_summary(),
            self.append.as_ref().map_or_else(|| "not run".to_string(), AppendVerdict::summary),
            self.lease.as_ref().map_or_else(|| "leases: not run".to_string(), LeaseVerdict::summary),
            self.objects_summary(),
            self.nemesis.len(),
            self.nemesis.iter().filter(|r| r.error.is_some()).count(),
            self.crashes.len(),
            self.elapsed_secs,
        )
    }
}

impl RunReport {
    /// The object verdict in a few words.
    fn objects_summary(&self) -> String {
        match (&self.objects, &self.object_ops) {
            (Some(v), Some(ops)) => format!(
                "{}{} ({} updates: {} ok, {} conflicts, {} unknown; {} watch events; {} anomalies)",
                if v.valid { "valid" } else { "INVALID" },
                if v.complete { "" } else { ", a watcher fell short of the end" },
                ops.updates,
                ops.ok,
                ops.fail,
                ops.info,
                ops.watch_events,
                v.anomaly_count
            ),
            _ => "not run".to_string(),
        }
    }

    /// The watch verdict in a few words.
    fn watch_summary(&self) -> String {
        match (&self.watch, &self.watch_error) {
            (Some(w), _) => format!(
                "{} ({} events, {} watchers{}, {} anomalies)",
                if w.valid { "valid" } else { "INVALID" },
                w.distinct_events,
                w.watchers.len(),
                if w.complete { "" } else { ", not all at the final revision" },
                w.anomalies.len()
            ),
            (None, Some(e)) => format!("not checked: {e}"),
            (None, None) => "not checked".to_string(),
        }
    }
}

/// The file the watch logs are saved in.
pub const WATCHES_FILE: &str = "watches.json";
/// The file the list-append clients' history is saved in.
pub const APPEND_FILE: &str = "append.jsonl";
/// The file the object clients' and watchers' history is saved in.
pub const OBJECTS_FILE: &str = "objects.jsonl";
/// The file the lease clients' history is saved in.
pub const LEASES_FILE: &str = "leases.jsonl";

/// How long the watchers may take, after the clients stop, to reach the final revision.
const WATCH_TAIL: Duration = Duration::from_secs(60);

/// Runs `spec` and writes its report and history into `spec.dir`.
pub async fn run(spec: RunSpec) -> anyhow::Result<RunReport> {
    let began = Instant::now();
    let used = std::fs::read_dir(&spec.dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    anyhow::ensure!(
        !used,
        "{} is not empty: a run starts its members on fresh data directories",
        spec.dir.display()
    );
    std::fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
    let schedule =
        Schedule::generate(spec.seed, spec.time, spec.members, &spec.faults, spec.interval, spec.fault_len);
    let tag = format!("{:x}", (spec.seed ^ u64::from(std::process::id())) & 0xf_ffff);
    let mut cluster = Cluster::start(ClusterSpec {
        flotilla: spec.flotilla.clone(),
        members: spec.members,
        dir: spec.dir.clone(),
        tag,
        clock_skew: spec.faults.contains(&FaultKind::Clock),
        spares: usize::from(spec.faults.contains(&FaultKind::Grow)),
        power_loss: spec.faults.contains(&FaultKind::PowerLoss),
    })
    .await
    .context("starting the cluster")?;

    let endpoints = cluster.member_endpoints();
    // The trailing slash keeps `jepsen/1/` from matching `jepsen/12/...`.
    let watch_prefix = format!("{}/", spec.workload.prefix);
    let op_timeout = spec.workload.op_timeout;
    let start_revision = watch::current_revision(
        &endpoints,
        &watch_prefix,
        op_timeout,
        Instant::now() + Duration::from_secs(30),
    )
    .await
    .context("reading the revision before the clients start")?
        + 1;
    let recorder = Recorder::new();
    let start = Instant::now();
    let until = start + spec.time + spec.quiet;
    let lease_recorder = spec.lease.as_ref().map(|l| LeaseRecorder::new(l, start));
    // Joined beside the rest: its final phase may take a lease's TTL and slack past `until`,
    // which must not hold up the final revision the watchers wait for.
    let leases = async {
        match (&spec.lease, &lease_recorder) {
            (Some(l), Some(r)) => Some(lease::run(&endpoints, l, r, until).await),
            _ => None,
        }
    };
    let (final_tx, final_rx) = tokio::sync::watch::channel(None);
    let watchers =
        watch::watch(&endpoints, &watch_prefix, start_revision, until, op_timeout, WATCH_TAIL, final_rx);
    let clients = workload::run(&endpoints, &spec.workload, &recorder, until);
    let kubeconfigs: Vec<PathBuf> =
        (0..spec.members).map(|i| cluster.data_dir(i).join("kubeconfig")).collect();
    let object_recorder = ObjectRecorder::new();
    // Beside the rest too: its final reads and watchers may go on past `until`.
    let object_run = async {
        match &spec.objects {
            Some(o) => Some(objects::run(&kubeconfigs, o, &object_recorder, until).await),
            None => None,
        }
    };
    let append_recorder = AppendRecorder::new();
    let appends = async {
        match &spec.append {
            Some(a) => append::run(&endpoints, a, &append_recorder, until).await.map(Some),
            None => Ok(None),
        }
    };
    let faults = nemesis::run(&mut cluster, &schedule, start);
    let rest = async {
        let (ops, append_ops, records) = tokio::join!(clients, appends, faults);
        let deadline = Instant::now() + WATCH_TAIL;
        let final_revision = watch::current_revision(&endpoints, &watch_prefix, op_timeout, deadline).await;
        final_tx.send_replace(final_revision.as_ref().ok().copied());
        drop(final_tx);
        (ops, append_ops, records, final_revision)
    };
    let (logs, (ops, append_ops, records, final_revision), lease_run, object_run) =
        tokio::join!(watchers, rest, leases, object_run);
    let crashes = cluster.reap_exited().into_iter().map(|(i, why)| format!("n{i}: {why}")).collect();
    let stop_problems = cluster.stop().await;
    let ops = ops.context("running the clients")?;

    let history = recorder.history();
    history.save(&spec.dir.join("history.jsonl"))?;
    let verdict = checker::check_registers(&history, &CheckLimits::default())?;
    let append_ops = append_ops.context("running the list-append clients")?;
    let append = match &spec.append {
        Some(_) => {
            let h = append_recorder.history();
            h.save(&spec.dir.join(APPEND_FILE))?;
            Some(append::check(&h))
        }
        None => None,
    };
    let (object_ops, objects) = match object_run {
        Some(stats) => {
            let stats = stats.context("running the object clients")?;
            let h = object_recorder.history();
            h.save(&spec.dir.join(OBJECTS_FILE))?;
            (Some(stats), Some(objects::check(&h)))
        }
        None => (None, None),
    };
    let (lease_ops, lease) = match (lease_run, lease_recorder) {
        (Some(stats), Some(rec)) => {
            let stats = stats.context("running the lease clients")?;
            let h = rec.history();
            h.save(&spec.dir.join(LEASES_FILE))?;
            (Some(stats), Some(lease::check(&h)))
        }
        _ => (None, None),
    };
    let logs = logs.context("running the watchers")?;
    let watches_path = spec.dir.join(WATCHES_FILE);
    std::fs::write(&watches_path, serde_json::to_vec(&logs)?)
        .with_context(|| format!("writing {}", watches_path.display()))?;
    let (watch, watch_error) = match final_revision {
        Ok(r) => (Some(watch::check_watches(&logs, &history, r)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let elapsed_secs = began.elapsed().as_secs_f64();
    let report = RunReport {
        spec,
        schedule,
        nemesis: records,
        ops,
        verdict,
        watch,
        watch_error,
        lease_ops,
        lease,
        append_ops,
        append,
        object_ops,
        objects,
        crashes,
        stop_problems,
        elapsed_secs,
    };
    write_report(&report.spec.dir, &report)?;
    Ok(report)
}

/// Writes `report.json` into `dir`.
fn write_report(dir: &Path, report: &RunReport) -> anyhow::Result<()> {
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))
}
