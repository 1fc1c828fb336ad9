//! Turns a [`World`] into traces: one seeded random walk of the call graph per trace, emitted as
//! spans with OTLP semantics, while counting the ground truth of what it decided.

use augur_ingest::{SpanBatch, SpanId, SpanKind, StatusCode, Sym, TraceId};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::DatasetError;
use crate::fault::Fault;
use crate::truth::{EdgeTruth, GraphTruth, NodeTruth};
use crate::world::{node_id, Callee, EntryKind, LogNormal, PeerKind, World};

/// Where generated time starts: 2026-11-01T00:00:00Z, in nanoseconds since the Unix epoch.
pub const BASE_TIME_NS: i64 = 1_793_491_200 * 1_000_000_000;

/// Mean gap between two traces' starts (2 ms: 500 requests per second).
const MEAN_GAP_NS: f64 = 2_000_000.0;

/// Calls nested deeper than this are not made (a guard; validated worlds have no cycle).
const MAX_DEPTH: usize = 64;

const MS: f64 = 1_000_000.0;

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    calls: u64,
    attempts: u64,
    errors: u64,
    timeouts: u64,
}

/// Generates traces of a world. Deterministic: the same world, seed and fault give the same spans
/// (ids, times, statuses) and the same truth.
#[derive(Debug, Clone)]
pub struct Generator<'w> {
    world: &'w World,
    rng: ChaCha8Rng,
    clock_ns: i64,
    fault: Option<String>,
    /// Per operation: down, effective error rate, added self time (ns).
    op_down: Vec<bool>,
    op_err: Vec<f64>,
    op_add_ns: Vec<f64>,
    /// Per peer: the same.
    peer_down: Vec<bool>,
    peer_err: Vec<f64>,
    peer_add_ns: Vec<f64>,
    /// Per operation: blocks of call indices (a block's calls run in parallel).
    blocks: Vec<Vec<Vec<usize>>>,
    endpoint_cum: Vec<f64>,
    op_inv: Vec<(u64, u64)>,
    /// Per operation: the self time of every invocation, milliseconds (time spent outside its
    /// call blocks).
    op_self_ms: Vec<Vec<f32>>,
    peer_inv: Vec<(u64, u64)>,
    edges: Vec<Vec<Count>>,
    traces: u64,
    spans: u64,
    linked_consumers: bool,
    /// XORed into every trace id: set from the start offset and the fault, so that traffic of
    /// one seed generated for another period or under a fault does not reuse the trace ids of
    /// the normal traffic (a random world needs the same seed to stay the same world; traces
    /// sharing ids across files were joined into one). Zero otherwise, so plain generation is
    /// unchanged.
    id_salt: [u8; 16],
}

/// The trace being emitted.
struct Out<'b> {
    batch: &'b mut SpanBatch,
    trace_id: TraceId,
    experiment: Option<Sym>,
}

impl Out<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        span_id: SpanId,
        parent: Option<SpanId>,
        service: &str,
        name: &str,
        kind: SpanKind,
        start_ns: i64,
        peer: Option<&str>,
    ) -> usize {
        let strings = &mut self.batch.strings;
        let service = strings.intern(service);
        let name = strings.intern(name);
        let peer = peer.map(|p| strings.intern(p));
        self.batch.spans.push(augur_ingest::Span {
            trace_id: self.trace_id,
            span_id,
            parent_span_id: parent,
            service,
            name,
            kind,
            start_ns,
            end_ns: start_ns,
            status: StatusCode::Unset,
            peer,
            peer_kind: augur_ingest::PeerKind::Unknown,
            http_route: None,
            rpc_method: None,
            error_type: None,
            experiment: self.experiment,
        });
        self.batch.spans.len() - 1
    }

    /// Marks span `idx`'s peer as a database or a queue (as its attributes will say).
    fn peer_kind(&mut self, idx: usize, kind: augur_ingest::PeerKind) {
        if let Some(s) = self.batch.spans.get_mut(idx) {
            s.peer_kind = kind;
        }
    }

    fn end(&mut self, idx: usize, end_ns: i64, failed: bool, error_type: Option<&str>) {
        let et = if failed {
            error_type.map(|e| self.batch.strings.intern(e))
        } else {
            None
        };
        if let Some(s) = self.batch.spans.get_mut(idx) {
            s.end_ns = end_ns;
            if failed {
                s.status = StatusCode::Error;
                s.error_type = et;
            }
        }
    }
}

