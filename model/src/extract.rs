//! Call-graph extraction: spans in, operations and call edges out.
//!
//! Spans arrive in batches in any order; [`ModelBuilder`] groups them by trace, keeps a trace open
//! while its spans keep coming, and folds each finished trace into running statistics:
//!
//! ```text
//! batches ──► re-intern strings ──► group by trace id ──► (trace idle for `trace_window` spans, or end)
//!                                                              │
//!                   per trace: link parents, cut cycles, find entries, attribute spans to operations
//!                                                              │
//!        per invocation: call attempts grouped into calls (retries), overlaps, busy time
//!                                                              │
//!      operation stats (invocations, errors, duration, self time, own errors) · call-site stats
//!      (attempts, calls, retries, per-invocation counts, overlaps, durations, gaps, cuts,
//!      propagated/survived failures) · unarrived calls by (caller, peer, span name) ──► Model
//! ```
//!
//! The [`Model`] holds only these sums; [`Model::view`](crate::Model::view) places unarrived
//! calls and derives behaviour, so models learned apart merge to the model learned at once.
//!
//! ## What counts as what
//! - An **entry** span starts a service's handling of a request: a root, a SERVER or CONSUMER span,
//!   or any span whose parent is in another service (data without span kinds, like CSV tables).
//!   Its **operation** is `(service, entry span name)`; every other span belongs to the operation
//!   of its nearest entry ancestor.
//! - An entry span with a parent is the far end of a **call edge** from the parent's operation. The
//!   call's duration and error are the CLIENT/PRODUCER parent's when there is one (the caller's
//!   view), else the entry span's own.
//! - A CLIENT/PRODUCER span with no call below it (no entry child, no nested client span) is a
//!   call that reached nothing instrumented. Its `peer` decides where it went: a peer naming an
//!   instrumented service is a call to that service that never arrived (a `down` service looks
//!   like this); any other peer is an uninstrumented **virtual node**.
//! - A root (no parent id) is a user-facing **endpoint**, unless it is a CONSUMER span (a message
//!   whose producer is linked rather than its parent, or not traced: asynchronous work, not a user
//!   request); a span whose parent id is missing from its trace is counted as a broken trace, not
//!   promoted to an endpoint.
//! - An **invocation** is one entry span and the spans of its operation below it. Its calls are
//!   the call edges and unarrived calls made from it; its **self time** is its duration minus the
//!   union of those calls' intervals (clipped to it); a call **overlaps** if its interval
//!   intersects another call's of the same invocation. An attempt is a **retry** when it follows a
//!   failed attempt at the same callee with the same span name, starting after it ended; a
//!   refused attempt whose peer names the service a later (or earlier) attempt of the same name
//!   reached is an attempt at that callee.
//! - **Propagation evidence**: a call that failed after its retries counts as *survived* when its
//!   caller invocation succeeded, as *propagated* when the caller failed and no other call of that
//!   invocation failed; a caller failure with several failed calls is ambiguous and not counted.
//!   An invocation with no failed call is *clean*: if it failed, the error was its own.

use std::collections::VecDeque;

use augur_ingest::{
    Interner, PeerKind, Span, SpanBatch, SpanId, SpanKind, StatusCode, Sym, TraceId,
};
use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{
    add_active, bump, CallSite, CallStats, LinkedCalls, Model, Operation, PeerKinds, TraceQuality,
    Unarrived, Window, SCHEMA_VERSION, TRAFFIC_GAP_NS,
};
use crate::sketch::LogSketch;

/// How much longer than its client span a server span must run for the call to count as cut
/// (the caller gave up while the server went on: a timeout). Clocks of different hosts disagree
/// by about this much; a server span ending a fraction of a millisecond after its failed client
/// span is skew, and counting it invented timeouts at the median call duration.
const CUT_MARGIN_NS: i64 = 1_000_000;

/// Finished traces remembered, to notice spans that come after their trace was finished.
const RECENTLY_CLOSED: usize = 1 << 16;

/// Default number of spans after which a trace that received none is considered complete.
///
/// 256 Ki spans is several seconds of traffic even at millions of spans a minute (a trace's spans
/// from different services reach a Collector within seconds of each other), about 26 MB of
/// buffered spans; keeping it this size also keeps the buffered spans cache-warm (a 1 Mi window
/// was measured 15% slower end to end, docs/PERFORMANCE.md).
pub const DEFAULT_TRACE_WINDOW: usize = 262_144;

/// Options of a model build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// A trace is finished once this many spans of other traces arrived after its last span.
    /// Larger tolerates more interleaving between traces, at the cost of memory (about 100 bytes
    /// per buffered span). A span that arrives after its trace was finished starts a new partial
    /// trace; if its parent went with the finished part it is counted in
    /// [`TraceQuality::missing_parents`](crate::TraceQuality::missing_parents).
    pub trace_window: usize,
    /// What to do with the traces of experiments (a span carrying the `augur.experiment`
    /// attribute: the fault that was active).
    pub experiments: ExperimentTraces,
}

/// What a model does with the traces recorded while an experiment's fault was active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExperimentTraces {
    /// Left out of the model and counted in
    /// [`TraceQuality::experiment_traces`](crate::TraceQuality::experiment_traces): an injected
    /// fault is not the system's normal behaviour (its traces are an outcome's evidence,
    /// `augur outcome`).
    #[default]
    SetAside,
    /// Learned like any other trace (an outcome's own traces, a backtest's windows).
    Learn,
    /// Set aside as [`ExperimentTraces::SetAside`] does, and their spans kept, with the
    /// experiment each names, for [`ModelBuilder::take_set_aside`] (a live server learns each
    /// experiment's traces on their own, for its outcome).
    Collect,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            trace_window: DEFAULT_TRACE_WINDOW,
            experiments: ExperimentTraces::SetAside,
        }
    }
}

impl BuildOptions {
    /// The defaults, learning experiments' traces too.
    pub fn learning_experiments() -> Self {
        BuildOptions {
            experiments: ExperimentTraces::Learn,
            ..BuildOptions::default()
        }
    }
}

type NodeIdx = u32;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct NodeKey {
    service: Sym,
    operation: Sym,
}

#[derive(Default)]
struct NodeAcc {
    invocations: u64,
    errors: u64,
    roots: u64,
    duration: LogSketch,
    self_ns: LogSketch,
    clean: u64,
    clean_errors: u64,
    unrecorded: u64,
}

/// One attempt at a call, as seen in a trace: the caller's invocation (its entry span), the
/// callee (an operation, or for a call that reached nothing instrumented its caller operation
/// and peer), and the attempt's span.
#[derive(Clone, Copy)]
struct CallEvent {
    inv: u32,
    leaf: bool,
    /// The callee operation, or (leaf) the caller operation.
    ka: u32,
    /// 0, or (leaf) the peer.
    kb: Sym,
    name: Sym,
    start: i64,
    end: i64,
    failed: bool,
    producer: bool,
    gap: Option<i64>,
    /// How long the server span ran on after this client span ended, when beyond clock skew
    /// (else 0): a timeout's cut when the attempt failed.
    overrun: i64,
    overlap: bool,
    /// The first attempt of a call (not a retry).
    first: bool,
    /// The attempt reached nothing instrumented (a leaf, or a refused attempt of a call whose
    /// retry did arrive).
    unanswered: bool,
}

/// Spans per slab block: a trace's spans sit in blocks of this many, linked, so gathering a
/// trace follows one link per block and reads each block's spans in sequence (a link per span
/// made every load wait for the previous one: perf showed a third of trace folding there).
const BLOCK: usize = 8;

/// A trace being assembled: its spans, in a chain of slab blocks.
struct OpenTrace {
    head: u32,
    tail: u32,
    len: u32,
    last_seen: u64,
}

/// A span for unused slab places.
const EMPTY_SPAN: Span = Span {
    trace_id: [0; 16],
    span_id: [0; 8],
    parent_span_id: None,
    service: 0,
    name: 0,
    kind: SpanKind::Unspecified,
    start_ns: 0,
    end_ns: 0,
    status: StatusCode::Unset,
    peer: None,
    peer_kind: augur_ingest::PeerKind::Unknown,
    http_route: None,
    rpc_method: None,
    error_type: None,
    experiment: None,
};

