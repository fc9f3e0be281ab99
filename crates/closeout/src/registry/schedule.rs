//! [`Schedule`]: the teardown's state machine, alone. The engine ([`teardown`](super::teardown))
//! and [`Plan`](crate::Plan) both drain one, so the plan's order is the engine's order by
//! construction: there is no second copy of the rules to drift.
//!
//! A node moves `Waiting → Ready → Running → Done`, and only that way, except that a `Ready`
//! node goes back to `Waiting` when a late registration starts to depend on it.
//!
//! # Invariants
//!
//! S1. `pending[n]` is the number of in-run dependents of `n` that are not `Done`. A node is
//!    `Ready` exactly when it is not started and `pending == 0`; then it has an entry in the ready
//!    queue of a phase not earlier than the current one.
//! S2. Queue entries are never removed, only made stale: an entry counts only while its node is
//!    `Ready`. [`pop`](Schedule::pop) discards stale entries and marks what it returns
//!    `Running`, so a node is handed out at most once, however many entries it has.
//! S3. [`add_late`](Schedule::add_late) only links a new node to dependencies that have not
//!    started (`Waiting` or `Ready`); a `Ready` one goes back to `Waiting`. So no dependency can
//!    start before a dependent that arrived late, and a dependency that is already running is
//!    never linked (the registry refuses such a registration: `Error::DependencyClosing`).
//! S4. [`complete`](Schedule::complete) is the only way to `Done` and is accepted once per node;
//!    it decrements each dependency's `pending` once, so no count can underflow.
//! S5. The phase only moves forward, and only when its queue holds no `Ready` entry. Every
//!    dependent's phase is at most its dependency's (effective priority), so when a phase is left
//!    behind, nothing in it is still waiting on a dependent.

use crate::registry::graph::{Edges, Graph, NIL, Node, ReadyQueues};
use crate::registry::state::SlotId;
use crate::report::SkipReason;

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Some in-run dependent has not finished.
    Waiting,
    /// Queued: may start once its phase is the current one.
    Ready,
    /// Handed out by `pop`; not finished.
    Running,
    /// Finished (or found gone and skipped).
    Done,
}

/// The last of the four priority phases.
const LAST_PHASE: u8 = 3;

/// A late node, as the registry describes it to [`Schedule::add_late`].
pub(crate) struct Late {
    pub(crate) sid: SlotId,
    pub(crate) seq: u64,
    pub(crate) priority: u8,
    /// Dependencies as slot ids; only those in this run and not started are linked.
    pub(crate) deps: Vec<SlotId>,
    pub(crate) cascaded: bool,
}

/// The nodes of one teardown and where each one is.
pub(crate) struct Schedule {
    nodes: Vec<Node>,
    edges: Edges,
    state: Vec<NodeState>,
    /// Slot index -> node index, `NIL` when not in the run.
    node_of: Vec<u32>,
    queues: ReadyQueues,
    phase: u8,
    /// Selected but held back, with why; they stay registered.
    pub(crate) held: Vec<(SlotId, SkipReason)>,
}

