//! Property tests: histories made by applying transactions one at a time to a model (each at
//! its own instant, invoked before and completed after it, so overlapping transactions are
//! concurrent but the order of application respects real time) are always valid; dropping
//! the last element of one read whose element another transaction appended and completed
//! before the reader was invoked is always caught.

use std::collections::HashMap;

use proptest::prelude::*;

use super::{AppendHistory, AppendTxn, MicroOp, Outcome, check};

/// What happens to a planned transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fate {
    /// Applied, completed `ok`.
    Ok,
    /// Not applied, completed `fail`.
    Fail,
    /// Applied, completed `info`.
    InfoApplied,
    /// Not applied, completed `info`.
    InfoLost,
}

/// One planned transaction.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// (is a read, key number) per micro-operation.
    pub(super) ops: Vec<(bool, u16)>,
    pub(super) fate: Fate,
    /// How long before its instant of application it is invoked.
    pub(super) lead: u64,
    /// How long after its instant of application it completes.
    pub(super) lag: u64,
}

/// Instants of application are this far apart; leads and lags below half of it make a serial
/// history.
pub(super) const SLOT: u64 = 1_000;

/// Applies `plans` in order to a model of the lists, transaction `i` at instant
/// `(i + 1) * SLOT` (times are clamped so invocation never precedes 0).
pub(super) fn simulate(plans: &[Plan]) -> AppendHistory {
    let mut lists: HashMap<String, Vec<u64>> = HashMap::new();
    let mut next = 1u64;
    let mut txns = Vec::with_capacity(plans.len());
    for (i, p) in plans.iter().enumerate() {
        let at = (i as u64 + 1) * SLOT;
        let applied = matches!(p.fate, Fate::Ok | Fate::InfoApplied);
        let mut ops = Vec::with_capacity(p.ops.len());
        for &(read, k) in &p.ops {
            let key = format!("k{k}");
            if read {
                let value = (p.fate == Fate::Ok).then(|| lists.get(&key).cloned().unwrap_or_default());
                ops.push(MicroOp::Read { key, value });
            } else {
                if applied {
                    lists.entry(key.clone()).or_default().push(next);
                }
                ops.push(MicroOp::Append { key, element: next });
                next += 1;
            }
        }
        let outcome = match p.fate {
            Fate::Ok => Outcome::Ok,
            Fate::Fail => Outcome::Fail,
            Fate::InfoApplied | Fate::InfoLost => Outcome::Info,
        };
        txns.push(AppendTxn {
            process: i as u64,
            invoke_ns: at.saturating_sub(p.lead),
            complete_ns: Some(at + p.lag),
            outcome,
            ops,
            error: None,
            undecodable: Vec::new(),
        });
    }
    AppendHistory { txns }
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Ok),
        1 => Just(Fate::Fail),
        1 => Just(Fate::InfoApplied),
        1 => Just(Fate::InfoLost),
    ]
}

/// Plans on `keys` keys; leads and lags below `spread`.
fn plans(keys: u16, spread: u64, max_len: usize) -> impl Strategy<Value = Vec<Plan>> {
    let plan = (prop::collection::vec((any::<bool>(), 0..keys), 1..=4), fate(), 0..spread, 0..spread)
        .prop_map(|(ops, fate, lead, lag)| Plan { ops, fate, lead, lag });
    prop::collection::vec(plan, 1..max_len)
}

/// A read to make stale: (transaction, micro-operation) of an `ok` read whose last element was
/// appended by another transaction that completed `ok` before the reader was invoked, and
/// that a read invoked after the reader also saw.
fn stale_candidates(h: &AppendHistory) -> Vec<(usize, usize)> {
    let mut appender: HashMap<(&str, u64), usize> = HashMap::new();
    for (t, txn) in h.txns.iter().enumerate() {
        for op in &txn.ops {
            if let MicroOp::Append { key, element } = op {
                appender.insert((key, *element), t);
            }
        }
    }
    let saw = |t: usize, key: &str, e: u64| {
        h.txns[t]
            .ops
            .iter()
            .any(|op| matches!(op, MicroOp::Read { key: k, value: Some(v) } if k == key && v.contains(&e)))
    };
    let mut out = Vec::new();
    for (t, txn) in h.txns.iter().enumerate() {
        if txn.outcome != Outcome::Ok {
            continue;
        }
        for (i, op) in txn.ops.iter().enumerate() {
            let MicroOp::Read { key, value: Some(v) } = op else { continue };
            let Some(&e) = v.last() else { continue };
            let Some(&w) = appender.get(&(key.as_str(), e)) else { continue };
            let writer = &h.txns[w];
            let before =
                writer.outcome == Outcome::Ok && writer.complete_ns.is_some_and(|c| c < txn.invoke_ns);
            let seen_later = (t + 1..h.txns.len())
                .any(|later| h.txns[later].invoke_ns > txn.invoke_ns && saw(later, key, e));
            if w != t && before && seen_later {
                out.push((t, i));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn histories_applied_in_real_time_order_are_valid(plans in plans(4, 3 * SLOT, 60)) {
        let h = simulate(&plans);
        let v = check(&h);
        prop_assert!(v.valid, "{}\n{:#?}\n{h:#?}", v.summary(), v.anomalies);
    }

    #[test]
    fn serial_histories_are_valid(plans in plans(3, SLOT / 2, 40)) {
        let v = check(&simulate(&plans));
        prop_assert!(v.valid, "{}\n{:#?}", v.summary(), v.anomalies);
    }

    #[test]
    fn a_stale_read_is_caught(plans in plans(3, 2 * SLOT, 40), pick in any::<prop::sample::Index>()) {
        let mut h = simulate(&plans);
        let candidates = stale_candidates(&h);
        prop_assume!(!candidates.is_empty());
        let (t, i) = candidates[pick.index(candidates.len())];
        if let MicroOp::Read { value: Some(v), .. } = &mut h.txns[t].ops[i] {
            v.pop();
        }
        let verdict = check(&h);
        prop_assert!(!verdict.valid, "stale read in T{t} op {i} not caught: {}\n{h:#?}", verdict.summary());
    }
}
