//! The learned model as data: nodes, edges and their statistics; its versioned file; and the
//! graph view other tools read (`augur graph --format json`).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sketch::LogSketch;
use crate::view::{ms, Interval, Mode, View};
use crate::ModelError;

/// The model file's schema version; a file with another version is refused, not guessed at.
/// Version 3 added [`CallStats::longest_under_fault_ns`]; version 2 files (without it) are read
/// as version 3.
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest schema version this augur reads.
pub const OLDEST_READABLE_VERSION: u32 = 2;

/// The largest count a model file may hold (2^53: nine thousand million million spans; counts
/// beyond it are a corrupt file, and refusing them keeps arithmetic on counts from overflowing).
pub const MAX_COUNT: u64 = 1 << 53;

/// What the traces looked like: how many, and what was wrong with them. Every count is of
/// something augur handled in a stated way rather than guessed around.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuality {
    /// Spans read into the model: folded in, or set aside as an experiment's (those are
    /// counted again in `experiment_spans`).
    pub spans: u64,
    /// Traces (a trace split by the window counts once per part).
    pub traces: u64,
    /// Spans whose parent id is not in their trace: kept as entries of their service, never
    /// promoted to endpoints.
    pub missing_parents: u64,
    /// Second reports of a span (same id, name, service and times): dropped.
    pub duplicate_spans: u64,
    /// Span ids used by two different spans of a trace: children attach to the first.
    pub conflicting_span_ids: u64,
    /// Spans that end before they start: their duration counts as 0.
    pub end_before_start: u64,
    /// Entry spans that start before their parent in another service (clocks disagree): kept,
    /// with the caller's view of the call's duration where there is a client span.
    pub clock_skew: u64,
    /// Parent links that formed a cycle: cut at the earliest span.
    pub cycles: u64,
    /// CLIENT/PRODUCER spans that reached nothing instrumented and name no peer: no edge.
    pub clients_without_peer: u64,
    /// Traces finished early because too many spans were buffered (raise `--trace-window`).
    pub traces_cut_by_window: u64,
    /// Traces whose spans kept coming after the trace was finished (idle for the window, or
    /// its id used again later): learned as separate parts. Absent from files when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub traces_split: u64,
    /// Consumer spans linked to a producer span that never came (not traced, or outside the
    /// input): their message is not placed on a producer's call.
    #[serde(default)]
    pub links_unmatched: u64,
    /// Traces left out because a span carried `augur.experiment` (recorded while an
    /// experiment's fault was active: `augur outcome` learns from them, normal learning does
    /// not; [`crate::ExperimentTraces`]).
    #[serde(default)]
    pub experiment_traces: u64,
    /// Their spans (counted in `spans` too, as read).
    #[serde(default)]
    pub experiment_spans: u64,
}

impl TraceQuality {
    /// Adds `o`'s counts.
    pub fn merge(&mut self, o: &TraceQuality) {
        self.spans += o.spans;
        self.traces += o.traces;
        self.missing_parents += o.missing_parents;
        self.duplicate_spans += o.duplicate_spans;
        self.conflicting_span_ids += o.conflicting_span_ids;
        self.end_before_start += o.end_before_start;
        self.clock_skew += o.clock_skew;
        self.cycles += o.cycles;
        self.clients_without_peer += o.clients_without_peer;
        self.traces_cut_by_window += o.traces_cut_by_window;
        self.traces_split += o.traces_split;
        self.links_unmatched += o.links_unmatched;
        self.experiment_traces += o.experiment_traces;
        self.experiment_spans += o.experiment_spans;
    }
}

/// The time the model's spans cover, nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The earliest span start.
    pub first_ns: i64,
    /// The latest span end.
    pub last_ns: i64,
}

/// Spans further apart than this (with none between) are separate stretches of traffic: a
/// capture taken hours after another is not one long quiet period.
pub const TRAFFIC_GAP_NS: i64 = 600_000_000_000;

/// Adds a span's time to the stretches of traffic (sorted, disjoint, more than
/// [`TRAFFIC_GAP_NS`] apart), merging the stretches it joins; returns the index of its stretch.
pub fn add_active(stretches: &mut Vec<Window>, w: Window) -> usize {
    let i = stretches.partition_point(|s| s.last_ns.saturating_add(TRAFFIC_GAP_NS) < w.first_ns);
    let mut merged = w;
    let mut j = i;
    while j < stretches.len()
        && stretches[j].first_ns.saturating_sub(TRAFFIC_GAP_NS) <= merged.last_ns
    {
        merged = merged.union(stretches[j]);
        j += 1;
    }
    stretches.splice(i..j, [merged]);
    i
}

