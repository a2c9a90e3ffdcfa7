//! Hand-written histories for the append checker: one per anomaly kind, and valid ones.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::proptests::{Fate, Plan, SLOT, simulate};
use super::*;

/// A filled-in read.
fn r(key: &str, list: &[u64]) -> MicroOp {
    MicroOp::Read { key: key.into(), value: Some(list.to_vec()) }
}

/// A read of a transaction that did not complete `ok`.
fn r_(key: &str) -> MicroOp {
    MicroOp::Read { key: key.into(), value: None }
}

fn a(key: &str, element: u64) -> MicroOp {
    MicroOp::Append { key: key.into(), element }
}

/// Builds a history transaction by transaction; process `i` for the `i`-th.
#[derive(Default)]
struct H {
    txns: Vec<AppendTxn>,
}

impl H {
    /// A transaction invoked at `invoke` and completed at `complete` (ms).
    fn at(mut self, invoke: u64, complete: u64, outcome: Outcome, ops: Vec<MicroOp>) -> Self {
        let process = self.txns.len() as u64;
        self.txns.push(AppendTxn {
            process,
            invoke_ns: invoke * 1_000_000,
            complete_ns: Some(complete * 1_000_000),
            outcome,
            ops,
            error: None,
            undecodable: Vec::new(),
        });
        self
    }

    /// An `ok` transaction running from 0 to 100 ms, concurrent with every other such one.
    fn concurrent(self, ops: Vec<MicroOp>) -> Self {
        self.at(0, 100, Outcome::Ok, ops)
    }

    /// An `ok` transaction after everything before it (10 ms long, 10 ms apart).
    fn then(self, ops: Vec<MicroOp>) -> Self {
        let start = self.txns.iter().filter_map(|t| t.complete_ns).max().unwrap_or(0) / 1_000_000 + 10;
        self.at(start, start + 10, Outcome::Ok, ops)
    }

    fn check(self) -> AppendVerdict {
        check(&AppendHistory { txns: self.txns })
    }
}

/// The kinds found, as names.
fn kinds(v: &AppendVerdict) -> Vec<&'static str> {
    v.anomaly_kinds.iter().map(|k| k.name()).collect()
}

fn first(v: &AppendVerdict, kind: AnomalyKind) -> Result<&AppendAnomaly, String> {
    v.anomalies.iter().find(|a| a.kind == kind).ok_or_else(|| format!("no {kind} in {v:#?}"))
}

/// The transactions of an anomaly, by index.
fn txns(a: &AppendAnomaly) -> Vec<usize> {
    let mut t: Vec<usize> = a.txns.iter().map(|t| t.index).collect();
    t.sort_unstable();
    t
}

#[test]
fn a_serial_history_is_valid_and_its_edges_are_counted() {
    let v = H::default()
        .then(vec![a("x", 1)])
        .then(vec![r("x", &[1]), a("x", 2)])
        .then(vec![r("x", &[1, 2]), r("y", &[])])
        .check();
    assert!(v.valid, "{v:#?}");
    assert_eq!((v.counts.txns, v.counts.ok, v.counts.keys, v.counts.graph_txns), (3, 3, 2, 3));
    // ww 0->1; wr 0->1, 1->2; rw 1->... none (T1's read of [1] is followed by its own 2).
    assert_eq!(v.counts.edges, EdgeCounts { ww: 1, wr: 2, rw: 0, realtime: 2 });
    assert!(v.summary().starts_with("valid: 3 txns"), "{}", v.summary());
}

#[test]
fn info_transactions_count_only_when_a_read_saw_them() {
    // T0's outcome is unknown and T1, invoked after T0's info, does not see it: fine, it may
    // have been applied later; T2 then sees it.
    let v = H::default()
        .at(0, 10, Outcome::Info, vec![a("x", 1)])
        .at(20, 30, Outcome::Ok, vec![r("x", &[])])
        .at(40, 50, Outcome::Ok, vec![r("x", &[1])])
        .at(60, 70, Outcome::Info, vec![a("x", 2), r_("x")])
        .check();
    assert!(v.valid, "{v:#?}");
    assert_eq!((v.counts.info, v.counts.graph_txns), (2, 3), "T3 was never seen");
    assert_eq!(v.counts.edges.rw, 1, "T1 read x before T0's append");
}

