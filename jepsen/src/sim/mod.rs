//! Deterministic simulation: a whole cluster of real members in one process, on a simulated
//! network, under tokio's paused clock.
//!
//! Each member is a real [`RaftStore`](flotilla_raft_store::RaftStore) (openraft, the log and
//! state machine on RocksDB, the member-transport service with its message encoding,
//! forwarding to the leader, the lease loop) opened with
//! [`RaftStoreConfig::sim_net`](flotilla_raft_store::RaftStoreConfig::sim_net): messages go
//! through a seeded [`SimNet`](flotilla_raft_store::SimNet) instead of TCP. A run is one seed:
//! the seed fixes the nemesis schedule ([`faults`]: partitions, leader isolation, delayed and
//! lost messages, member stops and restarts, forced snapshots, and membership changes: a voter
//! removed, then back on a fresh data directory with a new id as a learner and promoted,
//! [`membership`]), the network's random choices and the clients' operations. Time is
//! virtual, so a run takes less real time than it simulates (a 20 s seed took about 10 s on a
//! loaded 2-core machine), and timeouts and elections happen at simulated instants, whatever
//! the machine's load.
//!
//! Checked: the register history for linearizability (the checker of the Jepsen-style
//! runs, [`crate::checker`]); one watch per slot ([`watchers`], reopened on the slot's next
//! member whenever its member stops) against the others and the history, by the real runs'
//! watch checker ([`crate::watch::check_watches`]); the real runs' lease workload and
//! checker ([`leases`], [`crate::lease::check`]); Raft invariants while it runs ([`invariants`]: terms never go
//! back, a member never leads again in a term it stepped down in, replicas never diverge);
//! and at the end, once healed and every member a voter again, that every member applied the
//! same log to the same state (equal state digests at equal applied index).
//!
//! What a seed does not fix: tokio picks at random among ready branches of a `select!`, which
//! openraft uses, and openraft draws election timeouts from the thread's random generator; so
//! the same seed replays the same faults and client requests, but the interleaving can differ
//! from one replay to the next. A failing seed is re-run with
//! `flotilla-jepsen sim --first-seed N --seeds 1` and its history kept.

mod client;
mod cluster;
pub mod faults;
mod invariants;
mod leases;
pub mod membership;
#[cfg(test)]
mod tests;
mod watchers;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft_store::SimNetCounts;
use openraft::type_config::async_runtime::WatchReceiver as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::time::Instant;

use flotilla_core::store::{KeyRange, RangeRequest, Store as _};

use crate::checker::{CheckLimits, OpCounts, Validity, check_registers};
use crate::history::{History, Recorder};
use crate::lease::{self, LeaseRecorder, LeaseSpec, LeaseStats, LeaseVerdict};
use crate::watch::WatchVerdict;
use client::{Clients, OP_TIMEOUT};
use cluster::SimCluster;
pub use faults::FaultEvent;
use invariants::Invariants;
pub use membership::MembershipCounts;

/// Why a simulation could not run (not a verdict: a run that ran reports its findings).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The runtime could not be built.
    #[error("cannot build the simulation runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The temporary data directory could not be made.
    #[error("cannot make a temporary data directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// A member could not be opened or the cluster initialized.
    #[error("cluster setup failed: {0}")]
    Setup(String),
    /// The history was malformed (a harness bug).
    #[error("the history is malformed: {0}")]
    History(#[from] crate::checker::CheckError),
}

/// One simulation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSpec {
    /// The seed.
    pub seed: u64,
    /// Cluster members (3 or 5 make sense).
    pub members: usize,
    /// Virtual time with clients and faults, before the final heal.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Register keys.
    pub keys: usize,
    /// Read from the asked member's own copy (etcd's `serializable`), which is not
    /// linearizable: a run with this set should be found not valid, which shows the checks
    /// can see a stale read.
    pub serializable_reads: bool,
    /// Have the watchers resume one revision late after a broken stream, losing an event: a
    /// run with this set should be found not valid, which shows the watch check can see a
    /// lost event.
    pub lossy_watch_resume: bool,
    /// Have the lease clients' reads find every key gone: a run with this set should be found
    /// not valid, which shows the lease check's verdict reaches the report.
    pub lease_reads_miss: bool,
}

