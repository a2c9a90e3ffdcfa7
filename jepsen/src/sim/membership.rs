//! The membership fault, as the real runs do it (`nemesis/membership.rs`): a voter is
//! removed from the membership and stopped; at a later fault or heal it comes back as a new
//! member, on a fresh data directory with a new raft id (ids are never reused) at its old
//! address, added as a learner and, once caught up, promoted to voter.
//!
//! One member is out of the voters at a time, and only when the voters left that run are a
//! majority of the original members. Changes are asked of the member that leads, through the
//! store's [`add_learner`](RaftStore::add_learner) and
//! [`change_voters`](RaftStore::change_voters); under faults they may fail or time out (and
//! then may still take effect), so each opportunity first looks at the leader's committed
//! membership and does what is left, and a failure is recorded and retried at the next
//! opportunity. The final heal keeps at it until every slot is a voter again.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_raft_store::{NodeId, RaftStore};
use openraft::Instant as _;
use openraft::type_config::async_runtime::WatchReceiver as _;
use serde::Serialize;
use tokio::time::Instant;

use super::SimError;
use super::cluster::SimCluster;

/// How long one membership call may take before it counts as unanswered (it may still take
/// effect).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new learner gets to catch up before its promotion is left to the next
/// opportunity.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(5);
/// Log entries a learner may lag behind the leader when promoted (the store's rule).
const MAX_PROMOTE_LAG: u64 = 100;
/// How long a step waits for a leader.
const LEADER_WITHIN: Duration = Duration::from_secs(2);
/// How recently a leader must have heard from a quorum to be asked for a change.
const QUORUM_ACKED_WITHIN: Duration = Duration::from_millis(500);
/// The pause between attempts of the final heal.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How many membership changes a run made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MembershipCounts {
    /// Voters removed (and stopped).
    pub removed: u64,
    /// Removed members back as voters, with a new id.
    pub rejoined: u64,
    /// Attempts that failed or were not answered in time, retried later.
    pub retried: u64,
}

/// The member out of the voters: being removed, or removed and coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Out {
    slot: usize,
    /// Its raft id when it was picked.
    old: NodeId,
    /// Whether the removal is done (the member is then stopped until it comes back).
    removed: bool,
}

/// The membership fault's state across a run.
#[derive(Debug, Default)]
pub(crate) struct MembershipFault {
    out: Option<Out>,
    counts: MembershipCounts,
}

/// The slots that may be removed now: those whose removal leaves running voters that are a
/// majority of all `n` original members (a removed member is stopped).
pub(crate) fn removable(n: usize, running: &[usize]) -> Vec<usize> {
    (0..n).filter(|v| running.iter().filter(|&r| r != v).count() > n / 2).collect()
}

/// The voters of `m` if it is a single (not joint) configuration.
fn uniform_voters(m: &openraft::Membership<NodeId, openraft::BasicNode>) -> Option<BTreeSet<NodeId>> {
    match m.get_joint_config().as_slice() {
        [voters] => Some(voters.clone()),
        _ => None,
    }
}

