//! Membership changes: the rules shared by joining servers (`join.rs`) and the etcd Cluster
//! service (`etcd/cluster.rs`), and the leader's side of each change.
//!
//! The rules:
//!
//! - **Ids are never reused.** A new member's id is one above both the highest id in the
//!   membership and the leader's last log index. The entry that adds the member follows at a
//!   higher index, so every id handed out stays below the log's end, and a removed member's id
//!   is never handed out again (openraft's "node IDs must not be reused"; see
//!   `docs/operations.md`, "Membership", for the one exception, a cluster bootstrapped with
//!   ids above its log length).
//! - **An address keeps its id.** Adding an address that is already a member answers that
//!   member and changes nothing, so a retried registration or `MemberAdd` is harmless.
//! - **Promotion needs a caught-up learner**: its log is within [`MAX_PROMOTE_LAG`] entries
//!   of the leader's and it answered the leader recently.
//! - **A removal keeps a working quorum**: it is refused when it would leave no voter, or
//!   fewer voters that answered the leader recently than a quorum of those that remain
//!   (etcd's strict reconfiguration check). Otherwise the joint configuration could never
//!   commit and the cluster would stop taking writes.
//!
//! Changes run on the leader one at a time (under `Inner::join_lock`), are proposed only while
//! the membership is still the one they were decided on (openraft's `LastMembershipLogId`
//! precondition), and are bounded by the member's request timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver as _;
use openraft::{BasicNode, ChangeMembers, Instant as _, Membership, Precondition};
use serde::{Deserialize, Serialize};

use crate::store::Inner;
use crate::typ::NodeId;

/// Log entries a learner may still lag behind the leader when it is promoted.
pub(crate) const MAX_PROMOTE_LAG: u64 = 100;
/// A member that acknowledged the leader within this many election timeouts counts as
/// started (active) for the removal check.
const ACTIVE_ELECTION_TIMEOUTS: u64 = 2;

/// One member as the membership rules see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberView {
    /// The raft id.
    pub(crate) id: NodeId,
    /// The member-transport address.
    pub(crate) addr: String,
    /// Whether it votes (else it is a learner).
    pub(crate) voter: bool,
}

/// Every member of `m`, voters and learners, in id order.
pub(crate) fn views(m: &Membership<NodeId, BasicNode>) -> Vec<MemberView> {
    let voters: BTreeSet<NodeId> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, n)| MemberView { id: *id, addr: n.addr.clone(), voter: voters.contains(id) })
        .collect()
}

/// The id an address gets: the one it already has (`false`: nothing to add), or a new one
/// above every id in the membership and above the leader's last log index (`true`).
pub(crate) fn register_id(members: &[MemberView], addr: &str, last_log_index: Option<u64>) -> (NodeId, bool) {
    match members.iter().find(|m| m.addr == addr) {
        Some(m) => (m.id, false),
        None => {
            let highest = members.iter().map(|m| m.id).max().unwrap_or(0);
            (highest.max(last_log_index.unwrap_or(0)) + 1, true)
        }
    }
}

/// Whether a follower that matched the leader's log up to `matched` is close enough to the
/// leader's last index to become a voter.
pub(crate) fn caught_up(matched: Option<u64>, leader_last: Option<u64>, max_lag: u64) -> bool {
    match (matched, leader_last) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(m), Some(l)) => l.saturating_sub(m) <= max_lag,
    }
}

/// Why a membership change was not made (or may not have been).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum ChangeError {
    /// No member has the id.
    #[error("member {0} is not in the cluster")]
    NotFound(NodeId),
    /// Promoting a member that already votes.
    #[error("member {0} is a voter already; only learners are promoted")]
    NotLearner(NodeId),
    /// Promoting a learner that has not caught up (or does not answer).
    #[error("learner {id} is not in sync with the leader: {why}")]
    NotReady {
        /// The learner.
        id: NodeId,
        /// What is missing.
        why: String,
    },
    /// Removing the only voter.
    #[error("member {0} is the last voter; a cluster cannot remove its last voter")]
    LastVoter(NodeId),
    /// The voters left would not have a quorum of started members.
    #[error(
        "removing member {id} would leave {active} started voter(s), fewer than the {needed} a quorum of \
         the remaining voters needs"
    )]
    NotEnoughStarted {
        /// The member to remove.
        id: NodeId,
        /// Remaining voters that answered the leader recently.
        active: usize,
        /// A quorum of the remaining voters.
        needed: usize,
    },
    /// Nothing was done (no leader, leadership moved, another change in progress); the
    /// request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// The change was proposed but not confirmed in time: it may still take effect.
    #[error("{0}")]
    TimedOut(String),
    /// Refused for good (for example, no join key to forward the request with).
    #[error("{0}")]
    Refused(String),
}

/// A membership change, asked of the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Change {
    /// Add the member at this transport address as a learner (an address that is already a
    /// member is answered as it is).
    AddLearner(String),
    /// Remove a voter or learner.
    Remove(NodeId),
    /// Make a caught-up learner a voter.
    Promote(NodeId),
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Changed {
    /// The member added (or found); `None` for removals and promotions.
    pub(crate) member: Option<MemberView>,
    /// The membership after the change.
    pub(crate) members: Vec<MemberView>,
}

