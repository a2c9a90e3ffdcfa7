//! Faults, scheduled at random from a seed, and applied to a running [`Cluster`].
//!
//! [`Schedule::generate`] draws one fault at a time: a quiet gap, then a fault of a random
//! kind on random targets for a random length, healed before the next gap starts; the same
//! seed and parameters always give the same schedule. [`run`] applies a schedule to a cluster
//! and records what it did, then leaves everything healed; [`run_until`] does the same but
//! can be told to stop early.
//!
//! Members are named `n<i>` by their 0-based index, as their data directories are.
//!
//! [`Cluster`]: crate::cluster::Cluster

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod integration;
mod membership;
mod runner;

pub use runner::{NemesisRecord, run, run_until};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    /// A fault kind's name is not known.
    #[error("unknown fault kind {0:?} (known: {known})", known = FaultKind::names())]
    UnknownKind(String),
}

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Splits the members at random into a majority and a minority that cannot reach each
    /// other. `targets` is the minority.
    PartitionMajority,
    /// Cuts the leader (found when the fault starts) off from all other members. `targets`
    /// is empty.
    PartitionLeader,
    /// Two halves that cannot reach each other, plus one bridging member that reaches both.
    /// `targets[0]` is the bridge, `targets[1..]` one half; the other members are the other.
    PartitionBridge,
    /// The members in a ring, each reaching only its two neighbours. `targets` is the ring
    /// order (every member once).
    PartitionRing,
    /// SIGKILLs `targets[0]`; healing restarts it.
    Kill,
    /// SIGSTOPs `targets[0]`; healing resumes it with SIGCONT.
    Pause,
    /// Removes `targets[0]` from the membership through another member and stops it; healing
    /// starts it on a fresh data directory (the old one kept as `n<i>.removed-<k>`) that joins
    /// the cluster again as a new member with a new raft id, and waits until it is a voter.
    Membership,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::PartitionMajority,
        FaultKind::PartitionLeader,
        FaultKind::PartitionBridge,
        FaultKind::PartitionRing,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Membership,
    ];

    /// Every kind (the same as [`FaultKind::ALL`]).
    pub fn all() -> &'static [FaultKind] {
        &FaultKind::ALL
    }

    /// The kind's name on command lines and in reports (`partition-majority`, …, `pause`,
    /// `membership`).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PartitionMajority => "partition-majority",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionBridge => "partition-bridge",
            FaultKind::PartitionRing => "partition-ring",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Membership => "membership",
        }
    }

    /// Whether the kind cuts links (rather than stopping a process).
    pub fn is_partition(self) -> bool {
        !matches!(self, FaultKind::Kill | FaultKind::Pause | FaultKind::Membership)
    }

    /// The fewest members the kind makes sense for: a majority/minority split and a bridge
    /// need 3, a ring that cuts anything needs 4, isolating the leader needs 2, and removing a
    /// member needs 3 (two voters must remain to take the removal and the rejoin).
    pub fn min_members(self) -> usize {
        match self {
            FaultKind::PartitionMajority | FaultKind::PartitionBridge | FaultKind::Membership => 3,
            FaultKind::PartitionRing => 4,
            FaultKind::PartitionLeader => 2,
            FaultKind::Kill | FaultKind::Pause => 1,
        }
    }

    fn names() -> String {
        FaultKind::ALL.map(FaultKind::as_str).join(", ")
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultKind {
    type Err = NemesisError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| NemesisError::UnknownKind(s.to_string()))
    }
}

/// One fault of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When the fault starts, from the start of the run (milliseconds in JSON, `at_ms`).
    #[serde(rename = "at_ms", with = "millis")]
    pub at: Duration,
    /// What the fault is.
    pub kind: FaultKind,
    /// The members it applies to, chosen from the seed; see [`FaultKind`] for what they mean
    /// for each kind.
    pub targets: Vec<usize>,
    /// How long the fault lasts before it is healed (milliseconds in JSON, `duration_ms`).
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
}

