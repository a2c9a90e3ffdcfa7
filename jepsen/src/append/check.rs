//! The checker: inference, then the dependency graph's strongly connected components, and in
//! each a short cycle, classified as Elle does.
//!
//! Each component of more than one transaction holds at least one cycle. The searches below
//! run in order on the component and the first that finds a cycle names it, so a component is
//! reported once, as the most specific anomaly it shows: G0 (ww edges only), G1c (ww and wr),
//! G-single (ww and wr plus exactly one rw), G2 (any data edges); then the same four allowing
//! real-time edges, named `-realtime`. A found cycle is classified by its steps (each labelled
//! with the strongest data dependency it has, real time last), so a cycle whose every step is
//! also a data dependency is never called `-realtime`.

use super::graph::{self, EdgeKind, Graph, RT, RW, WR, WW};
use super::infer::{ALL, Inference, external_reads, is_prefix};
use super::report::{
    AnomalyKind, AppendAnomaly, AppendCounts, AppendVerdict, CycleStep, EdgeCounts, ReportedTxn, Sink, secs,
    show_list,
};
use super::{AppendHistory, MicroOp, Outcome};

/// Edge visits the search for a single-rw cycle may make in one component before falling back
/// to any cycle (which may then be reported as G2 where a G-single exists).
const SINGLE_RW_BUDGET: u64 = 2_000_000;

/// The searches, in order: edge kinds allowed, and whether exactly one rw step is wanted.
const SEARCHES: [(u8, bool); 8] = [
    (WW, false),
    (WW | WR, false),
    (WW | WR, true),
    (WW | WR | RW, false),
    (WW | RT, false),
    (WW | WR | RT, false),
    (WW | WR | RT, true),
    (ALL, false),
];

/// Checks an append history for strict serializability (see the module documentation).
pub fn check(history: &AppendHistory) -> AppendVerdict {
    let mut sink = Sink::default();
    let inf = Inference::new(history, &mut sink);
    let graph = Graph::new(history.txns.len(), inf.edges());
    for component in graph::components(&graph, ALL) {
        let sub = graph.subgraph(&component);
        let Some(steps) = short_cycle(&sub) else { continue };
        let steps: Vec<graph::Step> = steps
            .into_iter()
            .map(|s| graph::Step {
                from: component[s.from as usize],
                to: component[s.to as usize],
                kind: s.kind,
            })
            .collect();
        let rw = steps.iter().filter(|s| s.kind == EdgeKind::Rw).count();
        let wr = steps.iter().any(|s| s.kind == EdgeKind::Wr);
        let realtime = steps.iter().any(|s| s.kind == EdgeKind::Realtime);
        let kind = AnomalyKind::of_cycle(rw, wr, realtime);
        sink.add(kind, || cycle_anomaly(&inf, kind, &steps, component.len()));
    }
    let txns = &history.txns;
    let count = |o: Outcome| txns.iter().filter(|t| t.outcome == o).count();
    let [ww, wr, rw, realtime] = graph.counts();
    let counts = AppendCounts {
        txns: txns.len(),
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        keys: inf.keys.len(),
        graph_txns: inf.in_graph.iter().filter(|&&g| g).count(),
        edges: EdgeCounts { ww, wr, rw, realtime },
    };
    sink.verdict(counts)
}

/// The first cycle the searches find in a strongly connected graph.
fn short_cycle(g: &Graph) -> Option<Vec<graph::Step>> {
    SEARCHES.iter().find_map(|&(mask, single)| {
        if single {
            graph::find_single_rw_cycle(g, mask, SINGLE_RW_BUDGET)
        } else {
            graph::find_cycle(g, mask)
        }
    })
}

/// What a cycle kind means, for explanations.
fn meaning(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::G0 | AnomalyKind::G0Realtime => "a cycle of write-write dependencies (dirty write)",
        AnomalyKind::G1c | AnomalyKind::G1cRealtime => {
            "a cycle of write-write and write-read dependencies (circular information flow)"
        }
        AnomalyKind::GSingle | AnomalyKind::GSingleRealtime => {
            "a cycle with exactly one read-write anti-dependency (read skew)"
        }
        _ => "a cycle with several read-write anti-dependencies (write skew)",
    }
}