/// Whether removing `id` is allowed; `Ok(true)` for a voter, `Ok(false)` for a learner.
/// `active` holds the members that answered the leader recently (the leader included).
pub(crate) fn check_removal(
    members: &[MemberView],
    id: NodeId,
    active: &BTreeSet<NodeId>,
) -> Result<bool, ChangeError> {
    let member = members.iter().find(|m| m.id == id).ok_or(ChangeError::NotFound(id))?;
    if !member.voter {
        return Ok(false);
    }
    let remaining: Vec<NodeId> = members.iter().filter(|m| m.voter && m.id != id).map(|m| m.id).collect();
    if remaining.is_empty() {
        return Err(ChangeError::LastVoter(id));
    }
    let up = remaining.iter().filter(|v| active.contains(v)).count();
    let needed = remaining.len() / 2 + 1;
    if up < needed {
        return Err(ChangeError::NotEnoughStarted { id, active: up, needed });
    }
    Ok(true)
}

/// Maps openraft's refusal of a change to ours: nothing was done, unless the entry was
/// discarded with its outcome unknown.
fn raft_error(
    what: &str,
    e: crate::typ::RaftError<openraft::errors::ClientWriteError<crate::typ::TypeConfig>>,
) -> ChangeError {
    use openraft::errors::ClientWriteError;
    match e.into_api_error() {
        Some(ClientWriteError::LogEntryDiscarded(f)) => {
            ChangeError::TimedOut(format!("{what}: leadership changed while the change was in flight ({f})"))
        }
        Some(other) => ChangeError::Unavailable(format!("{what}: {other}")),
        None => ChangeError::Unavailable(format!("{what}: raft stopped")),
    }
}

impl Inner {
    /// The membership as this member knows it.
    pub(crate) fn member_views(&self) -> Vec<MemberView> {
        views(self.raft.metrics().borrow_watched().membership_config.membership())
    }

    /// The precondition that the membership is still the one observed now.
    fn membership_unchanged(&self) -> Precondition<crate::typ::TypeConfig> {
        let observed = *self.raft.metrics().borrow_watched().membership_config.log_id();
        Precondition::LastMembershipLogId { last_membership_log_id: observed }
    }

    /// Members that acknowledged this leader within a couple of election timeouts, and the
    /// leader itself.
    fn active_members(&self) -> BTreeSet<NodeId> {
        let window =
            Duration::from_millis(self.raft.config().election_timeout_max * ACTIVE_ELECTION_TIMEOUTS);
        let m = self.raft.metrics().borrow_watched().clone();
        let mut active: BTreeSet<NodeId> = m
            .heartbeat
            .iter()
            .flatten()
            .filter(|(_, at)| at.as_ref().is_some_and(|t| t.elapsed() <= window))
            .map(|(id, _)| *id)
            .collect();
        active.insert(self.id);
        active
    }

