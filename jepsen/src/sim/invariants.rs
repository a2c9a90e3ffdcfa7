//! Raft invariants checked while a simulation runs: no member's term going back (also across
//! restarts), no running member leading again in a term it stepped down in, and replicas that never
//! diverge (at every sample, each member's versions, in revision order, are a prefix of the
//! most advanced member's).
//!
//! "One leader per term" in its textbook form does not hold for openraft's default leader ids
//! (`leader_id_adv`, which Flotilla uses): a leader is identified by (term, node id), and a
//! member that voted for (5, 1) may later vote for (5, 2), so two members can be elected in
//! term 5, one after the other. Every leader id still has at most one leader (a member votes
//! for itself once per vote), and a member that stepped down in a term cannot lead in it
//! again, which is what is checked; terms with more than one leader are counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

#[cfg(test)]
use flotilla_core::store::VersionData;
use flotilla_core::store::VersionRecord;
use flotilla_raft_store::{NodeId, RaftStore};
use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver as _;

/// What the observers have seen, and what broke.
#[derive(Debug, Default)]
pub(crate) struct Invariants {
    state: Mutex<Observed>,
}

#[derive(Debug, Default)]
struct Observed {
    /// Term → the members seen leading in it.
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
    /// (member, term) where the member was seen leading and then not leading.
    stepped_down: BTreeSet<(NodeId, u64)>,
    /// Member → (term, leading) as last seen.
    last: BTreeMap<NodeId, (u64, bool)>,
    /// Member → the highest term it was seen in.
    terms: BTreeMap<NodeId, u64>,
    /// Replica comparisons made.
    samples: u64,
    violations: Vec<String>,
}

impl Invariants {
    /// Watches member `id`'s raft metrics until the member stops.
    pub(crate) fn watch_member(self: &std::sync::Arc<Self>, id: NodeId, store: &RaftStore) {
        let mut metrics = store.raft().metrics();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (term, state) = {
                    let m = metrics.borrow_watched();
                    (m.current_term, m.state)
                };
                // A member shutting down is no step-down: a leader restarted with its vote
                // resumes leading in the same term (openraft's leader restore), legitimately.
                if state != ServerState::Shutdown {
                    this.observe(id, term, state == ServerState::Leader);
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Records that member `id` is in `term`, leading or not.
    fn observe(&self, id: NodeId, term: u64, leading: bool) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Term 0 is what a member's metrics say before it has read its vote back.
        if term == 0 {
            return;
        }
        let highest = *s.terms.entry(id).or_insert(term);
        if term < highest {
            s.violations.push(format!("member {id}'s term went back from {highest} to {term}"));
        } else {
            s.terms.insert(id, term);
        }
        if let Some((was_term, true)) = s.last.insert(id, (term, leading))
            && (!leading || was_term != term)
        {
            s.stepped_down.insert((id, was_term));
        }
        if leading {
            if s.stepped_down.contains(&(id, term)) {
                s.violations
                    .push(format!("member {id} leads again in term {term} after stepping down in it"));
            }
            s.leaders.entry(term).or_default().insert(id);
        }
    }

    /// Says that member `id` stopped: its next incarnation starts from what it persisted
    /// (a leader with a committed vote may lead again in the same term).
    pub(crate) fn stopped(&self, id: NodeId) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).last.remove(&id);
    }

    /// Compares the running members' replicas: each must be a prefix of the longest.
    pub(crate) fn compare_replicas(&self, stores: &[(NodeId, RaftStore)]) {
        let replicas: Vec<(NodeId, Vec<VersionRecord>)> = stores
            .iter()
            .map(|(id, s)| (*id, s.engine().read(|m| m.records_in_revision_order().collect())))
            .collect();
        self.compare_records(&replicas);
    }

    fn compare_records(&self, replicas: &[(NodeId, Vec<VersionRecord>)]) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.samples += 1;
        let Some((longest_id, longest)) = replicas.iter().max_by_key(|(_, r)| r.len()) else { return };
        for (id, records) in replicas {
            if let Some(at) = records.iter().zip(longest.iter()).position(|(a, b)| a != b) {
                let (mine, theirs) = (&records[at], &longest[at]);
                s.violations.push(format!(
                    "replicas diverge: member {id}'s version {at} is {mine:?}, member {longest_id}'s is {theirs:?}"
                ));
            }
        }
    }

    /// Records a violation found elsewhere (the final comparison).
    pub(crate) fn violation(&self, what: String) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).violations.push(what);
    }

    /// What was seen: the violations (repeats of one violation collapsed), the highest term,
    /// the terms with more than one leader, and the replica comparisons made.
    pub(crate) fn summary(&self) -> Summary {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = BTreeSet::new();
        Summary {
            violations: s.violations.iter().filter(|v| seen.insert(v.as_str())).cloned().collect(),
            highest_term: s.terms.values().copied().max().unwrap_or(0),
            terms_with_two_leaders: s.leaders.values().filter(|l| l.len() > 1).count() as u64,
            replica_samples: s.samples,
        }
    }
}

/// What [`Invariants::summary`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) violations: Vec<String>,
    pub(crate) highest_term: u64,
    pub(crate) terms_with_two_leaders: u64,
    pub(crate) replica_samples: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_again_after_stepping_down_and_a_term_going_back_are_violations() {
        let inv = Invariants::default();
        inv.observe(1, 2, true);
        inv.observe(2, 2, false);
        // Allowed with openraft's advanced leader ids: (2, 2) after (2, 1).
        inv.observe(2, 2, true);
        inv.observe(1, 2, false);
        assert!(inv.summary().violations.is_empty(), "{:?}", inv.summary());
        assert_eq!(inv.summary().terms_with_two_leaders, 1);
        inv.observe(1, 2, true);
        inv.observe(3, 1, false);
        inv.observe(3, 3, false);
        inv.observe(3, 1, false);
        inv.observe(3, 0, false);
        // Restarted while leading, a member resumes leading in its term: no violation.
        inv.observe(3, 3, true);
        inv.stopped(3);
        inv.observe(3, 3, false);
        inv.observe(3, 3, true);
        let summary = inv.summary();
        assert_eq!(summary.highest_term, 3);
        let v = &summary.violations;
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("member 1 leads again in term 2"), "{v:?}");
        assert!(v[1].contains("member 3's term went back from 3 to 1"), "{v:?}");
    }

    #[test]
    fn a_replica_that_is_not_a_prefix_of_the_longest_is_a_violation() {
        let inv = Invariants::default();
        let record = |rev: i64, value: &str| VersionRecord {
            key: b"k".to_vec(),
            main: rev,
            sub: 0,
            data: Some(VersionData { create_revision: 2, version: rev - 1, value: value.into(), lease: 0 }),
        };
        let long = vec![record(2, "a"), record(3, "b"), record(4, "c")];
        inv.compare_records(&[(1, long.clone()), (2, long[..2].to_vec()), (3, Vec::new())]);
        assert!(inv.summary().violations.is_empty());
        inv.compare_records(&[(1, long.clone()), (2, vec![record(2, "a"), record(3, "x")])]);
        let v = inv.summary().violations;
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("replicas diverge: member 2's version 1"), "{v:?}");
        assert_eq!(inv.summary().replica_samples, 2);
    }
}
