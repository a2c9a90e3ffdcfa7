//! Applying a [`Schedule`] to a running cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{FaultKind, Schedule, Step, membership};
use crate::cluster::Cluster;

/// How long a leader partition looks for a leader before it is recorded as failed.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// One action the nemesis took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisRecord {
    /// When the action had taken effect (or failed), in nanoseconds since the run's start.
    pub time_ns: u64,
    /// What it did: `cut [n0,n1] | [n2]`, `cut [n1] | [n0,n2] (leader n1)`,
    /// `cut [n0] | [n2] (bridge n1)`, `cut to ring [n0,n2,n1,n3]`, `kill n2`, `restart n2`,
    /// `pause n1`, `resume n1`, `remove n1 (id 2)`, `rejoin n1 (id 31)`,
    /// `cut [n1] | [n0,n2] (to snapshot)`, `snapshot n0`, `skew n2 clock -1234s`, `unskew n2`,
    /// `lose 25.0% links of n1`, `throttle to 80 packets/s links of n0`,
    /// `power loss [n0,n1,n2]` then `power loss n1: metadata as synced, files reverted 2 …`
    /// per member, or `heal`.
    pub action: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What a fault left behind that healing undoes.
enum Applied {
    Nothing,
    Cuts,
    Killed(usize),
    Paused(usize),
    Removed(usize),
    Skewed(usize),
    Added(usize),
    PoweredOff(Vec<usize>),
}

struct Recorder {
    start: Instant,
    records: Vec<NemesisRecord>,
}

impl Recorder {
    fn record(&mut self, action: String, result: Result<(), String>) {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let time_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if let Err(e) = &result {
            tracing::warn!(action, error = %e, "nemesis action failed");
        } else {
            tracing::info!(action, "nemesis");
        }
        self.records.push(NemesisRecord { time_ns, action, error: result.err() });
    }
}

/// Applies `schedule` to `cluster`, its times counted from `start`: each fault at its time,
/// healed when its duration is over (cuts healed, a killed member restarted, a paused one
/// resumed, a removed one rejoined as a new member). A fault that cannot be applied or healed
/// is recorded with its error and the run goes on. At the end everything is healed: the
/// network, paused members resumed, members this nemesis killed restarted, removed members
/// rejoined. Returns once the last fault is healed.
pub async fn run(cluster: &mut Cluster, schedule: &Schedule, start: Instant) -> Vec<NemesisRecord> {
    let (_never, stop) = watch::channel(false);
    run_until(cluster, schedule, start, stop).await
}

/// [`run`], but stops early, healing the current fault at once, when `stop` holds or changes
/// to `true` (a dropped sender only means no early stop).
pub async fn run_until(
    cluster: &mut Cluster,
    schedule: &Schedule,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<NemesisRecord> {
    let mut rec = Recorder { start, records: Vec::new() };
    let mut killed = BTreeSet::new();
    for step in &schedule.steps {
        if !wait_until(start + step.at, &mut stop).await {
            break;
        }
        let applied = apply(cluster, step, &mut rec, &mut killed).await;
        let mut stopped = false;
        if let (FaultKind::Snapshot, Some(&isolated)) = (step.kind, step.targets.first()) {
            stopped = !wait_until(start + step.at + step.duration / 2, &mut stop).await;
            if !stopped {
                snapshot_others(cluster, isolated, &mut rec).await;
            }
        }
        let stopped = stopped || !wait_until(start + step.end(), &mut stop).await;
        undo(cluster, applied, &mut rec, &mut killed).await;
        if stopped {
            break;
        }
    }
    heal_all(cluster, &mut rec, &mut killed).await;
    rec.records
}

/// Sleeps until `deadline`: `true`, or `false` as soon as `stop` is `true`.
async fn wait_until(deadline: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow_and_update() {
        return false;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return true,
            changed = stop.changed() => match changed {
                Ok(()) if *stop.borrow_and_update() => return false,
                Ok(()) => {}
                Err(_) => {
                    tokio::time::sleep_until(deadline).await;
                    return true;
                }
            },
        }
    }
}