impl Window {
    /// The window covering both.
    pub fn union(self, o: Window) -> Window {
        Window {
            first_ns: self.first_ns.min(o.first_ns),
            last_ns: self.last_ns.max(o.last_ns),
        }
    }

    /// Its length in seconds (at least a millisecond, so rates stay finite).
    pub fn seconds(self) -> f64 {
        (self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9).max(1e-3)
    }
}

/// What was counted of one instrumented operation: a service's entry point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// `"<service> <operation>"`.
    pub id: String,
    /// The service.
    pub service: String,
    /// The entry span name.
    pub operation: String,
    /// Entry spans of this operation.
    pub invocations: u64,
    /// Of those, with error status.
    pub errors: u64,
    /// Of those, trace roots (user-facing requests).
    pub roots: u64,
    /// Entry span durations, nanoseconds.
    pub duration_ns: LogSketch,
    /// Self time: duration minus the union of the invocation's outgoing call intervals.
    pub self_ns: LogSketch,
    /// Invocations in which no call failed (after its retries).
    pub clean: u64,
    /// Of those, invocations that failed anyway: the operation's own (spontaneous) errors.
    pub clean_errors: u64,
    /// Invocations whose status the trace format did not record (a span-table CSV without a
    /// status column): counted in `invocations`, never in `clean` or `errors`. An operation
    /// with no recorded status has no learned own error rate (docs/MODEL.md).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unrecorded: u64,
}

/// Counts of how a caller operation calls one callee, per caller invocation: the sufficient
/// statistics of a call site. Attempts are spans (each retry is one); a *call* is an attempt and
/// the retries that followed it (same callee, same client span name, each starting after the
/// previous attempt failed and ended).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallStats {
    /// Attempts (client spans, or entry spans where the caller has none).
    pub attempts: u64,
    /// Attempts that failed as the caller saw them.
    pub attempt_errors: u64,
    /// Calls (an attempt with its retries).
    pub calls: u64,
    /// Calls whose last attempt failed.
    pub failed: u64,
    /// Failed calls whose caller invocation failed, where no other call of that invocation
    /// failed (the clean evidence of propagation).
    pub propagated: u64,
    /// Failed calls whose caller invocation succeeded: the failure was absorbed (a fallback).
    pub survived: u64,
    /// `per_invocation[k]`: caller invocations that made this call `k` times (`k >= 1`; index 0
    /// is unused: invocations without the call are the caller's invocations minus the rest).
    /// The last index also counts invocations with more calls than [`MAX_PER_INVOCATION`].
    pub per_invocation: Vec<u64>,
    /// `retries[r]`: calls with `r` retries (capped like `per_invocation`).
    pub retries: Vec<u64>,
    /// `failed_after[r]`: calls that failed after `r` retries (capped like `retries`): with
    /// `retries`, how often a failed attempt was retried at each step
    /// ([`CallStats::retry_steps`]), where one budget would miss two call sites merged into one
    /// (one retrying, one not). Absent from files written before it was kept (and when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_after: Vec<u64>,
    /// Calls that overlapped another call of the same invocation.
    pub parallel: u64,
    /// Attempts made through PRODUCER spans (messages: the caller does not wait).
    pub asynchronous: u64,
    /// Durations of attempts that succeeded, as the caller saw them, nanoseconds.
    pub ok_ns: LogSketch,
    /// Durations of attempts that failed, as the caller saw them, nanoseconds.
    pub failed_ns: LogSketch,
    /// Client duration minus server duration where both spans exist: network and queueing.
    pub gap_ns: LogSketch,
    /// Durations of client spans that ended (failed) while their server span ran on: a timeout
    /// cut them.
    pub cut_ns: LogSketch,
    /// How long the server span ran on after a successful attempt ended (as `cut_overrun_ns`
    /// for failed ones), nanoseconds: skewed clocks or work after answering, so failed attempts
    /// outlived as often and by as much are no timeout's cuts. Absent from files when empty.
    #[serde(default, skip_serializing_if = "LogSketch::is_empty")]
    pub outlived_ok_ns: LogSketch,
    /// How long the server span ran on after each cut attempt ended, nanoseconds (the cuts of
    /// `cut_ns`). Absent from files when empty.
    #[serde(default, skip_serializing_if = "LogSketch::is_empty")]
    pub cut_overrun_ns: LogSketch,
    /// By how much the server span outlasted a successful attempt as its caller saw it
    /// (server duration minus client duration, where positive), nanoseconds: the server
    /// answered before its span ended (work after answering, or a child it did not wait for
    /// to answer). Durations need no common clock, so skew plays no part. The simulator gives
    /// such a share of successful attempts what the caller waited, not the server's whole span.
    /// Absent from files when empty (as in files written before it was kept).
    #[serde(default, skip_serializing_if = "LogSketch::is_empty")]
    pub server_longer_ns: LogSketch,
    /// Durations of failed attempts that reached no server span (refused, or given up on).
    pub unanswered_ns: LogSketch,
    /// The longest attempt seen at this call site while an experiment's fault was active
    /// (nanoseconds; 0: none). Only an experiment's evidence sets it
    /// ([`Model::evidence_under_fault`]): a call that lasted this long was not cut, so a timeout,
    /// if the call has one, is longer. Absent from files when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub longest_under_fault_ns: u64,
    /// Over every call, how long after its caller's invocation began it started (nanoseconds,
    /// summed): the mean orders a caller's call sites in time, so that a failure that stops the
    /// caller stops only the calls after it ([`CallStats::mean_start_offset_ns`]). Absent from
    /// files written before it was kept (and when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_offset_ns: u64,
    /// How long the caller waited between a failed attempt's end and its retry (back-off).
    /// Absent from files written before it was kept (and when empty).
    #[serde(default, skip_serializing_if = "LogSketch::is_empty")]
    pub backoff_ns: LogSketch,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Histogram indices above this are pooled into the last one.