    /// Whether learner `id` may become a voter now: `Err` says why not.
    pub(crate) fn learner_ready(&self, id: NodeId) -> Result<(), String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let matched = m.replication.as_ref().and_then(|r| r.get(&id)).map(|l| l.as_ref().map(|l| l.index()));
        let Some(matched) = matched else { return Err("the leader is not replicating to it".into()) };
        if !caught_up(matched, m.last_log_index, MAX_PROMOTE_LAG) {
            return Err(format!(
                "it has {} of the leader's {} log entries (at most {MAX_PROMOTE_LAG} may be missing)",
                matched.map_or(0, |i| i + 1),
                m.last_log_index.map_or(0, |i| i + 1)
            ));
        }
        if !self.active_members().contains(&id) {
            return Err("it has not answered the leader recently".into());
        }
        Ok(())
    }

    /// Adds `addr` as a learner with a new id, or finds the member already there. Call on
    /// the leader, holding `join_lock`.
    pub(crate) async fn add_learner_at(&self, addr: &str) -> Result<Changed, ChangeError> {
        let members = self.member_views();
        let last = self.raft.metrics().borrow_watched().last_log_index;
        let (id, new) = register_id(&members, addr, last);
        if !new {
            let member = members.iter().find(|m| m.id == id).cloned();
            return Ok(Changed { member, members });
        }
        tracing::info!(id, addr, "adding a member as a learner");
        let node = BasicNode { addr: addr.to_string() };
        let change = ChangeMembers::AddNodes(BTreeMap::from([(id, node)]));
        let resp = self
            .raft
            .change_membership_if(change, true, [self.membership_unchanged()])
            .await
            .map_err(|e| raft_error(&format!("adding learner {id}"), e))?;
        let members = resp.membership.as_ref().map(views).unwrap_or_else(|| self.member_views());
        Ok(Changed { member: Some(MemberView { id, addr: addr.to_string(), voter: false }), members })
    }

    /// Makes learner `id` a voter. Call on the leader, holding `join_lock`, once it caught up.
    pub(crate) async fn make_voter(&self, id: NodeId) -> Result<Changed, ChangeError> {
        tracing::info!(id, "promoting a caught-up learner to voter");
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        let resp = self
            .raft
            .change_membership_if(change, true, [self.membership_unchanged()])
            .await
            .map_err(|e| raft_error(&format!("promoting {id}"), e))?;
        let members = resp.membership.as_ref().map(views).unwrap_or_else(|| self.member_views());
        Ok(Changed { member: None, members })
    }

    /// Performs `change` as the leader: one change at a time, bounded by the request timeout.
    pub(crate) async fn apply_change(&self, change: Change) -> Result<Changed, ChangeError> {
        let limit = self.request_timeout;
        let Ok(_one_at_a_time) = tokio::time::timeout(limit, self.join_lock.lock()).await else {
            return Err(ChangeError::Unavailable(format!(
                "another membership change (a join waiting for its learner to catch up?) is still running \
                 after {limit:?}"
            )));
        };
        if !self.leading() {
            return Err(ChangeError::Unavailable(format!("member {} is no longer the leader", self.id)));
        }
        match tokio::time::timeout(limit, self.change_now(change.clone())).await {
            Ok(r) => r,
            Err(_) => Err(ChangeError::TimedOut(format!(
                "{change:?} was proposed but not committed within {limit:?}; it may still take effect"
            ))),
        }
    }

    async fn change_now(&self, change: Change) -> Result<Changed, ChangeError> {
        match change {
            Change::AddLearner(addr) => self.add_learner_at(&addr).await,
            Change::Promote(id) => {
                match self.member_views().iter().find(|m| m.id == id) {
                    None => return Err(ChangeError::NotFound(id)),
                    Some(m) if m.voter => return Err(ChangeError::NotLearner(id)),
                    Some(_) => {}
                }
                self.learner_ready(id).map_err(|why| ChangeError::NotReady { id, why })?;
                self.make_voter(id).await
            }
            Change::Remove(id) => {
                let voter = check_removal(&self.member_views(), id, &self.active_members())?;
                tracing::info!(id, voter, "removing a member");
                let ids = BTreeSet::from([id]);
                let change =
                    if voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
                let resp = self
                    .raft
                    .change_membership_if(change, false, [self.membership_unchanged()])
                    .await
                    .map_err(|e| raft_error(&format!("removing {id}"), e))?;
                let members = resp.membership.as_ref().map(views).unwrap_or_else(|| self.member_views());
                Ok(Changed { member: None, members })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: NodeId, addr: &str, voter: bool) -> MemberView {
        MemberView { id, addr: addr.into(), voter }
    }

    #[test]
    fn a_known_address_keeps_its_id_and_new_ids_pass_the_log_and_the_membership() {
        let members = [view(1, "a:1", true), view(4, "b:1", false)];
        assert_eq!(register_id(&members, "b:1", Some(50)), (4, false));
        assert_eq!(register_id(&members, "c:1", Some(2)), (5, true), "above the highest id");
        assert_eq!(register_id(&members, "c:1", Some(50)), (51, true), "above the log's end");
        assert_eq!(register_id(&[], "c:1", None), (1, true));
    }

    #[test]
    fn a_removed_id_is_not_handed_out_again() {
        // Member 7 was added at log index 7 or later, then removed: the log only grew.
        let after_removal = [view(1, "a:1", true)];
        let (id, new) = register_id(&after_removal, "c:1", Some(9));
        assert!(new && id > 7, "{id}");
    }

    #[test]
    fn catch_up_allows_a_small_lag() {
        assert!(caught_up(Some(95), Some(100), 10));
        assert!(!caught_up(Some(80), Some(100), 10));
        assert!(!caught_up(None, Some(1), 10));
        assert!(caught_up(None, None, 0));
    }

    #[test]
    fn removals_keep_a_quorum_of_started_voters() {
        let members = [view(1, "a", true), view(2, "b", true), view(3, "c", true), view(4, "d", false)];
        let all: BTreeSet<NodeId> = [1, 2, 3, 4].into();
        assert_eq!(check_removal(&members, 2, &all), Ok(true));
        assert_eq!(check_removal(&members, 4, &BTreeSet::new()), Ok(false), "learners go freely");
        assert_eq!(check_removal(&members, 9, &all), Err(ChangeError::NotFound(9)));
        // Member 3 is down: removing 2 leaves {1, 3} with one started voter.
        let without_3: BTreeSet<NodeId> = [1, 2, 4].into();
        assert_eq!(
            check_removal(&members, 2, &without_3),
            Err(ChangeError::NotEnoughStarted { id: 2, active: 1, needed: 2 })
        );
        // Removing the stopped member itself is fine.
        assert_eq!(check_removal(&members, 3, &without_3), Ok(true));
        let alone = [view(1, "a", true), view(4, "d", false)];
        assert_eq!(check_removal(&alone, 1, &all), Err(ChangeError::LastVoter(1)));
    }
}
