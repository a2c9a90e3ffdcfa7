//! The checker on hand-built histories (times in milliseconds; TTL 3 s, request timeout 1 s,
//! expiry slack 10 s).

use super::check::MAX_ANOMALIES;
use super::{
    LeaseAnomalyKind, LeaseCall, LeaseHistory, LeaseHistoryConfig, LeaseOp, LeaseOutcome, LeaseVerdict, check,
};

const MS: u64 = 1_000_000;

fn op(key: &str, call: LeaseCall, outcome: LeaseOutcome, from_ms: u64, to_ms: u64) -> LeaseOp {
    LeaseOp {
        client: 0,
        key: key.to_string(),
        call,
        outcome,
        lease: Some(7),
        ttl: None,
        present: None,
        final_phase: false,
        invoke_ns: from_ms * MS,
        complete_ns: to_ms * MS,
        error: None,
    }
}

fn grant(key: &str, from_ms: u64, to_ms: u64) -> LeaseOp {
    LeaseOp { ttl: Some(3), ..op(key, LeaseCall::Grant, LeaseOutcome::Ok, from_ms, to_ms) }
}

fn put(key: &str, outcome: LeaseOutcome, from_ms: u64, to_ms: u64) -> LeaseOp {
    op(key, LeaseCall::Put, outcome, from_ms, to_ms)
}

fn keep_alive(key: &str, outcome: LeaseOutcome, ttl: Option<i64>, from_ms: u64, to_ms: u64) -> LeaseOp {
    LeaseOp { ttl, ..op(key, LeaseCall::KeepAlive, outcome, from_ms, to_ms) }
}

fn read(key: &str, present: bool, from_ms: u64, to_ms: u64) -> LeaseOp {
    LeaseOp { present: Some(present), ..op(key, LeaseCall::Read, LeaseOutcome::Ok, from_ms, to_ms) }
}

fn final_read(key: &str, present: bool, from_ms: u64, to_ms: u64) -> LeaseOp {
    LeaseOp { final_phase: true, ..read(key, present, from_ms, to_ms) }
}

/// A lease granted over 0..10 ms and put over 10..20 ms, then `rest`.
fn lease(key: &str, rest: Vec<LeaseOp>) -> Vec<LeaseOp> {
    let mut ops = vec![grant(key, 0, 10), put(key, LeaseOutcome::Ok, 10, 20)];
    ops.extend(rest);
    ops
}

fn verdict(ops: Vec<LeaseOp>) -> LeaseVerdict {
    let config = LeaseHistoryConfig { op_timeout_ns: 1000 * MS, expiry_slack_ns: 10_000 * MS, ttl_secs: 3 };
    check(&LeaseHistory { config, ops })
}

fn kinds(v: &LeaseVerdict) -> Vec<LeaseAnomalyKind> {
    v.anomalies.iter().map(|a| a.kind).collect()
}

#[test]
fn a_lease_gone_after_its_bound_is_valid_and_its_lateness_measured() {
    let v = verdict(lease("k", vec![read("k", true, 500, 505), read("k", false, 3100, 3105)]));
    assert!(v.valid, "{v:#?}");
    assert_eq!((v.leases_granted, v.kept_alive, v.expired, v.reads_checked), (1, 0, 1, 2));
    // Bound: grant invoked at 0 + 3 s; gone by 3105 ms.
    assert_eq!(v.max_expiry_gap_ms, Some(105.0));
    assert_eq!(v.max_expiry_gap_key.as_deref(), Some("k"));
    assert!(v.summary().starts_with("leases: valid; 1 granted"), "{}", v.summary());
}

#[test]
fn a_read_finding_the_key_gone_before_the_bound_is_an_early_expiry() {
    let v = verdict(lease("k", vec![read("k", true, 500, 505), read("k", false, 2900, 2950)]));
    assert!(!v.valid);
    assert_eq!(kinds(&v), [LeaseAnomalyKind::EarlyExpiry]);
    let a = &v.anomalies[0];
    assert_eq!((a.key.as_str(), a.lease, a.bound_ns), ("k", Some(7), Some(3000 * MS)));
    assert_eq!(a.op.as_ref().map(|o| o.complete_ns), Some(2950 * MS));
    assert!(a.detail.contains("2950.0 ms") && a.detail.contains("3000.0 ms"), "{}", a.detail);
    assert!(v.summary().starts_with("leases: INVALID"), "{}", v.summary());
    assert_eq!((v.expired, v.max_expiry_gap_ms), (0, None));
}

