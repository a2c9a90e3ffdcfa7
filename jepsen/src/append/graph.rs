//! The dependency graph and its cycles: a compact adjacency list with a bit set of edge kinds
//! per edge, strongly connected components by an iterative Tarjan (no recursion, so a long
//! chain of transactions cannot overflow the stack), and breadth-first searches for short
//! cycles restricted to some edge kinds.

use std::collections::VecDeque;

use serde::Serialize;

/// Why one transaction must come before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Write-write: the later transaction appended the next element after the earlier one's.
    Ww,
    /// Write-read: the later transaction read a list ending with the earlier one's element.
    Wr,
    /// Read-write (anti-dependency): the earlier transaction read a list that the later one's
    /// append extended.
    Rw,
    /// Real time: the earlier transaction completed `ok` before the later one was invoked.
    Realtime,
}

/// Edge-kind bits.
pub(crate) const WW: u8 = 1;
pub(crate) const WR: u8 = 2;
pub(crate) const RW: u8 = 4;
pub(crate) const RT: u8 = 8;

impl EdgeKind {
    /// The kind's bit.
    pub(crate) const fn bit(self) -> u8 {
        match self {
            EdgeKind::Ww => WW,
            EdgeKind::Wr => WR,
            EdgeKind::Rw => RW,
            EdgeKind::Realtime => RT,
        }
    }

    /// The kind a cycle step is labelled with among the kinds in `mask`: data dependencies
    /// before real time and the strongest first, so a cycle is only called `-realtime`, or
    /// given an `rw` edge, when it needs one.
    pub(crate) fn label(mask: u8) -> Option<EdgeKind> {
        [EdgeKind::Ww, EdgeKind::Wr, EdgeKind::Rw, EdgeKind::Realtime]
            .into_iter()
            .find(|k| mask & k.bit() != 0)
    }
}

/// One edge of a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) kind: EdgeKind,
}

/// A directed graph on nodes `0..n`, edges sorted by source then target, one entry per
/// (source, target) pair with the bits of every kind relating them.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    offsets: Vec<usize>,
    targets: Vec<u32>,
    masks: Vec<u8>,
}

impl Graph {
    /// A graph on `n` nodes from `(from, to, kind bits)` edges (merged; self-loops dropped).
    pub(crate) fn new(n: usize, mut edges: Vec<(u32, u32, u8)>) -> Graph {
        edges.retain(|&(a, b, _)| a != b && (a as usize) < n && (b as usize) < n);
        edges.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let mut offsets = vec![0; n + 1];
        let mut targets: Vec<u32> = Vec::with_capacity(edges.len());
        let mut masks: Vec<u8> = Vec::with_capacity(edges.len());
        let mut last: Option<(u32, u32)> = None;
        for (a, b, m) in edges {
            if last == Some((a, b)) {
                if let Some(prev) = masks.last_mut() {
                    *prev |= m;
                }
                continue;
            }
            last = Some((a, b));
            targets.push(b);
            masks.push(m);
            offsets[a as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        Graph { offsets, targets, masks }
    }

    /// The number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// `v`'s outgoing edges as (target, kind bits).
    pub(crate) fn edges(&self, v: u32) -> impl Iterator<Item = (u32, u8)> + '_ {
        let range = self.range(v);
        self.targets[range.clone()].iter().copied().zip(self.masks[range].iter().copied())
    }

    fn range(&self, v: u32) -> std::ops::Range<usize> {
        let v = v as usize;
        match (self.offsets.get(v), self.offsets.get(v + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    /// The kind bits of the edge `from -> to` (0: none).
    pub(crate) fn mask(&self, from: u32, to: u32) -> u8 {
        let range = self.range(from);
        let targets = &self.targets[range.clone()];
        targets.binary_search(&to).map_or(0, |i| self.masks[range.start + i])
    }

    /// Counts of distinct (source, target) pairs per kind, in [`EdgeKind`] order.
    pub(crate) fn counts(&self) -> [usize; 4] {
        let mut out = [0; 4];
        for m in &self.masks {
            for (i, bit) in [WW, WR, RW, RT].into_iter().enumerate() {
                if m & bit != 0 {
                    out[i] += 1;
                }
            }
        }
        out
    }

    /// The subgraph on `members` (node `i` of the result is `members[i]`).
    pub(crate) fn subgraph(&self, members: &[u32]) -> Graph {
        let local: std::collections::HashMap<u32, u32> =
            members.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
        let mut edges = Vec::new();
        for (i, &v) in members.iter().enumerate() {
            for (w, m) in self.edges(v) {
                if let Some(&j) = local.get(&w) {
                    edges.push((i as u32, j, m));
                }
            }
        }
        Graph::new(members.len(), edges)
    }
}

/// The strongly connected components of more than one node, using only edges with a kind in
/// `mask` (Tarjan's algorithm with an explicit call stack).
pub(crate) fn components(g: &Graph, mask: u8) -> Vec<Vec<u32>> {
    const UNSEEN: u32 = u32::MAX;
    let n = g.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut calls: Vec<(u32, usize)> = Vec::new();
    let mut next = 0u32;
    let mut out = Vec::new();
    for root in 0..n as u32 {
        if index[root as usize] != UNSEEN {
            continue;
        }
        index[root as usize] = next;
        low[root as usize] = next;
        next += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        calls.push((root, g.range(root).start));
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            if *pos < g.range(v).end {
                let (w, m) = (g.targets[*pos], g.masks[*pos]);
                *pos += 1;
                if m & mask == 0 {
                    continue;
                }
                let (wi, vi) = (w as usize, v as usize);
                if index[wi] == UNSEEN {
                    index[wi] = next;
                    low[wi] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[wi] = true;
                    calls.push((w, g.range(w).start));
                } else if on_stack[wi] {
                    low[vi] = low[vi].min(index[wi]);
                }
                continue;
            }
            calls.pop();
            let vi = v as usize;
            if let Some(&(u, _)) = calls.last() {
                low[u as usize] = low[u as usize].min(low[vi]);
            }
            if low[vi] == index[vi] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    out.push(component);
                }
            }
        }
    }
    out
}

/// Breadth-first search state reused across searches on one graph.
struct Bfs {
    seen: Vec<u32>,
    parent: Vec<u32>,
    round: u32,
}

impl Bfs {
    fn new(n: usize) -> Self {
        Bfs { seen: vec![0; n], parent: vec![0; n], round: 0 }
    }

