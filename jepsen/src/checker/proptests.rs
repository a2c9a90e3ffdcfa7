//! The WGL checker against a brute-force checker on small random histories, the soundness of
//! the anomalies it reports, and an (ignored) timing of a long history.

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::brute::{self, brute_force};
use super::*;
use crate::history::Event;

/// Checks an anomaly against the brute-force checker:
/// - the history is linearizable up to the breaking operation's completion and not after;
/// - the stated possible register values are the brute-force ones: the states of every order of
///   the operations that completed before the breaking one was invoked, with any of the others
///   invoked before it completed;
/// - the explanation's reason agrees with them;
/// - the operations running at the time and the last five writes before it are reported;
/// - a complete anomaly is a sound witness: the reported operations, with any subset of the
///   operations left out added back, are not linearizable.
fn check_anomaly(h: &History, a: &Anomaly) -> Result<(), TestCaseError> {
    prop_assert!(a.ops.windows(2).all(|w| w[0].invoke_index < w[1].invoke_index));
    let b = a.breaking_op.and_then(|i| a.ops.get(i)).ok_or_else(|| TestCaseError::fail("no breaking op"))?;
    let end = b.complete_index.ok_or_else(|| TestCaseError::fail("breaking op never completed"))?;
    prop_assert!(
        brute::linearizable(&brute::ops_upto(h, end - 1)) && !brute::linearizable(&brute::ops_upto(h, end)),
        "not the breaking op: {:?}",
        a
    );
    let p = brute::ops_upto(h, end);
    let t = b.invoke_index;
    let done_before = |op: &brute::BfOp| op.done.is_some_and(|d| d < t);
    let rest: Vec<brute::BfOp> = p.iter().filter(|op| op.invoke != t).copied().collect();
    let states = brute::states(&rest, done_before);
    let stated: Option<BTreeSet<Option<u64>>> =
        a.possible_states.as_ref().map(|s| s.iter().copied().collect());
    prop_assert_eq!(stated, Some(states.clone()), "{:?}", a);
    let needed = b.observed();
    let impossible = needed.is_some_and(|x| !states.contains(&x));
    let says = ["needs the register", "saw"].iter().any(|s| a.explanation.contains(s));
    prop_assert_eq!(impossible, says, "{}", a.explanation);

    let reported: HashSet<usize> = a.ops.iter().map(|op| op.invoke_index).collect();
    prop_assert!(a.ops.iter().all(|op| p.iter().any(|o| o.invoke == op.invoke_index)), "{:?}", a);
    // Running at the time: not done before, and not an operation whose outcome was already
    // known to be unknown (info) by then.
    let completions: HashMap<usize, usize> = completions(h);
    let running = |op: &brute::BfOp| !done_before(op) && completions.get(&op.invoke).is_none_or(|&c| c > t);
    let mut last: Vec<&brute::BfOp> =
        p.iter().filter(|op| done_before(op) && op.call != Call::Read).collect();
    last.sort_by_key(|op| std::cmp::Reverse(op.done));
    last.truncate(5);
    for op in p.iter().filter(|op| running(op)).chain(last) {
        prop_assert!(reported.contains(&op.invoke), "{:?} not reported in {:?}", op, a);
    }

    prop_assert!(a.complete, "{:?}", a);
    let shown: Vec<brute::BfOp> = p.iter().filter(|op| reported.contains(&op.invoke)).copied().collect();
    let left_out: Vec<brute::BfOp> = p.iter().filter(|op| !reported.contains(&op.invoke)).copied().collect();
    no_linearizable_superset(&shown, &left_out, a)
}