pub const MAX_PER_INVOCATION: usize = 256;

pub(crate) fn bump(hist: &mut Vec<u64>, k: usize, n: u64) {
    let k = k.min(MAX_PER_INVOCATION);
    if hist.len() <= k {
        hist.resize(k + 1, 0);
    }
    hist[k] = hist[k].saturating_add(n);
}

fn merge_hist(into: &mut Vec<u64>, from: &[u64]) {
    for (k, &n) in from.iter().enumerate() {
        if n > 0 {
            bump(into, k, n);
        }
    }
}

impl CallStats {
    /// Adds every count of `o` (exact; saturating, so a corrupt input cannot overflow).
    pub fn merge(&mut self, o: &CallStats) {
        self.attempts = self.attempts.saturating_add(o.attempts);
        self.attempt_errors = self.attempt_errors.saturating_add(o.attempt_errors);
        self.calls = self.calls.saturating_add(o.calls);
        self.failed = self.failed.saturating_add(o.failed);
        self.propagated = self.propagated.saturating_add(o.propagated);
        self.survived = self.survived.saturating_add(o.survived);
        merge_hist(&mut self.per_invocation, &o.per_invocation);
        merge_hist(&mut self.retries, &o.retries);
        merge_hist(&mut self.failed_after, &o.failed_after);
        self.parallel = self.parallel.saturating_add(o.parallel);
        self.asynchronous = self.asynchronous.saturating_add(o.asynchronous);
        self.ok_ns.merge(&o.ok_ns);
        self.failed_ns.merge(&o.failed_ns);
        self.gap_ns.merge(&o.gap_ns);
        self.cut_ns.merge(&o.cut_ns);
        self.outlived_ok_ns.merge(&o.outlived_ok_ns);
        self.cut_overrun_ns.merge(&o.cut_overrun_ns);
        self.server_longer_ns.merge(&o.server_longer_ns);
        self.unanswered_ns.merge(&o.unanswered_ns);
        self.longest_under_fault_ns = self.longest_under_fault_ns.max(o.longest_under_fault_ns);
        self.start_offset_ns = self.start_offset_ns.saturating_add(o.start_offset_ns);
        self.backoff_ns.merge(&o.backoff_ns);
    }

