//! Turns a [`Selection`] into the graph a teardown runs and a [`Plan`](crate::Plan) shows:
//! which resources, which edges, which phase each is in, and what is held back.
//!
//! Rules (DESIGN.md, "Registry"):
//! - `A depends on B`: A is torn down before B.
//! - A subset pulls in everything that depends on a selected resource (cascade).
//! - Excluded resources stay; so does everything they depend on, unless `force`.
//! - Effective priority = min(own, effective priority of every dependency); it is the phase.
//! - Inside a phase, ties go by own priority, then last registered first.

use std::cmp::Reverse;

use crate::registry::select::{Selection, TeardownOptions};
use crate::registry::state::{SlotId, SlotState, State};
use crate::report::SkipReason;

pub(crate) const NIL: u32 = u32::MAX;

/// One resource in a teardown.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) sid: SlotId,
    pub(crate) seq: u64,
    pub(crate) priority: u8,
    /// Effective priority: the phase this node runs in.
    pub(crate) phase: u8,
    pub(crate) cascaded: bool,
    /// In-run dependencies (node indices) are `Edges::of(node)`: they start only after this
    /// node finishes. A range into one shared array keeps the node at 32 bytes.
    pub(crate) edges_start: u32,
    pub(crate) edges_len: u32,
    /// In-run dependents not finished yet; the node may start at zero.
    pub(crate) pending: u32,
}

impl Node {
    /// Order inside a phase: larger key goes first (own priority, then last registered).
    pub(crate) fn key(&self, idx: u32) -> (Reverse<u8>, u64, u32) {
        (Reverse(self.priority), self.seq, idx)
    }
}

/// Every node's in-run dependencies, back to back (compressed sparse rows).
#[derive(Default)]
pub(crate) struct Edges(Vec<u32>);

impl Edges {
    pub(crate) fn of(&self, node: &Node) -> &[u32] {
        let start = node.edges_start as usize;
        &self.0[start..start + node.edges_len as usize]
    }

    pub(crate) fn at(&self, i: u32) -> u32 {
        self.0[i as usize]
    }

    /// Appends a node's dependencies; returns its `(edges_start, edges_len)`.
    pub(crate) fn push(&mut self, deps: impl IntoIterator<Item = u32>) -> (u32, u32) {
        let start = self.0.len();
        self.0.extend(deps);
        (start as u32, (self.0.len() - start) as u32)
    }
}

/// The selected graph.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Edges,
    /// Slot index -> node index, `NIL` when not in the run.
    pub(crate) node_of: Vec<u32>,
    /// Selected but held back, with why; they stay registered.
    pub(crate) held: Vec<(SlotId, SkipReason)>,
}

fn matches(state: &State, idx: usize, sel: &Selection) -> bool {
    let slot = &state.slots[idx];
    let category = || &state.categories[slot.category as usize];
    match sel {
        Selection::All => true,
        Selection::Id(id) => &*slot.id == id.as_str(),
        Selection::Ids(ids) => ids.iter().any(|id| &*slot.id == id.as_str()),
        Selection::Category(c) => category() == c,
        Selection::Categories(cs) => cs.iter().any(|c| category() == c),
        Selection::Tag(t) => slot.tags().iter().any(|x| x == t),
        Selection::Tags(ts) => slot.tags().iter().any(|x| ts.contains(x)),
        Selection::AnyOf(sels) => sels.iter().any(|s| matches(state, idx, s)),
        Selection::AllOf(sels) => sels.iter().all(|s| matches(state, idx, s)),
        Selection::Except(base, without) => matches(state, idx, base) && !matches(state, idx, without),
    }
}

pub(crate) fn excluded(state: &State, idx: usize, opts: &TeardownOptions) -> bool {
    let slot = &state.slots[idx];
    opts.exclude_ids.iter().any(|id| &*slot.id == id.as_str())
        || opts.exclude_categories.iter().any(|c| &state.categories[slot.category as usize] == c)
}

