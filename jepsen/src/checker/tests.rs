//! Hand-written histories for the register checker.

use super::*;
use crate::history::Event;

const R: Call = Call::Read;

fn w(value: u64) -> Call {
    Call::Write { value }
}

fn cas(from: u64, to: u64) -> Call {
    Call::Cas { from, to }
}

/// Builds a history event by event, 100 ms apart, on key "k" unless told otherwise.
#[derive(Default)]
struct Builder {
    events: Vec<Event>,
}

impl Builder {
    fn event(mut self, process: u64, key: &str, kind: EventKind, call: Call, read: Option<u64>) -> Self {
        let time_ns = (self.events.len() as u64 + 1) * 100_000_000;
        self.events.push(Event { process, key: key.into(), kind, call, read, time_ns, error: None });
        self
    }
    fn invoke(self, p: u64, call: Call) -> Self {
        self.event(p, "k", EventKind::Invoke, call, None)
    }
    fn ok(self, p: u64, call: Call) -> Self {
        self.event(p, "k", EventKind::Ok, call, None)
    }
    fn read(self, p: u64, v: Option<u64>) -> Self {
        self.event(p, "k", EventKind::Ok, R, v)
    }
    fn fail(self, p: u64, call: Call) -> Self {
        self.event(p, "k", EventKind::Fail, call, None)
    }
    fn info(self, p: u64, call: Call) -> Self {
        self.event(p, "k", EventKind::Info, call, None)
    }
    /// A whole operation with nothing concurrent.
    fn op(self, p: u64, call: Call) -> Self {
        self.invoke(p, call).ok(p, call)
    }
    fn op_read(self, p: u64, v: Option<u64>) -> Self {
        self.invoke(p, R).read(p, v)
    }
    fn history(self) -> History {
        History { events: self.events }
    }
}

fn check(h: &History) -> Result<Verdict, CheckError> {
    check_registers(h, &CheckLimits::default())
}

fn anomaly(v: &Verdict) -> Result<&Anomaly, String> {
    v.keys
        .iter()
        .find_map(|k| match &k.outcome {
            KeyOutcome::NotLinearizable(a) => Some(a),
            _ => None,
        })
        .ok_or_else(|| format!("no anomaly in {v:?}"))
}

/// The (process, call) of each reported operation.
fn calls(a: &Anomaly) -> Vec<(u64, Call)> {
    a.ops.iter().map(|op| (op.process, op.call)).collect()
}

#[test]
fn a_sequential_history_is_valid() -> Result<(), CheckError> {
    let h = Builder::default()
        .op_read(1, None)
        .op(1, w(1))
        .op_read(2, Some(1))
        .op(3, cas(1, 2))
        .op_read(2, Some(2))
        .history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Valid, "{v:?}");
    assert_eq!(v.keys.len(), 1);
    assert_eq!((v.keys[0].key.as_str(), v.keys[0].ops), ("k", 5));
    assert_eq!(v.ops, OpCounts { invoked: 5, ok: 5, fail: 0, info: 0, incomplete: 0 });
    Ok(())
}

#[test]
fn concurrent_writes_are_valid_in_the_one_order_a_later_read_allows() -> Result<(), CheckError> {
    // Writes of 1 and 2 overlap; the read after both sees 1, so 2 must have gone first.
    let concurrent = |last: u64| {
        Builder::default().invoke(1, w(1)).invoke(2, w(2)).ok(1, w(1)).ok(2, w(2)).op_read(3, Some(last))
    };
    assert_eq!(check(&concurrent(1).history())?.valid, Validity::Valid);
    assert_eq!(check(&concurrent(2).history())?.valid, Validity::Valid);
    // And a read that saw 2 in between pins the other order, so a final 1 is impossible.
    let h = Builder::default()
        .invoke(1, w(1))
        .invoke(2, w(2))
        .ok(1, w(1))
        .ok(2, w(2))
        .op_read(3, Some(1))
        .op_read(3, Some(2))
        .history();
    assert_eq!(check(&h)?.valid, Validity::Invalid);
    Ok(())
}