/// Per-trace working memory, reused across traces so finishing a trace allocates nothing.
#[derive(Default)]
struct Scratch {
    index: IdIndex,
    fill: Vec<u32>,
    keep: Vec<bool>,
    parent: Vec<u32>,
    orphan: Vec<bool>,
    child_start: Vec<u32>,
    children: Vec<u32>,
    order: Vec<u32>,
    visited: Vec<bool>,
    op: Vec<NodeIdx>,
    entry: Vec<bool>,
    covered: Vec<bool>,
    inv: Vec<u32>,
    events: Vec<CallEvent>,
    busy: Vec<i64>,
    failed_calls: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// Folds spans into a [`Model`]: feed batches with [`ModelBuilder::add_batch`], then
/// [`ModelBuilder::finish`].
pub struct ModelBuilder {
    opts: BuildOptions,
    strings: Interner,
    remap: Vec<Sym>,
    open: FxHashMap<TraceId, OpenTrace>,
    /// Blocks of [`BLOCK`] spans; block `b` is `slab[b * BLOCK..(b + 1) * BLOCK]`.
    slab: Vec<Span>,
    /// The next block of each block's trace.
    next_block: Vec<u32>,
    free_blocks: Vec<u32>,
    gathered: Vec<Span>,
    fifo: VecDeque<TraceId>,
    buffered: usize,
    seen: u64,
    nodes: Vec<(NodeKey, NodeAcc)>,
    node_index: FxHashMap<NodeKey, NodeIdx>,
    edges: FxHashMap<(NodeIdx, NodeIdx), CallStats>,
    /// Which callee a (caller, client span name) reached when it did reach one: used to place
    /// calls that never arrived.
    reached: FxHashMap<(NodeIdx, Sym, NodeIdx), u64>,
    /// Client calls that reached nothing instrumented: (caller, peer, client span name).
    leaf_calls: FxHashMap<(NodeIdx, Sym, Sym), CallStats>,
    /// Links of spans not folded yet: (trace, span) → the linked (trace, span).
    span_links: FxHashMap<(TraceId, SpanId), (TraceId, SpanId)>,
    /// Messages sent that reached no consumer in their own trace, by their span, oldest first:
    /// (caller, peer, name), for consumers in other traces linked to them.
    producers: Recent<(NodeIdx, Sym, Sym)>,
    /// The most recently finished traces (at most [`RECENTLY_CLOSED`]): a span of one of them
    /// coming later splits the trace ([`TraceQuality::traces_split`]).
    closed: FxHashSet<TraceId>,
    closed_order: VecDeque<TraceId>,
    /// Consumers linked to a producer span not seen yet, by that span.
    waiting: Recent<NodeIdx>,
    /// Messages consumed in another trace, linked: (caller, peer, name, consumer) → messages.
    linked: FxHashMap<(NodeIdx, Sym, Sym, NodeIdx), u64>,
    /// Calls that reached nothing instrumented whose span marked the peer a database or a queue,
    /// by peer: [database, messaging].
    peer_kinds: FxHashMap<Sym, [u64; 2]>,
    window: Option<Window>,
    /// Stretches of traffic (see [`Model::active`]), and the one the last span fell in.
    active: Vec<Window>,
    active_hint: usize,
    quality: TraceQuality,
    scratch: Scratch,
    /// Spans of experiments' traces set aside, with [`ExperimentTraces::Collect`].
    set_aside: Vec<Span>,
}

impl Default for ModelBuilder {
    fn default() -> Self {
        Self::new(BuildOptions::default())
    }
}

impl ModelBuilder {
    /// An empty builder.
    pub fn new(opts: BuildOptions) -> Self {
        let recent = opts.trace_window.max(1);
        ModelBuilder {
            opts,
            strings: Interner::new(),
            remap: Vec::new(),
            open: FxHashMap::default(),
            slab: Vec::new(),
            next_block: Vec::new(),
            free_blocks: Vec::new(),
            gathered: Vec::new(),
            fifo: VecDeque::new(),
            buffered: 0,
            seen: 0,
            nodes: Vec::new(),
            node_index: FxHashMap::default(),
            edges: FxHashMap::default(),
            reached: FxHashMap::default(),
            leaf_calls: FxHashMap::default(),
            span_links: FxHashMap::default(),
            producers: Recent::new(recent),
            closed: FxHashSet::default(),
            closed_order: VecDeque::new(),
            waiting: Recent::new(recent),
            linked: FxHashMap::default(),
            peer_kinds: FxHashMap::default(),
            window: None,
            active: Vec::new(),
            active_hint: 0,
            quality: TraceQuality::default(),
            scratch: Scratch::default(),
            set_aside: Vec::new(),
        }
    }

    /// Spans read so far.
    pub fn spans(&self) -> u64 {
        self.quality.spans
    }

    /// Adds a batch of spans (from any reader, in any order).
    pub fn add_batch(&mut self, batch: &SpanBatch) {
        self.remap.clear();
        self.remap.resize(batch.strings.len(), NONE);
        for l in &batch.links {
            if let Some(s) = batch.spans.get(l.span as usize) {
                self.span_links
                    .insert((s.trace_id, s.span_id), (l.trace_id, l.span_id));
            }
        }
        for span in &batch.spans {
            let mut s = *span;
            s.service = self.sym(batch, s.service);
            s.name = self.sym(batch, s.name);
            s.peer = s.peer.map(|p| self.sym(batch, p));
            // Attributes the graph does not use are dropped here rather than re-interned.
            s.http_route = None;
            s.rpc_method = None;
            s.error_type = None;
            // Only whether an experiment was active matters to the model; which one matters
            // to experiments' traces handed out (rare: the lookup costs nothing otherwise).
            s.experiment = s.experiment.map(|e| self.sym(batch, e));
            self.quality.spans += 1;
            let w = Window {
                first_ns: s.start_ns,
                last_ns: s.end_ns.max(s.start_ns),
            };
            self.window = Some(self.window.map_or(w, |o| o.union(w)));
            self.note_active(w);
            self.seen += 1;
            self.buffered += 1;
            let seen = self.seen;
            match self.open.get_mut(&s.trace_id) {
                Some(t) => {
                    let pos = t.len as usize % BLOCK;
                    if pos == 0 {
                        let b = alloc_block(
                            &mut self.slab,
                            &mut self.next_block,
                            &mut self.free_blocks,
                        );
                        if let Some(link) = self.next_block.get_mut(t.tail as usize) {
                            *link = b;
                        }
                        t.tail = b;
                    }
                    if let Some(place) = self.slab.get_mut(t.tail as usize * BLOCK + pos) {
                        *place = s;
                    }
                    t.len += 1;
                    t.last_seen = seen;
                }
                None => {
                    if !self.closed.is_empty() && self.closed.remove(&s.trace_id) {
                        self.quality.traces_split += 1;
                    }
                    let b =
                        alloc_block(&mut self.slab, &mut self.next_block, &mut self.free_blocks);
                    if let Some(place) = self.slab.get_mut(b as usize * BLOCK) {
                        *place = s;
                    }
                    self.open.insert(
                        s.trace_id,
                        OpenTrace {
                            head: b,
                            tail: b,
                            len: 1,
                            last_seen: seen,
                        },
                    );
                    self.fifo.push_back(s.trace_id);
                }
            }
        }
        self.evict();
    }

    fn sym(&mut self, batch: &SpanBatch, sym: Sym) -> Sym {
        match self.remap.get(sym as usize) {
            Some(&g) if g != NONE => g,
            Some(_) => {
                let g = self.strings.intern(batch.str(sym));
                self.remap[sym as usize] = g;
                g
            }
            None => self.strings.intern(""),
        }
    }

    /// Finishes traces that have been idle for the window, and the oldest ones if more than twice
    /// the window is buffered.
    fn evict(&mut self) {
        let window = self.opts.trace_window.max(1) as u64;
        let seen = self.seen;
        self.finish_front_while(|t, buffered| {
            let idle = seen - t.last_seen >= window;
            let over = buffered as u64 > window.saturating_mul(2);
            // Still receiving spans but forced out by memory: cut.
            (idle || over).then_some(!idle)
        });
    }

    /// Finishes traces from the front of the arrival queue while `decide` says so: `None`
    /// stops; `Some(cut)` finishes it, counting it as cut by the window when `cut`. Returns how
    /// many were finished.
    fn finish_front_while(&mut self, decide: impl Fn(&OpenTrace, usize) -> Option<bool>) -> usize {
        let mut n = 0;
        while let Some(&front) = self.fifo.front() {
            let Some(t) = self.open.get(&front) else {
                self.fifo.pop_front();
                continue;
            };
            let Some(cut) = decide(t, self.buffered) else {
                break;
            };
            self.fifo.pop_front();
            if cut {
                self.quality.traces_cut_by_window += 1;
            }
            if let Some(t) = self.open.remove(&front) {
                self.close(&t);
                n += 1;
                if self.closed_order.len() >= RECENTLY_CLOSED {
                    if let Some(old) = self.closed_order.pop_front() {
                        self.closed.remove(&old);
                    }
                }
                if self.closed.insert(front) {
                    self.closed_order.push_back(front);
                }
            }
        }
        n
    }

    /// Takes a trace's spans out of the slab and folds them.
    fn close(&mut self, t: &OpenTrace) {
        let mut spans = std::mem::take(&mut self.gathered);
        spans.clear();
        let free = &mut self.free_blocks;
        for_each_block(&self.slab, &self.next_block, t, |b, block| {
            spans.extend_from_slice(block);
            free.push(b);
        });
        self.buffered -= t.len as usize;
        self.fold_trace(&mut spans);
        self.gathered = spans;
    }

    /// How many spans were added so far: a clock for [`ModelBuilder::finish_idle`].
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Spans buffered in traces not yet finished.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Finishes the traces, oldest first, whose last span arrived when [`ModelBuilder::seen`]
    /// was at most `seen`: a live receiver calls this with the clock of some seconds ago, so a
    /// trace is folded once it has been quiet that long even when little traffic follows it.
    /// Returns how many traces were finished.
    pub fn finish_idle(&mut self, seen: u64) -> usize {
        self.finish_front_while(|t, _| (t.last_seen <= seen).then_some(false))
    }

    /// The model of the traces finished so far (spans still buffered are not counted in it; see
    /// [`ModelBuilder::pending`]).
    pub fn model(&self) -> Model {
        self.model_of()
    }

    /// The spans buffered in traces not yet finished, in arrival order of their traces. A
    /// builder fed [`ModelBuilder::model`]'s traces and then these ends where this one would.
    pub fn pending(&self) -> SpanBatch {
        let mut out = SpanBatch::with_capacity(self.buffered);
        let mut remap: FxHashMap<Sym, Sym> = FxHashMap::default();
        for id in &self.fifo {
            let Some(t) = self.open.get(id) else { continue };
            for_each_block(&self.slab, &self.next_block, t, |_, block| {
                for s in block {
                    self.hand_out(s, &mut out, &mut remap);
                }
            });
        }
        out
    }

    /// Appends `s` to `out`, its strings re-interned there.
    fn hand_out(&self, s: &Span, out: &mut SpanBatch, remap: &mut FxHashMap<Sym, Sym>) {
        let mut s = *s;
        let mut map = |sym: Sym| {
            *remap
                .entry(sym)
                .or_insert_with(|| out.strings.intern(self.strings.resolve(sym)))
        };
        s.service = map(s.service);
        s.name = map(s.name);
        s.peer = s.peer.map(&mut map);
        s.experiment = s.experiment.map(&mut map);
        out.spans.push(s);
        if let Some(&(t, l)) = self.span_links.get(&(s.trace_id, s.span_id)) {
            out.link_last(t, l);
        }
    }

    /// The spans of the experiments' traces set aside since the last call, whole traces in the
    /// order they were finished, each span naming its experiment as it arrived
    /// ([`ExperimentTraces::Collect`]; empty otherwise).
    pub fn take_set_aside(&mut self) -> SpanBatch {
        if self.set_aside.is_empty() {
            return SpanBatch::new();
        }
        let spans = std::mem::take(&mut self.set_aside);
        let mut out = SpanBatch::with_capacity(spans.len());
        let mut remap: FxHashMap<Sym, Sym> = FxHashMap::default();
        for s in &spans {
            self.hand_out(s, &mut out, &mut remap);
        }
        if !self.span_links.is_empty() {
            for s in &spans {
                self.span_links.remove(&(s.trace_id, s.span_id));
            }
        }
        out
    }

