//! Explaining a shrunk anomaly in words.

use std::collections::BTreeSet;

use super::shrink::{Context, Shrunk};
use super::{Completion, ReportedOp, secs};

fn plural(k: usize) -> &'static str {
    if k == 1 { "operation" } else { "operations" }
}

/// "at 3", "absent".
fn value(v: Option<u64>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| format!("at {v}"))
}

/// "at 0 or 2", "at 0, 2 or 5", "absent", "at 2, or absent".
fn values(set: &BTreeSet<Option<u64>>) -> String {
    let present: Vec<String> = set.iter().flatten().map(u64::to_string).collect();
    let list = match present.as_slice() {
        [] => String::new(),
        [one] => format!("at {one}"),
        [init @ .., last] => format!("at {} or {last}", init.join(", ")),
    };
    match (list.is_empty(), set.contains(&None)) {
        (true, true) => "absent".to_string(),
        (false, true) => format!("{list}, or absent"),
        (_, false) => list,
    }
}

/// "every order of the 57 operations that completed before it was invoked, together with any of
/// the 3 operations running at the time or with an unknown outcome,".
fn orders(c: &Context) -> String {
    let during = format!("{} {} running at the time or with an unknown outcome", c.during, plural(c.during));
    match (c.before, c.during) {
        (0, 0) => "the key's initial state".to_string(),
        (0, _) => format!("starting from an absent key, every order of any of the {during},"),
        (n, 0) => format!("every order of the {n} {} that completed before it was invoked", plural(n)),
        (n, _) => format!(
            "every order of the {n} {} that completed before it was invoked, together with any of the {during},",
            plural(n)
        ),
    }
}

/// The note on `failed` operations that wrote `v`.
fn failed_note(failed: &[ReportedOp], v: u64) -> String {
    let notes: Vec<String> = failed
        .iter()
        .filter(|f| f.written() == Some(v))
        .take(3)
        .map(|f| {
            format!("{} completed fail at {}", f.describe(), f.complete_time_ns.map(secs).unwrap_or_default())
        })
        .collect();
    match notes.len() {
        0 => String::new(),
        1 => format!("; {} (it did not take effect)", notes.join(", ")),
        _ => format!("; {} (they did not take effect)", notes.join(", ")),
    }
}

/// Why the history stops being linearizable at `b`.
fn reason(shrunk: &Shrunk, b: &ReportedOp, c: &Context, failed: &[ReportedOp]) -> String {
    let (what, when) = (b.describe(), b.timing());
    let needed = b.observed();
    if let Some(Some(v)) = needed
        && !c.writer_of_observed
    {
        return format!(
            "no linearization: {what} {when} saw {v}, but no operation on this key that took or may \
             have taken effect, invoked before it completed, writes {v} (the key starts absent){}.",
            failed_note(failed, v)
        );
    }
    let Some(states) = &shrunk.states else {
        return format!(
            "no linearization: the history of this key is linearizable up to the completion of \
             {what} {when} and not after (listing the register values possible when it could take \
             effect ran out of budget)."
        );
    };
    match needed {
        Some(x) if !states.contains(&x) => format!(
            "no linearization: {what} {when} needs the register {}, but {} leaves it {} at any \
             point where it could take effect, never {}.",
            value(x),
            orders(c),
            values(states),
            value(x)
        ),
        _ => format!(
            "no linearization: the history of this key is linearizable up to the completion of \
             {what} {when} and not after. Where it could take effect, {} leaves the register {}, \
             but no order of all {} {} invoked before its completion can include it.",
            orders(c),
            values(states),
            c.prefix,
            plural(c.prefix)
        ),
    }
}

/// What the reported operations are.
fn witness_note(shrunk: &Shrunk, c: &Context) -> String {
    let n = shrunk.ops.len();
    if !shrunk.complete {
        let budget = if c.witness_finished { "" } else { "; shrinking it ran out of budget" };
        return format!(
            " The {n} {} shown are an excerpt to be read with this explanation (it, the operations \
             running at the time and the last writes before it), not a self-contained witness: the \
             smallest set of this key's operations found that is not linearizable whatever other \
             operations invoked before its completion are added back has {} operations{budget}.",
            plural(n),
            c.witness.len()
        );
    }
    if n == c.prefix {
        return " The operations shown, all of this key's operations invoked before its completion, are \
                not linearizable by themselves."
            .to_string();
    }
    let smaller =
        if c.witness_finished { "" } else { " (shrinking ran out of budget: a smaller set may exist)" };
    format!(
        " The {n} {} shown are not linearizable by themselves, and stay so with any of the other {} \
         operations invoked before its completion added back (those are reads, and writes a \
         later write overwrote before any read or CAS needed here could observe them){smaller}.",
        plural(n),
        c.prefix - n
    )
}

/// Explains a shrunk anomaly in words. `failed` are the key's operations that completed `fail`.
pub(super) fn explain(shrunk: &Shrunk, failed: &[ReportedOp]) -> String {
    let ops = &shrunk.ops;
    let (Some(b), Some(c)) = (shrunk.breaking.and_then(|i| ops.get(i)), &shrunk.context) else {
        let n = ops.len();
        return format!(
            "no linearization of these {n} {}: no order of them respects both real time and the \
             register's semantics (the anomaly was not shrunk: shrinking is off or ran out of budget).",
            plural(n)
        );
    };
    let mut text = reason(shrunk, b, c, failed);
    text.push_str(&witness_note(shrunk, c));
    if ops.iter().any(|op| op.completion == Completion::Running) {
        text.push_str(
            " Operations shown as running completed later; at that point they may or may not have taken effect.",
        );
    }
    text
}