#[test]
fn a_read_completing_after_the_bound_may_find_the_key_gone_even_if_invoked_before() {
    let v = verdict(lease("k", vec![read("k", false, 2900, 3001)]));
    assert!(v.valid, "{v:#?}");
}

#[test]
fn a_keep_alive_answered_ttl_zero_before_the_bound_is_caught() {
    let early = keep_alive("k", LeaseOutcome::Ok, Some(0), 1000, 1010);
    let v = verdict(lease("k", vec![early]));
    assert_eq!(kinds(&v), [LeaseAnomalyKind::EarlyTtlZero], "{v:#?}");
    assert_eq!(v.anomalies[0].bound_ns, Some(3000 * MS));
    let late = keep_alive("k", LeaseOutcome::Ok, Some(0), 3000, 3010);
    let v = verdict(lease("k", vec![late]));
    assert!(v.valid && v.keep_alives_checked == 1, "{v:#?}");
}

#[test]
fn a_keep_alive_moves_the_bound_so_an_absence_fine_without_it_is_caught() {
    let gone = read("k", false, 3500, 3510);
    let v = verdict(lease("k", vec![gone.clone()]));
    assert!(v.valid, "without a keep-alive, 3510 ms is past the 3000 ms bound: {v:#?}");
    // An unanswered keep-alive may not have renewed: the bound stays.
    let unknown = keep_alive("k", LeaseOutcome::Info, None, 2000, 3000);
    let v = verdict(lease("k", vec![unknown, gone.clone()]));
    assert!(v.valid && v.kept_alive == 0, "{v:#?}");
    // Renewed at 2000 ms or later: gone no earlier than 5000 ms.
    let renewed = keep_alive("k", LeaseOutcome::Ok, Some(3), 2000, 2010);
    let v = verdict(lease("k", vec![renewed.clone(), gone]));
    assert_eq!(kinds(&v), [LeaseAnomalyKind::EarlyExpiry], "{v:#?}");
    assert_eq!((v.anomalies[0].bound_ns, v.kept_alive), (Some(5000 * MS), 1));
    // Even an absence read *before* the keep-alive was sent: the lease still existed at 4000 ms.
    let later = keep_alive("k", LeaseOutcome::Ok, Some(3), 4000, 4010);
    let v = verdict(lease("k", vec![read("k", false, 3500, 3510), later]));
    assert_eq!(kinds(&v), [LeaseAnomalyKind::EarlyExpiry], "{v:#?}");
    let v = verdict(lease("k", vec![renewed, read("k", false, 5000, 5010)]));
    assert!(v.valid && v.expired == 1, "{v:#?}");
}

#[test]
fn an_unknown_put_counts_from_the_first_read_that_saw_the_key() {
    let unknown = vec![grant("k", 0, 10), put("k", LeaseOutcome::Info, 10, 1010)];
    // Gone before it was seen: the put may simply not have happened yet.
    let mut ops = unknown.clone();
    ops.extend([read("k", false, 200, 210), read("k", true, 500, 510), read("k", false, 3100, 3110)]);
    let v = verdict(ops);
    // The read that proved the put is not held to anything itself.
    assert!(v.valid && v.expired == 1 && v.reads_checked == 1, "{v:#?}");
    // Seen, then gone before the bound.
    let mut ops = unknown.clone();
    ops.extend([read("k", true, 500, 510), read("k", false, 1000, 1010)]);
    assert_eq!(kinds(&verdict(ops)), [LeaseAnomalyKind::EarlyExpiry]);
    // Never seen: nothing to hold the reads to.
    let mut ops = unknown;
    ops.extend([read("k", false, 200, 210), final_read("k", false, 20_000, 20_010)]);
    let v = verdict(ops);
    assert!(v.valid && v.unproven_puts == 1 && v.reads_checked == 0 && v.expired == 0, "{v:#?}");
}

