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
//! runs, [`crate::checker`]); Raft invariants while it runs ([`invariants`]: terms never go
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
pub mod membership;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft_store::SimNetCounts;
use openraft::type_config::async_runtime::WatchReceiver as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::time::Instant;

use crate::checker::{CheckLimits, OpCounts, Validity, check_registers};
use crate::history::{History, Recorder};
use client::Clients;
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
    /// Broken invariants, and a non-linearizable key's anomaly, if any.
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
            "seed {}: {} ({} members, {:.1} s simulated, {} faults, {} removed and {} rejoined ({} retries), {} ops: {} ok, {} fail, {} info; term {}, {} messages, {} lost; {} replica checks){}",
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
            cluster.stop_all().await;
            return Err(e);
        }
    };

    converge(&cluster, &invariants).await;
    sampler.abort();
    invariants.compare_replicas(&running(&cluster));
    clients.final_reads(u64::MAX / 2).await;
    let history = clients.recorder.history();
    cluster.stop_all().await;

    let verdict = check_registers(&history, &CheckLimits::default())?;
    let summary = invariants.summary();
    let mut violations = summary.violations;
    for key in &verdict.keys {
        if let crate::checker::KeyOutcome::NotLinearizable(anomaly) = &key.outcome {
            violations.push(format!("key {} is not linearizable: {}", key.key, anomaly.explanation));
        }
    }
    Ok(SimReport {
        seed: spec.seed,
        members: spec.members,
        virtual_ms: start.elapsed().as_millis() as u64,
        faults: applied.faults,
        membership: applied.membership,
        ops: verdict.ops,
        linearizable: verdict.valid,
        violations,
        highest_term: summary.highest_term,
        terms_with_two_leaders: summary.terms_with_two_leaders,
        replica_samples: summary.replica_samples,
        messages: cluster.net.counts(),
        history_digest: digest(&history),
        history,
    })
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