fn cycle_anomaly(
    inf: &Inference<'_>,
    kind: AnomalyKind,
    steps: &[graph::Step],
    size: usize,
) -> AppendAnomaly {
    let realtime = matches!(
        kind,
        AnomalyKind::G0Realtime
            | AnomalyKind::G1cRealtime
            | AnomalyKind::GSingleRealtime
            | AnomalyKind::G2Realtime
    );
    let mut path: Vec<String> = steps.iter().map(|s| format!("T{} -{}->", s.from, name(s.kind))).collect();
    path.extend(steps.first().map(|s| format!("T{}", s.from)));
    let explanation = format!(
        "{kind}: {}{}: {} (a strongly connected component of {size} transactions)",
        meaning(kind),
        if realtime {
            " that needs real-time edges, so no serial order respects real time (a serializable \
             history may still show it)"
        } else {
            ""
        },
        path.join(" ")
    );
    AppendAnomaly {
        kind,
        key: None,
        explanation,
        txns: steps.iter().map(|s| ReportedTxn::of(inf.txns, s.from as usize)).collect(),
        steps: steps
            .iter()
            .map(|s| CycleStep {
                from: s.from as usize,
                to: s.to as usize,
                kind: s.kind,
                why: why(inf, s.from, s.to, s.kind),
            })
            .collect(),
    }
}

/// The short name of an edge kind.
fn name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Ww => "ww",
        EdgeKind::Wr => "wr",
        EdgeKind::Rw => "rw",
        EdgeKind::Realtime => "rt",
    }
}

/// Why the edge `from -> to` of `kind` exists, in words.
fn why(inf: &Inference<'_>, from: u32, to: u32, kind: EdgeKind) -> String {
    let (Some(a), Some(b)) = (inf.txns.get(from as usize), inf.txns.get(to as usize)) else {
        return String::new();
    };
    let appends = |txn: &'_ super::AppendTxn| -> Vec<(String, u64)> {
        txn.ops
            .iter()
            .filter_map(|op| match op {
                MicroOp::Append { key, element } => Some((key.clone(), *element)),
                MicroOp::Read { .. } => None,
            })
            .collect()
    };
    let appender_is = |key: &str, e: u64, t: u32| inf.appender(key, e).is_some_and(|w| w.txn == t);
    let unobserved = |key: &str| inf.key(key).map(|o| o.unobserved.as_slice()).unwrap_or_default();
    match kind {
        EdgeKind::Ww => {
            for (key, e) in appends(a) {
                let Some(o) = inf.key(&key) else { continue };
                let Some(&i) = o.pos.get(&e) else { continue };
                if let Some(&next) = o.order.get(i + 1)
                    && appender_is(&key, next, to)
                {
                    return format!(
                        "T{from} appended {e} to {key} and T{to} appended the next element, {next} \
                         (order of {key} from its longest read)"
                    );
                }
                if i + 1 == o.order.len() && unobserved(&key).contains(&to) {
                    return format!(
                        "T{from} appended {e}, the last element any read of {key} saw; T{to} \
                         committed an append to {key} that no read saw, so it comes later"
                    );
                }
            }
            format!("T{from} appended to a key before T{to}")
        }
        EdgeKind::Wr => {
            for (key, v) in external_reads(b) {
                if let Some(&e) = v.last()
                    && appender_is(key, e, from)
                {
                    return format!(
                        "T{to} read {key} = {}, ending with {e}, which T{from} appended",
                        show_list(v)
                    );
                }
            }
            format!("T{to} read what T{from} appended")
        }
        EdgeKind::Rw => {
            for (key, v) in external_reads(a) {
                let Some(o) = inf.key(key) else { continue };
                if !is_prefix(v, &o.order) {
                    continue;
                }
                match o.order.get(v.len()) {
                    Some(&next) if appender_is(key, next, to) => {
                        return format!(
                            "T{from} read {key} = {}, and T{to} appended the next element, {next}",
                            show_list(v)
                        );
                    }
                    None if unobserved(key).contains(&to) => {
                        return format!(
                            "T{from} read {key} = {}, without the element T{to} appended and \
                             committed (no read saw it, so it comes after all of these)",
                            show_list(v)
                        );
                    }
                    _ => {}
                }
            }
            format!("T{from} read a state that T{to}'s append overwrote")
        }
        EdgeKind::Realtime => match a.complete_ns {
            Some(done) => format!(
                "T{from} completed ok at {}, before T{to} was invoked at {}",
                secs(done),
                secs(b.invoke_ns)
            ),
            None => format!("T{from} completed before T{to} was invoked"),
        },
    }
}