#[test]
fn a_stale_read_after_a_completed_write_is_invalid() -> Result<(), Box<dyn std::error::Error>> {
    let h = Builder::default().op(1, w(1)).op(2, w(2)).op_read(3, Some(1)).history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Invalid);
    let a = anomaly(&v)?;
    // The witness is the write of 2 and the read; the write of 1 is shown as one of the last
    // writes before the read.
    assert_eq!(calls(a), vec![(1, w(1)), (2, w(2)), (3, R)]);
    assert_eq!((a.breaking_op, a.complete), (Some(2), true));
    assert_eq!(a.possible_states, Some(vec![Some(2)]));
    assert!(
        a.explanation.contains(
            "process 3's read of 1 (invoked at 0.500 s, completed ok at 0.600 s) needs the register at \
             1, but every order of the 2 operations that completed before it was invoked leaves it at \
             2 at any point where it could take effect, never at 1."
        ),
        "{}",
        a.explanation
    );
    assert!(a.explanation.contains("are not linearizable by themselves"), "{}", a.explanation);
    Ok(())
}

#[test]
fn a_cas_from_a_value_never_written_is_invalid() -> Result<(), Box<dyn std::error::Error>> {
    let h = Builder::default().op(1, w(1)).op(2, cas(7, 8)).op_read(1, Some(8)).history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Invalid);
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(1)), (2, cas(7, 8))]);
    assert!(a.explanation.contains("process 2's cas from 7 to 8"), "{}", a.explanation);
    assert!(a.explanation.contains("saw 7, but no operation"), "{}", a.explanation);
    assert_eq!((a.breaking_op, a.complete, a.possible_states.clone()), (Some(1), true, Some(vec![Some(1)])));
    Ok(())
}

#[test]
fn a_failed_cas_is_ignored() -> Result<(), CheckError> {
    let h = Builder::default().invoke(1, cas(1, 2)).fail(1, cas(1, 2)).op_read(2, None).history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Valid);
    assert_eq!((v.keys[0].ops, v.ops.fail), (1, 1));
    Ok(())
}

#[test]
fn an_unknown_write_is_assumed_applied_when_a_later_read_needs_it() -> Result<(), CheckError> {
    // Process 2's write of 2 times out; a read after the timeout still sees 2 (the write may
    // take effect at any point after its invocation, even after the client gave up).
    let h = Builder::default()
        .op(1, w(1))
        .invoke(2, w(2))
        .info(2, w(2))
        .op_read(3, Some(1))
        .op_read(3, Some(2))
        .history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Valid, "{v:?}");
    assert_eq!(v.ops.info, 1);
    // The same with an invocation that never completed.
    let h = Builder::default().op(1, w(1)).invoke(2, w(2)).op_read(3, Some(1)).op_read(3, Some(2)).history();
    let v = check(&h)?;
    assert_eq!((v.valid, v.ops.incomplete), (Validity::Valid, 1));
    Ok(())
}

#[test]
fn an_unknown_write_that_cannot_have_applied_is_assumed_never_applied() -> Result<(), CheckError> {
    // Applying the write of 2 anywhere would contradict the later reads of 1, so it never did.
    let h = Builder::default()
        .op(1, w(1))
        .invoke(2, w(2))
        .op_read(3, Some(1))
        .info(2, w(2))
        .op_read(3, Some(1))
        .history();
    assert_eq!(check(&h)?.valid, Validity::Valid);
    // But a read of 2 before the write was invoked is not explained by it.
    let h = Builder::default().op(1, w(1)).op_read(3, Some(2)).invoke(2, w(2)).info(2, w(2)).history();
    assert_eq!(check(&h)?.valid, Validity::Invalid);
    Ok(())
}

#[test]
fn a_read_with_unknown_outcome_is_dropped() -> Result<(), CheckError> {
    let h = Builder::default().invoke(1, R).event(1, "k", EventKind::Info, R, Some(9)).history();
    let v = check(&h)?;
    assert_eq!((v.valid, v.keys[0].ops, v.ops.info), (Validity::Valid, 0, 1));
    Ok(())
}