async fn apply(
    cluster: &mut Cluster,
    step: &Step,
    rec: &mut Recorder,
    killed: &mut BTreeSet<usize>,
) -> Applied {
    let members = cluster.len();
    if step.kind.is_partition() {
        let leader = match step.kind {
            FaultKind::PartitionLeader => match find_leader(cluster).await {
                Some(l) => Some(l),
                None => {
                    let why = format!("no leader that a majority of members agree on within {LEADER_WAIT:?}");
                    rec.record(step.describe(members, None), Err(why));
                    return Applied::Nothing;
                }
            },
            _ => None,
        };
        let mut result = Ok(());
        for (a, b) in step.links_to_cut(members, leader) {
            if let Err(e) = cluster.network().cut(a, b).await {
                result = Err(e.to_string());
                break;
            }
        }
        rec.record(step.describe(members, leader), result);
        // Even a failed cut may have left rules behind: always heal.
        return Applied::Cuts;
    }
    let Some(&target) = step.targets.first() else {
        rec.record(step.describe(members, None), Err("the step names no member".to_string()));
        return Applied::Nothing;
    };
    if let Some(how) = step.degradation() {
        let mut result = Ok(());
        for (a, b) in step.links_to_degrade(members) {
            if let Err(e) = cluster.network().degrade(a, b, how).await {
                result = Err(e.to_string());
                break;
            }
        }
        rec.record(step.describe(members, None), result);
        // Even a failed degradation may have left rules behind: always heal.
        return Applied::Cuts;
    }
    if step.kind == FaultKind::Clock {
        let result = cluster.skew_clock(target, step.clock_offset_secs()).map_err(|e| format!("{e:#}"));
        let applied = if result.is_ok() { Applied::Skewed(target) } else { Applied::Nothing };
        rec.record(step.describe(members, None), result);
        return applied;
    }
    if step.kind == FaultKind::Grow {
        let (action, result) = membership::add(cluster, target).await;
        rec.record(action, result);
        // A failed add may still have joined it: heal_all removes whatever spare is a member.
        return if cluster.is_removed(target) { Applied::Nothing } else { Applied::Added(target) };
    }
    if step.kind == FaultKind::PowerLoss {
        return power_loss(cluster, step, rec, killed).await;
    }
    if step.kind == FaultKind::Membership {
        let (action, result) = membership::remove(cluster, target).await;
        rec.record(action, result);
        return if cluster.is_removed(target) { Applied::Removed(target) } else { Applied::Nothing };
    }
    let (result, applied) = match step.kind {
        FaultKind::Kill => match cluster.kill(target).await {
            Ok(()) => {
                killed.insert(target);
                (Ok(()), Applied::Killed(target))
            }
            Err(e) => (Err(format!("{e:#}")), Applied::Nothing),
        },
        _ => match cluster.pause(target).await {
            Ok(()) => (Ok(()), Applied::Paused(target)),
            Err(e) => (Err(format!("{e:#}")), Applied::Nothing),
        },
    };
    rec.record(step.describe(members, None), result);
    applied
}

/// Kills every target first (a power cut is simultaneous), then makes each disk lose what
/// its member had not synced.
async fn power_loss(
    cluster: &mut Cluster,
    step: &Step,
    rec: &mut Recorder,
    killed: &mut BTreeSet<usize>,
) -> Applied {
    let members = cluster.len();
    let mut result = Ok(());
    for &t in &step.targets {
        if cluster.is_running(t)
            && let Err(e) = cluster.kill(t).await
        {
            result = Err(format!("{e:#}"));
        }
    }
    rec.record(step.describe(members, None), result);
    let mut down = Vec::new();
    for &t in &step.targets {
        if cluster.is_running(t) || cluster.is_removed(t) {
            continue;
        }
        killed.insert(t);
        down.push(t);
        match cluster.power_loss(t, step.crash_seed(t)).await {
            Ok(report) => rec.record(format!("power loss n{t}: {report}"), Ok(())),
            Err(e) => rec.record(format!("power loss n{t}"), Err(format!("{e:#}"))),
        }
    }
    Applied::PoweredOff(down)
}

