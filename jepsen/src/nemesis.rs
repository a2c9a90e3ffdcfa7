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

use crate::net::Degradation;

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
    /// Cuts `targets[0]` off from every other member; halfway through, every other running
    /// member is sent SIGUSR1, which makes it build a snapshot and purge its whole log up to
    /// it; healing reconnects `targets[0]`, which can then catch up only by installing a
    /// leader's snapshot.
    Snapshot,
    /// Shifts `targets[0]`'s wall clock (not its monotonic clock) by
    /// [`Step::clock_offset_secs`], up to an hour either way, through libfaketime; healing
    /// sets it right. Raft and leases run on monotonic time, so nothing may notice.
    Clock,
    /// Every link of `targets[0]` loses packets at random, both ways, with the probability
    /// [`Step::degradation`] gives (10–60 %); healing restores them.
    Lossy,
    /// Every link of `targets[0]` passes only the packets a second [`Step::degradation`]
    /// gives (20–200, each way); healing restores them.
    Slow,
    /// Adds a new member on the spare host `targets[0]` (index `members`, see
    /// [`ClusterSpec::spares`](crate::cluster::ClusterSpec::spares)): it joins as a learner
    /// through another member and becomes a voter, growing the cluster by one; healing removes
    /// it again and stops it.
    Grow,
    /// Cuts the power of `targets`: one member, or every member at once. Each is SIGKILLed
    /// (all of them before any disk is touched) and its data directory, on a
    /// [`LossyFs`](crate::lossyfs::LossyFs), keeps only what was synced plus, drawn from
    /// [`Step::crash_seed`], part or all of the rest; healing restarts them side by side.
    /// Runs that list this kind start every member on a lossy disk.
    PowerLoss,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::PartitionMajority,
        FaultKind::PartitionLeader,
        FaultKind::PartitionBridge,
        FaultKind::PartitionRing,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Membership,
        FaultKind::Snapshot,
        FaultKind::Clock,
        FaultKind::Lossy,
        FaultKind::Slow,
        FaultKind::Grow,
        FaultKind::PowerLoss,
    ];

    /// Every kind (the same as [`FaultKind::ALL`]).
    pub fn all() -> &'static [FaultKind] {
        &FaultKind::ALL
    }

    /// The kind's name on command lines and in reports (`partition-majority`, …, `pause`,
    /// `membership`, `snapshot`, `clock`, `lossy`, `slow`, `grow`, `power-loss`).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PartitionMajority => "partition-majority",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionBridge => "partition-bridge",
            FaultKind::PartitionRing => "partition-ring",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Membership => "membership",
            FaultKind::Snapshot => "snapshot",
            FaultKind::Clock => "clock",
            FaultKind::Lossy => "lossy",
            FaultKind::Slow => "slow",
            FaultKind::Grow => "grow",
            FaultKind::PowerLoss => "power-loss",
        }
    }

    /// Whether the kind cuts links (rather than stopping a process); [`FaultKind::Snapshot`]
    /// does both.
    pub fn is_partition(self) -> bool {
        !matches!(
            self,
            FaultKind::Kill
                | FaultKind::Pause
                | FaultKind::Membership
                | FaultKind::Clock
                | FaultKind::Lossy
                | FaultKind::Slow
                | FaultKind::Grow
                | FaultKind::PowerLoss
        )
    }

    /// The fewest members the kind makes sense for: a majority/minority split and a bridge
    /// need 3, a ring that cuts anything needs 4, isolating the leader needs 2, and removing a
    /// member needs 3 (two voters must remain to take the removal and the rejoin).
    pub fn min_members(self) -> usize {
        match self {
            FaultKind::PartitionMajority
            | FaultKind::PartitionBridge
            | FaultKind::Membership
            | FaultKind::Snapshot => 3,
            FaultKind::PartitionRing => 4,
            FaultKind::PartitionLeader | FaultKind::Lossy | FaultKind::Slow => 2,
            FaultKind::Kill
            | FaultKind::Pause
            | FaultKind::Clock
            | FaultKind::Grow
            | FaultKind::PowerLoss => 1,
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

    /// How far a [`FaultKind::Clock`] step shifts its target's wall clock: 1 s to an hour,
    /// ahead or behind, a fixed function of the step's start and target (so a schedule's
    /// seed fixes it, and reports need no extra field).
    pub fn clock_offset_secs(&self) -> i64 {
        let x = self.mix();
        let magnitude = 1 + (x % 3600) as i64;
        if (x >> 40) & 1 == 1 { -magnitude } else { magnitude }
    }

    /// How a [`FaultKind::Lossy`] or [`FaultKind::Slow`] step degrades its target's links
    /// (`None` for other kinds), a fixed function of the step's start and target like
    /// [`Step::clock_offset_secs`].
    pub fn degradation(&self) -> Option<Degradation> {
        let x = self.mix();
        match self.kind {
            FaultKind::Lossy => Some(Degradation::Loss { per_mille: 100 + (x % 501) as u16 }),
            FaultKind::Slow => Some(Degradation::RateLimit { packets_per_sec: 20 + (x % 181) as u32 }),
            _ => None,
        }
    }

    /// The seed target `member`'s disk draws from in a [`FaultKind::PowerLoss`] step (which
    /// unsynced writes survive), a fixed function of the step's start and the member.
    pub fn crash_seed(&self, member: usize) -> u64 {
        self.mix() ^ (member as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// A hash of (start, target): splitmix64's finalizer spreads their bits.
    fn mix(&self) -> u64 {
        let at = u64::try_from(self.at.as_millis()).unwrap_or(u64::MAX);
        let target = self.targets.first().map_or(0, |&t| t as u64);
        let mut x = at ^ target.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The links a [`FaultKind::Lossy`] or [`FaultKind::Slow`] step degrades (every link of
    /// its target), as `(lower, higher)` pairs; empty for other kinds.
    pub fn links_to_degrade(&self, members: usize) -> BTreeSet<(usize, usize)> {
        match (self.kind, self.targets.first()) {
            (FaultKind::Lossy | FaultKind::Slow, Some(&t)) => between(&[t], &others(members, &[t])),
            _ => BTreeSet::new(),
        }
    }

    /// The links a partition of `members` members cuts, as `(lower, higher)` index pairs
    /// (empty for the kinds that cut nothing, see [`FaultKind::is_partition`], and for
    /// [`FaultKind::PartitionLeader`] without a `leader`).
    pub fn links_to_cut(&self, members: usize, leader: Option<usize>) -> BTreeSet<(usize, usize)> {
        match self.kind {
            FaultKind::Kill
            | FaultKind::Pause
            | FaultKind::Membership
            | FaultKind::Clock
            | FaultKind::Lossy
            | FaultKind::Slow
            | FaultKind::Grow
            | FaultKind::PowerLoss => BTreeSet::new(),
            FaultKind::PartitionLeader => match leader {
                Some(l) => between(&[l], &others(members, &[l])),
                None => BTreeSet::new(),
            },
            FaultKind::PartitionMajority => between(&self.targets, &others(members, &self.targets)),
            FaultKind::Snapshot => match self.targets.first() {
                Some(&t) => between(&[t], &others(members, &[t])),
                None => BTreeSet::new(),
            },
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
            FaultKind::Grow => format!("add {}", target()),
            FaultKind::PowerLoss => format!("power loss {}", group(&self.targets)),
            FaultKind::Lossy | FaultKind::Slow => format!(
                "{} links of {}",
                self.degradation().map_or_else(String::new, Degradation::describe),
                target()
            ),
            FaultKind::Clock => {
                format!("skew {} clock {}", target(), crate::cluster::offset_spec(self.clock_offset_secs()))
            }
            FaultKind::Snapshot => {
                let isolated: Vec<usize> = self.targets.first().copied().into_iter().collect();
                format!("cut {} | {} (to snapshot)", group(&isolated), group(&others(members, &isolated)))
            }
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
        FaultKind::Kill
        | FaultKind::Pause
        | FaultKind::Membership
        | FaultKind::Snapshot
        | FaultKind::Clock
        | FaultKind::Lossy
        | FaultKind::Slow => vec![perm[0]],
        // The spare host comes after the members.
        FaultKind::Grow => vec![members],
        FaultKind::PowerLoss if rng.random_bool(0.5) => (0..members).collect(),
        FaultKind::PowerLoss => vec![perm[0]],
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
mod tests;