    /// How long after its caller's invocation began a call here starts, on average
    /// (nanoseconds; `None` when no call was seen).
    pub fn mean_start_offset_ns(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.start_offset_ns as f64 / self.calls as f64)
    }

    /// Every attempt's duration.
    pub fn duration_ns(&self) -> LogSketch {
        let mut d = self.ok_ns.clone();
        d.merge(&self.failed_ns);
        d
    }

    /// Per retry step `k` (after the `k + 1`-th attempt of a call failed): (calls retried, calls
    /// whose attempt failed there), from `retries` and `failed_after`. Empty when `failed_after`
    /// is (files written before it was kept): the call site then has one retry budget, the most
    /// retries seen. A step where some failed calls were retried and some not is two call sites
    /// merged into one (or a retry policy with conditions): the simulator retries there with
    /// the chance learned ([`CallStats::retries_mixed`]).
    pub fn retry_steps(&self) -> Vec<(u64, u64)> {
        if self.failed_after.iter().all(|&n| n == 0) {
            return Vec::new();
        }
        let steps = self.retries.len().max(self.failed_after.len());
        let mut later: u64 = self.retries.iter().skip(1).sum();
        let mut out = Vec::with_capacity(steps);
        for k in 0..steps {
            let stopped = self.failed_after.get(k).copied().unwrap_or(0);
            out.push((later, later.saturating_add(stopped)));
            later = later.saturating_sub(self.retries.get(k + 1).copied().unwrap_or(0));
        }
        while out.last().is_some_and(|&(_, n)| n == 0) {
            out.pop();
        }
        out
    }

    /// Whether some failed calls were retried at a step where others were not: a call failed
    /// after fewer retries than the most seen here ([`CallStats::retry_steps`]).
    pub fn retries_mixed(&self) -> bool {
        self.retry_steps()
            .iter()
            .any(|&(retried, failed)| retried > 0 && retried < failed)
    }

    /// The longest attempt seen, nanoseconds (0 when none): successful or failed, and under an
    /// experiment's fault ([`CallStats::longest_under_fault_ns`]). A timeout, if the call has
    /// one that never cut it, is longer.
    pub fn longest_attempt_ns(&self) -> f64 {
        self.ok_ns
            .max()
            .unwrap_or(0.0)
            .max(self.failed_ns.max().unwrap_or(0.0))
            .max(self.longest_under_fault_ns as f64)
    }

    /// Caller invocations that made the call at least once.
    pub fn invocations_with_call(&self) -> u64 {
        self.per_invocation.iter().sum()
    }
}

/// A call site that reached an instrumented operation (an entry span below the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSite {
    /// Caller operation id.
    pub from: String,
    /// Callee operation id.
    pub to: String,
    /// Client span names that reached the callee, with how many attempts each (used to place
    /// calls that never arrived).
    pub client_names: std::collections::BTreeMap<String, u64>,
    /// What was counted.
    pub stats: CallStats,
}

/// Client calls that reached nothing instrumented, by caller, peer and client span name. Where
/// they went is decided when the model is read ([`Model::view`]): the service the peer names if
/// it is instrumented, else a virtual node. Kept unresolved so that models learned apart merge
/// to exactly the model learned at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unarrived {
    /// Caller operation id.
    pub from: String,
    /// The peer the client spans name.
    pub peer: String,
    /// The client span name.
    pub name: String,
    /// What was counted.
    pub stats: CallStats,
}

/// Messages sent by a caller's PRODUCER spans that were consumed in other traces, linked to
/// them (OTLP span links): they place the caller's calls to that peer on the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedCalls {
    /// Caller operation id.
    pub from: String,
    /// The peer the producer spans name (the queue).
    pub peer: String,
    /// The producer span name.
    pub name: String,
    /// The consumer operation id.
    pub to: String,
    /// Messages matched.
    pub messages: u64,
}

/// Calls to a peer that reached nothing instrumented whose spans marked the peer a database
/// (`db.system`) or a message queue (`messaging.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerKinds {
    /// The peer's name.
    pub peer: String,
    /// Attempts whose span carried `db.system`.
    pub database: u64,
    /// Attempts whose span carried `messaging.*`.
    pub messaging: u64,
}

/// The learned model: sufficient statistics only (counts and sketches), so models merge exactly.
/// Read it through [`Model::view`] (calls placed, behaviour and posteriors derived).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// [`SCHEMA_VERSION`] of the file.
    pub schema_version: u32,
    /// What the traces looked like.
    pub quality: TraceQuality,
    /// The time the spans cover (none for an empty model).
    pub window: Option<Window>,
    /// The stretches of that time with traffic, split where no span was seen for more than
    /// [`TRAFFIC_GAP_NS`] (empty in models written before they were kept: the window is then
    /// taken as one stretch). Rates are per second of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<Window>,
    /// Instrumented operations, sorted by id.
    pub operations: Vec<Operation>,
    /// Call sites between instrumented operations, sorted by (from, to).
    pub calls: Vec<CallSite>,
    /// Calls that reached nothing instrumented, sorted by (from, peer, name).
    pub unarrived: Vec<Unarrived>,
    /// Of those, messages consumed in other traces (linked), sorted by (from, peer, name, to).
    /// Absent from files when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkedCalls>,
    /// What kind of peer the uninstrumented peers are, by peer (absent when none was marked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_kinds: Vec<PeerKinds>,
    /// The trace files learned, by content (sorted): `augur learn --into` skips those it holds
    /// already, `augur merge` warns when two models share one. Absent when none (a model of
    /// live traffic, or written before files were remembered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned_files: Vec<LearnedFile>,
}

