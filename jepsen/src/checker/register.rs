//! The WGL search (Wing & Gong, with Lowe's memoisation) over one key's register operations.
//!
//! The operations' invocations ("calls") and `ok` completions ("returns") form a doubly linked
//! list in history order. The search walks the list from its head: at a call it tries to place
//! (linearize) that operation next — the register must allow it, and the resulting
//! configuration must be new — and if so unlinks the call and its return and starts again from
//! the head; at a return it is stuck (that operation had to be placed before anything invoked
//! later) and backtracks the last placement. Operations whose outcome is unknown have no
//! return: they may be placed anywhere after their invocation or never, so the search tries
//! them only after the required operations and skips a configuration that another one
//! explored before dominates (see [`explore`]). The history is linearizable once every `ok`
//! operation is placed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::{Completion, ReportedOp};
use crate::history::Call;

/// The search's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Linearizable,
    NotLinearizable,
    /// The budget ran out.
    Unknown,
}

/// The answer and the number of configurations explored to reach it.
#[derive(Clone, Copy, Debug)]
pub(super) struct SearchResult {
    pub(super) outcome: Outcome,
    pub(super) configurations: u64,
}

/// The register after `op` takes effect on `state`, or `None` if it cannot take effect there.
fn step(state: Option<u64>, op: &ReportedOp) -> Option<Option<u64>> {
    match op.call {
        Call::Read => (op.read == state).then_some(state),
        Call::Write { value } => Some(Some(value)),
        Call::Cas { from, to } => (state == Some(from)).then_some(Some(to)),
    }
}

/// A bijective mixer of 64-bit words (the splitmix64 finaliser).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A pseudo-random 128-bit word for `x` in the family `salt`.
fn mix128(x: u64, salt: u64) -> u128 {
    let hi = mix64(x ^ mix64(salt));
    let lo = mix64(hi ^ mix64(salt.wrapping_add(0x5851_F42D_4C95_7F2D)));
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The fingerprint of the register value, combined by xor with the placed operations' words.
fn state_word(state: Option<u64>) -> u128 {
    match state {
        None => mix128(0, 3),
        Some(v) => mix128(v, 2),
    }
}

/// Fingerprints are already uniformly distributed: hash them by folding, not SipHash.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

const HEAD: usize = 0;

/// The linked list of calls and returns, with "dancing links" unlink/relink.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation each entry belongs to (unused for the sentinels).
    op: Vec<usize>,
    /// Whether each entry is a call (else a return or a sentinel).
    is_call: Vec<bool>,
    /// Each operation's return entry, if it has one.
    ret: Vec<Option<usize>>,
    tail: usize,
}

impl Entries {
    fn new(ops: &[ReportedOp]) -> Entries {
        // (event index, op, is call), in history order
        let mut events: Vec<(usize, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke_index, i, true));
            if let (Completion::Ok, Some(c)) = (op.completion, op.complete_index) {
                events.push((c, i, false));
            }
        }
        events.sort_unstable();
        let n = events.len();
        let tail = n + 1;
        let mut e = Entries {
            next: (1..=n + 2).collect(),
            prev: (0..n + 2).map(|i| i.saturating_sub(1)).collect(),
            op: vec![0; n + 2],
            is_call: vec![false; n + 2],
            ret: vec![None; ops.len()],
            tail,
        };
        for (pos, &(_, op, is_call)) in events.iter().enumerate() {
            let entry = pos + 1;
            e.op[entry] = op;
            e.is_call[entry] = is_call;
            if !is_call {
                e.ret[op] = Some(entry);
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[n] = x;
    }

    /// Removes a call and its operation's return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(r) = self.ret[self.op[call]] {
            self.unlink(r);
        }
    }

    /// Undoes [`Entries::lift`] (only valid in reverse order of lifting).
    fn unlift(&mut self, call: usize) {
        if let Some(r) = self.ret[self.op[call]] {
            self.relink(r);
        }
        self.relink(call);
    }
}

/// How an exploration ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Explored {
    /// The visitor asked to stop.
    Stopped,
    /// Every reachable configuration was visited.
    Exhausted,
    /// The budget ran out.
    OutOfBudget,
}

