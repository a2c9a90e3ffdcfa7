//! Schedule generation and fault descriptions.

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
        FaultKind::Kill | FaultKind::Pause | FaultKind::Membership | FaultKind::Clock => {
            assert!(t.len() == 1 && t[0] < members && cut.is_empty(), "{step:?}");
        }
        FaultKind::PowerLoss => {
            let all: Vec<usize> = (0..members).collect();
            assert!((t.len() == 1 && t[0] < members) || t == &all, "one member or all: {step:?}");
            assert!(cut.is_empty(), "{step:?}");
            assert_eq!(step.describe(members, None), format!("power loss {}", group(t)));
            let seeds: BTreeSet<u64> = t.iter().map(|&m| step.crash_seed(m)).collect();
            assert_eq!(seeds.len(), t.len(), "each member's disk draws its own losses: {step:?}");
        }
        FaultKind::Grow => {
            assert!(t == &[members] && cut.is_empty(), "the spare after the members: {step:?}");
            assert_eq!(step.describe(members, None), format!("add n{members}"));
        }
        FaultKind::Lossy | FaultKind::Slow => {
            assert!(t.len() == 1 && t[0] < members && cut.is_empty(), "{step:?}");
            let degraded = step.links_to_degrade(members);
            assert_eq!(degraded.len(), members - 1, "{step:?}");
            assert!(degraded.iter().all(|&(a, b)| a == t[0] || b == t[0]), "{step:?}");
        }
        FaultKind::Snapshot => {
            assert!(t.len() == 1 && t[0] < members, "{step:?}");
            assert!(sees(t[0], members, cut).is_empty(), "{step:?} {cut:?}");
            assert_eq!(cut.len(), members - 1);
            let rest = others(members, t);
            for m in &rest {
                assert_eq!(sees(*m, members, cut), rest.iter().copied().filter(|o| o != m).collect());
            }
            assert_eq!(
                step.describe(members, None),
                format!("cut [n{}] | {} (to snapshot)", t[0], group(&rest))
            );
        }
    }
}

#[test]
fn kinds_too_big_for_the_cluster_are_left_out() {
    let three = Schedule::generate(1, S(600), 3, &FaultKind::ALL, (S(1), S(2)), (S(1), S(2)));
    assert!(!three.steps.is_empty());
    assert!(three.steps.iter().all(|s| s.kind != FaultKind::PartitionRing));
    let one = Schedule::generate(1, S(600), 1, &FaultKind::ALL, (S(1), S(2)), (S(1), S(2)));
    assert!(one.steps.iter().all(|s| matches!(
        s.kind,
        FaultKind::Kill | FaultKind::Pause | FaultKind::Clock | FaultKind::Grow | FaultKind::PowerLoss
    )));
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
            let removals: Vec<&Step> = s.steps.iter().filter(|st| st.kind == FaultKind::Membership).collect();
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
fn clock_offsets_are_fixed_by_the_step_and_spread_both_ways() {
    let step = |at, target| Step { at: S(at), kind: FaultKind::Clock, targets: vec![target], duration: S(1) };
    let offsets: Vec<i64> = (0..200).map(|at| step(at, at as usize % 3).clock_offset_secs()).collect();
    assert!(offsets.iter().all(|o| (1..=3600).contains(&o.abs())), "{offsets:?}");
    assert!(offsets.iter().any(|o| *o < 0) && offsets.iter().any(|o| *o > 0), "{offsets:?}");
    assert!(offsets.iter().collect::<BTreeSet<_>>().len() > 150, "spread out: {offsets:?}");
    assert_eq!(step(7, 1).clock_offset_secs(), step(7, 1).clock_offset_secs());
    assert_ne!(step(7, 1).clock_offset_secs(), step(7, 2).clock_offset_secs());
    let s = step(7, 1);
    assert_eq!(s.describe(3, None), format!("skew n1 clock {:+}s", s.clock_offset_secs()));
}

#[test]
fn degradations_are_fixed_by_the_step_and_within_range() {
    let step = |kind, at| Step { at: S(at), kind, targets: vec![1], duration: S(1) };
    let mut losses = BTreeSet::new();
    for at in 0..100 {
        match step(FaultKind::Lossy, at).degradation() {
            Some(Degradation::Loss { per_mille }) => {
                assert!((100..=600).contains(&per_mille), "{per_mille}");
                losses.insert(per_mille);
            }
            other => panic!("{other:?}"),
        }
        match step(FaultKind::Slow, at).degradation() {
            Some(Degradation::RateLimit { packets_per_sec }) => {
                assert!((20..=200).contains(&packets_per_sec), "{packets_per_sec}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(step(FaultKind::Kill, at).degradation(), None);
    }
    assert!(losses.len() > 50, "spread out: {losses:?}");
    let lossy = step(FaultKind::Lossy, 3);
    assert_eq!(lossy.degradation(), step(FaultKind::Lossy, 3).degradation());
    let said = lossy.describe(3, None);
    assert!(said.starts_with("lose ") && said.ends_with("% links of n1"), "{said}");
    assert_eq!(lossy.links_to_degrade(3), BTreeSet::from([(0, 1), (1, 2)]));
    assert!(step(FaultKind::Kill, 3).links_to_degrade(3).is_empty());
}

#[test]
fn a_schedule_serializes_with_millisecond_times() -> Result<(), serde_json::Error> {
    let s = Schedule {
        seed: 3,
        steps: vec![Step { at: S(2), kind: FaultKind::Kill, targets: vec![1], duration: S(5) }],
    };
    let json = serde_json::to_string(&s)?;
    assert_eq!(json, r#"{"seed":3,"steps":[{"at_ms":2000,"kind":"kill","targets":[1],"duration_ms":5000}]}"#);
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
            if step.kind == FaultKind::Grow {
                prop_assert_eq!(&step.targets, &vec![members], "the spare host");
            } else {
                prop_assert!(step.targets.iter().all(|t| *t < members));
            }
            end = step.end();
        }
        prop_assert!(end <= S(run_s));
    }
}
