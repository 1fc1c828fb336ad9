//! Ground truth: the call graph a run actually exercised, counted from the generator's own
//! decisions (never re-parsed from spans), for scoring what the model extracts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::world::{Call, EntryKind, Operation, World};

/// A node of the call graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeTruth {
    /// `"<service> <operation>"`, or the peer's name for a virtual node.
    pub id: String,
    /// The service (the peer's name for a virtual node).
    pub service: String,
    /// The entry span's name (the peer's name for a virtual node).
    pub operation: String,
    /// An uninstrumented peer, seen only through its callers' spans.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// A root operation that traffic enters by.
    pub endpoint: bool,
    /// Invocations that ran (for a virtual node: call attempts that reached it).
    pub invocations: u64,
    /// Invocations that failed.
    pub errors: u64,
    /// Median self time of the invocations that ran (time outside its call blocks: its own
    /// work, handler overhead and pauses between blocks), milliseconds; `None` for virtual
    /// nodes and operations that never ran.
    pub self_ms_p50: Option<f64>,
}

impl NodeTruth {
    pub(crate) fn operation(id: String, service: &str, operation: &str, endpoint: bool) -> Self {
        NodeTruth {
            id,
            service: service.into(),
            operation: operation.into(),
            is_virtual: false,
            endpoint,
            invocations: 0,
            errors: 0,
            self_ms_p50: None,
        }
    }

    pub(crate) fn peer(name: &str) -> Self {
        NodeTruth {
            id: name.into(),
            service: name.into(),
            operation: name.into(),
            is_virtual: true,
            endpoint: false,
            invocations: 0,
            errors: 0,
            self_ms_p50: None,
        }
    }
}

/// A directed edge (caller operation → callee operation or virtual node), with what the world
/// says about the call site and what the run counted.
///
/// When an operation has several call sites to the same callee (traces cannot tell them apart),
/// their counts add up, `sites` says how many there are, and the other static fields are those
/// of the first call site, except `retries` (the most of any).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeTruth {
    /// The caller's node id.
    pub from: String,
    /// The callee's node id.
    pub to: String,
    /// Logical calls made (optional calls that were skipped are not counted).
    pub calls: u64,
    /// Attempts (CLIENT/PRODUCER spans): `calls` plus retries.
    pub attempts: u64,
    /// Calls that failed after all retries (a call to a `down` service counts here). For a queue
    /// with an instrumented consumer: messages whose consumer failed or was down.
    pub errors: u64,
    /// Call sites of the caller to this callee.
    pub sites: u32,
    /// Attempts cut by the timeout.
    pub timeouts: u64,
    /// The call's timeout, if any.
    pub timeout_ms: Option<f64>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// The caller survives this call failing.
    pub fallback: bool,
    /// The call overlaps other calls of the caller.
    pub parallel: bool,
    /// The probability that an invocation of the caller makes this call.
    pub probability: f64,
    /// Through a queue (PRODUCER → CONSUMER or a PRODUCER to a virtual queue).
    pub asynchronous: bool,
    /// P(the caller fails | this call failed after its retries and no other call of that
    /// invocation failed): 1 without a fallback; with one, the caller's own error rate.
    pub p_propagate: f64,
}

impl EdgeTruth {
    /// Counts one more call site of the caller to this callee.
    pub(crate) fn add_site(&mut self, c: &Call) {
        self.sites += 1;
        self.retries = self.retries.max(c.retries);
    }

    pub(crate) fn from_call(
        world: &World,
        op: &Operation,
        c: &Call,
        from: String,
        to: String,
    ) -> Self {
        let asynchronous = match c.callee {
            crate::world::Callee::Operation(o) => world
                .operations
                .get(o)
                .is_some_and(|o| matches!(o.entry, EntryKind::Consumer { .. })),
            crate::world::Callee::Peer(p) => world
                .peers
                .get(p)
                .is_some_and(|p| p.kind == crate::world::PeerKind::Queue),
        };
        EdgeTruth {
            from,
            to,
            calls: 0,
            attempts: 0,
            errors: 0,
            timeouts: 0,
            sites: 0,
            timeout_ms: c.timeout_ms,
            retries: c.retries,
            fallback: c.fallback,
            parallel: World::is_parallel(op, c),
            probability: c.probability,
            asynchronous,
            p_propagate: if c.fallback { op.error_rate } else { 1.0 },
        }
    }
}

/// The call graph: nodes by id, edges by caller id then callee id (ordered, so two truths compare
/// and serialise deterministically).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GraphTruth {
    /// Nodes by id.
    pub nodes: BTreeMap<String, NodeTruth>,
    /// Edges: caller id → callee id → edge.
    pub edges: BTreeMap<String, BTreeMap<String, EdgeTruth>>,
}

impl GraphTruth {
    /// The edge `from → to`, if present.
    pub fn edge(&self, from: &str, to: &str) -> Option<&EdgeTruth> {
        self.edges.get(from)?.get(to)
    }

    /// Every edge, ordered by (from, to).
    pub fn iter_edges(&self) -> impl Iterator<Item = &EdgeTruth> {
        self.edges.values().flat_map(|m| m.values())
    }

    /// How many edges there are.
    pub fn edge_count(&self) -> usize {
        self.edges.values().map(BTreeMap::len).sum()
    }

    /// The (from, to) pairs of every edge.
    pub fn edge_set(&self) -> std::collections::BTreeSet<(String, String)> {
        self.iter_edges()
            .map(|e| (e.from.clone(), e.to.clone()))
            .collect()
    }
}