/// For each operation without a return, the last operation invoked before it that is the
/// same call, also without a return and marked alike, if any. Such twins are interchangeable:
/// an order that places the later one while the earlier one waits (to be placed later, or
/// never) stays legal with the two swapped, since the earlier one may take effect anywhere
/// the later one may, and both have the same effect. So the search places twins in
/// invocation order only: with `n` unknown writes of one value pending, it tries `n + 1`
/// ways to place some of them instead of `2^n`.
fn earlier_twins(ops: &[ReportedOp], list: &Entries, marked: impl Fn(usize) -> bool) -> Vec<Option<usize>> {
    let mut last: HashMap<(Call, bool), usize> = HashMap::new();
    let mut twin = vec![None; ops.len()];
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| ops[i].invoke_index);
    for i in order {
        if list.ret[i].is_some() {
            continue;
        }
        twin[i] = last.insert((ops[i].call, marked(i)), i);
    }
    twin
}

/// The unknown-outcome operations (no return, not marked) placed in a configuration, as a
/// bit set over their own numbering.
type Optional = Box<[u64]>;

/// Whether every operation placed in `a` is placed in `b`.
fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// Visits every configuration reachable from the empty one, depth first, each once: calls
/// `visit(register value, ok operations placed, marked operations placed)` on each until it
/// returns true, or at most `budget` configurations were explored. Returns how it ended and the
/// number of configurations explored. Only `ok` operations must be placed before an operation
/// invoked after their completion; the others may be placed anywhere after their invocation.
///
/// Operations of unknown outcome (without a return) that are not marked are optional: a
/// configuration that placed the same required operations, reached the same register value and
/// placed only some of the optional ones a second configuration placed can do everything the
/// second can (its extra optional operations are still available, and constrain nothing while
/// they wait). So a configuration is explored only if no configuration explored before it
/// dominates it that way, and at each step the search tries the required operations before
/// the optional ones, so that configurations with few optional operations placed come first.
/// A history with many operations of unknown outcome that nobody observed is then checked
/// without trying the combinations of placing them. (`visit` sees every pair of register
/// value and required operations placed that is reachable, which is all its callers use.)
fn explore(
    ops: &[ReportedOp],
    marked: &[bool],
    budget: u64,
    mut visit: impl FnMut(Option<u64>, usize, usize) -> bool,
) -> (Explored, u64) {
    let words: Vec<u128> = (0..ops.len() as u64).map(|i| mix128(i, 1)).collect();
    let is_marked = |op: usize| marked.get(op).copied().unwrap_or(false);
    let mut list = Entries::new(ops);
    let twin = earlier_twins(ops, &list, is_marked);
    // Each optional operation's bit.
    let mut optional: Vec<Option<usize>> = vec![None; ops.len()];
    let mut n_optional = 0;
    for (op, bit) in optional.iter_mut().enumerate() {
        if list.ret[op].is_none() && !is_marked(op) {
            *bit = Some(n_optional);
            n_optional += 1;
        }
    }
    let mut placed = vec![false; ops.len()];
    let mut cache: HashSet<u128, BuildHasherDefault<FoldHasher>> = HashSet::default();
    // By (required operations placed, register value): the optional sets explored.
    let mut explored: HashMap<u128, Vec<Optional>, BuildHasherDefault<FoldHasher>> = HashMap::default();

    let mut state: Option<u64> = None;
    let mut placed_word: u128 = 0;
    let mut required_word: u128 = 0;
    let mut optional_set: Optional = vec![0u64; n_optional.div_ceil(64)].into_boxed_slice();
    let (mut placed_ok, mut placed_marked) = (0usize, 0usize);
    // (call entry placed, register value before it, whether it was tried as optional)
    let mut stack: Vec<(usize, Option<u64>, bool)> = Vec::new();
    cache.insert(placed_word ^ state_word(state));
    explored.entry(required_word ^ state_word(state)).or_default().push(optional_set.clone());
    let mut configurations: u64 = 1;
    if visit(state, placed_ok, placed_marked) {
        return (Explored::Stopped, configurations);
    }
    // Required operations first, then (on a second walk of the list) optional ones.
    let mut trying_optional = false;
    let mut entry = list.next[HEAD];
    loop {
        if entry != list.tail && list.is_call[entry] {
            let op = list.op[entry];
            let bit = optional[op];
            let twin_waits = twin[op].is_some_and(|t| !placed[t]);
            if bit.is_some() == trying_optional
                && !twin_waits
                && let Some(after) = step(state, &ops[op])
            {
                let word = placed_word ^ words[op];
                let required = if bit.is_some() { required_word } else { required_word ^ words[op] };
                let mut set = optional_set.clone();
                if let Some(b) = bit
                    && let Some(w) = set.get_mut(b / 64)
                {
                    *w |= 1 << (b % 64);
                }
                let seen = explored.entry(required ^ state_word(after)).or_default();
                if cache.insert(word ^ state_word(after)) && !seen.iter().any(|a| subset(a, &set)) {
                    seen.push(set.clone());
                    configurations += 1;
                    if configurations > budget {
                        return (Explored::OutOfBudget, configurations);
                    }
                    stack.push((entry, state, trying_optional));
                    state = after;
                    placed_word = word;
                    required_word = required;
                    optional_set = set;
                    placed_ok += usize::from(ops[op].completion == Completion::Ok);
                    placed_marked += usize::from(is_marked(op));
                    placed[op] = true;
                    list.lift(entry);
                    if visit(state, placed_ok, placed_marked) {
                        return (Explored::Stopped, configurations);
                    }
                    trying_optional = false;
                    entry = list.next[HEAD];
                    continue;
                }
            }
            entry = list.next[entry];
            continue;
        }
        // A return (or the end of the list): the optional operations next, or backtrack.
        if !trying_optional {
            trying_optional = true;
            entry = list.next[HEAD];
            continue;
        }
        let Some((call, before, was_optional)) = stack.pop() else {
            return (Explored::Exhausted, configurations);
        };
        let op = list.op[call];
        placed[op] = false;
        list.unlift(call);
        state = before;
        placed_word ^= words[op];
        match optional[op] {
            Some(b) => {
                if let Some(w) = optional_set.get_mut(b / 64) {
                    *w &= !(1 << (b % 64));
                }
            }
            None => required_word ^= words[op],
        }
        placed_ok -= usize::from(ops[op].completion == Completion::Ok);
        placed_marked -= usize::from(is_marked(op));
        trying_optional = was_optional;
        entry = list.next[call];
    }
}