impl SimSpec {
    /// A run of `seed` with 3 members, 5 clients on 3 keys, 20 virtual seconds.
    pub fn new(seed: u64) -> Self {
        SimSpec {
            seed,
            members: 3,
            duration: Duration::from_secs(20),
            clients: 5,
            keys: 3,
            serializable_reads: false,
            lossy_watch_resume: false,
            lease_reads_miss: false,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Cluster members.
    pub members: usize,
    /// Virtual milliseconds the run took, final phase included.
    pub virtual_ms: u64,
    /// The faults applied, in order.
    pub faults: Vec<FaultEvent>,
    /// The membership changes made (removals and returns of a voter).
    pub membership: MembershipCounts,
    /// How the clients' operations ended.
    pub ops: OpCounts,
    /// The register checker's verdict.
    pub linearizable: Validity,
    /// The watch checker's verdict on one watcher per slot (see [`watchers`]).
    pub watch: WatchVerdict,
    /// What the lease clients did (see [`leases`]).
    pub lease_ops: LeaseStats,
    /// The lease checker's verdict.
    pub leases: LeaseVerdict,
    /// Broken invariants, a non-linearizable key's anomaly, and the lease and watch anomalies,
    /// if any.
    pub violations: Vec<String>,
    /// The highest raft term reached.
    pub highest_term: u64,
    /// Terms in which two members led one after the other (allowed, see [`invariants`]).
    pub terms_with_two_leaders: u64,
    /// Replica comparisons made while running.
    pub replica_samples: u64,
    /// Messages delivered and lost.
    pub messages: SimNetCounts,
    /// A SHA-256 of the history (operations, outcomes, virtual times), to compare replays.
    pub history_digest: String,
    /// The history itself, for saving when the run is not valid.
    #[serde(skip)]
    pub history: History,
}

impl SimReport {
    /// Whether the run found nothing wrong.
    pub fn valid(&self) -> bool {
        self.violations.is_empty() && self.linearizable == Validity::Valid
    }

    /// One line for a terminal.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} ({} members, {:.1} s simulated, {} faults, {} removed and {} rejoined ({} retries), {} ops: {} ok, {} fail, {} info; term {}, {} messages, {} lost; {} replica checks; watches: {} events to revision {}, {} reconnects, {} compacted gaps; leases: {} granted, {} expired, {} anomalies){}",
            self.seed,
            if self.valid() { "valid" } else { "NOT VALID" },
            self.members,
            self.virtual_ms as f64 / 1000.0,
            self.faults.len(),
            self.membership.removed,
            self.membership.rejoined,
            self.membership.retried,
            self.ops.invoked,
            self.ops.ok,
            self.ops.fail,
            self.ops.info,
            self.highest_term,
            self.messages.delivered + self.messages.lost,
            self.messages.lost,
            self.replica_samples,
            self.watch.distinct_events,
            self.watch.final_revision,
            self.watch.watchers.iter().map(|w| w.reconnects).sum::<u64>(),
            self.watch.watchers.iter().map(|w| w.compacted_gaps).sum::<usize>(),
            self.leases.leases_granted,
            self.leases.expired,
            self.leases.anomalies_total,
            self.violations.iter().map(|v| format!("\n  {v}")).collect::<String>(),
        )
    }
}

/// Runs one seed on a fresh current-thread runtime with a paused clock (call it from a
/// thread that is not running a tokio runtime).
pub fn run(spec: &SimSpec) -> Result<SimReport, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(SimError::Runtime)?;
    rt.block_on(run_on_runtime(spec.clone()))
}

/// How long the healed cluster gets to converge before that counts as a violation.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// How often running replicas are compared.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long after the final revision is announced the watchers get to reach it.
const WATCH_TAIL: Duration = Duration::from_secs(10);
/// How long after the clients stop the watchers run at most (the final revision is announced
/// after the cluster converged and the lease clients' final phase, each well within this).
const WATCH_LIMIT: Duration = Duration::from_secs(120);