#[test]
fn failed_transactions_are_left_out() {
    let v = H::default()
        .then(vec![a("x", 1)])
        .at(100, 110, Outcome::Fail, vec![a("x", 2)])
        .then(vec![r("x", &[1])])
        .check();
    assert!(v.valid, "{v:#?}");
    assert_eq!((v.counts.fail, v.counts.graph_txns), (1, 2));
}

#[test]
fn g0_write_cycle() -> Result<(), String> {
    let v = H::default()
        .concurrent(vec![a("x", 1), a("y", 1)])
        .concurrent(vec![a("x", 2), a("y", 2)])
        .concurrent(vec![r("x", &[1, 2]), r("y", &[2, 1])])
        .check();
    assert_eq!(kinds(&v), ["G0"], "{v:#?}");
    let g0 = first(&v, AnomalyKind::G0)?;
    assert_eq!(txns(g0), [0, 1]);
    assert!(g0.steps.iter().all(|s| s.kind == EdgeKind::Ww), "{g0:#?}");
    assert!(
        g0.steps.iter().any(|s| s.why.contains("appended 1 to x and T1 appended the next element, 2")),
        "{g0:#?}"
    );
    Ok(())
}

#[test]
fn g1a_aborted_read() -> Result<(), String> {
    let v = H::default().at(0, 10, Outcome::Fail, vec![a("x", 1)]).then(vec![r("x", &[1])]).check();
    assert_eq!(kinds(&v), ["G1a"], "{v:#?}");
    let g1a = first(&v, AnomalyKind::G1a)?;
    assert_eq!((txns(g1a), g1a.key.as_deref()), (vec![0, 1], Some("x")));
    assert!(g1a.explanation.contains("appended by T0, which failed"), "{}", g1a.explanation);
    Ok(())
}

#[test]
fn g1b_intermediate_read() -> Result<(), String> {
    let v = H::default().concurrent(vec![a("x", 1), a("x", 2)]).concurrent(vec![r("x", &[1])]).check();
    assert!(kinds(&v).contains(&"G1b"), "{v:#?}");
    assert!(first(&v, AnomalyKind::G1b)?.explanation.contains("appended [1, 2] to x"));
    // Its own intermediate state is fine for the writer itself.
    let own = H::default().then(vec![a("x", 1), r("x", &[1]), a("x", 2)]).check();
    assert!(own.valid, "{own:#?}");
    Ok(())
}

#[test]
fn g1c_circular_information_flow() -> Result<(), String> {
    let v = H::default()
        .concurrent(vec![a("x", 1), r("y", &[2])])
        .concurrent(vec![a("y", 2), r("x", &[1])])
        .check();
    assert_eq!(kinds(&v), ["G1c"], "{v:#?}");
    let c = first(&v, AnomalyKind::G1c)?;
    assert!(c.steps.iter().all(|s| s.kind == EdgeKind::Wr), "{c:#?}");
    Ok(())
}

#[test]
fn g_single_read_skew() -> Result<(), String> {
    let v = H::default()
        .concurrent(vec![a("x", 1), a("y", 1)])
        .concurrent(vec![r("x", &[]), r("y", &[1])])
        .concurrent(vec![r("x", &[1])])
        .check();
    assert_eq!(kinds(&v), ["G-single"], "{v:#?}");
    let g = first(&v, AnomalyKind::GSingle)?;
    let rw: Vec<&CycleStep> = g.steps.iter().filter(|s| s.kind == EdgeKind::Rw).collect();
    assert_eq!(rw.len(), 1, "{g:#?}");
    assert!(rw[0].why.contains("T1 read x = [], and T0 appended the next element, 1"), "{}", rw[0].why);
    Ok(())
}