/// Searches for a linearization of `ops` (one key's operations, failed ones and reads with an
/// unknown outcome already removed; only `ok` ones must be placed), exploring at most `budget`
/// configurations.
pub(super) fn search(ops: &[ReportedOp], budget: u64) -> SearchResult {
    let must_place = ops.iter().filter(|op| op.completion == Completion::Ok).count();
    let (how, configurations) = explore(ops, &[], budget, |_, placed_ok, _| placed_ok == must_place);
    let outcome = match how {
        Explored::Stopped => Outcome::Linearizable,
        Explored::Exhausted => Outcome::NotLinearizable,
        Explored::OutOfBudget => Outcome::Unknown,
    };
    SearchResult { outcome, configurations }
}

/// The register values of every reachable configuration of `ops` in which all the operations
/// marked `required` are placed (each configuration places a set of operations in an order
/// that respects real time and the register's semantics; the others may be placed or not), or
/// `None` if that takes more than `budget` configurations; and the configurations explored.
pub(super) fn reachable_states(
    ops: &[ReportedOp],
    required: &[bool],
    budget: u64,
) -> (Option<BTreeSet<Option<u64>>>, u64) {
    let n_required = required.iter().filter(|&&r| r).count();
    let mut states = BTreeSet::new();
    let (how, configurations) = explore(ops, required, budget, |state, _, placed| {
        if placed == n_required {
            states.insert(state);
        }
        false
    });
    ((how == Explored::Exhausted).then_some(states), configurations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, completion: Completion, read: Option<u64>, inv: usize, done: usize) -> ReportedOp {
        ReportedOp::at(call, completion, read, inv, Some(done))
    }

    #[test]
    fn an_empty_history_is_linearizable_in_one_configuration() {
        let r = search(&[], 10);
        assert_eq!(r.outcome, Outcome::Linearizable);
        assert_eq!(r.configurations, 1);
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_not_linearizable() {
        // write 1 [0,1], write 2 [2,3], read 1 [4,5]
        let ops = [
            op(Call::Write { value: 1 }, Completion::Ok, None, 0, 1),
            op(Call::Write { value: 2 }, Completion::Ok, None, 2, 3),
            op(Call::Read, Completion::Ok, Some(1), 4, 5),
        ];
        let r = search(&ops, 100);
        assert_eq!(r.outcome, Outcome::NotLinearizable);
        assert_eq!(r.configurations, 3);
        // A read overlapping the write of 2 [2,5] may come before it.
        let ops = [
            ops[0],
            op(Call::Write { value: 2 }, Completion::Ok, None, 2, 5),
            op(Call::Read, Completion::Ok, Some(1), 3, 4),
        ];
        assert_eq!(search(&ops, 100).outcome, Outcome::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_be_placed_late_or_never() {
        // write 7 info [0, -], read absent [1,2], read 7 [3,4]
        let ops = [
            op(Call::Write { value: 7 }, Completion::Info, None, 0, 5),
            op(Call::Read, Completion::Ok, None, 1, 2),
            op(Call::Read, Completion::Ok, Some(7), 3, 4),
        ];
        assert_eq!(search(&ops, 100).outcome, Outcome::Linearizable);
        assert_eq!(search(&ops[..2], 100).outcome, Outcome::Linearizable);
    }

    #[test]
    fn a_real_key_with_71_unknown_outcomes_is_decided_in_a_few_hundred_configurations()
    -> Result<(), Box<dyn std::error::Error>> {
        // Seed 340's key k0-2 (docs/testing.md): 200 operations, 71 of unknown outcome (42
        // writes, 29 compare-and-sets). Before unknown operations were optional (dominated
        // configurations skipped, required operations tried first), the search gave up after
        // 50,000,000 configurations.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed-340-k0-2.jsonl");
        let history = crate::history::History::load(&path)?;
        let limits = super::super::CheckLimits { max_states_per_key: 10_000, shrink: false };
        let verdict = super::super::check_registers(&history, &limits)?;
        assert_eq!(verdict.valid, super::super::Validity::Valid, "{:?}", verdict.keys);
        Ok(())
    }

    #[test]
    fn reachable_states_place_every_required_operation() {
        // write 1 [0,1], write 2 [2,5], write 3 unknown [3, -], read 2 [6,7]
        let ops = [
            op(Call::Write { value: 1 }, Completion::Ok, None, 0, 1),
            op(Call::Write { value: 2 }, Completion::Ok, None, 2, 5),
            op(Call::Write { value: 3 }, Completion::Info, None, 3, 4),
        ];
        let (states, configurations) = reachable_states(&ops, &[true, false, false], 100);
        assert_eq!(states, Some(BTreeSet::from([Some(1), Some(2), Some(3)])));
        // (), (1), (1,2), (1,3), (1,2,3)=3; (1,3,2)=2 is (1,2)=2 with the unknown write 3
        // placed as well, which it dominates: 5 configurations.
        assert_eq!(configurations, 5);
        let (states, _) = reachable_states(&ops, &[true, true, false], 100);
        assert_eq!(states, Some(BTreeSet::from([Some(2), Some(3)])));
        let (states, _) = reachable_states(&ops, &[false; 3], 100);
        assert_eq!(states, Some(BTreeSet::from([None, Some(1), Some(2), Some(3)])));
        // Requiring a read of 2 overlapping both writes leaves out the states it cannot follow.
        let with_read = [ops[0], ops[1], ops[2], op(Call::Read, Completion::Ok, Some(2), 6, 7)];
        let (states, _) = reachable_states(&with_read, &[false, false, false, true], 100);
        assert_eq!(states, Some(BTreeSet::from([Some(2), Some(3)])));
        assert_eq!(reachable_states(&ops, &[true, false, false], 3).0, None);
    }

    #[test]
    fn unknown_writes_of_one_value_are_placed_in_invocation_order_only() {
        // write 1 [0,1]; twenty writes of 7, outcome unknown, invoked at 2..=21; read 1
        // [22,23]; read 7 [24,25]. Which of the twenty took effect does not matter, only how
        // many: without that, the search would try all 2^20 subsets before the read of 1.
        let mut ops = vec![op(Call::Write { value: 1 }, Completion::Ok, None, 0, 1)];
        ops.extend((2..=21).map(|i| op(Call::Write { value: 7 }, Completion::Info, None, i, 30 + i)));
        ops.push(op(Call::Read, Completion::Ok, Some(1), 22, 23));
        ops.push(op(Call::Read, Completion::Ok, Some(7), 24, 25));
        let r = search(&ops, 100_000);
        assert_eq!(r.outcome, Outcome::Linearizable);
        assert!(r.configurations < 100, "{r:?}");
        // A CAS of the same value is no twin of a write.
        ops[5] = op(Call::Cas { from: 1, to: 7 }, Completion::Info, None, 5, 35);
        assert_eq!(search(&ops, 100_000).outcome, Outcome::Linearizable);
    }

    #[test]
    fn distinct_configurations_get_distinct_fingerprints() {
        let mut seen = HashSet::new();
        for set in 0u64..256 {
            let word = (0..8).filter(|i| set >> i & 1 == 1).fold(0u128, |w, i| w ^ mix128(i, 1));
            for state in [None, Some(0), Some(1), Some(2)] {
                assert!(seen.insert(word ^ state_word(state)), "collision at {set} {state:?}");
            }
        }
    }
}