/// A trace file a model learned, by its content: its size and hashes of its first, middle and
/// last bytes (`augur_ingest::fingerprint`), as 16 hex digits each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedFile {
    /// Hash of the first bytes.
    pub head: String,
    /// Hash of the last bytes.
    pub tail: String,
    /// Hash of the bytes in the middle (empty in files written before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub middle: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A node of the graph contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphNode {
    /// Node id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Uninstrumented peer.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// User-facing endpoint.
    pub endpoint: bool,
}

/// An edge of the graph contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEdge {
    /// Caller node id.
    pub from: String,
    /// Callee node id.
    pub to: String,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Median call duration, milliseconds (within 1%).
    pub p50_ms: f64,
    /// 99th percentile call duration, milliseconds (within 1%).
    pub p99_ms: f64,
    /// How the caller makes the call: `sequential`, `parallel` or `asynchronous`.
    pub mode: Mode,
    /// Most retries seen after a failed attempt; `null` when no attempt failed (unknown).
    pub retries: Option<u32>,
    /// The timeout's median estimate, milliseconds; `null` when no call was seen cut (unknown).
    pub timeout_ms: Option<f64>,
    /// P(the caller fails | this call failed after its retries): posterior mean and 90% interval.
    pub p_propagate: Interval,
}

impl GraphEdge {
    /// The learned behaviour in a few words: mode, retries, timeout, P(propagate).
    pub fn behaviour(&self) -> String {
        let retries = self
            .retries
            .map_or("retries ?".to_string(), |r| format!("retries {r}"));
        let timeout = self
            .timeout_ms
            .map_or("timeout ?".to_string(), |t| format!("timeout {t} ms"));
        let p = self.p_propagate;
        format!(
            "{}, {retries}, {timeout}, P(propagate) {:.2} [{:.2}, {:.2}]",
            self.mode.as_str(),
            p.mean,
            p.lo,
            p.hi
        )
    }
}

/// The call graph: the JSON contract of `augur graph --format json`,
/// `{"nodes":[{"id","service","operation","virtual","endpoint"}],"edges":[{"from","to","calls","errors","p50_ms","p99_ms"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Nodes, sorted by id.
    pub nodes: Vec<GraphNode>,
    /// Edges, sorted by (from, to).
    pub edges: Vec<GraphEdge>,
}