    /// Finishes every open trace and returns the model.
    pub fn finish(mut self) -> Model {
        let mut open: Vec<(TraceId, OpenTrace)> =
            std::mem::take(&mut self.open).into_iter().collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        for (_, t) in open {
            self.close(&t);
        }
        // Consumers whose producer never came (not traced, or in input never seen).
        self.quality.links_unmatched += self.waiting.len() as u64;
        self.into_model()
    }

    fn node(&mut self, service: Sym, operation: Sym) -> NodeIdx {
        let key = NodeKey { service, operation };
        if let Some(&i) = self.node_index.get(&key) {
            return i;
        }
        let i = self.nodes.len() as NodeIdx;
        self.nodes.push((key, NodeAcc::default()));
        self.node_index.insert(key, i);
        i
    }

    /// Links one trace's spans and folds them into the statistics.
    fn fold_trace(&mut self, spans: &mut Vec<Span>) {
        if self.opts.experiments != ExperimentTraces::Learn
            && spans.iter().any(|s| s.experiment.is_some())
        {
            self.quality.experiment_traces += 1;
            self.quality.experiment_spans += spans.len() as u64;
            if self.opts.experiments == ExperimentTraces::Collect {
                // Their links go with them (see take_set_aside).
                self.set_aside.extend_from_slice(spans);
            } else if !self.span_links.is_empty() {
                for s in spans.iter() {
                    self.span_links.remove(&(s.trace_id, s.span_id));
                }
            }
            return;
        }
        self.quality.traces += 1;
        let mut sc = std::mem::take(&mut self.scratch);
        let n = spans.len();

        // Span ids: identical re-reports are dropped, conflicting reuses counted (first wins).
        sc.index.reset(n);
        sc.keep.clear();
        sc.keep.resize(n, true);
        for i in 0..n {
            let s = spans[i];
            if let Some(j) = sc.index.insert_first(s.span_id, i as u32) {
                let o = spans[j as usize];
                if o.name == s.name
                    && o.service == s.service
                    && o.start_ns == s.start_ns
                    && o.end_ns == s.end_ns
                {
                    self.quality.duplicate_spans += 1;
                    sc.keep[i] = false;
                } else {
                    self.quality.conflicting_span_ids += 1;
                }
            }
        }
        if sc.keep.iter().any(|k| !k) {
            let mut k = 0;
            spans.retain(|_| {
                let keep = sc.keep[k];
                k += 1;
                keep
            });
            sc.index.reset(spans.len());
            for (i, s) in spans.iter().enumerate() {
                sc.index.insert_first(s.span_id, i as u32);
            }
        }
        let n = spans.len();

        // Parents.
        sc.parent.clear();
        sc.orphan.clear();
        sc.orphan.resize(n, false);
        for (i, s) in spans.iter().enumerate() {
            if s.end_ns < s.start_ns {
                self.quality.end_before_start += 1;
            }
            let p = match s.parent_span_id {
                None => NONE,
                Some(pid) if pid == s.span_id => {
                    self.quality.cycles += 1;
                    NONE
                }
                Some(pid) => match sc.index.get(&pid) {
                    Some(j) => j,
                    None => {
                        self.quality.missing_parents += 1;
                        sc.orphan[i] = true;
                        NONE
                    }
                },
            };
            sc.parent.push(p);
        }

        // Children (CSR) and a parents-first order; spans on a cycle are cut loose at the earliest.
        sc.visited.clear();
        sc.visited.resize(n, false);
        sc.order.clear();
        loop {
            build_children(
                &sc.parent,
                &mut sc.child_start,
                &mut sc.children,
                &mut sc.fill,
            );
            let start = sc.order.len();
            for i in 0..n {
                if sc.parent[i] == NONE && !sc.visited[i] {
                    sc.visited[i] = true;
                    sc.order.push(i as u32);
                }
            }
            let mut k = start;
            while k < sc.order.len() {
                let i = sc.order[k] as usize;
                let (a, b) = (sc.child_start[i] as usize, sc.child_start[i + 1] as usize);
                for c in a..b {
                    let c = sc.children[c] as usize;
                    if !sc.visited[c] {
                        sc.visited[c] = true;
                        sc.order.push(c as u32);
                    }
                }
                k += 1;
            }
            if sc.order.len() == n {
                break;
            }
            // Some spans are only reachable through a cycle: cut the earliest one's parent link.
            let cut = (0..n)
                .filter(|&i| !sc.visited[i])
                .min_by_key(|&i| (spans[i].start_ns, i));
            match cut {
                Some(i) => {
                    self.quality.cycles += 1;
                    sc.parent[i] = NONE;
                }
                None => break,
            }
        }

        // Entries, operations, node statistics and call events, in parents-first order.
        sc.op.clear();
        sc.op.resize(n, 0);
        sc.entry.clear();
        sc.entry.resize(n, false);
        sc.inv.clear();
        sc.inv.resize(n, NONE);
        sc.events.clear();
        for k in 0..sc.order.len() {
            let i = sc.order[k] as usize;
            let s = spans[i];
            let p = sc.parent[i];
            let entry = p == NONE
                || matches!(s.kind, SpanKind::Server | SpanKind::Consumer)
                || spans[p as usize].service != s.service;
            sc.entry[i] = entry;
            if !entry {
                sc.op[i] = sc.op[p as usize];
                sc.inv[i] = sc.inv[p as usize];
                continue;
            }
            let op = self.node(s.service, s.name);
            sc.op[i] = op;
            sc.inv[i] = i as u32;
            let acc = &mut self.nodes[op as usize].1;
            acc.invocations += 1;
            acc.errors += u64::from(s.status == StatusCode::Error);
            acc.duration.add(s.duration_ns().max(0) as f64);
            if p == NONE {
                // A message consumed with no parent (linked to its producer, or the producer
                // not traced) is not a user request.
                if !sc.orphan[i] && s.kind != SpanKind::Consumer {
                    acc.roots += 1;
                }
                if !self.span_links.is_empty() {
                    if let Some(link) = self.span_links.remove(&(s.trace_id, s.span_id)) {
                        self.consumed(link, op);
                    }
                }
                continue;
            }
            let ps = spans[p as usize];
            let caller = sc.op[p as usize];
            let via_client = matches!(ps.kind, SpanKind::Client | SpanKind::Producer);
            let call = if via_client { ps } else { s };
            let message = ps.kind == SpanKind::Producer || s.kind == SpanKind::Consumer;
            let waits_for_server = via_client && !message;
            // A client span of no duration (or ending before it began) around a server span
            // that took time is broken instrumentation: the call took at least the server's
            // time, which would otherwise count as its caller's own.
            let broken_client =
                waits_for_server && ps.end_ns <= ps.start_ns && s.end_ns > s.start_ns;
            // A server span of no duration under a client span that took time is broken the
            // other way: its time is unknown, so it gives no gap (the client's whole duration)
            // and no self time (0), which sampled apart would add up to twice the call.
            let broken_server =
                waits_for_server && s.end_ns <= s.start_ns && ps.end_ns > ps.start_ns;
            let (start, end) = if broken_client {
                (s.start_ns, s.end_ns)
            } else {
                (call.start_ns, call.end_ns.max(call.start_ns))
            };
            sc.events.push(CallEvent {
                inv: sc.inv[p as usize],
                leaf: false,
                ka: op,
                kb: 0,
                name: call.name,
                start,
                end,
                failed: call.status == StatusCode::Error,
                producer: message,
                gap: if waits_for_server && !broken_server {
                    Some(ps.duration_ns().saturating_sub(s.duration_ns()))
                } else {
                    None
                },
                overrun: match s.end_ns.saturating_sub(ps.end_ns) {
                    o if waits_for_server && !broken_client && o > CUT_MARGIN_NS => o,
                    _ => 0,
                },
                overlap: false,
                first: true,
                unanswered: false,
            });
            if via_client {
                *self.reached.entry((caller, ps.name, op)).or_default() += 1;
            }
            if ps.service != s.service && s.start_ns < ps.start_ns {
                self.quality.clock_skew += 1;
            }
        }

        // Which spans have a call somewhere below them within their own operation: the others,
        // if CLIENT/PRODUCER, are calls that reached nothing instrumented.
        sc.covered.clear();
        sc.covered.resize(n, false);
        for k in (0..sc.order.len()).rev() {
            let i = sc.order[k] as usize;
            let p = sc.parent[i];
            if p == NONE {
                continue;
            }
            let is_call = matches!(spans[i].kind, SpanKind::Client | SpanKind::Producer);
            if sc.entry[i] || sc.covered[i] || is_call {
                sc.covered[p as usize] = true;
            }
        }
        for k in 0..sc.order.len() {
            let i = sc.order[k] as usize;
            let s = spans[i];
            if !matches!(s.kind, SpanKind::Client | SpanKind::Producer) || sc.covered[i] {
                continue;
            }
            // A message whose span names no destination (no `messaging.destination.name`) is
            // still sent somewhere: known by the span's name, so that a consumer linked to it
            // finds it, and one never seen is a queue of that name.
            let peer = s
                .peer
                .or_else(|| (s.kind == SpanKind::Producer).then_some(s.name));
            if s.kind == SpanKind::Producer {
                if let Some(peer) = peer {
                    self.produced((s.trace_id, s.span_id), (sc.op[i], peer, s.name));
                }
            }
            if let (Some(peer), k @ (PeerKind::Database | PeerKind::Messaging)) =
                (s.peer, s.peer_kind)
            {
                self.peer_kinds.entry(peer).or_default()[k as usize - 1] += 1;
            }
            match peer {
                Some(peer) => sc.events.push(CallEvent {
                    inv: sc.inv[i],
                    leaf: true,
                    ka: sc.op[i],
                    kb: peer,
                    name: s.name,
                    start: s.start_ns,
                    end: s.end_ns.max(s.start_ns),
                    failed: s.status == StatusCode::Error,
                    producer: s.kind == SpanKind::Producer,
                    gap: None,
                    overrun: 0,
                    overlap: false,
                    first: true,
                    unanswered: true,
                }),
                None => self.quality.clients_without_peer += 1,
            }
        }

        if !self.span_links.is_empty() {
            for s in spans.iter() {
                self.span_links.remove(&(s.trace_id, s.span_id));
            }
        }
        self.fold_calls(spans, &mut sc);
        self.scratch = sc;
    }