/// Current dependency edges of a slot, as slot indices.
fn live_deps(state: &State, idx: usize) -> impl Iterator<Item = usize> + '_ {
    state.slots[idx].deps().iter().filter(|&&sid| state.slot(sid).is_some()).map(|&(d, _)| d as usize)
}

/// Builds the graph for `sel` over the Registered slots of `state`.
pub(crate) fn build(state: &State, sel: &Selection, opts: &TeardownOptions) -> Graph {
    let n_slots = state.slots.len();
    // 0 = out, 1 = selected, 2 = cascaded.
    let mut mark = vec![0u8; n_slots];
    for (i, slot) in state.slots.iter().enumerate() {
        // `All` needs no call: `matches` recurses, so it is not inlined.
        if slot.state == SlotState::Registered && (matches!(sel, Selection::All) || matches(state, i, sel)) {
            mark[i] = 1;
        }
    }
    let any_edges = state.slots.iter().any(|s| s.dependents() > 0);
    if !matches!(sel, Selection::All) && any_edges {
        // Cascade: everything that (transitively) depends on a selected slot.
        let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n_slots];
        for i in 0..n_slots {
            if state.slots[i].state != SlotState::Vacant {
                for d in live_deps(state, i) {
                    dependents[d].push(i as u32);
                }
            }
        }
        let mut stack: Vec<usize> = (0..n_slots).filter(|&i| mark[i] == 1).collect();
        while let Some(i) = stack.pop() {
            for &a in &dependents[i] {
                let a = a as usize;
                if mark[a] == 0 && state.slots[a].state == SlotState::Registered {
                    mark[a] = 2;
                    stack.push(a);
                }
            }
        }
    }
    let mut held = Vec::new();
    let has_exclusions = !opts.exclude_ids.is_empty() || !opts.exclude_categories.is_empty();
    if has_exclusions {
        let mut remaining: Vec<usize> = Vec::new();
        for (i, m) in mark.iter_mut().enumerate() {
            if *m != 0 && excluded(state, i, opts) {
                *m = 0;
                remaining.push(i);
            }
        }
        if !opts.force {
            // What an excluded resource depends on must outlive it: hold it, transitively.
            while let Some(r) = remaining.pop() {
                for d in live_deps(state, r) {
                    if mark[d] != 0 {
                        mark[d] = 0;
                        let reason =
                            SkipReason::DependentRemains { dependent: state.slots[r].id.to_string() };
                        held.push((state.slot_id(d as u32), reason));
                        remaining.push(d);
                    }
                }
            }
        }
    }

    let mut node_of = vec![NIL; n_slots];
    let mut nodes = Vec::new();
    for (i, &m) in mark.iter().enumerate() {
        if m != 0 {
            let slot = &state.slots[i];
            node_of[i] = nodes.len() as u32;
            nodes.push(Node {
                sid: state.slot_id(i as u32),
                seq: slot.seq,
                priority: slot.priority,
                phase: slot.priority,
                cascaded: m == 2,
                edges_start: 0,
                edges_len: 0,
                pending: 0,
            });
        }
    }
    let mut edges = Edges::default();
    if any_edges && !opts.force {
        link(state, &mut nodes, &mut edges, &node_of);
    }
    Graph { nodes, edges, node_of, held }
}