/// Sends SIGUSR1 to every running, unpaused member but `isolated`: each builds a snapshot and
/// purges its log up to it (see [`FaultKind::Snapshot`]).
async fn snapshot_others(cluster: &Cluster, isolated: usize, rec: &mut Recorder) {
    for i in (0..cluster.len()).filter(|&i| i != isolated) {
        if cluster.is_running(i) && !cluster.is_paused(i) {
            let result = cluster.compact_log(i).await.map_err(|e| format!("{e:#}"));
            rec.record(format!("snapshot n{i}"), result);
        }
    }
}

/// Polls [`Cluster::leader`] for up to [`LEADER_WAIT`] (members may be mid-election, e.g.
/// right after a paused member woke up).
async fn find_leader(cluster: &Cluster) -> Option<usize> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        if let Some(l) = cluster.leader().await {
            return Some(l);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn undo(cluster: &mut Cluster, applied: Applied, rec: &mut Recorder, killed: &mut BTreeSet<usize>) {
    match applied {
        Applied::Nothing => {}
        Applied::Cuts => {
            let result = cluster.network().heal().await.map_err(|e| e.to_string());
            rec.record("heal".to_string(), result);
        }
        Applied::Killed(i) => restart(cluster, &[i], rec, killed).await,
        Applied::Paused(i) => {
            let result = cluster.resume(i).await.map_err(|e| format!("{e:#}"));
            rec.record(format!("resume n{i}"), result);
        }
        Applied::Removed(i) => rejoin(cluster, i, rec, killed).await,
        Applied::Skewed(i) => unskew(cluster, i, rec),
        Applied::Added(i) => shrink(cluster, i, rec).await,
        Applied::PoweredOff(down) => restart(cluster, &down, rec, killed).await,
    }
}

/// Removes spare host `i` from the membership again and stops it.
async fn shrink(cluster: &mut Cluster, i: usize, rec: &mut Recorder) {
    let (action, result) = membership::remove(cluster, i).await;
    rec.record(action, result);
}

/// Sets member `i`'s wall clock right again.
fn unskew(cluster: &mut Cluster, i: usize, rec: &mut Recorder) {
    let result = cluster.skew_clock(i, 0).map_err(|e| format!("{e:#}"));
    rec.record(format!("unskew n{i}"), result);
}

async fn rejoin(cluster: &mut Cluster, i: usize, rec: &mut Recorder, killed: &mut BTreeSet<usize>) {
    let (action, result) = membership::rejoin(cluster, i).await;
    if result.is_ok() {
        killed.remove(&i);
    }
    rec.record(action, result);
}

/// Restarts killed `members`, side by side.
async fn restart(cluster: &mut Cluster, members: &[usize], rec: &mut Recorder, killed: &mut BTreeSet<usize>) {
    for (i, result) in cluster.restart_all(members).await {
        if result.is_ok() {
            killed.remove(&i);
        }
        rec.record(format!("restart n{i}"), result.map_err(|e| format!("{e:#}")));
    }
}

/// Heals whatever an earlier failure left: cut links, paused members, killed members, removed
/// members (rejoined last: they join through running members), spare hosts still members
/// (removed again).
async fn heal_all(cluster: &mut Cluster, rec: &mut Recorder, killed: &mut BTreeSet<usize>) {
    if !cluster.network().cuts().is_empty() || !cluster.network().degraded().is_empty() {
        let result = cluster.network().heal().await.map_err(|e| e.to_string());
        rec.record("heal".to_string(), result);
    }
    for i in 0..cluster.len() {
        if cluster.clock_offset(i) != 0 {
            unskew(cluster, i, rec);
        }
        if cluster.is_paused(i) {
            let result = cluster.resume(i).await.map_err(|e| format!("{e:#}"));
            rec.record(format!("resume n{i}"), result);
        }
    }
    let down: Vec<usize> =
        killed.iter().copied().filter(|&i| !cluster.is_running(i) && !cluster.is_removed(i)).collect();
    restart(cluster, &down, rec, killed).await;
    for i in 0..cluster.len() {
        if cluster.is_removed(i) && !cluster.is_spare(i) {
            rejoin(cluster, i, rec, killed).await;
        }
    }
    for i in 0..cluster.len() {
        if cluster.is_spare(i) && !cluster.is_removed(i) {
            shrink(cluster, i, rec).await;
        }
    }
}