async fn run_on_runtime(spec: SimSpec) -> Result<SimReport, SimError> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let invariants = Arc::new(Invariants::default());
    let net_seed = rand::Rng::random(&mut rng);
    let cluster = Arc::new(SimCluster::start(spec.members, net_seed, invariants.clone()).await?);
    let end = start + spec.duration;

    let sampler = {
        let (cluster, invariants) = (cluster.clone(), invariants.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                invariants.compare_replicas(&running(&cluster));
            }
        })
    };
    let clients = Arc::new(Clients {
        cluster: cluster.clone(),
        recorder: Recorder::new(),
        rng: Arc::new(Mutex::new(StdRng::seed_from_u64(rand::Rng::random(&mut rng)))),
        keys: spec.keys.max(1),
        clients: spec.clients.max(1),
        serializable_reads: spec.serializable_reads,
        last_value: AtomicU64::new(0),
    });
    let (final_tx, final_rx) = tokio::sync::watch::channel(None);
    let watcher_tasks: Vec<_> = (0..spec.members)
        .map(|slot| {
            let watcher = watchers::SimWatcher {
                cluster: cluster.clone(),
                slot,
                clock: start,
                deadline: end + WATCH_LIMIT,
                tail: WATCH_TAIL,
                final_revision: final_rx.clone(),
                skip_on_resume: spec.lossy_watch_resume,
            };
            tokio::spawn(watcher.run())
        })
        .collect();
    let lease_spec = LeaseSpec::new(leases::PREFIX, rand::Rng::random(&mut rng));
    let lease_recorder = LeaseRecorder::new(&lease_spec, start);
    let lease_task = {
        let apis = (0..lease_spec.clients)
            .map(|c| leases::SimLeaseApi {
                cluster: cluster.clone(),
                slot: c % spec.members,
                reads_miss: spec.lease_reads_miss,
            })
            .collect();
        let (lease_spec, recorder) = (lease_spec.clone(), lease_recorder.clone());
        tokio::spawn(async move { lease::run_with(apis, &lease_spec, &recorder, end).await })
    };
    let client_tasks: Vec<_> =
        (0..clients.clients).map(|i| tokio::spawn(clients.clone().run(i, end))).collect();
    let nemesis =
        faults::run(cluster.clone(), StdRng::seed_from_u64(rand::Rng::random(&mut rng)), start, end);
    let faults = nemesis.await;
    for t in client_tasks {
        let _ = t.await;
    }
    let applied = match faults {
        Ok(f) => f,
        Err(e) => {
            sampler.abort();
            watcher_tasks.iter().for_each(|t| t.abort());
            lease_task.abort();
            cluster.stop_all().await;
            return Err(e);
        }
    };

    converge(&cluster, &invariants).await;
    sampler.abort();
    invariants.compare_replicas(&running(&cluster));
    clients.final_reads(u64::MAX / 2).await;
    let history = clients.recorder.history();
    // The lease clients' final phase reads until every key is gone or past its deadline.
    let lease_ops = match lease_task.await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => {
            invariants.violation(format!("the lease clients did not run: {e}"));
            LeaseStats::default()
        }
        Err(e) => {
            invariants.violation(format!("a lease client task failed: {e}"));
            LeaseStats::default()
        }
    };
    let leases = lease::check(&lease_recorder.history());
    let final_revision = final_revision(&cluster).await;
    match final_revision {
        Ok(revision) => {
            let _ = final_tx.send(Some(revision));
        }
        // The watchers run to their deadline; the check below reports the run as not valid.
        Err(ref e) => invariants.violation(format!("no final revision for the watchers: {e}")),
    }
    let mut logs = Vec::with_capacity(watcher_tasks.len());
    for t in watcher_tasks {
        match t.await {
            Ok(log) => logs.push(log),
            Err(e) => invariants.violation(format!("a watcher task failed: {e}")),
        }
    }
    cluster.stop_all().await;
    let watch = crate::watch::check_watches(&logs, &history, final_revision.unwrap_or(0));

    let verdict = check_registers(&history, &CheckLimits::default())?;
    let summary = invariants.summary();
    let mut violations = summary.violations;
    for key in &verdict.keys {
        if let crate::checker::KeyOutcome::NotLinearizable(anomaly) = &key.outcome {
            violations.push(format!("key {} is not linearizable: {}", key.key, anomaly.explanation));
        }
    }
    violations
        .extend(leases.anomalies.iter().map(|a| format!("lease: {:?} on {}: {}", a.kind, a.key, a.detail)));
    violations.extend(watch.anomalies.iter().map(|a| {
        let watcher = a.watcher.map_or_else(|| "watchers".to_string(), |w| format!("watcher {w}"));
        format!("watch: {:?} ({watcher}): {}", a.kind, a.explanation)
    }));
    violations.extend(watch.watchers.iter().filter_map(|w| {
        w.fell_short.as_ref().map(|why| format!("watcher {} fell short: {why}", w.endpoint))
    }));
    Ok(SimReport {
        seed: spec.seed,
        members: spec.members,
        virtual_ms: start.elapsed().as_millis() as u64,
        faults: applied.faults,
        membership: applied.membership,
        ops: verdict.ops,
        linearizable: verdict.valid,
        watch,
        lease_ops,
        leases,
        violations,
        highest_term: summary.highest_term,
        terms_with_two_leaders: summary.terms_with_two_leaders,
        replica_samples: summary.replica_samples,
        messages: cluster.net.counts(),
        history_digest: digest(&history),
        history,
    })
}