#[test]
fn g2_write_skew() {
    let v = H::default()
        .concurrent(vec![r("x", &[]), a("y", 1)])
        .concurrent(vec![r("y", &[]), a("x", 2)])
        .concurrent(vec![r("x", &[2]), r("y", &[1])])
        .check();
    assert_eq!(kinds(&v), ["G2"], "{v:#?}");
}

#[test]
fn a_stale_read_is_serializable_but_not_strictly() -> Result<(), String> {
    // T0 appends and completes; T1, invoked afterwards, reads the old list. T1, T0, T2 is a
    // serial order, but not one that respects real time.
    let v = H::default().then(vec![a("x", 1)]).then(vec![r("x", &[])]).then(vec![r("x", &[1])]).check();
    assert_eq!(kinds(&v), ["G-single-realtime"], "{v:#?}");
    let g = first(&v, AnomalyKind::GSingleRealtime)?;
    assert_eq!(txns(g), [0, 1]);
    let whys: Vec<&str> = g.steps.iter().map(|s| s.why.as_str()).collect();
    assert!(whys.iter().any(|w| w.contains("T1 read x = []")), "{whys:?}");
    assert!(
        whys.iter().any(|w| w.contains("T0 completed ok at 0.020 s, before T1 was invoked at 0.030 s")),
        "{whys:?}"
    );
    assert!(g.explanation.contains("T0 -rt-> T1 -rw-> T0") || g.explanation.contains("T1 -rw-> T0 -rt-> T1"));
    // The same two transactions overlapping in time are fine.
    let overlapping = H::default()
        .at(0, 20, Outcome::Ok, vec![a("x", 1)])
        .at(10, 30, Outcome::Ok, vec![r("x", &[])])
        .check();
    assert!(overlapping.valid, "{overlapping:#?}");
    Ok(())
}

#[test]
fn an_acknowledged_append_no_read_saw_is_after_every_read() {
    // Nobody ever reads 1, but T0 committed it before T1 read x: T1's read is stale.
    let v = H::default().then(vec![a("x", 1)]).then(vec![r("x", &[])]).check();
    assert_eq!(kinds(&v), ["G-single-realtime"], "{v:#?}");
    // Still running when T1 read: fine.
    let v = H::default()
        .at(0, 50, Outcome::Ok, vec![a("x", 1)])
        .at(10, 20, Outcome::Ok, vec![r("x", &[])])
        .check();
    assert!(v.valid, "{v:#?}");
}

#[test]
fn reads_that_are_not_prefixes_of_one_another_are_incompatible() -> Result<(), String> {
    let v = H::default()
        .concurrent(vec![a("x", 1)])
        .concurrent(vec![a("x", 2)])
        .concurrent(vec![r("x", &[1, 2])])
        .concurrent(vec![r("x", &[2])])
        .check();
    assert!(kinds(&v).contains(&"incompatible-order"), "{v:#?}");
    let i = first(&v, AnomalyKind::IncompatibleOrder)?;
    assert_eq!(txns(i), [2, 3]);
    assert!(i.explanation.contains("differ at position 0"), "{}", i.explanation);
    Ok(())
}

#[test]
fn duplicate_elements_in_a_read() {
    let v = H::default().then(vec![a("x", 1)]).then(vec![r("x", &[1, 1])]).check();
    assert_eq!(kinds(&v), ["duplicate-elements"], "{v:#?}");
}

#[test]
fn reads_must_agree_with_the_transaction_itself() {
    let own_append = H::default().then(vec![a("x", 1), r("x", &[])]).check();
    assert_eq!(kinds(&own_append), ["internal"], "{own_append:#?}");
    let two_reads = H::default().then(vec![a("x", 1)]).then(vec![r("x", &[1]), r("x", &[])]).check();
    assert!(kinds(&two_reads).contains(&"internal"), "{two_reads:#?}");
    let consistent =
        H::default().then(vec![a("x", 1)]).then(vec![r("x", &[1]), a("x", 2), r("x", &[1, 2])]).check();
    assert!(consistent.valid, "{consistent:#?}");
}

