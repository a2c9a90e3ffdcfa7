//! The simulation's nemesis: a seeded schedule of partitions, leader isolation, lossy and
//! slow links, member stops and restarts, forced snapshots and membership changes
//! ([`super::membership`]), each followed by a heal.

use std::sync::Arc;
use std::time::Duration;

use flotilla_raft_store::SimFaults;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use super::SimError;
use super::cluster::SimCluster;
use super::membership::{MembershipCounts, MembershipFault};

/// How long the final heal may take to bring every member back as a voter.
const RESTORE_WITHIN: Duration = Duration::from_secs(30);

/// One fault applied, at a virtual time since the start.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FaultEvent {
    /// Milliseconds of virtual time since the run started.
    pub at_ms: u64,
    /// What was done.
    pub what: String,
}

/// What the nemesis did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The faults, in order.
    pub(crate) faults: Vec<FaultEvent>,
    /// The membership changes made.
    pub(crate) membership: MembershipCounts,
}

/// Applies faults until `end`, then heals everything, every member back as a voter.
pub(crate) async fn run(
    cluster: Arc<SimCluster>,
    mut rng: StdRng,
    start: Instant,
    end: Instant,
) -> Result<Applied, SimError> {
    let mut log = Vec::new();
    let mut membership = MembershipFault::default();
    let n = cluster.len();
    let ids = |v: &[usize]| v.iter().map(|&i| cluster.id(i)).collect::<Vec<_>>();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let what = match rng.random_range(0..7) {
            0 => {
                let mut all: Vec<usize> = (0..n).collect();
                all.shuffle(&mut rng);
                let cut = rng.random_range(1..=n / 2);
                let (minority, majority) = all.split_at(cut);
                cluster.net.partition(&ids(minority), &ids(majority));
                format!("partition {:?} from {:?}", ids(minority), ids(majority))
            }
            1 => match cluster.leader() {
                Some(l) => {
                    let rest: Vec<usize> = (0..n).filter(|&i| i != l).collect();
                    cluster.net.partition(&ids(&[l]), &ids(&rest));
                    format!("isolate leader {}", cluster.id(l))
                }
                None => "isolate leader: none known".to_string(),
            },
            2 => {
                let faults = SimFaults {
                    max_delay: Duration::from_millis(rng.random_range(1..300)),
                    request_loss_per_mille: rng.random_range(0..400),
                    reply_loss_per_mille: rng.random_range(0..400),
                };
                cluster.net.set_faults(faults);
                format!(
                    "links: delay up to {:?}, {}‰ requests and {}‰ replies lost",
                    faults.max_delay, faults.request_loss_per_mille, faults.reply_loss_per_mille
                )
            }
            3 => {
                // At most a minority down at once, so the cluster can still make progress; a
                // member out of the voters counts as down. The victim is drawn whatever
                // happens, so that the draws that follow do not depend on how the membership
                // changes went.
                let pick: usize = rng.random_range(0..n.max(1) * 64);
                let running = cluster.running();
                let out = membership.out_slot();
                let down = (0..n).filter(|i| !running.contains(i) || out == Some(*i)).count();
                if down < (n - 1) / 2 && !running.is_empty() {
                    let victim = running[pick % running.len()];
                    let id = cluster.id(victim);
                    cluster.stop(victim).await;
                    format!("stop member {id}")
                } else {
                    "stop: a minority is down already".to_string()
                }
            }
            4 => {
                let running = cluster.running();
                let mut built = Vec::new();
                for i in running {
                    let Some(store) = cluster.store(i) else { continue };
                    if let Ok(Some(index)) = store.compact_log(Duration::from_secs(5)).await {
                        built.push((store.id(), index));
                    }
                }
                format!("snapshot and purge the log: (member, index) {built:?}")
            }
            5 => {
                // Drawn whatever the membership's state, so that the draws that follow do not
                // depend on how earlier changes went.
                let pick: usize = rng.random_range(0..n.max(1) * 64);
                membership.fault(&cluster, pick).await?
            }
            _ => {
                let heal = heal(&cluster, &mut membership).await?;
                format!("heal: {heal}")
            }
        };
        log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what });
        // Faults hold for a while, then everything heals and the cluster gets a quiet spell.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        if rng.random_bool(0.5) {
            let heal = heal(&cluster, &mut membership).await?;
            log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what: format!("heal: {heal}") });
        }
    }
    let mut heal = heal(&cluster, &mut membership).await?;
    let restored = membership.restore(&cluster, RESTORE_WITHIN).await?;
    if !restored.is_empty() {
        heal = format!("{heal}; {restored}");
    }
    log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what: format!("final heal: {heal}") });
    Ok(Applied { faults: log, membership: membership.counts() })
}

/// Restores every link, restarts every stopped member (but a removed one) and takes the
/// membership fault's next step, if a member is out; says what it did.
pub(crate) async fn heal(cluster: &SimCluster, membership: &mut MembershipFault) -> Result<String, SimError> {
    cluster.net.heal();
    cluster.net.set_faults(SimFaults::default());
    let mut restarted = Vec::new();
    for i in 0..cluster.len() {
        if cluster.store(i).is_none() && !membership.keeps_down(cluster, i) {
            cluster.open(i).await?;
            restarted.push(cluster.id(i));
        }
    }
    let mut did =
        if restarted.is_empty() { "links".to_string() } else { format!("links, restarted {restarted:?}") };
    if let Some(step) = membership.advance(cluster).await? {
        did = format!("{did}; {step}");
    }
    Ok(did)
}