/// The store's revision after the run, by a linearizable count of the clients' keys through
/// the leader.
async fn final_revision(cluster: &SimCluster) -> Result<i64, String> {
    let store = cluster.leader().and_then(|i| cluster.store(i)).ok_or("no leader")?;
    let req =
        RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::Prefix(watchers::PREFIX.into())) };
    match tokio::time::timeout(OP_TIMEOUT, store.range(req)).await {
        Ok(Ok(r)) => Ok(r.header.revision),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

/// The running members with their ids.
fn running(cluster: &SimCluster) -> Vec<(u64, flotilla_raft_store::RaftStore)> {
    cluster.running().into_iter().filter_map(|i| cluster.store(i).map(|s| (s.id(), s))).collect()
}

/// Waits until every slot's member runs and is a voter (the leader's committed membership is
/// exactly them) and has applied the leader's whole log, then compares their state digests;
/// not getting there within [`CONVERGE_WITHIN`] is a violation too.
async fn converge(cluster: &SimCluster, invariants: &Invariants) {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let stores = running(cluster);
        let leader_log = cluster
            .leader()
            .and_then(|l| cluster.store(l))
            .and_then(|s| s.raft().metrics().borrow_watched().last_log_index);
        let applied: Vec<Option<u64>> = stores
            .iter()
            .map(|(_, s)| s.raft().metrics().borrow_watched().last_applied.as_ref().map(|l| l.index))
            .collect();
        let whole = membership::whole(cluster);
        if stores.len() == cluster.len()
            && whole.is_ok()
            && leader_log.is_some()
            && applied.iter().all(|a| *a == leader_log)
        {
            let digests: Vec<(u64, [u8; 32])> =
                stores.iter().map(|(id, s)| (*id, s.state_digest())).collect();
            if digests.iter().any(|(_, d)| *d != digests[0].1) {
                let short: Vec<(u64, String)> = digests.iter().map(|(id, d)| (*id, hex_prefix(d))).collect();
                invariants.violation(format!(
                    "members differ at applied index {leader_log:?}: state digests {short:?}"
                ));
            }
            return;
        }
        if Instant::now() >= deadline {
            let members = whole.err().unwrap_or_else(|| "every slot's member a voter".into());
            invariants.violation(format!(
                "not converged {CONVERGE_WITHIN:?} after healing: leader's last log index {leader_log:?}, applied {applied:?}, {members}"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex_prefix(d: &[u8; 32]) -> String {
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn digest(history: &History) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for e in &history.events {
        h.update(serde_json::to_vec(e).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