impl<'w> Generator<'w> {
    /// A generator of `world`'s traces from `seed`. Fails when the world does not validate
    /// ([`World::validate`]).
    pub fn new(world: &'w World, seed: u64) -> Result<Self, DatasetError> {
        world.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Start within the first second of the base time, so different seeds do not collide.
        let clock_ns = BASE_TIME_NS + rng.gen_range(0..1_000_000_000);
        let n_ops = world.operations.len();
        let n_peers = world.peers.len();
        let blocks = world
            .operations
            .iter()
            .map(|op| {
                let mut blocks: Vec<Vec<usize>> = Vec::new();
                let mut seen_groups: Vec<u32> = Vec::new();
                for (i, c) in op.calls.iter().enumerate() {
                    match c.parallel_group {
                        None => blocks.push(vec![i]),
                        Some(g) if !seen_groups.contains(&g) => {
                            seen_groups.push(g);
                            blocks.push(
                                op.calls
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, c)| c.parallel_group == Some(g))
                                    .map(|(j, _)| j)
                                    .collect(),
                            );
                        }
                        Some(_) => {}
                    }
                }
                blocks
            })
            .collect();
        let mut total = 0.0;
        let endpoint_cum = world
            .endpoints
            .iter()
            .map(|e| {
                total += e.weight;
                total
            })
            .collect();
        Ok(Generator {
            world,
            rng,
            clock_ns,
            fault: None,
            op_down: vec![false; n_ops],
            op_err: world.operations.iter().map(|o| o.error_rate).collect(),
            op_add_ns: vec![0.0; n_ops],
            peer_down: vec![false; n_peers],
            peer_err: world.peers.iter().map(|p| p.error_rate).collect(),
            peer_add_ns: vec![0.0; n_peers],
            blocks,
            endpoint_cum,
            op_inv: vec![(0, 0); n_ops],
            op_self_ms: vec![Vec::new(); n_ops],
            peer_inv: vec![(0, 0); n_peers],
            edges: world
                .operations
                .iter()
                .map(|o| vec![Count::default(); o.calls.len()])
                .collect(),
            traces: 0,
            spans: 0,
            linked_consumers: false,
            id_salt: [0; 16],
        })
    }

    /// Emits each message's consumer in a trace of its own, its CONSUMER span linked to the
    /// producer's span instead of parented by it (as messaging instrumentations that receive in
    /// batches do). The truth is the same: the call is still producer → consumer.
    pub fn with_linked_consumers(mut self, linked: bool) -> Self {
        self.linked_consumers = linked;
        self
    }

    /// Starts the traces `offset_ns` after the base time (traffic of another period, e.g. an
    /// experiment's window an hour after the normal traffic).
    pub fn starting_at(mut self, offset_ns: i64) -> Self {
        self.clock_ns += offset_ns;
        if offset_ns != 0 {
            self.salt(&offset_ns.to_le_bytes());
        }
        self
    }

    /// Activates a fault for every trace generated from now on; its spans carry `experiment` =
    /// the fault's text. The target must be a service or a peer of the world.
    pub fn with_fault(mut self, fault: Fault) -> Result<Self, DatasetError> {
        let target = fault.target().to_string();
        let ops: Vec<usize> = (0..self.world.operations.len())
            .filter(|&i| {
                self.world
                    .operations
                    .get(i)
                    .is_some_and(|o| o.service == target)
            })
            .collect();
        let peers: Vec<usize> = (0..self.world.peers.len())
            .filter(|&i| self.world.peers.get(i).is_some_and(|p| p.name == target))
            .collect();
        if ops.is_empty() && peers.is_empty() {
            return Err(DatasetError::UnknownTarget {
                fault: fault.to_string(),
                target,
            });
        }
        let apply = |down: &mut [bool], err: &mut [f64], add: &mut [f64], idx: &[usize]| {
            for &i in idx {
                match &fault {
                    Fault::Down(_) => {
                        if let Some(d) = down.get_mut(i) {
                            *d = true;
                        }
                    }
                    Fault::Error { rate, .. } => {
                        if let Some(e) = err.get_mut(i) {
                            *e = 1.0 - (1.0 - *e) * (1.0 - rate);
                        }
                    }
                    Fault::Latency { add_ms, .. } => {
                        if let Some(a) = add.get_mut(i) {
                            *a += add_ms * MS;
                        }
                    }
                }
            }
        };
        apply(
            &mut self.op_down,
            &mut self.op_err,
            &mut self.op_add_ns,
            &ops,
        );
        apply(
            &mut self.peer_down,
            &mut self.peer_err,
            &mut self.peer_add_ns,
            &peers,
        );
        self.fault = Some(fault.to_string());
        self.salt(fault.to_string().as_bytes());
        Ok(self)
    }

    /// The world being generated.
    pub fn world(&self) -> &'w World {
        self.world
    }

    /// Traces emitted so far.
    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// Spans emitted so far.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Appends one whole trace (an endpoint picked by the traffic mix) to `batch`, parents before
    /// children; returns how many spans it added (0 when the endpoint's own service is `down`).
    pub fn emit_trace(&mut self, batch: &mut SpanBatch) -> usize {
        let gap = -MEAN_GAP_NS * (1.0 - self.rng.gen::<f64>()).ln();
        self.clock_ns += gap as i64 + 1;
        let total = self.endpoint_cum.last().copied().unwrap_or(0.0);
        let pick = self.rng.gen::<f64>() * total;
        let ep = self
            .endpoint_cum
            .iter()
            .position(|&c| pick < c)
            .unwrap_or(self.endpoint_cum.len().saturating_sub(1));
        let Some(op) = self.world.endpoints.get(ep).map(|e| e.operation) else {
            return 0;
        };
        self.traces += 1;
        if self.op_down.get(op).copied().unwrap_or(false) {
            return 0;
        }
        let trace_id = self.trace_id();
        let experiment = self.fault.as_deref().map(|f| batch.strings.intern(f));
        let before = batch.spans.len();
        let mut out = Out {
            batch,
            trace_id,
            experiment,
        };
        let start = self.clock_ns;
        self.run_op(&mut out, op, None, SpanKind::Server, start, 0);
        let n = out.batch.spans.len() - before;
        self.spans += n as u64;
        n
    }

    /// Emits `traces` traces into `batch`; returns the spans added.
    pub fn emit(&mut self, traces: usize, batch: &mut SpanBatch) -> usize {
        (0..traces).map(|_| self.emit_trace(batch)).sum()
    }

    /// The ground truth of everything emitted so far: nodes that ran or were called, edges that
    /// were called, with counts.
    pub fn truth(&self) -> GraphTruth {
        let w = self.world;
        let mut t = GraphTruth::default();
        let is_endpoint = |i: usize| w.endpoints.iter().any(|e| e.operation == i);
        for (i, op) in w.operations.iter().enumerate() {
            let (inv, err) = self.op_inv.get(i).copied().unwrap_or_default();
            let from = node_id(&op.service, &op.name);
            for (j, c) in op.calls.iter().enumerate() {
                let n = self
                    .edges
                    .get(i)
                    .and_then(|e| e.get(j))
                    .copied()
                    .unwrap_or_default();
                if n.calls == 0 {
                    continue;
                }
                let to = w.callee_id(c.callee);
                let e = t
                    .edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to.clone())
                    .or_insert_with(|| EdgeTruth::from_call(w, op, c, from.clone(), to.clone()));
                e.add_site(c);
                e.calls += n.calls;
                e.attempts += n.attempts;
                e.errors += n.errors;
                e.timeouts += n.timeouts;
                if !t.nodes.contains_key(&to) {
                    let node = match c.callee {
                        Callee::Operation(o) => w.operations.get(o).map(|callee| {
                            NodeTruth::operation(
                                to.clone(),
                                &callee.service,
                                &callee.name,
                                is_endpoint(o),
                            )
                        }),
                        Callee::Peer(_) => Some(NodeTruth::peer(&to)),
                    };
                    if let Some(node) = node {
                        t.nodes.insert(to.clone(), node);
                    }
                }
            }
            if inv > 0 || t.edges.contains_key(&from) {
                let node = t.nodes.entry(from.clone()).or_insert_with(|| {
                    NodeTruth::operation(from.clone(), &op.service, &op.name, is_endpoint(i))
                });
                node.invocations = inv;
                node.errors = err;
            }
        }
        for (i, p) in w.peers.iter().enumerate() {
            if let (Some(node), Some(&(inv, err))) =
                (t.nodes.get_mut(&p.name), self.peer_inv.get(i))
            {
                node.invocations = inv;
                node.errors = err;
            }
        }
        // Operations only reached as callees (invocations were set above only for callers).
        for (i, op) in w.operations.iter().enumerate() {
            if let (Some(node), Some(&(inv, err))) = (
                t.nodes.get_mut(&node_id(&op.service, &op.name)),
                self.op_inv.get(i),
            ) {
                node.invocations = inv;
                node.errors = err;
                node.self_ms_p50 = self.op_self_ms.get(i).and_then(|v| median(v));
            }
        }
        t
    }

    /// Mixes `bytes` into [`Generator::id_salt`] (FNV-1a over the salt and them, twice for 16
    /// bytes: ids only need to differ, not to be secret).
    fn salt(&mut self, bytes: &[u8]) {
        let mut out = [0u8; 16];
        for (half, chunk) in out.chunks_mut(8).enumerate() {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ half as u64;
            for &b in self.id_salt.iter().chain(bytes) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            chunk.copy_from_slice(&h.to_le_bytes());
        }
        self.id_salt = out;
    }

    fn trace_id(&mut self) -> TraceId {
        loop {
            let mut id = [0u8; 16];
            self.rng.fill_bytes(&mut id);
            for (b, s) in id.iter_mut().zip(self.id_salt) {
                *b ^= s;
            }
            if id != [0; 16] {
                return id;
            }
        }
    }

    fn span_id(&mut self) -> SpanId {
        loop {
            let id = self.rng.next_u64().to_be_bytes();
            if id != [0; 8] {
                return id;
            }
        }
    }

    fn lognormal_ns(&mut self, l: LogNormal) -> f64 {
        // Box-Muller.
        let u1 = 1.0 - self.rng.gen::<f64>();
        let u2 = self.rng.gen::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        l.median_ms * MS * (l.sigma * z).exp()
    }

    fn uniform_ns(&mut self, lo_ms: f64, hi_ms: f64) -> i64 {
        (self.rng.gen_range(lo_ms..hi_ms) * MS) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.rng.gen::<f64>() < p)
    }

    /// Runs one invocation of `op` starting at `start`; returns its end and whether it failed.
    fn run_op(
        &mut self,
        out: &mut Out<'_>,
        op_idx: usize,
        parent: Option<SpanId>,
        kind: SpanKind,
        start: i64,
        depth: usize,
    ) -> (i64, bool) {
        let world = self.world;
        let Some(op) = world.operations.get(op_idx) else {
            return (start, false);
        };
        let id = self.span_id();
        let idx = out.push(id, parent, &op.service, &op.name, kind, start, None);
        if let Some(s) = out.batch.spans.get_mut(idx) {
            s.http_route = op
                .http_route
                .as_deref()
                .map(|r| out.batch.strings.intern(r));
            s.rpc_method = op
                .rpc_method
                .as_deref()
                .map(|r| out.batch.strings.intern(r));
        }
        let self_ns =
            self.lognormal_ns(op.self_time) + self.op_add_ns.get(op_idx).copied().unwrap_or(0.0);
        let pre = (self_ns * 0.4) as i64;
        let post = (self_ns as i64 - pre).max(1000);
        let mut t = start + pre;
        let mut own = pre + post;
        let (call_parent, handler) = match &op.handler {
            Some(h) => {
                let hid = self.span_id();
                let hidx = out.push(hid, Some(id), &op.service, h, SpanKind::Internal, t, None);
                t += 20_000;
                own += 40_000;
                (hid, Some(hidx))
            }
            None => (id, None),
        };
        let calls_failed = if depth < MAX_DEPTH {
            self.run_calls(out, op_idx, call_parent, &mut t, &mut own, depth)
        } else {
            false
        };
        if let Some(h) = handler {
            t += 20_000;
            out.end(h, t, calls_failed, Some("dependency_failed"));
        }
        if let Some(v) = self.op_self_ms.get_mut(op_idx) {
            v.push((own as f64 / MS) as f32);
        }
        let own = self.chance(self.op_err.get(op_idx).copied().unwrap_or(0.0));
        let failed = own || calls_failed;
        let end = t + post;
        out.end(
            idx,
            end,
            failed,
            Some(if own { "internal" } else { "dependency_failed" }),
        );
        if let Some(c) = self.op_inv.get_mut(op_idx) {
            c.0 += 1;
            c.1 += u64::from(failed);
        }
        (end, failed)
    }

    /// Runs `op`'s calls block by block from `*t`; stops after a block whose failure the operation
    /// cannot survive. Returns whether the operation fails because of its calls.
    fn run_calls(
        &mut self,
        out: &mut Out<'_>,
        op: usize,
        parent: SpanId,
        t: &mut i64,
        own: &mut i64,
        depth: usize,
    ) -> bool {
        let n_blocks = self.blocks.get(op).map_or(0, Vec::len);
        for b in 0..n_blocks {
            let pause = self.uniform_ns(0.02, 0.1);
            let block_start = *t + pause;
            *own += pause;
            let mut block_end = block_start;
            let mut failed = false;
            let n = self
                .blocks
                .get(op)
                .and_then(|bl| bl.get(b))
                .map_or(0, Vec::len);
            for k in 0..n {
                let Some(ci) = self
                    .blocks
                    .get(op)
                    .and_then(|bl| bl.get(b))
                    .and_then(|c| c.get(k))
                    .copied()
                else {
                    continue;
                };
                let jitter = if n > 1 { self.uniform_ns(0.0, 0.08) } else { 0 };
                let (end, f) = self.run_call(out, op, ci, parent, block_start + jitter, depth);
                block_end = block_end.max(end);
                failed |= f;
            }
            *t = block_end;
            if failed {
                return true;
            }
        }
        false
    }

    /// Makes call `ci` of `op` (if its probability says so); returns when the caller resumes and
    /// whether the caller fails because of it.
    fn run_call(
        &mut self,
        out: &mut Out<'_>,
        op: usize,
        ci: usize,
        parent: SpanId,
        start: i64,
        depth: usize,
    ) -> (i64, bool) {
        let world = self.world;
        let Some(caller) = world.operations.get(op) else {
            return (start, false);
        };
        let Some(call) = caller.calls.get(ci) else {
            return (start, false);
        };
        if !self.chance(call.probability) {
            return (start, false);
        }
        let mut count = Count {
            calls: 1,
            ..Count::default()
        };
        let timeout = call.timeout_ms.map(|t| (t * MS) as i64);
        let mut t = start;
        let mut end = start;
        let mut failed = true;
        match call.callee {
            Callee::Operation(c) => {
                let Some(callee) = world.operations.get(c) else {
                    return (start, false);
                };
                let down = self.op_down.get(c).copied().unwrap_or(false);
                if let EntryKind::Consumer { queue } = &callee.entry {
                    // Fire and forget: the producer span is short and never fails.
                    count.attempts = 1;
                    let pid = self.span_id();
                    let pidx = out.push(
                        pid,
                        Some(parent),
                        &caller.service,
                        &call.span_name,
                        SpanKind::Producer,
                        t,
                        Some(queue),
                    );
                    out.peer_kind(pidx, augur_ingest::PeerKind::Messaging);
                    end = t + self.uniform_ns(0.3, 1.5);
                    out.end(pidx, end, false, None);
                    failed = false;
                    let consumer_failed = if down {
                        true
                    } else if self.linked_consumers {
                        // The consumer's own trace, its entry linked to the producer's span.
                        let delay = self.lognormal_ns(LogNormal::new(5.0, 0.8)) as i64;
                        let producer_trace = out.trace_id;
                        out.trace_id = self.trace_id();
                        let entry = out.batch.spans.len();
                        let failed = self
                            .run_op(out, c, None, SpanKind::Consumer, end + delay, depth + 1)
                            .1;
                        out.batch.link(entry, producer_trace, pid);
                        out.trace_id = producer_trace;
                        failed
                    } else {
                        let delay = self.lognormal_ns(LogNormal::new(5.0, 0.8)) as i64;
                        self.run_op(
                            out,
                            c,
                            Some(pid),
                            SpanKind::Consumer,
                            end + delay,
                            depth + 1,
                        )
                        .1
                    };
                    count.errors = u64::from(consumer_failed);
                } else {
                    for attempt in 0..=call.retries {
                        if attempt > 0 {
                            t = end + self.uniform_ns(1.0, 10.0);
                        }
                        count.attempts += 1;
                        let cid = self.span_id();
                        let cidx = out.push(
                            cid,
                            Some(parent),
                            &caller.service,
                            &call.span_name,
                            SpanKind::Client,
                            t,
                            Some(&callee.service),
                        );
                        let (c_end, f, why) = if down {
                            (t + self.uniform_ns(0.5, 3.0), true, "connection_refused")
                        } else {
                            let net = self.uniform_ns(0.15, 0.6);
                            let (s_end, s_failed) = self.run_op(
                                out,
                                c,
                                Some(cid),
                                SpanKind::Server,
                                t + net,
                                depth + 1,
                            );
                            let c_end = s_end + self.uniform_ns(0.15, 0.6);
                            match timeout {
                                Some(to) if c_end - t > to => {
                                    count.timeouts += 1;
                                    (t + to, true, "timeout")
                                }
                                _ => (c_end, s_failed, "server_error"),
                            }
                        };
                        out.end(cidx, c_end, f, Some(why));
                        end = c_end;
                        if !f {
                            failed = false;
                            break;
                        }
                    }
                }
            }
            Callee::Peer(p) => {
                let Some(peer) = world.peers.get(p) else {
                    return (start, false);
                };
                let kind = if peer.kind == PeerKind::Queue {
                    SpanKind::Producer
                } else {
                    SpanKind::Client
                };
                let down = self.peer_down.get(p).copied().unwrap_or(false);
                let err = self.peer_err.get(p).copied().unwrap_or(0.0);
                let add = self.peer_add_ns.get(p).copied().unwrap_or(0.0);
                for attempt in 0..=call.retries {
                    if attempt > 0 {
                        t = end + self.uniform_ns(1.0, 10.0);
                    }
                    count.attempts += 1;
                    let cid = self.span_id();
                    let cidx = out.push(
                        cid,
                        Some(parent),
                        &caller.service,
                        &call.span_name,
                        kind,
                        t,
                        Some(&peer.name),
                    );
                    out.peer_kind(
                        cidx,
                        match peer.kind {
                            PeerKind::Database | PeerKind::Cache => {
                                augur_ingest::PeerKind::Database
                            }
                            PeerKind::Queue => augur_ingest::PeerKind::Messaging,
                            PeerKind::External => augur_ingest::PeerKind::Unknown,
                        },
                    );
                    let (c_end, f, why) = if down {
                        (t + self.uniform_ns(0.5, 3.0), true, "connection_refused")
                    } else {
                        let d = (self.lognormal_ns(peer.latency) + add) as i64;
                        let f = self.chance(err);
                        match timeout {
                            Some(to) if d > to => {
                                count.timeouts += 1;
                                (t + to, true, "timeout")
                            }
                            _ => (t + d.max(1000), f, "peer_error"),
                        }
                    };
                    out.end(cidx, c_end, f, Some(why));
                    if let Some(c) = self.peer_inv.get_mut(p) {
                        c.0 += 1;
                        c.1 += u64::from(f);
                    }
                    end = c_end;
                    if !f {
                        failed = false;
                        break;
                    }
                }
            }
        }
        count.errors += u64::from(failed);
        if let Some(c) = self.edges.get_mut(op).and_then(|e| e.get_mut(ci)) {
            c.calls += count.calls;
            c.attempts += count.attempts;
            c.errors += count.errors;
            c.timeouts += count.timeouts;
        }
        (end, failed && !call.fallback)
    }
}