#[test]
fn a_failed_write_whose_value_is_read_is_invalid() -> Result<(), Box<dyn std::error::Error>> {
    let h = Builder::default().op(1, w(4)).invoke(1, w(5)).fail(1, w(5)).op_read(2, Some(5)).history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Invalid);
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(4)), (2, R)]);
    assert_eq!((a.ops[1].invoke_index, a.ops[1].complete_index), (4, Some(5)));
    assert!(a.explanation.contains("process 1's write of 5 completed fail at 0.400 s"), "{}", a.explanation);
    Ok(())
}

#[test]
fn shrinking_drops_unrelated_operations() -> Result<(), Box<dyn std::error::Error>> {
    let h = Builder::default()
        .op(1, w(1))
        .op_read(2, Some(1))
        .op(1, w(2))
        .op_read(2, Some(2))
        .op_read(3, Some(1)) // stale
        .op(1, w(3))
        .op_read(2, Some(3))
        .history();
    let v = check(&h)?;
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(1)), (1, w(2)), (3, R)]);
    assert_eq!(a.ops[2].read, Some(1));
    assert_eq!((a.breaking_op, a.complete), (Some(2), true));
    assert!(
        a.explanation.contains("other 2 operations invoked before its completion added back"),
        "{}",
        a.explanation
    );
    // Without shrinking, every operation of the key is reported.
    let v = check_registers(&h, &CheckLimits { shrink: false, ..CheckLimits::default() })?;
    let a = anomaly(&v)?;
    assert_eq!((a.ops.len(), a.breaking_op, a.complete, a.possible_states.clone()), (7, None, true, None));
    assert!(a.explanation.contains("shrinking is off"), "{}", a.explanation);
    Ok(())
}

#[test]
fn shrinking_keeps_another_writer_of_a_value_a_cas_expects() -> Result<(), Box<dyn std::error::Error>> {
    // The cas from 2 to 2 writes 2 itself, but only the earlier write of 2 can explain it.
    let h = Builder::default().op(1, w(2)).op(2, w(1)).op(3, cas(2, 2)).history();
    let v = check(&h)?;
    assert_eq!(calls(anomaly(&v)?), vec![(1, w(2)), (2, w(1)), (3, cas(2, 2))]);
    Ok(())
}

#[test]
fn operations_running_when_the_history_broke_are_reported_as_running()
-> Result<(), Box<dyn std::error::Error>> {
    // The cas from 1 cannot follow the write of 2; the write of 3 was running when it was
    // invoked, and may come before or after it; the read of 2 is not needed to show it.
    let h = Builder::default()
        .op(1, w(1))
        .invoke(2, w(3))
        .op(1, w(2))
        .invoke(3, R)
        .read(3, Some(2))
        .invoke(4, cas(1, 5))
        .ok(2, w(3))
        .ok(4, cas(1, 5))
        .history();
    let v = check(&h)?;
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(1)), (2, w(3)), (1, w(2)), (4, cas(1, 5))], "{a:?}");
    assert_eq!((a.complete, a.possible_states.clone()), (true, Some(vec![Some(2), Some(3)])));
    assert!(
        a.explanation.contains(
            "every order of the 3 operations that completed before it was invoked, together with any \
             of the 1 operation running at the time or with an unknown outcome, leaves it at 2 or 3"
        ),
        "{}",
        a.explanation
    );
    // A write of 3 still running when the read of 1 completes is needed: without it the read of
    // 3 would be a different anomaly.
    let h = Builder::default()
        .op(1, w(1))
        .invoke(2, w(3))
        .op_read(3, Some(3))
        .op_read(3, Some(1))
        .ok(2, w(3))
        .history();
    let v = check(&h)?;
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(1)), (2, w(3)), (3, R), (3, R)], "{a:?}");
    assert_eq!((a.breaking_op, a.complete), (Some(3), true));
    assert_eq!(a.possible_states, Some(vec![Some(3)]));
    assert_eq!(a.ops[1].completion, Completion::Running);
    assert!(a.explanation.contains("Operations shown as running completed later"), "{}", a.explanation);
    Ok(())
}