    /// A consumer entry `op` linked to the producer span `link`.
    fn consumed(&mut self, link: (TraceId, SpanId), op: NodeIdx) {
        match self.producers.remove(&link) {
            Some((from, peer, name)) => {
                *self.linked.entry((from, peer, name, op)).or_default() += 1
            }
            None => {
                if let Some(_dropped) = self.waiting.insert(link, op) {
                    self.quality.links_unmatched += 1;
                }
            }
        }
    }

    /// A message sent from `call` that reached no consumer in its own trace.
    fn produced(&mut self, span: (TraceId, SpanId), call: (NodeIdx, Sym, Sym)) {
        match self.waiting.remove(&span) {
            Some(op) => *self.linked.entry((call.0, call.1, call.2, op)).or_default() += 1,
            None => {
                // A producer whose consumer never comes is the usual case for queues nobody
                // traces; forgetting the oldest costs nothing.
                let _ = self.producers.insert(span, call);
            }
        }
    }

    /// Adds a span's time to the stretches of traffic. Spans arrive roughly in time order, so
    /// the stretch of the last one almost always holds it or grows to: that costs a comparison.
    fn note_active(&mut self, w: Window) {
        if let Some(s) = self.active.get_mut(self.active_hint) {
            if w.first_ns >= s.first_ns && w.last_ns <= s.last_ns {
                return;
            }
            let h = self.active_hint;
            let after_prev =
                h == 0 || self.active[h - 1].last_ns.saturating_add(TRAFFIC_GAP_NS) < w.first_ns;
            let before_next = self
                .active
                .get(h + 1)
                .is_none_or(|n| w.last_ns < n.first_ns.saturating_sub(TRAFFIC_GAP_NS));
            let s = &mut self.active[h];
            let near = w.first_ns <= s.last_ns.saturating_add(TRAFFIC_GAP_NS)
                && w.last_ns >= s.first_ns.saturating_sub(TRAFFIC_GAP_NS);
            if near && after_prev && before_next {
                *s = s.union(w);
                return;
            }
        }
        self.active_hint = add_active(&mut self.active, w);
    }

    /// A refused attempt (a failed call that reached nothing instrumented, its peer naming a
    /// service) and an attempt of the same invocation, with the same client span name, that did
    /// reach that service are one call: the refused one is re-keyed to the call edge, so the
    /// later attempt counts as its retry (a pod restarting, a connection reset) rather than as a
    /// second call and a failed call elsewhere.
    fn join_refused_attempts(&self, group: &mut [CallEvent]) {
        if !group.iter().any(|e| e.leaf && e.failed) || group.iter().all(|e| e.leaf) {
            return;
        }
        for j in 0..group.len() {
            let r = group[j];
            if !(r.leaf && r.failed) {
                continue;
            }
            let nearest = group
                .iter()
                .filter(|e| {
                    !e.leaf
                        && e.name == r.name
                        && self
                            .nodes
                            .get(e.ka as usize)
                            .is_some_and(|(k, _)| k.service == r.kb)
                })
                .min_by_key(|e| (e.start.abs_diff(r.start), e.ka))
                .map(|e| e.ka);
            if let Some(callee) = nearest {
                let g = &mut group[j];
                g.leaf = false;
                g.ka = callee;
                g.kb = 0;
            }
        }
    }

    /// Folds one trace's call events into the call-site statistics, and each invocation's self
    /// time and own errors into its operation's.
    fn fold_calls(&mut self, spans: &[Span], sc: &mut Scratch) {
        let n = spans.len();
        sc.busy.clear();
        sc.busy.resize(n, 0);
        sc.failed_calls.clear();
        sc.failed_calls.resize(n, 0);
        let events = &mut sc.events;
        events.sort_unstable_by_key(|e| (e.inv, e.start, e.end));
        let mut a = 0;
        while a < events.len() {
            let inv = events[a].inv;
            let mut b = a + 1;
            while b < events.len() && events[b].inv == inv {
                b += 1;
            }
            let Some(&inv_span) = spans.get(inv as usize) else {
                a = b;
                continue;
            };
            let group = &mut events[a..b];

            // Busy time (the union of call intervals within the invocation) and overlaps.
            let (lo, hi) = (inv_span.start_ns, inv_span.end_ns.max(inv_span.start_ns));
            let mut busy = 0i64;
            let mut cur: Option<(i64, i64)> = None;
            let mut max_end = i64::MIN;
            let mut holder = 0usize;
            for j in 0..group.len() {
                let (s, e) = (group[j].start, group[j].end);
                if j > 0 && s < max_end {
                    group[j].overlap = true;
                    group[holder].overlap = true;
                }
                if e > max_end {
                    max_end = e;
                    holder = j;
                }
                let (s, e) = (s.clamp(lo, hi), e.clamp(lo, hi));
                cur = match cur {
                    Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                    Some((cs, ce)) => {
                        busy = busy.saturating_add(ce.saturating_sub(cs));
                        Some((s, e))
                    }
                    None => Some((s, e)),
                };
            }
            if let Some((cs, ce)) = cur {
                busy = busy.saturating_add(ce.saturating_sub(cs));
            }
            sc.busy[inv as usize] = busy;
            self.join_refused_attempts(group);

            // Calls: an attempt and the retries after it (same callee and span name, each after
            // the previous attempt failed and ended).
            // (Ties broken on every field, so the result never depends on input order.)
            group.sort_unstable_by_key(|e| (e.leaf, e.ka, e.kb, e.name, e.start, e.end, e.failed));
            let mut failed_calls = 0u32;
            for j in 0..group.len() {
                let retry = j > 0 && {
                    let (p, c) = (&group[j - 1], &group[j]);
                    p.leaf == c.leaf
                        && p.ka == c.ka
                        && p.kb == c.kb
                        && p.name == c.name
                        && p.failed
                        && c.start >= p.end
                };
                group[j].first = !retry;
                if j > 0 && !retry && group[j - 1].failed {
                    failed_calls += 1;
                }
            }
            if group.last().is_some_and(|e| e.failed) {
                failed_calls += 1;
            }
            sc.failed_calls[inv as usize] = failed_calls;
            let caller_failed = inv_span.status == StatusCode::Error;

            // Per callee (an unarrived call's callee is its peer and span name: where it went is
            // decided per name when the model is read).
            let callee = |e: &CallEvent| (e.leaf, e.ka, e.kb, if e.leaf { e.name } else { 0 });
            let mut c = 0;
            while c < group.len() {
                let key = callee(&group[c]);
                let mut d = c + 1;
                while d < group.len() && callee(&group[d]) == key {
                    d += 1;
                }
                let caller = sc.op[inv as usize];
                let acc = if key.0 {
                    self.leaf_calls
                        .entry((key.1, key.2, group[c].name))
                        .or_default()
                } else {
                    self.edges.entry((caller, key.1)).or_default()
                };
                let mut calls = 0usize;
                let mut j = c;
                while j < d {
                    // One call: attempts j..m.
                    let mut m = j + 1;
                    while m < d && !group[m].first {
                        m += 1;
                    }
                    let mut overlap = false;
                    for w in group[j..m].windows(2) {
                        acc.backoff_ns
                            .add(w[1].start.saturating_sub(w[0].end).max(0) as f64);
                    }
                    for ev in &group[j..m] {
                        acc.attempts += 1;
                        let dur = ev.end.saturating_sub(ev.start) as f64;
                        if ev.failed {
                            acc.attempt_errors += 1;
                            acc.failed_ns.add(dur);
                            if ev.unanswered {
                                acc.unanswered_ns.add(dur);
                            }
                        } else {
                            acc.ok_ns.add(dur);
                        }
                        if let Some(g) = ev.gap {
                            acc.gap_ns.add(g.max(0) as f64);
                            if g < 0 && !ev.failed {
                                acc.server_longer_ns.add(g.unsigned_abs() as f64);
                            }
                        }
                        if ev.overrun > 0 {
                            if ev.failed {
                                acc.cut_ns.add(dur);
                                acc.cut_overrun_ns.add(ev.overrun as f64);
                            } else {
                                acc.outlived_ok_ns.add(ev.overrun as f64);
                            }
                        }
                        acc.asynchronous += u64::from(ev.producer);
                        overlap |= ev.overlap;
                    }
                    acc.calls += 1;
                    acc.start_offset_ns = acc
                        .start_offset_ns
                        .saturating_add(group[j].start.saturating_sub(lo).max(0) as u64);
                    calls += 1;
                    bump(&mut acc.retries, m - j - 1, 1);
                    acc.parallel += u64::from(overlap);
                    if group[m - 1].failed {
                        acc.failed += 1;
                        bump(&mut acc.failed_after, m - j - 1, 1);
                        if !caller_failed {
                            acc.survived += 1;
                        } else if failed_calls == 1 {
                            acc.propagated += 1;
                        }
                    }
                    j = m;
                }
                bump(&mut acc.per_invocation, calls, 1);
                c = d;
            }
            a = b;
        }

        // Self time and own errors of every invocation.
        for (i, s) in spans.iter().enumerate() {
            if !sc.entry[i] {
                continue;
            }
            let acc = &mut self.nodes[sc.op[i] as usize].1;
            // A server span of no duration under a client span that took time: its self time
            // is unknown, not 0 (its gap is left out too).
            let p = sc.parent[i];
            let unknown = p != NONE
                && s.end_ns <= s.start_ns
                && spans.get(p as usize).is_some_and(|ps| {
                    ps.kind == SpanKind::Client
                        && s.kind != SpanKind::Consumer
                        && ps.end_ns > ps.start_ns
                });
            if !unknown {
                let own = s.duration_ns().max(0).saturating_sub(sc.busy[i]).max(0);
                acc.self_ns.add(own as f64);
            }
            if !s.status.is_recorded() {
                acc.unrecorded += 1;
            } else if sc.failed_calls[i] == 0 {
                acc.clean += 1;
                acc.clean_errors += u64::from(s.status == StatusCode::Error);
            }
        }
    }

    fn into_model(self) -> Model {
        self.model_of()
    }