impl Model {
    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let text = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|reason| ModelError::Format {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a model from its JSON form; the reason when it is not one.
    pub fn from_json(text: &[u8]) -> Result<Model, String> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
        }
        let v: Version = serde_json::from_slice(text)
            .map_err(|e| format!("not an augur model file (JSON): {e}"))?;
        match v.schema_version {
            Some(v) if (OLDEST_READABLE_VERSION..=SCHEMA_VERSION).contains(&v) => {}
            Some(other) => {
                return Err(format!(
                    "model schema version {other}; this augur reads versions {OLDEST_READABLE_VERSION} to {SCHEMA_VERSION}"
                ))
            }
            None => return Err("not an augur model file: no schema_version".into()),
        }
        let mut m: Model =
            serde_json::from_slice(text).map_err(|e| format!("malformed model: {e}"))?;
        m.check_counts()?;
        // An older file is a newer one whose new fields are empty.
        m.schema_version = SCHEMA_VERSION;
        Ok(m)
    }

    /// Refuses counts no real model holds (over [`MAX_COUNT`]: a corrupt or hand-edited file),
    /// so that arithmetic on them cannot overflow.
    fn check_counts(&self) -> Result<(), String> {
        let check = |what: &dyn Fn() -> String, n: u64| {
            if n > MAX_COUNT {
                Err(format!("{}: count {n} is beyond any real model", what()))
            } else {
                Ok(())
            }
        };
        let stats = |what: &dyn Fn() -> String, s: &CallStats| -> Result<(), String> {
            for n in [
                s.attempts,
                s.attempt_errors,
                s.calls,
                s.failed,
                s.propagated,
                s.survived,
                s.parallel,
                s.asynchronous,
            ]
            .into_iter()
            .chain(s.per_invocation.iter().copied())
            .chain(s.retries.iter().copied())
            {
                check(what, n)?;
            }
            Ok(())
        };
        for o in &self.operations {
            let what = || format!("operation {}", o.id);
            for n in [
                o.invocations,
                o.errors,
                o.roots,
                o.clean,
                o.clean_errors,
                o.unrecorded,
            ] {
                check(&what, n)?;
            }
        }
        for c in &self.calls {
            let what = || format!("call {} -> {}", c.from, c.to);
            stats(&what, &c.stats)?;
            for &n in c.client_names.values() {
                check(&what, n)?;
            }
        }
        for u in &self.unarrived {
            stats(&|| format!("call {} -> {}", u.from, u.peer), &u.stats)?;
        }
        for l in &self.links {
            check(&|| format!("messages {} -> {}", l.from, l.to), l.messages)?;
        }
        for k in &self.peer_kinds {
            let what = || format!("peer {}", k.peer);
            check(&what, k.database)?;
            check(&what, k.messaging)?;
        }
        Ok(())
    }

    /// Writes the model file (atomically: a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_vec(self).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("augur-tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            // Nothing half-written is left behind (e.g. when the path is a directory).
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Distinct instrumented services.
    pub fn services(&self) -> usize {
        let mut s: Vec<&str> = self.operations.iter().map(|n| n.service.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }

    /// Seconds of traffic the model saw: the stretches' lengths summed (the window's length
    /// for a model without them), at least a millisecond; `None` for an empty model.
    pub fn traffic_seconds(&self) -> Option<f64> {
        let w = self.window?;
        if self.active.is_empty() {
            return Some(w.seconds());
        }
        let ns: i64 = self
            .active
            .iter()
            .map(|s| s.last_ns.saturating_sub(s.first_ns))
            .fold(0i64, i64::saturating_add);
        Some((ns as f64 / 1e9).max(1e-3))
    }

    /// Adds `other`'s statistics to this model (exact; associative and commutative): the model
    /// of both inputs, for traces that were not split between them.
    pub fn merge(&mut self, other: &Model) {
        self.quality.merge(&other.quality);
        self.learned_files
            .extend(other.learned_files.iter().cloned());
        self.learned_files.sort();
        self.learned_files.dedup();
        let mine = self.window;
        self.window = match (self.window, other.window) {
            (Some(a), Some(b)) => Some(a.union(b)),
            (a, b) => a.or(b),
        };
        if self.active.is_empty() {
            self.active.extend(mine);
        }
        let theirs = if other.active.is_empty() {
            other.window.into_iter().collect()
        } else {
            other.active.clone()
        };
        for w in theirs {
            add_active(&mut self.active, w);
        }
        merge_sorted(
            &mut self.operations,
            &other.operations,
            |o| o.id.clone(),
            |a, b| {
                a.invocations = a.invocations.saturating_add(b.invocations);
                a.errors = a.errors.saturating_add(b.errors);
                a.roots = a.roots.saturating_add(b.roots);
                a.duration_ns.merge(&b.duration_ns);
                a.self_ns.merge(&b.self_ns);
                a.clean = a.clean.saturating_add(b.clean);
                a.clean_errors = a.clean_errors.saturating_add(b.clean_errors);
                a.unrecorded = a.unrecorded.saturating_add(b.unrecorded);
            },
        );
        merge_sorted(
            &mut self.calls,
            &other.calls,
            |c| (c.from.clone(), c.to.clone()),
            |a, b| {
                for (name, n) in &b.client_names {
                    let c = a.client_names.entry(name.clone()).or_default();
                    *c = c.saturating_add(*n);
                }
                a.stats.merge(&b.stats);
            },
        );
        merge_sorted(
            &mut self.unarrived,
            &other.unarrived,
            |u| (u.from.clone(), u.peer.clone(), u.name.clone()),
            |a, b| a.stats.merge(&b.stats),
        );
        merge_sorted(
            &mut self.links,
            &other.links,
            |l| (l.from.clone(), l.peer.clone(), l.name.clone(), l.to.clone()),
            |a, b| a.messages = a.messages.saturating_add(b.messages),
        );
        merge_sorted(
            &mut self.peer_kinds,
            &other.peer_kinds,
            |k| k.peer.clone(),
            |a, b| {
                a.database = a.database.saturating_add(b.database);
                a.messaging = a.messaging.saturating_add(b.messaging);
            },
        );
    }

    /// The call graph view (the `augur graph --format json` contract).
    pub fn graph(&self) -> Graph {
        self.view().graph()
    }
}

