//! Matching pods per domain kept between cycles: every node is counted once per snapshot and
//! kind of incoming pod, then only the nodes whose pods changed are counted again.
//!
//! The pods of a workload share their constraints, so each cycle would count the same pods
//! over the same nodes again, one or two of them having changed since (the pod the previous
//! cycle placed). The snapshot keeps, per [`Counter::key`], the counts per domain and what
//! each node added to them ([`NodeTotals`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::constraint::Constraint;
use super::counting::{Counter, NOT_COUNTED};
use super::domains::Domains;
use crate::scheduler::{NodeInfo, NodeTotals, Snapshot};

/// The counts a snapshot keeps: per node, each constraint's matching pods there (or
/// [`NOT_COUNTED`]); in total, each constraint's matching pods per domain.
#[derive(Default)]
struct SpreadMemo(NodeTotals<Box<[i64]>, Vec<Domains<Box<str>>>>);

/// [`domain_counts`](super::counting::domain_counts) over every node of `snapshot`, kept in
/// the snapshot for the next pod with the same [`Counter::key`].
pub(super) fn snapshot_counts(
    pod: &Pod,
    constraints: &[Constraint],
    snapshot: &Snapshot,
    skip: impl Fn(&Constraint) -> bool,
) -> Arc<Vec<Domains<Box<str>>>> {
    let counter = Counter::new(pod, constraints, skip);
    if !counter.counts_any() {
        return Arc::new(constraints.iter().map(|_| Domains::default()).collect());
    }
    let key = counter.key();
    snapshot.with_memo(|SpreadMemo(memo)| {
        memo.totals(
            &key,
            snapshot,
            |node| {
                let (mut values, mut here) = (Vec::new(), vec![NOT_COUNTED; constraints.len()]);
                counter.node(node, &mut values, &mut here);
                here.into_boxed_slice()
            },
            |counts, node, here, sign| apply(counts, constraints, node, here, sign),
            || constraints.iter().map(|_| Domains::default()).collect(),
        )
    })
}

/// Adds (`sign` 1) or takes out (-1) what `node` adds to each constraint's domain; a node
/// counted with no matching pod still makes its domain present.
fn apply(
    counts: &mut [Domains<Box<str>>],
    constraints: &[Constraint],
    node: &NodeInfo,
    here: &[i64],
    sign: i64,
) {
    let labels = node.labels();
    for ((c, domains), &n) in constraints.iter().zip(counts.iter_mut()).zip(here) {
        if n == NOT_COUNTED {
            continue;
        }
        let Some(value) = labels.get(c.topology_key.as_str()) else { continue };
        if !domains.adjust(value, sign * n) {
            domains.add(Box::from(value.as_str()), sign * n);
        }
    }
}