    fn model_of(&self) -> Model {
        let id = |key: &NodeKey| -> String {
            format!(
                "{} {}",
                self.strings.resolve(key.service),
                self.strings.resolve(key.operation)
            )
        };
        let ids: Vec<String> = self.nodes.iter().map(|(k, _)| id(k)).collect();
        let mut operations: Vec<Operation> = self
            .nodes
            .iter()
            .zip(&ids)
            .map(|((key, acc), id)| Operation {
                id: id.clone(),
                service: self.strings.resolve(key.service).to_string(),
                operation: self.strings.resolve(key.operation).to_string(),
                invocations: acc.invocations,
                errors: acc.errors,
                roots: acc.roots,
                duration_ns: acc.duration.clone(),
                self_ns: acc.self_ns.clone(),
                clean: acc.clean,
                clean_errors: acc.clean_errors,
                unrecorded: acc.unrecorded,
            })
            .collect();
        operations.sort_by(|a, b| a.id.cmp(&b.id));
        let mut names: FxHashMap<(NodeIdx, NodeIdx), BTreeMap<String, u64>> = FxHashMap::default();
        for (&(caller, name, callee), &n) in &self.reached {
            *names
                .entry((caller, callee))
                .or_default()
                .entry(self.strings.resolve(name).to_string())
                .or_default() += n;
        }
        let mut calls: Vec<CallSite> = self
            .edges
            .iter()
            .map(|(&(from, to), stats)| CallSite {
                from: ids[from as usize].clone(),
                to: ids[to as usize].clone(),
                client_names: names.remove(&(from, to)).unwrap_or_default(),
                stats: stats.clone(),
            })
            .collect();
        calls.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        let mut unarrived: Vec<Unarrived> = self
            .leaf_calls
            .iter()
            .map(|(&(from, peer, name), stats)| Unarrived {
                from: ids[from as usize].clone(),
                peer: self.strings.resolve(peer).to_string(),
                name: self.strings.resolve(name).to_string(),
                stats: stats.clone(),
            })
            .collect();
        unarrived.sort_by(|a, b| (&a.from, &a.peer, &a.name).cmp(&(&b.from, &b.peer, &b.name)));
        let mut links: Vec<LinkedCalls> = self
            .linked
            .iter()
            .map(|(&(from, peer, name, to), &messages)| LinkedCalls {
                from: ids[from as usize].clone(),
                peer: self.strings.resolve(peer).to_string(),
                name: self.strings.resolve(name).to_string(),
                to: ids[to as usize].clone(),
                messages,
            })
            .collect();
        links.sort_by(|a, b| {
            (&a.from, &a.peer, &a.name, &a.to).cmp(&(&b.from, &b.peer, &b.name, &b.to))
        });
        let mut peer_kinds: Vec<PeerKinds> = self
            .peer_kinds
            .iter()
            .map(|(&peer, &[database, messaging])| PeerKinds {
                peer: self.strings.resolve(peer).to_string(),
                database,
                messaging,
            })
            .collect();
        peer_kinds.sort_by(|a, b| a.peer.cmp(&b.peer));
        let mut quality = self.quality.clone();
        quality.spans -= self.buffered as u64;
        Model {
            schema_version: SCHEMA_VERSION,
            quality,
            window: self.window,
            active: self.active.clone(),
            operations,
            calls,
            unarrived,
            links,
            peer_kinds,
            learned_files: Vec::new(),
        }
    }
}

/// A map that keeps at most `cap` entries, forgetting the oldest first.
struct Recent<V> {
    cap: usize,
    map: FxHashMap<(TraceId, SpanId), V>,
    order: VecDeque<(TraceId, SpanId)>,
}

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Recent {
            cap,
            map: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Inserts; returns an entry forgotten to make room, if one was.
    fn insert(&mut self, k: (TraceId, SpanId), v: V) -> Option<V> {
        let mut dropped = None;
        while self.map.len() >= self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.map.remove(&old) {
                dropped = Some(v);
            }
        }
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
        }
        // Keys removed by a match stay in `order` until they come up; keep it in bounds.
        if self.order.len() > 2 * self.cap.max(self.map.len()) {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        dropped
    }