/// Merges two lists sorted by `key` into `into`, combining equal keys with `combine`.
fn merge_sorted<T: Clone, K: Ord>(
    into: &mut Vec<T>,
    from: &[T],
    key: impl Fn(&T) -> K,
    combine: impl Fn(&mut T, &T),
) {
    let mut out = Vec::with_capacity(into.len() + from.len());
    let mut a = std::mem::take(into).into_iter().peekable();
    let mut b = from.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match key(x).cmp(&key(y)) {
                std::cmp::Ordering::Less => out.extend(a.next()),
                std::cmp::Ordering::Greater => out.extend(b.next().cloned()),
                std::cmp::Ordering::Equal => {
                    if let (Some(mut x), Some(y)) = (a.next(), b.next()) {
                        combine(&mut x, y);
                        out.push(x);
                    }
                }
            },
            (Some(_), None) => out.extend(a.next()),
            (None, Some(_)) => out.extend(b.next().cloned()),
            (None, None) => break,
        }
    }
    *into = out;
}

impl View {
    /// The call graph view (the `augur graph --format json` contract), with each edge's
    /// learned behaviour.
    pub fn graph(&self) -> Graph {
        Graph {
            nodes: self
                .nodes
                .iter()
                .map(|n| GraphNode {
                    id: n.id.clone(),
                    service: n.service.clone(),
                    operation: n.operation.clone(),
                    is_virtual: n.is_virtual,
                    endpoint: n.endpoint,
                })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| {
                    let d = e.stats.duration_ns();
                    GraphEdge {
                        from: e.from.clone(),
                        to: e.to.clone(),
                        calls: e.attempts,
                        errors: e.attempt_errors,
                        p50_ms: ms(&d, 0.5),
                        p99_ms: ms(&d, 0.99),
                        mode: e.mode,
                        retries: e.retries,
                        timeout_ms: e.timeout.as_ref().map(|t| t.median_ms),
                        p_propagate: e.p_propagate.interval,
                    }
                })
                .collect(),
        }
    }
}