#[test]
fn a_key_still_present_after_the_deadline_is_caught_in_the_final_phase() {
    // Last renewal sent at 1000 ms: deadline 1000 + 1000 + 3000 + 10000 = 15000 ms.
    let renewed = keep_alive("k", LeaseOutcome::Ok, Some(3), 1000, 1010);
    let before = vec![renewed, final_read("k", true, 14_000, 14_010)];
    let v = verdict(lease("k", before.clone()));
    assert!(v.valid && v.undecided == 1 && v.expired == 0, "{v:#?}");
    let mut after = before.clone();
    after.push(final_read("k", true, 15_100, 15_110));
    let v = verdict(lease("k", after));
    assert_eq!(kinds(&v), [LeaseAnomalyKind::NotExpired], "{v:#?}");
    assert_eq!(v.anomalies[0].bound_ns, Some(15_000 * MS));
    assert!(v.anomalies[0].op.as_ref().is_some_and(|o| o.invoke_ns == 15_100 * MS));
    // Any keep-alive sent, even unanswered, moves the deadline.
    let mut late = before;
    late.extend([
        keep_alive("k", LeaseOutcome::Info, None, 4000, 5000),
        final_read("k", true, 15_100, 15_110),
        final_read("k", false, 15_500, 15_510),
    ]);
    let v = verdict(lease("k", late));
    assert!(v.valid && v.expired == 1, "{v:#?}");
}

#[test]
fn failed_reads_are_ignored() {
    let failed = |from, to| LeaseOp {
        outcome: LeaseOutcome::Fail,
        error: Some("unavailable".into()),
        ..op("k", LeaseCall::Read, LeaseOutcome::Fail, from, to)
    };
    let v =
        verdict(lease("k", vec![failed(1000, 1010), failed(20_000, 20_100), read("k", false, 3100, 3110)]));
    assert!(v.valid && v.reads_checked == 1 && v.expired == 1, "{v:#?}");
}

#[test]
fn a_key_found_again_after_it_was_gone_is_caught() {
    let v = verdict(lease("k", vec![read("k", false, 3100, 3110), read("k", true, 3200, 3210)]));
    assert_eq!(kinds(&v), [LeaseAnomalyKind::Reappeared], "{v:#?}");
}

#[test]
fn a_refused_or_unknown_grant_is_not_checked() {
    let refused = LeaseOp { lease: None, ..op("k", LeaseCall::Grant, LeaseOutcome::Info, 0, 1000) };
    let v = verdict(vec![refused]);
    assert!(v.valid && v.leases_granted == 0, "{v:#?}");
}

#[test]
fn malformed_records_are_reported() {
    let no_presence = LeaseOp { present: None, ..read("k", true, 500, 510) };
    assert_eq!(kinds(&verdict(lease("k", vec![no_presence]))), [LeaseAnomalyKind::Malformed]);
    let backwards = read("k", true, 500, 400);
    assert_eq!(kinds(&verdict(lease("k", vec![backwards]))), [LeaseAnomalyKind::Malformed]);
    assert_eq!(kinds(&verdict(vec![read("k", true, 500, 510)])), [LeaseAnomalyKind::Malformed]);
    let no_ttl = LeaseOp { ttl: None, ..grant("k", 0, 10) };
    assert_eq!(kinds(&verdict(vec![no_ttl])), [LeaseAnomalyKind::Malformed]);
}

#[test]
fn anomalies_are_listed_up_to_the_cap_and_all_counted() {
    let mut ops = Vec::new();
    for i in 0..MAX_ANOMALIES + 10 {
        let key = format!("k{i}");
        ops.extend(lease(&key, vec![read(&key, false, 100, 110)]));
    }
    let v = verdict(ops);
    assert_eq!((v.anomalies.len(), v.anomalies_total), (MAX_ANOMALIES, MAX_ANOMALIES as u64 + 10));
}

#[test]
fn the_largest_expiry_gap_is_reported() {
    let mut ops = lease("a", vec![read("a", false, 3100, 3120)]);
    ops.extend(lease("b", vec![read("b", false, 3400, 3450)]));
    ops.extend(lease("c", vec![read("c", false, 3000, 3010)]));
    let v = verdict(ops);
    assert_eq!(
        (v.expired, v.max_expiry_gap_ms, v.max_expiry_gap_key.as_deref()),
        (3, Some(450.0), Some("b"))
    );
}