#[test]
fn keys_are_checked_independently() -> Result<(), Box<dyn std::error::Error>> {
    let h = Builder::default()
        .event(1, "b", EventKind::Invoke, w(1), None)
        .event(1, "b", EventKind::Ok, w(1), None)
        .event(2, "a", EventKind::Invoke, R, None)
        .event(2, "a", EventKind::Ok, R, Some(1)) // a was never written
        .event(3, "b", EventKind::Invoke, R, None)
        .event(3, "b", EventKind::Ok, R, Some(1))
        .history();
    let v = check(&h)?;
    assert_eq!(v.valid, Validity::Invalid);
    let keys: Vec<&str> = v.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert!(matches!(v.keys[0].outcome, KeyOutcome::NotLinearizable(_)));
    assert_eq!(v.keys[1].outcome, KeyOutcome::Linearizable);
    let json = serde_json::to_value(&v)?;
    assert_eq!(json["valid"], "invalid");
    assert_eq!(json["keys"][0]["outcome"]["result"], "not_linearizable");
    assert_eq!(json["keys"][0]["outcome"]["ops"][0]["f"], "read");
    assert_eq!(json["keys"][0]["outcome"]["ops"][0]["completion"], "ok");
    assert_eq!(json["keys"][1]["outcome"]["result"], "linearizable");
    Ok(())
}

#[test]
fn an_empty_history_is_valid() -> Result<(), CheckError> {
    let v = check(&History::default())?;
    assert_eq!((v.valid, v.keys.len()), (Validity::Valid, 0));
    Ok(())
}

#[test]
fn malformed_histories_are_errors_naming_the_event() {
    let double = Builder::default().invoke(1, w(1)).invoke(1, R).history();
    let err = check(&double).err();
    assert_eq!(err, Some(CheckError::DoubleInvoke { index: 1, process: 1, outstanding: 0 }));
    assert!(err.is_some_and(|e| e.to_string().starts_with("event 1: process 1 invoked")));

    let orphan = Builder::default().op(1, w(1)).read(2, Some(1)).history();
    assert_eq!(check(&orphan).err(), Some(CheckError::CompletionWithoutInvoke { index: 2, process: 2 }));

    let other_call = Builder::default().invoke(1, w(1)).ok(1, w(2)).history();
    let err = check(&other_call).err();
    assert!(matches!(err, Some(CheckError::MismatchedCompletion { index: 1, invoked_at: 0, .. })), "{err:?}");

    let other_key = Builder::default().invoke(1, w(1)).event(1, "x", EventKind::Ok, w(1), None).history();
    let err = check(&other_key).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("event 1") && err.contains("key \"x\" completed"), "{err}");
}

#[test]
fn running_out_of_budget_gives_unknown() -> Result<(), CheckError> {
    // Five concurrent writes and a read: the search needs more than three configurations.
    let mut b = Builder::default();
    for p in 0..5 {
        b = b.invoke(p, w(p));
    }
    for p in 0..5 {
        b = b.ok(p, w(p));
    }
    let h = b.op_read(9, Some(0)).history();
    let v = check_registers(&h, &CheckLimits { max_states_per_key: 3, ..CheckLimits::default() })?;
    assert_eq!(v.valid, Validity::Unknown);
    assert_eq!(v.keys[0].configurations, 4);
    let KeyOutcome::Unknown { reason } = &v.keys[0].outcome else {
        panic!("expected unknown: {v:?}");
    };
    assert!(reason.contains("limit 3"), "{reason}");
    assert_eq!(check(&h)?.valid, Validity::Valid);
    Ok(())
}

