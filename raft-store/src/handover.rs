//! Handing leadership over before a member stops.
//!
//! A leader that simply stops leaves the cluster without one until the others' election
//! timeout runs out: writes stall for that long. A member stopping on purpose (a rolling
//! upgrade, a drain) first names a successor: openraft's leader transfer stops this leader
//! proposing, forwards new requests to the successor, and has it start an election as soon as
//! its log holds everything this leader had, while the other voters drop their leader lease so
//! they vote for it at once.

use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver as _;
use openraft::{Instant as _, RaftMetrics};

use crate::store::RaftStore;
use crate::typ::{NodeId, TypeConfig};

impl RaftStore {
    /// Hands leadership to another voter when this member leads: the voter that acknowledged
    /// this leader within the last `within` with the most of the log is asked to take over,
    /// and the call waits (at most `within`) until another member leads. Returns the new
    /// leader; `None` when this member does not lead, no other voter answered recently, or no
    /// one took over in time (the others then elect a leader when their election timeout runs
    /// out, as after a crash). Call it before [`shutdown`](Self::shutdown) when stopping on
    /// purpose.
    pub async fn hand_over_leadership(&self, within: Duration) -> Option<NodeId> {
        let me = self.id();
        let metrics = self.raft().metrics().borrow_watched().clone();
        if metrics.current_leader != Some(me) {
            return None;
        }
        let successor = successor(&metrics, within)?;
        tracing::info!(id = me, successor, "handing leadership over");
        if let Err(e) = self.raft().trigger().transfer_leader(successor).await {
            tracing::warn!(id = me, error = %e, "cannot hand leadership over");
            return None;
        }
        let others_lead = |m: &RaftMetrics<TypeConfig>| m.current_leader.is_some_and(|l| l != me);
        match self.raft().wait(Some(within)).metrics(others_lead, "another member leads").await {
            Ok(m) => m.current_leader,
            Err(e) => {
                tracing::warn!(id = me, successor, error = %e, "leadership was not taken over in time");
                None
            }
        }
    }
}

/// The voter other than the leader whose metrics are `m` that acknowledged it within
/// `recently` and holds the most of its log (the lowest id among equals).
fn successor(m: &RaftMetrics<TypeConfig>, recently: Duration) -> Option<NodeId> {
    let matched = |id: &NodeId| -> Option<u64> {
        m.replication.as_ref()?.get(id)?.as_ref().map(|log_id| log_id.index())
    };
    let answered = |id: &NodeId| -> bool {
        m.heartbeat
            .as_ref()
            .and_then(|h| h.get(id))
            .is_some_and(|at| at.as_ref().is_some_and(|t| t.elapsed() <= recently))
    };
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id && answered(id))
        .max_by_key(|id| (matched(id), std::cmp::Reverse(*id)))
}