    fn remove(&mut self, k: &(TraceId, SpanId)) -> Option<V> {
        // The key stays in `order` until it comes up: removing from the middle of the queue
        // would cost a scan, and a stale key is skipped when it is popped.
        self.map.remove(k)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Calls `f` with each block of a trace's spans, in order: the block's number and its spans.
fn for_each_block(
    slab: &[Span],
    next_block: &[u32],
    t: &OpenTrace,
    mut f: impl FnMut(u32, &[Span]),
) {
    let mut left = t.len as usize;
    let mut b = t.head;
    while left > 0 {
        let n = left.min(BLOCK);
        let start = b as usize * BLOCK;
        let Some(block) = slab.get(start..start + n) else {
            break;
        };
        f(b, block);
        left -= n;
        b = next_block.get(b as usize).copied().unwrap_or(NONE);
    }
}

/// Span id → index of its first span, for one trace: a scan for the usual small trace (cheaper
/// than hashing), a hash map for large ones.
#[derive(Default)]
struct IdIndex {
    small: Vec<(SpanId, u32)>,
    map: FxHashMap<SpanId, u32>,
    big: bool,
}

/// Traces up to this many spans are indexed by a scan.
const SCAN_INDEX_MAX: usize = 32;

impl IdIndex {
    fn reset(&mut self, n: usize) {
        self.small.clear();
        self.map.clear();
        self.big = n > SCAN_INDEX_MAX;
    }

    fn get(&self, id: &SpanId) -> Option<u32> {
        if self.big {
            self.map.get(id).copied()
        } else {
            self.small.iter().find(|(k, _)| k == id).map(|&(_, i)| i)
        }
    }

    /// Records `i` for `id` unless `id` is known; returns the index already recorded.
    fn insert_first(&mut self, id: SpanId, i: u32) -> Option<u32> {
        if let Some(j) = self.get(&id) {
            return Some(j);
        }
        if self.big {
            self.map.insert(id, i);
        } else {
            self.small.push((id, i));
        }
        None
    }
}

/// A free slab block (reused, or new at the end).
fn alloc_block(slab: &mut Vec<Span>, next_block: &mut Vec<u32>, free: &mut Vec<u32>) -> u32 {
    if let Some(b) = free.pop() {
        if let Some(link) = next_block.get_mut(b as usize) {
            *link = NONE;
        }
        return b;
    }
    let b = next_block.len() as u32;
    next_block.push(NONE);
    slab.resize(slab.len() + BLOCK, EMPTY_SPAN);
    b
}

/// Fills a compressed children table from a parent table (`NONE` = no parent).
fn build_children(
    parent: &[u32],
    start: &mut Vec<u32>,
    children: &mut Vec<u32>,
    fill: &mut Vec<u32>,
) {
    let n = parent.len();
    start.clear();
    start.resize(n + 1, 0);
    for &p in parent {
        if p != NONE {
            start[p as usize + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    children.clear();
    children.resize(start[n] as usize, 0);
    fill.clear();
    fill.extend_from_slice(&start[..n]);
    for (i, &p) in parent.iter().enumerate() {
        if p != NONE {
            children[fill[p as usize] as usize] = i as u32;
            fill[p as usize] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    #[test]
    fn an_operation_whose_status_was_never_recorded_has_no_own_error_rate() {
        use SpanKind::*;
        let unrecorded = |mut s: OwnedSpan| {
            s.status = StatusCode::Unknown as u8;
            s
        };
        let spans: Vec<OwnedSpan> = (0..3u8)
            .flat_map(|t| {
                [
                    unrecorded(at(t, 1, None, "a", "op", Server, 0, 100, false)),
                    unrecorded(at(t, 2, Some(1), "b", "get", Server, 10, 30, false)),
                ]
            })
            .collect();
        let model = build_with(&spans, BuildOptions::default());
        let op = &model.operations[0];
        assert_eq!((op.invocations, op.clean, op.unrecorded), (3, 0, 3));
        let v = model.view();
        for id in ["a op", "b get"] {
            let p = &v.node(id).unwrap().p_error;
            assert!(p.is_unrecorded(), "{id}: {p:?}");
            assert_eq!((p.interval.mean, p.interval.hi, p.evidence), (0.0, 0.0, 0));
            assert!(
                p.distribution().is_none(),
                "the simulator draws no own errors"
            );
        }
        // Once some of its spans record a status, the rate is learned from those alone.
        let mut merged = model.clone();
        merged.merge(&build_with(
            &[
                at(9, 1, None, "a", "op", Server, 0, 100, true),
                at(9, 2, Some(1), "b", "get", Server, 10, 30, false),
            ],
            BuildOptions::default(),
        ));
        let v = merged.view();
        let p = &v.node("b get").unwrap().p_error;
        assert!(!p.is_unrecorded());
        assert_eq!((p.evidence, p.prior.as_str()), (1, "jeffreys"));
        assert_eq!(v.node("a op").unwrap().errors, 1);
    }

    #[test]
    fn a_peer_named_like_an_operation_is_its_own_node() {
        use SpanKind::*;
        let mut query = at(2, 2, Some(1), "api", "query", Client, 10, 20, false);
        query.peer = Some("pg main".into());
        let v = build(&[
            at(1, 1, None, "pg", "main", Server, 0, 10, false),
            at(2, 1, None, "api", "op", Server, 0, 100, false),
            query,
        ]);
        let op = v.node("pg main").unwrap();
        assert!(!op.is_virtual && op.endpoint);
        let peer = v.node("pg main (peer)").unwrap();
        assert!(peer.is_virtual);
        assert_eq!((peer.service.as_str(), peer.invocations), ("pg main", 1));
        assert!(v.edge("api op", "pg main (peer)").is_some());
        assert!(v.edge("api op", "pg main").is_none());
    }

    use augur_ingest::OwnedSpan;

    #[allow(clippy::too_many_arguments)]
    fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        service: &str,
        name: &str,
        kind: SpanKind,
        start: i64,
        end: i64,
    ) -> OwnedSpan {
        OwnedSpan {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            service: service.into(),
            name: name.into(),
            kind: kind as u8,
            start_ns: start,
            end_ns: end,
            status: 0,
            peer: None,
            peer_kind: Default::default(),
            http_route: None,
            rpc_method: None,
            error_type: None,
            experiment: None,
            link: None,
        }
    }

    fn build(spans: &[OwnedSpan]) -> crate::View {
        build_with(spans, BuildOptions::default()).view()
    }

    fn build_with(spans: &[OwnedSpan], opts: BuildOptions) -> Model {
        let mut batch = SpanBatch::new();
        for s in spans {
            batch.push_owned(s);
        }
        let mut b = ModelBuilder::new(opts);
        b.add_batch(&batch);
        b.finish()
    }

    fn edge_list(m: &crate::View) -> Vec<(String, String, u64)> {
        m.edges
            .iter()
            .map(|e| (e.from.clone(), e.to.clone(), e.calls))
            .collect()
    }

    #[test]
    fn an_experiments_traces_are_set_aside_unless_asked_for() {
        use SpanKind::*;
        // Trace 1 is normal; in trace 2 (an experiment) the callee's failure is injected, and
        // only one span of it says so (the attribute may sit on any span of the trace).
        let mut spans = vec![
            span(1, 1, None, "web", "GET /", Server, 0, 10),
            span(1, 2, Some(1), "web", "call api", Client, 1, 5),
            span(1, 3, Some(2), "api", "get", Server, 2, 4),
            span(2, 1, None, "web", "GET /", Server, 0, 10),
            span(2, 2, Some(1), "web", "call api", Client, 1, 5),
            span(2, 3, Some(2), "api", "get", Server, 2, 4),
        ];
        spans[4].status = 2;
        spans[5].status = 2;
        spans[5].experiment = Some("api:error=1".into());
        let aside = build_with(&spans, BuildOptions::default());
        assert_eq!(aside.quality.traces, 1);
        assert_eq!(
            (
                aside.quality.experiment_traces,
                aside.quality.experiment_spans
            ),
            (1, 3)
        );
        assert_eq!(aside.quality.spans, 6, "spans read, all of them");
        let e = aside.view();
        let e = e.edge("web GET /", "api get").expect("the normal call");
        assert_eq!((e.calls, e.failed), (1, 0));
        // Collected: the same model, and the experiment's trace handed out whole, named.
        let mut batch = SpanBatch::new();
        for s in &spans {
            batch.push_owned(s);
        }
        let mut b = ModelBuilder::new(BuildOptions {
            experiments: ExperimentTraces::Collect,
            ..BuildOptions::default()
        });
        b.add_batch(&batch);
        assert_eq!(b.take_set_aside().len(), 0, "nothing finished yet");
        let pending = b.pending();
        let named: Vec<_> = pending
            .spans
            .iter()
            .filter_map(|s| s.experiment.map(|e| pending.strings.resolve(e)))
            .collect();
        assert_eq!(
            named,
            ["api:error=1"],
            "pending spans keep their experiment"
        );
        b.finish_idle(u64::MAX);
        let taken = b.take_set_aside();
        assert_eq!(taken.len(), 3);
        assert!(taken.spans.iter().all(|s| s.trace_id == spans[3].trace_id));
        let named: Vec<_> = taken
            .spans
            .iter()
            .filter_map(|s| s.experiment.map(|e| taken.strings.resolve(e)))
            .collect();
        assert_eq!(named, ["api:error=1"]);
        assert_eq!(b.take_set_aside().len(), 0, "handed out once");
        assert_eq!(b.finish(), aside);
        let all = build_with(&spans, BuildOptions::learning_experiments());
        assert_eq!((all.quality.traces, all.quality.experiment_traces), (2, 0));
        let v = all.view();
        let e = v.edge("web GET /", "api get").expect("both calls");
        assert_eq!((e.calls, e.failed), (2, 1));
        // The counts merge.
        let mut twice = aside.clone();
        twice.merge(&aside);
        assert_eq!(twice.quality.experiment_traces, 2);
    }

    #[test]
    fn a_consumer_linked_from_its_own_trace_is_the_producers_callee_in_either_order() {
        use SpanKind::*;
        let mut producer = span(1, 2, Some(1), "shop", "publish", Producer, 10, 11);
        producer.peer = Some("orders".into());
        // The same without a destination attribute: linked all the same.
        let nameless = span(1, 2, Some(1), "shop", "publish", Producer, 10, 11);
        let send = vec![span(1, 1, None, "shop", "POST /", Server, 0, 20), producer];
        let send_nameless = vec![send[0].clone(), nameless];
        let mut consumer = span(2, 7, None, "mail", "orders process", Consumer, 30, 40);
        consumer.link = Some(([1; 16], [2; 8]));
        let receive = vec![consumer];
        for (first, second) in [
            (&send, &receive),
            (&receive, &send),
            (&send_nameless, &receive),
            (&receive, &send_nameless),
        ] {
            // A window of one span: each trace is folded before the other arrives.
            let mut b = ModelBuilder::new(BuildOptions {
                trace_window: 1,
                ..BuildOptions::default()
            });
            for part in [first, second] {
                let mut batch = SpanBatch::new();
                for s in part.iter() {
                    batch.push_owned(s);
                }
                b.add_batch(&batch);
                // Push the first trace out before the second comes.
                let mut filler = SpanBatch::new();
                filler.push_owned(&span(9, 9, None, "other", "tick", Server, 0, 1));
                b.add_batch(&filler);
            }
            let m = b.finish();
            assert_eq!(m.links.len(), 1);
            assert_eq!(m.quality.links_unmatched, 0);
            let v = m.view();
            let e = v
                .edge("shop POST /", "mail orders process")
                .expect("the linked call");
            assert_eq!((e.calls, e.mode), (1, Mode::Asynchronous));
            assert!(
                v.node("orders").is_none() && v.node("publish").is_none(),
                "no virtual queue: {:?}",
                v.nodes
            );
            assert_eq!(m.quality.clients_without_peer, 0);
            assert_eq!(v.calls_to_instrumented_without_server, 0);
            assert!(!v.node("mail orders process").unwrap().endpoint);
        }
        // A consumer whose producer never comes: counted, on its own.
        let m = {
            let mut batch = SpanBatch::new();
            batch.push_owned(&receive[0]);
            let mut b = ModelBuilder::default();
            b.add_batch(&batch);
            b.finish()
        };
        assert_eq!(m.quality.links_unmatched, 1);
        assert!(m.links.is_empty());
    }

    #[test]
    fn client_server_pairs_make_edges_and_leaf_clients_virtual_nodes() {
        use SpanKind::*;
        let mut db = span(1, 4, Some(3), "cart", "SELECT", Client, 30, 40);
        db.peer = Some("postgres".into());
        let spans = vec![
            span(1, 1, None, "frontend", "GET /", Server, 0, 100),
            span(1, 2, Some(1), "frontend", "GET cart", Client, 10, 90),
            span(1, 3, Some(2), "cart", "GetCart", Server, 20, 80),
            db,
        ];
        let m = build(&spans);
        assert_eq!(
            edge_list(&m),
            vec![
                ("cart GetCart".into(), "postgres".into(), 1),
                ("frontend GET /".into(), "cart GetCart".into(), 1),
            ]
        );
        let endpoints: Vec<&str> = m
            .nodes
            .iter()
            .filter(|n| n.endpoint)
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(endpoints, vec!["frontend GET /"]);
        assert!(m.nodes.iter().any(|n| n.id == "postgres" && n.is_virtual));
        // The call's duration is the client's view (80 ns), not the server's (60 ns).
        let e = &m.edges[1];
        assert_eq!(e.stats.duration_ns().max(), Some(80.0));
    }

    #[test]
    fn a_client_to_a_known_service_without_server_is_a_failed_call_not_a_virtual_node() {
        use SpanKind::*;
        let mut ok = span(1, 2, Some(1), "checkout", "POST /pay", Client, 1, 9);
        ok.peer = Some("payment".into());
        let mut refused = span(2, 2, Some(1), "checkout", "POST /pay", Client, 1, 2);
        refused.peer = Some("payment.prod.svc.cluster.local:8080".into());
        refused.status = StatusCode::Error as u8;
        let spans = vec![
            span(1, 1, None, "checkout", "POST /checkout", Server, 0, 10),
            ok,
            span(1, 3, Some(2), "payment", "Charge", Server, 2, 8),
            span(2, 1, None, "checkout", "POST /checkout", Server, 0, 10),
            refused,
        ];
        let m = build(&spans);
        assert_eq!(
            edge_list(&m),
            vec![("checkout POST /checkout".into(), "payment Charge".into(), 2)]
        );
        assert_eq!(m.edges[0].attempt_errors, 1);
        assert!(!m.nodes.iter().any(|n| n.is_virtual));
    }

    #[test]
    fn a_peer_named_after_its_own_service_is_a_virtual_node_not_a_self_call() {
        use SpanKind::*;
        let mut q = span(1, 2, Some(1), "auth", "select-token", Client, 1, 2);
        q.peer = Some("auth".into());
        let m = build(&[span(1, 1, None, "auth", "POST /token", Server, 0, 10), q]);
        assert_eq!(
            edge_list(&m),
            vec![("auth POST /token".into(), "auth".into(), 1)]
        );
        assert_eq!(m.calls_to_instrumented_without_server, 0);
    }

    #[test]
    fn without_kinds_a_service_change_is_an_entry() {
        use SpanKind::Unspecified as U;
        let spans = vec![
            span(1, 1, None, "a", "root", U, 0, 10),
            span(1, 2, Some(1), "a", "inner", U, 1, 9),
            span(1, 3, Some(2), "b", "handle", U, 2, 8),
            span(1, 4, Some(3), "b", "helper", U, 3, 7),
        ];
        let m = build(&spans);
        assert_eq!(edge_list(&m), vec![("a root".into(), "b handle".into(), 1)]);
        assert_eq!(m.nodes.len(), 2);
    }

    #[test]
    fn wrapper_clients_do_not_become_virtual_nodes() {
        use SpanKind::*;
        let mut outer = span(1, 2, Some(1), "a", "call b", Client, 1, 9);
        outer.peer = Some("b".into());
        let mut inner = span(1, 3, Some(2), "a", "HTTP POST", Client, 2, 8);
        inner.peer = Some("b".into());
        let spans = vec![
            span(1, 1, None, "a", "root", Server, 0, 10),
            outer,
            inner,
            span(1, 4, Some(3), "b", "handle", Server, 3, 7),
        ];
        let m = build(&spans);
        assert_eq!(edge_list(&m), vec![("a root".into(), "b handle".into(), 1)]);
    }

    #[test]
    fn broken_traces_are_counted_not_guessed() {
        use SpanKind::*;
        let spans = vec![
            // Missing parent: counted, not an endpoint.
            span(1, 1, Some(9), "a", "orphan", Server, 0, 10),
            // Duplicate report of the same span: dropped.
            span(2, 1, None, "a", "root", Server, 0, 10),
            span(2, 1, None, "a", "root", Server, 0, 10),
            // End before start.
            span(3, 1, None, "a", "root", Server, 10, 0),
            // A two-span cycle.
            span(4, 1, Some(2), "a", "x", Server, 0, 10),
            span(4, 2, Some(1), "b", "y", Server, 1, 9),
            // Clock skew: the server starts before its client.
            span(5, 1, None, "a", "root", Server, 100, 200),
            span(5, 2, Some(1), "a", "call", Client, 110, 190),
            span(5, 3, Some(2), "b", "y", Server, 50, 150),
        ];
        let m = build(&spans);
        let q = &m.quality;
        assert_eq!(q.traces, 5);
        assert_eq!(q.missing_parents, 1);
        assert_eq!(q.duplicate_spans, 1);
        assert_eq!(q.end_before_start, 1);
        assert_eq!(q.cycles, 1);
        assert_eq!(q.clock_skew, 1);
        let orphan = m.nodes.iter().find(|n| n.id == "a orphan").unwrap();
        assert!(!orphan.endpoint);
    }

    /// Traces of three spans each (root, client call, server), trace `t` in service pair `t % 3`,
    /// interleaved so that a checkpoint falls in the middle of open traces.
    fn interleaved(traces: u8) -> Vec<OwnedSpan> {
        use SpanKind::*;
        let mut out = Vec::new();
        for t in 1..=traces {
            let callee = ["b", "c", "d"][t as usize % 3];
            let mut root: OwnedSpan = span(t, 1, None, "a", "root", Server, 0, 10 + t as i64);
            root.status = (t % 4 == 0) as u8 * 2;
            let mut call = span(t, 2, Some(1), "a", "call", Client, 1, 9);
            call.peer = Some(callee.into());
            // Server span first, then root, then client: each trace's spans spread over about
            // ten places of the stream, mixed with those of the traces around it.
            let key = |k: usize| t as usize * 3 + k * 5;
            out.push((key(2), root));
            out.push((key(1), call));
            out.push((key(0), span(t, 3, Some(2), callee, "y", Server, 2, 8)));
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn a_checkpoint_and_its_pending_spans_resume_to_the_same_model() {
        let spans = interleaved(40);
        assert_eq!(spans.len(), 120);
        let feed = |b: &mut ModelBuilder, spans: &[OwnedSpan]| {
            for s in spans {
                let mut batch = SpanBatch::new();
                batch.push_owned(s);
                b.add_batch(&batch);
            }
        };
        let opts = BuildOptions {
            trace_window: 1000,
            ..BuildOptions::default()
        };
        let mut whole = ModelBuilder::new(opts.clone());
        feed(&mut whole, &spans);
        let whole = whole.finish();

        let mut first = ModelBuilder::new(opts.clone());
        feed(&mut first, &spans[..70]);
        // Fold what has been quiet for 20 spans, then checkpoint.
        let folded = first.finish_idle(first.seen() - 20);
        assert!(folded > 0 && first.buffered() > 0);
        let base = first.model();
        assert_eq!(base.quality.spans + first.buffered() as u64, 70);
        let pending = first.pending();
        assert_eq!(pending.len(), first.buffered());

        let mut resumed = ModelBuilder::new(opts);
        resumed.add_batch(&pending);
        feed(&mut resumed, &spans[70..]);
        let mut merged = base;
        merged.merge(&resumed.finish());
        assert_eq!(merged, whole);
    }

    #[test]
    fn traces_split_across_batches_and_windows_are_joined() {
        use SpanKind::*;
        let a = span(1, 1, None, "a", "root", Server, 0, 10);
        let b = span(1, 2, Some(1), "a", "call", Client, 1, 9);
        let c = span(1, 3, Some(2), "b", "y", Server, 2, 8);
        let other = span(2, 1, None, "z", "root", Server, 0, 1);
        let mut builder = ModelBuilder::new(BuildOptions {
            trace_window: 3,
            ..BuildOptions::default()
        });
        for s in [&c, &other, &a, &b] {
            let mut batch = SpanBatch::new();
            batch.push_owned(s);
            builder.add_batch(&batch);
        }
        let m = builder.finish().view();
        assert_eq!(m.quality.missing_parents, 0);
        assert_eq!(edge_list(&m), vec![("a root".into(), "b y".into(), 1)]);
    }

    #[test]
    fn a_span_later_than_the_window_is_a_counted_orphan_not_a_guess() {
        use SpanKind::*;
        let root = span(1, 1, None, "a", "root", Server, 0, 10);
        let late = span(1, 2, Some(1), "b", "y", Server, 2, 8);
        let others: Vec<OwnedSpan> = (0..5u8)
            .map(|t| span(10 + t, 1, None, "z", "root", Server, 0, 1))
            .collect();
        let mut builder = ModelBuilder::new(BuildOptions {
            trace_window: 3,
            ..BuildOptions::default()
        });
        let mut feed = |s: &OwnedSpan| {
            let mut batch = SpanBatch::new();
            batch.push_owned(s);
            builder.add_batch(&batch);
        };
        feed(&root);
        others.iter().for_each(&mut feed);
        feed(&late);
        let m = builder.finish().view();
        assert_eq!(m.quality.missing_parents, 1);
        assert_eq!(m.quality.traces, 7);
        // Counted as a trace learned in two parts.
        assert_eq!(m.quality.traces_split, 1);
        assert!(m.edges.is_empty());
        assert!(!m.nodes.iter().find(|n| n.id == "b y").unwrap().endpoint);
    }

    #[test]
    fn traces_longer_than_a_slab_block_keep_every_span() {
        use SpanKind::*;
        // Two interleaved traces of 5 * BLOCK + 1 spans each (more than a scanned index takes),
        // one span per batch.
        let n = 5 * BLOCK as u8 + 1;
        assert!(usize::from(n) > SCAN_INDEX_MAX);
        let mut builder = ModelBuilder::default();
        for i in 0..n {
            for t in [1u8, 2] {
                let s = if i == 0 {
                    span(t, 1, None, "a", "root", Server, 0, 100)
                } else {
                    span(t, i + 1, Some(i), "a", "step", Internal, 0, 1)
                };
                let mut batch = SpanBatch::new();
                batch.push_owned(&s);
                builder.add_batch(&batch);
            }
        }
        let m = builder.finish().view();
        assert_eq!(m.quality.traces, 2);
        assert_eq!(m.quality.spans, 2 * u64::from(n));
        assert_eq!(m.quality.missing_parents, 0);
        assert_eq!(m.nodes.len(), 1);
        assert_eq!(m.nodes[0].invocations, 2);
    }

    const MS: i64 = 1_000_000;

    #[allow(clippy::too_many_arguments)]
    fn at(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        service: &str,
        name: &str,
        kind: SpanKind,
        start_ms: i64,
        end_ms: i64,
        failed: bool,
    ) -> OwnedSpan {
        let mut s = span(
            trace,
            id,
            parent,
            service,
            name,
            kind,
            start_ms * MS,
            end_ms * MS,
        );
        if failed {
            s.status = StatusCode::Error as u8;
        }
        s
    }

    #[test]
    fn retries_self_time_and_gaps() {
        use SpanKind::*;
        let m = build(&[
            at(1, 1, None, "a", "op", Server, 0, 100, false),
            at(1, 2, Some(1), "a", "get", Client, 10, 20, true),
            at(1, 3, Some(2), "b", "get", Server, 11, 19, true),
            at(1, 4, Some(1), "a", "get", Client, 25, 40, false),
            at(1, 5, Some(4), "b", "get", Server, 27, 39, false),
        ]);
        let e = m.edge("a op", "b get").unwrap();
        assert_eq!(
            (e.attempts, e.attempt_errors, e.calls, e.failed),
            (2, 1, 1, 0)
        );
        assert_eq!(e.retries, Some(1));
        assert_eq!(e.calls_per_invocation, vec![0, 1]);
        assert_eq!(e.mode, Mode::Sequential);
        assert!(e.timeout.is_none());
        // Gaps: 10 - 8 = 2 ms and 15 - 12 = 3 ms.
        assert_eq!(e.stats.gap_ns.min(), Some(2e6));
        assert_eq!(e.stats.gap_ns.max(), Some(3e6));
        // Self time: 100 - (10 + 15) = 75 ms.
        let a = m.node("a op").unwrap();
        assert_eq!(a.self_ns.max(), Some(75e6));
        // b's first invocation failed on its own: no call of its failed.
        let b = m.node("b get").unwrap();
        assert_eq!(b.p_error.evidence, 2);
    }

    #[test]
    fn a_refused_attempt_and_its_answered_retry_are_one_call() {
        use SpanKind::*;
        let mut refused = at(1, 2, Some(1), "a", "get", Client, 10, 12, true);
        refused.peer = Some("b".into());
        let mut answered = at(1, 4, Some(1), "a", "get", Client, 20, 40, false);
        answered.peer = Some("b".into());
        let m = build(&[
            at(1, 1, None, "a", "op", Server, 0, 100, false),
            refused,
            answered,
            at(1, 5, Some(4), "b", "get", Server, 21, 39, false),
        ]);
        let e = m.edge("a op", "b get").unwrap();
        assert_eq!(
            (e.attempts, e.attempt_errors, e.calls, e.failed),
            (2, 1, 1, 0)
        );
        assert_eq!(e.retries, Some(1));
        assert_eq!(e.calls_per_invocation, vec![0, 1]);
        // The refusal is how long a refused call takes; the wait before the retry, 8 ms.
        assert_eq!(e.stats.unanswered_ns.max(), Some(2e6));
        assert_eq!(e.stats.backoff_ns.max(), Some(8e6));
        // No call went elsewhere, and a's invocation had no failed call.
        assert_eq!(edge_list(&m).len(), 1, "{:?}", edge_list(&m));
        assert_eq!(m.node("a op").unwrap().p_error.evidence, 1);
    }

    #[test]
    fn overlapping_calls_are_parallel_and_their_union_is_busy_time() {
        use SpanKind::*;
        let m = build(&[
            at(1, 1, None, "a", "op", Server, 0, 100, false),
            at(1, 2, Some(1), "a", "b", Client, 10, 50, false),
            at(1, 3, Some(2), "b", "x", Server, 11, 49, false),
            at(1, 4, Some(1), "a", "c", Client, 12, 60, false),
            at(1, 5, Some(4), "c", "y", Server, 13, 59, false),
            at(1, 6, Some(1), "a", "c", Client, 70, 80, false),
            at(1, 7, Some(6), "c", "y", Server, 71, 79, false),
        ]);
        assert_eq!(m.edge("a op", "b x").unwrap().mode, Mode::Parallel);
        let c = m.edge("a op", "c y").unwrap();
        // One of its two calls overlapped: not a majority.
        assert_eq!(c.stats.parallel, 1);
        assert_eq!(c.calls_per_invocation, vec![0, 0, 1]);
        assert_eq!(c.retries, None);
        // Busy: [10, 60] and [70, 80]: self time 100 - 60 = 40 ms.
        assert_eq!(m.node("a op").unwrap().self_ns.max(), Some(40e6));
    }

    #[test]
    fn propagation_evidence_and_timeouts() {
        use SpanKind::*;
        let mut spans = Vec::new();
        for t in 0..4u8 {
            // The call is cut at 20 ms while its server runs on; the caller fails in half the
            // traces.
            spans.push(at(t, 1, None, "a", "op", Server, 0, 100, t % 2 == 0));
            spans.push(at(t, 2, Some(1), "a", "get", Client, 10, 30, true));
            spans.push(at(t, 3, Some(2), "b", "get", Server, 11, 80, false));
        }
        let m = build(&spans);
        let e = m.edge("a op", "b get").unwrap();
        assert_eq!((e.stats.propagated, e.stats.survived), (2, 2));
        assert_eq!(e.p_propagate.evidence, 4);
        let t = e.timeout.as_ref().unwrap();
        assert_eq!(t.seen, crate::TimeoutEvidence::Cut);
        assert!((t.median_ms - 20.0).abs() < 0.3, "{t:?}");
        assert_eq!(e.retries, Some(0));
        // a never had a clean invocation.
        assert_eq!(m.node("a op").unwrap().p_error.evidence, 0);
    }

    #[test]
    fn a_client_span_of_no_duration_does_not_hand_its_servers_time_to_its_caller() {
        use SpanKind::*;
        // a op (30 ms) calls b through a client span that ends as it starts; b took 10 ms.
        let spans = [
            at(1, 1, None, "a", "op", Server, 0, 30, false),
            at(1, 2, Some(1), "a", "get", Client, 5, 5, false),
            at(1, 3, Some(2), "b", "get", Server, 6, 16, false),
        ];
        let m = build(&spans);
        assert_eq!(m.node("a op").unwrap().self_ns.max(), Some(20e6));
        let e = m.edge("a op", "b get").unwrap();
        assert!((e.stats.ok_ns.max().unwrap() - 10e6).abs() < 0.3e6, "{e:?}");
    }

    #[test]
    fn a_server_span_of_no_duration_gives_no_gap_and_no_self_time() {
        use SpanKind::*;
        // Two calls of 10 ms into b: one whose server span took 9 ms, one whose server span
        // ends as it starts (broken instrumentation).
        let mut spans = Vec::new();
        for (t, server_ms) in [(1u8, 9i64), (2, 0)] {
            spans.push(at(t, 1, None, "a", "op", Server, 0, 30, false));
            spans.push(at(t, 2, Some(1), "a", "get", Client, 5, 15, false));
            spans.push(at(
                t,
                3,
                Some(2),
                "b",
                "get",
                Server,
                5,
                5 + server_ms,
                false,
            ));
        }
        let m = build(&spans);
        let e = m.edge("a op", "b get").unwrap();
        // One gap (1 ms), not a second one of 10 ms.
        assert_eq!(e.stats.gap_ns.count(), 1);
        let b = m.node("b get").unwrap();
        assert_eq!((b.invocations, b.self_ns.count()), (2, 1));
        assert_eq!(b.self_ns.max(), Some(9e6));
    }

    #[test]
    fn skewed_clocks_and_servers_outliving_their_callers_invent_no_timeout() {
        use SpanKind::*;
        // Server spans that end a little after their failed client span (their host's clock
        // 0.5 ms ahead), beside successful calls of every length: no timeout.
        let mut spans = Vec::new();
        for t in 0..40u8 {
            let len = 5 + i64::from(t);
            let failed = t % 3 == 0;
            spans.push(at(t, 1, None, "a", "op", Server, 0, 100, false));
            spans.push(at(t, 2, Some(1), "a", "get", Client, 10, 10 + len, failed));
            let mut server = at(t, 3, Some(2), "b", "get", Server, 10, 10 + len, failed);
            server.start_ns += MS / 2;
            server.end_ns += MS / 2;
            spans.push(server);
        }
        let m = build(&spans);
        assert!(m.edge("a op", "b get").unwrap().timeout.is_none());
        // Servers that go on 20 ms after every answer (work after the reply): their failed
        // calls are outlived by successful ones, so no timeout either.
        for s in spans.iter_mut().filter(|s| s.service == "b") {
            s.end_ns += 20 * MS;
        }
        let m = build(&spans);
        assert!(m.edge("a op", "b get").unwrap().timeout.is_none());
        // A real timeout beside a clock 3 ms off: successes outlived by about 3 ms, the calls
        // cut at 50 ms by 33 ms (their servers run to 80 ms). The timeout stands.
        let mut spans = Vec::new();
        for t in 0..60u8 {
            let cut = t % 3 == 0;
            let (client_end, server_end) = if cut {
                (60, 90)
            } else {
                let e = 15 + i64::from(t % 30);
                (e, e)
            };
            spans.push(at(t, 1, None, "a", "op", Server, 0, 100, false));
            spans.push(at(t, 2, Some(1), "a", "get", Client, 10, client_end, cut));
            let mut server = at(t, 3, Some(2), "b", "get", Server, 10, server_end, false);
            server.start_ns += 3 * MS;
            server.end_ns += 3 * MS;
            spans.push(server);
        }
        let m = build(&spans);
        let t = m.edge("a op", "b get").unwrap().timeout.clone();
        assert!(
            t.as_ref().is_some_and(|t| (t.median_ms - 50.0).abs() < 1.0),
            "{t:?}"
        );
    }

    #[test]
    fn a_consumer_without_parent_is_not_an_endpoint() {
        use SpanKind::*;
        let m = build(&[
            at(
                1,
                1,
                None,
                "worker",
                "orders process",
                Consumer,
                0,
                5,
                false,
            ),
            at(2, 1, None, "web", "GET /", Server, 0, 5, false),
        ]);
        assert!(!m.node("worker orders process").unwrap().endpoint);
        assert!(m.node("web GET /").unwrap().endpoint);
        assert!(m.node("worker orders process").unwrap().traffic.is_none());
    }

    #[test]
    fn messages_are_asynchronous() {
        use SpanKind::*;
        let mut send = at(1, 2, Some(1), "a", "publish", Producer, 10, 11, false);
        send.peer = Some("orders".into());
        let m = build(&[
            at(1, 1, None, "a", "op", Server, 0, 20, false),
            send,
            at(1, 3, Some(2), "b", "consume", Consumer, 40, 60, false),
        ]);
        let e = m.edge("a op", "b consume").unwrap();
        assert_eq!(e.mode, Mode::Asynchronous);
        assert!(e.stats.gap_ns.is_empty());
        assert!(!m.node("b consume").unwrap().endpoint);
        // The consumer's time is not the caller's: self time 20 - 1 = 19 ms.
        assert_eq!(m.node("a op").unwrap().self_ns.max(), Some(19e6));
    }

    /// A model of one-span traces (`web GET /`, 1 ms each) starting at these seconds.
    fn model_of(starts: &[(u8, i64)]) -> Model {
        let spans: Vec<OwnedSpan> = starts
            .iter()
            .map(|&(t, s)| {
                let start = s * 1_000_000_000;
                span(
                    t,
                    t,
                    None,
                    "web",
                    "GET /",
                    SpanKind::Server,
                    start,
                    start + MS,
                )
            })
            .collect();
        build_with(&spans, BuildOptions::default())
    }

    #[test]
    fn captures_hours_apart_count_only_their_own_time() {
        // Two one-minute captures a day apart, 10 requests each (out of order, too).
        let day = 86_400;
        let mut starts: Vec<(u8, i64)> = (0..10).map(|i| (i, 1000 + 6 * i64::from(i))).collect();
        starts.extend((10..20).map(|i| (i, day + 6 * i64::from(i - 10))));
        starts.swap(3, 15);
        let m = model_of(&starts);
        assert_eq!(m.active.len(), 2, "{:?}", m.active);
        let t = m.traffic_seconds().unwrap();
        assert!((t - 108.002).abs() < 0.01, "{t}");
        let rate = m
            .view()
            .node("web GET /")
            .unwrap()
            .traffic
            .as_ref()
            .unwrap()
            .per_second;
        assert!((rate - 20.0 / t).abs() < 1e-9, "{rate}");

        // Merging the two captures learned apart gives the same stretches, in either order.
        let (a, b) = starts.split_at(10);
        let (mut ab, mut ba) = (model_of(a), model_of(b));
        ab.merge(&model_of(b));
        ba.merge(&model_of(a));
        assert_eq!(ab.active, m.active);
        assert_eq!(ba.active, m.active);

        // Gaps shorter than ten minutes are quiet traffic, not a new capture.
        let m = model_of(&[(1, 0), (2, 300), (3, 600)]);
        assert_eq!(m.active.len(), 1);
        // A model written before stretches were kept: its window is one stretch.
        let mut old = model_of(&[(1, 0), (2, 300)]);
        old.active.clear();
        assert!((old.traffic_seconds().unwrap() - 300.001).abs() < 1e-6);
        old.merge(&model_of(&[(3, day)]));
        assert_eq!(old.active.len(), 2);
    }
}