/// Adds in-run edges, pending counts and effective priorities.
fn link(state: &State, nodes: &mut [Node], edges: &mut Edges, node_of: &[u32]) {
    for n in 0..nodes.len() {
        let idx = nodes[n].sid.0 as usize;
        let (start, len) = edges.push(live_deps(state, idx).map(|d| node_of[d]).filter(|&m| m != NIL));
        nodes[n].edges_start = start;
        nodes[n].edges_len = len;
        for i in start..start + len {
            nodes[edges.at(i) as usize].pending += 1;
        }
    }
    // Effective priority, dependencies first (Kahn's order on the reversed edges).
    let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    let mut missing: Vec<usize> = Vec::with_capacity(nodes.len());
    for (n, node) in nodes.iter().enumerate() {
        for &m in edges.of(node) {
            dependents[m as usize].push(n as u32);
        }
        missing.push(node.edges_len as usize);
    }
    // Dependencies outside this run still count: a resource that uses a `Critical` one is in
    // the `Critical` phase even when only it is torn down.
    let mut memo: Vec<u8> = Vec::new();
    for node in nodes.iter_mut() {
        let idx = node.sid.0 as usize;
        for d in live_deps(state, idx).filter(|&d| node_of[d] == NIL) {
            node.phase = node.phase.min(slot_effective(state, d, &mut memo));
        }
    }
    let mut queue: Vec<u32> = (0..nodes.len() as u32).filter(|&n| missing[n as usize] == 0).collect();
    while let Some(n) = queue.pop() {
        let n = n as usize;
        let eff = edges.of(&nodes[n]).iter().map(|&m| nodes[m as usize].phase).fold(nodes[n].phase, u8::min);
        nodes[n].phase = eff;
        for &a in &dependents[n] {
            missing[a as usize] -= 1;
            if missing[a as usize] == 0 {
                queue.push(a);
            }
        }
    }
}

/// The effective priority of a live slot over the whole registry: the most urgent of its own
/// and its dependencies', transitively. Iterative (dependency chains can be long) and memoized
/// in `memo` (`u8::MAX` = not yet known), which is sized on first use.
fn slot_effective(state: &State, idx: usize, memo: &mut Vec<u8>) -> u8 {
    const UNKNOWN: u8 = u8::MAX;
    if memo.is_empty() {
        memo.resize(state.slots.len(), UNKNOWN);
    }
    let mut stack = vec![(idx, false)];
    while let Some((i, expanded)) = stack.pop() {
        if memo[i] != UNKNOWN {
            continue;
        }
        if expanded {
            memo[i] = live_deps(state, i).map(|d| memo[d]).fold(state.slots[i].priority, u8::min);
        } else {
            stack.push((i, true));
            stack.extend(live_deps(state, i).filter(|&d| memo[d] == UNKNOWN).map(|d| (d, false)));
        }
    }
    memo[idx]
}

/// Ready nodes of each phase: sorted initial batches plus a heap for nodes that become ready
/// later, so a graph without edges is ordered by one sort and no heap traffic.
pub(crate) struct ReadyQueues {
    sorted: [Vec<(Reverse<u8>, u64, u32)>; 4],
    heap: [std::collections::BinaryHeap<(Reverse<u8>, u64, u32)>; 4],
}

impl ReadyQueues {
    pub(crate) fn new(nodes: &[Node]) -> ReadyQueues {
        let mut sorted: [Vec<_>; 4] = Default::default();
        for (i, n) in nodes.iter().enumerate() {
            if n.pending == 0 {
                sorted[n.phase as usize].push(n.key(i as u32));
            }
        }
        for s in &mut sorted {
            s.sort_unstable();
        }
        ReadyQueues { sorted, heap: Default::default() }
    }

    pub(crate) fn push(&mut self, phase: u8, key: (Reverse<u8>, u64, u32)) {
        self.heap[phase as usize].push(key);
    }

    pub(crate) fn pop(&mut self, phase: u8) -> Option<u32> {
        let p = phase as usize;
        let from_heap = match (self.sorted[p].last(), self.heap[p].peek()) {
            (Some(a), Some(b)) => b > a,
            (None, Some(_)) => true,
            _ => false,
        };
        let key = if from_heap { self.heap[p].pop() } else { self.sorted[p].pop() };
        key.map(|k| k.2)
    }

    /// The node `pop` would return next, left in place.
    pub(crate) fn peek(&self, phase: u8) -> Option<u32> {
        let p = phase as usize;
        match (self.sorted[p].last(), self.heap[p].peek()) {
            (Some(a), Some(b)) => Some(if b > a { b.2 } else { a.2 }),
            (Some(a), None) => Some(a.2),
            (None, Some(b)) => Some(b.2),
            (None, None) => None,
        }
    }
}