/// Checks that `kept` with any subset of `left_out` added back is not linearizable: every
/// subset when there are few, else the empty and full ones and 62 pseudo-random ones.
fn no_linearizable_superset(
    kept: &[brute::BfOp],
    left_out: &[brute::BfOp],
    what: &dyn std::fmt::Debug,
) -> Result<(), TestCaseError> {
    let n = left_out.len();
    let subsets: Vec<u64> = if n <= 6 {
        (0..1u64 << n).collect()
    } else {
        let full = (1u64 << n) - 1;
        let mut x = n as u64;
        [0, full]
            .into_iter()
            .chain((0..62).map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (x >> 20) & full
            }))
            .collect()
    };
    for set in subsets {
        let mut ops = kept.to_vec();
        ops.extend((0..n).filter(|i| set >> i & 1 == 1).map(|i| left_out[i]));
        ops.sort_by_key(|op| op.invoke);
        prop_assert!(!brute::linearizable(&ops), "linearizable with {:?} added back: {:?}", ops, what);
    }
    Ok(())
}

/// Checks the witness the shrinker found for the key "k" of `h` (not linearizable), which may be
/// smaller than the reported operations: with any of the other operations invoked before the
/// breaking one completed added back, it is not linearizable.
fn check_witness(h: &History) -> Result<(), TestCaseError> {
    let (by_key, _) = split_by_key(h)?;
    let ops = by_key.get("k").map(|k| k.ops.clone()).unwrap_or_default();
    let shrunk = shrink::shrink(&ops, 1_000_000);
    let (Some(b), Some(c)) = (shrunk.breaking.and_then(|i| shrunk.ops.get(i)), &shrunk.context) else {
        return Err(TestCaseError::fail("no breaking op"));
    };
    prop_assert!(c.witness_finished && c.witness.contains(b));
    let p = brute::ops_upto(h, b.complete_index.unwrap_or_default());
    let kept: HashSet<usize> = c.witness.iter().map(|op| op.invoke_index).collect();
    let (w, left_out): (Vec<brute::BfOp>, Vec<brute::BfOp>) =
        p.iter().copied().partition(|op| kept.contains(&op.invoke));
    prop_assert_eq!(w.len(), c.witness.len());
    no_linearizable_superset(&w, &left_out, &c.witness)
}

/// Each operation's completion event (of any kind), by its invocation event.
fn completions(h: &History) -> HashMap<usize, usize> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut out = HashMap::new();
    for (i, e) in h.events.iter().enumerate() {
        if e.kind == EventKind::Invoke {
            open.insert(e.process, i);
        } else if let Some(inv) = open.remove(&e.process) {
            out.insert(inv, i);
        }
    }
    out
}

/// An action of a history generator: (what, a, b, c).
type Action = (u8, u64, u64, u8);

/// An operation in flight in the simulated register.
struct Flight {
    process: u64,
    call: Call,
    /// The effect once applied: the value a read saw, or whether a CAS's comparison held.
    applied: Option<(Option<u64>, bool)>,
    /// Completed `info`: may still take effect, but records nothing more.
    gave_up: bool,
}

struct Sim {
    events: Vec<Event>,
    register: Option<u64>,
    flights: Vec<Flight>,
    busy: HashSet<u64>,
    dead: HashSet<u64>,
    started: usize,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            events: Vec::new(),
            register: None,
            flights: Vec::new(),
            busy: HashSet::new(),
            dead: HashSet::new(),
            started: 0,
        }
    }

    fn record(&mut self, process: u64, kind: EventKind, call: Call, read: Option<u64>) {
        let time_ns = self.events.len() as u64 * 1_000_000;
        self.events.push(Event { process, key: "k".into(), kind, call, read, time_ns, error: None });
    }

    fn invoke(&mut self, call: Call, max_ops: usize, max_open: usize) {
        if self.started >= max_ops || self.busy.len() >= max_open {
            return;
        }
        let Some(process) = (0..).find(|p| !self.busy.contains(p) && !self.dead.contains(p)) else { return };
        self.busy.insert(process);
        self.started += 1;
        self.record(process, EventKind::Invoke, call, None);
        self.flights.push(Flight { process, call, applied: None, gave_up: false });
    }

    fn apply(&mut self, i: usize) {
        let reg = self.register;
        let f = &mut self.flights[i];
        if f.applied.is_some() {
            return;
        }
        f.applied = Some(match f.call {
            Call::Read => (reg, true),
            Call::Write { value } => {
                self.register = Some(value);
                (None, true)
            }
            Call::Cas { from, to } if reg == Some(from) => {
                self.register = Some(to);
                (None, true)
            }
            Call::Cas { .. } => (None, false),
        });
    }

    /// Completes flight `i`: `info`, `fail` (only if not applied) or as its effect dictates.
    fn complete(&mut self, i: usize, info: bool, fail: bool) {
        let (process, call) = (self.flights[i].process, self.flights[i].call);
        self.busy.remove(&process);
        if info {
            self.dead.insert(process);
            self.record(process, EventKind::Info, call, None);
            self.flights[i].gave_up = true;
            return;
        }
        if fail && self.flights[i].applied.is_none() {
            self.flights.remove(i);
            self.record(process, EventKind::Fail, call, None);
            return;
        }
        self.apply(i);
        match self.flights.remove(i).applied {
            Some((read, true)) => self.record(process, EventKind::Ok, call, read),
            _ => self.record(process, EventKind::Fail, call, None),
        }
    }
}