#[test]
fn garbage_is_reported() -> Result<(), String> {
    let v = H::default().then(vec![r("x", &[99])]).check();
    assert_eq!(kinds(&v), ["garbage"], "{v:#?}");
    let mut h = H::default().at(0, 10, Outcome::Fail, vec![r_("y")]);
    h.txns[0].undecodable.push(Undecodable { key: "y".into(), value: "1,x".into() });
    let v = h.check();
    assert_eq!(kinds(&v), ["garbage"], "{v:#?}");
    assert!(first(&v, AnomalyKind::Garbage)?.explanation.contains("\"1,x\""));
    Ok(())
}

#[test]
fn an_element_appended_twice_is_reported() {
    let v = H::default().then(vec![a("x", 1)]).then(vec![a("x", 1)]).check();
    assert_eq!(kinds(&v), ["duplicate-append"], "{v:#?}");
}

#[test]
fn realtime_edges_are_reduced() {
    // A serial history: each transaction needs only an edge from the one before.
    let mut h = H::default();
    for i in 0..200 {
        h = h.then(vec![a("x", i + 1)]);
    }
    let v = h.check();
    assert!(v.valid);
    assert_eq!(v.counts.edges.realtime, 199);
    // Two rounds of 3 concurrent transactions: 3 x 3 edges between them, none more.
    let mut h = H::default();
    for round in 0..2u64 {
        for i in 0..3 {
            h = h.at(round * 100, round * 100 + 50, Outcome::Ok, vec![a("x", round * 10 + i)]);
        }
    }
    assert_eq!(h.check().counts.edges.realtime, 9);
}

#[test]
fn a_report_serializes_with_anomaly_names() -> Result<(), serde_json::Error> {
    let v = H::default().then(vec![a("x", 1)]).then(vec![r("x", &[])]).check();
    let json = serde_json::to_string(&v)?;
    assert!(json.contains(r#""anomaly_kinds":["G-single-realtime"]"#), "{json}");
    assert!(json.contains(r#""kind":"realtime""#), "{json}");
    Ok(())
}

#[test]
fn a_large_history_is_checked() {
    // 20,000 transactions of up to 4 micro-operations on 200 keys, overlapping in time but
    // applied in real-time order: valid, and checked without blowing up.
    let mut rng = StdRng::seed_from_u64(42);
    let plans: Vec<Plan> = (0..20_000)
        .map(|_| {
            let ops = (0..rng.random_range(1..=4))
                .map(|_| (rng.random_bool(0.5), rng.random_range(0..200)))
                .collect();
            let fate = match rng.random_range(0..20) {
                0 => Fate::Fail,
                1 => Fate::InfoApplied,
                2 => Fate::InfoLost,
                _ => Fate::Ok,
            };
            Plan { ops, fate, lead: rng.random_range(0..3 * SLOT), lag: rng.random_range(0..3 * SLOT) }
        })
        .collect();
    let h = simulate(&plans);
    let v = check(&h);
    assert!(v.valid, "{}\n{:#?}", v.summary(), v.anomalies);
    assert_eq!(v.counts.txns, 20_000);
    assert!(v.counts.edges.ww > 10_000 && v.counts.edges.rw > 1_000, "{:?}", v.counts.edges);
    // Realtime edges stay linear: at most ~6 transactions overlap.
    assert!(v.counts.edges.realtime < 20_000 * 8, "{:?}", v.counts.edges);
    // One stale read in it is found.
    let mut h = h;
    let Some((t, i)) = h.txns.iter().enumerate().rev().find_map(|(t, txn)| {
        let i = txn
            .ops
            .iter()
            .position(|op| matches!(op, MicroOp::Read { value: Some(v), .. } if v.len() > 2))?;
        Some((t, i))
    }) else {
        panic!("no long read");
    };
    // Drop the whole list: a read of nothing long after the key's first appends completed.
    if let MicroOp::Read { value: Some(v), .. } = &mut h.txns[t].ops[i] {
        v.clear();
    }
    let v = check(&h);
    assert!(!v.valid, "{}", v.summary());
}