impl Schedule {
    pub(crate) fn new(graph: Graph) -> Schedule {
        let Graph { nodes, edges, node_of, held } = graph;
        let state = nodes
            .iter()
            .map(|n| if n.pending == 0 { NodeState::Ready } else { NodeState::Waiting })
            .collect();
        Schedule { queues: ReadyQueues::new(&nodes), nodes, edges, state, node_of, phase: 0, held }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    #[cfg(test)]
    pub(crate) fn state(&self, n: u32) -> NodeState {
        self.state[n as usize]
    }

    /// The node's in-run dependencies: they start only after it is done.
    pub(crate) fn deps_of(&self, n: u32) -> &[u32] {
        self.edges.of(&self.nodes[n as usize])
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> u8 {
        self.phase
    }

    /// The best ready node of the current phase, now `Running` (invariant S2).
    pub(crate) fn pop(&mut self) -> Option<u32> {
        while let Some(n) = self.queues.pop(self.phase) {
            if self.state[n as usize] == NodeState::Ready {
                self.state[n as usize] = NodeState::Running;
                return Some(n);
            }
        }
        None
    }

    /// Whether the current phase has a ready node; drops stale entries on the way.
    pub(crate) fn has_ready(&mut self) -> bool {
        while let Some(n) = self.queues.peek(self.phase) {
            if self.state[n as usize] == NodeState::Ready {
                return true;
            }
            self.queues.pop(self.phase);
        }
        false
    }

    /// Moves to the next phase if the current one has nothing ready; false after the last
    /// (invariant S5).
    pub(crate) fn advance(&mut self) -> bool {
        if self.has_ready() || self.phase >= LAST_PHASE {
            return false;
        }
        self.phase += 1;
        true
    }

    /// `n` finished: one dependent fewer for each of its dependencies (invariant S4). Returns
    /// false, changing nothing, if `n` was done already.
    pub(crate) fn complete(&mut self, n: u32) -> bool {
        if self.state[n as usize] == NodeState::Done {
            debug_assert!(false, "node {n} completed twice");
            return false;
        }
        self.state[n as usize] = NodeState::Done;
        let node = &self.nodes[n as usize];
        for i in node.edges_start..node.edges_start + node.edges_len {
            let m = self.edges.at(i) as usize;
            let Some(left) = self.nodes[m].pending.checked_sub(1) else {
                debug_assert!(false, "pending count of node {m} underflowed");
                continue;
            };
            self.nodes[m].pending = left;
            if left == 0 && self.state[m] == NodeState::Waiting {
                self.state[m] = NodeState::Ready;
                self.queues.push(self.nodes[m].phase.max(self.phase), self.nodes[m].key(m as u32));
            }
        }
        true
    }

    /// Whether `sid` is a node of this run that has not started: a late registration may
    /// depend on it and be linked before it.
    pub(crate) fn unstarted(&self, sid: SlotId) -> Option<u32> {
        let m = *self.node_of.get(sid.0 as usize)?;
        let open = m != NIL
            && self.nodes[m as usize].sid == sid
            && matches!(self.state[m as usize], NodeState::Waiting | NodeState::Ready);
        open.then_some(m)
    }

    /// Adds a resource registered while the run goes on (invariant S3). Its phase is its
    /// effective priority, but never one already left behind.
    pub(crate) fn add_late(&mut self, late: Late) -> u32 {
        let deps: Vec<u32> = late.deps.iter().filter_map(|&sid| self.unstarted(sid)).collect();
        let eff = deps.iter().map(|&m| self.nodes[m as usize].phase).fold(late.priority, u8::min);
        let n = self.nodes.len() as u32;
        for &m in &deps {
            let m = m as usize;
            self.nodes[m].pending += 1;
            // A queued dependency must wait for its new dependent; its entry goes stale.
            if self.state[m] == NodeState::Ready {
                self.state[m] = NodeState::Waiting;
            }
        }
        let (edges_start, edges_len) = self.edges.push(deps);
        let node = Node {
            sid: late.sid,
            seq: late.seq,
            priority: late.priority,
            phase: eff.max(self.phase),
            cascaded: late.cascaded,
            edges_start,
            edges_len,
            pending: 0,
        };
        self.queues.push(node.phase, node.key(n));
        if self.node_of.len() <= late.sid.0 as usize {
            self.node_of.resize(late.sid.0 as usize + 1, NIL);
        }
        self.node_of[late.sid.0 as usize] = n;
        self.nodes.push(node);
        self.state.push(NodeState::Ready);
        n
    }

    /// Nodes handed out and not completed.
    pub(crate) fn running(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.nodes.len() as u32).filter(|&n| self.state[n as usize] == NodeState::Running)
    }

    /// Nodes never started, in node order.
    pub(crate) fn not_started(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| matches!(s, NodeState::Waiting | NodeState::Ready))
            .map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(slot: u32, seq: u64, priority: u8) -> Node {
        Node {
            sid: (slot, 0),
            seq,
            priority,
            phase: priority,
            cascaded: false,
            edges_start: 0,
            edges_len: 0,
            pending: 0,
        }
    }

    fn drain(s: &mut Schedule) -> Vec<u32> {
        let mut out = Vec::new();
        loop {
            while let Some(n) = s.pop() {
                out.push(n);
                s.complete(n);
            }
            if !s.advance() {
                return out;
            }
        }
    }

    #[test]
    fn a_late_dependent_of_a_queued_node_runs_first_and_the_node_runs_once() {
        // b (Critical) is queued; a late Low resource starts to depend on it.
        let g =
            Graph { nodes: vec![node(0, 0, 0)], edges: Edges::default(), node_of: vec![0], held: Vec::new() };
        let mut s = Schedule::new(g);
        assert_eq!(s.state(0), NodeState::Ready);
        let late = s.add_late(Late { sid: (1, 0), seq: 1, priority: 3, deps: vec![(0, 0)], cascaded: false });
        assert_eq!(s.state(0), NodeState::Waiting, "back to waiting for its new dependent");
        assert_eq!(drain(&mut s), [late, 0]);
    }

    #[test]
    fn a_late_node_never_links_to_a_started_dependency() {
        let g =
            Graph { nodes: vec![node(0, 0, 2)], edges: Edges::default(), node_of: vec![0], held: Vec::new() };
        let mut s = Schedule::new(g);
        s.advance();
        s.advance();
        assert_eq!(s.pop(), Some(0));
        let late = s.add_late(Late { sid: (1, 0), seq: 1, priority: 2, deps: vec![(0, 0)], cascaded: false });
        assert!(s.deps_of(late).is_empty());
        assert!(s.complete(0));
        assert_eq!(s.pop(), Some(late));
    }
}