#[test]
fn an_invalid_key_outweighs_an_unknown_one() -> Result<(), CheckError> {
    let mut b = Builder::default();
    for p in 0..4 {
        b = b.invoke(p, w(p));
    }
    for p in 0..4 {
        b = b.ok(p, w(p));
    }
    let h = b
        .op_read(9, Some(0))
        .event(8, "z", EventKind::Invoke, R, None)
        .event(8, "z", EventKind::Ok, R, Some(3))
        .history();
    let v = check_registers(&h, &CheckLimits { max_states_per_key: 2, ..CheckLimits::default() })?;
    assert!(matches!(v.keys[0].outcome, KeyOutcome::Unknown { .. }), "{v:?}");
    assert_eq!(v.valid, Validity::Invalid);
    Ok(())
}

/// The run that motivated sound witnesses: a stale read of 3 long after an early write of 3.
/// The early write, the write of 4 after it and the read are not linearizable on their own,
/// but that is not why the history is not: a later CAS to 3 could explain the read, and it is
/// the writes after that CAS that rule it out.
#[test]
fn a_stale_read_is_explained_by_the_last_writes_before_it() -> Result<(), Box<dyn std::error::Error>> {
    let mut b = Builder::default().op(1, w(3)).op(2, w(4));
    for i in 0..10 {
        b = b.op(1, w(i % 3)).op_read(2, Some(i % 3));
    }
    b = b
        .op(3, w(1))
        .op(4, cas(1, 3))
        .op_read(5, Some(3))
        // A partition: a write of 5 times out, a CAS fails.
        .invoke(6, w(5))
        .info(6, w(5))
        .invoke(4, cas(1, 2))
        .fail(4, cas(1, 2))
        // Two concurrent writes of other values.
        .invoke(1, w(2))
        .invoke(2, w(0))
        .ok(2, w(0))
        .ok(1, w(2));
    for j in 0..20 {
        b = b.event(8, "x", EventKind::Invoke, w(j), None).event(8, "x", EventKind::Ok, w(j), None);
    }
    let h = b.op_read(7, Some(3)).history();
    let v = check(&h)?;
    let a = anomaly(&v)?;
    // The last writes before the read are shown, with the write of 5 whose outcome is unknown;
    // the early write of 3 is not.
    assert_eq!(
        calls(a),
        vec![(1, w(0)), (3, w(1)), (4, cas(1, 3)), (6, w(5)), (1, w(2)), (2, w(0)), (7, R)],
        "{a:?}"
    );
    assert!(a.ops.iter().all(|op| op.invoke_index > 0), "{a:?}");
    assert_eq!((a.breaking_op, a.complete), (Some(6), true));
    assert_eq!(a.possible_states, Some(vec![Some(0), Some(2), Some(5)]));
    assert!(
        a.explanation.contains(
            "process 7's read of 3 (invoked at 9.900 s, completed ok at 10.000 s) needs the register \
             at 3, but every order of the 27 operations that completed before it was invoked, \
             together with any of the 1 operation running at the time or with an unknown outcome, \
             leaves it at 0, 2 or 5 at any point where it could take effect, never at 3."
        ),
        "{}",
        a.explanation
    );
    assert!(
        a.explanation.contains("The 7 operations shown are not linearizable by themselves"),
        "{}",
        a.explanation
    );
    Ok(())
}

#[test]
fn a_witness_too_large_to_show_is_reported_as_an_excerpt() -> Result<(), Box<dyn std::error::Error>> {
    // A chain of 25 CASes, then a read of a value the chain passed long ago: every CAS is needed
    // for a self-contained witness.
    let mut b = Builder::default().op(1, w(0));
    for i in 0..25 {
        b = b.op(1 + i % 3, cas(i, i + 1));
    }
    let h = b.op_read(9, Some(3)).history();
    let a = anomaly(&check(&h)?)?.clone();
    let chain: Vec<(u64, Call)> = (20..25).map(|i| (1 + i % 3, cas(i, i + 1))).collect();
    assert_eq!(calls(&a), [chain, vec![(9, R)]].concat());
    assert_eq!(
        (a.breaking_op, a.complete, a.possible_states.clone()),
        (Some(5), false, Some(vec![Some(25)]))
    );
    assert!(a.explanation.contains("leaves it at 25 at any point where it could take effect, never at 3."));
    assert!(
        a.explanation.contains("The 6 operations shown are an excerpt")
            && a.explanation.contains("has 27 operations."),
        "{}",
        a.explanation
    );
    Ok(())
}