impl Graph {
    /// Graphviz DOT: endpoints bold, virtual nodes as cylinders, edges labelled with calls,
    /// errors and p99.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("digraph augur {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            // Service over operation (a service name may hold spaces; a virtual node is its
            // peer's name alone).
            let label = if n.is_virtual || n.operation.is_empty() {
                n.id.clone()
            } else {
                format!("{}\n{}", n.service, n.operation)
            };
            let mut attrs = vec![format!("label={}", q(&label))];
            if n.is_virtual {
                attrs.push("shape=cylinder".into());
            }
            if n.endpoint {
                attrs.push("style=bold".into());
            }
            let _ = writeln!(out, "  {} [{}];", q(&n.id), attrs.join(", "));
        }
        for e in &self.edges {
            let label = format!(
                "{} calls, {} err, p99 {} ms\n{}",
                e.calls,
                e.errors,
                e.p99_ms,
                e.behaviour()
            );
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                q(&e.from),
                q(&e.to),
                q(&label)
            );
        }
        out.push_str("}\n");
        out
    }

    /// A plain-text table for people: nodes, then edges.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let w = self
            .nodes
            .iter()
            .map(|n| n.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "{:<w$}  KIND", "NODE");
        for n in &self.nodes {
            let kind = match (n.is_virtual, n.endpoint) {
                (true, _) => "virtual",
                (false, true) => "endpoint",
                (false, false) => "operation",
            };
            let _ = writeln!(out, "{:<w$}  {kind}", n.id);
        }
        out.push('\n');
        let wf = self
            .edges
            .iter()
            .map(|e| e.from.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let wt = self
            .edges
            .iter()
            .map(|e| e.to.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let _ = writeln!(
            out,
            "{:<wf$}  {:<wt$}  {:>10}  {:>8}  {:>10}  {:>10}  BEHAVIOUR",
            "FROM", "TO", "CALLS", "ERRORS", "P50 MS", "P99 MS"
        );
        for e in &self.edges {
            let _ = writeln!(
                out,
                "{:<wf$}  {:<wt$}  {:>10}  {:>8}  {:>10.3}  {:>10.3}  {}",
                e.from,
                e.to,
                e.calls,
                e.errors,
                e.p50_ms,
                e.p99_ms,
                e.behaviour()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let mut d = LogSketch::new();
        d.add(2e6);
        let mut stats = CallStats {
            attempts: 1,
            calls: 1,
            per_invocation: vec![0, 1],
            retries: vec![1],
            ..CallStats::default()
        };
        stats.ok_ns.add(2e6);
        Model {
            schema_version: SCHEMA_VERSION,
            quality: TraceQuality::default(),
            window: Some(Window {
                first_ns: 0,
                last_ns: 1_000_000_000,
            }),
            active: Vec::new(),
            operations: vec![Operation {
                id: "a GET /".into(),
                service: "a".into(),
                operation: "GET /".into(),
                invocations: 1,
                errors: 0,
                roots: 1,
                duration_ns: d.clone(),
                self_ns: d,
                clean: 1,
                clean_errors: 0,
                unrecorded: 0,
            }],
            calls: vec![],
            unarrived: vec![Unarrived {
                from: "a GET /".into(),
                peer: "pg".into(),
                name: "SELECT".into(),
                stats,
            }],
            links: Vec::new(),
            peer_kinds: Vec::new(),
            learned_files: Vec::new(),
        }
    }

    #[test]
    fn graph_json_has_the_contract_shape() {
        let g = serde_json::to_value(tiny().graph()).unwrap();
        let node = &g["nodes"][1];
        let keys: Vec<&str> = node
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["endpoint", "id", "operation", "service", "virtual"]);
        assert_eq!(node["virtual"], true);
        let edge = &g["edges"][0];
        let keys: Vec<&str> = edge
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "calls",
                "errors",
                "from",
                "mode",
                "p50_ms",
                "p99_ms",
                "p_propagate",
                "retries",
                "timeout_ms",
                "to"
            ]
        );
        assert_eq!(edge["mode"], "sequential");
        assert!(edge["retries"].is_null() && edge["timeout_ms"].is_null());
        assert!((edge["p50_ms"].as_f64().unwrap() - 2.0).abs() < 0.02);
    }

    #[test]
    fn model_file_round_trips_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let m = tiny();
        m.save(&path).unwrap();
        assert_eq!(Model::load(&path).unwrap(), m);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"schema_version\":3"));
        // A version 2 file (before longest_under_fault_ns) is read as version 3.
        std::fs::write(
            &path,
            text.replace("\"schema_version\":3", "\"schema_version\":2"),
        )
        .unwrap();
        assert_eq!(Model::load(&path).unwrap(), m);
        std::fs::write(
            &path,
            text.replace("\"schema_version\":3", "\"schema_version\":99"),
        )
        .unwrap();
        let err = Model::load(&path).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::write(&path, "garbage").unwrap();
        assert!(Model::load(&path).is_err());
    }

    #[test]
    fn counts_no_real_model_holds_are_refused_and_merges_saturate() {
        let mut m = tiny();
        m.unarrived[0].stats.parallel = u64::MAX;
        let text = serde_json::to_vec(&m).unwrap();
        let err = Model::from_json(&text).unwrap_err();
        assert!(
            err.contains("beyond any real model") && err.contains("call "),
            "{err}"
        );
        m.unarrived[0].stats.parallel = MAX_COUNT;
        let mut a = Model::from_json(&serde_json::to_vec(&m).unwrap()).unwrap();
        for _ in 0..70 {
            let b = a.clone();
            a.merge(&b);
        }
        assert_eq!(a.unarrived[0].stats.parallel, u64::MAX);
        let _ = a.view();
    }

    #[test]
    fn dot_and_table_name_every_node() {
        let g = tiny().graph();
        let dot = g.to_dot();
        assert!(dot.starts_with("digraph"));
        assert!(dot.contains("\"a GET /\" -> \"pg\""));
        assert!(dot.contains("shape=cylinder"));
        // Service over operation, even where the service's name holds a space.
        assert!(dot.contains("label=\"a\nGET /\""), "{dot}");
        let mut spaced = g.clone();
        spaced.nodes[0].service = "web front".into();
        spaced.nodes[0].id = format!("web front {}", spaced.nodes[0].operation);
        assert!(
            spaced.to_dot().contains("label=\"web front\nGET /\""),
            "{}",
            spaced.to_dot()
        );
        let table = g.to_table();
        assert!(table.contains("virtual") && table.contains("endpoint"));
    }
}