/// The median of some values (`None` when empty).
fn median(v: &[f32]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s.get(s.len() / 2).map(|&x| f64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn shop_spans(seed: u64, traces: usize, fault: Option<&str>) -> (SpanBatch, GraphTruth) {
        let w = World::shop();
        let mut g = Generator::new(&w, seed).unwrap();
        if let Some(f) = fault {
            g = g.with_fault(f.parse().unwrap()).unwrap();
        }
        let mut b = SpanBatch::new();
        g.emit(traces, &mut b);
        (b, g.truth())
    }

    #[test]
    fn same_seed_same_spans_and_truth() {
        let (a, ta) = shop_spans(42, 300, Some("payment:error=0.3"));
        let (b, tb) = shop_spans(42, 300, Some("payment:error=0.3"));
        assert_eq!(a.to_owned_spans(), b.to_owned_spans());
        assert_eq!(ta, tb);
        let (c, _) = shop_spans(43, 300, Some("payment:error=0.3"));
        assert_ne!(a.to_owned_spans(), c.to_owned_spans());
    }

    #[test]
    fn another_period_or_a_fault_does_not_reuse_the_trace_ids() {
        // One seed (a random world needs the same seed to stay the same world) for normal
        // traffic, traffic an hour later, and traffic under a fault: no trace id in two of them.
        let w = World::shop();
        let ids = |offset: i64, fault: Option<&str>| {
            let mut g = Generator::new(&w, 7).unwrap().starting_at(offset);
            if let Some(f) = fault {
                g = g.with_fault(f.parse().unwrap()).unwrap();
            }
            let mut b = SpanBatch::new();
            for _ in 0..200 {
                g.emit_trace(&mut b);
            }
            b.spans
                .iter()
                .map(|s| s.trace_id)
                .collect::<std::collections::HashSet<_>>()
        };
        let normal = ids(0, None);
        let later = ids(3_600_000_000_000, None);
        let faulted = ids(0, Some("payment:down"));
        let both = ids(3_600_000_000_000, Some("payment:down"));
        for other in [&later, &faulted, &both] {
            assert!(normal.is_disjoint(other));
        }
        assert!(later.is_disjoint(&both) && faulted.is_disjoint(&both));
    }

    #[test]
    fn spans_are_well_formed() {
        let (b, truth) = shop_spans(1, 500, None);
        let spans = b.to_owned_spans();
        let by_id: HashMap<([u8; 16], [u8; 8]), &augur_ingest::OwnedSpan> =
            spans.iter().map(|s| ((s.trace_id, s.span_id), s)).collect();
        assert_eq!(by_id.len(), spans.len(), "span ids are unique");
        let mut roots = 0;
        for s in &spans {
            assert!(s.start_ns >= BASE_TIME_NS && s.end_ns >= s.start_ns);
            assert!(s.experiment.is_none());
            match s.parent_span_id {
                None => {
                    roots += 1;
                    assert_eq!(s.service, "frontend");
                }
                Some(p) => {
                    let parent = by_id[&(s.trace_id, p)];
                    match s.span_kind() {
                        SpanKind::Server => assert_eq!(parent.span_kind(), SpanKind::Client),
                        SpanKind::Consumer => assert_eq!(parent.span_kind(), SpanKind::Producer),
                        SpanKind::Client | SpanKind::Producer | SpanKind::Internal => {
                            assert_eq!(parent.service, s.service)
                        }
                        SpanKind::Unspecified => panic!("no unspecified spans"),
                    }
                    if s.span_kind().is_outgoing() {
                        assert!(s.peer.is_some());
                    }
                }
            }
        }
        assert_eq!(roots, 500);
        // Every kind of edge shows up in 500 traces.
        for (from, to) in [
            ("frontend GET /", "auth Verify"),
            ("auth Verify", "redis"),
            ("catalog GetProduct", "postgres"),
            ("checkout PlaceOrder", "email orders process"),
            ("checkout PlaceOrder", "order-analytics"),
            ("shipping ShipOrder", "fulfillment shipments process"),
        ] {
            let e = truth
                .edge(from, to)
                .unwrap_or_else(|| panic!("{from} -> {to}"));
            assert!(e.calls > 0 && e.attempts >= e.calls);
        }
        assert!(truth.nodes["postgres"].is_virtual && truth.nodes["postgres"].invocations > 0);
        assert!(truth.nodes["frontend GET /"].endpoint);
        let st = World::shop().static_truth();
        assert!(truth.edge_set().is_subset(&st.edge_set()));
        // The optional db lookup in auth is made about 20% of the time.
        let verify = truth.nodes["auth Verify"].invocations as f64;
        let lookups = truth.edge("auth Verify", "postgres").unwrap().calls as f64;
        assert!((lookups / verify - 0.2).abs() < 0.06, "{lookups}/{verify}");
    }

    #[test]
    fn down_service_gives_client_spans_without_server_children() {
        let (b, truth) = shop_spans(7, 400, Some("payment:down"));
        let spans = b.to_owned_spans();
        assert!(spans.iter().all(|s| s.service != "payment"));
        assert!(spans
            .iter()
            .all(|s| s.experiment.as_deref() == Some("payment:down")));
        let refused: Vec<_> = spans
            .iter()
            .filter(|s| s.span_kind() == SpanKind::Client && s.peer.as_deref() == Some("payment"))
            .collect();
        assert!(!refused.is_empty());
        for c in &refused {
            assert_eq!(c.status_code(), StatusCode::Error);
            assert!(c.end_ns - c.start_ns < 5_000_000);
            assert!(!spans
                .iter()
                .any(|s| s.trace_id == c.trace_id && s.parent_span_id == Some(c.span_id)));
        }
        let e = truth.edge("checkout PlaceOrder", "payment Charge").unwrap();
        assert_eq!(e.errors, e.calls);
        assert_eq!(e.attempts, 3 * e.calls, "two retries each");
        assert_eq!(refused.len() as u64, e.attempts);
        assert_eq!(truth.nodes["payment Charge"].invocations, 0);
        // No fallback: every checkout that reached payment failed.
        assert!(truth.nodes["checkout PlaceOrder"].errors >= e.calls);
    }

    #[test]
    fn faults_change_behaviour_and_unknown_targets_are_refused() {
        let (_, base) = shop_spans(9, 400, None);
        let (_, slow) = shop_spans(9, 400, Some("stripe:error=1"));
        let e = slow.edge("payment Charge", "stripe").unwrap();
        assert_eq!(e.errors, e.calls);
        assert!(base.edge("payment Charge", "stripe").unwrap().errors < e.errors);
        let (lat, _) = shop_spans(9, 200, Some("ad:latency=+500ms"));
        let ads: Vec<_> = lat
            .to_owned_spans()
            .into_iter()
            .filter(|s| s.service == "ad" && s.span_kind() == SpanKind::Server)
            .collect();
        assert!(!ads.is_empty() && ads.iter().all(|s| s.end_ns - s.start_ns >= 500_000_000));
        let w = World::shop();
        let g = Generator::new(&w, 1).unwrap();
        assert!(matches!(
            g.with_fault("nosuch:down".parse().unwrap()),
            Err(DatasetError::UnknownTarget { .. })
        ));
    }

    #[test]
    fn random_world_generates() {
        let w = World::random(5, crate::RandomWorldParams::default()).unwrap();
        let mut g = Generator::new(&w, 5).unwrap();
        let mut b = SpanBatch::new();
        assert!(g.emit(200, &mut b) > 200);
        assert!(g.truth().edge_set().is_subset(&w.static_truth().edge_set()));
    }
}