/// The slot and store of a leader that heard from a quorum lately (a leader that did not
/// refuses membership changes: its lease expired), waiting up to [`LEADER_WITHIN`] for one.
async fn leader(cluster: &SimCluster) -> Result<(usize, RaftStore), String> {
    let deadline = Instant::now() + LEADER_WITHIN;
    loop {
        let leader = cluster.leader().and_then(|l| cluster.store(l).map(|s| (l, s)));
        if let Some((l, store)) = leader {
            let acked = store.raft().metrics().borrow_watched().last_quorum_acked;
            if acked.is_some_and(|at| at.elapsed() <= QUORUM_ACKED_WITHIN) {
                return Ok((l, store));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader with a quorum within {LEADER_WITHIN:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `id` is in no membership the leader knows (committed or not): it was removed.
fn is_gone(store: &RaftStore, id: NodeId) -> bool {
    let m = store.raft().metrics().borrow_watched().clone();
    let gone = |c: &openraft::Membership<NodeId, openraft::BasicNode>| c.get_node(&id).is_none();
    gone(m.committed_membership_config.membership()) && gone(m.membership_config.membership())
}

/// Whether the leader replicated to `id` to within [`MAX_PROMOTE_LAG`] of its log.
fn caught_up(store: &RaftStore, id: NodeId) -> bool {
    let m = store.raft().metrics().borrow_watched().clone();
    let matched = m.replication.as_ref().and_then(|r| r.get(&id)).map(|l| l.as_ref().map(|l| l.index()));
    match (matched, m.last_log_index) {
        (Some(Some(matched)), Some(last)) => last.saturating_sub(matched) <= MAX_PROMOTE_LAG,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Runs a membership call with [`CALL_TIMEOUT`]; the error says what happened.
async fn call<F>(what: &str, f: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), flotilla_core::store::Error>>,
{
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
    }
}

impl MembershipFault {
    /// What the run did.
    pub(crate) fn counts(&self) -> MembershipCounts {
        self.counts
    }

    /// The slot out of the voters (being removed, removed, or coming back), if any.
    pub(crate) fn out_slot(&self) -> Option<usize> {
        self.out.map(|o| o.slot)
    }

    /// Whether a heal must leave slot `i` stopped: it was removed and has not come back.
    pub(crate) fn keeps_down(&self, cluster: &SimCluster, i: usize) -> bool {
        self.out.is_some_and(|o| o.slot == i && o.removed && cluster.id(i) == o.old)
    }

    /// The fault: with no member out, removes one (`pick`, a random number, chooses which);
    /// else takes the next step of the one out. What was done.
    pub(crate) async fn fault(&mut self, cluster: &SimCluster, pick: usize) -> Result<String, SimError> {
        if self.out.is_some() {
            return Ok(self.advance(cluster).await?.unwrap_or_default());
        }
        let candidates = removable(cluster.len(), &cluster.running());
        if candidates.is_empty() {
            return Ok("membership: no member can be removed now (too many are down)".to_string());
        }
        let slot = candidates[pick % candidates.len()];
        self.out = Some(Out { slot, old: cluster.id(slot), removed: false });
        Ok(self.advance(cluster).await?.unwrap_or_default())
    }

    /// Takes the next step of the member out, if one is: its removal, or its return. What
    /// was done (`None`: no member is out).
    pub(crate) async fn advance(&mut self, cluster: &SimCluster) -> Result<Option<String>, SimError> {
        let Some(out) = self.out else { return Ok(None) };
        let done =
            if out.removed { self.rejoin(cluster, out).await? } else { self.remove(cluster, out).await };
        let what = match done {
            Ok(what) => what,
            Err(why) => {
                self.counts.retried += 1;
                format!("{why}; retried later")
            }
        };
        Ok(Some(format!("membership: {what}")))
    }

    /// Takes steps until every slot is a voter again, or `within` passes. What was done.
    pub(crate) async fn restore(
        &mut self,
        cluster: &SimCluster,
        within: Duration,
    ) -> Result<String, SimError> {
        let deadline = Instant::now() + within;
        let mut steps = Vec::new();
        while self.out.is_some() {
            if let Some(step) = self.advance(cluster).await? {
                steps.push(step);
            }
            if self.out.is_none() {
                break;
            }
            if Instant::now() >= deadline {
                steps.push(format!("membership: not restored within {within:?}"));
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Ok(steps.join("; "))
    }

    /// Removes the member out through the leader, then stops it.
    async fn remove(&mut self, cluster: &SimCluster, out: Out) -> Result<String, String> {
        let id = out.old;
        let what = format!("remove member {id}");
        let (l, store) = leader(cluster).await.map_err(|e| format!("{what}: {e}"))?;
        let how = if is_gone(&store, id) {
            "found removed".to_string()
        } else {
            let voters: Vec<NodeId> =
                (0..cluster.len()).filter(|&i| i != out.slot).map(|i| cluster.id(i)).collect();
            call(&format!("{what} through leader {}", store.id()), store.change_voters(voters, false))
                .await?;
            format!("removed through leader {}", cluster.id(l))
        };
        cluster.stop(out.slot).await;
        self.out = Some(Out { removed: true, ..out });
        self.counts.removed += 1;
        Ok(format!("{what}: {how}, stopped"))
    }

    /// Brings the removed member back: a fresh data directory and a new id, added as a
    /// learner through the leader and promoted once caught up.
    async fn rejoin(&mut self, cluster: &SimCluster, out: Out) -> Result<Result<String, String>, SimError> {
        let mut did = Vec::new();
        if cluster.id(out.slot) == out.old {
            let id = cluster.renew(out.slot).await?;
            did.push(format!("member {} wiped, back as {id}", out.old));
        }
        if cluster.store(out.slot).is_none() {
            cluster.open(out.slot).await?;
        }
        let id = cluster.id(out.slot);
        let step = self.add_and_promote(cluster, out.slot, id).await;
        let done = step.is_ok();
        did.push(step.unwrap_or_else(|e| e));
        if done {
            self.out = None;
            self.counts.rejoined += 1;
        }
        let what = did.join(", ");
        Ok(if done { Ok(what) } else { Err(what) })
    }

    /// Adds `id` (slot `slot`) as a learner if it is not one yet, waits for it to catch up
    /// and makes every slot a voter.
    async fn add_and_promote(&self, cluster: &SimCluster, slot: usize, id: NodeId) -> Result<String, String> {
        let (_, store) = leader(cluster).await.map_err(|e| format!("add {id}: {e}"))?;
        let via = store.id();
        let member = |s: &RaftStore| {
            s.raft().metrics().borrow_watched().membership_config.membership().get_node(&id).is_some()
        };
        let mut did = Vec::new();
        if !member(&store) {
            call(
                &format!("add learner {id} through leader {via}"),
                store.add_learner(id, cluster.addr(slot)),
            )
            .await?;
            did.push(format!("added as a learner through leader {via}"));
        }
        let deadline = Instant::now() + CATCH_UP_WITHIN;
        while !caught_up(&store, id) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "learner {id} not caught up within {CATCH_UP_WITHIN:?} ({})",
                    did.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all: BTreeSet<NodeId> = cluster.ids().into_iter().collect();
        let voters =
            uniform_voters(store.raft().metrics().borrow_watched().committed_membership_config.membership());
        if voters.as_ref() != Some(&all) {
            call(&format!("promote {id} through leader {via}"), store.change_voters(all, false)).await?;
        }
        did.push(format!("promoted through leader {via}"));
        Ok(did.join(", "))
    }
}

/// Whether the leader's committed membership is exactly every slot's member, as voters: the
/// cluster is whole. `Err` describes the membership otherwise.
pub(crate) fn whole(cluster: &SimCluster) -> Result<(), String> {
    let store = cluster.leader().and_then(|l| cluster.store(l)).ok_or_else(|| "no leader".to_string())?;
    let m = store.raft().metrics().borrow_watched().committed_membership_config.clone();
    let all: BTreeSet<NodeId> = cluster.ids().into_iter().collect();
    let nodes: BTreeSet<NodeId> = m.membership().nodes().map(|(id, _)| *id).collect();
    if uniform_voters(m.membership()).as_ref() == Some(&all) && nodes == all {
        Ok(())
    } else {
        Err(format!("committed membership {:?}, not every slot's member {all:?} as voters", m.membership()))
    }
}

#[cfg(test)]
mod tests {
    use super::removable;

    #[test]
    fn a_removal_leaves_a_majority_of_the_original_members_running() {
        // Three members: only with all three running (the victim itself may be down).
        assert_eq!(removable(3, &[0, 1, 2]), vec![0, 1, 2]);
        assert_eq!(removable(3, &[0, 1]), vec![2], "only the stopped member");
        assert!(removable(3, &[0]).is_empty());
        // Five: four running leave three after any removal but of the stopped one.
        assert_eq!(removable(5, &[0, 1, 2, 3, 4]), vec![0, 1, 2, 3, 4]);
        assert_eq!(removable(5, &[0, 1, 2, 4]), vec![0, 1, 2, 3, 4]);
        assert_eq!(removable(5, &[0, 1, 2]), vec![3, 4]);
        assert!(removable(5, &[0, 1]).is_empty());
    }
}