#[test]
fn an_analysis_out_of_budget_says_so() -> Result<(), Box<dyn std::error::Error>> {
    let mut b = Builder::default();
    for i in 0..6 {
        b = b.invoke(1, w(i)).invoke(2, w(i + 1)).ok(1, w(i)).ok(2, w(i + 1)).op_read(3, Some(i + 1));
    }
    let h = b.op_read(3, Some(0)).history();
    let mut states_out_of_budget = 0;
    for budget in 1..400 {
        let v = check_registers(&h, &CheckLimits { max_states_per_key: budget, ..CheckLimits::default() })?;
        let Ok(a) = anomaly(&v) else { continue };
        match (a.breaking_op, &a.possible_states) {
            (None, _) => assert!(a.explanation.contains("ran out of budget"), "{}", a.explanation),
            (Some(_), None) => {
                states_out_of_budget += 1;
                assert!(
                    a.explanation.contains("possible when it could take effect ran out of budget"),
                    "{}",
                    a.explanation
                );
            }
            (Some(_), Some(states)) => assert_eq!(states, &vec![Some(6)]),
        }
    }
    assert!(states_out_of_budget > 0);
    Ok(())
}

#[test]
fn a_read_whose_value_is_possible_but_not_with_everything_else_says_so()
-> Result<(), Box<dyn std::error::Error>> {
    // The read of 2 by process 3 can follow the writes of 1 and 2 in that order, but the read
    // of 1 by process 4, invoked after the write of 2 completed, needs the other order.
    let h = Builder::default()
        .invoke(1, w(2))
        .invoke(2, w(1))
        .ok(2, w(1))
        .invoke(3, R)
        .ok(1, w(2))
        .invoke(4, R)
        .read(4, Some(1))
        .read(3, Some(2))
        .history();
    let v = check(&h)?;
    let a = anomaly(&v)?;
    assert_eq!(calls(a), vec![(1, w(2)), (2, w(1)), (3, R), (4, R)]);
    assert_eq!((a.breaking_op, a.complete), (Some(2), true));
    assert_eq!(a.possible_states, Some(vec![Some(1), Some(2)]));
    assert!(
        a.explanation.contains(
            "leaves the register at 1 or 2, but no order of all 4 operations invoked before its \
             completion can include it."
        ),
        "{}",
        a.explanation
    );
    Ok(())
}

#[test]
fn unknown_writes_nobody_saw_do_not_exhaust_the_search() -> Result<(), CheckError> {
    // Thirty writes time out together (as while a whole cluster is down) and none of their
    // values is ever read; then a read must see the value before them. Placing any of them
    // before that read breaks it, so a search over them would try every subset of the thirty
    // (2^30 configurations) before placing the read after none of them.
    let thirty_unknown = || {
        let mut b = Builder::default().op(0, w(1));
        for p in 1..=30 {
            b = b.invoke(p, w(100 + p));
        }
        b = b.op_read(0, Some(1));
        for p in 1..=30 {
            b = b.info(p, w(100 + p));
        }
        b
    };
    let b = thirty_unknown();
    let v = check(&b.op(0, w(2)).op_read(0, Some(2)).history())?;
    assert_eq!(v.valid, Validity::Valid, "{v:?}");
    assert_eq!((v.keys[0].ops, v.keys[0].unobservable), (34, 30));
    assert!(v.keys[0].configurations < 10, "{v:?}");
    // One of them read later must be searched, and then the history is still linearizable.
    let b = thirty_unknown();
    let v = check(&b.op_read(0, Some(107)).history())?;
    assert_eq!(v.valid, Validity::Valid, "{v:?}");
    assert_eq!(v.keys[0].unobservable, 29);
    Ok(())
}