impl Step {
    /// When the fault is healed, from the start of the run.
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }

    /// The links a partition of `members` members cuts, as `(lower, higher)` index pairs
    /// (empty for [`FaultKind::Kill`], [`FaultKind::Pause`] and [`FaultKind::Membership`], and for
    /// [`FaultKind::PartitionLeader`] without a `leader`).
    pub fn links_to_cut(&self, members: usize, leader: Option<usize>) -> BTreeSet<(usize, usize)> {
        match self.kind {
            FaultKind::Kill | FaultKind::Pause | FaultKind::Membership => BTreeSet::new(),
            FaultKind::PartitionLeader => match leader {
                Some(l) => between(&[l], &others(members, &[l])),
                None => BTreeSet::new(),
            },
            FaultKind::PartitionMajority => between(&self.targets, &others(members, &self.targets)),
            FaultKind::PartitionBridge => {
                let half = self.targets.get(1..).unwrap_or_default();
                between(half, &others(members, &self.targets))
            }
            FaultKind::PartitionRing => {
                let ring = &self.targets;
                let mut links = BTreeSet::new();
                for (k, &a) in ring.iter().enumerate() {
                    for &b in &ring[k + 1..] {
                        links.insert((a.min(b), a.max(b)));
                    }
                }
                for k in 0..ring.len() {
                    let (a, b) = (ring[k], ring[(k + 1) % ring.len()]);
                    links.remove(&(a.min(b), a.max(b)));
                }
                links
            }
        }
    }

    /// How the fault is recorded, e.g. `cut [n0,n2] | [n1]`, `kill n2`, `remove n1` (the
    /// nemesis adds the raft id when it applies it). `leader` is the
    /// member [`FaultKind::PartitionLeader`] isolated.
    pub fn describe(&self, members: usize, leader: Option<usize>) -> String {
        let target = || self.targets.first().map_or_else(|| "nobody".to_string(), |t| format!("n{t}"));
        match self.kind {
            FaultKind::PartitionMajority => {
                format!("cut {} | {}", group(&others(members, &self.targets)), group(&self.targets))
            }
            FaultKind::PartitionLeader => match leader {
                Some(l) => format!("cut {} | {} (leader n{l})", group(&[l]), group(&others(members, &[l]))),
                None => "cut the leader (none found)".to_string(),
            },
            FaultKind::PartitionBridge => {
                let half = self.targets.get(1..).unwrap_or_default();
                format!(
                    "cut {} | {} (bridge {})",
                    group(half),
                    group(&others(members, &self.targets)),
                    target()
                )
            }
            FaultKind::PartitionRing => format!("cut to ring {}", group(&self.targets)),
            FaultKind::Kill => format!("kill {}", target()),
            FaultKind::Pause => format!("pause {}", target()),
            FaultKind::Membership => format!("remove {}", target()),
        }
    }
}

/// `[n0,n2]`.
fn group(members: &[usize]) -> String {
    let names: Vec<String> = members.iter().map(|m| format!("n{m}")).collect();
    format!("[{}]", names.join(","))
}

/// The members of `0..members` not in `these`.
fn others(members: usize, these: &[usize]) -> Vec<usize> {
    (0..members).filter(|m| !these.contains(m)).collect()
}

/// Every link between a member of `a` and a member of `b`.
fn between(a: &[usize], b: &[usize]) -> BTreeSet<(usize, usize)> {
    a.iter().flat_map(|&x| b.iter().filter(move |&&y| y != x).map(move |&y| (x.min(y), x.max(y)))).collect()
}

/// A run's faults, in order, none overlapping another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The seed it was generated from.
    pub seed: u64,
    /// The faults, by start time.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Draws faults from `seed` for a run of length `run` on `members` members: a quiet gap
    /// (uniform in `interval`), then a fault of a kind drawn from `kinds` (uniformly; listing a
    /// kind twice doubles its weight; kinds needing more than `members` members, see
    /// [`FaultKind::min_members`], are left out) lasting uniformly within `fault_len` (at
    /// least 1 ms), then the next gap. Faults never overlap, and the last ends by `run`.
    /// Bounds given in the wrong order are swapped; times have millisecond resolution.
    pub fn generate(
        seed: u64,
        run: Duration,
        members: usize,
        kinds: &[FaultKind],
        interval: (Duration, Duration),
        fault_len: (Duration, Duration),
    ) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let kinds: Vec<FaultKind> = kinds.iter().copied().filter(|k| members >= k.min_members()).collect();
        let fault_len =
            (fault_len.0.max(Duration::from_millis(1)), fault_len.1.max(Duration::from_millis(1)));
        let mut steps = Vec::new();
        let mut now = Duration::ZERO;
        while !kinds.is_empty() {
            let at = now + uniform(&mut rng, interval);
            let duration = uniform(&mut rng, fault_len);
            let kind = kinds[rng.random_range(0..kinds.len())];
            if at + duration > run {
                break;
            }
            let targets = targets(&mut rng, kind, members);
            steps.push(Step { at, kind, targets, duration });
            now = at + duration;
        }
        Schedule { seed, steps }
    }
}

/// A duration uniformly within `bounds` (either order), in whole milliseconds.
fn uniform(rng: &mut StdRng, bounds: (Duration, Duration)) -> Duration {
    let (lo, hi) = (bounds.0.min(bounds.1), bounds.0.max(bounds.1));
    let lo_ms = lo.as_millis().min(u128::from(u64::MAX)) as u64;
    let hi_ms = hi.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(rng.random_range(lo_ms..=hi_ms))
}