    /// A shortest path of at least one edge from `from` to `to` (which may be `from`, for a
    /// cycle) over edges with a kind in `mask`, as its nodes from `from` to `to` exclusive of
    /// the final `to`, or `None`. Each edge looked at costs one unit of `budget`; at zero the
    /// search gives up.
    fn path(&mut self, g: &Graph, mask: u8, from: u32, to: u32, budget: &mut u64) -> Option<Vec<u32>> {
        self.round += 1;
        let round = self.round;
        let mut queue = VecDeque::from([from]);
        self.seen[from as usize] = round;
        while let Some(v) = queue.pop_front() {
            for (w, m) in g.edges(v) {
                if *budget == 0 {
                    return None;
                }
                *budget -= 1;
                if m & mask == 0 {
                    continue;
                }
                if w == to {
                    let mut nodes = vec![v];
                    let mut at = v;
                    while at != from {
                        at = self.parent[at as usize];
                        nodes.push(at);
                    }
                    nodes.reverse();
                    return Some(nodes);
                }
                if self.seen[w as usize] != round {
                    self.seen[w as usize] = round;
                    self.parent[w as usize] = v;
                    queue.push_back(w);
                }
            }
        }
        None
    }
}

/// The steps along `nodes` and back to the first node, each labelled among the kinds in `mask`.
fn steps(g: &Graph, nodes: &[u32], mask: u8) -> Vec<Step> {
    let next = nodes.iter().skip(1).chain(nodes.first());
    nodes
        .iter()
        .zip(next)
        .map(|(&from, &to)| Step {
            from,
            to,
            kind: EdgeKind::label(g.mask(from, to) & mask).unwrap_or(EdgeKind::Realtime),
        })
        .collect()
}

/// How many start nodes a cycle search tries, keeping the shortest cycle found.
const STARTS: usize = 4;

/// A short cycle using only edges with a kind in `mask`, if there is one: the shortest through
/// one of a few nodes of the smallest strongly connected component of those edges.
pub(crate) fn find_cycle(g: &Graph, mask: u8) -> Option<Vec<Step>> {
    let components = components(g, mask);
    let smallest = components.iter().min_by_key(|c| c.len())?;
    let mut bfs = Bfs::new(g.len());
    let mut best: Option<Vec<u32>> = None;
    for &start in smallest.iter().take(STARTS) {
        let mut unlimited = u64::MAX;
        if let Some(nodes) = bfs.path(g, mask, start, start, &mut unlimited)
            && best.as_ref().is_none_or(|b| nodes.len() < b.len())
        {
            best = Some(nodes);
        }
    }
    best.map(|nodes| steps(g, &nodes, mask))
}

/// A cycle with exactly one `rw` step, the others of a kind in `base` (which must not hold
/// [`RW`]), if the search finds one within `budget` edge visits: for each `rw` edge `a -> b`,
/// the shortest path from `b` back to `a`.
pub(crate) fn find_single_rw_cycle(g: &Graph, base: u8, mut budget: u64) -> Option<Vec<Step>> {
    // Only rw edges inside one component of base + rw edges can close such a cycle.
    let mut component = vec![u32::MAX; g.len()];
    for (i, c) in components(g, base | RW).iter().enumerate() {
        for &v in c {
            component[v as usize] = i as u32;
        }
    }
    let mut bfs = Bfs::new(g.len());
    for a in 0..g.len() as u32 {
        for (b, m) in g.edges(a) {
            let same = component[a as usize] != u32::MAX && component[a as usize] == component[b as usize];
            if m & RW == 0 || !same {
                continue;
            }
            if let Some(mut nodes) = bfs.path(g, base, b, a, &mut budget) {
                nodes.push(a);
                let mut out = steps(g, &nodes, base);
                if let Some(closing) = out.last_mut() {
                    closing.kind = EdgeKind::Rw;
                }
                return Some(out);
            }
            if budget == 0 {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_between_the_same_pair_merge_their_kinds() {
        let g = Graph::new(3, vec![(0, 1, WW), (0, 1, RT), (1, 2, WR), (2, 2, WW), (1, 0, RW)]);
        assert_eq!(g.mask(0, 1), WW | RT);
        assert_eq!(g.mask(1, 0), RW);
        assert_eq!(g.mask(2, 2), 0, "self-loops are dropped");
        assert_eq!(g.counts(), [1, 1, 1, 1]);
        assert_eq!(g.edges(1).collect::<Vec<_>>(), vec![(0, RW), (2, WR)]);
    }

    #[test]
    fn components_follow_only_the_kinds_asked_for() {
        // 0 -> 1 -> 2 -> 0 with ww, ww, rw; 3 <-> 4 with realtime; 5 alone.
        let g = Graph::new(6, vec![(0, 1, WW), (1, 2, WW), (2, 0, RW), (3, 4, RT), (4, 3, RT), (4, 5, WW)]);
        assert_eq!(components(&g, WW | WR | RW | RT), vec![vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(components(&g, WW | RW), vec![vec![0, 1, 2]]);
        assert!(components(&g, WW).is_empty());
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 300_000u32;
        let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n, WW)).collect();
        let g = Graph::new(n as usize, edges);
        let c = components(&g, WW);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].len(), n as usize);
    }

    #[test]
    fn the_cycle_found_is_the_shortest_through_its_start() -> Result<(), String> {
        // A long way round 0 -> 1 -> 2 -> 3 -> 0 and a short cut 1 -> 0.
        let g = Graph::new(4, vec![(0, 1, WW), (1, 2, WW), (2, 3, WW), (3, 0, WW), (1, 0, WR)]);
        let cycle = find_cycle(&g, WW | WR).ok_or("no cycle")?;
        assert_eq!(cycle.len(), 2, "{cycle:?}");
        let ww_only = find_cycle(&g, WW).ok_or("no ww cycle")?;
        assert_eq!(ww_only.len(), 4, "{ww_only:?}");
        assert!(ww_only.iter().all(|s| s.kind == EdgeKind::Ww));
        Ok(())
    }

    #[test]
    fn a_single_rw_cycle_needs_exactly_one_rw_edge() -> Result<(), String> {
        // 0 -rw-> 1 -rw-> 0: two rw edges, no single-rw cycle.
        let g = Graph::new(2, vec![(0, 1, RW), (1, 0, RW)]);
        assert_eq!(find_single_rw_cycle(&g, WW | WR, 1_000), None);
        // 0 -rw-> 1 -wr-> 2 -ww-> 0.
        let g = Graph::new(3, vec![(0, 1, RW), (1, 2, WR), (2, 0, WW)]);
        let c = find_single_rw_cycle(&g, WW | WR, 1_000).ok_or("no cycle")?;
        let kinds: Vec<_> = c.iter().map(|s| (s.from, s.to, s.kind)).collect();
        assert_eq!(kinds, vec![(1, 2, EdgeKind::Wr), (2, 0, EdgeKind::Ww), (0, 1, EdgeKind::Rw)]);
        assert_eq!(find_single_rw_cycle(&g, WW | WR, 1), None, "out of budget");
        Ok(())
    }
}