fn call_of(kind: u8, a: u64, b: u64) -> Call {
    match kind % 3 {
        0 => Call::Read,
        1 => Call::Write { value: a % 3 },
        _ => Call::Cas { from: a % 3, to: b % 3 },
    }
}

/// A history of a real register: every operation takes effect at one point between its
/// invocation and its completion (or any time after, or never, when its outcome is unknown).
/// One `info` in `info_one_in` completions (0: none).
fn simulate(actions: &[Action], max_ops: usize, max_open: usize, info_one_in: u64) -> History {
    let mut sim = Sim::new();
    for &(what, a, b, c) in actions {
        let pick = |n: usize| usize::try_from(a).unwrap_or(0) % n.max(1);
        match what % 4 {
            0 => sim.invoke(call_of(c, a, b), max_ops, max_open),
            1 => {
                let pending: Vec<usize> =
                    (0..sim.flights.len()).filter(|&i| sim.flights[i].applied.is_none()).collect();
                if !pending.is_empty() {
                    sim.apply(pending[pick(pending.len())]);
                }
            }
            _ => {
                let open: Vec<usize> = (0..sim.flights.len()).filter(|&i| !sim.flights[i].gave_up).collect();
                if !open.is_empty() {
                    let info = info_one_in != 0 && b % info_one_in == 0;
                    sim.complete(open[pick(open.len())], info, c % 5 == 0);
                }
            }
        }
    }
    History { events: sim.events }
}

/// An arbitrary well-formed history: operations complete with random outcomes and reads.
fn arbitrary(actions: &[Action]) -> History {
    let mut sim = Sim::new();
    for &(what, a, b, c) in actions {
        if what % 3 == 0 {
            sim.invoke(call_of(c, a, b), 7, 3);
            continue;
        }
        let open: Vec<usize> = (0..sim.flights.len()).filter(|&i| !sim.flights[i].gave_up).collect();
        if open.is_empty() {
            continue;
        }
        let i = open[usize::try_from(a).unwrap_or(0) % open.len()];
        let (process, call) = (sim.flights[i].process, sim.flights[i].call);
        sim.busy.remove(&process);
        sim.flights.remove(i);
        let read = if call == Call::Read && c % 4 != 3 { Some(u64::from(c) % 3) } else { None };
        match b % 3 {
            0 => sim.record(process, EventKind::Ok, call, read),
            1 => sim.record(process, EventKind::Fail, call, None),
            _ => {
                sim.dead.insert(process);
                sim.record(process, EventKind::Info, call, None);
            }
        }
    }
    History { events: sim.events }
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec((any::<u8>(), 0u64..6, 0u64..12, any::<u8>()), 0..40)
}

