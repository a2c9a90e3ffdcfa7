//! The simulation's nemesis: a seeded schedule of partitions, leader isolation, lossy and
//! slow links, member stops and restarts and forced snapshots, each followed by a heal.

use std::sync::Arc;
use std::time::Duration;

use flotilla_raft_store::SimFaults;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use super::SimError;
use super::cluster::{SimCluster, id_of};

/// One fault applied, at a virtual time since the start.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FaultEvent {
    /// Milliseconds of virtual time since the run started.
    pub at_ms: u64,
    /// What was done.
    pub what: String,
}

/// Applies faults until `end`, then heals everything.
pub(crate) async fn run(
    cluster: Arc<SimCluster>,
    mut rng: StdRng,
    start: Instant,
    end: Instant,
) -> Result<Vec<FaultEvent>, SimError> {
    let mut log = Vec::new();
    let n = cluster.len();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let what = match rng.random_range(0..6) {
            0 => {
                let mut all: Vec<usize> = (0..n).collect();
                all.shuffle(&mut rng);
                let cut = rng.random_range(1..=n / 2);
                let (minority, majority) = all.split_at(cut);
                let ids = |v: &[usize]| v.iter().map(|&i| id_of(i)).collect::<Vec<_>>();
                cluster.net.partition(&ids(minority), &ids(majority));
                format!("partition {:?} from {:?}", ids(minority), ids(majority))
            }
            1 => match cluster.leader() {
                Some(l) => {
                    let rest: Vec<u64> = (0..n).filter(|&i| i != l).map(id_of).collect();
                    cluster.net.partition(&[id_of(l)], &rest);
                    format!("isolate leader {}", id_of(l))
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
                // At most a minority down at once, so the cluster can still make progress.
                let running = cluster.running();
                let down = n - running.len();
                if down < (n - 1) / 2 && !running.is_empty() {
                    let victim = running[rng.random_range(0..running.len())];
                    cluster.stop(victim).await;
                    format!("stop member {}", id_of(victim))
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
                        built.push((id_of(i), index));
                    }
                }
                format!("snapshot and purge the log: (member, index) {built:?}")
            }
            _ => {
                let heal = heal(&cluster).await?;
                format!("heal: {heal}")
            }
        };
        log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what });
        // Faults hold for a while, then everything heals and the cluster gets a quiet spell.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        if rng.random_bool(0.5) {
            let heal = heal(&cluster).await?;
            log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what: format!("heal: {heal}") });
        }
    }
    let heal = heal(&cluster).await?;
    log.push(FaultEvent { at_ms: start.elapsed().as_millis() as u64, what: format!("final heal: {heal}") });
    Ok(log)
}

/// Restores every link and restarts every stopped member; says what it restarted.
pub(crate) async fn heal(cluster: &SimCluster) -> Result<String, SimError> {
    cluster.net.heal();
    cluster.net.set_faults(SimFaults::default());
    let mut restarted = Vec::new();
    for i in 0..cluster.len() {
        if cluster.store(i).is_none() {
            cluster.open(i).await?;
            restarted.push(id_of(i));
        }
    }
    Ok(if restarted.is_empty() { "links".to_string() } else { format!("links, restarted {restarted:?}") })
}
