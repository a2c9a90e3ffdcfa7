//! The seed sweep CI runs, and a run that must be caught.

use std::time::Duration;

use super::{SimSpec, run};

/// Runs `seeds` seeds from `first` and fails on the first one that is not valid.
fn sweep(first: u64, seeds: u64, members: usize, secs: u64) {
    for seed in first..first + seeds {
        let spec = SimSpec { members, duration: Duration::from_secs(secs), ..SimSpec::new(seed) };
        let report = run(&spec).unwrap_or_else(|e| panic!("seed {seed} did not run: {e}"));
        println!("{}", report.summary());
        assert!(report.ops.ok > 0, "seed {seed}: no operation succeeded");
        assert!(report.replica_samples > 0, "seed {seed}: replicas never compared");
        assert!(
            report.valid(),
            "seed {seed} is not valid; replay: cargo run -p flotilla-jepsen -- sim --members {members} --time {secs} --first-seed {seed} --seeds 1"
        );
    }
}

#[test]
fn three_member_seeds_are_valid() {
    sweep(1, 8, 3, 15);
}

#[test]
fn five_member_seeds_are_valid() {
    sweep(1001, 4, 5, 15);
}

#[test]
fn stale_reads_from_a_cut_off_member_are_caught() {
    // Serializable reads answer from the asked member's copy: under partitions, some seed's
    // history shows a stale read, and the run must say so.
    let caught = (1..=10).find_map(|seed| {
        let spec = SimSpec { serializable_reads: true, ..SimSpec::new(seed) };
        let report = run(&spec).unwrap_or_else(|e| panic!("seed {seed} did not run: {e}"));
        println!("{}", report.summary());
        (!report.valid()).then_some(report)
    });
    let report = caught.expect("none of 10 seeds with serializable reads was found not valid");
    assert!(report.violations.iter().any(|v| v.contains("not linearizable")), "{:?}", report.violations);
}