/// The checker's verdict on `h` equals the brute-force one, and any anomaly it reports is
/// sound.
fn agrees_with_brute_force(h: &History) -> Result<(), TestCaseError> {
    let v = check_registers(h, &CheckLimits::default())?;
    let expected = if brute_force(h) { Validity::Valid } else { Validity::Invalid };
    prop_assert_eq!(v.valid, expected, "{:?}", h);
    if let Some(KeyOutcome::NotLinearizable(a)) = v.keys.first().map(|k| &k.outcome) {
        check_anomaly(h, a)?;
        check_witness(h)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn simulated_register_histories_are_linearizable(actions in actions()) {
        let h = simulate(&actions, 7, 3, 4);
        prop_assert!(brute_force(&h), "generator produced a non-linearizable history: {h:?}");
        let v = check_registers(&h, &CheckLimits::default())?;
        prop_assert_eq!(v.valid, Validity::Valid, "{:?}", h);
    }

    #[test]
    fn the_checker_agrees_with_brute_force(actions in actions()) {
        let h = arbitrary(&actions);
        agrees_with_brute_force(&h)?;
    }

    #[test]
    fn stale_reads_in_register_histories_get_sound_anomalies(
        actions in actions(),
        pick in any::<usize>(),
        writes_heavy in any::<bool>(),
    ) {
        // Mostly blind writes (three in four operations, the rest reads) give the shrinker
        // writes to leave out.
        let actions: Vec<Action> = if writes_heavy {
            actions.into_iter().map(|(what, a, b, c)| (what, a, b, if c % 4 == 0 { 0 } else { 1 })).collect()
        } else {
            actions
        };
        let mut h = simulate(&actions, 12, 3, 6);
        let reads: Vec<usize> = (0..h.events.len())
            .filter(|&i| h.events[i].kind == EventKind::Ok && h.events[i].call == Call::Read)
            .collect();
        prop_assume!(!reads.is_empty());
        let e = &mut h.events[reads[pick % reads.len()]];
        e.read = Some(e.read.map_or(0, |v| (v + 1) % 3));
        agrees_with_brute_force(&h)?;
    }
}

/// A pseudo-random action sequence (splitmix64), for histories too long for proptest.
fn long_actions(seed: u64, n: usize) -> Vec<Action> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n).map(|_| ((next() % 4) as u8, next() % 5, next() % 1000, (next() % 256) as u8)).collect()
}

#[test]
fn a_long_simulated_history_is_valid() -> Result<(), CheckError> {
    let h = simulate(&long_actions(7, 2_000), 500, 5, 0);
    let v = check_registers(&h, &CheckLimits::default())?;
    assert!(v.ops.invoked > 300, "{:?}", v.ops);
    assert_eq!(v.valid, Validity::Valid);
    Ok(())
}

/// `cargo test --release -p flotilla-jepsen --lib checker -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release mode"]
fn time_a_2000_op_history_over_5_processes() -> Result<(), CheckError> {
    let time = |label: &str, h: &History| -> Result<Verdict, CheckError> {
        let start = tokio::time::Instant::now();
        let v = check_registers(h, &CheckLimits::default())?;
        let took = start.elapsed();
        let size = match v.keys.first().map(|k| &k.outcome) {
            Some(KeyOutcome::NotLinearizable(a)) => format!(
                ", anomaly of {} ops (complete: {}, possible states: {:?}): {}",
                a.ops.len(),
                a.complete,
                a.possible_states,
                a.explanation
            ),
            _ => String::new(),
        };
        let configurations = v.keys.first().map_or(0, |k| k.configurations);
        println!("{label}: {:?}, {:?}{size}, {configurations} configurations, {took:?}", v.ops, v.valid);
        Ok(v)
    };
    for (label, info_one_in) in
        [("no info", 0), ("1 in 100 info", 100), ("1 in 20 info", 20), ("1 in 5 info", 5)]
    {
        let h = simulate(&long_actions(42, 12_000), 2_000, 5, info_one_in);
        assert_ne!(time(label, &h)?.valid, Validity::Invalid);
    }
    // The same history with one late read made stale: checking, then analysing the anomaly.
    let mut h = simulate(&long_actions(42, 12_000), 2_000, 5, 0);
    let late =
        h.events.iter().rposition(|e| e.kind == EventKind::Ok && e.call == Call::Read && e.read.is_some());
    if let Some(e) = late.and_then(|i| h.events.get_mut(i)) {
        e.read = e.read.map(|v| (v + 1) % 3);
    }
    assert_eq!(time("one stale read", &h)?.valid, Validity::Invalid);
    Ok(())
}
