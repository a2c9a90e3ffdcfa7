//! Operations of unknown outcome the search may leave out without changing its answer.
//!
//! A write or compare-and-set whose outcome is unknown (`info`, or never completed) may take
//! effect or not; the search tries both, which doubles its work for each such operation that
//! overlaps the others. Many of them write a value nobody could ever see: no read returned it
//! and no compare-and-set expects it. Placing such an operation can only leave the register
//! holding a value that no later operation accepts until some write overwrites it, so an order
//! that places it stays legal with it left out: a read needs a value somebody saw, a
//! compare-and-set one it expects, and neither is the unseen value. Leaving it out is
//! therefore exact, not a heuristic: the operations keep a linearization if and only if the
//! reduced ones do.
//!
//! Leaving out a compare-and-set can make the value it expected unseen in turn, so the
//! reduction repeats until nothing changes. After a power loss, when writes with an unknown
//! outcome pile up while every member is down, this is what keeps a key decidable.

use std::collections::HashSet;

use super::{Completion, ReportedOp};
use crate::history::Call;

/// `ops` without the writes and compare-and-sets of unknown outcome whose value no operation
/// could observe (see the module docs), in the same order.
pub(super) fn observable(ops: &[ReportedOp]) -> Vec<ReportedOp> {
    let mut kept: Vec<ReportedOp> = ops.to_vec();
    loop {
        let seen: HashSet<u64> = kept
            .iter()
            .filter_map(|op| match op.call {
                Call::Read => op.read,
                Call::Cas { from, .. } => Some(from),
                Call::Write { .. } => None,
            })
            .collect();
        let before = kept.len();
        kept.retain(|op| op.completion == Completion::Ok || op.written().is_none_or(|v| seen.contains(&v)));
        if kept.len() == before {
            return kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, completion: Completion, read: Option<u64>, inv: usize) -> ReportedOp {
        ReportedOp::at(call, completion, read, inv, None)
    }

    fn calls(ops: &[ReportedOp]) -> Vec<Call> {
        ops.iter().map(|op| op.call).collect()
    }

    #[test]
    fn only_unknown_operations_writing_unseen_values_are_left_out() {
        let ops = [
            op(Call::Write { value: 1 }, Completion::Ok, None, 0),
            op(Call::Write { value: 2 }, Completion::Info, None, 1),
            op(Call::Write { value: 3 }, Completion::Incomplete, None, 2),
            op(Call::Write { value: 4 }, Completion::Info, None, 3),
            op(Call::Write { value: 5 }, Completion::Ok, None, 4),
            op(Call::Read, Completion::Ok, Some(3), 5),
            op(Call::Cas { from: 4, to: 6 }, Completion::Ok, None, 6),
        ];
        // 2 is never seen; 3 is read, 4 is expected; the ok write of 5 stays though unseen.
        assert_eq!(
            calls(&observable(&ops)),
            vec![
                Call::Write { value: 1 },
                Call::Write { value: 3 },
                Call::Write { value: 4 },
                Call::Write { value: 5 },
                Call::Read,
                Call::Cas { from: 4, to: 6 },
            ]
        );
    }

    #[test]
    fn a_chain_of_unknown_compare_and_sets_nobody_saw_is_left_out_whole() {
        let ops = [
            op(Call::Write { value: 1 }, Completion::Info, None, 0),
            op(Call::Cas { from: 1, to: 2 }, Completion::Info, None, 1),
            op(Call::Cas { from: 2, to: 3 }, Completion::Incomplete, None, 2),
            op(Call::Read, Completion::Ok, None, 3),
        ];
        assert_eq!(calls(&observable(&ops)), vec![Call::Read]);
        // Once the end of the chain is read, all of it may matter.
        let mut seen = ops.to_vec();
        seen.push(op(Call::Read, Completion::Ok, Some(3), 4));
        assert_eq!(observable(&seen).len(), 5);
    }
}