/// The targets of a fault of `kind` on `members` members (see [`FaultKind`]).
fn targets(rng: &mut StdRng, kind: FaultKind, members: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..members).collect();
    perm.shuffle(rng);
    match kind {
        FaultKind::PartitionLeader => Vec::new(),
        FaultKind::PartitionMajority => {
            let mut minority = perm[..(members - 1) / 2].to_vec();
            minority.sort_unstable();
            minority
        }
        FaultKind::PartitionBridge => {
            let mut half = perm[1..1 + (members - 1) / 2].to_vec();
            half.sort_unstable();
            std::iter::once(perm[0]).chain(half).collect()
        }
        FaultKind::PartitionRing => perm,
        FaultKind::Kill | FaultKind::Pause | FaultKind::Membership => vec![perm[0]],
    }
}

/// Durations as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn schedule(seed: u64, members: usize) -> Schedule {
        Schedule::generate(seed, S(300), members, &FaultKind::ALL, (S(1), S(5)), (S(2), S(10)))
    }

    /// Who member `m` still reaches when `cut` is cut.
    fn sees(m: usize, members: usize, cut: &BTreeSet<(usize, usize)>) -> BTreeSet<usize> {
        (0..members).filter(|&o| o != m && !cut.contains(&(m.min(o), m.max(o)))).collect()
    }

    #[test]
    fn kinds_print_and_parse_by_their_flag_names() -> Result<(), NemesisError> {
        for k in FaultKind::ALL {
            assert_eq!(k.to_string().parse::<FaultKind>()?, k);
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
        }
        assert_eq!("partition-bridge".parse::<FaultKind>()?, FaultKind::PartitionBridge);
        assert_eq!("membership".parse::<FaultKind>()?, FaultKind::Membership);
        let err = "partition".parse::<FaultKind>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("\"partition\"") && err.contains("partition-ring"), "{err}");
        Ok(())
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = schedule(7, 5);
        assert_eq!(a, schedule(7, 5));
        assert!(a.steps.len() > 10, "300 s of 3..15 s cycles: {} steps", a.steps.len());
        assert_ne!(a, schedule(8, 5), "another seed, another schedule");
        let kinds: BTreeSet<FaultKind> = a.steps.iter().map(|s| s.kind).collect();
        assert!(kinds.len() >= 4, "kinds are drawn at random: {kinds:?}");
    }

    #[test]
    fn partitions_are_well_formed() {
        for members in [3, 4, 5, 7] {
            for seed in 0..40 {
                for step in schedule(seed, members).steps {
                    let cut = step.links_to_cut(members, Some(seed as usize % members));
                    check_partition(&step, members, seed as usize % members, &cut);
                }
            }
        }
    }

    fn check_partition(step: &Step, members: usize, leader: usize, cut: &BTreeSet<(usize, usize)>) {
        let t = &step.targets;
        match step.kind {
            FaultKind::PartitionMajority => {
                let majority = others(members, t);
                assert!(!t.is_empty() && t.len() < majority.len(), "{step:?}");
                for m in &majority {
                    assert_eq!(sees(*m, members, cut), majority.iter().copied().filter(|o| o != m).collect());
                }
                for m in t {
                    assert_eq!(sees(*m, members, cut), t.iter().copied().filter(|o| o != m).collect());
                }
            }
            FaultKind::PartitionLeader => {
                assert!(t.is_empty() && sees(leader, members, cut).is_empty(), "{step:?}");
                assert_eq!(cut.len(), members - 1);
            }
            FaultKind::PartitionBridge => {
                let (bridge, a, b) = (t[0], &t[1..], others(members, t));
                assert!(!a.is_empty() && !b.is_empty() && a.len().abs_diff(b.len()) <= 1, "{step:?}");
                assert_eq!(sees(bridge, members, cut), others(members, &[bridge]).into_iter().collect());
                for m in a {
                    assert!(sees(*m, members, cut).iter().all(|o| !b.contains(o)), "{step:?} {cut:?}");
                    assert!(sees(*m, members, cut).contains(&bridge));
                }
                assert_eq!(cut.len(), a.len() * b.len());
            }
            FaultKind::PartitionRing => {
                let mut order = t.clone();
                order.sort_unstable();
                assert_eq!(order, (0..members).collect::<Vec<_>>(), "every member once: {step:?}");
                for (k, m) in t.iter().enumerate() {
                    let neighbours = BTreeSet::from([t[(k + 1) % members], t[(k + members - 1) % members]]);
                    assert_eq!(sees(*m, members, cut), neighbours, "{step:?}");
                }
            }
            FaultKind::Kill | FaultKind::Pause | FaultKind::Membership => {
                assert!(t.len() == 1 && t[0] < members && cut.is_empty(), "{step:?}");
            }
        }
    }

    #[test]
    fn kinds_too_big_for_the_cluster_are_left_out() {
        let three = Schedule::generate(1, S(600), 3, &FaultKind::ALL, (S(1), S(2)), (S(1), S(2)));
        assert!(!three.steps.is_empty());
        assert!(three.steps.iter().all(|s| s.kind != FaultKind::PartitionRing));
        let one = Schedule::generate(1, S(600), 1, &FaultKind::ALL, (S(1), S(2)), (S(1), S(2)));
        assert!(one.steps.iter().all(|s| matches!(s.kind, FaultKind::Kill | FaultKind::Pause)));
        let none = Schedule::generate(1, S(600), 2, &[FaultKind::PartitionRing], (S(1), S(2)), (S(1), S(2)));
        assert!(none.steps.is_empty());
    }

    #[test]
    fn membership_faults_are_drawn_deterministically_for_three_members_or_more() {
        let kinds = [FaultKind::Membership, FaultKind::Kill];
        for members in [3, 4, 5] {
            for seed in 0..20 {
                let s = Schedule::generate(seed, S(300), members, &kinds, (S(1), S(5)), (S(2), S(10)));
                assert_eq!(s, Schedule::generate(seed, S(300), members, &kinds, (S(1), S(5)), (S(2), S(10))));
                let removals: Vec<&Step> =
                    s.steps.iter().filter(|st| st.kind == FaultKind::Membership).collect();
                assert!(!removals.is_empty(), "seed {seed}: {s:?}");
                for st in removals {
                    assert!(st.targets.len() == 1 && st.targets[0] < members, "{st:?}");
                    assert!(st.links_to_cut(members, Some(0)).is_empty() && !st.kind.is_partition());
                    assert_eq!(st.describe(members, None), format!("remove n{}", st.targets[0]));
                }
            }
        }
        let targets: BTreeSet<usize> = (0..20)
            .flat_map(|seed| Schedule::generate(seed, S(300), 3, &kinds, (S(1), S(5)), (S(2), S(10))).steps)
            .filter(|st| st.kind == FaultKind::Membership)
            .map(|st| st.targets[0])
            .collect();
        assert_eq!(targets, BTreeSet::from([0, 1, 2]), "every member gets removed some time");
        let two = Schedule::generate(1, S(600), 2, &[FaultKind::Membership], (S(1), S(2)), (S(1), S(2)));
        assert!(two.steps.is_empty(), "two members cannot lose one: {two:?}");
        assert_eq!(FaultKind::Membership.as_str(), "membership");
        assert_eq!(serde_json::to_value(FaultKind::Membership).ok(), Some("membership".into()));
    }

    #[test]
    fn a_schedule_serializes_with_millisecond_times() -> Result<(), serde_json::Error> {
        let s = Schedule {
            seed: 3,
            steps: vec![Step { at: S(2), kind: FaultKind::Kill, targets: vec![1], duration: S(5) }],
        };
        let json = serde_json::to_string(&s)?;
        assert_eq!(
            json,
            r#"{"seed":3,"steps":[{"at_ms":2000,"kind":"kill","targets":[1],"duration_ms":5000}]}"#
        );
        assert_eq!(serde_json::from_str::<Schedule>(&json)?, s);
        assert_eq!(s.steps[0].describe(3, None), "kill n1");
        let cut = Step { at: S(0), kind: FaultKind::PartitionMajority, targets: vec![1], duration: S(1) };
        assert_eq!(cut.describe(3, None), "cut [n0,n2] | [n1]");
        Ok(())
    }

    proptest! {
        #[test]
        fn faults_never_overlap_and_end_within_the_run(
            seed: u64,
            members in 1usize..9,
            run_s in 0u64..400,
            gap in (0u64..5000, 0u64..5000),
            len in (0u64..8000, 0u64..8000),
        ) {
            let ms = Duration::from_millis;
            let s = Schedule::generate(seed, S(run_s), members, &FaultKind::ALL, (ms(gap.0), ms(gap.1)),
                (ms(len.0), ms(len.1)));
            let (gap_lo, gap_hi) = (gap.0.min(gap.1), gap.0.max(gap.1));
            let (len_lo, len_hi) = (len.0.min(len.1).max(1), len.0.max(len.1).max(1));
            let mut end = Duration::ZERO;
            for step in &s.steps {
                prop_assert!(step.at >= end, "overlap: {:?}", s.steps);
                let quiet = step.at - end;
                prop_assert!(ms(gap_lo) <= quiet && quiet <= ms(gap_hi), "gap {quiet:?}");
                prop_assert!(ms(len_lo) <= step.duration && step.duration <= ms(len_hi));
                prop_assert!(members >= step.kind.min_members());
                prop_assert!(step.targets.iter().all(|t| *t < members));
                end = step.end();
            }
            prop_assert!(end <= S(run_s));
        }
    }
}
